//! AUTH PLAIN (RFC 4616) and LOGIN against the users file (RFC 4954): offered after TLS or
//! to loopback clients; each failure answered after a growing delay; the failure that
//! reaches the limit locks the client's address (on loopback: address and user name) out
//! and closes the connection.

use base64::Engine;
use secrecy::SecretSlice;

use super::io::Line;
use super::state::{Flow, Phase, Session};
use crate::relay::limits::AfterFailure;
use crate::relay::reply::Reply;

/// What the client sent, or why there is nothing to check.
enum Exchange {
    Credentials {
        name: Vec<u8>,
        password: SecretSlice<u8>,
    },
    Refused(Reply),
    Closed,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl Session {
    /// `AUTH mechanism [initial-response]`.
    pub(crate) async fn auth(&mut self, mechanism: u64, initial: &str) -> Flow {
        if let Some(refusal) = self.auth_refusal() {
            self.refuse(&refusal);
            return Flow::Continue;
        }
        let exchange = match mechanism {
            smtp_proto::AUTH_PLAIN => self.plain(initial).await,
            smtp_proto::AUTH_LOGIN => self.login(initial).await,
            _ => Exchange::Refused(Reply::unknown_mechanism()),
        };
        let (name, password) = match exchange {
            Exchange::Credentials { name, password } => (name, password),
            Exchange::Refused(reply) => {
                self.refuse(&reply);
                return Flow::Continue;
            }
            Exchange::Closed => return Flow::Close,
        };
        // Locked out: answered without looking at the password.
        if self.ctx.failures.is_locked(self.client.ip(), &name) {
            self.refuse(&Reply::locked_out());
            return Flow::Continue;
        }
        self.check(name, password).await
    }

    /// Why AUTH cannot be done now, if it cannot.
    fn auth_refusal(&self) -> Option<Reply> {
        if self.ctx.users.is_none() {
            return Some(Reply::bad_sequence("Authentication not enabled"));
        }
        match self.phase {
            Phase::Greeted => return Some(Reply::bad_sequence("Send EHLO first")),
            Phase::Ready => {}
            _ => {
                return Some(Reply::bad_sequence(
                    "AUTH not allowed during a mail transaction",
                ))
            }
        }
        if self.user.is_some() {
            return Some(Reply::bad_sequence("Already authenticated"));
        }
        if !self.ctx.access.offers_auth(self.client.ip(), self.tls) {
            return Some(Reply::tls_required());
        }
        None
    }

    /// PLAIN: `authzid NUL authcid NUL password`, in the command or after a `334 `.
    async fn plain(&mut self, initial: &str) -> Exchange {
        let response = if initial.is_empty() {
            match self.challenge("").await {
                Ok(r) => r,
                Err(e) => return e,
            }
        } else {
            match decode(initial) {
                Ok(r) => r,
                Err(reply) => return Exchange::Refused(reply),
            }
        };
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(name), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Exchange::Refused(Reply::bad_auth_response());
        };
        // Acting for another identity is not something a relay user may do.
        if !authz.is_empty() && authz != name {
            return Exchange::Credentials {
                name: Vec::new(),
                password: SecretSlice::from(Vec::new()),
            };
        }
        Exchange::Credentials {
            name: name.to_vec(),
            password: SecretSlice::from(password.to_vec()),
        }
    }

    /// LOGIN: the user name (in the command or after `334 Username:`), then the password.
    async fn login(&mut self, initial: &str) -> Exchange {
        let name = if initial.is_empty() {
            match self.challenge("VXNlcm5hbWU6").await {
                Ok(r) => r,
                Err(e) => return e,
            }
        } else {
            match decode(initial) {
                Ok(r) => r,
                Err(reply) => return Exchange::Refused(reply),
            }
        };
        let password = match self.challenge("UGFzc3dvcmQ6").await {
            Ok(r) => r,
            Err(e) => return e,
        };
        Exchange::Credentials {
            name,
            password: SecretSlice::from(password),
        }
    }

    /// Sends `334 challenge` and reads the client's base64 answer.
    async fn challenge(&mut self, challenge: &'static str) -> Result<Vec<u8>, Exchange> {
        self.conn.reply(&Reply::plain(334, challenge));
        let limits = &self.ctx.limits;
        let line = self
            .conn
            .read_line(limits.max_auth_line, limits.command_timeout, None)
            .await;
        match line {
            Ok(Line::Text(text)) if text == b"*" => Err(Exchange::Refused(Reply::auth_cancelled())),
            Ok(Line::Text(text)) => {
                let text = String::from_utf8(text).unwrap_or_default();
                decode(&text).map_err(Exchange::Refused)
            }
            Ok(Line::TooLong) => Err(Exchange::Refused(Reply::auth_line_too_long())),
            Ok(Line::BareNewline) => Err(Exchange::Refused(Reply::bad_auth_response())),
            Err(stop) => {
                self.stopped(stop).await;
                Err(Exchange::Closed)
            }
        }
    }

    /// Checks the password off the async workers, then answers: at once when right, after a
    /// delay when wrong.
    async fn check(&mut self, name: Vec<u8>, password: SecretSlice<u8>) -> Flow {
        let ip = self.client.ip();
        let tried = name.clone();
        let verified = match String::from_utf8(name) {
            Ok(name) if !name.is_empty() => {
                // The permit bounds the memory Argon2id takes (about 19 MiB a check).
                let permit = self.ctx.checks.acquire().await.ok();
                let ctx = self.ctx.clone();
                let user = tokio::task::spawn_blocking(move || {
                    ctx.users.as_ref().and_then(|u| u.verify(&name, &password))
                })
                .await
                .ok()
                .flatten();
                drop(permit);
                user
            }
            _ => None,
        };
        if let Some(user) = verified {
            self.ctx.failures.succeeded(ip, &tried);
            tracing::info!(target: "outbound::relay", client = %self.client, user = %user.name, "authenticated");
            self.user = Some(user);
            self.conn.reply(&Reply::auth_ok());
            return Flow::Continue;
        }
        let after = self.ctx.failures.failed(ip, &tried);
        tracing::warn!(target: "outbound::relay", client = %self.client, locked_out = matches!(after, AfterFailure::LockedOut(_)), "AUTH failed");
        match after {
            AfterFailure::Delay(delay) => {
                tokio::time::sleep(delay).await;
                self.refuse(&Reply::auth_failed());
                Flow::Continue
            }
            AfterFailure::LockedOut(delay) => {
                tokio::time::sleep(delay).await;
                self.conn.reply(&Reply::locked_out_now(&self.ctx.host));
                let _ = self.conn.flush().await;
                Flow::Close
            }
        }
    }
}

/// Base64 (RFC 4954: `=` is an empty response).
fn decode(text: &str) -> Result<Vec<u8>, Reply> {
    let text = text.trim();
    if text == "=" {
        return Ok(Vec::new());
    }
    B64.decode(text).map_err(|_| Reply::bad_auth_response())
}
