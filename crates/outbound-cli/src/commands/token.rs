//! `outbound token`: acquires an OAuth2 access token exactly as the configured transport would
//! (SMTP with SMTP_AUTH_TYPE=oauth2, or Graph; the library's `Settings::token_cache` gives the
//! transport's own token cache) and shows it masked, with its scope and expiry. The token
//! itself is never printed: only its first and last few characters and its length.
//!
//! Exit codes as everywhere: 0 a token was obtained; 77 the provider refused the credentials
//! (its reason is shown); 78 the configuration is invalid, or the transport does not use
//! OAuth2; 75 the token endpoint failed temporarily or did not answer in time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbound::oauth::AccessToken;
use outbound::Error;
use serde_json::json;

use crate::cli::TokenArgs;
use crate::exit::{self, Failure};
use crate::load::{self, Loaded, Source};
use crate::output;

#[derive(Debug, Default)]
struct Context {
    transport: Option<&'static str>,
    description: Option<String>,
    source: Option<String>,
    notes: Vec<String>,
}

pub async fn run(args: TokenArgs) -> u8 {
    let mut ctx = Context::default();
    let result = acquire(args.dsn.dsn.as_deref(), &mut ctx).await;
    match (result, args.json) {
        (Ok(token), true) => {
            output::json(&json!({
                "status": "ok",
                "transport": ctx.transport,
                "description": ctx.description,
                "source": ctx.source,
                "token": token.masked(),
                "token_type": token.token_type(),
                "scope": token.scope(),
                "expires_at": token.expires_at().map(rfc3339),
                "expires_in_secs": token.remaining().map(|d| d.as_secs()),
                "notes": ctx.notes,
            }));
            exit::OK
        }
        (Ok(token), false) => {
            output::out(format_args!("token:   {}", token.masked()));
            output::out(format_args!("type:    {}", token.token_type()));
            output::out(format_args!(
                "scope:   {}",
                token
                    .scope()
                    .unwrap_or("unknown (neither the token endpoint nor the configuration says)")
            ));
            output::out(format_args!("expires: {}", expiry(&token)));
            if let Some(source) = &ctx.source {
                output::out(format_args!("source:  {source}"));
            }
            if let Some(description) = &ctx.description {
                output::out(format_args!("for:     {description}"));
            }
            exit::OK
        }
        (Err(failure), true) => {
            output::json(&json!({
                "status": "failed",
                "transport": ctx.transport,
                "description": ctx.description,
                "source": ctx.source,
                "notes": ctx.notes,
                "error": output::error_object(&failure),
                "exit_code": failure.code(),
            }));
            failure.code()
        }
        (Err(failure), false) => {
            match &ctx.source {
                Some(source) => output::err(format_args!("no token from {source}: {failure}")),
                None => output::err(&failure),
            }
            if failure.error().map(Error::kind) == Some(outbound::ErrorKind::Config) {
                output::err(
                    "run `outbound config` to see the configuration and where it came from",
                );
            }
            failure.code()
        }
    }
}

async fn acquire(dsn: Option<&str>, ctx: &mut Context) -> Result<Arc<AccessToken>, Failure> {
    if Source::detect(dsn) == Source::Fallback {
        return Err(Error::config(
            "no transport configured: `outbound token` needs SMTP with SMTP_AUTH_TYPE=oauth2 \
             (MAIL_TYPE=smtp and its SMTP_* variables) or MAIL_TYPE=graph, or a DSN such as \
             smtp://user@host:587?auth=oauth2&tenant=...&client_id=...&client_secret=...",
        )
        .into());
    }
    let loaded = load::load(dsn)?;
    ctx.notes = loaded.notes();
    for note in &ctx.notes {
        output::err(format_args!("note: {note}"));
    }
    // Every configuration error first, exactly as `send` and `check` would report it.
    let transport = loaded.build()?;
    ctx.transport = Some(transport.kind());
    ctx.description = Some(transport.describe());
    let Some(cache) = loaded.token_cache()? else {
        return Err(Error::config(not_oauth2(&loaded)).into());
    };
    ctx.source = Some(cache.describe().to_string());
    tracing::debug!(source = %cache.describe(), "requesting a token");
    Ok(cache.get().await?)
}

/// Why there is no token to get.
fn not_oauth2(loaded: &Loaded) -> String {
    let kind = loaded.settings.kind();
    let how = match kind {
        "smtp" => {
            let auth = loaded
                .settings
                .get("auth_type")
                .map(|s| format!("{} is {}", s.origin, s.value.expose()))
                .unwrap_or_else(|| "SMTP_AUTH_TYPE is unset, i.e. basic".to_string());
            let has = |k: &str| loaded.settings.get(k).is_some();
            if has("username") && has("password") {
                format!("authenticates with a user name and password ({auth})")
            } else {
                format!("sends without authenticating ({auth}, and no password is set)")
            }
        }
        "resend" | "sendgrid" => "authenticates with an API key".to_string(),
        _ => "needs no credentials".to_string(),
    };
    format!(
        "the {kind} transport does not use OAuth2: it {how}, so there is no token to get. \
         `outbound token` applies to SMTP with SMTP_AUTH_TYPE=oauth2 (plus SMTP_CLIENT_ID, \
         SMTP_CLIENT_SECRET, SMTP_TENANT_ID, or another SMTP_OAUTH2_PROVIDER) and to \
         MAIL_TYPE=graph"
    )
}

/// `2026-11-21 15:04:05 UTC (in 59 min)`, or why the expiry is unknown.
fn expiry(token: &AccessToken) -> String {
    match (token.expires_at(), token.remaining()) {
        (Some(at), Some(left)) => format!("{} ({})", utc(at), in_words(left)),
        _ => "unknown (a static token: it is used until a server rejects it)".to_string(),
    }
}

fn in_words(left: Duration) -> String {
    let secs = left.as_secs();
    if secs == 0 {
        "expired".to_string()
    } else if secs < 120 {
        format!("in {secs} s")
    } else {
        format!("in {} min", (secs + 30) / 60)
    }
}

/// `2026-11-21 15:04:05 UTC`.
fn utc(t: SystemTime) -> String {
    let (date, time) = civil(t);
    format!("{date} {time} UTC")
}

/// `2026-11-21T15:04:05Z`.
fn rfc3339(t: SystemTime) -> String {
    let (date, time) = civil(t);
    format!("{date}T{time}Z")
}

/// The UTC date (`YYYY-MM-DD`) and time (`HH:MM:SS`) of `t` (times before 1970 show as 1970).
fn civil(t: SystemTime) -> (String, String) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_795_269_952)), "2026-11-21T14:05:52Z");
        assert_eq!(utc(at(4_102_444_799)), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn remaining_in_words() {
        assert_eq!(in_words(Duration::from_secs(3599)), "in 60 min");
        assert_eq!(in_words(Duration::from_secs(600)), "in 10 min");
        assert_eq!(in_words(Duration::from_secs(42)), "in 42 s");
        assert_eq!(in_words(Duration::ZERO), "expired");
    }
}
