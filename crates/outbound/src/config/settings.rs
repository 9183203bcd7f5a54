//! [`Settings`]: one transport's configuration as key/value pairs, each remembering where it
//! came from (an environment variable, a part of a DSN, a key of a map), so every error and
//! `outbound config` can name the exact source.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::key::{FromTyped, Key, Typed};
use crate::{Error, Mailbox};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// An environment variable.
    Env(String),
    /// A part of a DSN URL (e.g. `password`, `host`, ``query `tls` ``), and where the DSN
    /// itself came from (`MAILER_DSN`, or `--dsn` on the command line).
    Dsn {
        /// Where the DSN came from.
        source: &'static str,
        /// The part of the URL.
        part: String,
    },
    /// A key of a map given to [`create_transport`](crate::create_transport).
    Map(String),
    /// A command-line flag (e.g. `--retries`).
    Flag(String),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "{var}"),
            Origin::Dsn { source, part } => write!(f, "{source} {part}"),
            Origin::Map(key) => write!(f, "setting `{key}`"),
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A setting's value; secrets are kept in a [`SecretString`] and never printed.
#[derive(Clone)]
pub enum Value {
    /// An ordinary value.
    Plain(String),
    /// A password, client secret, token or API key.
    Secret(SecretString),
}

impl Value {
    /// The value itself (handle secrets with care).
    pub fn expose(&self) -> &str {
        match self {
            Value::Plain(v) => v,
            Value::Secret(s) => s.expose_secret(),
        }
    }

    /// Whether this is a secret.
    pub fn is_secret(&self) -> bool {
        matches!(self, Value::Secret(_))
    }

    /// The value for display: secrets become `******** (N chars)`.
    pub fn redacted(&self) -> String {
        match self {
            Value::Plain(v) => v.clone(),
            Value::Secret(s) => format!("******** ({} chars)", s.expose_secret().chars().count()),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Plain(v) => write!(f, "{v:?}"),
            Value::Secret(_) => f.write_str("[redacted]"),
        }
    }
}

/// One configured value.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The canonical key (the seeds' map key, e.g. `server`, `password`, `default_from`).
    pub key: &'static str,
    /// The value.
    pub value: Value,
    /// Where it came from.
    pub origin: Origin,
    /// The value as its key's parser read it, once, when it was set; an error is the message
    /// without its subject (the origin goes in front when it is reported, so a renamed
    /// origin, `member 2 query …`, is the one named).
    parsed: Result<Typed, String>,
}

impl Setting {
    fn new(key: &'static Key, value: Value, origin: Origin) -> Setting {
        Setting {
            key: key.name,
            parsed: key.parse.read(value.expose()),
            value,
            origin,
        }
    }

    /// `key`'s default as a setting, when it has one.
    pub(crate) fn default_of(key: &'static Key) -> Option<Setting> {
        key.default
            .map(|d| Setting::new(key, Value::Plain(d.to_string()), Origin::Default))
    }

    /// The parsed value, or the error naming where the value came from.
    fn typed(&self) -> Result<Typed, Error> {
        match &self.parsed {
            Ok(t) => Ok(t.clone()),
            Err(rest) => Err(Error::config(format!("{}{rest}", self.origin))),
        }
    }
}

