//! The registry of transport kinds: for each, its part of the settings table and the
//! functions that read its DSN, build it, give its token cache and observe its settings.
//!
//! Adding a transport is adding its keys to the table and one entry here; `from_env`,
//! `from_dsn`, `create_transport`, `supported_types` and `outbound config` all follow.
//!
//! The registry is the top of the kinds: it names every kind's builder, and nothing a kind
//! uses names the registry (see ARCHITECTURE.md for the order inside `config/`).

use std::sync::Arc;

use super::key::Key;
use super::settings::Settings;
use super::table;
use crate::oauth::TokenCache;
use crate::{Error, Transport};

/// A transport kind.
pub(crate) struct Kind {
    /// The name used in MAIL_TYPE, `create_transport` and as DSN scheme.
    pub name: &'static str,
    /// Other DSN schemes for this kind.
    pub schemes: &'static [&'static str],
    /// The settings it understands (its part of the table).
    pub keys: &'static [Key],
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
        keys: table::SMTP,
        dsn: super::smtp::dsn,
        build: super::smtp::build,
        tokens: super::smtp::tokens,
        notes: super::smtp::notes,
    },
    #[cfg(feature = "resend")]
    Kind {
        name: "resend",
        schemes: &["resend+api"],
        keys: table::RESEND,
        dsn: super::resend::resend_dsn,
        build: super::resend::build_resend,
        tokens: no_tokens,
        notes: no_notes,
    },
    #[cfg(feature = "sendgrid")]
    Kind {
        name: "sendgrid",
        schemes: &["sendgrid+api"],
        keys: table::SENDGRID,
        dsn: super::sendgrid::sendgrid_dsn,
        build: super::sendgrid::build_sendgrid,
        tokens: no_tokens,
        notes: no_notes,
    },
    #[cfg(feature = "graph")]
    Kind {
        name: "graph",
        schemes: &[],
        keys: table::GRAPH,
        dsn: super::graph::graph_dsn,
        build: super::graph::build_graph,
        tokens: super::graph::graph_token_cache,
        notes: no_notes,
    },
    Kind {
        name: "file",
        schemes: &[],
        keys: table::FILE,
        dsn: super::file::file_dsn,
        build: super::file::build_file,
        tokens: no_tokens,
        notes: no_notes,
    },
    Kind {
        name: "memory",
        schemes: &[],
        keys: table::MEMORY,
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

/// The settings of `kind` (a kind, a DSN scheme, or `failover`/`roundrobin`).
pub(crate) fn keys(kind: &str) -> Option<&'static [Key]> {
    match kind {
        "failover" | "roundrobin" => Some(table::GROUP),
        _ => find_scheme(kind).map(|k| k.keys),
    }
}

impl Settings {
    /// Adds the kind's observations to the notes (once the settings are complete).
    pub(crate) fn with_kind_notes(mut self) -> Self {
        if let Some(kind) = find_scheme(self.kind) {
            let notes = (kind.notes)(&self);
            self.notes.extend(notes);
        }
        self
    }
}
