//! A message on its way from the client to the spool, for DATA and BDAT alike: the relay's
//! fields added in front (`headers.rs`), the bytes written a chunk at a time, the SIZE limit,
//! and the verdict at the end.

use crate::relay::data::Flaws;
use crate::relay::headers::{Stamper, Trace};
use crate::relay::reply::Reply;
use crate::relay::spool::{MessageFacts, QueueId, SpoolWriter};
use crate::relay::users::AuthenticatedUser;

/// Bytes gathered before each write to the spool.
const WRITE_CHUNK: usize = 64 * 1024;

pub(crate) struct Receiving {
    /// `None` once the message failed (the rest is read and dropped).
    writer: Option<Box<dyn SpoolWriter>>,
    id: QueueId,
    stamper: Stamper,
    out: Vec<u8>,
    /// The client's octets so far.
    size: u64,
    max_size: u64,
    too_big: bool,
    /// The spool's failure, if writing failed.
    failure: Option<Reply>,
}

/// How a message ended.
pub(crate) enum Verdict {
    /// Durable: answer `250`.
    Queued(QueueId, MessageFacts),
    /// Refused or not stored: answer this.
    Refused(Reply),
}

impl Receiving {
    pub(crate) fn new(
        writer: Box<dyn SpoolWriter>,
        trace: &Trace<'_>,
        max_size: u64,
        max_header: usize,
    ) -> Self {
        Receiving {
            id: writer.id().clone(),
            writer: Some(writer),
            stamper: Stamper::new(trace, max_header),
            out: Vec::with_capacity(WRITE_CHUNK),
            size: 0,
            max_size,
            too_big: false,
            failure: None,
        }
    }

    /// Whether the message already failed (too big, or the spool refused a write).
    pub(crate) fn failure(&self) -> Option<Reply> {
        if self.too_big {
            Some(Reply::too_big())
        } else {
            self.failure.clone()
        }
    }

    /// The next bytes of the message as the client meant them.
    pub(crate) async fn push(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.size > self.max_size && !self.too_big {
            self.too_big = true;
            self.abort_writer().await;
        }
        if self.writer.is_none() {
            return;
        }
        self.stamper.push(bytes, &mut self.out);
        if self.out.len() >= WRITE_CHUNK {
            self.write_out().await;
        }
    }

    /// Writes what is gathered (the end of a BDAT chunk: the client waits for its reply).
    pub(crate) async fn write_out(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            self.out.clear();
            return;
        };
        if self.out.is_empty() {
            return;
        }
        let result = writer.write(&self.out).await;
        self.out.clear();
        if let Err(e) = result {
            tracing::warn!(target: "outbound::relay", id = %self.id, error = %e, "spool write failed");
            self.failure = Some(e.reply());
            self.abort_writer().await;
        }
    }

    /// The client went away or the transaction was given up.
    pub(crate) async fn abort(mut self) {
        self.abort_writer().await;
    }

    async fn abort_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort().await;
        }
        self.out.clear();
    }

    /// The message ended: refuse it, or have the spool make it durable.
    pub(crate) async fn finish(
        mut self,
        flaws: Flaws,
        max_line: usize,
        user: Option<&AuthenticatedUser>,
    ) -> Verdict {
        if self.writer.is_some() {
            self.stamper.finish(&mut self.out);
            self.write_out().await;
        }
        let refusal = if self.too_big {
            Some(Reply::too_big())
        } else if flaws.bare_newline() {
            Some(Reply::bare_newline_in_data())
        } else if flaws.long_line {
            Some(Reply::data_line_too_long(max_line))
        } else if !self.authors_allowed(user) {
            Some(Reply::from_not_allowed())
        } else {
            self.failure.take()
        };
        if let Some(reply) = refusal {
            self.abort_writer().await;
            return Verdict::Refused(reply);
        }
        let Some(writer) = self.writer.take() else {
            return Verdict::Refused(Reply::not_stored());
        };
        let facts = self.stamper.message_facts();
        match writer.commit(&facts).await {
            Ok(id) => Verdict::Queued(id, facts),
            Err(e) => {
                tracing::warn!(target: "outbound::relay", id = %self.id, error = %e, "spool commit failed");
                Verdict::Refused(e.reply())
            }
        }
    }

    /// A user with sender patterns may use only them in `From:` and `Sender:` too.
    fn authors_allowed(&self, user: Option<&AuthenticatedUser>) -> bool {
        let Some(user) = user.filter(|u| !u.senders.is_empty()) else {
            return true;
        };
        let Some(head) = self.stamper.head_facts() else {
            return true;
        };
        !head.unreadable_author && head.authors.iter().all(|a| user.may_send_as(a))
    }
}
