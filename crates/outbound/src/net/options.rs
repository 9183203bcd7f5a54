//! [`HttpOptions`]: the timeouts of an HTTP transport, on their own so that both the client
//! that applies them and the classification that names them in messages can use them.

use std::time::Duration;

/// Timeouts of an HTTP transport.
///
/// ```
/// use std::time::Duration;
/// use outbound::resend::HttpOptions;
/// let o = HttpOptions::default().with_timeout(Duration::from_secs(10));
/// assert_eq!(o.timeout(), Duration::from_secs(10));
/// assert_eq!(o.connect_timeout(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    connect_timeout: Duration,
    timeout: Duration,
}

impl Default for HttpOptions {
    /// Connect within 10 s; the whole request (connect, send, answer) within 30 s.
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

impl HttpOptions {
    /// Time allowed to open the connection (TCP and TLS).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for a whole request, from connecting to reading the answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The total timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
