//! Building a transport from configuration: Dify's environment variables, a `MAILER_DSN`
//! URL, or a map of the seeds' keys.
//!
//! Every setting is defined once, in the settings table ([`Key`]: its variables, DSN and map
//! names, parser and range, default and doc). Every path produces [`Settings`] (values that
//! remember where they came from, parsed once) and one registry entry per kind turns settings
//! into a transport. So an error can always say which variable, DSN part or key was wrong, in
//! the operator's own words, and `outbound config` can show each value's source.
//!
//! Inside, dependencies point one way: `key` ← `table` ← `settings` ← `vocabulary`,
//! `decode`, `limits`, `explain` ← the kinds' shared parts (`http`, `microsoft`,
//! `oauth_provider`) ← the kinds (`smtp`, `resend`, …) ← `registry` ← `dsn` ← `env` ← this
//! module, the public entry points.

mod decode;
mod dsn;
mod env;
mod explain;
mod file;
#[cfg(feature = "graph")]
mod graph;
#[cfg(any(feature = "resend", feature = "sendgrid", feature = "graph"))]
mod http;
mod key;
mod limits;
mod memory;
#[cfg(any(feature = "smtp", feature = "graph"))]
mod microsoft;
#[cfg(feature = "smtp")]
mod oauth_provider;
mod registry;
#[cfg(feature = "resend")]
mod resend;
#[cfg(feature = "sendgrid")]
mod sendgrid;
mod settings;
#[cfg(feature = "smtp")]
mod smtp;
mod table;
mod vocabulary;

use std::sync::Arc;

use secrecy::SecretString;

pub use env::{EnvSource, ProcessEnv};
pub use key::Key;
pub use settings::{Group, Origin, Setting, Settings, Value};
#[cfg(feature = "smtp")]
pub use smtp::TlsSelection;

use crate::layer::{
    DefaultSender, Failover, Rate, RateLimit, Retry, RetryPolicy, RoundRobin, Timed,
};
use crate::oauth::TokenCache;
use crate::{Error, Transport};

/// The transport registry this build supports.
///
/// ```
/// assert!(outbound::supported_types().contains(&"file"));
/// ```
pub fn supported_types() -> Vec<&'static str> {
    registry::names()
}

/// The settings table's part for `kind` (a kind, a DSN scheme, or `failover`/`roundrobin`
/// for what a group takes): every setting it understands, with its variables, names,
/// default and one-line doc. `outbound config` and README's configuration reference follow
/// it.
///
/// ```
/// let keys = outbound::config::keys("smtp").unwrap();
/// let timeout = keys.iter().find(|k| k.name == "timeout").unwrap();
/// assert_eq!(timeout.env, ["SMTP_TIMEOUT"]);
/// assert_eq!(timeout.default, Some("30"));
/// assert!(outbound::config::keys("gopher").is_none());
/// ```
pub fn keys(kind: &str) -> Option<&'static [Key]> {
    registry::keys(kind)
}

/// Every environment variable the library reads or the command line documents, with the
/// key it sets (an empty name for MAILER_DSN, MAIL_TYPE and MAIL_MAX_SIZE, which choose the
/// configuration or are read by the command line).
///
/// ```
/// let vars: Vec<&str> = outbound::config::variables().map(|(var, _)| var).collect();
/// assert!(vars.contains(&"SMTP_TLS_CA_FILE") && vars.contains(&"MAILER_DSN"));
/// ```
pub fn variables() -> impl Iterator<Item = (&'static str, &'static Key)> {
    let mut seen: Vec<&'static str> = Vec::new();
    table::SELECTORS
        .iter()
        .chain(registry::KINDS.iter().flat_map(|k| k.keys.iter()))
        .chain(table::GROUP.iter())
        .flat_map(|key| key.env.iter().map(move |var| (*var, key)))
        .filter(move |(var, _)| {
            let new = !seen.contains(var);
            seen.push(var);
            new
        })
}

/// Builds a transport of `kind` from key/value settings, using the seeds' keys (`server`,
/// `port`, `username`, `password`, `use_tls`, `opportunistic_tls`, `auth_type`,
/// `oauth2_provider`, `client_id`, `client_secret`, `tenant_id`, `default_from`, `api_key`)
/// and Outbound's own (`dir`, ...). An unknown key is an error that lists the valid ones.
///
/// ```
/// let t = outbound::create_transport("file", [("dir", "/tmp/outbox"), ("default_from", "app@example.com")])?;
/// assert_eq!(t.kind(), "file");
/// let err = outbound::create_transport("file", [("folder", "/tmp")]).unwrap_err();
/// assert!(err.to_string().contains("`folder`"));
/// # Ok::<(), outbound::Error>(())
/// ```
pub fn create_transport<I, K, V>(kind: &str, settings: I) -> Result<Arc<dyn Transport>, Error>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Into<String>,
{
    Settings::from_map(kind, settings)?.build()
}

