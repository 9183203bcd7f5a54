//! Server replies: framing them out of the byte stream, parsing them (with `smtp-proto`), and
//! turning a negative one into an [`Error`] whose kind a caller can act on.
//!
//! The mapping is deliberately small and explicit:
//!
//! | reply | kind |
//! |---|---|
//! | 530, 534, 535, 538 (any phase), and any 5xx to `AUTH` | [`ErrorKind::Auth`] |
//! | 4xx (including 454 to `AUTH` and 421 anywhere) | [`ErrorKind::Transient`] |
//! | other 5xx | [`ErrorKind::Permanent`] |
//!
//! The code, the RFC 3463 enhanced code and the server's text are always kept
//! ([`ServerCode::Smtp`] and [`Error::server_text`]) so an operator sees the real reason.

use std::fmt;

use crate::{Error, ErrorKind, ServerCode};

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub code: u16,
    /// The enhanced status code (`5.1.1`) when the server sent one.
    pub enhanced: Option<String>,
    /// The text of every line (codes removed), joined by `\n`.
    pub text: String,
    /// For a 334 challenge: the raw text after `334 ` (base64), unparsed.
    pub challenge: String,
}

impl Reply {
    pub(crate) fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub(crate) fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The text on one line, for messages.
    pub(crate) fn one_line(&self) -> String {
        self.text
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn server_code(&self) -> ServerCode {
        ServerCode::Smtp {
            code: self.code,
            enhanced: self.enhanced.clone(),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = &self.enhanced {
            write!(f, " {e}")?;
        }
        let text = self.one_line();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Why bytes could not be read as a reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplyError {
    #[error("the server sent a malformed reply line: {0:?}")]
    Malformed(String),
    #[error("the server sent a reply longer than {0} bytes")]
    TooLong(usize),
}

/// Replies longer than this are refused (a broken or hostile server must not make us buffer
/// without bound).
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Finds the end of the first complete reply in `buf`: the offset just past the LF of its last
/// line (`NNN ` or a bare `NNN`). `Ok(None)` means more bytes are needed.
pub(crate) fn complete_reply_len(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed(
                String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
            ));
        }
        match line.get(3) {
            None | Some(b' ') => return Ok(Some(start + nl + 1)),
            Some(b'-') => start += nl + 1,
            Some(_) => {
                return Err(ReplyError::Malformed(
                    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
                ))
            }
        }
    }
    if buf.len() > MAX_REPLY_BYTES {
        return Err(ReplyError::TooLong(MAX_REPLY_BYTES));
    }
    Ok(None)
}

/// Parses one complete reply (as framed by [`complete_reply_len`]).
pub(crate) fn parse_reply(raw: &[u8]) -> Result<Reply, ReplyError> {
    // Only a 334 carries a challenge (RFC 4954 section 4); every other reply skips the copy.
    let challenge = if raw.starts_with(b"334") {
        let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        String::from_utf8_lossy(first.get(4..).unwrap_or_default())
            .trim()
            .to_string()
    } else {
        String::new()
    };
    let mut receiver = smtp_proto::response::parser::ResponseReceiver::default();
    match receiver.parse(&mut raw.iter()) {
        Ok(r) => {
            let enhanced =
                (r.esc != [0, 0, 0]).then(|| format!("{}.{}.{}", r.esc[0], r.esc[1], r.esc[2]));
            Ok(Reply {
                code: r.code,
                enhanced,
                text: r.message.trim_end().to_string(),
                challenge,
            })
        }
        // smtp-proto caps a reply's text at 4 KiB; a longer (multi-line) rejection is still a
        // reply worth reporting, so read it plainly.
        Err(_) => fallback_parse(raw, challenge),
    }
}

fn fallback_parse(raw: &[u8], challenge: String) -> Result<Reply, ReplyError> {
    let text = String::from_utf8_lossy(raw);
    let mut code = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let digits = line.get(..3).unwrap_or_default();
        let n: u16 = digits
            .parse()
            .map_err(|_| ReplyError::Malformed(line.chars().take(80).collect()))?;
        code.get_or_insert(n);
        lines.push(line.get(4..).unwrap_or_default().trim().to_string());
    }
    let code = code.ok_or_else(|| ReplyError::Malformed(String::new()))?;
    let mut enhanced = None;
    if let Some(first) = lines.first().cloned() {
        let token = first.split(' ').next().unwrap_or_default();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            enhanced = Some(token.to_string());
            for line in &mut lines {
                if let Some(rest) = line.strip_prefix(token) {
                    *line = rest.trim_start().to_string();
                }
            }
        }
    }
    Ok(Reply {
        code,
        enhanced,
        text: lines.join("\n"),
        challenge,
    })
}

