//! The `graph` kind: the MICROSOFT_OAUTH2_* app registration (app-only token, scope
//! `https://graph.microsoft.com/.default`), MAIL_DEFAULT_SEND_FROM as the sending mailbox,
//! MICROSOFT_GRAPH_API_URL and MICROSOFT_GRAPH_SAVE_TO_SENT_ITEMS.
//!
//! DSN: `graph://CLIENT_ID:CLIENT_SECRET@TENANT_ID?from=mailer@contoso.com`: the client secret
//! is percent-decoded; the host is the tenant (GUID or domain), or `default` with
//! `?tenant_id=`. `?authority=`, `?api_url=`, `?save_to_sent_items=true` as the variables.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::http::{base_url, http_options, source_name, CONNECT_TIMEOUT, TIMEOUT};
use super::registry::{Key, RATE, RETRIES};
use super::registry::{LIMITS, LIMITS_FAIL};
use super::{Settings, Value};
use crate::http::graph::GraphTransport;
use crate::oauth::{TokenCache, MICROSOFT_GRAPH_SCOPE};
use crate::{Error, Transport};

/// Settings of the `graph` kind.
pub(crate) const GRAPH_KEYS: &[Key] = &[
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
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

/// `CLIENT_ID:CLIENT_SECRET@TENANT_ID`.
pub(crate) fn graph_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let source = settings.dsn_source;
    let client_id = super::dsn::decode_part(url.username(), &format!("{source} user"))?;
    if !client_id.is_empty() {
        settings.set(
            "client_id",
            Value::Plain(client_id),
            settings.dsn_origin("user"),
        );
    }
    let secret = match url.password() {
        Some(p) => Some(super::dsn::decode_part(p, &format!("{source} password"))?),
        None => None,
    };
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
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
    Ok(TokenCache::shared(super::explain::ConfiguredTokens::new(
        source, settings,
    )))
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
