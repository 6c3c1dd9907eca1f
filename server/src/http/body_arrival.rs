//! Whether a request's body has fully arrived. A request that runs out of
//! time while its body is still arriving was never handed to the engine:
//! that is the client's slowness (408), not an unknown outcome (503).

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Says whether the watched body has been read to its end.
pub struct BodyArrival(Option<Arc<AtomicBool>>);

impl BodyArrival {
    /// Watches `request`'s body. A request without one is left as it is.
    pub fn watch(request: Request) -> (Request, BodyArrival) {
        if request.body().is_end_stream() {
            return (request, BodyArrival(None));
        }
        let arrived = Arc::new(AtomicBool::new(false));
        let watched = Arc::clone(&arrived);
        let request = request.map(|inner| Body::new(Watched { inner, arrived: watched }));
        (request, BodyArrival(Some(arrived)))
    }

    pub fn complete(&self) -> bool {
        self.0.as_ref().is_none_or(|arrived| arrived.load(Ordering::Relaxed))
    }
}

struct Watched {
    inner: Body,
    arrived: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.arrived.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