/// The step of the session a reply answered; decides the error kind and the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Rset,
    Quit,
}

impl Stage {
    /// What the reply answered, for messages.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Stage::Greeting => "the greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::DataEnd => "the end of DATA",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        }
    }
}

/// The kind for a negative reply at `stage`.
pub(crate) fn kind_for(code: u16, stage: Stage) -> ErrorKind {
    match (code, stage) {
        (530 | 534 | 535 | 538, _) => ErrorKind::Auth,
        (500..=599, Stage::Auth) => ErrorKind::Auth,
        (400..=499, _) => ErrorKind::Transient,
        (500..=599, _) => ErrorKind::Permanent,
        // Not a valid negative reply (1xx, 2xx/3xx where a failure was expected, 6xx+): the
        // server does not speak SMTP as expected. Nothing was delivered; report it as a
        // permanent protocol problem rather than retrying blindly.
        _ => ErrorKind::Permanent,
    }
}

/// The error for a negative (or unexpected) `reply` at `stage`; `message` says what was
/// refused in the caller's words.
pub(crate) fn error_for(reply: &Reply, stage: Stage, message: impl Into<String>) -> Error {
    Error::new(kind_for(reply.code, stage), message)
        .with_code(reply.server_code())
        .with_server_text(reply.one_line())
}

