//! Configuration from environment variables: Dify's names (MAIL_TYPE, SMTP_*, RESEND_*...)
//! and `MAILER_DSN`.

use std::collections::{BTreeMap, HashMap};

use secrecy::SecretString;

use super::key::Key;
use super::registry::{self, Kind, KINDS};
use super::settings::{Origin, Settings, Value};
use super::table;
use crate::Error;

/// Where variables are read from: the process environment, or a map in tests.
pub trait EnvSource {
    /// The variable's value; empty values count as unset (an `.env` line `SMTP_PASSWORD=` means
    /// "no password", as in Dify).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<S: std::hash::BuildHasher> EnvSource for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }
}

/// Reads the configuration; `None` when neither MAILER_DSN nor MAIL_TYPE is set.
pub(crate) fn read(env: &dyn EnvSource) -> Result<Option<Settings>, Error> {
    if let Some(dsn) = env.var("MAILER_DSN") {
        return with_dsn(&dsn, "MAILER_DSN", env).map(Some);
    }
    let Some(kind) = env.var("MAIL_TYPE") else {
        return Ok(None);
    };
    let kind =
        registry::find(&kind, "MAIL_TYPE").map_err(|e| e.with_kind(crate::ErrorKind::Config))?;
    let mut settings = Settings::new(kind.name, kind.keys, Origin::Env("MAIL_TYPE".into()));
    read_kind_vars(env, kind, &mut settings)?;
    Ok(Some(complete(env, settings)))
}

/// Settings from a DSN named `source` (`MAILER_DSN`, or `--dsn` on the command line), completed
/// from the environment like any DSN: MAIL_DEFAULT_SEND_FROM when it names no sender, and notes
/// on variables it makes irrelevant.
pub(crate) fn with_dsn(
    dsn: &str,
    source: &'static str,
    env: &dyn EnvSource,
) -> Result<Settings, Error> {
    let mut settings = super::dsn::parse(dsn, source)?;
    if let Some(kind) = env.var("MAIL_TYPE") {
        if !kind.trim().eq_ignore_ascii_case(settings.kind) {
            settings.notes.push(format!(
                "MAIL_TYPE={kind} is ignored because {source} is set (kind {})",
                settings.kind
            ));
        }
    }
    Ok(complete(env, settings))
}

/// What every environment-based configuration gets: the variables every kind has
/// (MAIL_DEFAULT_SEND_FROM, MAIL_RETRIES, MAIL_RATE) where the DSN did not set them, and the
/// notes. In a group, the default sender applies to each member, retries, rate and cooldown to
/// the group (retrying at two levels would multiply the attempts).
fn complete(env: &dyn EnvSource, mut settings: Settings) -> Settings {
    if settings.group.is_some() {
        for key in table::GROUP {
            fill_from_env(env, &mut settings, key);
        }
        settings.members = std::mem::take(&mut settings.members)
            .into_iter()
            .map(|m| complete_member(env, m))
            .collect();
        return settings;
    }
    for key in table::COMMON {
        fill_from_env(env, &mut settings, key);
    }
    note_ignored_vars(env, &mut settings);
    settings.with_kind_notes()
}

fn complete_member(env: &dyn EnvSource, mut settings: Settings) -> Settings {
    if settings.group.is_some() {
        settings.members = std::mem::take(&mut settings.members)
            .into_iter()
            .map(|m| complete_member(env, m))
            .collect();
        return settings;
    }
    fill_from_env(env, &mut settings, &table::DEFAULT_FROM);
    // Shared limits are per account, so each member of a group keeps its own.
    fill_from_env(env, &mut settings, &table::LIMITS);
    fill_from_env(env, &mut settings, &table::LIMITS_FAIL);
    settings.with_kind_notes()
}

/// `key` from its variable, when the settings do not have it yet.
fn fill_from_env(env: &dyn EnvSource, settings: &mut Settings, key: &'static Key) {
    if settings.get(key.name).is_some() {
        return;
    }
    if let Some((var, value)) = key.env.iter().find_map(|v| env.var(v).map(|x| (*v, x))) {
        let value = if key.secret {
            Value::Secret(SecretString::from(value))
        } else {
            Value::Plain(value)
        };
        settings.set(key, value, Origin::Env(var.to_string()));
    }
}

fn read_kind_vars(
    env: &dyn EnvSource,
    kind: &'static Kind,
    settings: &mut Settings,
) -> Result<(), Error> {
    for key in kind.keys {
        let found: Vec<(&str, String)> = key
            .env
            .iter()
            .filter_map(|var| env.var(var).map(|v| (*var, v)))
            .collect();
        if let [(first_var, first), rest @ ..] = found.as_slice() {
            // Two spellings of one setting (Dify has SMTP_CLIENT_ID and
            // MICROSOFT_OAUTH2_CLIENT_ID) must agree; silently picking one hides a mistake.
            if let Some((other_var, _)) = rest.iter().find(|(_, v)| v != first) {
                return Err(Error::config(format!(
                    "{first_var} and {other_var} are both set to different values; set only one \
                     (they mean the same thing)"
                )));
            }
            let value = if key.secret {
                Value::Secret(SecretString::from(first.clone()))
            } else {
                Value::Plain(first.clone())
            };
            settings.set(key, value, Origin::Env((*first_var).to_string()));
        }
    }
    Ok(())
}

/// Variables of other registry that are set but unused: worth telling an operator.
fn note_ignored_vars(env: &dyn EnvSource, settings: &mut Settings) {
    let own: Vec<&str> = registry::find_scheme(settings.kind)
        .map(|k| {
            k.keys
                .iter()
                .flat_map(|key| key.env.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    let mut ignored: Vec<&str> = KINDS
        .iter()
        .flat_map(|k| k.keys.iter().flat_map(|key| key.env.iter().copied()))
        .filter(|var| !own.contains(var) && *var != "MAIL_DEFAULT_SEND_FROM")
        .filter(|var| env.var(var).is_some())
        .collect();
    ignored.sort_unstable();
    ignored.dedup();
    for var in ignored {
        settings.notes.push(format!(
            "{var} is set but not used by the `{}` transport",
            settings.kind
        ));
    }
}
