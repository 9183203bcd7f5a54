//! What DATA and BDAT share: opening the spool for a transaction, and answering the end of a
//! message (and logging it: queue id, Message-ID, size, never a body or an address).

use std::time::SystemTime;

use super::receiving::{Receiving, Verdict};
use super::state::{Session, Transaction};
use crate::relay::headers::Trace;
use crate::relay::reply::Reply;
use crate::relay::spool::Envelope;

impl Session {
    /// Opens the spool for `tx`: the message's receiver, or the reply that refuses it.
    pub(crate) async fn open_message(
        &mut self,
        tx: Transaction,
    ) -> Result<(Envelope, Receiving), Reply> {
        let envelope = self.envelope(tx);
        let writer = match self.ctx.spool.open(&envelope).await {
            Ok(writer) => writer,
            Err(e) => {
                tracing::warn!(target: "outbound::relay", client = %self.client, error = %e, "spool refused a new message");
                return Err(e.reply());
            }
        };
        let helo = envelope.helo.clone();
        let id = writer.id().clone();
        let trace = Trace {
            helo: &helo,
            client: self.client.ip(),
            host: &self.ctx.host,
            extended: self.helo.as_ref().is_some_and(|h| h.extended),
            tls: self.tls,
            authenticated: self.user.is_some(),
            id: id.as_str(),
            at: SystemTime::now(),
        };
        let limits = &self.ctx.limits;
        let receiving = Receiving::new(
            writer,
            &trace,
            limits.max_message_size,
            limits.max_header_section,
        );
        Ok((envelope, receiving))
    }

    /// Answers the end of a message.
    pub(crate) fn conclude(&mut self, verdict: Verdict, envelope: &Envelope) {
        match verdict {
            Verdict::Queued(id, facts) => {
                tracing::info!(
                    target: "outbound::relay",
                    id = %id,
                    message_id = %facts.message_id,
                    size = facts.size,
                    recipients = envelope.rcpt_to.len(),
                    user = envelope.user.as_ref().map(|u| u.name.as_str()).unwrap_or(""),
                    client = %self.client,
                    "accepted"
                );
                self.conn.reply(&Reply::queued(id.as_str()));
            }
            Verdict::Refused(reply) => {
                tracing::info!(
                    target: "outbound::relay",
                    client = %self.client,
                    code = reply.code(),
                    status = reply.status().unwrap_or(""),
                    "message refused"
                );
                self.conn.reply(&reply);
            }
        }
    }
}
