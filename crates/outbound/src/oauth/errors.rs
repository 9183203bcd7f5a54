//! Turning a token endpoint's answer (or silence) into an [`Error`] an operator can act on.
//!
//! Decisions:
//! - An error body's `error` (RFC 6749 §5.2) and Microsoft's AADSTS code (from `error_codes`,
//!   else from `AADSTSnnnn` in `error_description`) pick the kind and a hint. The AADSTS code
//!   wins when both are known: it is more precise (`invalid_client` covers a wrong secret and an
//!   expired one, which need different fixes).
//! - The error carries `ServerCode::Http { status, provider_code: Some(error) }` and the
//!   provider's `error_description` (line breaks folded) as the server text.
//! - 5xx, 408 and 429 are [`ErrorKind::Transient`] (with the wait the answer asks for:
//!   `Retry-After` in seconds or as an HTTP date, or a rate-limit reset header), whatever the
//!   body says. Requests without an answer are classified by the network layer, as for the HTTP
//!   providers (a token request may be repeated): timeouts are [`ErrorKind::Timeout`];
//!   connection failures [`ErrorKind::Network`], or [`ErrorKind::Transient`] when the
//!   connection broke after the request went out (all three are retryable); TLS failures
//!   [`ErrorKind::Tls`].
//! - A 2xx answer that is not a token (not JSON, malformed JSON, no `access_token`) is
//!   [`ErrorKind::Transient`]: a token server answering garbage is at fault (overloaded, or a
//!   proxy in the way), not the caller's configuration, and a later attempt may well succeed.
//!   The message says what was wrong and suggests checking the token URL. The body of a 2xx
//!   answer is never quoted: it may hold a token.
//! - Known secrets (client secret, refresh token), JWT-shaped strings and bearer credentials
//!   are scrubbed from anything the server said before it goes into an error (the network
//!   layer's one [`Redactor`], shared with the HTTP providers).

use std::time::Duration;

use serde::Deserialize;

use crate::net::Redactor;
use crate::{Error, ErrorKind, ServerCode};

/// Which provider's conventions apply (for hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Microsoft,
    Google,
    Generic,
}

/// Which grant was requested (for hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    ClientCredentials,
    RefreshToken,
    /// Redeeming an authorization code (the authorization-code flow's last step).
    AuthorizationCode,
}

/// What the error messages may mention about the request (nothing secret).
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub provider: Provider,
    pub grant: Grant,
    pub token_url: String,
    pub client_id: String,
    pub tenant: Option<String>,
    pub scope: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    error_description: Option<serde_json::Value>,
    #[serde(default)]
    error_codes: Option<Vec<serde_json::Value>>,
}

/// What an error body said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProviderError {
    pub error: Option<String>,
    pub description: Option<String>,
    pub aadsts: Option<u64>,
}

/// Parses an RFC 6749 error body, or returns `None` when it is not one.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<ProviderError> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let error = parsed
        .error
        .as_ref()
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let description = parsed
        .error_description
        .as_ref()
        .and_then(|v| v.as_str())
        .map(str::to_string);
    if error.is_none() && description.is_none() {
        return None;
    }
    let aadsts = parsed
        .error_codes
        .as_ref()
        .and_then(|codes| codes.first())
        .and_then(|c| c.as_u64())
        .or_else(|| description.as_deref().and_then(aadsts_in));
    Some(ProviderError {
        error,
        description,
        aadsts,
    })
}

