//! A minimal HTTP/1.1 client over one keep-alive connection (hyper), for
//! the load generator and the integration tests: the caller decides
//! exactly how many connections exist and what each sends.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// `http://host:port` (a path, if any, is ignored) as a socket address.
pub fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = if authority.starts_with("localhost:") {
        authority.replacen("localhost", "127.0.0.1", 1)
    } else {
        authority.to_owned()
    };
    authority.parse().with_context(|| format!("{url}: expected http://IP:PORT"))
}

/// One answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    token: Option<HeaderValue>,
}

impl Connection {
    pub async fn open(address: SocketAddr, token: Option<&str>) -> anyhow::Result<Connection> {
        let stream =
            tokio::net::TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection ends when the server closes it or we drop the sender.
            let _ = connection.await;
        });
        let token = token.map(|token| HeaderValue::from_str(&format!("Bearer {token}"))).transpose()?;
        Ok(Connection { sender, host: HeaderValue::from_str(&address.to_string())?, token })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> anyhow::Result<Answer> {
        self.send_with(method, path, body, &[]).await
    }

    /// Like `send`, with extra headers (a header named `content-type`
    /// replaces the JSON one; an empty one sends none).
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        self.sender.ready().await.context("the connection closed")?;
        let mut request = Request::builder().method(method).uri(path).header(HOST, self.host.clone());
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        if body.is_some() && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers.iter().filter(|(_, value)| !value.is_empty()) {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }

    /// POSTs (or PUTs) a JSON value.
    pub async fn json(&mut self, method: Method, path: &str, value: &serde_json::Value) -> anyhow::Result<Answer> {
        self.send(method, path, Some(Bytes::from(serde_json::to_vec(value)?))).await
    }
}

/// Waits until `GET /readyz` answers 200 (bounded).
pub async fn wait_ready(address: SocketAddr, timeout: std::time::Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(mut connection) = Connection::open(address, None).await {
            if let Ok(answer) = connection.send(Method::GET, "/readyz", None).await {
                if answer.status == StatusCode::OK {
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{address} was not ready within {timeout:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
