//! Where the configuration comes from: `--dsn`, else the environment (MAILER_DSN, MAIL_TYPE
//! and its variables), else nothing, in which case `send` falls back to the `file` transport
//! writing to ./outbox.
//!
//! Everything goes through `Settings::from_env_source` with a small wrapper around the
//! process environment, so `--dsn` is completed by MAIL_DEFAULT_SEND_FROM exactly like
//! MAILER_DSN is, and the fallback honours MAIL_DEFAULT_SEND_FROM and MAIL_FILE_DIR.

use outbound::config::{EnvSource, Origin, ProcessEnv, Settings};
use outbound::{Error, Mailbox};

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

/// The process environment, with MAILER_DSN replaced by `--dsn` and, for the fallback,
/// MAIL_TYPE set to `file`.
struct CliEnv<'a> {
    dsn: Option<&'a str>,
    fallback: bool,
}

impl EnvSource for CliEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        match (name, self.dsn) {
            ("MAILER_DSN", Some(dsn)) => Some(dsn.to_string()).filter(|v| !v.trim().is_empty()),
            ("MAIL_TYPE", _) if self.fallback => Some("file".to_string()),
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

    /// The configured default sender, when there is a valid one.
    pub fn default_from(&self) -> Option<Mailbox> {
        let setting = self.settings.get("default_from")?;
        Mailbox::parse_for(setting.value.expose(), "default_from").ok()
    }

    /// Builds the transport, naming `--dsn` instead of MAILER_DSN in errors when the flag was
    /// used.
    pub fn build(&self) -> Result<std::sync::Arc<dyn outbound::Transport>, Error> {
        self.settings
            .build()
            .map_err(|e| rename_error(e, self.source))
    }

    /// The OAuth2 token cache the transport authenticates with (`None` when it uses no
    /// OAuth2), naming `--dsn` in errors when the flag was used.
    pub fn token_cache(&self) -> Result<Option<outbound::TokenCache>, Error> {
        self.settings
            .token_cache()
            .map_err(|e| rename_error(e, self.source))
    }

    /// The settings' notes, worded for this source.
    pub fn notes(&self) -> Vec<String> {
        self.settings
            .notes()
            .iter()
            .map(|n| rename(n, self.source))
            .collect()
    }

    /// Where the transport kind came from, for humans.
    pub fn kind_origin(&self) -> String {
        match self.source {
            Source::Fallback => "default: nothing configured".to_string(),
            _ => origin_text(self.settings.kind_origin(), self.source),
        }
    }
}

/// Reads the configuration. Errors are configuration errors that name the variable or DSN
/// part (or `--dsn`).
pub fn load(dsn: Option<&str>) -> Result<Loaded, Error> {
    let source = Source::detect(dsn);
    let env = CliEnv {
        dsn,
        fallback: source == Source::Fallback,
    };
    match Settings::from_env_source(&env) {
        Ok(Some(settings)) => {
            tracing::debug!(
                kind = settings.kind(),
                source = source.as_str(),
                "configuration read"
            );
            Ok(Loaded { source, settings })
        }
        // Only possible if the environment changed between detect() and now.
        Ok(None) => Err(Error::config(
            "no transport configured: set MAILER_DSN, or MAIL_TYPE and its variables",
        )),
        Err(e) => Err(rename_error(e, source)),
    }
}

/// How a setting's origin is shown: MAILER_DSN parts become `--dsn` parts when the flag was
/// used.
pub fn origin_text(origin: &Origin, source: Source) -> String {
    match origin {
        Origin::Dsn(part) if source == Source::Flag => format!("--dsn {part}"),
        other => other.to_string(),
    }
}

/// A stable name of an origin's type for JSON output.
pub fn origin_type(origin: &Origin) -> &'static str {
    match origin {
        Origin::Env(_) => "env",
        Origin::Dsn(_) => "dsn",
        Origin::Map(_) => "map",
        Origin::Default => "default",
        _ => "other",
    }
}

fn rename(text: &str, source: Source) -> String {
    if source == Source::Flag {
        text.replace("MAILER_DSN", "--dsn")
    } else {
        text.to_string()
    }
}

fn rename_error(err: Error, source: Source) -> Error {
    if source == Source::Flag && err.message().contains("MAILER_DSN") {
        let mut renamed = Error::new(err.kind(), rename(err.message(), source));
        if let Some(code) = err.code() {
            renamed = renamed.with_code(code.clone());
        }
        if let Some(text) = err.server_text() {
            renamed = renamed.with_server_text(text);
        }
        renamed
    } else {
        err
    }
}
