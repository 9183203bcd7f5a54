//! The registry of transport kinds: for each, its settings (with their environment variables,
//! DSN query names, defaults, and whether they are secret) and how to build it.
//!
//! Adding a transport is adding one entry here; `from_env`, `from_dsn`, `create_transport`,
//! `supported_types` and `outbound config` all follow.

use std::sync::Arc;

use super::settings::Settings;
use crate::oauth::TokenCache;
use crate::{Error, Transport};

/// One setting a kind understands.
#[derive(Debug)]
pub struct Key {
    /// Canonical name, as in the seeds' config maps (`server`, `password`, ...).
    pub name: &'static str,
    /// Environment variables that set it, first one preferred.
    pub env: &'static [&'static str],
    /// Other names accepted in a map or a DSN query.
    pub aliases: &'static [&'static str],
    /// Whether the value is a secret (never printed).
    pub secret: bool,
    /// The default, when there is one.
    pub default: Option<&'static str>,
    /// One line on what it means.
    pub help: &'static str,
}

/// A transport kind.
pub(crate) struct Kind {
    /// The name used in MAIL_TYPE, `create_transport` and as DSN scheme.
    pub name: &'static str,
    /// Other DSN schemes for this kind.
    pub schemes: &'static [&'static str],
    /// The settings it understands.
    pub keys: &'static [Key],
    /// Which DSN part sets a key (`server` is the `host`), for naming unset keys; keys not
    /// listed come from the query.
    pub(crate) dsn_parts: &'static [(&'static str, &'static str)],
    /// The transport builder's name for a setting, when it differs from the key
    /// (`host` is `server`), so errors about it can name its source.
    pub(crate) fields: &'static [(&'static str, &'static str)],
    /// Reads the kind-specific parts of a DSN (host, user, path...) into settings.
    pub(crate) dsn: fn(&url::Url, &mut Settings) -> Result<(), Error>,
    /// Builds the transport.
    pub(crate) build: fn(&Settings) -> Result<Arc<dyn Transport>, Error>,
    /// The OAuth2 token cache the transport authenticates with, when it uses one (see
    /// [`Settings::token_cache`]).
    pub(crate) tokens: fn(&Settings) -> Result<Option<TokenCache>, Error>,
    /// Observations about the settings worth an operator's attention (settings that are set but
    /// will not be used...), added to [`Settings::notes`] when settings are read.
    pub(crate) notes: fn(&Settings) -> Vec<String>,
}

/// Retries after the first attempt, for failures that delivered nothing: every kind.
pub(crate) const RETRIES: Key = Key {
    name: "retries",
    env: &["MAIL_RETRIES"],
    aliases: &[],
    secret: false,
    default: None,
    help: "retries after the first attempt for failures that delivered nothing (0: none)",
};

/// A rate cap: every kind.
pub(crate) const RATE: Key = Key {
    name: "rate",
    env: &["MAIL_RATE"],
    aliases: &[],
    secret: false,
    default: None,
    help: "rate cap, e.g. 10/s or 30/min (burst optional: 30/min,burst=5)",
};

/// Shared limits (issue 12): the Redis that holds the connection cap and the rate for every
/// process sending as the same account. Secret: the URL may carry a password.
pub(crate) const LIMITS: Key = Key {
    name: "limits",
    env: &["MAIL_LIMITS_URL"],
    aliases: &[],
    secret: true,
    default: None,
    help: "redis://[:password@]host[:port][/db][?lease=S&wait=S]: connection cap and rate shared by every process using it",
};

/// What happens while the shared limits are unreachable.
pub(crate) const LIMITS_FAIL: Key = Key {
    name: "limits_fail",
    env: &["MAIL_LIMITS_FAIL"],
    aliases: &[],
    secret: false,
    default: Some("local"),
    help: "while Redis is unreachable: local (per-process limits, warned) or wait (bounded by the URL's wait=S, default 30)",
};

/// How long a failed member of failover() or roundrobin() is set aside.
pub(crate) const COOLDOWN: Key = Key {
    name: "cooldown",
    env: &["MAIL_FAILOVER_COOLDOWN"],
    aliases: &[],
    secret: false,
    default: Some("60"),
    help: "seconds a failed member of failover()/roundrobin() is set aside",
};

