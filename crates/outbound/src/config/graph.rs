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

use super::decode::decode_part;
use super::http::{base_url, http_options, source_name};
use super::settings::{Settings, Value};
use crate::http::graph::GraphTransport;
use crate::oauth::{TokenCache, MICROSOFT_GRAPH_SCOPE};
use crate::{Error, Transport};

/// `CLIENT_ID:CLIENT_SECRET@TENANT_ID`.
pub(crate) fn graph_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let source = settings.dsn_source;
    let client_id = decode_part(url.username(), &format!("{source} user"))?;
    if !client_id.is_empty() {
        settings.set_named(
            "client_id",
            Value::Plain(client_id),
            settings.dsn_origin("user"),
        );
    }
    let secret = match url.password() {
        Some(p) => Some(decode_part(p, &format!("{source} password"))?),
        None => None,
    };
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        settings.set_named(
            "client_secret",
            Value::Secret(SecretString::from(secret)),
            settings.dsn_origin("password"),
        );
    }
    match url.host_str() {
        Some(host) if !host.is_empty() && !host.eq_ignore_ascii_case("default") => {
            settings.set_named(
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
        .save_to_sent_items(settings.value_or_default::<bool>("save_to_sent_items")?);
    if let Some(url) = base_url(settings, "MICROSOFT_GRAPH_API_URL")? {
        builder = builder.base_url(url);
    }
    Ok(Arc::new(builder.build()?))
}
