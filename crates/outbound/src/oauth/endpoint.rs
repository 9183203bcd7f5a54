//! One token request: an HTTPS POST of a form to a token endpoint, and its answer parsed into
//! an [`AccessToken`] or an [`Error`].

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::errors::{self, Context};
use super::AccessToken;
use crate::net::{self, HttpOptions, Redactor, Request, Setup};
use crate::{Error, ErrorKind, ServerCode};

/// The default time allowed for one token request, connection to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest token endpoint answer read (a token response is a few KiB): the network
/// layer's limit.
const MAX_BODY: usize = net::MAX_RESPONSE_BYTES;

/// Who transport errors and logs name.
const PEER: &str = "the token endpoint";

/// How a confidential client proves its identity to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body (`client_secret_post`); what Microsoft
    /// and Google document. The default.
    #[default]
    RequestBody,
    /// An `Authorization: Basic` header (`client_secret_basic`).
    BasicHeader,
}

/// A validated token endpoint and the HTTP client that talks to it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    client: net::Client,
    url: url::Url,
    timeout: Duration,
    pub(crate) ctx: Context,
}

/// A successful answer.
pub(crate) struct Granted {
    pub token: AccessToken,
    pub refresh_token: Option<SecretString>,
}

/// Parses and checks a token endpoint URL: https, or http to loopback only (test servers);
/// no credentials or fragment in it.
pub(crate) fn parse_url(raw: &str, what: &str) -> Result<url::Url, Error> {
    crate::net::parse_endpoint_url(raw, what)
}

impl Endpoint {
    pub(crate) fn new(url: url::Url, timeout: Duration, ctx: Context) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(Error::config(
                "the token request timeout must be more than 0 s",
            ));
        }
        // The whole request (connecting included) within `timeout`.
        let options = HttpOptions::default()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        let setup = Setup {
            // Token requests are rare (about once an hour): no idle connections, so a client
            // is never tied to a runtime that has since been shut down.
            keep_idle: false,
            no_proxy: net::is_loopback(&url),
        };
        let client = net::Client::with_setup(options, setup)?;
        Ok(Endpoint {
            client,
            url,
            timeout,
            ctx,
        })
    }

    pub(crate) fn url(&self) -> &url::Url {
        &self.url
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `form` (plus client authentication) and parses the answer. `secrets` are
    /// scrubbed from anything the server says.
    pub(crate) async fn request(
        &self,
        form: &[(&str, &str)],
        client_secret: Option<&SecretString>,
        client_auth: ClientAuth,
        secrets: &[&SecretString],
    ) -> Result<Granted, Error> {
        // The serializer is not Send: build the body in a scope of its own.
        let (body, basic) = {
            let mut body = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                body.append_pair(k, v);
            }
            let mut basic = None;
            match (client_secret, client_auth) {
                (Some(secret), ClientAuth::BasicHeader) => {
                    // RFC 6749 §2.3.1: form-encode both parts, then Basic.
                    let enc = |s: &str| {
                        url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                    };
                    let raw = format!(
                        "{}:{}",
                        enc(&self.ctx.client_id),
                        enc(secret.expose_secret())
                    );
                    let mut value = reqwest::header::HeaderValue::from_str(&format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    ))
                    .map_err(|_| {
                        Error::config("the client id or secret cannot be sent in a header")
                    })?;
                    value.set_sensitive(true);
                    basic = Some(value);
                    body.append_pair("client_id", &self.ctx.client_id);
                }
                (Some(secret), ClientAuth::RequestBody) => {
                    body.append_pair("client_id", &self.ctx.client_id);
                    body.append_pair("client_secret", secret.expose_secret());
                }
                (None, _) => {
                    body.append_pair("client_id", &self.ctx.client_id);
                }
            }
            (body.finish(), basic)
        };

        let mut req = Request::post(
            self.url.clone(),
            Bytes::from(body),
            "application/x-www-form-urlencoded",
        )
        .header(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        // A token request delivers no message: repeating it cannot deliver twice.
        req.idempotent = true;
        if let Some(value) = basic {
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }

        let sent = Instant::now();
        let net::Response {
            status,
            headers,
            body: bytes,
            truncated,
            broke_off,
        } = self.client.send(&PEER, req).await?;
        if let Some(err) = broke_off {
            return Err(err);
        }
        if truncated {
            return Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "the token endpoint {} answered more than {} KiB; that is not a token \
                     response",
                    self.url,
                    MAX_BODY / 1024
                ),
            )
            .with_code(ServerCode::Http {
                status,
                provider_code: None,
            }));
        }
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = net::wait_from_headers(&headers);

        let redact = Redactor::new(secrets.iter().copied());
        if !(200..300).contains(&status) {
            return Err(errors::from_response(
                status,
                content_type.as_deref(),
                &bytes,
                retry_after,
                &self.ctx,
                &redact,
            ));
        }
        self.parse_success(status, content_type.as_deref(), &bytes, sent, &redact)
    }

    fn parse_success(
        &self,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        sent: Instant,
        redact: &Redactor<'_>,
    ) -> Result<Granted, Error> {
        let garbage = |what: String| {
            Error::new(
                ErrorKind::Transient,
                format!(
                    "the token endpoint {} answered HTTP {status} without a token: {what}; check \
                     that the token URL is the provider's token endpoint",
                    self.url
                ),
            )
            .with_code(ServerCode::Http {
                status,
                provider_code: None,
            })
        };
        let wire: Wire = match serde_json::from_slice(body) {
            Ok(w) => w,
            Err(e) => {
                // serde's message could quote the body (and so a token): describe, don't quote.
                let ct = content_type.unwrap_or("no content type");
                let what = if e.is_eof() {
                    format!("the JSON ends early ({ct}, {} bytes)", body.len())
                } else if e.is_syntax() {
                    format!(
                        "the body is not valid JSON ({ct}, {} bytes, error at line {} column {})",
                        body.len(),
                        e.line(),
                        e.column()
                    )
                } else {
                    format!("the JSON has unexpected types ({ct}, {} bytes)", body.len())
                };
                return Err(garbage(what));
            }
        };
        // Some servers answer 200 with an error body.
        if wire.error.is_some() && wire.access_token.is_none() {
            return Err(errors::from_response(
                status,
                content_type,
                body,
                None,
                &self.ctx,
                redact,
            ));
        }
        let Some(secret) = wire.access_token.filter(|t| !t.expose_secret().is_empty()) else {
            return Err(garbage(
                "the JSON has no `access_token` (or an empty one)".to_string(),
            ));
        };
        let lifetime = wire
            .expires_in
            .as_ref()
            .and_then(seconds)
            .or_else(|| jwt_lifetime(secret.expose_secret()));
        let mut token = AccessToken::new(secret).issued_at(sent);
        if let Some(lifetime) = lifetime {
            token = token.with_lifetime(lifetime);
        } else {
            tracing::warn!(
                "the token endpoint {} gave no expires_in: the token is used until a server \
                 rejects it",
                self.url
            );
        }
        if let Some(t) = wire
            .token_type
            .as_ref()
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
        {
            let t = if t.eq_ignore_ascii_case("bearer") {
                "Bearer"
            } else {
                t
            };
            token = token.with_token_type(t);
        }
        let scope = wire
            .scope
            .as_ref()
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| self.ctx.scope.clone());
        if let Some(scope) = scope.filter(|s| !s.is_empty()) {
            token = token.with_scope(scope);
        }
        Ok(Granted {
            token,
            refresh_token: wire.refresh_token.filter(|t| !t.expose_secret().is_empty()),
        })
    }
}

