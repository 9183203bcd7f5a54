//! SMTP authentication (RFC 4954) with the SASL mechanisms mail providers use: PLAIN
//! (RFC 4616), LOGIN, XOAUTH2 (Google's and Microsoft's) and OAUTHBEARER (RFC 7628).
//!
//! Why this is its own module: credentials are the one thing that must never leak, and OAuth2
//! tokens expire within an hour, so credentials are read *each time a connection
//! authenticates* (through [`AccessTokenSource`]) instead of being fixed when the transport is
//! built. Nothing here logs a payload: the wire log shows `AUTH PLAIN <redacted>`.
//!
//! The exchange follows RFC 4954 to the letter:
//! - an initial response goes on the `AUTH` line only when that line stays within 512 octets
//!   (RFC 5321's command line limit, which every server accepts; Postfix refuses initial
//!   responses over 2048 octets). Longer ones, typically OAuth2 tokens, are sent after the
//!   server's empty `334` challenge, where RFC 4954 allows 12288 octets;
//! - a zero-length initial response is sent as `=`;
//! - a failure comes either as a direct `535` (or other 5xx/4xx), or, for the OAuth2
//!   mechanisms, as a `334` carrying base64 JSON (`{"status":"401",...}`). The client answers
//!   that challenge with an empty line (XOAUTH2, as Google and Microsoft document) or with a
//!   single `%x01` (OAUTHBEARER, RFC 7628 section 3.2.3), then reads the final 5xx. The JSON
//!   ends up in the error's server text;
//! - any other unexpected challenge is cancelled with `*` (RFC 4954 section 4).

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

pub use crate::oauth::AccessTokenSource;

use super::reply::{self, Stage};
use super::session::{Capabilities, Connection};
use super::wire::Command;
use crate::oauth::{StaticToken, TokenCache};
use crate::{Error, ErrorKind};

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

    fn is_oauth2(&self) -> bool {
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

fn encode_secret(mut raw: Vec<u8>) -> SecretString {
    let encoded = B64.encode(&raw);
    // Best effort: do not leave the plain payload lying in freed memory.
    raw.iter_mut().for_each(|b| *b = 0);
    SecretString::from(encoded)
}

/// Longest `AUTH` line (CRLF included) that carries an initial response.
pub(crate) const MAX_INITIAL_RESPONSE_LINE: usize = 512;

fn fits_on_auth_line(mechanism: Mechanism, initial: &SecretString) -> bool {
    // "AUTH " + name + " " + response + CRLF
    5 + mechanism.as_str().len() + 1 + initial.expose_secret().len() + 2
        <= MAX_INITIAL_RESPONSE_LINE
}

/// The mechanism to use with `credentials` given what the server offers.
pub(crate) fn choose(
    credentials: &Credentials,
    forced: Option<Mechanism>,
    caps: &Capabilities,
) -> Result<Mechanism, Error> {
    let offered = |m: Mechanism| caps.offers(m);
    let offered_list = || {
        if caps.auth_names.is_empty() {
            "none".to_string()
        } else {
            caps.auth_names.join(" ")
        }
    };
    if !caps.has_auth {
        return Err(Error::new(
            ErrorKind::Auth,
            format!(
                "credentials are configured but the server does not offer AUTH{}",
                if caps.tls {
                    ""
                } else {
                    " on this unencrypted connection (servers usually offer it only after \
                     STARTTLS: use tls=starttls or implicit)"
                }
            ),
        ));
    }
    if let Some(m) = forced {
        if m.is_oauth2() != credentials.is_oauth2() {
            return Err(Error::config(format!(
                "SASL mechanism {m} needs {} credentials, but {} were given",
                if m.is_oauth2() { "OAuth2" } else { "password" },
                if credentials.is_oauth2() {
                    "OAuth2"
                } else {
                    "password"
                }
            )));
        }
        if !offered(m) {
            return Err(Error::new(
                ErrorKind::Auth,
                format!(
                    "AUTH {m} was requested but the server offers only: {}",
                    offered_list()
                ),
            ));
        }
        return Ok(m);
    }
    let preference: &[Mechanism] = if credentials.is_oauth2() {
        &[Mechanism::XOAuth2, Mechanism::OAuthBearer]
    } else {
        &[Mechanism::Plain, Mechanism::Login]
    };
    preference
        .iter()
        .copied()
        .find(|m| offered(*m))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Auth,
                format!(
                    "the server offers no mechanism for {} credentials (supported: {}; the server \
                 offers: {})",
                    if credentials.is_oauth2() {
                        "OAuth2"
                    } else {
                        "password"
                    },
                    preference
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    offered_list()
                ),
            )
        })
}

/// Why authentication failed.
pub(crate) struct AuthFailure {
    pub error: Error,
    /// The server rejected the OAuth2 token (a 5xx to AUTH, or a 334 JSON error): a fresh
    /// token may succeed.
    pub token_rejected: bool,
}

impl From<Error> for AuthFailure {
    fn from(error: Error) -> Self {
        AuthFailure {
            error,
            token_rejected: false,
        }
    }
}

