//! One mail transaction on a ready session: MAIL FROM, RCPT TO, DATA (pipelined when the
//! server allows, else one command per round trip), the payload, the final `.`, and RSET when
//! it failed midway.

use std::time::Instant;

use super::step::Step;
use super::{preflight, Session};
use crate::message::{Envelope, RenderedMessage};
use crate::smtp::reply::{self, Reply, Stage};
use crate::smtp::verdict::Reached;
use crate::smtp::wire::{Command, MailFrom};
use crate::{Error, ErrorKind, RejectedRecipient};

/// What the server accepted.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<RejectedRecipient>,
    pub reply: Reply,
}

/// The recipients the server accepted (and refused) before the payload went out.
#[derive(Debug)]
pub(crate) struct Accepted {
    accepted: Vec<String>,
    rejected: Vec<RejectedRecipient>,
}

/// The replies of one transaction's envelope phase.
pub(super) struct EnvelopeReplies {
    mail: Reply,
    rcpts: Vec<(String, Reply)>,
    /// `None` when DATA was not sent (lockstep, after every recipient was refused).
    data: Option<Reply>,
}

/// How many commands one pipelined write carries at most; larger groups are split so the
/// server's replies never fill the socket buffers while we are still writing.
pub(super) const PIPELINE_GROUP: usize = 100;

impl Session {
    /// Runs one mail transaction. `data` is the dot-stuffed payload (without the final `.`);
    /// `size` the message's size for SIZE; `eight_bit` whether it has 8-bit bytes.
    ///
    /// The session comes back when its connection is still usable (the transaction succeeded,
    /// was refused before MAIL FROM, or was reset), and is dropped otherwise.
    pub(crate) async fn whole(
        mut self,
        envelope: &Envelope,
        data: &RenderedMessage,
        size: usize,
        eight_bit: bool,
    ) -> Step<Delivery> {
        let host = &self.conn.params.host;
        let result = match preflight::mail_from(&self.caps, host, envelope, size, eight_bit) {
            Ok(mail) => self.run(mail, envelope, data).await,
            Err(e) => Err(e),
        };
        self.step(result)
    }

    /// [`whole`](Self::whole), its session and result apart.
    #[cfg(test)]
    pub(crate) async fn transaction(
        self,
        envelope: &Envelope,
        data: &RenderedMessage,
        size: usize,
        eight_bit: bool,
    ) -> (Option<Session>, Result<Delivery, Error>) {
        self.whole(envelope, data, size, eight_bit)
            .await
            .into_parts()
    }

    async fn run(
        &mut self,
        mail: MailFrom<'_>,
        envelope: &Envelope,
        data: &RenderedMessage,
    ) -> Result<Delivery, Error> {
        let mail = Command::Mail(mail);
        let replies = if self.pipelines() {
            self.envelope_pipelined(mail, &envelope.to).await?
        } else {
            self.envelope_lockstep(mail, &envelope.to).await?
        };
        let accepted = self.settle_envelope(replies, envelope).await?;
        self.conn.write_payload(data, &[]).await?;
        self.final_reply(accepted).await
    }

    /// Whether this session pipelines (the server offers PIPELINING and it is not turned off).
    pub(crate) fn pipelines(&self) -> bool {
        self.caps.pipelining && self.conn.params.pipelining
    }

    /// Decides from the envelope's replies whether the payload may follow (the server said 354
    /// and accepted a recipient). When not, the transaction is ended (RSET) and its error
    /// returned; the session stays usable unless that failed.
    pub(super) async fn settle_envelope(
        &mut self,
        replies: EnvelopeReplies,
        envelope: &Envelope,
    ) -> Result<Accepted, Error> {
        if !replies.mail.is_positive() {
            self.abort(replies.data.as_ref()).await;
            return Err(reply::error_for(
                &replies.mail,
                Stage::Mail,
                format!("the server refused the sender <{}>", envelope.from),
            ));
        }
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for (addr, r) in replies.rcpts {
            if r.is_positive() {
                accepted.push(addr);
            } else {
                rejected.push(RejectedRecipient {
                    address: addr,
                    code: r.code,
                    enhanced: r.enhanced.clone(),
                    text: r.one_line(),
                });
            }
        }
        // DATA went out whenever a recipient was accepted (always, when pipelining).
        let data_reply = match replies.data {
            Some(r) if !accepted.is_empty() => r,
            data => {
                self.abort(data.as_ref()).await;
                return Err(all_refused(&rejected));
            }
        };
        if data_reply.code != 354 {
            self.abort(None).await;
            return Err(reply::error_for(
                &data_reply,
                Stage::Data,
                "the server refused DATA",
            ));
        }
        Ok(Accepted { accepted, rejected })
    }

    /// Reads the reply to the final `.` (a failure here is Ambiguous) and counts the
    /// transaction.
    pub(super) async fn final_reply(&mut self, accepted: Accepted) -> Result<Delivery, Error> {
        let final_reply = self.conn.read_reply(Stage::DataEnd).await?;
        self.transactions += 1;
        self.last_used = Instant::now();
        if final_reply.is_positive() {
            Ok(Delivery {
                accepted: accepted.accepted,
                rejected: accepted.rejected,
                reply: final_reply,
            })
        } else {
            Err(reply::error_for(
                &final_reply,
                Stage::DataEnd,
                "the server rejected the message at the end of DATA",
            ))
        }
    }

