//! The server's replies: a code, an enhanced status code (RFC 3463, announced with
//! ENHANCEDSTATUSCODES, RFC 2034) and a text, one place for every reply the relay gives so the
//! codes stay consistent and each one can be found by what it means.

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply: `code` (RFC 5321 section 4.2), an optional enhanced status code such as
/// `5.3.4` (RFC 3463) and a text. Multi-line replies (EHLO) hold one text per line.
///
/// ```
/// use outbound::relay::Reply;
/// let reply = Reply::new(452, "4.3.1", "Insufficient system storage");
/// assert_eq!(reply.to_string(), "452 4.3.1 Insufficient system storage\r\n");
/// assert!(reply.is_transient());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<Cow<'static, str>>,
    lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply with an enhanced status code. A CR or LF in `text` becomes a space
    /// (a reply is one line; a server text never opens a second reply).
    pub fn new(
        code: u16,
        status: impl Into<Cow<'static, str>>,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        Reply {
            code,
            status: Some(status.into()),
            lines: vec![one_line(text.into())],
        }
    }

    /// A reply without an enhanced status code (the greeting, EHLO, AUTH's 334 challenges:
    /// RFC 2034 section 3 leaves them out).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            code,
            status: None,
            lines: vec![one_line(text.into())],
        }
    }

    /// A multi-line reply (`250-…` lines, the last one `250 …`), without enhanced codes.
    pub fn multi(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        let lines = if lines.is_empty() {
            vec![Cow::Borrowed("")]
        } else {
            lines.into_iter().map(one_line).collect()
        };
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, e.g. `5.3.4`, when the reply has one.
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// The text of the reply's last line.
    pub fn text(&self) -> &str {
        self.lines.last().map(|l| l.as_ref()).unwrap_or("")
    }

    /// A 4xx reply: the client should try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// A 2xx reply.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Appends the reply as it goes on the wire.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (n, line) in self.lines.iter().enumerate() {
            let sep = if n == last { ' ' } else { '-' };
            let text = match &self.status {
                Some(status) => format!("{}{sep}{status} {line}\r\n", self.code),
                None => format!("{}{sep}{line}\r\n", self.code),
            };
            out.extend_from_slice(text.as_bytes());
        }
    }
}

