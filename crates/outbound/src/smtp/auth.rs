//! SMTP credentials and the SASL mechanisms mail providers use: PLAIN (RFC 4616), LOGIN,
//! XOAUTH2 (Google's and Microsoft's) and OAUTHBEARER (RFC 7628), with each mechanism's
//! response. The exchange itself (RFC 4954) is a phase of the session: `session::sasl`.
//!
//! Why this is its own module: credentials are the one thing that must never leak, and OAuth2
//! tokens expire within an hour, so credentials are read *each time a connection
//! authenticates* (through [`AccessTokenSource`]) instead of being fixed when the transport is
//! built. Nothing here logs a payload: the wire log shows `AUTH PLAIN <redacted>`.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

pub use crate::oauth::AccessTokenSource;

use crate::oauth::{StaticToken, TokenCache};
use crate::Error;

/// A SASL mechanism.
///
/// ```
/// use outbound::smtp::Mechanism;
/// assert_eq!("xoauth2".parse::<Mechanism>()?, Mechanism::XOAuth2);
/// assert_eq!(Mechanism::Plain.to_string(), "PLAIN");
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// `PLAIN` (RFC 4616): user name and password in one message.
    Plain,
    /// `LOGIN`: user name and password answered to two challenges (obsolete but common).
    Login,
    /// `XOAUTH2`: an OAuth2 bearer token (Google, Microsoft Exchange Online).
    XOAuth2,
    /// `OAUTHBEARER` (RFC 7628): the standard form of an OAuth2 bearer token.
    OAuthBearer,
}

impl Mechanism {
    /// The name used in EHLO and on the `AUTH` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Whether the mechanism carries an OAuth2 token rather than a password.
    pub fn is_oauth2(self) -> bool {
        matches!(self, Mechanism::XOAuth2 | Mechanism::OAuthBearer)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mechanism {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Mechanism::Plain),
            "LOGIN" => Ok(Mechanism::Login),
            "XOAUTH2" => Ok(Mechanism::XOAuth2),
            "OAUTHBEARER" => Ok(Mechanism::OAuthBearer),
            _ => Err(Error::config(format!(
                "SASL mechanism `{s}` is not supported; expected one of: PLAIN, LOGIN, XOAUTH2, \
                 OAUTHBEARER"
            ))),
        }
    }
}

/// What a connection authenticates with. `Debug` never shows a password or token.
///
/// ```
/// use outbound::smtp::Credentials;
/// let creds = Credentials::password("alice@example.com", "s3cret-pw");
/// assert_eq!(creds.username(), "alice@example.com");
/// assert!(!format!("{creds:?}").contains("s3cret-pw"));
/// let oauth = Credentials::oauth2_static("alice@example.com", "ya29.token");
/// assert!(!format!("{oauth:?}").contains("ya29"));
/// ```
///
/// With tokens from a token endpoint (see [`crate::oauth`]):
///
/// ```
/// use outbound::oauth::{ClientCredentials, TokenCache};
/// use outbound::smtp::Credentials;
/// use secrecy::SecretString;
/// let source = ClientCredentials::microsoft_smtp("contoso.onmicrosoft.com", "app-id",
///     SecretString::from("client-secret")).build()?;
/// let creds = Credentials::oauth2_cache("mailer@contoso.com", TokenCache::shared(source));
/// assert!(!format!("{creds:?}").contains("client-secret"));
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// A user name and password, sent with PLAIN or LOGIN.
    Password {
        /// The user name (often the mail address).
        username: String,
        /// The password.
        password: SecretString,
    },
    /// An OAuth2 user and a source of access tokens, sent with XOAUTH2 or OAUTHBEARER.
    OAuth2 {
        /// The mailbox the token is for.
        username: String,
        /// Gives a current token each time a connection authenticates.
        token: Arc<dyn AccessTokenSource>,
    },
}

impl Credentials {
    /// Password credentials.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Password {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// OAuth2 credentials with a fixed access token (never refreshed; a rejection is final).
    pub fn oauth2_static(username: impl Into<String>, token: impl Into<String>) -> Self {
        Credentials::OAuth2 {
            username: username.into(),
            token: Arc::new(StaticToken::new(SecretString::from(token.into()))),
        }
    }

