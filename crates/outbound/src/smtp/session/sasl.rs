//! Authentication (RFC 4954): the `AUTH` exchange on a connection whose EHLO offered it, with
//! the mechanism chosen from what the server offers and the credentials (`smtp::auth`).
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

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use super::capabilities::Capabilities;
use super::io::Connection;
use crate::smtp::auth::{
    encode_secret, oauthbearer_response, plain_response, xoauth2_response, Credentials, Mechanism,
};
use crate::smtp::reply::{self, Stage};
use crate::smtp::wire::Command;
use crate::{Error, ErrorKind};

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
}
