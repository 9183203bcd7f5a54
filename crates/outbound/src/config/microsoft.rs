//! OAuth2 settings shared by the configuration of the `smtp` kind (`auth_type=oauth2`) and the
//! `graph` kind: the Entra ID application under both of Dify's spellings, the authority, and the
//! Microsoft client credentials source built from them. One place, so SMTP and Graph read the
//! same variables the same way.
//!
//! Both spellings of a setting are listed in its key (the table's), so the environment reader already
//! refuses two different values (`SMTP_CLIENT_ID` and `MICROSOFT_OAUTH2_CLIENT_ID`) with an
//! error naming both. The kinds differ only in which spelling they name first (SMTP's own for
//! `smtp`, Microsoft's for `graph`) and in how an error about a missing value is worded.

#[cfg(feature = "oauth")]
use std::time::Duration;

use super::settings::Settings;
#[cfg(feature = "oauth")]
pub(crate) use crate::oauth::parse_url;
#[cfg(feature = "oauth")]
use crate::oauth::ClientCredentials;
use crate::oauth::MICROSOFT_AUTHORITY;
use crate::Error;

/// A trimmed, non-empty value of `key`, or the error `missing(key)` builds.
#[cfg(feature = "oauth")]
pub(crate) fn required(
    settings: &Settings,
    key: &'static str,
    missing: &dyn Fn(&'static str) -> Error,
) -> Result<String, Error> {
    settings
        .str(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing(key))
}

/// The authority to use and where it came from.
#[cfg(feature = "oauth")]
pub(crate) fn authority(settings: &Settings) -> (String, String) {
    match settings.get("authority") {
        Some(s) => (s.value.expose().trim().to_string(), s.origin.to_string()),
        // The table's default (`MICROSOFT_AUTHORITY`).
        None => (
            settings
                .text_or_default("authority")
                .unwrap_or(MICROSOFT_AUTHORITY)
                .to_string(),
            "the default".to_string(),
        ),
    }
}

/// Microsoft client credentials (`{authority}/{tenant}/oauth2/v2.0/token`) from the settings'
/// `client_id`, `client_secret`, `tenant_id` and `authority`, asking for `scope`, each request
/// allowed `timeout`. A missing value is reported with `missing(key)`; an invalid tenant or
/// authority names where the value came from.
#[cfg(feature = "oauth")]
pub(crate) fn microsoft_client_credentials(
    settings: &Settings,
    scope: &str,
    timeout: Duration,
    missing: &dyn Fn(&'static str) -> Error,
) -> Result<ClientCredentials, Error> {
    let client_id = required(settings, "client_id", missing)?;
    let tenant = required(settings, "tenant_id", missing)?;
    let client_secret = settings
        .secret("client_secret")
        .ok_or_else(|| missing("client_secret"))?;
    let (authority, authority_origin) = authority(settings);
    ClientCredentials::microsoft(tenant, client_id, client_secret, scope)
        .authority(authority)
        .timeout(timeout)
        .build()
        .map_err(|e| {
            if e.kind() == crate::ErrorKind::Config {
                let tenant_origin = settings
                    .get("tenant_id")
                    .map(|s| s.origin.to_string())
                    .unwrap_or_default();
                Error::config(format!(
                    "{} (tenant from {tenant_origin}, authority from {authority_origin})",
                    e.message()
                ))
                .with_source(e)
            } else {
                e
            }
        })
}
