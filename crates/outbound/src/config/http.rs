//! The `resend`, `sendgrid` and `graph` kinds of the configuration registry: their settings
//! (Dify's variables and Outbound's), their DSNs, and turning settings into transports.
//!
//! DSNs:
//! - `resend://KEY@default` and `sendgrid://KEY@default` (also `resend+api://`,
//!   `sendgrid+api://`): the key is the user part, percent-decoded. The host `default` means the
//!   provider's default base URL; any other host means `https://HOST[:PORT][/PATH]` (e.g.
//!   `sendgrid://KEY@api.eu.sendgrid.com` for the EU region). `?api_url=` sets the whole base
//!   URL instead (the only way to give a plain-http loopback URL, for tests).
//! - `graph://CLIENT_ID:CLIENT_SECRET@TENANT_ID?from=mailer@contoso.com`: the client secret is
//!   percent-decoded; the host is the tenant (GUID or domain), or `default` with `?tenant_id=`.
//!   `?authority=`, `?api_url=`, `?save_to_sent_items=true` as the variables below.
//!
//! Every kind also takes `timeout` (seconds for a whole request, default 30) and
//! `connect_timeout` (default 10) in a map or DSN query.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::http::graph::GraphTransport;
use crate::http::resend::ResendTransport;
use crate::http::sendgrid::SendGridTransport;
use crate::http::{parse_base_url, HttpOptions};
use super::registry::{Key, DEFAULT_FROM};
use super::{Origin, Settings, Value};
use crate::oauth::{TokenCache, MICROSOFT_GRAPH_SCOPE};
use crate::{Error, Transport};

const TIMEOUT: Key = Key {
    name: "timeout",
    env: &[],
    aliases: &[],
    secret: false,
    default: Some("30"),
    help: "seconds allowed for a whole API request (connect, send, answer)",
};

const CONNECT_TIMEOUT: Key = Key {
    name: "connect_timeout",
    env: &[],
    aliases: &[],
    secret: false,
    default: Some("10"),
    help: "seconds allowed to connect (TCP and TLS)",
};

/// Settings of the `resend` kind.
pub(crate) const RESEND_KEYS: &[Key] = &[
    DEFAULT_FROM,
    Key {
        name: "api_key",
        env: &["RESEND_API_KEY"],
        aliases: &["key"],
        secret: true,
        default: None,
        help: "Resend API key (re_...)",
    },
    Key {
        name: "api_url",
        env: &["RESEND_API_URL"],
        aliases: &["url", "base_url"],
        secret: false,
        default: Some(ResendTransport::DEFAULT_URL),
        help: "Resend API base URL",
    },
    TIMEOUT,
    CONNECT_TIMEOUT,
];

/// Settings of the `sendgrid` kind.
pub(crate) const SENDGRID_KEYS: &[Key] = &[
    DEFAULT_FROM,
    Key {
        name: "api_key",
        env: &["SENDGRID_API_KEY"],
        aliases: &["key"],
        secret: true,
        default: None,
        help: "SendGrid API key (SG....) with the mail.send scope",
    },
    Key {
        name: "api_url",
        env: &["SENDGRID_API_URL"],
        aliases: &["url", "base_url"],
        secret: false,
        default: Some(SendGridTransport::DEFAULT_URL),
        help: "SendGrid API base URL (EU regional subusers: https://api.eu.sendgrid.com)",
    },
    TIMEOUT,
    CONNECT_TIMEOUT,
];

/// Settings of the `graph` kind.
pub(crate) const GRAPH_KEYS: &[Key] = &[
    Key {
        name: "default_from",
        env: &["MAIL_DEFAULT_SEND_FROM"],
        aliases: &["from", "mailbox", "sender"],
        secret: false,
        default: None,
        help: "the mailbox Graph sends as (required); also the sender of messages without From",
    },
    super::microsoft::client_id_key(&["MICROSOFT_OAUTH2_CLIENT_ID", "SMTP_CLIENT_ID"]),
    super::microsoft::client_secret_key(&["MICROSOFT_OAUTH2_CLIENT_SECRET", "SMTP_CLIENT_SECRET"]),
    super::microsoft::tenant_id_key(&["MICROSOFT_OAUTH2_TENANT_ID", "SMTP_TENANT_ID"]),
    super::microsoft::AUTHORITY_KEY,
    Key {
        name: "api_url",
        env: &["MICROSOFT_GRAPH_API_URL"],
        aliases: &["url", "base_url"],
        secret: false,
        default: Some(GraphTransport::DEFAULT_URL),
        help: "Graph base URL (national clouds, tests)",
    },
    Key {
        name: "save_to_sent_items",
        env: &["MICROSOFT_GRAPH_SAVE_TO_SENT_ITEMS"],
        aliases: &[],
        secret: false,
        default: Some("false"),
        help: "keep a copy in the mailbox's Sent Items (JSON form; the MIME form always does)",
    },
    TIMEOUT,
    CONNECT_TIMEOUT,
];

/// Where a setting would come from, for "is not set" errors.
fn source_name(settings: &Settings, key: &str, env: &str, dsn_part: &str) -> String {
    match settings.kind_origin() {
        Origin::Env(_) => env.to_string(),
        Origin::Dsn { source, .. } => format!("{source} {dsn_part}"),
        _ => format!("setting `{key}`"),
    }
}

/// Where a given setting came from.
fn origin_of(settings: &Settings, key: &str, fallback: &str) -> String {
    settings
        .get(key)
        .map(|s| s.origin.to_string())
        .unwrap_or_else(|| fallback.to_string())
}

