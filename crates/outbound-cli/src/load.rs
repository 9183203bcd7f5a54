//! Where the configuration comes from: `--dsn`, else the environment (MAILER_DSN, MAIL_TYPE
//! and its variables), else nothing, in which case `send` falls back to the `file` transport
//! writing to ./outbox.
//!
//! `--dsn` goes through `Settings::from_dsn_with_env`, so it is completed by
//! MAIL_DEFAULT_SEND_FROM exactly like MAILER_DSN is and every error and origin names `--dsn`;
//! the fallback reads the environment as if MAIL_TYPE were `file`, so it honours
//! MAIL_DEFAULT_SEND_FROM and MAIL_FILE_DIR.

use outbound::config::{EnvSource, Origin, ProcessEnv, Settings};
use outbound::Error;

/// Where the settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `--dsn` flag.
    Flag,
    /// MAILER_DSN.
    EnvDsn,
    /// MAIL_TYPE and its variables.
    Env,
    /// Nothing configured: the `file` transport with its defaults.
    Fallback,
}

impl Source {
    /// A stable name for JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "--dsn",
            Source::EnvDsn => "MAILER_DSN",
            Source::Env => "MAIL_TYPE",
            Source::Fallback => "none",
        }
    }

    /// Which source the process environment and `dsn` select (without parsing anything).
    pub fn detect(dsn: Option<&str>) -> Source {
        if dsn.is_some() {
            Source::Flag
        } else if ProcessEnv.var("MAILER_DSN").is_some() {
            Source::EnvDsn
        } else if ProcessEnv.var("MAIL_TYPE").is_some() {
            Source::Env
        } else {
            Source::Fallback
        }
    }
}

/// The process environment with MAIL_TYPE set to `file`: the unconfigured fallback.
struct FallbackEnv;

impl EnvSource for FallbackEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "MAIL_TYPE" => Some("file".to_string()),
            _ => ProcessEnv.var(name),
        }
    }
}

/// Settings and where they came from.
#[derive(Debug)]
pub struct Loaded {
    pub source: Source,
    pub settings: Settings,
}

impl Loaded {
    /// Whether a transport was configured (as opposed to the ./outbox fallback).
    pub fn configured(&self) -> bool {
        self.source != Source::Fallback
    }

    /// Builds the transport.
    pub fn build(&self) -> Result<std::sync::Arc<dyn outbound::Transport>, Error> {
        self.settings.build()
    }

    /// The OAuth2 token cache the transport authenticates with (`None` when it uses no
    /// OAuth2).
    pub fn token_cache(&self) -> Result<Option<outbound::oauth::TokenCache>, Error> {
        self.settings.token_cache()
    }

    /// The settings' notes, and each member's for a group (`member 2: …`).
    pub fn notes(&self) -> Vec<String> {
        let mut out = self.settings.notes().to_vec();
        for (label, member) in members(&self.settings) {
            out.extend(
                member
                    .notes()
                    .iter()
                    .map(|n| format!("member {label}: {n}")),
            );
        }
        out
    }

    /// Where the transport kind came from, for humans.
    pub fn kind_origin(&self) -> String {
        match self.source {
            Source::Fallback => "default: nothing configured".to_string(),
            _ => self.settings.kind_origin().to_string(),
        }
    }
}

/// Reads the configuration. Errors are configuration errors that name the variable or DSN
/// part (or `--dsn`).
pub fn load(dsn: Option<&str>) -> Result<Loaded, Error> {
    let source = Source::detect(dsn);
    let settings = match (source, dsn) {
        (Source::Flag, Some(dsn)) => Settings::from_dsn_with_env(dsn, "--dsn", &ProcessEnv)?,
        (Source::Fallback, _) => Settings::from_env_source(&FallbackEnv)?
            .ok_or_else(|| Error::config("the ./outbox fallback could not be configured"))?,
        _ => Settings::from_env_source(&ProcessEnv)?.ok_or_else(|| {
            // Only possible if the environment changed between detect() and now.
            Error::config("no transport configured: set MAILER_DSN, or MAIL_TYPE and its variables")
        })?,
    };
    tracing::debug!(
        kind = settings.kind(),
        source = source.as_str(),
        "configuration read"
    );
    Ok(Loaded { source, settings })
}

/// Applies `--retries` and `--rate` over the configuration; without `--retries` and without
/// a configured value, `default_retries` (with origin "default for `outbound send`").
pub fn apply_layer_flags(
    loaded: &mut Loaded,
    flags: &crate::cli::LayerArgs,
    default_retries: u32,
) -> Result<(), Error> {
    if let Some(n) = flags.retries {
        loaded
            .settings
            .set_from_flag("retries", &n.to_string(), "--retries")?;
    } else if loaded.settings.get("retries").is_none() {
        loaded.settings.set_from_flag(
            "retries",
            &default_retries.to_string(),
            "default for `outbound send`",
        )?;
    }
    if let Some(rate) = &flags.rate {
        loaded.settings.set_from_flag("rate", rate, "--rate")?;
    }
    Ok(())
}

/// The members of a group, depth-first, with their labels (`2.1`: the first member of the
/// second member); empty for one transport.
pub fn members(settings: &Settings) -> Vec<(String, &Settings)> {
    fn walk<'a>(settings: &'a Settings, prefix: &str, out: &mut Vec<(String, &'a Settings)>) {
        for (i, m) in settings.members().iter().enumerate() {
            let label = format!("{prefix}{}", i + 1);
            out.push((label.clone(), m));
            walk(m, &format!("{label}."), out);
        }
    }
    let mut out = Vec::new();
    walk(settings, "", &mut out);
    out
}

/// A stable name of an origin's type for JSON output.
pub fn origin_type(origin: &Origin) -> &'static str {
    match origin {
        Origin::Env(_) => "env",
        Origin::Dsn { .. } => "dsn",
        Origin::Map(_) => "map",
        Origin::Default => "default",
        Origin::Flag(_) => "flag",
        _ => "other",
    }
}
