//! Rcpts → (message) → Ready through DATA: `354`, then the message read through the DATA
//! decoder (`relay/data.rs`: only CRLF.CRLF ends it) and streamed to the spool.

use super::state::{Flow, Phase, Session};
use crate::relay::data::DataDecoder;
use crate::relay::reply::Reply;

impl Session {
    /// `DATA`.
    pub(crate) async fn data(&mut self) -> Flow {
        let tx = match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Rcpts(tx) => tx,
            other => {
                let reply = match other {
                    Phase::Greeted => Reply::bad_sequence("Send EHLO or HELO first"),
                    Phase::Ready => Reply::bad_sequence("Need MAIL command"),
                    Phase::MailFrom(_) => Reply::no_valid_recipients(),
                    _ => Reply::bad_sequence("DATA not allowed during BDAT"),
                };
                self.phase = other;
                return self.refuse_data(&reply);
            }
        };
        let (envelope, mut receiving) = match self.open_message(tx).await {
            Ok(opened) => opened,
            Err(reply) => return self.refuse_data(&reply),
        };
        self.conn.reply(&Reply::start_data());

        let limits = &self.ctx.limits;
        let (timeout, max_line) = (limits.data_timeout, limits.max_data_line);
        let mut decoder = DataDecoder::new(max_line);
        let mut decoded = Vec::with_capacity(64 * 1024);
        loop {
            if self.conn.buffered().is_empty() {
                if let Err(stop) = self.conn.fill(timeout, None).await {
                    receiving.abort().await;
                    tracing::info!(target: "outbound::relay", client = %self.client, ?stop, "connection lost within DATA");
                    self.stopped(stop).await;
                    return Flow::Close;
                }
            }
            let (used, ended) = decoder.decode(self.conn.buffered(), &mut decoded);
            self.conn.consume(used);
            receiving.push(&decoded).await;
            decoded.clear();
            if ended {
                break;
            }
        }
        let verdict = receiving
            .finish(decoder.flaws(), max_line, self.user.as_ref())
            .await;
        self.conclude(verdict, &envelope);
        Flow::Continue
    }

    /// Refuses DATA. A client that sent on without waiting for the answer (RFC 2920 section
    /// 3.1 forbids it) would have its message read as commands: close the connection instead.
    fn refuse_data(&mut self, reply: &Reply) -> Flow {
        self.refuse(reply);
        if self.conn.has_pending_input() {
            tracing::warn!(target: "outbound::relay", client = %self.client, "input after a refused DATA: closing");
            self.conn.reply(&Reply::improper_pipelining(&self.ctx.host));
            return Flow::Close;
        }
        Flow::Continue
    }
}