/// The fields of a token response this crate reads (RFC 6749 §5.1).
#[derive(Deserialize)]
struct Wire {
    #[serde(default, deserialize_with = "opt_secret")]
    access_token: Option<SecretString>,
    #[serde(default)]
    token_type: Option<serde_json::Value>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "opt_secret")]
    refresh_token: Option<SecretString>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

/// `expires_in` as a number or a numeric string (old Azure AD endpoints send strings).
fn seconds(v: &serde_json::Value) -> Option<Duration> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if secs.is_finite() && (0.0..1e9).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// A JWT access token's lifetime from its `exp` claim (not verified: only used to schedule
/// the refresh when the server sent no `expires_in`).
fn jwt_lifetime(token: &str) -> Option<Duration> {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<f64>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<Claims>(&bytes).ok()?.exp?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    (exp.is_finite() && exp > now && exp - now < 1e9).then(|| Duration::from_secs_f64(exp - now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("https://login.microsoftonline.com/x/oauth2/v2.0/token", "t").is_ok());
        assert!(parse_url("http://127.0.0.1:8089/token", "t").is_ok());
        assert!(parse_url("http://localhost:8089/token", "t").is_ok());
        assert!(parse_url("http://[::1]:8089/token", "t").is_ok());
        let e = parse_url("http://login.example.com/token", "token URL").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("use https"), "{e}");
        assert!(parse_url("ftp://x/token", "t").is_err());
        assert!(parse_url("not a url", "t").is_err());
        assert!(parse_url("https://user:pw@x/token", "t").is_err());
    }

    #[test]
    fn expires_in_shapes() {
        assert_eq!(
            seconds(&serde_json::json!(3599)),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(
            seconds(&serde_json::json!("3599")),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(seconds(&serde_json::json!(-1)), None);
        assert_eq!(seconds(&serde_json::json!(null)), None);
    }

    #[test]
    fn jwt_exp_fallback() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{{\"exp\":{}}}", now + 600));
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        let l = jwt_lifetime(&token).unwrap();
        assert!(
            l > Duration::from_secs(590) && l <= Duration::from_secs(600),
            "{l:?}"
        );
        assert_eq!(jwt_lifetime("opaque"), None);
    }
}
