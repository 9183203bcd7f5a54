//! Rcpts → Chunking → Ready through BDAT (CHUNKING, RFC 3030).
//!
//! Every chunk's octets are read, whatever the answer: a refused BDAT (out of sequence, the
//! spool unavailable, a failed transaction) still takes its chunk off the connection, so chunk
//! bytes are never read as commands. A chunk that makes the message too big, or whose write
//! failed, ends the transaction with its reply; later chunks get `503` until the next MAIL.
//! The message gets the same checks as through DATA (bare CR or LF, line lengths) across
//! chunk boundaries, and the same verdict after `BDAT … LAST`.

use super::state::{Chunks, Flow, Phase, Session};
use crate::relay::data::ChunkChecker;
use crate::relay::reply::Reply;

impl Session {
    /// `BDAT size [LAST]`.
    pub(crate) async fn bdat(&mut self, size: usize, last: bool) -> Flow {
        let mut chunks = match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Chunking(chunks) => chunks,
            Phase::Rcpts(tx) if self.ctx.chunking => match self.open_message(tx).await {
                Ok((envelope, receiving)) => Box::new(Chunks {
                    envelope,
                    receiving,
                    checker: ChunkChecker::new(self.ctx.limits.max_data_line),
                }),
                Err(reply) => return self.refuse_chunk(size, &reply).await,
            },
            other => {
                let reply = match &other {
                    _ if !self.ctx.chunking => Reply::not_implemented(),
                    Phase::Greeted => Reply::bad_sequence("Send EHLO or HELO first"),
                    Phase::MailFrom(_) => Reply::no_valid_recipients(),
                    _ => Reply::bad_sequence("Need MAIL command"),
                };
                self.phase = other;
                return self.refuse_chunk(size, &reply).await;
            }
        };

        let timeout = self.ctx.limits.data_timeout;
        let mut remaining = size;
        while remaining > 0 {
            if self.conn.buffered().is_empty() {
                if let Err(stop) = self.conn.fill(timeout, None).await {
                    chunks.receiving.abort().await;
                    self.stopped(stop).await;
                    return Flow::Close;
                }
            }
            let take = remaining.min(self.conn.buffered().len());
            let bytes = &self.conn.buffered()[..take];
            chunks.checker.check(bytes);
            chunks.receiving.push(bytes).await;
            self.conn.consume(take);
            remaining -= take;
        }
        chunks.receiving.write_out().await;

        if !last {
            if let Some(reply) = chunks.receiving.failure() {
                chunks.receiving.abort().await;
                self.refuse(&reply);
                return Flow::Continue;
            }
            self.conn.reply(&Reply::chunk_received(size));
            self.phase = Phase::Chunking(chunks);
            return Flow::Continue;
        }
        let Chunks {
            envelope,
            receiving,
            mut checker,
        } = *chunks;
        let verdict = receiving
            .finish(
                checker.finish(),
                self.ctx.limits.max_data_line,
                self.user.as_ref(),
            )
            .await;
        self.conclude(verdict, &envelope);
        Flow::Continue
    }

    /// Reads the refused chunk's octets off the connection, then answers.
    async fn refuse_chunk(&mut self, size: usize, reply: &Reply) -> Flow {
        if let Err(stop) = self.conn.discard(size, self.ctx.limits.data_timeout).await {
            self.stopped(stop).await;
            return Flow::Close;
        }
        self.refuse(reply);
        Flow::Continue
    }
}
