//! The one redactor: what any server text goes through before it is put into an
//! [`Error`](crate::Error) or a log, for the HTTP providers and the token requests alike.
//!
//! It replaces with `[redacted]`:
//! - each configured secret (API key, client secret, refresh token) of at least
//!   [`MIN_SECRET_LEN`] bytes, as given and in the encodings a server may echo it in
//!   (form/percent-encoded, JSON-escaped, base64);
//! - anything shaped like a JWT (`eyJ….….…`): an access token this process may hold;
//! - the credentials after `Bearer` or `Basic` (at least [`MIN_CREDENTIAL_LEN`] characters of
//!   a token), such as an echoed `Authorization` header.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};

use super::text::one_line;

/// What replaces a secret.
const REDACTED: &str = "[redacted]";

/// Shorter "secrets" would redact ordinary words; they are not worth hiding.
pub(crate) const MIN_SECRET_LEN: usize = 4;

/// Shorter words after `Bearer`/`Basic` are prose ("Bearer token"), not credentials.
pub(crate) const MIN_CREDENTIAL_LEN: usize = 16;

/// Percent-encoding of everything but RFC 3986 unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Secrets to scrub from server text (see the module docs for what else is scrubbed).
pub(crate) struct Redactor<'a> {
    secrets: Vec<&'a SecretString>,
}

impl<'a> Redactor<'a> {
    pub(crate) fn new(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        Redactor {
            secrets: secrets.into_iter().collect(),
        }
    }

    /// Replaces the known secrets (and their encodings), anything shaped like a JWT, and
    /// `Bearer`/`Basic` credentials with `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            let s = secret.expose_secret();
            if s.len() < MIN_SECRET_LEN {
                continue;
            }
            for form in encodings(s) {
                if out.contains(form.as_ref()) {
                    out = out.replace(form.as_ref(), REDACTED);
                }
            }
        }
        scrub_credentials(&scrub_jwts(&out))
    }

    /// Scrubbed, then folded onto one line of at most `max_chars` characters (scrubbing first,
    /// so a cut cannot leave part of a secret behind).
    pub(crate) fn server_text(&self, text: &str, max_chars: usize) -> String {
        one_line(&self.scrub(text), max_chars)
    }
}

/// The secret as given, then the other forms a server may echo it in (each once).
fn encodings(s: &str) -> Vec<Cow<'_, str>> {
    let mut forms: Vec<Cow<'_, str>> = vec![Cow::Borrowed(s)];
    let form_encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    let percent: String = utf8_percent_encode(s, COMPONENT).collect();
    let json = serde_json::to_string(s)
        .ok()
        .and_then(|q| q.get(1..q.len().saturating_sub(1)).map(str::to_string));
    // SMTP servers that echo a SASL response echo it base64-encoded (AUTH LOGIN sends the
    // password alone, so its base64 is what a 535 may quote).
    let base64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    };
    for form in [Some(form_encoded), Some(percent), json, Some(base64)]
        .into_iter()
        .flatten()
    {
        if !forms.iter().any(|f| f.as_ref() == form) {
            forms.push(Cow::Owned(form));
        }
    }
    forms
}

/// Replaces every `eyJ…​.…​.…` sequence (a JWS/JWT in compact form) with `[redacted]`.
fn scrub_jwts(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("eyJ") {
        // Must start a word, not sit inside one.
        let starts_word = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !is_b64(c) && c != '.');
        let candidate = &rest[at..];
        let len = candidate
            .char_indices()
            .find(|&(_, c)| !(is_b64(c) || c == '.'))
            .map_or(candidate.len(), |(i, _)| i);
        let token = &candidate[..len];
        if starts_word && token.matches('.').count() >= 2 && token.len() >= 20 {
            out.push_str(&rest[..at]);
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[..at + len.max(3)]);
        }
        rest = &rest[at + len.max(3)..];
    }
    out.push_str(rest);
    out
}

