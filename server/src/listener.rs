//! Accepting and serving connections: at most `connections_max` open at
//! once (the next accept waits for one to close), and TLS (rustls) when
//! configured. A background task accepts and, for TLS, runs each handshake
//! in its own task (at most `HANDSHAKE_TIMEOUT`), so a slow handshake never
//! holds up the others; [`Listener::serve`] takes finished connections from
//! a channel and serves HTTP/1.1 on each until told to stop.
//!
//! Two timeouts give a slot back, so that a thousand slow or silent
//! clients cannot lock everyone out: a request head (request line and
//! headers) must arrive whole within [`HEAD_TIMEOUT`] of the connection's
//! waiting for it, keep-alive idling included (a client trickling its
//! headers a byte at a time makes progress, but not a request); and a
//! connection that makes no progress (reading or writing) for its idle
//! timeout ([`IDLE_TIMEOUT`], or longer when requests may take longer) is
//! closed, which covers a client that never reads its answer. A body must
//! arrive within the request timeout (`http::observe`).

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A connection with no progress this long is closed (unless the request
/// timeout is longer: see [`idle_timeout`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request head must arrive whole within this of the connection's
/// waiting for it (hyper's header read timeout).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle timeout for a request timeout: a connection waiting on a slow
/// answer makes no progress, and must outlive the request.
pub fn idle_timeout(request_timeout: Duration) -> Duration {
    IDLE_TIMEOUT.max(request_timeout * 2)
}
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor from PEM files (certificate chain and private key).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub struct Listener {
    local_addr: SocketAddr,
    connections: mpsc::Receiver<(Connection, SocketAddr)>,
    /// Ends once `connections` is dropped, closing the socket.
    accepting: tokio::task::JoinHandle<()>,
}

impl Listener {
    pub fn new(
        tcp: TcpListener,
        connections_max: usize,
        tls: Option<TlsAcceptor>,
        idle_timeout: Duration,
    ) -> io::Result<Listener> {
        let local_addr = tcp.local_addr()?;
        let (ready, connections) = mpsc::channel(64);
        let permits = Arc::new(Semaphore::new(connections_max));
        let accepting = tokio::spawn(accept_loop(tcp, permits, tls, idle_timeout, ready));
        Ok(Listener { local_addr, connections, accepting })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    permits: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
    idle_timeout: Duration,
    ready: mpsc::Sender<(Connection, SocketAddr)>,
) {
    loop {
        // `serve` dropping its end stops the accepting (and closes the socket).
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit,
            () = ready.closed() => return,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = ready.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ready = ready.clone();
        match &tls {
            None => {
                if ready.send((Connection::new(Io::Plain(stream), permit, idle_timeout), peer)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection = Connection::new(Io::Tls(Box::new(stream)), permit, idle_timeout);
                            let _ = ready.send((connection, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next accepted connection (`None` once the accept loop ended,
    /// which it does only with the runtime).
    async fn accept(&mut self) -> Option<(Connection, SocketAddr)> {
        self.connections.recv().await
    }

    /// Serves `router` on every accepted connection until `stop` completes;
    /// then accepts no more, lets each connection finish the request it is
    /// serving (idle ones close at once), and returns when all are closed.
    pub async fn serve(mut self, router: axum::Router, head_timeout: Duration, stop: impl Future<Output = ()>) {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(head_timeout);
        let graceful = GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            let accepted = tokio::select! {
                accepted = self.accept() => accepted,
                () = &mut stop => break,
            };
            let Some((connection, _peer)) = accepted else { break };
            let service = TowerToHyperService::new(router.clone());
            let served = graceful.watch(http.serve_connection(TokioIo::new(connection), service));
            tokio::spawn(async move {
                if let Err(error) = served.await {
                    tracing::debug!(%error, "connection closed with an error");
                }
            });
        }
        // Dropping the channel stops the accept loop, which closes the
        // socket: new clients are refused, not left in the backlog.
        drop(self.connections);
        let _ = self.accepting.await;
        graceful.shutdown().await;
    }
}

/// An accepted connection; it holds one of the `connections_max` permits.
pub struct Connection {
    io: Io,
    _permit: OwnedSemaphorePermit,
    /// Fires at the idle deadline; progress only moves `last_progress`, and
    /// the timer is re-armed lazily when it fires early.
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    last_progress: Instant,
}

impl Connection {
    fn new(io: Io, permit: OwnedSemaphorePermit, idle_timeout: Duration) -> Connection {
        let now = Instant::now();
        let idle = Box::pin(tokio::time::sleep_until(now + idle_timeout));
        Connection { io, _permit: permit, idle, idle_timeout, last_progress: now }
    }

    /// Passes a ready result through (noting the progress); when the I/O is
    /// pending, fails it once the connection has idled past the timeout.
    fn watch<T>(&mut self, cx: &mut TaskContext<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.last_progress = Instant::now();
            return polled;
        }
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_progress + self.idle_timeout;
            if Instant::now() >= deadline {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle too long")));
            }
            self.idle.as_mut().reset(deadline);
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let polled = match &mut self.io {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        };
        self.watch(cx, polled)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = match &mut self.io {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        };
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let polled = match &mut self.io {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        };
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SHORT: Duration = Duration::from_millis(200);

    async fn listener(connections_max: usize) -> Listener {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Listener::new(tcp, connections_max, None, SHORT).unwrap()
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_gives_its_slot_back() {
        let mut listener = listener(1).await;
        let address = listener.local_addr();
        // Before the connection exists, so before its idle clock starts.
        let began = Instant::now();
        let _silent = TcpStream::connect(address).await.unwrap();
        let (mut first, _) = listener.accept().await.unwrap();
        // The only slot is taken: a second client is not accepted until the
        // first one's connection is closed for idling.
        let mut second_client = TcpStream::connect(address).await.unwrap();
        let idled = tokio::spawn(async move {
            let error = first.read(&mut [0; 16]).await.expect_err("a silent connection times out");
            (error.kind(), began.elapsed())
        });
        let (mut second, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.unwrap().unwrap();
        let (kind, idled_for) = idled.await.unwrap();
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(idled_for >= SHORT, "closed after {idled_for:?}, before its idle timeout");
        second_client.write_all(b"ping").await.unwrap();
        let mut received = [0; 4];
        second.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"ping", "the second connection is served");
    }

    #[tokio::test]
    async fn progress_keeps_a_connection_open_past_the_idle_timeout() {
        // Longer than SHORT: a writer stalled most of a timeout on a busy
        // machine must not close the connection.
        let idle = Duration::from_secs(1);
        let mut listener = Listener::new(TcpListener::bind("127.0.0.1:0").await.unwrap(), 1, None, idle).unwrap();
        let mut client = TcpStream::connect(listener.local_addr()).await.unwrap();
        let (mut connection, _) = listener.accept().await.unwrap();
        let began = Instant::now();
        let mut received = 0;
        // Bytes every idle/10 for two and a half idle timeouts.
        let writer = tokio::spawn(async move {
            for _ in 0..25 {
                tokio::time::sleep(idle / 10).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        while received < 25 {
            received += connection.read(&mut [0; 16]).await.expect("progress keeps the connection");
        }
        assert!(began.elapsed() > idle * 2, "the test outlived two idle timeouts");
        drop(writer.await.unwrap());
    }

    /// A client trickling its request head a byte at a time makes progress
    /// (the idle timeout never fires) but no request: the head timeout
    /// closes it, and its slot goes to the next client.
    #[tokio::test]
    async fn a_request_head_trickled_past_the_head_timeout_is_closed() {
        let listener = Listener::new(TcpListener::bind("127.0.0.1:0").await.unwrap(), 1, None, IDLE_TIMEOUT).unwrap();
        let address = listener.local_addr();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "served" }));
        tokio::spawn(listener.serve(router, SHORT, std::future::pending()));

        // Before the connection exists, so before its head timer starts.
        let began = Instant::now();
        let mut trickler = TcpStream::connect(address).await.unwrap();
        let head = b"GET / HTTP/1.1\r\nhost: stockd\r\nx-slow: ";
        // A byte every SHORT/4, for up to 400 bytes (100 head timeouts).
        let mut closed_after = None;
        for &byte in head.iter().chain(std::iter::repeat(&b'a')).take(400) {
            let mut answer = [0; 64];
            let wrote = trickler.write_all(&[byte]).await;
            match tokio::time::timeout(SHORT / 4, trickler.read(&mut answer)).await {
                Err(_elapsed) if wrote.is_ok() => continue,
                Ok(Ok(0) | Err(_)) | Err(_) => {}
                Ok(Ok(n)) => panic!("answered a request that never ended: {:?}", String::from_utf8_lossy(&answer[..n])),
            }
            closed_after = Some(began.elapsed());
            break;
        }
        let closed_after = closed_after.expect("the trickling client is closed");
        assert!(closed_after >= SHORT, "closed after {closed_after:?}, before the head timeout");

        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\nhost: stockd\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("served"), "{answer}");
    }

    /// Once told to stop, the server accepts nobody more: its socket is
    /// closed (a client is refused, not left waiting in the backlog).
    #[tokio::test]
    async fn a_stopped_server_closes_its_socket() {
        let listener = Listener::new(TcpListener::bind("127.0.0.1:0").await.unwrap(), 4, None, IDLE_TIMEOUT).unwrap();
        let address = listener.local_addr();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "served" }));
        let stopped = tokio::time::timeout(Duration::from_secs(30), listener.serve(router, SHORT, async {})).await;
        assert!(stopped.is_ok(), "serve returns once stopped");
        let refused = TcpStream::connect(address).await;
        assert!(refused.is_err(), "a connection after the stop: {refused:?}");
    }

    #[test]
    fn a_long_request_timeout_lengthens_the_idle_timeout() {
        assert_eq!(idle_timeout(Duration::from_secs(10)), IDLE_TIMEOUT);
        assert_eq!(idle_timeout(Duration::from_secs(90)), Duration::from_secs(180));
    }
}
