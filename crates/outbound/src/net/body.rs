//! The request body that records when the connection took it.
//!
//! Before that moment the server cannot have the whole request, so a failure is safe to retry
//! whatever the request does; after it, the server may have acted on it, and only a request
//! that may be repeated (an idempotent request: one that sends nothing, carries an idempotency
//! key or delivers no message) is still safe to retry. `classify.rs` says what each failure
//! means; this file only records the moment (it uses nothing else of `net`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Whether a request went out: shared by the body (which sets it) and the sender (which reads
/// it when the request fails).
#[derive(Debug, Clone, Default)]
pub(crate) struct SentFlag(Arc<AtomicBool>);

impl SentFlag {
    /// Marks the request as sent (a request without a body is sent as soon as it can be
    /// processed).
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the body was handed to the connection.
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A request body that sets its [`SentFlag`] when the connection takes it.
pub(crate) struct TrackedBody {
    data: Option<Bytes>,
    sent: SentFlag,
}

impl TrackedBody {
    pub(crate) fn new(data: Bytes, sent: SentFlag) -> Self {
        TrackedBody {
            data: Some(data),
            sent,
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.data.take() {
            Some(data) => {
                self.sent.set();
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[test]
    fn marks_sent_when_polled() {
        let sent = SentFlag::default();
        let mut body = TrackedBody::new(Bytes::from_static(b"abc"), sent.clone());
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        assert!(!sent.is_set(), "not sent before the connection takes it");
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let frame = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(matches!(frame, Poll::Ready(Some(Ok(_)))));
        assert!(sent.is_set());
        assert!(body.is_end_stream());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }
}