/// Authenticates on `conn` (whose EHLO offered `caps`) once. OAuth2 credentials use `token`
/// (the caller obtained it from the credentials' source before connecting). Invalidating a
/// rejected token and retrying are the caller's decisions (see `Opening::login`).
pub(crate) async fn authenticate(
    conn: &mut Connection,
    caps: &Capabilities,
    credentials: &Credentials,
    forced: Option<Mechanism>,
    host: &str,
    port: u16,
    token: Option<&SecretString>,
) -> Result<Mechanism, AuthFailure> {
    let mechanism = choose(credentials, forced, caps)?;
    let username = credentials.username();
    let (responses, oauth) = match (credentials, mechanism) {
        (Credentials::Password { password, .. }, Mechanism::Plain) => {
            (vec![plain_response(username, password)], false)
        }
        (Credentials::Password { password, .. }, Mechanism::Login) => (
            vec![
                encode_secret(username.as_bytes().to_vec()),
                encode_secret(password.expose_secret().as_bytes().to_vec()),
            ],
            false,
        ),
        (Credentials::OAuth2 { token: source, .. }, m) => {
            let current = match token {
                Some(t) => t.clone(),
                None => source.access_token().await?,
            };
            let response = if m == Mechanism::XOAuth2 {
                xoauth2_response(username, &current)
            } else {
                oauthbearer_response(username, host, port, &current)
            };
            (vec![response], true)
        }
        // `choose` never pairs password credentials with an OAuth2 mechanism.
        (Credentials::Password { .. }, m) => {
            return Err(
                Error::config(format!("SASL mechanism {m} needs OAuth2 credentials")).into(),
            )
        }
    };
    tracing::debug!(
        conn = conn.id(),
        mechanism = %mechanism,
        username,
        "authenticating"
    );
    // A server may quote what it was sent in its refusal: the responses as sent (base64),
    // decoded, and the password or token itself never reach an error or a log.
    let mut secrets: Vec<SecretString> = responses.clone();
    for r in &responses {
        if let Some(plain) = B64
            .decode(r.expose_secret())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            secrets.extend(
                plain
                    .split(['\0', '\x01'])
                    .filter(|p| !p.is_empty())
                    .map(|p| SecretString::from(p.to_string())),
            );
            secrets.push(SecretString::from(plain));
        }
    }
    match credentials {
        Credentials::Password { password, .. } => secrets.push(password.clone()),
        Credentials::OAuth2 { .. } => {}
    }
    conn.add_secrets(secrets);
    match exchange(conn, mechanism, responses).await {
        Ok(()) => Ok(mechanism),
        Err(err) => {
            let permanent = permanent_refusal(&err);
            let token_rejected = oauth && err.kind() == ErrorKind::Auth && permanent.is_none();
            let err = match permanent {
                Some(fix) => Error::new(err.kind(), format!("{}; {fix}", err.message()))
                    .with_server_details_of(&err),
                None => err,
            };
            let who = format!("authentication as {username} with {mechanism} failed");
            Err(AuthFailure {
                error: Error::in_context(&who, err),
                token_rejected,
            })
        }
    }
}

/// A refusal that no token and no retry can fix, with the fix: Exchange Online answers
/// `535 5.7.139` when SMTP AUTH is disabled for the tenant or mailbox, and `550 5.7.30` when
/// basic authentication has been retired. A new token is not requested for these.
fn permanent_refusal(err: &Error) -> Option<&'static str> {
    let enhanced = match err.code() {
        Some(crate::ServerCode::Smtp { enhanced, .. }) => enhanced.as_deref(),
        _ => None,
    };
    let text = err.server_text().unwrap_or("").to_ascii_lowercase();
    if enhanced == Some("5.7.139") || text.contains("smtpclientauthentication is disabled") {
        Some(
            "SMTP AUTH is disabled for this tenant or mailbox: an Exchange admin must enable it \
             (Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false, or \
             the tenant-wide setting), or send through Microsoft Graph (the `graph` transport); a \
             new token will not help",
        )
    } else if enhanced == Some("5.7.30") || text.contains("basic authentication is not supported") {
        Some(
            "Exchange Online no longer accepts basic authentication (a password) for SMTP: use \
             OAuth2 credentials (XOAUTH2 with an app registration) or Microsoft Graph (the \
             `graph` transport)",
        )
    } else {
        None
    }
}