/// What `failover(…)` and `roundrobin(…)` themselves take.
pub(crate) const GROUP_KEYS: &[Key] = &[RETRIES, RATE, COOLDOWN];

/// Keys every kind has whose variables apply whatever the configuration's source (a DSN is
/// completed from them too).
pub(crate) const COMMON_KEYS: &[&Key] = &[&DEFAULT_FROM, &RETRIES, &RATE, &LIMITS, &LIMITS_FAIL];

/// `default_from` applies to every kind.
pub(crate) const DEFAULT_FROM: Key = Key {
    name: "default_from",
    env: &["MAIL_DEFAULT_SEND_FROM"],
    aliases: &["from"],
    secret: false,
    default: None,
    help: "sender used when a message has no From",
};

fn no_dsn_parts(_: &url::Url, _: &mut Settings) -> Result<(), Error> {
    Ok(())
}

fn no_tokens(_: &Settings) -> Result<Option<TokenCache>, Error> {
    Ok(None)
}

fn no_notes(_: &Settings) -> Vec<String> {
    Vec::new()
}

/// Every kind this build supports.
pub(crate) static KINDS: &[Kind] = &[
    #[cfg(feature = "smtp")]
    Kind {
        name: "smtp",
        schemes: &["smtps"],
        keys: super::smtp::KEYS,
        dsn_parts: &[
            ("server", "host"),
            ("username", "user"),
            ("password", "password"),
        ],
        fields: &[("host", "server")],
        dsn: super::smtp::dsn,
        build: super::smtp::build,
        tokens: super::smtp::tokens,
        notes: super::smtp::notes,
    },
    #[cfg(feature = "resend")]
    Kind {
        name: "resend",
        schemes: &["resend+api"],
        keys: super::resend::RESEND_KEYS,
        dsn_parts: &[("api_key", "user part (the API key)")],
        fields: &[("base_url", "api_url")],
        dsn: super::resend::resend_dsn,
        build: super::resend::build_resend,
        tokens: no_tokens,
        notes: no_notes,
    },
    #[cfg(feature = "sendgrid")]
    Kind {
        name: "sendgrid",
        schemes: &["sendgrid+api"],
        keys: super::sendgrid::SENDGRID_KEYS,
        dsn_parts: &[("api_key", "user part (the API key)")],
        fields: &[("base_url", "api_url")],
        dsn: super::sendgrid::sendgrid_dsn,
        build: super::sendgrid::build_sendgrid,
        tokens: no_tokens,
        notes: no_notes,
    },
    #[cfg(feature = "graph")]
    Kind {
        name: "graph",
        schemes: &[],
        keys: super::graph::GRAPH_KEYS,
        dsn_parts: &[
            ("client_id", "user"),
            ("client_secret", "password"),
            ("tenant_id", "host"),
        ],
        fields: &[("mailbox", "default_from"), ("base_url", "api_url")],
        dsn: super::graph::graph_dsn,
        build: super::graph::build_graph,
        tokens: super::graph::graph_token_cache,
        notes: no_notes,
    },
    Kind {
        name: "file",
        schemes: &[],
        keys: super::file::FILE_KEYS,
        dsn_parts: &[("dir", "path")],
        fields: &[],
        dsn: super::file::file_dsn,
        build: super::file::build_file,
        tokens: no_tokens,
        notes: no_notes,
    },
    Kind {
        name: "memory",
        schemes: &[],
        keys: super::memory::MEMORY_KEYS,
        dsn_parts: &[],
        fields: &[],
        dsn: no_dsn_parts,
        build: super::memory::build_memory,
        tokens: no_tokens,
        notes: no_notes,
    },
];

/// The kind named `name` (case-insensitive), or a config error listing the supported ones.
pub(crate) fn find(name: &str, origin: &str) -> Result<&'static Kind, Error> {
    let wanted = name.trim().to_ascii_lowercase();
    KINDS.iter().find(|k| k.name == wanted).ok_or_else(|| {
        Error::config(format!(
            "{origin} is `{name}`, which is not a supported transport; expected one of: {}",
            names().join(", ")
        ))
    })
}

/// The kind for a DSN scheme.
pub(crate) fn find_scheme(scheme: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.name == scheme || k.schemes.contains(&scheme))
}

/// The names of every kind.
pub(crate) fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}
