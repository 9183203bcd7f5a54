//! What the HTTP provider kinds (`resend`, `sendgrid`, `graph`) share: request timeouts,
//! the API key and base URL settings, and the `KEY@host` DSN form.
//!
//! Every HTTP kind takes `timeout` (seconds for a whole request) and `connect_timeout` in a
//! map or DSN query; the table defines both (with their defaults, which `HttpOptions`'s
//! agree with).

use std::time::Duration;

use secrecy::SecretString;

use super::decode::decode_part;
use super::settings::{Origin, Settings, Value};
use crate::http::{parse_base_url, HttpOptions};
use crate::Error;

/// Where a setting would come from, for "is not set" errors.
pub(super) fn source_name(settings: &Settings, key: &str, env: &str, dsn_part: &str) -> String {
    match settings.kind_origin() {
        Origin::Env(_) => env.to_string(),
        Origin::Dsn { source, .. } => format!("{source} {dsn_part}"),
        _ => format!("setting `{key}`"),
    }
}

/// Where a given setting came from.
pub(super) fn origin_of(settings: &Settings, key: &str, fallback: &str) -> String {
    settings
        .get(key)
        .map(|s| s.origin.to_string())
        .unwrap_or_else(|| fallback.to_string())
}

pub(super) fn http_options(settings: &Settings) -> Result<HttpOptions, Error> {
    let mut options = HttpOptions::default();
    if let Some(limit) = settings.value::<Duration>("timeout")? {
        options = options.with_timeout(limit);
    }
    if let Some(limit) = settings.value::<Duration>("connect_timeout")? {
        options = options.with_connect_timeout(limit);
    }
    Ok(options)
}

/// The API key, checked, naming its source on error.
pub(super) fn api_key(settings: &Settings, env: &str, scheme: &str) -> Result<SecretString, Error> {
    let key = settings.secret("api_key").ok_or_else(|| {
        Error::config(format!(
            "{} is not set: the {scheme} transport needs an API key (e.g. {scheme}://KEY@default)",
            source_name(settings, "api_key", env, "user part (the API key)")
        ))
    })?;
    crate::http::check_header_secret(&key, &origin_of(settings, "api_key", env))?;
    Ok(key)
}

/// A checked base URL, naming its source on error.
pub(super) fn base_url(settings: &Settings, env: &str) -> Result<Option<String>, Error> {
    match settings.str("api_url") {
        Some(url) => {
            parse_base_url(url, &origin_of(settings, "api_url", env))?;
            Ok(Some(url.trim().to_string()))
        }
        None => Ok(None),
    }
}

/// `KEY@default` or `KEY@host[:port][/path]`.
pub(super) fn key_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let source = settings.dsn_source;
    let user = decode_part(url.username(), &format!("{source} user"))?;
    let password = match url.password() {
        Some(p) => decode_part(p, &format!("{source} password"))?,
        None => String::new(),
    };
    let (key, part) = if !user.is_empty() {
        (user, "user")
    } else {
        (password, "password")
    };
    if !key.is_empty() {
        settings.set_named(
            "api_key",
            Value::Secret(SecretString::from(key)),
            settings.dsn_origin(part),
        );
    }
    match url.host_str() {
        None | Some("") => {
            return Err(Error::config(format!(
                "{} has no host; expected `{}://KEY@default`",
                settings.dsn_source,
                url.scheme()
            )))
        }
        Some(host) if host.eq_ignore_ascii_case("default") => {}
        Some(host) => {
            let mut base = format!("https://{host}");
            if let Some(port) = url.port() {
                base.push_str(&format!(":{port}"));
            }
            let path = url.path().trim_end_matches('/');
            base.push_str(path);
            settings.set_named("api_url", Value::Plain(base), settings.dsn_origin("host"));
        }
    }
    Ok(())
}
