//! OAuth2 settings shared by the configuration of the `smtp` kind (`auth_type=oauth2`) and the
//! `graph` kind: the Entra ID application under both of Dify's spellings, the authority, and the
//! Microsoft client credentials source built from them. One place, so SMTP and Graph read the
//! same variables the same way.
//!
//! Both spellings of a setting are listed in its [`Key`], so the environment reader already
//! refuses two different values (`SMTP_CLIENT_ID` and `MICROSOFT_OAUTH2_CLIENT_ID`) with an
//! error naming both. The kinds differ only in which spelling they name first (SMTP's own for
//! `smtp`, Microsoft's for `graph`) and in how an error about a missing value is worded.

#[cfg(feature = "oauth")]
use std::time::Duration;

use super::registry::Key;
use super::Settings;
#[cfg(feature = "oauth")]
pub(crate) use crate::oauth::parse_url;
#[cfg(feature = "oauth")]
use crate::oauth::ClientCredentials;
use crate::oauth::MICROSOFT_AUTHORITY;
use crate::Error;

/// The Entra ID application (client) id, read from `env` (first name preferred in messages).
pub(crate) const fn client_id_key(env: &'static [&'static str]) -> Key {
    Key {
        name: "client_id",
        env,
        aliases: &[],
        secret: false,
        default: None,
        help: "OAuth2 client (application) id; Entra ID: the app registration's id",
    }
}

/// The client secret, read from `env`.
pub(crate) const fn client_secret_key(env: &'static [&'static str]) -> Key {
    Key {
        name: "client_secret",
        env,
        aliases: &[],
        secret: true,
        default: None,
        help: "OAuth2 client secret (the secret's value, not its id)",
    }
}

/// The Entra ID tenant, read from `env`.
pub(crate) const fn tenant_id_key(env: &'static [&'static str]) -> Key {
    Key {
        name: "tenant_id",
        env,
        aliases: &["tenant"],
        secret: false,
        default: None,
        help: "Entra ID tenant (GUID or domain, e.g. contoso.onmicrosoft.com)",
    }
}

/// The Microsoft authority host (national clouds, tests).
pub(crate) const AUTHORITY_KEY: Key = Key {
    name: "authority",
    env: &["MICROSOFT_OAUTH2_AUTHORITY"],
    aliases: &[],
    secret: false,
    default: Some(MICROSOFT_AUTHORITY),
    help: "Microsoft token authority host (national clouds, tests)",
};

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
        None => (MICROSOFT_AUTHORITY.to_string(), "the default".to_string()),
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