/// Runs the RFC 4954 exchange: `AUTH`, then one response per 334 challenge.
async fn exchange(
    conn: &mut Connection,
    mechanism: Mechanism,
    responses: Vec<SecretString>,
) -> Result<(), Error> {
    let mut queue = responses.into_iter();
    let initial = match mechanism {
        // LOGIN has no initial response: the server asks for the user name first.
        Mechanism::Login => None,
        _ => queue.next(),
    };
    let mut waiting: Option<SecretString> = None;
    match initial {
        Some(ir) if fits_on_auth_line(mechanism, &ir) => {
            conn.send(&[Command::Auth {
                mechanism,
                initial: Some(&ir),
            }])
            .await?;
        }
        other => {
            waiting = other;
            conn.send(&[Command::Auth {
                mechanism,
                initial: None,
            }])
            .await?;
        }
    }
    loop {
        let reply = conn.read_reply(Stage::Auth).await?;
        match reply.code {
            235 => return Ok(()),
            334 => {
                if let Some(next) = waiting.take().or_else(|| queue.next()) {
                    conn.send(&[Command::SaslResponse(&next)]).await?;
                    continue;
                }
                if mechanism.is_oauth2() {
                    // The server's error report (RFC 7628 section 3.2.2): base64 JSON.
                    let json = B64
                        .decode(reply.challenge.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .unwrap_or_else(|| reply.challenge.clone());
                    tracing::debug!(conn = conn.id(), error = %json, "SASL error challenge");
                    let dummy = SecretString::from(if mechanism == Mechanism::OAuthBearer {
                        "AQ==" // a single %x01
                    } else {
                        ""
                    });
                    conn.send(&[Command::SaslResponse(&dummy)]).await?;
                    let last = conn.read_reply(Stage::Auth).await?;
                    let err = if last.is_positive() {
                        // A server that accepts after reporting an error is broken; refuse.
                        Error::new(ErrorKind::Auth, "the server reported an OAuth2 error")
                            .with_code(last.server_code())
                    } else {
                        reply::error_for(&last, Stage::Auth, "the server rejected the token")
                    };
                    return Err(
                        err.with_server_text(format!("{} (SASL error: {json})", last.one_line()))
                    );
                }
                // An unexpected challenge: cancel (RFC 4954 section 4), then read the 501.
                let cancel = SecretString::from("*");
                conn.send(&[Command::SaslResponse(&cancel)]).await?;
                let last = conn.read_reply(Stage::Auth).await?;
                return Err(Error::new(
                    ErrorKind::Auth,
                    format!("the server sent an unexpected {mechanism} challenge; cancelled"),
                )
                .with_code(last.server_code())
                .with_server_text(last.one_line()));
            }
            _ => {
                let msg = if reply.is_transient() {
                    "the server could not authenticate right now"
                } else {
                    "the server refused the credentials"
                };
                return Err(reply::error_for(&reply, Stage::Auth, msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::session::mechanism_bit;

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
    fn long_initial_responses_wait_for_the_challenge() {
        let short = SecretString::from("A".repeat(100));
        assert!(fits_on_auth_line(Mechanism::XOAuth2, &short));
        let long = SecretString::from("A".repeat(2100));
        assert!(!fits_on_auth_line(Mechanism::XOAuth2, &long));
        let edge = SecretString::from("A".repeat(512 - "AUTH PLAIN \r\n".len()));
        assert!(fits_on_auth_line(Mechanism::Plain, &edge));
        let over = SecretString::from("A".repeat(512 - "AUTH PLAIN \r\n".len() + 1));
        assert!(!fits_on_auth_line(Mechanism::Plain, &over));
    }

    fn caps(names: &[&str], tls: bool) -> Capabilities {
        let mut c = Capabilities {
            tls,
            has_auth: !names.is_empty(),
            ..Capabilities::default()
        };
        for n in names {
            let m: Mechanism = n.parse().unwrap();
            c.auth |= mechanism_bit(m);
            c.auth_names.push(n.to_string());
        }
        c
    }

    #[test]
    fn chooses_plain_then_login_for_passwords() {
        let pw = Credentials::password("u", "p");
        assert_eq!(
            choose(&pw, None, &caps(&["LOGIN", "PLAIN"], true)).unwrap(),
            Mechanism::Plain
        );
        assert_eq!(
            choose(&pw, None, &caps(&["LOGIN", "XOAUTH2"], true)).unwrap(),
            Mechanism::Login
        );
        assert_eq!(
            choose(
                &pw,
                Some(Mechanism::Login),
                &caps(&["PLAIN", "LOGIN"], true)
            )
            .unwrap(),
            Mechanism::Login
        );
        let err = choose(&pw, None, &caps(&["XOAUTH2"], true)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert!(err.message().contains("XOAUTH2"), "{err}");
        let err = choose(&pw, None, &caps(&[], false)).unwrap_err();
        assert!(err.message().contains("does not offer AUTH"), "{err}");
        let err = choose(&pw, Some(Mechanism::XOAuth2), &caps(&["XOAUTH2"], true)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[test]
    fn chooses_xoauth2_then_oauthbearer_for_tokens() {
        let tok = Credentials::oauth2_static("u", "t");
        assert_eq!(
            choose(
                &tok,
                None,
                &caps(&["PLAIN", "OAUTHBEARER", "XOAUTH2"], true)
            )
            .unwrap(),
            Mechanism::XOAuth2
        );
        assert_eq!(
            choose(&tok, None, &caps(&["PLAIN", "OAUTHBEARER"], true)).unwrap(),
            Mechanism::OAuthBearer
        );
        assert!(choose(&tok, None, &caps(&["PLAIN", "LOGIN"], true)).is_err());
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
