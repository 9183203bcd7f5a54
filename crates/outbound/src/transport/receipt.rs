//! The [`Receipt`] a successful send returns.

use std::time::Duration;

use serde::Serialize;

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Receipt {
    /// The transport kind that delivered it.
    pub transport: String,
    /// The message's Message-ID, with angle brackets.
    pub message_id: String,
    /// The provider's own id (Resend email id, SendGrid `X-Message-Id`, the SMTP server's
    /// queue id, or the file path for the `file` transport).
    pub provider_id: Option<String>,
    /// Recipients the server accepted.
    pub accepted: Vec<String>,
    /// Recipients the server refused while accepting others.
    pub rejected: Vec<RejectedRecipient>,
    /// How many attempts the send took (1 without retries).
    pub attempts: u32,
    /// Time from the first attempt to success.
    #[serde(serialize_with = "serialize_millis")]
    pub elapsed: Duration,
}

impl Receipt {
    /// A receipt for a message accepted for `accepted` by a transport of `kind`.
    pub fn new(kind: &str, message_id: impl Into<String>, accepted: Vec<String>) -> Self {
        Receipt {
            transport: kind.to_string(),
            message_id: message_id.into(),
            provider_id: None,
            accepted,
            rejected: Vec::new(),
            attempts: 1,
            elapsed: Duration::ZERO,
        }
    }

    /// Sets the provider's id.
    pub fn with_provider_id(mut self, id: impl Into<String>) -> Self {
        self.provider_id = Some(id.into());
        self
    }

    /// Sets the refused recipients.
    pub fn with_rejected(mut self, rejected: Vec<RejectedRecipient>) -> Self {
        self.rejected = rejected;
        self
    }

    /// Sets the elapsed time.
    pub fn with_elapsed(mut self, elapsed: Duration) -> Self {
        self.elapsed = elapsed;
        self
    }
}

fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// A recipient the server refused while accepting others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRecipient {
    /// The address as sent in RCPT TO.
    pub address: String,
    /// The reply code, e.g. 550.
    pub code: u16,
    /// The enhanced status code, e.g. `5.1.1`.
    pub enhanced: Option<String>,
    /// The server's text.
    pub text: String,
}