/// The server's id for an accepted message, read from the final reply: the queue id when a
/// known format is recognised (Postfix `Ok: queued as 4Xy2`, Exim `OK id=1rAbC-0001`, sendmail
/// `x1AB2c3 Message accepted for delivery`), else the whole text.
pub(crate) fn provider_id(reply: &Reply) -> Option<String> {
    let text = reply.one_line();
    let word_after = |marker: &str| -> Option<String> {
        let pos = text.find(marker)?;
        let rest = &text[pos + marker.len()..];
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let id = id.trim_end_matches('.').to_string();
        (!id.is_empty()).then_some(id)
    };
    if let Some(id) = word_after("queued as ").or_else(|| word_after("id=")) {
        return Some(id);
    }
    if let Some(before) = text.strip_suffix("Message accepted for delivery") {
        if let Some(id) = before.split_whitespace().last() {
            return Some(id.to_string());
        }
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(raw: &str) -> Reply {
        let len = complete_reply_len(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(len, raw.len(), "framing of {raw:?}");
        parse_reply(raw.as_bytes()).unwrap()
    }

    #[test]
    fn parses_codes_enhanced_codes_and_text() {
        let r = reply("250 2.0.0 Ok: queued as 4XbQ2m0ZkFz1xyz\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced.as_deref(), Some("2.0.0"));
        assert_eq!(r.text, "Ok: queued as 4XbQ2m0ZkFz1xyz");
        assert_eq!(r.to_string(), "250 2.0.0 Ok: queued as 4XbQ2m0ZkFz1xyz");

        let r = reply("550-5.1.1 No such user\r\n550 5.1.1 here\r\n");
        assert_eq!((r.code, r.enhanced.as_deref()), (550, Some("5.1.1")));
        assert_eq!(r.one_line(), "No such user here");

        let r = reply("220 localhost ESMTP Postfix\r\n");
        assert_eq!((r.code, r.enhanced.as_deref()), (220, None));
        assert_eq!(r.text, "localhost ESMTP Postfix");

        let r = reply("354 End data with <CR><LF>.<CR><LF>\r\n");
        assert_eq!(r.code, 354);

        let r = reply("250\r\n");
        assert_eq!((r.code, r.text.as_str()), (250, ""));

        // Exchange Online uses three-digit detail codes.
        let r = reply("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.\r\n");
        assert_eq!(r.enhanced.as_deref(), Some("5.7.139"));
    }

    #[test]
    fn keeps_334_challenges_raw() {
        let r = reply("334 VXNlcm5hbWU6\r\n");
        assert_eq!(r.challenge, "VXNlcm5hbWU6");
        let r = reply("334 \r\n");
        assert_eq!(r.challenge, "");
        // An all-digit base64 challenge must not be mistaken for an enhanced code.
        let r = reply("334 1234\r\n");
        assert_eq!(r.challenge, "1234");
    }

    #[test]
    fn framing_waits_for_the_last_line_and_rejects_garbage() {
        assert_eq!(
            complete_reply_len(b"250-PIPELINING\r\n250-SIZE").unwrap(),
            None
        );
        assert_eq!(complete_reply_len(b"").unwrap(), None);
        assert_eq!(
            complete_reply_len(b"250 ok\r\n354 go ahead\r\n").unwrap(),
            Some(8),
            "pipelined replies are framed one at a time"
        );
        assert!(complete_reply_len(b"HTTP/1.1 400 Bad Request\r\n").is_err());
        assert!(complete_reply_len(&vec![b'2'; MAX_REPLY_BYTES + 1]).is_err());
    }

    #[test]
    fn long_replies_fall_back_to_plain_parsing() {
        let mut raw = String::new();
        for _ in 0..100 {
            raw.push_str("550-5.7.1 This is a very long explanation line that keeps going on\r\n");
        }
        raw.push_str("550 5.7.1 end\r\n");
        let r = reply(&raw);
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced.as_deref(), Some("5.7.1"));
        assert!(r.one_line().ends_with("end"));
    }

    #[test]
    fn maps_codes_to_kinds() {
        use ErrorKind::*;
        assert_eq!(kind_for(535, Stage::Auth), Auth);
        assert_eq!(kind_for(534, Stage::Auth), Auth);
        assert_eq!(kind_for(538, Stage::Auth), Auth);
        assert_eq!(kind_for(530, Stage::Mail), Auth);
        assert_eq!(kind_for(504, Stage::Auth), Auth);
        assert_eq!(kind_for(454, Stage::Auth), Transient);
        assert_eq!(kind_for(421, Stage::Greeting), Transient);
        assert_eq!(kind_for(451, Stage::DataEnd), Transient);
        assert_eq!(kind_for(452, Stage::Rcpt), Transient);
        assert_eq!(kind_for(550, Stage::Rcpt), Permanent);
        assert_eq!(kind_for(552, Stage::DataEnd), Permanent);
        assert_eq!(kind_for(554, Stage::Greeting), Permanent);
        assert_eq!(kind_for(250, Stage::Data), Permanent);
    }

    #[test]
    fn error_keeps_code_enhanced_code_and_text() {
        let r = reply("535 5.7.8 Error: authentication failed: authentication failure\r\n");
        let err = error_for(
            &r,
            Stage::Auth,
            "authentication as alice@example.test failed",
        );
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(err.smtp_code(), Some(535));
        assert_eq!(
            err.code(),
            Some(&ServerCode::Smtp {
                code: 535,
                enhanced: Some("5.7.8".into())
            })
        );
        assert_eq!(
            err.server_text(),
            Some("Error: authentication failed: authentication failure")
        );
        assert!(err.to_string().contains("535 5.7.8"));
    }

    #[test]
    fn provider_ids() {
        let id = |raw: &str| provider_id(&reply(raw));
        assert_eq!(
            id("250 2.0.0 Ok: queued as 4XbQ2m0ZkFz1xyz\r\n").as_deref(),
            Some("4XbQ2m0ZkFz1xyz")
        );
        assert_eq!(
            id("250 OK id=1rAbCd-0001Xy-2Z\r\n").as_deref(),
            Some("1rAbCd-0001Xy-2Z")
        );
        assert_eq!(
            id("250 2.0.0 x1AB2c3D004321 Message accepted for delivery\r\n").as_deref(),
            Some("x1AB2c3D004321")
        );
        assert_eq!(
            id("250 2.0.0 OK  1700000000 a1b2c3.123 - gsmtp\r\n").as_deref(),
            Some("OK  1700000000 a1b2c3.123 - gsmtp")
        );
        assert_eq!(id("250\r\n"), None);
    }
}
