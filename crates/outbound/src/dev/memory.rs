//! The `memory` transport: keeps every message it is given, for tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::message::{Envelope, PreparedMessage};
use crate::{Error, ErrorKind, Message, Receipt, Transport};

/// A message the [`MemoryTransport`] accepted.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// The message as given.
    pub message: Message,
    /// Its SMTP envelope (includes Bcc recipients).
    pub envelope: Envelope,
    /// The rendered bytes, exactly as an SMTP transport would send them.
    pub bytes: Vec<u8>,
    /// The receipt that was returned.
    pub receipt: Receipt,
}

impl SentMessage {
    /// The rendered message as text (lossy for 8-bit content).
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[derive(Debug, Default)]
struct State {
    sent: Vec<SentMessage>,
    failures: VecDeque<(ErrorKind, String)>,
}

/// Keeps sent messages in memory. Clones share the same store, so a test can keep one handle
/// and give another (or an `Arc<dyn Transport>`) to the code under test.
///
/// ```
/// use outbound::{Message, Transport, ErrorKind, dev::MemoryTransport};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let mailer = MemoryTransport::new();
/// let handle = mailer.clone();
/// mailer.fail_next(ErrorKind::Transient, "451 try later");
/// let msg = Message::builder().from("a@example.com").to("b@example.com")
///     .subject("Hi").text("hello").build()?;
/// assert_eq!(mailer.send(&msg).await.unwrap_err().kind(), ErrorKind::Transient);
/// mailer.send(&msg).await?;
/// assert_eq!(handle.len(), 1);
/// assert_eq!(handle.sent_to("b@example.com").len(), 1);
/// assert_eq!(handle.last().unwrap().message.subject(), "Hi");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    state: Arc<Mutex<State>>,
}

impl MemoryTransport {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the Vec half-updated; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every message sent so far, oldest first.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.state().sent.clone()
    }

    /// How many messages were sent.
    pub fn len(&self) -> usize {
        self.state().sent.len()
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.state().sent.is_empty()
    }

    /// The most recent message.
    pub fn last(&self) -> Option<SentMessage> {
        self.state().sent.last().cloned()
    }

    /// Messages whose envelope includes `address` (case-insensitive).
    pub fn sent_to(&self, address: &str) -> Vec<SentMessage> {
        self.state()
            .sent
            .iter()
            .filter(|m| {
                m.envelope
                    .to
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(address))
            })
            .cloned()
            .collect()
    }

    /// Forgets every message.
    pub fn clear(&self) {
        self.state().sent.clear();
    }

    /// Makes the next send fail with `kind` (queued; each call adds one failure).
    pub fn fail_next(&self, kind: ErrorKind, message: impl Into<String>) {
        self.state().failures.push_back((kind, message.into()));
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        if let Some((kind, text)) = self.state().failures.pop_front() {
            return Err(Error::new(kind, text));
        }
        let envelope = message.envelope().clone();
        let bytes = message.bytes()?.to_vec();
        let receipt = Receipt::new("memory", message.message_id(), envelope.to.clone());
        self.state().sent.push(SentMessage {
            message: message.message().clone(),
            envelope,
            bytes,
            receipt: receipt.clone(),
        });
        Ok(receipt)
    }

    async fn verify(&self) -> Result<(), Error> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
