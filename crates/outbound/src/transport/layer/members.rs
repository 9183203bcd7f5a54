//! What every group (`group.rs`: failover, round-robin) does with its members: a list of
//! transports, each set aside for a cooldown after it failed in a way another transport may
//! not, and one rule for which failures move on to the next.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::message::PreparedMessage;
use crate::{Error, ErrorKind, Message, Receipt, Transport};

/// How long a failed member of a group (`failover(…)`, `roundrobin(…)`) is set aside by
/// default.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);

/// The transports, in order, with when each may be used again.
#[derive(Debug)]
pub(crate) struct Members {
    list: Vec<Arc<dyn Transport>>,
    down_until: Mutex<Vec<Option<Instant>>>,
    cooldown: Duration,
}

/// Whether a failure of one transport should move the message on to the next.
///
/// Yes for failures of the transport (it is unreachable, slow, refusing us, or cannot be
/// used securely): `Transient`, `Network`, `Timeout`, `Auth`, `Tls`, `Config`. No for the
/// message itself (`InvalidMessage`, and `Permanent`: the server refused *this message*, so
/// another would too), and never for `Ambiguous`: the message may have been delivered, and
/// sending it elsewhere could deliver it twice.
pub(crate) fn moves_on(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Transient
            | ErrorKind::Network
            | ErrorKind::Timeout
            | ErrorKind::Auth
            | ErrorKind::Tls
            | ErrorKind::Config
    )
}

impl Members {
    pub(crate) fn new(list: Vec<Arc<dyn Transport>>, cooldown: Duration) -> Self {
        let n = list.len();
        Members {
            list,
            down_until: Mutex::new(vec![None; n]),
            cooldown,
        }
    }

    pub(crate) fn list(&self) -> &[Arc<dyn Transport>] {
        &self.list
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    #[cfg(test)]
    pub(crate) fn cooldown(&self) -> Duration {
        self.cooldown
    }

    fn is_up(&self, i: usize, now: Instant) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.get(i)
            .copied()
            .flatten()
            .is_none_or(|until| now >= until)
    }

    fn set_down(&self, i: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = down.get_mut(i) {
            *slot = Some(Instant::now() + self.cooldown);
        }
    }

    fn set_up(&self, i: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = down.get_mut(i) {
            *slot = None;
        }
    }

    /// Sends through the members starting at `first` and wrapping around: members that are
    /// up in that order, then (when every one of those failed, or none was up) the ones set
    /// aside, so a message is never refused only because everything failed a moment ago.
    pub(crate) async fn send(
        &self,
        layer: &'static str,
        first: usize,
        message: &PreparedMessage,
    ) -> Result<Receipt, Error> {
        let n = self.list.len();
        let now = Instant::now();
        let order: Vec<usize> = (0..n).map(|k| (first + k) % n.max(1)).collect();
        let (up, down): (Vec<usize>, Vec<usize>) = order.iter().partition(|&&i| self.is_up(i, now));
        let mut last: Option<Error> = None;
        let mut failed = 0u32;
        for i in up.into_iter().chain(down) {
            let member = &self.list[i];
            match member.send_prepared(message).await {
                Ok(mut receipt) => {
                    self.set_up(i);
                    receipt.attempts += failed;
                    if failed > 0 {
                        tracing::info!(
                            layer,
                            transport = %member.describe(),
                            message_id = message.message_id(),
                            "delivered by member {} after {failed} failed",
                            i + 1
                        );
                    }
                    return Ok(receipt);
                }
                Err(err) if moves_on(&err) => {
                    failed += 1;
                    self.set_down(i);
                    tracing::warn!(
                        layer,
                        transport = %member.describe(),
                        message_id = message.message_id(),
                        kind = err.kind().as_str(),
                        code = err.code().map(ToString::to_string),
                        cooldown_s = self.cooldown.as_secs_f64(),
                        "member {} failed; set aside, trying the next: {err}",
                        i + 1
                    );
                    last = Some(err);
                }
                Err(err) => {
                    tracing::debug!(
                        layer,
                        transport = %member.describe(),
                        message_id = message.message_id(),
                        kind = err.kind().as_str(),
                        "not trying another member: {err}"
                    );
                    return Err(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::config(format!("{layer}() has no transports to send through"))
        }))
    }

    /// The first member's preparation (its default sender): one identity per message,
    /// whichever member sends it.
    pub(crate) fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        match self.list.first() {
            Some(first) => first.prepare(message),
            None => Ok(message.prepare(None)?),
        }
    }

    /// The first member's limit: it prepares, and usually sends.
    pub(crate) fn size_limit(&self) -> Option<u64> {
        self.list.first().and_then(|m| m.size_limit())
    }

    /// Ok when at least one member verifies; otherwise the first member's error.
    pub(crate) async fn verify(&self) -> Result<(), Error> {
        let mut first_err = None;
        for member in &self.list {
            match member.verify().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(transport = %member.describe(), "verification failed: {e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::config("no transports to verify")))
    }

    pub(crate) async fn close(&self) {
        for member in &self.list {
            member.close().await;
        }
    }

    pub(crate) fn describe(&self, layer: &str) -> String {
        let inner: Vec<String> = self.list.iter().map(|m| m.describe()).collect();
        format!("{layer}({})", inner.join(", "))
    }
}
