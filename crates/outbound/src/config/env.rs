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
    if source != "MAILER_DSN" && env.var("MAILER_DSN").is_some() {
        settings
            .notes
            .push(format!("MAILER_DSN is set but not used: {source} is given"));
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
        settings.completed_by = table::GROUP_COMMON;
        settings.members = std::mem::take(&mut settings.members)
            .into_iter()
            .map(|m| complete_member(env, m))
            .collect();
        note_unused(env, &mut settings);
        return settings;
    }
    for key in table::COMMON {
        fill_from_env(env, &mut settings, key);
    }
    settings.completed_by = table::COMMON;
    note_unused(env, &mut settings);
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
    // Shared limits are per account, so each member of a group keeps its own.
    for key in table::MEMBER_COMMON {
        fill_from_env(env, &mut settings, key);
    }
    settings.completed_by = table::MEMBER_COMMON;
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

/// Every variable of the table that is set but that `settings` do not read gets a note saying
/// why and what to do instead, and is recorded by the key it would set
/// ([`Settings::unused_variable`]): a set variable is never silently dropped.
///
/// What is honoured and what is reported: the variables every kind has (MAIL_DEFAULT_SEND_FROM,
/// MAIL_RETRIES, MAIL_RATE, MAIL_LIMITS_URL, MAIL_LIMITS_FAIL; MAIL_FAILOVER_COOLDOWN for a
/// group) complete a DSN where it does not set them, and are reported where it does. A kind's
/// own variables (SMTP_TLS_CA_FILE, SMTP_TIMEOUT, RESEND_API_KEY...) are reported, never
/// merged into a DSN: a DSN is the whole configuration of its transport, so it reads the same
/// wherever it is used, and two sources for one transport would make the operator guess which
/// value wins. The note names the DSN query (or part) to use instead.
fn note_unused(env: &dyn EnvSource, settings: &mut Settings) {
    let mut vars: Vec<&'static str> = KINDS
        .iter()
        .flat_map(|k| k.keys.iter())
        .chain(table::GROUP.iter())
        .flat_map(|key| key.env.iter().copied())
        .filter(|var| env.var(var).is_some() && !reads(settings, var))
        .collect();
    vars.sort_unstable();
    vars.dedup();
    for var in vars {
        let note = why_unused(settings, var);
        settings.notes.push(note);
    }
}

/// Whether `var` was read into `settings` (or a member's), itself or as the other spelling of
/// a setting read from its first (SMTP_CLIENT_ID and MICROSOFT_OAUTH2_CLIENT_ID, which must
/// agree).
fn reads(settings: &Settings, var: &str) -> bool {
    settings.values.iter().any(|s| match &s.origin {
        Origin::Env(read) => {
            read == var
                || settings
                    .key(s.key)
                    .is_some_and(|k| k.env.contains(&read.as_str()) && k.env.contains(&var))
        }
        _ => false,
    }) || settings.members.iter().any(|m| reads(m, var))
}

/// The note for `var`, set but not read; records it on the settings that have its key.
fn why_unused(settings: &mut Settings, var: &'static str) -> String {
    let source = settings.dsn_source;
    let from_dsn = matches!(settings.kind_origin, Origin::Dsn { .. });
    let note = match holder(settings, var) {
        Some((node, key)) => match (node.get(key.name), key.dsn_part) {
            (Some(given), _) => {
                format!(
                    "{var} is set but not used: {} gives the value",
                    given.origin
                )
            }
            (None, Some(part)) if from_dsn => {
                format!("{var} is set but {source} is used; give it as the {part} of the URL")
            }
            (None, None) if from_dsn && settings.group.is_some() => format!(
                "{var} is set but {source} is used; add `?{}=` to the members that need it",
                key.name
            ),
            (None, None) if from_dsn => {
                format!("{var} is set but {source} is used; add `?{}=`", key.name)
            }
            (None, _) => format!("{var} is set but not used"),
        },
        None if table::GROUP.iter().any(|k| k.env.contains(&var)) => format!(
            "{var} is set but not used: it applies only to failover(…) and roundrobin(…), \
             which MAILER_DSN configures"
        ),
        None => format!(
            "{var} is set but not used by the `{}` transport",
            settings.kind
        ),
    };
    record_unused(settings, var);
    note
}

/// The first of `settings` and its members (in order) that has a key `var` sets.
fn holder<'a>(settings: &'a Settings, var: &str) -> Option<(&'a Settings, &'static Key)> {
    if let Some(key) = settings.keys.iter().find(|k| k.env.contains(&var)) {
        return Some((settings, key));
    }
    settings.members.iter().find_map(|m| holder(m, var))
}

/// Records `var` as unused on every settings that has a key it sets.
fn record_unused(settings: &mut Settings, var: &'static str) {
    if let Some(key) = settings.keys.iter().find(|k| k.env.contains(&var)) {
        settings.unused.push((key.name, var));
    }
    for m in &mut settings.members {
        record_unused(m, var);
    }
}