/// The configuration of one transport: its kind and its settings.
///
/// ```
/// use outbound::config::{Settings, Origin};
/// let s = Settings::from_dsn("file:///tmp/outbox?from=app@example.com")?;
/// assert_eq!(s.kind(), "file");
/// assert_eq!(s.get("dir").unwrap().value.expose(), "/tmp/outbox");
/// assert_eq!(s.get("default_from").unwrap().origin.to_string(), "MAILER_DSN query `from`");
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Clone)]
pub struct Settings {
    pub(crate) kind: &'static str,
    pub(crate) kind_origin: Origin,
    /// The settings the kind understands (its part of the table).
    pub(crate) keys: &'static [Key],
    /// What errors call the DSN these settings came from (`MAILER_DSN`, `--dsn`).
    pub(crate) dsn_source: &'static str,
    pub(crate) values: Vec<Setting>,
    pub(crate) notes: Vec<String>,
    /// Variables that are set but that this configuration does not use, by the key they
    /// would set (see [`Settings::unused_variable`]).
    pub(crate) unused: Vec<(&'static str, &'static str)>,
    /// The keys the environment completes a DSN with (MAIL_DEFAULT_SEND_FROM...), once the
    /// environment was read.
    pub(crate) completed_by: &'static [&'static Key],
    /// For `failover(…)` and `roundrobin(…)`: how the members combine.
    pub(crate) group: Option<Group>,
    /// The members of a group, in order.
    pub(crate) members: Vec<Settings>,
}

/// How the members of a group of transports combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Group {
    /// `failover(a b …)`: the first that works ([`Failover`](crate::layer::Failover)).
    Failover,
    /// `roundrobin(a b …)`: in turns ([`RoundRobin`](crate::layer::RoundRobin)).
    RoundRobin,
}

impl Group {
    /// `failover` or `roundrobin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Failover => "failover",
            Group::RoundRobin => "roundrobin",
        }
    }
}

impl fmt::Debug for Settings {
    /// What was configured; the kind's keys are the table's, not repeated here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("kind", &self.kind)
            .field("kind_origin", &self.kind_origin)
            .field("dsn_source", &self.dsn_source)
            .field("values", &self.values)
            .field("notes", &self.notes)
            .field("unused", &self.unused)
            .field("group", &self.group)
            .field("members", &self.members)
            .finish()
    }
}

impl Settings {
    pub(crate) fn new(kind: &'static str, keys: &'static [Key], kind_origin: Origin) -> Self {
        Settings {
            kind,
            kind_origin,
            keys,
            dsn_source: "MAILER_DSN",
            values: Vec::new(),
            notes: Vec::new(),
            unused: Vec::new(),
            completed_by: &[],
            group: None,
            members: Vec::new(),
        }
    }

    /// The transport kind, e.g. `smtp` (`failover` or `roundrobin` for a group).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// For a group of transports (`failover(…)`, `roundrobin(…)`), how they combine.
    pub fn group(&self) -> Option<Group> {
        self.group
    }

    /// The members of a group, in order (empty for one transport).
    ///
    /// ```
    /// use outbound::config::{Group, Settings};
    /// let s = Settings::from_dsn("failover(smtp://a.example smtp://b.example)?retries=2")?;
    /// assert_eq!(s.group(), Some(Group::Failover));
    /// assert_eq!(s.members().len(), 2);
    /// assert_eq!(s.members()[1].get("server").unwrap().value.expose(), "b.example");
    /// assert_eq!(s.members()[1].get("server").unwrap().origin.to_string(), "MAILER_DSN member 2 host");
    /// assert_eq!(s.get("retries").unwrap().value.expose(), "2");
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn members(&self) -> &[Settings] {
        &self.members
    }

    /// Sets `key` from a command-line flag, over any other source (`--retries`, `--rate`).
    /// Only the keys every configuration has are accepted: `retries`, `rate`, `default_from`.
    pub fn set_from_flag(&mut self, key: &str, value: &str, flag: &str) -> Result<(), Error> {
        let key = super::table::COMMON
            .iter()
            .find(|k| k.name == key)
            .ok_or_else(|| Error::config(format!("`{key}` cannot be set from {flag}")))?;
        self.set(
            key,
            Value::Plain(value.to_string()),
            Origin::Flag(flag.to_string()),
        );
        Ok(())
    }

    /// Where the kind came from (MAIL_TYPE, the DSN's scheme, the caller).
    pub fn kind_origin(&self) -> &Origin {
        &self.kind_origin
    }