/// The first `AADSTS<digits>` in `text`.
pub(crate) fn aadsts_in(text: &str) -> Option<u64> {
    let at = text.find("AADSTS")?;
    let digits: String = text[at + 6..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Maps a non-success answer from the token endpoint.
pub(crate) fn from_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    retry_after: Option<Duration>,
    ctx: &Context,
    redact: &Redactor<'_>,
) -> Error {
    let parsed = parse_error_body(body);
    let provider_code = parsed.as_ref().and_then(|p| p.error.clone());
    let server_text = match &parsed {
        Some(p) => p
            .description
            .as_deref()
            .map(|d| redact.server_text(d, 1000)),
        None if !body.is_empty() => {
            let text = String::from_utf8_lossy(body);
            let ct = content_type.unwrap_or("no content type");
            Some(format!(
                "{} [{ct}, {} bytes]",
                redact.server_text(&text, 200),
                body.len()
            ))
        }
        None => None,
    };
    let (kind, message) = classify(status, parsed.as_ref(), ctx);
    let mut err = Error::new(kind, message).with_code(ServerCode::Http {
        status,
        provider_code,
    });
    if kind == ErrorKind::Config {
        // It may name `authority` or another setting; configuration names their sources.
        err = err.for_setting("authority");
    }
    if let Some(text) = server_text.filter(|t| !t.is_empty()) {
        err = err.with_server_text(text);
    }
    if let Some(wait) = retry_after {
        err = err.with_retry_after(wait);
    }
    err
}

fn who(ctx: &Context) -> String {
    match (&ctx.tenant, ctx.provider) {
        (Some(tenant), _) => format!("client `{}` in tenant `{tenant}`", ctx.client_id),
        _ => format!("client `{}`", ctx.client_id),
    }
}

const RECONSENT: &str =
    "sign in again interactively (re-consent) to get a new refresh token, then \
     replace the configured refresh token (and the refresh token file, if one is used)";

/// Picks the kind and message for an error answer.
fn classify(status: u16, parsed: Option<&ProviderError>, ctx: &Context) -> (ErrorKind, String) {
    let url = &ctx.token_url;
    if status >= 500 || status == 429 || status == 408 {
        let what = match status {
            429 => "is rate limiting token requests".to_string(),
            408 => "timed out the request".to_string(),
            _ => format!("failed (HTTP {status})"),
        };
        return (
            ErrorKind::Transient,
            format!("the token endpoint {url} {what}; try again later"),
        );
    }
    let error = parsed.and_then(|p| p.error.as_deref()).unwrap_or("");
    let aadsts = parsed.and_then(|p| p.aadsts);

    if let Some(code) = aadsts {
        if let Some(found) = classify_aadsts(code, ctx) {
            return found;
        }
    }

    let scope = ctx.scope.as_deref().unwrap_or("(none)");
    let aad = aadsts.map(|c| format!(" (AADSTS{c})")).unwrap_or_default();
    match error {
        "invalid_client" => (
            ErrorKind::Auth,
            format!(
                "the token endpoint {url} rejected the credentials of {}{aad}: check the client \
                 id and the client secret",
                who(ctx)
            ),
        ),
        "unauthorized_client" => (
            ErrorKind::Auth,
            match ctx.grant {
                Grant::RefreshToken => format!(
                    "{} may not use this refresh token{aad}: it was issued to another client id, \
                     or the client is not allowed the refresh_token grant",
                    who(ctx)
                ),
                Grant::ClientCredentials => format!(
                    "{} is not allowed the client_credentials grant{aad}: check the client id \
                     and the app's configuration at the provider",
                    who(ctx)
                ),
                Grant::AuthorizationCode => format!(
                    "{} is not allowed the authorization_code grant{aad}: check the client id \
                     and the app's configuration at the provider",
                    who(ctx)
                ),
            },
        ),
        "invalid_grant" => (
            ErrorKind::Auth,
            match ctx.grant {
                Grant::RefreshToken => format!(
                    "the refresh token was refused (expired or revoked){aad}: {RECONSENT}"
                ),
                Grant::ClientCredentials => format!(
                    "the token endpoint {url} refused the grant for {}{aad}",
                    who(ctx)
                ),
                Grant::AuthorizationCode => format!(
                    "the authorization code was refused (expired, already used, or issued for \
                     another redirect URI or client){aad}: ask the user to sign in again"
                ),
            },
        ),
        "invalid_scope" => (
            ErrorKind::Config,
            format!(
                "the scope `{scope}` is invalid for {}{aad}: {}",
                who(ctx),
                scope_hint(ctx)
            ),
        ),
        "unsupported_grant_type" => (
            ErrorKind::Config,
            format!(
                "the token endpoint {url} does not support the {} grant{aad}",
                grant_name(ctx.grant)
            ),
        ),
        "invalid_request" => (
            ErrorKind::Config,
            format!(
                "the token endpoint {url} called the request invalid{aad}: check the token URL, \
                 client id, tenant and scope"
            ),
        ),
        "access_denied" | "consent_required" | "interaction_required" => (
            ErrorKind::Auth,
            format!(
                "the token endpoint {url} denied {}{aad} ({error}): the app needs consent or \
                 the account needs interactive sign-in",
                who(ctx)
            ),
        ),
        "temporarily_unavailable" | "server_error" => (
            ErrorKind::Transient,
            format!("the token endpoint {url} is temporarily unavailable{aad}; try again later"),
        ),
        _ => match status {
            401 | 403 => (
                ErrorKind::Auth,
                format!(
                    "the token endpoint {url} refused {} (HTTP {status}){aad}",
                    who(ctx)
                ),
            ),
            404 | 405 => (
                ErrorKind::Config,
                format!(
                    "no token endpoint at {url} (HTTP {status}): check the token URL{}",
                    if ctx.provider == Provider::Microsoft {
                        ", the authority and the tenant"
                    } else {
                        ""
                    }
                ),
            ),
            _ => (
                ErrorKind::Auth,
                format!(
                    "the token endpoint {url} refused the token request for {} (HTTP {status}{}){aad}",
                    who(ctx),
                    if error.is_empty() {
                        String::new()
                    } else {
                        format!(" {error}")
                    }
                ),
            ),
        },
    }
}

fn grant_name(grant: Grant) -> &'static str {
    match grant {
        Grant::ClientCredentials => "client_credentials",
        Grant::RefreshToken => "refresh_token",
        Grant::AuthorizationCode => "authorization_code",
    }
}

