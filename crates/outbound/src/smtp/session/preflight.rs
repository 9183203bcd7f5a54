//! What is checked before MAIL FROM, and which MAIL parameters go with it. A message the server
//! cannot take (too large, needs an extension it lacks, an address that cannot be written in an
//! envelope) is refused here, before anything is sent, so the session stays ready.

use super::Capabilities;
use crate::message::Envelope;
use crate::smtp::wire::{self, MailFrom};
use crate::{Error, ErrorKind};

/// The MAIL FROM for `envelope` on a server with `caps` (`host` names it in errors). `size` is
/// the message's size for SIZE; `eight_bit` whether it has 8-bit bytes.
pub(super) fn mail_from<'a>(
    caps: &Capabilities,
    host: &str,
    envelope: &'a Envelope,
    size: usize,
    eight_bit: bool,
) -> Result<MailFrom<'a>, Error> {
    if let Some(limit) = caps.size_limit() {
        if size > limit {
            return Err(Error::new(
                ErrorKind::Permanent,
                format!(
                    "the message is {size} bytes but {host} accepts at most {limit} bytes (SIZE)"
                ),
            ));
        }
    }
    if envelope.smtputf8 && !caps.smtputf8 {
        let addr = std::iter::once(&envelope.from)
            .chain(&envelope.to)
            .find(|a| !a.is_ascii())
            .cloned()
            .unwrap_or_default();
        return Err(Error::new(
            ErrorKind::Permanent,
            format!(
                "the address `{addr}` has a non-ASCII local part, which needs the SMTPUTF8 \
                 extension, and {host} does not offer it"
            ),
        ));
    }
    for addr in std::iter::once(&envelope.from).chain(&envelope.to) {
        if !wire::is_safe_path(addr) {
            return Err(Error::new(
                ErrorKind::InvalidMessage,
                format!("the address {addr:?} cannot be sent in an SMTP envelope"),
            ));
        }
    }
    if envelope.to.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidMessage,
            "the message has no recipient",
        ));
    }
    // RFC 6152: 8-bit content only to a server that offers 8BITMIME (SMTPUTF8, checked
    // above, implies it: RFC 6531 section 3.1).
    if eight_bit && !caps.eight_bit_mime && !envelope.smtputf8 {
        return Err(Error::new(
            ErrorKind::Permanent,
            format!(
                "the message contains 8-bit bytes and {host} does not offer 8BITMIME; send it \
                 with 7-bit encodings (quoted-printable or base64)"
            ),
        ));
    }
    Ok(MailFrom {
        address: &envelope.from,
        size: caps.size.map(|_| size),
        eight_bit: (eight_bit || envelope.smtputf8) && caps.eight_bit_mime,
        smtputf8: envelope.smtputf8,
    })
}
