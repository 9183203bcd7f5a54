//! A transport for the layers' own tests: counts what it sent and fails on demand. (The
//! public test transport, `dev::MemoryTransport`, is a module `transport` must not import.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::message::PreparedMessage;
use crate::{Error, ErrorKind, Message, Receipt, Transport};

#[derive(Debug, Clone, Default)]
pub(crate) struct Scripted {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    sent: usize,
    failures: VecDeque<(ErrorKind, String)>,
}

impl Scripted {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages sent so far.
    pub(crate) fn len(&self) -> usize {
        self.state().sent
    }

    /// The next send fails with `kind` (queued).
    pub(crate) fn fail_next(&self, kind: ErrorKind, text: &str) {
        self.state().failures.push_back((kind, text.to_string()));
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        let mut state = self.state();
        if let Some((kind, text)) = state.failures.pop_front() {
            return Err(Error::new(kind, text));
        }
        state.sent += 1;
        Ok(Receipt::new(
            "memory",
            message.message_id(),
            message.envelope().to.clone(),
        ))
    }

    async fn verify(&self) -> Result<(), Error> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// A message to send.
pub(crate) fn message() -> Message {
    Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("hi")
        .build()
        .unwrap_or_else(|e| panic!("a valid message: {e}"))
}

/// The same, prepared.
pub(crate) fn prepared() -> PreparedMessage {
    message()
        .prepare(None)
        .unwrap_or_else(|e| panic!("a valid message: {e}"))
}