    /// The replies to one pipelined group of commands, in order. A `421` ends the reading:
    /// the server is closing the channel, and its 421 is the answer, not the lost connection
    /// the replies still awaited would report (RFC 2920 section 3.2).
    pub(super) async fn read_group(
        &mut self,
        group: &[Command<'_>],
        replies: &mut Vec<Reply>,
    ) -> Result<(), Error> {
        for c in group {
            let stage = match c {
                Command::Mail(_) => Stage::Mail,
                Command::Rcpt(_) => Stage::Rcpt,
                _ => Stage::Data,
            };
            let reply = self.conn.read_reply(stage).await?;
            if reply.code == 421 {
                return Err(reply::error_for(
                    &reply,
                    stage,
                    format!(
                        "the server closed the session (421) in reply to {}",
                        stage.what()
                    ),
                ));
            }
            replies.push(reply);
        }
        Ok(())
    }

    /// MAIL, every RCPT and DATA in one write (RFC 2920), then their replies in order.
    async fn envelope_pipelined(
        &mut self,
        mail: Command<'_>,
        recipients: &[String],
    ) -> Result<EnvelopeReplies, Error> {
        let mut commands = Vec::with_capacity(recipients.len() + 2);
        commands.push(mail);
        commands.extend(recipients.iter().map(|r| Command::Rcpt(r)));
        commands.push(Command::Data);
        let mut replies = Vec::with_capacity(commands.len());
        for group in commands.chunks(PIPELINE_GROUP) {
            self.conn.send(group).await?;
            self.read_group(group, &mut replies).await?;
        }
        pair_replies(replies, recipients)
    }

    /// One command per round trip, stopping early when the sender or every recipient is
    /// refused.
    async fn envelope_lockstep(
        &mut self,
        mail: Command<'_>,
        recipients: &[String],
    ) -> Result<EnvelopeReplies, Error> {
        self.conn.send(&[mail]).await?;
        let mail = self.conn.read_reply(Stage::Mail).await?;
        if !mail.is_positive() {
            return Ok(EnvelopeReplies {
                mail,
                rcpts: Vec::new(),
                data: None,
            });
        }
        let mut rcpts = Vec::with_capacity(recipients.len());
        for r in recipients {
            self.conn.send(&[Command::Rcpt(r)]).await?;
            rcpts.push((r.clone(), self.conn.read_reply(Stage::Rcpt).await?));
        }
        let data = if rcpts.iter().any(|(_, r)| r.is_positive()) {
            self.conn.send(&[Command::Data]).await?;
            Some(self.conn.read_reply(Stage::Data).await?)
        } else {
            None
        };
        Ok(EnvelopeReplies { mail, rcpts, data })
    }

    /// Ends a transaction that failed midway: if the server nevertheless asked for data, an
    /// empty payload is ended at once (its `.` alone); then RSET. A failure here leaves the
    /// connection broken.
    async fn abort(&mut self, data_reply: Option<&Reply>) {
        if self.conn.is_broken() {
            return;
        }
        if data_reply.is_some_and(|r| r.code == 354)
            && (self
                .conn
                .write_payload(&RenderedMessage::from_bytes(Vec::new()), &[])
                .await
                .is_err()
                || self.conn.read_reply(Stage::DataEnd).await.is_err())
        {
            // What ended there was an empty payload, never this message's data.
            self.conn.mark_broken(Reached::Commands);
            return;
        }
        self.reset().await;
    }

    /// RSET; the connection stays usable when the server agrees, and is broken otherwise.
    pub(crate) async fn reset(&mut self) {
        if self.conn.send(&[Command::Rset]).await.is_err() {
            return;
        }
        match self.conn.read_reply(Stage::Rset).await {
            Ok(r) if r.is_positive() => {}
            Ok(r) => {
                tracing::debug!(conn = self.id(), reply = %r, "RSET refused; dropping the connection");
                self.conn.mark_broken(Reached::Commands);
            }
            Err(_) => {}
        }
    }
}

/// Pairs the replies of MAIL, each RCPT and DATA with what they answered.
pub(super) fn pair_replies(
    replies: Vec<Reply>,
    recipients: &[String],
) -> Result<EnvelopeReplies, Error> {
    let mut replies = replies.into_iter();
    let mail = replies.next().ok_or_else(missing_reply)?;
    let rcpts = recipients
        .iter()
        .map(|r| Ok((r.clone(), replies.next().ok_or_else(missing_reply)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let data = replies.next();
    Ok(EnvelopeReplies { mail, rcpts, data })
}

fn missing_reply() -> Error {
    Error::new(ErrorKind::Network, "internal: a pipelined reply is missing")
}

/// The error when the server refused every recipient: Transient when every refusal was 4xx.
pub(super) fn all_refused(rejected: &[RejectedRecipient]) -> Error {
    let kind = if rejected.iter().all(|r| (400..500).contains(&r.code)) {
        ErrorKind::Transient
    } else if rejected
        .iter()
        .any(|r| matches!(r.code, 530 | 534 | 535 | 538))
    {
        ErrorKind::Auth
    } else {
        ErrorKind::Permanent
    };
    let list = rejected
        .iter()
        .map(|r| {
            format!(
                "{} ({}{} {})",
                r.address,
                r.code,
                r.enhanced
                    .as_deref()
                    .map(|e| format!(" {e}"))
                    .unwrap_or_default(),
                r.text
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut err = Error::new(kind, format!("the server refused every recipient: {list}"));
    if let Some(first) = rejected.first() {
        err = err
            .with_code(crate::ServerCode::Smtp {
                code: first.code,
                enhanced: first.enhanced.clone(),
            })
            .with_server_text(first.text.clone());
    }
    err
}
