//! One SMTP session on the server side, by phase (the states are in `state.rs`):
//!
//! - `io.rs`: the connection (read buffer, replies held until the relay waits for the client,
//!   timeouts, the STARTTLS upgrade);
//! - `hello.rs`: the greeting, EHLO/HELO, STARTTLS;
//! - `auth.rs`: AUTH PLAIN and LOGIN, the delay and the lockout;
//! - `envelope.rs`: MAIL (who may relay, allowed senders) and RCPT;
//! - `data.rs`, `bdat.rs`: the message through DATA or BDAT; `message.rs` what both share;
//!   `receiving.rs` the message on its way to the spool.
//!
//! This file reads the commands (with smtp-proto's request parser) and hands each to its
//! phase.

mod auth;
mod bdat;
mod data;
mod envelope;
mod hello;
mod io;
mod message;
mod receiving;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use smtp_proto::Request;

use self::io::{Conn, Line};
use self::state::{Flow, Phase, Session};
use super::context::Context;
use super::reply::Reply;

pub(crate) use self::io::{Shutdown, Stream};

/// Runs one session on an accepted connection until it ends. `implicit_tls`: the listener
/// speaks TLS from the first byte.
pub(crate) async fn run(
    ctx: Arc<Context>,
    stream: Box<dyn Stream>,
    client: SocketAddr,
    implicit_tls: bool,
    shutdown: Shutdown,
) {
    let limits = &ctx.limits;
    let buffer = 64 * 1024 + limits.max_auth_line.max(limits.max_command_line);
    let mut conn = Conn::new(stream, buffer, limits.command_timeout);
    if implicit_tls {
        let Some(acceptor) = ctx.tls.clone() else {
            return;
        };
        if let Err(stop) = conn.start_tls(&acceptor, limits.tls_timeout).await {
            tracing::info!(target: "outbound::relay", %client, ?stop, "TLS handshake failed");
            return;
        }
    }
    let mut session = Session {
        ctx,
        conn,
        client,
        phase: Phase::Greeted,
        helo: None,
        tls: implicit_tls,
        user: None,
        errors: 0,
        shutdown,
    };
    tracing::debug!(target: "outbound::relay", %client, tls = implicit_tls, "session started");
    session.greet();
    session.serve().await;
    // However it ended, a message under way is given up (the spool forgets it).
    session.reset().await;
    let _ = session.conn.flush().await;
    tracing::debug!(target: "outbound::relay", %client, "session ended");
}

impl Session {
    async fn serve(&mut self) {
        loop {
            let limits = &self.ctx.limits;
            let (max, timeout) = (limits.max_command_line, limits.command_timeout);
            let line = self
                .conn
                .read_line(max, timeout, Some(&mut self.shutdown))
                .await;
            let flow = match line {
                Ok(Line::Text(text)) => self.command(text).await,
                Ok(Line::TooLong) => {
                    self.refuse(&Reply::line_too_long());
                    Flow::Continue
                }
                Ok(Line::BareNewline) => {
                    self.refuse(&Reply::bare_newline_in_command());
                    Flow::Continue
                }
                Err(stop) => {
                    self.stopped(stop).await;
                    Flow::Close
                }
            };
            if flow == Flow::Close {
                return;
            }
            if self.errors >= self.ctx.limits.max_errors.max(1) {
                tracing::info!(target: "outbound::relay", client = %self.client, "too many errors: closing");
                self.conn.reply(&Reply::too_many_errors(&self.ctx.host));
                self.reset().await;
                return;
            }
        }
    }

    /// Parses one command line (without its CRLF) and runs it.
    async fn command(&mut self, mut text: Vec<u8>) -> Flow {
        text.extend_from_slice(b"\r\n");
        let request = match Request::parse(&mut text.iter()) {
            Ok(request) => request.into_owned(),
            Err(e) => return self.unparsed(e),
        };
        match request {
            Request::Ehlo { host } => self.hello(&host, true).await,
            Request::Helo { host } => self.hello(&host, false).await,
            Request::StartTls => return self.start_tls().await,
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, &initial_response).await,
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => return self.data().await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => {
                if !bdat_size_is_exact(&text, chunk_size) {
                    return self.unparsed(smtp_proto::Error::SyntaxError {
                        syntax: "BDAT chunk-size [LAST]",
                    });
                }
                return self.bdat(chunk_size, is_last).await;
            }
            Request::Rset => {
                self.reset().await;
                self.conn.reply(&Reply::ok());
            }
            Request::Noop { .. } => self.conn.reply(&Reply::ok()),
            Request::Quit => {
                self.reset().await;
                self.conn.reply(&Reply::bye());
                return Flow::Close;
            }
            Request::Vrfy { .. } => self.conn.reply(&Reply::cannot_vrfy()),
            Request::Help { .. } => self.conn.reply(&Reply::help()),
            Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.refuse(&Reply::not_implemented()),
        }
        Flow::Continue
    }

    /// Answers a line smtp-proto could not parse.
    fn unparsed(&mut self, error: smtp_proto::Error) -> Flow {
        use smtp_proto::Error as E;
        // A BDAT whose size cannot be read leaves its chunk on the connection, where it
        // would be read as commands: end the session rather than guess.
        let lost_sync = matches!(&error, E::SyntaxError { syntax } if syntax.starts_with("BDAT"));
        let reply = match error {
            E::UnknownCommand => Reply::unrecognized(),
            E::InvalidSenderAddress => Reply::bad_sender(),
            E::InvalidRecipientAddress => Reply::bad_recipient(),
            E::SyntaxError { syntax } => Reply::syntax(format!("Syntax: {syntax}")),
            E::InvalidParameter { param } => Reply::syntax(format!("Invalid parameter {param}")),
            E::UnsupportedParameter { param } => Reply::unsupported_parameter(&param),
            _ => Reply::unrecognized(),
        };
        self.refuse(&reply);
        if lost_sync {
            return Flow::Close;
        }
        Flow::Continue
    }
}

/// smtp-proto reads a BDAT size of more than 19 digits as a wrong, smaller number (it
/// saturates, then starts again); reading that many octets would take the rest of the chunk
/// as commands. The size must be exactly the digits the client sent.
fn bdat_size_is_exact(line: &[u8], size: usize) -> bool {
    let text = String::from_utf8_lossy(line);
    let digits = text.split_ascii_whitespace().nth(1).unwrap_or("");
    digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<usize>().ok() == Some(size)
}
