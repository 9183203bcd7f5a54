//! What the server said it supports in its EHLO reply.

use crate::smtp::auth::Mechanism;
use crate::smtp::reply::Reply;

/// What the server said it supports in its EHLO reply (and whether the session is encrypted).
#[derive(Debug, Clone, Default)]
pub(crate) struct Capabilities {
    /// The session runs over TLS.
    pub tls: bool,
    /// EHLO succeeded (false after a HELO fallback: no extensions).
    pub esmtp: bool,
    pub pipelining: bool,
    /// RFC 3030 CHUNKING: `BDAT n LAST` carries the message without waiting for a 354.
    pub chunking: bool,
    pub starttls: bool,
    /// SIZE was advertised (RFC 1870), with its limit when one was given (0 = none).
    pub size: Option<usize>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub has_auth: bool,
    /// `smtp_proto::AUTH_*` bits of the offered mechanisms.
    pub auth: u64,
    /// The offered mechanisms as the server named them (for messages).
    pub auth_names: Vec<String>,
}

impl Capabilities {
    /// Reads an EHLO reply: `smtp-proto` parses the keywords; the AUTH names are kept as
    /// written for error messages. A reply `smtp-proto` cannot parse falls back to a keyword scan
    /// so an unusual extension never makes a server unusable.
    pub(crate) fn from_ehlo(raw: &[u8], reply: &Reply, tls: bool) -> Capabilities {
        let mut caps = Capabilities {
            tls,
            esmtp: true,
            ..Capabilities::default()
        };
        // Keyword lines, uppercased only when looked at (this runs once per connection).
        let lines = || {
            reply
                .text
                .split('\n')
                .skip(1)
                .map(|l| l.trim().to_ascii_uppercase())
        };
        for line in reply.text.split('\n').skip(1).map(str::trim) {
            let is_auth = line
                .get(..4)
                .is_some_and(|k| k.eq_ignore_ascii_case("AUTH"))
                && line[4..].starts_with([' ', '=']);
            if is_auth {
                for name in line[5..].split_whitespace() {
                    let name = name.to_ascii_uppercase();
                    if !caps.auth_names.contains(&name) {
                        caps.auth_names.push(name);
                    }
                }
            }
        }
        match smtp_proto::EhloResponse::<String>::parse(&mut raw.iter()) {
            Ok(parsed) => {
                let has = |bit| parsed.has_capability(bit);
                caps.pipelining = has(smtp_proto::EXT_PIPELINING);
                caps.chunking = has(smtp_proto::EXT_CHUNKING);
                caps.starttls = has(smtp_proto::EXT_START_TLS);
                caps.size = has(smtp_proto::EXT_SIZE).then_some(parsed.size);
                caps.eight_bit_mime = has(smtp_proto::EXT_8BIT_MIME);
                caps.smtputf8 = has(smtp_proto::EXT_SMTP_UTF8);
                caps.has_auth = has(smtp_proto::EXT_AUTH) || !caps.auth_names.is_empty();
                caps.auth = parsed.auth_mechanisms;
            }
            Err(e) => {
                tracing::debug!(error = %e, "EHLO reply not parsed by smtp-proto; scanning keywords");
                for line in lines() {
                    let mut words = line.split_whitespace();
                    match words.next().unwrap_or_default() {
                        "PIPELINING" => caps.pipelining = true,
                        "CHUNKING" => caps.chunking = true,
                        "STARTTLS" => caps.starttls = true,
                        "8BITMIME" => caps.eight_bit_mime = true,
                        "SMTPUTF8" => caps.smtputf8 = true,
                        "SIZE" => {
                            caps.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0))
                        }
                        _ => {}
                    }
                }
                caps.has_auth = !caps.auth_names.is_empty();
            }
        }
        // Both spellings agree with what smtp-proto saw; add the four we use if only named.
        for name in &caps.auth_names {
            if let Ok(m) = name.parse::<Mechanism>() {
                caps.auth |= mechanism_bit(m);
            }
        }
        caps
    }

    /// Whether the server offers `m`.
    pub(crate) fn offers(&self, m: Mechanism) -> bool {
        self.auth & mechanism_bit(m) != 0
    }

    /// The SIZE limit, when the server set one.
    pub(crate) fn size_limit(&self) -> Option<usize> {
        self.size.filter(|&s| s > 0)
    }
}

/// The `smtp_proto::AUTH_*` bit of `m`.
pub(crate) fn mechanism_bit(m: Mechanism) -> u64 {
    match m {
        Mechanism::Plain => smtp_proto::AUTH_PLAIN,
        Mechanism::Login => smtp_proto::AUTH_LOGIN,
        Mechanism::XOAuth2 => smtp_proto::AUTH_XOAUTH2,
        Mechanism::OAuthBearer => smtp_proto::AUTH_OAUTHBEARER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply;

    #[test]
    fn parses_postfix_ehlo() {
        let raw = "250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
        let r = reply::parse_reply(raw.as_bytes()).unwrap();
        let c = Capabilities::from_ehlo(raw.as_bytes(), &r, false);
        assert!(c.pipelining && c.starttls && c.eight_bit_mime && c.smtputf8 && c.has_auth);
        assert!(c.chunking);
        assert_eq!(c.size, Some(10_240_000));
        assert_eq!(c.auth_names, ["PLAIN", "LOGIN"]);
        assert_ne!(c.auth & smtp_proto::AUTH_PLAIN, 0);
        assert_ne!(c.auth & smtp_proto::AUTH_LOGIN, 0);
        assert_eq!(c.auth & smtp_proto::AUTH_XOAUTH2, 0);
    }

    #[test]
    fn odd_ehlo_falls_back_to_a_keyword_scan() {
        let raw = "250-mx\r\n250-FUTURERELEASE notanumber\r\n250-PIPELINING\r\n250-AUTH XOAUTH2\r\n250 SIZE 99\r\n";
        let r = reply::parse_reply(raw.as_bytes()).unwrap();
        let c = Capabilities::from_ehlo(raw.as_bytes(), &r, true);
        assert!(c.pipelining && c.has_auth);
        assert_eq!(c.size, Some(99));
        assert_ne!(c.auth & smtp_proto::AUTH_XOAUTH2, 0);
    }
}
