//! A transaction in steps, so that a connection's driver (`smtp::lane`) can write the next
//! transaction's MAIL, RCPT and DATA right behind this one's final `.` (RFC 2920 section 3.1)
//! and read every reply in order:
//!
//! ```text
//! write  MAIL RCPT… DATA                      (begin; only for the first one on a quiet connection)
//! read   250 250… 354                          (envelope)
//! write  payload "." MAIL' RCPT'… DATA'        (payload, with the next transaction's commands)
//! read   250 (this one) 250 250… 354 (next)    (final_reply, then the next one's envelope)
//! ```
//!
//! so a busy reused connection costs one round trip per message instead of two. Each reply is
//! read by the step of the transaction it answers, so a failure is never given to another
//! transaction; a connection lost after a final `.` is Ambiguous for that message only.

use super::preflight;
use super::step::{Lost, Step};
use super::transaction::{pair_replies, Accepted, Delivery, PIPELINE_GROUP};
use super::Session;
use crate::message::{Envelope, RenderedMessage};
use crate::smtp::verdict::{self, Reached};
use crate::smtp::wire::Command;
use crate::Error;

/// What one transaction sends and needs: its envelope, payload size and 8-bit flag.
#[derive(Clone, Copy)]
pub(crate) struct Outline<'a> {
    pub envelope: &'a Envelope,
    pub size: usize,
    pub eight_bit: bool,
}