/// Replaces the credentials after `Bearer ` or `Basic ` (any case; a token68 of at least
/// [`MIN_CREDENTIAL_LEN`] characters) with `[redacted]`.
fn scrub_credentials(text: &str) -> String {
    const SCHEMES: [&str; 2] = ["bearer", "basic"];
    let is_token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    // ASCII lower-casing keeps every byte offset.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some((at, len)) = SCHEMES
        .iter()
        .filter_map(|s| lower[search..].find(s).map(|i| (search + i, s.len())))
        .min()
    {
        let after = at + len;
        let starts_word = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let rest = &text[after..];
        let spaces = rest.len() - rest.trim_start_matches(' ').len();
        let start = after + spaces;
        let tail = &text[start..];
        let token_len = tail.find(|c: char| !is_token(c)).unwrap_or(tail.len());
        if starts_word && spaces > 0 && token_len >= MIN_CREDENTIAL_LEN {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = start + token_len;
            search = copied;
        } else {
            search = after;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP providers' rule (was `http::scrub`).
    #[test]
    fn scrubs_secrets() {
        let key = SecretString::from("re_123456789");
        assert_eq!(
            Redactor::new([&key]).scrub("bad key re_123456789 given"),
            "bad key [redacted] given"
        );
    }

    #[test]
    fn jwts_are_scrubbed() {
        let jwt = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhIn0.c2lnbmF0dXJl-_";
        assert_eq!(
            scrub_jwts(&format!("token {jwt}, again:{jwt}")),
            "token [redacted], again:[redacted]"
        );
        assert_eq!(scrub_jwts("eyJ alone. eyJabc"), "eyJ alone. eyJabc");
        assert_eq!(
            scrub_jwts("xeyJ0eXAiOiJKV1QifQ.e30.sig"),
            "xeyJ0eXAiOiJKV1QifQ.e30.sig"
        );
        assert_eq!(scrub_jwts("é eyJ"), "é eyJ");
    }

    /// The union of the two old rules: secrets from 4 bytes (the HTTP providers' threshold;
    /// the token requests' was 6), and JWTs everywhere (the token requests' rule).
    #[test]
    fn union_of_the_old_rules() {
        let short = SecretString::from("abcd");
        let tiny = SecretString::from("abc");
        let r = Redactor::new([&short, &tiny]);
        assert_eq!(r.scrub("key abcd, abc"), "key [redacted], abc");
        let jwt = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhIn0.c2lnbmF0dXJl-_";
        let key = SecretString::from("SG.key-value");
        assert_eq!(
            Redactor::new([&key]).scrub(&format!("SG.key-value {jwt}")),
            "[redacted] [redacted]"
        );
    }

    #[test]
    fn encoded_secrets_are_scrubbed() {
        let secret = SecretString::from("p@ss w/rd\"x");
        let r = Redactor::new([&secret]);
        assert_eq!(
            r.scrub("client_secret=p%40ss+w%2Frd%22x&x=1"),
            "client_secret=[redacted]&x=1"
        );
        assert_eq!(r.scrub("got p%40ss%20w%2Frd%22x"), "got [redacted]");
        assert_eq!(
            r.scrub(r#"{"client_secret":"p@ss w/rd\"x"}"#),
            r#"{"client_secret":"[redacted]"}"#
        );
        assert_eq!(r.scrub("raw p@ss w/rd\"x"), "raw [redacted]");
    }

    #[test]
    fn bearer_and_basic_credentials_are_scrubbed() {
        let r = Redactor::new([]);
        assert_eq!(
            r.scrub("Authorization: Bearer abcdefghijklmnop1234 was refused"),
            "Authorization: Bearer [redacted] was refused"
        );
        assert_eq!(
            r.scrub("authorization: basic YXBwOnMzY3JldC12YWx1ZQ=="),
            "authorization: basic [redacted]"
        );
        // Prose stays.
        for prose in [
            "missing Bearer token",
            "Basic authentication failed",
            "Bearer error=\"invalid_token\"",
            "debearer abcdefghijklmnop1234",
            "Bearer",
        ] {
            assert_eq!(r.scrub(prose), prose);
        }
        assert_eq!(r.scrub("é bearer é"), "é bearer é");
    }

    #[test]
    fn server_text_scrubs_before_cutting() {
        let secret = SecretString::from("canary-secret-XYZ");
        let r = Redactor::new([&secret]);
        let text = format!("{} canary-secret-XYZ", "x".repeat(10));
        let shown = r.server_text(&text, 15);
        assert!(!shown.contains("canary"), "{shown}");
        assert_eq!(
            r.server_text("a\r\n canary-secret-XYZ", 100),
            "a [redacted]"
        );
    }
}