fn one_line(text: Cow<'static, str>) -> Cow<'static, str> {
    if text.contains(['\r', '\n']) {
        Cow::Owned(text.replace(['\r', '\n'], " "))
    } else {
        text
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({})", self.to_string().trim_end())
    }
}

/// Every reply the relay gives, by meaning (RFC 5321 section 4.2.2 codes, RFC 3463
/// enhanced codes; RFC 4954 for AUTH, RFC 3207 for STARTTLS, RFC 1870 for SIZE, RFC 6531 for
/// SMTPUTF8).
impl Reply {
    /// `250 2.0.0 Ok` (RSET, NOOP).
    pub fn ok() -> Self {
        Reply::new(250, "2.0.0", "Ok")
    }
    /// `221 2.0.0 Bye` (QUIT).
    pub fn bye() -> Self {
        Reply::new(221, "2.0.0", "Bye")
    }
    /// `250 2.1.0 Sender ok`.
    pub fn sender_ok() -> Self {
        Reply::new(250, "2.1.0", "Sender ok")
    }
    /// `250 2.1.5 Recipient ok`.
    pub fn recipient_ok() -> Self {
        Reply::new(250, "2.1.5", "Recipient ok")
    }
    /// `354` after DATA (no enhanced code: an intermediate reply).
    pub fn start_data() -> Self {
        Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
    }
    /// `250 2.0.0 Ok: queued as ID`, only once the message is durable.
    pub fn queued(id: &str) -> Self {
        Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
    }
    /// `250 2.0.0 N octets received` (a BDAT chunk that is not the last).
    pub fn chunk_received(octets: usize) -> Self {
        Reply::new(250, "2.0.0", format!("{octets} octets received"))
    }
    /// `220 2.0.0 Ready to start TLS`.
    pub fn start_tls() -> Self {
        Reply::new(220, "2.0.0", "Ready to start TLS")
    }
    /// `235 2.7.0 Authentication successful`.
    pub fn auth_ok() -> Self {
        Reply::new(235, "2.7.0", "Authentication successful")
    }
    /// `252 2.5.0` for VRFY (RFC 5321 section 3.5.3: neither confirmed nor denied).
    pub fn cannot_vrfy() -> Self {
        Reply::new(
            252,
            "2.5.0",
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }
    /// `214 2.0.0` for HELP.
    pub fn help() -> Self {
        Reply::new(214, "2.0.0", "See RFC 5321 and RFC 6409")
    }

    /// `421 4.7.0` at accept: the connection count is reached.
    pub fn too_many_connections(host: &str) -> Self {
        Reply::new(
            421,
            "4.7.0",
            format!("{host} Too many connections, try again later"),
        )
    }
    /// `421 4.4.2`: the client said nothing for longer than a phase allows.
    pub fn timeout(host: &str) -> Self {
        Reply::new(421, "4.4.2", format!("{host} Timeout, closing connection"))
    }
    /// `421 4.3.2`: the relay is shutting down.
    pub fn shutting_down(host: &str) -> Self {
        Reply::new(
            421,
            "4.3.2",
            format!("{host} Service shutting down, try again later"),
        )
    }
    /// `421 4.7.0`: too many errors on this connection.
    pub fn too_many_errors(host: &str) -> Self {
        Reply::new(
            421,
            "4.7.0",
            format!("{host} Too many errors, closing connection"),
        )
    }
    /// `421 4.5.0`: the client sent commands after a refused DATA without waiting for the
    /// reply, so what follows cannot be told from message text (RFC 2920 section 3.1).
    pub fn improper_pipelining(host: &str) -> Self {
        Reply::new(
            421,
            "4.5.0",
            format!("{host} Improper pipelining after DATA, closing connection"),
        )
    }
    /// `421 4.7.0`: this AUTH failure locked the client's address out.
    pub fn locked_out_now(host: &str) -> Self {
        Reply::new(
            421,
            "4.7.0",
            format!("{host} Too many failed authentications, try again later"),
        )
    }
    /// `454 4.7.0`: AUTH refused while the client's address is locked out.
    pub fn locked_out() -> Self {
        Reply::new(
            454,
            "4.7.0",
            "Too many failed authentications from your address, try again later",
        )
    }
    /// `452 4.5.3` (RFC 5321 section 4.5.3.1.10): more recipients than allowed.
    pub fn too_many_recipients() -> Self {
        Reply::new(452, "4.5.3", "Too many recipients")
    }
    /// `451 4.3.0`: the message could not be made durable.
    pub fn not_stored() -> Self {
        Reply::new(
            451,
            "4.3.0",
            "Message not accepted: could not be stored, try again later",
        )
    }
    /// `452 4.3.1`: no room to store the message.
    pub fn storage_full() -> Self {
        Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
    }
    /// `454 4.7.0`: the TLS handshake could not be done.
    pub fn tls_unavailable() -> Self {
        Reply::new(454, "4.7.0", "TLS not available")
    }

    /// `500 5.5.2`: the command is not one the relay knows.
    pub fn unrecognized() -> Self {
        Reply::new(500, "5.5.2", "Command unrecognized")
    }
    /// `500 5.5.2`: a command line longer than the limit (RFC 5321 section 4.5.3.1.4).
    pub fn line_too_long() -> Self {
        Reply::new(500, "5.5.2", "Line too long")
    }
    /// `500 5.5.2`: a command line ended by a bare LF or holding a bare CR.
    pub fn bare_newline_in_command() -> Self {
        Reply::new(
            500,
            "5.5.2",
            "Command lines must end with <CR><LF> and hold no other CR or LF",
        )
    }
    /// `500 5.5.6` (RFC 4954 section 4): an AUTH exchange line longer than the limit.
    pub fn auth_line_too_long() -> Self {
        Reply::new(500, "5.5.6", "Authentication exchange line is too long")
    }
    /// `501 5.5.4` with the command's syntax.
    pub fn syntax(text: impl Into<Cow<'static, str>>) -> Self {
        Reply::new(501, "5.5.4", text)
    }
    /// `501 5.1.7`: a sender address that does not parse.
    pub fn bad_sender() -> Self {
        Reply::new(501, "5.1.7", "Bad sender address syntax")
    }
    /// `501 5.1.3`: a recipient address that does not parse (or is empty).
    pub fn bad_recipient() -> Self {
        Reply::new(501, "5.1.3", "Bad recipient address syntax")
    }
    /// `501 5.5.2`: an AUTH response that is not base64 or not well formed.
    pub fn bad_auth_response() -> Self {
        Reply::new(501, "5.5.2", "Cannot decode the authentication response")
    }
    /// `501 5.7.0`: the client cancelled the AUTH exchange with `*`.
    pub fn auth_cancelled() -> Self {
        Reply::new(501, "5.7.0", "Authentication cancelled")
    }
    /// `502 5.5.1`: a command the relay does not implement (EXPN, ETRN, TURN…).
    pub fn not_implemented() -> Self {
        Reply::new(502, "5.5.1", "Command not implemented")
    }
    /// `503 5.5.1` with what is out of sequence.
    pub fn bad_sequence(text: impl Into<Cow<'static, str>>) -> Self {
        Reply::new(503, "5.5.1", text)
    }
    /// `504 5.5.4`: an AUTH mechanism other than PLAIN or LOGIN.
    pub fn unknown_mechanism() -> Self {
        Reply::new(504, "5.5.4", "Unrecognized authentication type")
    }
    /// `530 5.7.0` (RFC 4954 section 6): authentication is required to relay.
    pub fn auth_required() -> Self {
        Reply::new(530, "5.7.0", "Authentication required")
    }
    /// `530 5.7.0` (RFC 3207 section 4): STARTTLS first.
    pub fn tls_required() -> Self {
        Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
    }
    /// `535 5.7.8` (RFC 4954 section 6): the credentials are wrong.
    pub fn auth_failed() -> Self {
        Reply::new(535, "5.7.8", "Authentication credentials invalid")
    }
    /// `550 5.7.1`: a client that may not relay (neither authenticated nor allowed).
    pub fn relay_denied() -> Self {
        Reply::new(
            550,
            "5.7.1",
            "Relay access denied: authenticate, or relay from an allowed network",
        )
    }
    /// `553 5.7.1`: the authenticated user may not send as this envelope sender.
    pub fn sender_not_allowed() -> Self {
        Reply::new(553, "5.7.1", "Sender address not allowed for this user")
    }
    /// `550 5.7.1`: a `From:`/`Sender:` address the authenticated user may not use.
    pub fn from_not_allowed() -> Self {
        Reply::new(
            550,
            "5.7.1",
            "Message refused: a From or Sender address not allowed for this user",
        )
    }
    /// `553 5.6.7` (RFC 6531 section 3.5): a non-ASCII address without `SMTPUTF8`.
    pub fn utf8_address_without_smtputf8() -> Self {
        Reply::new(
            553,
            "5.6.7",
            "Non-ASCII address requires the SMTPUTF8 parameter",
        )
    }
    /// `552 5.3.4` (RFC 1870): the message is larger than the limit.
    pub fn too_big() -> Self {
        Reply::new(
            552,
            "5.3.4",
            "Message size exceeds fixed maximum message size",
        )
    }
    /// `550 5.6.0`: a bare CR or LF in the message (what Postfix's
    /// `smtpd_forbid_bare_newline = reject` answers; no SMTP smuggling).
    pub fn bare_newline_in_data() -> Self {
        Reply::new(
            550,
            "5.6.0",
            "Message refused: bare CR or LF in the message (RFC 5321 section 2.3.8)",
        )
    }
    /// `550 5.6.0`: a message line longer than RFC 5322 allows.
    pub fn data_line_too_long(max: usize) -> Self {
        Reply::new(
            550,
            "5.6.0",
            format!("Message refused: a line is longer than {max} octets (RFC 5322 section 2.1.1)"),
        )
    }
    /// `554 5.5.1`: DATA or BDAT with no accepted recipient.
    pub fn no_valid_recipients() -> Self {
        Reply::new(554, "5.5.1", "No valid recipients")
    }
    /// `555 5.5.4`: a MAIL or RCPT parameter the relay did not announce.
    pub fn unsupported_parameter(name: &str) -> Self {
        Reply::new(
            555,
            "5.5.4",
            format!("Parameter {name} not recognized or not implemented"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_status() {
        assert_eq!(
            Reply::too_big().to_string(),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        );
    }

    #[test]
    fn multi_line_and_plain() {
        let r = Reply::multi(
            250,
            vec!["host".into(), "PIPELINING".into(), "SIZE 10".into()],
        );
        assert_eq!(
            r.to_string(),
            "250-host\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        assert_eq!(Reply::plain(334, "").to_string(), "334 \r\n");
    }

    #[test]
    fn a_text_never_opens_a_second_line() {
        let r = Reply::new(451, "4.3.0", "a\r\n250 ok");
        assert_eq!(r.to_string(), "451 4.3.0 a  250 ok\r\n");
    }
}