/// Builds a transport from a DSN such as `file:///var/outbox` or
/// `smtp://user:pass@host:587`.
///
/// ```
/// let t = outbound::from_dsn("file:///tmp/outbox")?;
/// assert_eq!(t.describe(), "file:///tmp/outbox");
/// # Ok::<(), outbound::Error>(())
/// ```
pub fn from_dsn(dsn: &str) -> Result<Arc<dyn Transport>, Error> {
    Settings::from_dsn(dsn)?.build()
}

/// Builds the transport the environment describes (`MAILER_DSN`, else `MAIL_TYPE` with
/// Dify's variables), or `None` when neither is set, like Dify's `create_from_dify_config`.
///
/// ```
/// // With neither MAILER_DSN nor MAIL_TYPE set there is no transport.
/// # std::env::remove_var("MAILER_DSN"); std::env::remove_var("MAIL_TYPE");
/// assert!(outbound::from_env()?.is_none());
/// # Ok::<(), outbound::Error>(())
/// ```
pub fn from_env() -> Result<Option<Arc<dyn Transport>>, Error> {
    match Settings::from_env()? {
        Some(settings) => settings.build().map(Some),
        None => Ok(None),
    }
}

impl Settings {
    /// Settings from the process environment; `None` when unconfigured.
    pub fn from_env() -> Result<Option<Settings>, Error> {
        env::read(&ProcessEnv)
    }

    /// Settings from any [`EnvSource`] (a map in tests).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use outbound::config::Settings;
    /// let env = HashMap::from([("MAIL_TYPE".to_string(), "file".to_string()),
    ///                          ("MAIL_FILE_DIR".to_string(), "/tmp/mail".to_string())]);
    /// let s = Settings::from_env_source(&env)?.unwrap();
    /// assert_eq!(s.get("dir").unwrap().value.expose(), "/tmp/mail");
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn from_env_source(env: &dyn EnvSource) -> Result<Option<Settings>, Error> {
        env::read(env)
    }

    /// Settings from a DSN.
    pub fn from_dsn(dsn: &str) -> Result<Settings, Error> {
        dsn::parse(dsn, "MAILER_DSN").map(Settings::with_kind_notes)
    }

    /// Settings from a DSN that came from `source` (e.g. `--dsn` on a command line), which
    /// errors and origins name; completed from `env` like `MAILER_DSN` is (the default sender
    /// from MAIL_DEFAULT_SEND_FROM, notes on ignored variables).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use outbound::config::Settings;
    /// let env = HashMap::from([("MAIL_DEFAULT_SEND_FROM".to_string(), "app@example.com".to_string())]);
    /// let s = Settings::from_dsn_with_env("file:///tmp/out", "--dsn", &env)?;
    /// assert_eq!(s.get("dir").unwrap().origin.to_string(), "--dsn path");
    /// assert_eq!(s.get("default_from").unwrap().value.expose(), "app@example.com");
    /// let err = Settings::from_dsn_with_env("gopher://x", "--dsn", &env).unwrap_err();
    /// assert!(err.to_string().contains("--dsn scheme `gopher`"));
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn from_dsn_with_env(
        dsn: &str,
        source: &'static str,
        env: &dyn EnvSource,
    ) -> Result<Settings, Error> {
        env::with_dsn(dsn, source, env)
    }