fn scope_hint(ctx: &Context) -> &'static str {
    match (ctx.provider, ctx.grant) {
        (Provider::Microsoft, Grant::ClientCredentials) => {
            "client credentials need a `<resource>/.default` scope: \
             https://outlook.office365.com/.default for SMTP, \
             https://graph.microsoft.com/.default for Graph"
        }
        (Provider::Microsoft, Grant::RefreshToken | Grant::AuthorizationCode) => {
            "delegated SMTP needs `https://outlook.office.com/SMTP.Send offline_access`"
        }
        (Provider::Google, _) => "Gmail SMTP needs the scope `https://mail.google.com/`",
        (Provider::Generic, _) => "check the scope the provider expects",
    }
}

/// Microsoft's AADSTS codes that deserve their own message.
fn classify_aadsts(code: u64, ctx: &Context) -> Option<(ErrorKind, String)> {
    let who = who(ctx);
    let tenant = ctx.tenant.as_deref().unwrap_or("?");
    let url = &ctx.token_url;
    let found = match code {
        7000215 => (
            ErrorKind::Auth,
            format!(
                "invalid client secret for {who} (AADSTS7000215): use the secret's Value, not its \
                 Secret ID (Entra ID > App registrations > the app > Certificates & secrets)"
            ),
        ),
        7000222 => (
            ErrorKind::Auth,
            format!(
                "the client secret of {who} has expired (AADSTS7000222): create a new client \
                 secret (Entra ID > App registrations > the app > Certificates & secrets) and \
                 update the configuration"
            ),
        ),
        7000218 => (
            ErrorKind::Config,
            format!("no client secret was sent for {who} (AADSTS7000218): set the client secret"),
        ),
        700016 => (
            ErrorKind::Config,
            format!(
                "application `{}` was not found in tenant `{tenant}` (AADSTS700016): check the \
                 client id (the app's Application (client) ID) and the tenant; an app registered \
                 in another tenant needs admin consent in this one",
                ctx.client_id
            ),
        ),
        90002 | 900023 | 90013 => (
            ErrorKind::Config,
            format!(
                "tenant `{tenant}` was not found (AADSTS{code}) at {url}: check the tenant id (a \
                 GUID or a domain such as contoso.onmicrosoft.com) and, for national clouds, the \
                 authority host (`authority`)"
            ),
        ),
        70011 | 1002012 => (
            ErrorKind::Config,
            format!(
                "the scope `{}` is invalid (AADSTS{code}): {}",
                ctx.scope.as_deref().unwrap_or("(none)"),
                scope_hint(ctx)
            ),
        ),
        500011 => (
            ErrorKind::Config,
            format!(
                "the resource of scope `{}` does not exist in tenant `{tenant}` (AADSTS500011): \
                 check the scope (for SMTP the Exchange Online service principal must exist in \
                 the tenant)",
                ctx.scope.as_deref().unwrap_or("(none)")
            ),
        ),
        900144 | 90014 => (
            ErrorKind::Config,
            format!(
                "the token request lacked a required parameter (AADSTS{code}): check the client \
                 id, secret, scope and refresh token settings"
            ),
        ),
        70008 | 700082 | 700084 | 50173 | 50078 | 50089 | 70043 => (
            ErrorKind::Auth,
            format!("the refresh token has expired or was revoked (AADSTS{code}): {RECONSENT}"),
        ),
        65001 => (
            ErrorKind::Auth,
            format!(
                "consent is missing for {who} (AADSTS65001): an administrator must grant the \
                 app's permissions (SMTP.SendAsApp or Mail.Send) admin consent"
            ),
        ),
        50076 | 50079 => (
            ErrorKind::Auth,
            format!(
                "multi-factor authentication is required (AADSTS{code}): {RECONSENT}, or use \
                 client credentials"
            ),
        ),
        53003 => (
            ErrorKind::Auth,
            format!("a Conditional Access policy blocked the token for {who} (AADSTS53003)"),
        ),
        50126 => (
            ErrorKind::Auth,
            "invalid username or password (AADSTS50126)".to_string(),
        ),
        50034 | 50057 => (
            ErrorKind::Auth,
            format!("the user account does not exist or is disabled (AADSTS{code})"),
        ),
        7000112 | 700027 => (
            ErrorKind::Auth,
            format!("the application of {who} is disabled (AADSTS{code})"),
        ),
        _ => return None,
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn ctx(provider: Provider, grant: Grant) -> Context {
        Context {
            provider,
            grant,
            token_url: "https://login.microsoftonline.com/contoso/oauth2/v2.0/token".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            tenant: Some("contoso".into()),
            scope: Some("https://outlook.office365.com/.default".into()),
        }
    }

    fn map(status: u16, body: &str, grant: Grant) -> Error {
        from_response(
            status,
            Some("application/json"),
            body.as_bytes(),
            None,
            &ctx(Provider::Microsoft, grant),
            &Redactor::new([]),
        )
    }

    const INVALID_SECRET: &str = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '11111111-2222-3333-4444-555555555555'.\r\nTrace ID: 0b5e3c2a-1b2c-4d5e-8f90-123456789abc\r\nCorrelation ID: 5f6e7d8c-9b0a-4c1d-8e2f-abcdef012345\r\nTimestamp: 2024-05-01 10:00:00Z","error_codes":[7000215],"timestamp":"2024-05-01 10:00:00Z","trace_id":"0b5e3c2a-1b2c-4d5e-8f90-123456789abc","correlation_id":"5f6e7d8c-9b0a-4c1d-8e2f-abcdef012345","error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#;

    #[test]
    fn invalid_secret_is_auth_with_hint_and_code() {
        let e = map(401, INVALID_SECRET, Grant::ClientCredentials);
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.message().contains("AADSTS7000215"), "{e}");
        assert!(e.message().contains("Value, not its Secret ID"), "{e}");
        assert_eq!(
            e.code(),
            Some(&ServerCode::Http {
                status: 401,
                provider_code: Some("invalid_client".into())
            })
        );
        let text = e.server_text().unwrap();
        assert!(text.starts_with("AADSTS7000215: Invalid client secret provided."));
        assert!(text.contains("Trace ID: 0b5e3c2a"));
        assert!(!text.contains('\r') && !text.contains('\n'));
    }

    #[test]
    fn aadsts_codes_from_description_when_no_codes_array() {
        let body = r#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'nope' not found. Check to make sure you have the correct tenant ID."}"#;
        let e = map(400, body, Grant::ClientCredentials);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.message().contains("tenant `contoso` was not found"),
            "{e}"
        );
    }

    #[test]
    fn table() {
        let cases: &[(u16, &str, Grant, ErrorKind, &str)] = &[
            (
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app are expired.","error_codes":[7000222]}"#,
                Grant::ClientCredentials,
                ErrorKind::Auth,
                "expired",
            ),
            (
                400,
                r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'contoso'.","error_codes":[700016]}"#,
                Grant::ClientCredentials,
                ErrorKind::Config,
                "was not found in tenant",
            ),
            (
                400,
                r#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided request must include a 'scope' input parameter.","error_codes":[70011]}"#,
                Grant::ClientCredentials,
                ErrorKind::Config,
                "/.default",
            ),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS70008: The refresh token has expired due to inactivity.","error_codes":[70008]}"#,
                Grant::RefreshToken,
                ErrorKind::Auth,
                "re-consent",
            ),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
                Grant::RefreshToken,
                ErrorKind::Auth,
                "re-consent",
            ),
            (
                400,
                r#"{"error":"invalid_scope"}"#,
                Grant::ClientCredentials,
                ErrorKind::Config,
                "scope",
            ),
            (
                401,
                r#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#,
                Grant::RefreshToken,
                ErrorKind::Auth,
                "client id and the client secret",
            ),
            (
                400,
                r#"{"error":"unsupported_grant_type"}"#,
                Grant::RefreshToken,
                ErrorKind::Config,
                "refresh_token grant",
            ),
            (
                503,
                r#"{"error":"temporarily_unavailable"}"#,
                Grant::ClientCredentials,
                ErrorKind::Transient,
                "try again",
            ),
            (
                500,
                "<html>oops</html>",
                Grant::ClientCredentials,
                ErrorKind::Transient,
                "HTTP 500",
            ),
            (
                429,
                "",
                Grant::ClientCredentials,
                ErrorKind::Transient,
                "rate limiting",
            ),
            (
                404,
                "Not Found",
                Grant::ClientCredentials,
                ErrorKind::Config,
                "no token endpoint",
            ),
            (
                403,
                "",
                Grant::ClientCredentials,
                ErrorKind::Auth,
                "HTTP 403",
            ),
            (
                400,
                r#"{"error":"something_new"}"#,
                Grant::ClientCredentials,
                ErrorKind::Auth,
                "something_new",
            ),
        ];
        for (status, body, grant, kind, needle) in cases {
            let e = map(*status, body, *grant);
            assert_eq!(e.kind(), *kind, "{status} {body}: {e}");
            assert!(e.message().contains(needle), "{status} {body}: {e}");
            assert_eq!(e.http_status(), Some(*status));
        }
    }

    #[test]
    fn non_json_error_bodies_are_quoted_briefly_and_scrubbed() {
        let secret = SecretString::from("canary-secret-XYZ");
        let body = format!(
            "bad request: client_secret={} {}",
            "canary-secret-XYZ",
            "x".repeat(500)
        );
        let e = from_response(
            400,
            Some("text/plain"),
            body.as_bytes(),
            None,
            &ctx(Provider::Generic, Grant::ClientCredentials),
            &Redactor::new([&secret]),
        );
        let text = e.server_text().unwrap();
        assert!(!text.contains("canary-secret-XYZ"), "{text}");
        assert!(text.contains("[redacted]"));
        assert!(text.contains("[text/plain, 545 bytes]"), "{text}");
        assert!(text.chars().count() < 260);
    }

    #[test]
    fn aadsts_parse() {
        assert_eq!(aadsts_in("AADSTS7000215: x"), Some(7000215));
        assert_eq!(aadsts_in("error AADSTS90002 y"), Some(90002));
        assert_eq!(aadsts_in("AADSTS: nothing"), None);
        assert_eq!(aadsts_in("none"), None);
    }
}