    /// The setting for `key`, when one was given.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.values.iter().find(|s| s.key == key)
    }

    /// Every setting that was given, in the order read.
    pub fn values(&self) -> &[Setting] {
        &self.values
    }

    /// Observations worth an operator's attention that are not errors (ignored variables...).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The environment variable that would set `key` but that this configuration does not
    /// use, when one is set: with `MAILER_DSN`, `SMTP_TLS_CA_FILE` is not read (the DSN is
    /// the whole configuration; the notes say to add `?ca_file=`).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use outbound::config::Settings;
    /// let env = HashMap::from([
    ///     ("MAILER_DSN".to_string(), "smtp://smtp.example.com".to_string()),
    ///     ("SMTP_TLS_CA_FILE".to_string(), "/etc/ca.pem".to_string()),
    /// ]);
    /// let s = Settings::from_env_source(&env)?.unwrap();
    /// assert_eq!(s.unused_variable("ca_file"), Some("SMTP_TLS_CA_FILE"));
    /// assert!(s.notes().iter().any(|n| n.contains("add `?ca_file=`")));
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn unused_variable(&self, key: &str) -> Option<&'static str> {
        self.unused
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, var)| *var)
    }

    /// Where `key` would be set, when it is not: its variables (`SMTP_CLIENT_ID or
    /// MICROSOFT_OAUTH2_CLIENT_ID`) in a configuration from the environment, its DSN part or
    /// query in one from a DSN (with the variables that complete a DSN, `MAIL_DEFAULT_SEND_FROM
    /// or MAILER_DSN query `default_from``), its key in a map; `None` when this configuration
    /// has no way to set it (`mechanism` from the environment).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use outbound::config::Settings;
    /// let s = Settings::from_dsn_with_env("smtp://smtp.example.com", "MAILER_DSN", &HashMap::new())?;
    /// assert_eq!(s.where_to_set("ca_file").as_deref(), Some("MAILER_DSN query `ca_file`"));
    /// assert_eq!(
    ///     s.where_to_set("default_from").as_deref(),
    ///     Some("MAIL_DEFAULT_SEND_FROM or MAILER_DSN query `default_from`")
    /// );
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn where_to_set(&self, key: &str) -> Option<String> {
        let def = self.key(key)?;
        match self.kind_origin() {
            Origin::Env(_) if def.env.is_empty() => None,
            Origin::Env(_) => Some(def.env.join(" or ")),
            Origin::Dsn { .. } => {
                let in_dsn = self.name_of_unset(def);
                match self.completed_by.iter().find(|k| k.name == key) {
                    Some(k) => Some(format!("{} or {in_dsn}", k.env.join(" or "))),
                    None => Some(in_dsn),
                }
            }
            _ => Some(format!("setting `{key}`")),
        }
    }

    /// Names every DSN part (and nested members') as part of `prefix` (`member 2 host`).
    pub(crate) fn rename_dsn_parts(&mut self, prefix: &str) {
        let rename = |origin: &mut Origin| {
            if let Origin::Dsn { part, .. } = origin {
                *part = format!("{prefix} {part}");
            }
        };
        rename(&mut self.kind_origin);
        for s in &mut self.values {
            rename(&mut s.origin);
        }
        for m in &mut self.members {
            m.rename_dsn_parts(prefix);
        }
    }

    /// The origin of a value read from `part` of this settings' DSN.
    pub(crate) fn dsn_origin(&self, part: impl Into<String>) -> Origin {
        Origin::Dsn {
            source: self.dsn_source,
            part: part.into(),
        }
    }

    /// The definition of `name` among this kind's keys.
    pub(crate) fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Sets `key`, replacing an earlier value; the value is parsed here, once.
    pub(crate) fn set(&mut self, key: &'static Key, value: Value, origin: Origin) {
        self.values.retain(|s| s.key != key.name);
        self.values.push(Setting::new(key, value, origin));
    }

    /// Sets the key named `name` (one of this kind's).
    pub(crate) fn set_named(&mut self, name: &'static str, value: Value, origin: Origin) {
        match self.key(name) {
            Some(key) => self.set(key, value, origin),
            // Not in the table: kept as text (only a kind's own DSN reader sets by name).
            None => {
                self.values.retain(|s| s.key != name);
                self.values.push(Setting {
                    key: name,
                    value,
                    origin,
                    parsed: Ok(Typed::Text),
                });
            }
        }
    }

    /// How to name `key` to an operator: where its value came from when it was given,
    /// otherwise where it would come from (the variable, DSN part or map key).
    pub(crate) fn name_of(&self, key: &str) -> String {
        if let Some(s) = self.get(key) {
            return s.origin.to_string();
        }
        match self.key(key) {
            Some(def) => self.name_of_unset(def),
            None => format!("setting `{key}`"),
        }
    }

    /// Where `key`, unset, would come from.
    fn name_of_unset(&self, key: &Key) -> String {
        match self.kind_origin() {
            Origin::Env(_) => match key.env {
                [only] => (*only).to_string(),
                [first, rest @ ..] => format!("{first} (or {})", rest.join(" or ")),
                [] => format!("setting `{}`", key.name),
            },
            Origin::Dsn { source, part } => {
                // A member of a group is named as one (`MAILER_DSN member 2 query …`).
                let member = part.strip_suffix("scheme").unwrap_or_default();
                match key.dsn_part {
                    Some(part) => format!("{source} {member}{part}"),
                    None => format!("{source} {member}query `{}`", key.name),
                }
            }
            _ => format!("setting `{}`", key.name),
        }
    }

    /// The value of `key` as text.
    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        self.get(key).map(|s| s.value.expose())
    }

    /// The text of `key`: given, else the table's default.
    pub(crate) fn text_or_default(&self, key: &str) -> Option<&str> {
        self.str(key)
            .or_else(|| self.key(key).and_then(|k| k.default))
    }

    /// The value of `key` as a secret (whether or not it was stored as one).
    pub(crate) fn secret(&self, key: &str) -> Option<SecretString> {
        self.get(key)
            .filter(|s| !s.value.expose().is_empty())
            .map(|s| match &s.value {
                Value::Secret(secret) => secret.clone(),
                Value::Plain(plain) => SecretString::from(plain.clone()),
            })
    }

    /// The given value of `key` as its parser read it (`None` when not given); an invalid
    /// value is a configuration error naming its source.
    pub(crate) fn given<T: FromTyped>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key) {
            Some(s) => typed_as(key, s.typed()?).map(Some),
            None => Ok(None),
        }
    }

    /// The value of `key`: given, else the table's default (`None` when neither).
    pub(crate) fn value<T: FromTyped>(&self, key: &str) -> Result<Option<T>, Error> {
        if let Some(s) = self.get(key) {
            return typed_as(key, s.typed()?).map(Some);
        }
        match self.key(key).and_then(Setting::default_of) {
            Some(default) => typed_as(key, default.typed()?).map(Some),
            None => Ok(None),
        }
    }

    /// The value of a key the table gives a default: given, else that default.
    pub(crate) fn value_or_default<T: FromTyped>(&self, key: &str) -> Result<T, Error> {
        self.value(key)?.ok_or_else(|| {
            Error::config(format!(
                "internal: setting `{key}` has no default in the table"
            ))
        })
    }

    /// The default sender, validated.
    pub(crate) fn default_from(&self) -> Result<Option<Mailbox>, Error> {
        self.given::<Mailbox>("default_from")
    }
}

/// `value` as a `T`; a mismatch is the table's mistake (its parser and its use disagree).
fn typed_as<T: FromTyped>(key: &str, value: Typed) -> Result<T, Error> {
    T::from_typed(value).ok_or_else(|| {
        Error::config(format!(
            "internal: setting `{key}` is not read as {}",
            T::WHAT
        ))
    })
}