    /// Settings from a map of the seeds' keys.
    pub fn from_map<I, K, V>(kind: &str, map: I) -> Result<Settings, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let k = registry::find(kind, &format!("transport kind {kind:?}"))?;
        let mut settings = Settings::new(k.name, k.keys, Origin::Map("kind".into()));
        for (name, value) in map {
            let name = name.as_ref();
            let key = k
                .keys
                .iter()
                .find(|key| key.is_named(name))
                .ok_or_else(|| {
                    Error::config(format!(
                        "unknown setting `{name}` for the `{}` transport; expected one of: {}",
                        k.name,
                        k.keys
                            .iter()
                            .map(|key| key.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            let value: String = value.into();
            if value.trim().is_empty() {
                continue;
            }
            let value = if key.secret {
                Value::Secret(SecretString::from(value))
            } else {
                Value::Plain(value)
            };
            settings.set(key, value, Origin::Map(name.to_string()));
        }
        Ok(settings.with_kind_notes())
    }

    /// Every setting the kind understands with its effective value and source: given values,
    /// then defaults, then unset ones (value `None`).
    pub fn effective(&self) -> Vec<(&'static Key, Option<Setting>)> {
        self.keys
            .iter()
            .map(|key| {
                let setting = self
                    .get(key.name)
                    .cloned()
                    .or_else(|| Setting::default_of(key));
                (key, setting)
            })
            .collect()
    }

    /// Builds the transport, with the layers configuration always adds: the default sender
    /// (when one is set), timing, and errors that name these settings' sources.
    pub fn build(&self) -> Result<Arc<dyn Transport>, Error> {
        let transport = self.build_layers()?;
        Ok(Arc::new(explain::Configured::new(
            Arc::new(Timed::new(transport)),
            self.clone(),
        )))
    }

    /// The transport (or group) with its default sender, rate limit and retries; no timing.
    fn build_layers(&self) -> Result<Arc<dyn Transport>, Error> {
        let transport: Arc<dyn Transport> = match self.group {
            Some(group) => {
                let mut members = Vec::with_capacity(self.members.len());
                for member in &self.members {
                    // Each member explains its own errors in its own terms.
                    members.push(Arc::new(explain::Configured::new(
                        member.build_layers()?,
                        member.clone(),
                    )) as Arc<dyn Transport>);
                }
                let cooldown = self.value_or_default::<std::time::Duration>("cooldown")?;
                match group {
                    Group::Failover => Arc::new(Failover::new(members).cooldown(cooldown)),
                    Group::RoundRobin => Arc::new(RoundRobin::new(members).cooldown(cooldown)),
                }
            }
            None => {
                let kind = registry::find(self.kind, "transport kind")?;
                let transport = (kind.build)(self).map_err(|e| self.explain(e))?;
                match self.default_from()? {
                    Some(sender) => Arc::new(DefaultSender::new(transport, sender)),
                    None => transport,
                }
            }
        };
        let transport: Arc<dyn Transport> = match self.value::<Rate>("rate")? {
            Some(rate) => self.rate_limit(transport, rate)?,
            None => transport,
        };
        Ok(match self.value::<u32>("retries")? {
            Some(n) if n > 0 => Arc::new(Retry::new(transport, RetryPolicy::new(n))),
            _ => transport,
        })
    }

    /// The rate limit: shared through `limits` when set, else this process's own.
    #[cfg(feature = "shared-limits")]
    fn rate_limit(
        &self,
        transport: Arc<dyn Transport>,
        rate: Rate,
    ) -> Result<Arc<dyn Transport>, Error> {
        Ok(match self.shared_limits()? {
            Some(limits) => {
                // Per account: the transport's description names server and account, never a
                // secret, and only its hash reaches Redis.
                let id = crate::limits::account_id(&["rate", &transport.describe()]);
                let shared = limits.rate(&id, rate);
                Arc::new(RateLimit::shared(transport, rate, shared, None))
            }
            None => Arc::new(RateLimit::new(transport, Some(rate), None)),
        })
    }

    #[cfg(not(feature = "shared-limits"))]
    fn rate_limit(
        &self,
        transport: Arc<dyn Transport>,
        rate: Rate,
    ) -> Result<Arc<dyn Transport>, Error> {
        self.refuse_shared_limits()?;
        Ok(Arc::new(RateLimit::new(transport, Some(rate), None)))
    }

    /// The OAuth2 token cache the transport these settings describe authenticates with:
    /// `Some` for `smtp` with `auth_type=oauth2` and for `graph`, `None` for transports that
    /// do not use OAuth2. It is the very cache the transport uses (caches are shared per
    /// token URL, client, scope and account, see [`TokenCache::shared`]), so a token obtained
    /// here is the one the next connection authenticates with. Nothing is requested yet;
    /// `outbound token` calls [`TokenCache::get`] on it.
    ///
    /// ```
    /// use outbound::config::Settings;
    /// use secrecy::ExposeSecret;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), outbound::Error> {
    /// let s = Settings::from_dsn(
    ///     "smtp://app%40example.com@smtp.example.com?auth=oauth2&access_token=opaque-token",
    /// )?;
    /// let cache = s.token_cache()?.expect("smtp with oauth2 uses tokens");
    /// assert_eq!(cache.describe(), "static access token (no refresh)");
    /// assert_eq!(cache.get().await?.secret().expose_secret(), "opaque-token");
    ///
    /// let s = Settings::from_dsn("smtp://user:pw@smtp.example.com")?;
    /// assert!(s.token_cache()?.is_none()); // a password, no tokens
    /// # Ok(()) }
    /// ```
    pub fn token_cache(&self) -> Result<Option<TokenCache>, Error> {
        if self.group.is_some() {
            // The primary's (a group prepares and authenticates first through it).
            return match self.members.first() {
                Some(first) => first.token_cache(),
                None => Ok(None),
            };
        }
        let kind = registry::find(self.kind, "transport kind")?;
        (kind.tokens)(self)
    }
}

#[cfg(test)]
mod tests;
