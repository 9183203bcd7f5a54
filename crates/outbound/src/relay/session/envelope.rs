//! Ready → MailFrom → Rcpts: who may relay (checked at MAIL), the envelope sender a user may
//! use, the SIZE announced, the parameters the relay announced (SIZE, BODY, SMTPUTF8, and
//! AUTH=, RFC 4954 section 5) and the recipient count.

use smtp_proto::{MailFrom, RcptTo, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8};

use super::state::{Phase, Session, Transaction};
use crate::relay::access::Relay;
use crate::relay::reply::Reply;

impl Session {
    /// `MAIL FROM:<address> [parameters]`.
    pub(crate) fn mail(&mut self, from: MailFrom<String>) {
        let reply = match self.mail_refusal(&from) {
            Some(reply) => reply,
            None => {
                self.phase = Phase::MailFrom(Transaction {
                    mail_from: from.address,
                    rcpt_to: Vec::new(),
                    smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
                    eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
                });
                self.conn.reply(&Reply::sender_ok());
                return;
            }
        };
        self.refuse(&reply);
    }

    fn mail_refusal(&self, from: &MailFrom<String>) -> Option<Reply> {
        match self.phase {
            Phase::Greeted => return Some(Reply::bad_sequence("Send EHLO or HELO first")),
            Phase::Ready => {}
            _ => return Some(Reply::bad_sequence("Nested MAIL command")),
        }
        match self
            .ctx
            .access
            .relay(self.client.ip(), self.user.is_some(), self.tls)
        {
            Relay::Allowed => {}
            Relay::NeedsAuth => return Some(Reply::auth_required()),
            Relay::NeedsTls => return Some(Reply::tls_required()),
            Relay::Denied => return Some(Reply::relay_denied()),
        }
        if let Some(name) = unannounced_mail_parameter(from) {
            return Some(Reply::unsupported_parameter(name));
        }
        let extended = self.helo.as_ref().is_some_and(|h| h.extended);
        if !extended && (from.flags != 0 || from.size != 0 || from.auth.is_some()) {
            return Some(Reply::unsupported_parameter("(parameters need EHLO)"));
        }
        if from.size as u64 > self.ctx.limits.max_message_size {
            return Some(Reply::too_big());
        }
        if !from.address.is_ascii() && from.flags & MAIL_SMTPUTF8 == 0 {
            return Some(Reply::utf8_address_without_smtputf8());
        }
        if let Some(user) = &self.user {
            if !user.may_send_as(&from.address) {
                tracing::warn!(target: "outbound::relay", client = %self.client, user = %user.name, "envelope sender not allowed for the user");
                return Some(Reply::sender_not_allowed());
            }
        }
        None
    }

    /// `RCPT TO:<address> [parameters]`.
    pub(crate) fn rcpt(&mut self, to: RcptTo<String>) {
        let max = self.ctx.limits.max_recipients;
        let phase = std::mem::replace(&mut self.phase, Phase::Ready);
        let mut tx = match phase {
            Phase::MailFrom(tx) | Phase::Rcpts(tx) => tx,
            other => {
                let reply = match other {
                    Phase::Greeted => Reply::bad_sequence("Send EHLO or HELO first"),
                    Phase::Chunking(_) => Reply::bad_sequence("RCPT not allowed during BDAT"),
                    _ => Reply::bad_sequence("Need MAIL command"),
                };
                self.phase = other;
                self.refuse(&reply);
                return;
            }
        };
        let refusal = if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            Some(Reply::unsupported_parameter("NOTIFY, ORCPT or RRVS"))
        } else if to.address.is_empty() {
            Some(Reply::bad_recipient())
        } else if !to.address.is_ascii() && !tx.smtputf8 {
            Some(Reply::utf8_address_without_smtputf8())
        } else if tx.rcpt_to.len() >= max {
            Some(Reply::too_many_recipients())
        } else {
            None
        };
        match refusal {
            Some(reply) => {
                self.phase = if tx.rcpt_to.is_empty() {
                    Phase::MailFrom(tx)
                } else {
                    Phase::Rcpts(tx)
                };
                self.refuse(&reply);
            }
            None => {
                tx.rcpt_to.push(to.address);
                self.phase = Phase::Rcpts(tx);
                self.conn.reply(&Reply::recipient_ok());
            }
        }
    }
}

/// The first MAIL parameter the relay did not announce (DSN's RET and ENVID, BINARYMIME,
/// REQUIRETLS, DELIVERBY, FUTURERELEASE…), if any.
fn unannounced_mail_parameter(from: &MailFrom<String>) -> Option<&'static str> {
    let known = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
    if from.flags & !known != 0 {
        return Some("BODY=BINARYMIME, RET, REQUIRETLS or CONPERM");
    }
    if from.env_id.is_some() {
        return Some("ENVID");
    }
    if from.trans_id.is_some() || from.mtrk.is_some() {
        return Some("TRANSID or MTRK");
    }
    if from.by != 0 || from.hold_for != 0 || from.hold_until != 0 {
        return Some("BY, HOLDFOR or HOLDUNTIL");
    }
    if from.solicit.is_some() || from.mt_priority != 0 {
        return Some("SOLICIT or MT-PRIORITY");
    }
    None
}