fn http_options(settings: &Settings) -> Result<HttpOptions, Error> {
    let mut options = HttpOptions::default();
    if let Some(secs) = settings.number::<u64>("timeout", 1..=600)? {
        options = options.with_timeout(Duration::from_secs(secs));
    }
    if let Some(secs) = settings.number::<u64>("connect_timeout", 1..=300)? {
        options = options.with_connect_timeout(Duration::from_secs(secs));
    }
    Ok(options)
}

/// The API key, checked, naming its source on error.
fn api_key(settings: &Settings, env: &str, scheme: &str) -> Result<SecretString, Error> {
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
fn base_url(settings: &Settings, env: &str) -> Result<Option<String>, Error> {
    match settings.str("api_url") {
        Some(url) => {
            parse_base_url(url, &origin_of(settings, "api_url", env))?;
            Ok(Some(url.trim().to_string()))
        }
        None => Ok(None),
    }
}

/// `KEY@default` or `KEY@host[:port][/path]`.
fn key_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    let password = url.password().map(decode).unwrap_or_default();
    let (key, part) = if !user.is_empty() {
        (user, "user")
    } else {
        (password, "password")
    };
    if !key.is_empty() {
        settings.set(
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
            settings.set("api_url", Value::Plain(base), settings.dsn_origin("host"));
        }
    }
    Ok(())
}

pub(crate) fn resend_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    key_dsn(url, settings)
}

pub(crate) fn sendgrid_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    key_dsn(url, settings)
}

/// `CLIENT_ID:CLIENT_SECRET@TENANT_ID`.
pub(crate) fn graph_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let client_id = decode(url.username());
    if !client_id.is_empty() {
        settings.set(
            "client_id",
            Value::Plain(client_id),
            settings.dsn_origin("user"),
        );
    }
    if let Some(secret) = url.password().map(decode).filter(|s| !s.is_empty()) {
        settings.set(
            "client_secret",
            Value::Secret(SecretString::from(secret)),
            settings.dsn_origin("password"),
        );
    }
    match url.host_str() {
        Some(host) if !host.is_empty() && !host.eq_ignore_ascii_case("default") => {
            settings.set(
                "tenant_id",
                Value::Plain(host.to_string()),
                settings.dsn_origin("host"),
            );
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn build_resend(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    let key = api_key(settings, "RESEND_API_KEY", "resend")?;
    let mut builder = ResendTransport::builder(key)
        .http_options(http_options(settings)?);
    if let Some(url) = base_url(settings, "RESEND_API_URL")? {
        builder = builder.base_url(url);
    }
    Ok(Arc::new(builder.build()?))
}

pub(crate) fn build_sendgrid(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    let key = api_key(settings, "SENDGRID_API_KEY", "sendgrid")?;
    let mut builder = SendGridTransport::builder(key)
        .http_options(http_options(settings)?);
    if let Some(url) = base_url(settings, "SENDGRID_API_URL")? {
        builder = builder.base_url(url);
    }
    Ok(Arc::new(builder.build()?))
}

/// The Graph transport's token cache: Microsoft client credentials with the Graph scope.
fn graph_tokens(settings: &Settings, timeout: Duration) -> Result<TokenCache, Error> {
    let missing = |key: &'static str| {
        let (env, part, what) = match key {
            "client_id" => (
                "MICROSOFT_OAUTH2_CLIENT_ID (or SMTP_CLIENT_ID)",
                "user part (the client id)",
                "the Entra ID application (client) id",
            ),
            "tenant_id" => (
                "MICROSOFT_OAUTH2_TENANT_ID (or SMTP_TENANT_ID)",
                "host (the tenant id)",
                "the Entra ID tenant (GUID or domain)",
            ),
            _ => (
                "MICROSOFT_OAUTH2_CLIENT_SECRET (or SMTP_CLIENT_SECRET)",
                "password part (the client secret)",
                "the application's client secret",
            ),
        };
        Error::config(format!(
            "{} is not set: the graph transport needs {what}",
            source_name(settings, key, env, part)
        ))
    };
    let source = super::microsoft::microsoft_client_credentials(
        settings,
        MICROSOFT_GRAPH_SCOPE,
        timeout,
        &missing,
    )?;
    Ok(TokenCache::shared(source))
}

/// The token cache a `graph` transport from these settings uses (for `outbound token`).
pub(crate) fn graph_token_cache(settings: &Settings) -> Result<Option<TokenCache>, Error> {
    graph_tokens(settings, http_options(settings)?.timeout()).map(Some)
}

pub(crate) fn build_graph(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    let options = http_options(settings)?;
    let mailbox = settings.default_from()?.ok_or_else(|| {
        Error::config(format!(
            "{} is not set: the graph transport sends as that mailbox (e.g. \
             mailer@contoso.com)",
            source_name(
                settings,
                "default_from",
                "MAIL_DEFAULT_SEND_FROM",
                "query `from` (the mailbox)"
            )
        ))
    })?;
    let tokens = graph_tokens(settings, options.timeout())?;
    let mut builder = GraphTransport::builder(mailbox, tokens)
        .http_options(options)
        .save_to_sent_items(settings.bool("save_to_sent_items")?.unwrap_or(false));
    if let Some(url) = base_url(settings, "MICROSOFT_GRAPH_API_URL")? {
        builder = builder.base_url(url);
    }
    Ok(Arc::new(builder.build()?))
}
