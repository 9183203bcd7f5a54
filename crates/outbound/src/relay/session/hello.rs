//! Greeted → Ready: EHLO and HELO (with the extensions the relay announces), and STARTTLS
//! (back to Greeted, under TLS).

use std::borrow::Cow;

use super::io::Stop;
use super::state::{Flow, Helo, Phase, Session};
use crate::relay::reply::Reply;

impl Session {
    /// EHLO (`extended`) or HELO: ends any transaction; EHLO lists the extensions.
    pub(crate) async fn hello(&mut self, name: &str, extended: bool) {
        self.reset().await;
        self.phase = Phase::Ready;
        self.helo = Some(Helo {
            name: name.to_string(),
            extended,
        });
        let host = &self.ctx.host;
        if !extended {
            self.conn.reply(&Reply::plain(250, host.clone()));
            return;
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            format!("{host} greets {name}").into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.ctx.limits.max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.ctx.chunking {
            lines.push("CHUNKING".into());
        }
        if self.ctx.tls.is_some() && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.ctx.access.offers_auth(self.client.ip(), self.tls) {
            lines.push("AUTH PLAIN LOGIN".into());
            // The pre-RFC 2554 form some Microsoft stacks (old Outlook, printers and scanners
            // built on them) look for instead (Postfix's `broken_sasl_auth_clients`).
            lines.push("AUTH=PLAIN LOGIN".into());
        }
        self.conn.reply(&Reply::multi(250, lines));
    }

    /// STARTTLS (RFC 3207): only after EHLO, outside a transaction, once.
    pub(crate) async fn start_tls(&mut self) -> Flow {
        let Some(acceptor) = self.ctx.tls.clone() else {
            self.refuse(&Reply::not_implemented());
            return Flow::Continue;
        };
        if self.tls {
            self.refuse(&Reply::bad_sequence("TLS already active"));
            return Flow::Continue;
        }
        match self.phase {
            Phase::Greeted => {
                self.refuse(&Reply::bad_sequence("Send EHLO first"));
                return Flow::Continue;
            }
            Phase::Ready => {}
            _ => {
                self.refuse(&Reply::bad_sequence(
                    "STARTTLS not allowed during a mail transaction",
                ));
                return Flow::Continue;
            }
        }
        self.conn.reply(&Reply::start_tls());
        match self
            .conn
            .start_tls(&acceptor, self.ctx.limits.tls_timeout)
            .await
        {
            Ok(()) => {
                // Nothing learned before TLS holds after it (section 4.2).
                self.tls = true;
                self.helo = None;
                self.user = None;
                self.phase = Phase::Greeted;
                Flow::Continue
            }
            Err(stop) => {
                tracing::info!(target: "outbound::relay", client = %self.client, ?stop, "TLS handshake failed");
                Flow::Close
            }
        }
    }

    /// The greeting (`220`), or nothing when the connection is already closing.
    pub(crate) fn greet(&mut self) {
        let text = format!("{} ESMTP outbound relay", self.ctx.host);
        self.conn.reply(&Reply::plain(220, text));
    }

    /// Says why the session ends when reading stopped, and ends it.
    pub(crate) async fn stopped(&mut self, stop: Stop) {
        let reply = match stop {
            Stop::Closed => None,
            Stop::TimedOut => Some(Reply::timeout(&self.ctx.host)),
            Stop::Shutdown => Some(Reply::shutting_down(&self.ctx.host)),
        };
        if let Some(reply) = reply {
            self.conn.reply(&reply);
            let _ = self.conn.flush().await;
        }
        self.reset().await;
    }
}