impl Session {
    /// MAIL FROM, every RCPT TO and DATA for `outline`, checked against the server's
    /// capabilities first. `Ok(None)` when the transaction cannot go out as one pipelined
    /// group (no PIPELINING, or too many recipients): run it with
    /// [`transaction`](Session::transaction) instead. An error here sent nothing.
    pub(crate) fn envelope_commands<'a>(
        &self,
        outline: Outline<'a>,
    ) -> Result<Option<Vec<Command<'a>>>, Error> {
        let host = &self.conn.params.host;
        let mail = preflight::mail_from(
            &self.caps,
            host,
            outline.envelope,
            outline.size,
            outline.eight_bit,
        )?;
        if !self.pipelines() || outline.envelope.to.len() + 2 > PIPELINE_GROUP {
            return Ok(None);
        }
        let mut commands = Vec::with_capacity(outline.envelope.to.len() + 2);
        commands.push(Command::Mail(mail));
        commands.extend(outline.envelope.to.iter().map(|r| Command::Rcpt(r)));
        commands.push(Command::Data);
        Ok(Some(commands))
    }

    /// Writes a transaction's envelope commands on a quiet connection.
    pub(crate) async fn begin(mut self, commands: &[Command<'_>]) -> Result<Session, Lost> {
        let written = self.conn.send(commands).await;
        self.wrote(written)
    }

    /// Reads the replies to a transaction's envelope (written by [`begin`](Self::begin) or
    /// behind the previous end of data) and decides whether its payload may follow. A refusal
    /// ends the transaction (RSET) and is this transaction's error.
    pub(crate) async fn envelope(mut self, envelope: &Envelope) -> Step<Accepted> {
        let accepted = self.read_envelope(envelope).await;
        self.step(accepted)
    }

    async fn read_envelope(&mut self, envelope: &Envelope) -> Result<Accepted, Error> {
        let mut replies = Vec::with_capacity(envelope.to.len() + 2);
        // Only the kinds of the commands matter for reading (which stage each reply answers).
        let mut shape = Vec::with_capacity(envelope.to.len() + 2);
        shape.push(Command::Mail(crate::smtp::wire::MailFrom {
            address: "",
            size: None,
            eight_bit: false,
            smtputf8: false,
        }));
        shape.extend(envelope.to.iter().map(|r| Command::Rcpt(r)));
        shape.push(Command::Data);
        self.read_group(&shape, &mut replies).await?;
        let replies = pair_replies(replies, &envelope.to)?;
        self.settle_envelope(replies, envelope).await
    }

    /// Writes the payload and the final `.`, with `next` (the next transaction's envelope
    /// commands, possibly none) in the same write as the `.`. A failure records how far the
    /// writing got ([`Lost::reached`]): before the `.`, this message's Network/Timeout error;
    /// from its first byte on, Ambiguous (`verdict`).
    pub(crate) async fn payload(
        mut self,
        data: &RenderedMessage,
        next: &[Command<'_>],
    ) -> Result<Session, Lost> {
        let written = self.conn.write_payload(data, next).await;
        self.wrote(written)
    }

    /// Reads the reply to the final `.` (see [`payload`](Self::payload)).
    pub(crate) async fn end_of_data(mut self, accepted: Accepted) -> Step<Delivery> {
        let delivered = self.final_reply(accepted).await;
        self.step(delivered)
    }

    /// Counts a transaction whose commands went out behind the previous `.`.
    pub(crate) fn note_pipelined(&self) {
        self.conn
            .counters()
            .pipelined_transactions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Messages up to this size go with `BDAT` when the server offers CHUNKING: the chunk is
/// encoded into memory first (its exact size comes first on the wire), which for a larger
/// message would cost a second copy of it; DATA streams instead.
const BDAT_MAX: usize = 1024 * 1024;

/// A `BDAT` transaction written by [`Session::write_bdat`] and not read yet.
#[derive(Debug)]
pub(crate) struct BdatSent {
    /// It began with RSET (written behind a transaction whose outcome was not known).
    reset: bool,
}

impl Session {
    /// Whether a message of `size` bytes for `recipients` recipients goes with `BDAT` on this
    /// session: the server offers CHUNKING and PIPELINING, both are enabled, the message is
    /// small enough to join into one chunk and its commands fit one pipelined group.
    pub(crate) fn chunks(&self, size: usize, recipients: usize) -> bool {
        self.caps.chunking
            && self.caps.pipelining
            && self.conn.params.chunking
            && self.conn.params.pipelining
            && size <= BDAT_MAX
            && recipients + 3 <= PIPELINE_GROUP
    }

    /// Writes one transaction with `BDAT n LAST` (RFC 3030) and does not wait: MAIL, every
    /// RCPT, `BDAT` and the message in one write. Its replies are read by
    /// [`read_bdat`](Self::read_bdat), in the order the transactions were written, so a
    /// connection can carry several such transactions at once (RFC 3030 lets a client
    /// pipeline BDAT, and unlike DATA it need not wait for a 354). `reset`: begin with RSET,
    /// for a transaction written behind one whose outcome is not known yet (a refused
    /// transaction leaves the server's state to the server; RSET makes each start clean, so
    /// one transaction's refusal cannot become the next one's).
    ///
    /// An error here: a refusal before anything was written (the message needs an extension
    /// the server lacks, or is too large), or the connection failed before the chunk was
    /// written whole (nothing can have been delivered).
    pub(crate) async fn write_bdat(
        mut self,
        outline: Outline<'_>,
        data: &[u8],
        reset: bool,
    ) -> Step<BdatSent> {
        let sent = self.send_bdat(outline, data, reset).await;
        self.step(sent)
    }

    async fn send_bdat(
        &mut self,
        outline: Outline<'_>,
        data: &[u8],
        reset: bool,
    ) -> Result<BdatSent, Error> {
        let envelope = outline.envelope;
        let host = &self.conn.params.host;
        let mail =
            preflight::mail_from(&self.caps, host, envelope, outline.size, outline.eight_bit)?;
        let chunk = crate::smtp::wire::encode_bdat(data);
        let mut commands = Vec::with_capacity(envelope.to.len() + 3);
        if reset {
            commands.push(Command::Rset);
        }
        commands.push(Command::Mail(mail));
        commands.extend(envelope.to.iter().map(|r| Command::Rcpt(r)));
        commands.push(Command::BdatLast(chunk.len()));
        self.conn.send_with_chunk(&commands, &chunk).await?;
        Ok(BdatSent { reset })
    }

    /// Reads the replies of the oldest transaction written by [`write_bdat`](Self::write_bdat)
    /// and not read yet. The server holds the whole message from the moment it was written,
    /// so losing the connection while waiting for any of these replies is Ambiguous. A
    /// refusal is this transaction's error and leaves the connection usable; the next
    /// transaction's RSET, or [`reset`](Session::reset), starts clean.
    pub(crate) async fn read_bdat(mut self, sent: BdatSent, envelope: &Envelope) -> Step<Delivery> {
        let delivered = self.read_bdat_replies(sent, envelope).await;
        self.step(delivered)
    }

    async fn read_bdat_replies(
        &mut self,
        sent: BdatSent,
        envelope: &Envelope,
    ) -> Result<Delivery, Error> {
        use crate::smtp::reply::{self, Stage};
        let stages = sent
            .reset
            .then_some(Stage::Rset)
            .into_iter()
            .chain(std::iter::once(Stage::Mail))
            .chain(envelope.to.iter().map(|_| Stage::Rcpt))
            .chain(std::iter::once(Stage::DataEnd));
        let mut replies = Vec::with_capacity(envelope.to.len() + 3);
        for stage in stages {
            let r = self.conn.read_reply_committed(stage).await?;
            if r.code == 421 {
                return Err(reply::error_for(
                    &r,
                    stage,
                    format!(
                        "the server closed the session (421) in reply to {}",
                        stage.what()
                    ),
                ));
            }
            replies.push(r);
        }
        let mut replies = replies.into_iter();
        if sent.reset {
            // The server refused RSET yet read this transaction's commands and its whole
            // message after it: what it made of them is unknown, and so is its state (the
            // connection is not reused).
            if let Some(r) = replies.next().filter(|r| !r.is_positive()) {
                self.conn.mark_broken(Reached::Whole);
                return Err(verdict::unclear(Reached::Whole, &r.one_line()));
            }
        }
        let (Some(mail), Some(bdat)) = (replies.next(), replies.next_back()) else {
            return Err(Error::new(
                crate::ErrorKind::Network,
                "internal: a pipelined reply is missing",
            ));
        };
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for (addr, r) in envelope.to.iter().zip(replies) {
            if r.is_positive() {
                accepted.push(addr.clone());
            } else {
                rejected.push(crate::RejectedRecipient {
                    address: addr.clone(),
                    code: r.code,
                    enhanced: r.enhanced.clone(),
                    text: r.one_line(),
                });
            }
        }
        self.last_used = std::time::Instant::now();
        if !mail.is_positive() {
            Err(reply::error_for(
                &mail,
                Stage::Mail,
                format!("the server refused the sender <{}>", envelope.from),
            ))
        } else if accepted.is_empty() {
            Err(super::transaction::all_refused(&rejected))
        } else if !bdat.is_positive() {
            Err(reply::error_for(
                &bdat,
                Stage::DataEnd,
                "the server rejected the message at the end of its data (BDAT)",
            ))
        } else {
            self.transactions += 1;
            Ok(Delivery {
                accepted,
                rejected,
                reply: bdat,
            })
        }
    }
}

impl Session {
    /// RSET, to start clean after a refused `BDAT` transaction (RFC 3030 leaves the state
    /// after a refused chunk to the server); the session comes back if the server agreed.
    pub(crate) async fn start_clean(mut self) -> Option<Session> {
        self.reset().await;
        self.usable()
    }
}