    /// OAuth2 credentials with tokens from `cache` (refreshed ahead of expiry, invalidated and
    /// fetched again once when the server rejects one).
    pub fn oauth2_cache(username: impl Into<String>, cache: TokenCache) -> Self {
        Credentials::OAuth2 {
            username: username.into(),
            token: Arc::new(cache),
        }
    }

    /// OAuth2 credentials with any token source (e.g. a refreshing cache).
    pub fn oauth2(username: impl Into<String>, token: Arc<dyn AccessTokenSource>) -> Self {
        Credentials::OAuth2 {
            username: username.into(),
            token,
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        match self {
            Credentials::Password { username, .. } | Credentials::OAuth2 { username, .. } => {
                username
            }
        }
    }

    pub(crate) fn is_oauth2(&self) -> bool {
        matches!(self, Credentials::OAuth2 { .. })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"[redacted]")
                .finish(),
            Credentials::OAuth2 { username, token } => f
                .debug_struct("OAuth2")
                .field("username", username)
                .field("token", token)
                .finish(),
        }
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, empty authzid, base64.
pub(crate) fn plain_response(username: &str, password: &SecretString) -> SecretString {
    let mut raw = Vec::with_capacity(username.len() + password.expose_secret().len() + 2);
    raw.push(0);
    raw.extend_from_slice(username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.expose_secret().as_bytes());
    encode_secret(raw)
}

/// XOAUTH2: `user=` user `^Aauth=Bearer ` token `^A^A`, base64 (Google's and Microsoft's
/// documentation).
pub(crate) fn xoauth2_response(username: &str, token: &SecretString) -> SecretString {
    let raw = format!(
        "user={username}\x01auth=Bearer {}\x01\x01",
        token.expose_secret()
    );
    encode_secret(raw.into_bytes())
}

/// OAUTHBEARER (RFC 7628 section 3.1): a GS2 header naming the user (`,` and `=` escaped as
/// `=2C` and `=3D`), then `host`, `port` and `auth` key/value pairs separated by `^A`, base64.
pub(crate) fn oauthbearer_response(
    username: &str,
    host: &str,
    port: u16,
    token: &SecretString,
) -> SecretString {
    let saslname = username.replace('=', "=3D").replace(',', "=2C");
    let raw = format!(
        "n,a={saslname},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
        token.expose_secret()
    );
    encode_secret(raw.into_bytes())
}

/// `raw`, base64-encoded, as a secret (the plain bytes are wiped).
pub(crate) fn encode_secret(mut raw: Vec<u8>) -> SecretString {
    let encoded = B64.encode(&raw);
    // Best effort: do not leave the plain payload lying in freed memory.
    raw.iter_mut().for_each(|b| *b = 0);
    SecretString::from(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(s: &SecretString) -> Vec<u8> {
        B64.decode(s.expose_secret()).unwrap()
    }

    #[test]
    fn plain_is_nul_user_nul_password() {
        // RFC 4616 section 4 example: "\0tim\0tanstaaftanstaaf".
        let r = plain_response("tim", &SecretString::from("tanstaaftanstaaf"));
        assert_eq!(r.expose_secret(), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        assert_eq!(decoded(&r), b"\0tim\0tanstaaftanstaaf");
    }

    #[test]
    fn xoauth2_matches_googles_documented_example() {
        // https://developers.google.com/gmail/imap/xoauth2-protocol
        let r = xoauth2_response(
            "someuser@example.com",
            &SecretString::from("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
        );
        assert_eq!(
            r.expose_secret(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn oauthbearer_matches_rfc7628_example() {
        // RFC 7628 section 4.1: n,a=user@example.com,^Ahost=server.example.com^Aport=143^A
        // auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==^A^A
        let r = oauthbearer_response(
            "user@example.com",
            "server.example.com",
            143,
            &SecretString::from("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="),
        );
        assert_eq!(
            r.expose_secret(),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
        );
        let escaped = oauthbearer_response("a,b=c", "h", 1, &SecretString::from("t"));
        assert!(decoded(&escaped).starts_with(b"n,a=a=2Cb=3Dc,\x01"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let creds = Credentials::password("alice", "canary-pw-123");
        let tok = Credentials::oauth2_static("alice", "canary-token-456");
        for s in [
            format!("{creds:?}"),
            format!("{tok:?}"),
            format!(
                "{:?}",
                StaticToken::new(SecretString::from("canary-token-456"))
            ),
        ] {
            assert!(!s.contains("canary"), "{s}");
        }
    }
}
