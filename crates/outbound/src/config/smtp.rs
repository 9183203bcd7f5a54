//! The `smtp` kind: Dify's SMTP_* variables with Dify's meaning (their definitions are the
//! table's), the `smtp://` and `smtps://` DSNs, and turning settings into an
//! [`SmtpTransport`].
//!
//! Dify's flags map exactly:
//!
//! | SMTP_USE_TLS | SMTP_OPPORTUNISTIC_TLS | mode |
//! |---|---|---|
//! | true | false (or unset) | implicit TLS (default port 465) |
//! | true | true | STARTTLS, required (587) |
//! | false (or unset) | false (or unset) | none (25) |
//! | false (or unset) | true | configuration error |
//!
//! The `tls` key (map or DSN query) names a mode directly: `implicit`, `starttls`,
//! `opportunistic` (only this way) or `none`; contradicting the Dify flags is an error.
//! [`Settings::tls_selection`] says which mode and port the settings select and how the
//! operator selected them; [`Settings::how_to_select_tls`] says how to select another mode,
//! in the operator's own words.
//!
//! DSNs: `smtp://` means STARTTLS (required) on port 587, `smtps://` implicit TLS on 465;
//! `?tls=none` (port 25), `?tls=opportunistic` (port 25) or `?tls=starttls` change the mode of
//! `smtp://`, and an explicit port always wins. User and password are percent-decoded.
//!
//! Login happens only when both user name and password are non-empty (as in Dify). With
//! `auth_type=oauth2` (SMTP_AUTH_TYPE) the user name is the mailbox and tokens come from the
//! cache `oauth_provider.rs` builds.
//!
//! Every value is read as the table parsed it, and a setting left unset takes the table's
//! default (the transport's own defaults agree: a test says so).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::decode::decode_part;
use super::oauth_provider::{is_oauth2, token_cache};
use super::settings::{Origin, Settings, Value};
use super::vocabulary::assignment;
use crate::oauth::TokenCache;
use crate::smtp::{Credentials, Mechanism, SmtpTransport, SmtpTransportBuilder, TlsMode};
use crate::{Error, Transport};

/// Reads the host, port, user and password of an `smtp://` or `smtps://` DSN; the query is
/// read by the registry.
pub(crate) fn dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let source = settings.dsn_source;
    let scheme = url.scheme().to_ascii_lowercase();
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
        Error::config(format!(
            "{source} has no host; expected e.g. `smtp://user:pass@smtp.example.com:587` or \
             `smtps://user:pass@smtp.example.com`"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    settings.set_named(
        "server",
        Value::Plain(host.to_string()),
        settings.dsn_origin("host"),
    );
    if let Some(port) = url.port() {
        settings.set_named(
            "port",
            Value::Plain(port.to_string()),
            settings.dsn_origin("port"),
        );
    }
    let decode = |part: &str, what: &str| decode_part(part, &format!("{source} {what}"));
    if !url.username().is_empty() {
        settings.set_named(
            "username",
            Value::Plain(decode(url.username(), "user")?),
            settings.dsn_origin("user"),
        );
    }
    if let Some(pw) = url.password().filter(|p| !p.is_empty()) {
        settings.set_named(
            "password",
            Value::Secret(SecretString::from(decode(pw, "password")?)),
            settings.dsn_origin("password"),
        );
    }
    if !(url.path().is_empty() || url.path() == "/") {
        return Err(Error::config(format!(
            "{source} path `{}` is not used by smtp; expected `{scheme}://user:pass@host:port`",
            url.path()
        )));
    }
    let implied = if scheme == "smtps" {
        TlsMode::Implicit
    } else {
        TlsMode::StartTls
    };
    if scheme == "smtps" {
        refuse_other_mode_than_implicit(url, settings)?;
    }
    settings.set_named(
        "tls",
        Value::Plain(implied.as_str().to_string()),
        settings.dsn_origin("scheme"),
    );
    Ok(())
}

/// `smtps://` is implicit TLS: a query `tls` saying otherwise contradicts the URL itself.
fn refuse_other_mode_than_implicit(url: &url::Url, settings: &Settings) -> Result<(), Error> {
    let Some(tls) = settings.key("tls") else {
        return Ok(());
    };
    let Some((_, v)) = url.query_pairs().find(|(k, _)| tls.is_named(k)) else {
        return Ok(());
    };
    if matches!(tls.parse.read(&v), Ok(super::key::Typed::Word("implicit"))) {
        return Ok(());
    }
    Err(Error::config(format!(
        "{} scheme `smtps` means implicit TLS but query `tls` is `{v}`; use \
         `smtp://...?tls={v}` instead",
        settings.dsn_source
    )))
}

/// The mode a `tls` word names (the table's parser only lets these through).
fn mode_named(word: &str) -> TlsMode {
    match word {
        "implicit" => TlsMode::Implicit,
        "starttls" => TlsMode::StartTls,
        "opportunistic" => TlsMode::Opportunistic,
        _ => TlsMode::None,
    }
}

/// The TLS mode from the `tls` key and Dify's flags.
pub(crate) fn tls_mode(settings: &Settings) -> Result<TlsMode, Error> {
    let explicit = match settings.given::<&str>("tls")? {
        Some(word) => settings
            .get("tls")
            .map(|s| (mode_named(word), s.origin.clone())),
        None => None,
    };
    let use_tls = settings.given::<bool>("use_tls")?;
    let opportunistic = settings.given::<bool>("opportunistic_tls")?;
    let dify = match (use_tls, opportunistic) {
        (None, None) => None,
        (Some(true), Some(true)) => Some(TlsMode::StartTls),
        (Some(true), _) => Some(TlsMode::Implicit),
        (_, Some(true)) => {
            return Err(Error::config(format!(
                "{} is true but {} is not: opportunistic TLS (STARTTLS) applies only when TLS \
                 is on; set {} to true for STARTTLS, or {} to false for no TLS",
                settings.name_of("opportunistic_tls"),
                settings.name_of("use_tls"),
                settings.name_of("use_tls"),
                settings.name_of("opportunistic_tls"),
            )))
        }
        _ => Some(TlsMode::None),
    };
    match (explicit, dify) {
        (Some((e, origin)), Some(d)) if e != d => Err(Error::config(format!(
            "{origin} says TLS mode `{e}` but {}/{} say `{d}`; set only one of them",
            settings.name_of("use_tls"),
            settings.name_of("opportunistic_tls"),
        ))),
        (Some((e, _)), _) => Ok(e),
        (None, Some(d)) => Ok(d),
        // Dify: SMTP_USE_TLS unset means false.
        (None, None) => Ok(TlsMode::None),
    }
}

/// Which TLS mode and port `smtp` settings select, and which settings selected them, in the
/// operator's own words (see [`Settings::tls_selection`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsSelection {
    /// The TLS mode.
    pub mode: TlsMode,
    /// The port: given, or the mode's default.
    pub port: u16,
    /// What selected the mode: `SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=true`,
    /// ``MAILER_DSN scheme `smtps` ``, ``setting `tls=starttls` ``, or the default.
    pub mode_selected_by: String,
    /// What selected the port: `SMTP_PORT`, `MAILER_DSN port`, or the mode's default.
    pub port_selected_by: String,
}

impl Settings {
    /// For `smtp` settings, the TLS mode and port they select and which settings selected
    /// them; `None` for other kinds and for groups (ask each member).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use outbound::config::Settings;
    /// use outbound::smtp::TlsMode;
    /// let env = HashMap::from([
    ///     ("MAIL_TYPE".to_string(), "smtp".to_string()),
    ///     ("SMTP_SERVER".to_string(), "smtp.example.com".to_string()),
    ///     ("SMTP_PORT".to_string(), "465".to_string()),
    ///     ("SMTP_USE_TLS".to_string(), "true".to_string()),
    ///     ("SMTP_OPPORTUNISTIC_TLS".to_string(), "true".to_string()),
    /// ]);
    /// let tls = Settings::from_env_source(&env)?.unwrap().tls_selection()?.unwrap();
    /// assert_eq!((tls.mode, tls.port), (TlsMode::StartTls, 465));
    /// assert_eq!(tls.mode_selected_by, "SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=true");
    /// assert_eq!(tls.port_selected_by, "SMTP_PORT");
    ///
    /// let s = Settings::from_dsn("smtps://smtp.example.com")?;
    /// let tls = s.tls_selection()?.unwrap();
    /// assert_eq!((tls.mode, tls.port), (TlsMode::Implicit, 465));
    /// assert_eq!(tls.mode_selected_by, "MAILER_DSN scheme `smtps`");
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn tls_selection(&self) -> Result<Option<TlsSelection>, Error> {
        if self.kind != "smtp" || self.group.is_some() {
            return Ok(None);
        }
        let mode = tls_mode(self)?;
        let (port, port_selected_by) = match self.given::<u16>("port")? {
            Some(port) => (port, self.name_of("port")),
            None => (
                mode.default_port(),
                format!("the default for {}", mode.as_str()),
            ),
        };
        Ok(Some(TlsSelection {
            mode,
            port,
            mode_selected_by: self.tls_selected_by(mode),
            port_selected_by,
        }))
    }

    /// How to select TLS `mode`, in the words the operator configured with: with Dify's
    /// variables `SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=false` (implicit TLS); with a DSN
    /// `` `?tls=starttls` in MAILER_DSN `` or its scheme; with a map of the seeds' keys
    /// `` settings `use_tls=true`, `opportunistic_tls=true` `` (or `` setting `tls=…` `` when
    /// that is the key they used).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use outbound::config::Settings;
    /// use outbound::smtp::TlsMode;
    /// let env = HashMap::from([
    ///     ("MAIL_TYPE".to_string(), "smtp".to_string()),
    ///     ("SMTP_SERVER".to_string(), "smtp.example.com".to_string()),
    ///     ("SMTP_USE_TLS".to_string(), "true".to_string()),
    /// ]);
    /// let s = Settings::from_env_source(&env)?.unwrap();
    /// assert_eq!(
    ///     s.how_to_select_tls(TlsMode::StartTls),
    ///     "SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=true"
    /// );
    /// let s = Settings::from_dsn("smtp://smtp.example.com:465")?;
    /// assert_eq!(
    ///     s.how_to_select_tls(TlsMode::Implicit),
    ///     "`smtps://` instead of `smtp://` in MAILER_DSN (or `?tls=implicit`)"
    /// );
    /// let s = Settings::from_map("smtp", [("server", "h.example"), ("use_tls", "true")])?;
    /// assert_eq!(
    ///     s.how_to_select_tls(TlsMode::StartTls),
    ///     "settings `use_tls=true`, `opportunistic_tls=true`"
    /// );
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn how_to_select_tls(&self, mode: TlsMode) -> String {
        match self.key("tls") {
            Some(key) => self.to_set(key, mode.as_str()),
            None => format!("TLS mode `{}`", mode.as_str()),
        }
    }

    /// What selected `mode`: the `tls` key or scheme when given, else Dify's flags as set.
    fn tls_selected_by(&self, mode: TlsMode) -> String {
        if let Some(tls) = self.get("tls") {
            return match &tls.origin {
                Origin::Dsn { source, part } if part.ends_with("scheme") => {
                    let scheme = if mode == TlsMode::Implicit {
                        "smtps"
                    } else {
                        "smtp"
                    };
                    format!("{source} {part} `{scheme}`")
                }
                origin => assignment(&origin.to_string(), tls.value.expose().trim()),
            };
        }
        let flags: Vec<String> = ["use_tls", "opportunistic_tls"]
            .iter()
            .filter_map(|k| self.get(k))
            .map(|s| assignment(&s.origin.to_string(), s.value.expose().trim()))
            .collect();
        if flags.is_empty() {
            format!("the default ({} unset: no TLS)", self.name_of("use_tls"))
        } else {
            flags.join(", ")
        }
    }
}

/// A builder from settings, every error naming its source.
pub(crate) fn builder(settings: &Settings) -> Result<SmtpTransportBuilder, Error> {
    let server = settings.str("server").map(str::trim).unwrap_or_default();
    if server.is_empty() {
        return Err(Error::config(format!(
            "{} is not set; the smtp transport needs the server's host name (e.g. \
             smtp.example.com)",
            settings.name_of("server")
        )));
    }
    let mode = tls_mode(settings)?;
    let mut b = SmtpTransport::builder(server).tls(mode);
    if let Some(port) = settings.given::<u16>("port")? {
        b = b.port(port);
    }
    b = shared_connection_cap(settings, b, server, mode)?;
    b = authentication(settings, b)?;
    connection_options(settings, b)
}

/// Credentials: an OAuth2 token cache, a password, or none (a relay).
fn authentication(
    settings: &Settings,
    mut b: SmtpTransportBuilder,
) -> Result<SmtpTransportBuilder, Error> {
    let username = settings.str("username").filter(|u| !u.trim().is_empty());
    let password = settings
        .get("password")
        .filter(|p| !p.value.expose().is_empty());
    if is_oauth2(settings)? {
        let Some(user) = username else {
            return Err(Error::config(format!(
                "{} but {} is not set; XOAUTH2 and OAUTHBEARER need the mailbox the token is \
                 for (e.g. mailer@contoso.com)",
                assignment(&settings.name_of("auth_type"), "oauth2"),
                settings.name_of("username")
            )));
        };
        let cache = token_cache(settings)?
            .ok_or_else(|| Error::config("internal: auth_type=oauth2 without a token source"))?;
        return Ok(b.credentials(Credentials::oauth2_cache(user.trim(), cache)));
    }
    match (username, password) {
        (Some(user), Some(pw)) => {
            b = b.credentials(Credentials::password(user, pw.value.expose()));
        }
        (Some(_), None) => tracing::warn!(
            "{} is set but {} is not: connecting without authentication (Dify logs in only \
             when both are set)",
            settings.name_of("username"),
            settings.name_of("password")
        ),
        (None, Some(_)) => tracing::warn!(
            "{} is set but {} is not: connecting without authentication (Dify logs in only \
             when both are set)",
            settings.name_of("password"),
            settings.name_of("username")
        ),
        (None, None) => {}
    }
    Ok(b)
}

/// The mechanism, pool, TLS verification, timeouts and EHLO name: given, else the table's
/// defaults.
fn connection_options(
    settings: &Settings,
    mut b: SmtpTransportBuilder,
) -> Result<SmtpTransportBuilder, Error> {
    if let Some(word) = settings.given::<&str>("mechanism")? {
        b = b.mechanism(match word {
            "PLAIN" => Mechanism::Plain,
            "LOGIN" => Mechanism::Login,
            "XOAUTH2" => Mechanism::XOAuth2,
            _ => Mechanism::OAuthBearer,
        });
    }
    if let Some(n) = settings.value::<u32>("max_messages")? {
        b = b.max_messages_per_connection(n);
    }
    if let Some(idle) = settings.value::<Duration>("idle_timeout")? {
        b = b.idle_timeout(idle);
    }
    if let Some(verify) = settings.value::<bool>("tls_verify")? {
        b = b.danger_accept_invalid_certs(!verify);
    }
    if let Some(path) = settings
        .str("ca_file")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        b = b.ca_file(PathBuf::from(path));
    }
    if let Some(limit) = settings.value::<Duration>("timeout")? {
        b = b.timeout(limit);
    }
    if let Some(size) = settings.value::<usize>("pool_size")? {
        b = b.pool_size(size);
    }
    if let Some(chunking) = settings.value::<bool>("chunking")? {
        b = b.chunking(chunking);
    }
    if let Some(name) = settings
        .str("local_hostname")
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        b = b.local_hostname(name);
    }
    Ok(b)
}

/// Settings that are set but will not be used.
pub(crate) fn notes(settings: &Settings) -> Vec<String> {
    super::oauth_provider::notes(settings)
}

/// The token cache of these settings, for the registry.
pub(crate) fn tokens(settings: &Settings) -> Result<Option<TokenCache>, Error> {
    token_cache(settings)
}

/// The connection cap shared through `limits`, per server and account (the pool size is the
/// cap, cluster-wide).
#[cfg(feature = "shared-limits")]
fn shared_connection_cap(
    settings: &Settings,
    b: SmtpTransportBuilder,
    server: &str,
    mode: TlsMode,
) -> Result<SmtpTransportBuilder, Error> {
    let Some(limits) = settings.shared_limits()? else {
        return Ok(b);
    };
    let port = settings
        .given::<u16>("port")?
        .unwrap_or(mode.default_port())
        .to_string();
    let account = settings.str("username").unwrap_or_default();
    let id = crate::limits::account_id(&["smtp", &server.to_ascii_lowercase(), &port, account]);
    let size = settings.value_or_default::<usize>("pool_size")?;
    Ok(b.connection_slots(limits.connection_slots(&id, size)))
}

#[cfg(not(feature = "shared-limits"))]
fn shared_connection_cap(
    settings: &Settings,
    b: SmtpTransportBuilder,
    _server: &str,
    _mode: TlsMode,
) -> Result<SmtpTransportBuilder, Error> {
    settings.refuse_shared_limits()?;
    Ok(b)
}

/// The transport, builder errors naming the settings' sources.
pub(crate) fn transport(settings: &Settings) -> Result<SmtpTransport, Error> {
    builder(settings)?.build().map_err(|e| settings.explain(e))
}

/// Builds the transport for the registry.
pub(crate) fn build(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    Ok(Arc::new(transport(settings)?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;

    fn env(pairs: &[(&str, &str)]) -> Settings {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("MAIL_TYPE".into(), "smtp".into());
        Settings::from_env_source(&map).unwrap().unwrap()
    }

    fn mode_of(pairs: &[(&str, &str)]) -> Result<TlsMode, Error> {
        tls_mode(&env(pairs))
    }

    #[test]
    fn dify_tls_flags_map_exactly() {
        use TlsMode::*;
        assert_eq!(mode_of(&[("SMTP_USE_TLS", "true")]).unwrap(), Implicit);
        assert_eq!(
            mode_of(&[
                ("SMTP_USE_TLS", "true"),
                ("SMTP_OPPORTUNISTIC_TLS", "false")
            ])
            .unwrap(),
            Implicit
        );
        assert_eq!(
            mode_of(&[("SMTP_USE_TLS", "true"), ("SMTP_OPPORTUNISTIC_TLS", "true")]).unwrap(),
            StartTls
        );
        assert_eq!(mode_of(&[("SMTP_USE_TLS", "false")]).unwrap(), None);
        assert_eq!(mode_of(&[]).unwrap(), None);
        assert_eq!(
            mode_of(&[
                ("SMTP_USE_TLS", "false"),
                ("SMTP_OPPORTUNISTIC_TLS", "false")
            ])
            .unwrap(),
            None
        );
        for pairs in [
            &[("SMTP_OPPORTUNISTIC_TLS", "true")][..],
            &[
                ("SMTP_USE_TLS", "false"),
                ("SMTP_OPPORTUNISTIC_TLS", "true"),
            ][..],
        ] {
            let err = mode_of(pairs).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            let text = err.to_string();
            assert!(
                text.contains("SMTP_OPPORTUNISTIC_TLS") && text.contains("SMTP_USE_TLS"),
                "{text}"
            );
        }
        let err = mode_of(&[("SMTP_USE_TLS", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("SMTP_USE_TLS"));
    }

    #[test]
    fn default_port_follows_the_mode() {
        let port = |pairs: &[(&str, &str)]| {
            let mut all = vec![("SMTP_SERVER", "smtp.example.com")];
            all.extend_from_slice(pairs);
            builder(&env(&all)).unwrap().build().unwrap().port()
        };
        assert_eq!(port(&[("SMTP_USE_TLS", "true")]), 465);
        assert_eq!(
            port(&[("SMTP_USE_TLS", "true"), ("SMTP_OPPORTUNISTIC_TLS", "true")]),
            587
        );
        assert_eq!(port(&[]), 25);
        assert_eq!(port(&[("SMTP_PORT", "2525")]), 2525);
        let err = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_PORT", "70000"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SMTP_PORT"));
    }

    #[test]
    fn login_only_when_both_user_and_password_are_set() {
        let creds = |pairs: &[(&str, &str)]| {
            let mut all = vec![("SMTP_SERVER", "smtp.example.com")];
            all.extend_from_slice(pairs);
            builder(&env(&all))
                .unwrap()
                .build()
                .unwrap()
                .inner
                .params
                .credentials
                .clone()
        };
        assert!(creds(&[("SMTP_USERNAME", "u"), ("SMTP_PASSWORD", "p")]).is_some());
        assert!(creds(&[("SMTP_USERNAME", "u")]).is_none());
        assert!(creds(&[("SMTP_PASSWORD", "p")]).is_none());
        // An empty value in .env means unset.
        assert!(creds(&[("SMTP_USERNAME", "u"), ("SMTP_PASSWORD", "")]).is_none());
    }

    #[test]
    fn empty_local_hostname_is_ignored() {
        let t = transport(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_LOCAL_HOSTNAME", ""),
        ]))
        .unwrap();
        assert_ne!(t.inner.params.ehlo_name.as_deref(), Some(""));
        let t = transport(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_LOCAL_HOSTNAME", "app.example.org"),
        ]))
        .unwrap();
        assert_eq!(t.inner.params.ehlo_name.as_deref(), Some("app.example.org"));
        let err = transport(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_LOCAL_HOSTNAME", "bad name"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SMTP_LOCAL_HOSTNAME"), "{err}");
    }

    #[test]
    fn missing_server_names_the_variable() {
        let err = builder(&env(&[])).unwrap_err();
        assert!(err.to_string().contains("SMTP_SERVER"), "{err}");
        let err = builder(&Settings::from_map("smtp", [("port", "25")]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("setting `server`"), "{err}");
    }

    #[test]
    fn new_variables() {
        let t = transport(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_TIMEOUT", "2.5"),
            ("SMTP_POOL_SIZE", "7"),
            ("SMTP_TLS_VERIFY", "false"),
            ("SMTP_USE_TLS", "true"),
            ("SMTP_CHUNKING", "true"),
        ]))
        .unwrap();
        assert_eq!(t.inner.params.timeouts.command, Duration::from_millis(2500));
        assert_eq!(t.inner.pool.options().size, 7);
        assert!(!t.inner.tls_verify);
        assert!(t.inner.params.chunking);
        for (var, bad) in [
            ("SMTP_TIMEOUT", "0"),
            ("SMTP_POOL_SIZE", "0"),
            ("SMTP_TLS_VERIFY", "nah"),
            ("SMTP_CHUNKING", "sometimes"),
        ] {
            let err = builder(&env(&[("SMTP_SERVER", "h.example"), (var, bad)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = transport(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_USE_TLS", "true"),
            ("SMTP_TLS_CA_FILE", "/nonexistent/ca.pem"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SMTP_TLS_CA_FILE"), "{err}");
    }

    #[test]
    fn explicit_mode_key_and_conflicts() {
        let s = Settings::from_map("smtp", [("server", "h.example"), ("tls", "opportunistic")])
            .unwrap();
        assert_eq!(tls_mode(&s).unwrap(), TlsMode::Opportunistic);
        let s = Settings::from_map(
            "smtp",
            [
                ("server", "h.example"),
                ("tls", "starttls"),
                ("use_tls", "true"),
            ],
        )
        .unwrap();
        let err = tls_mode(&s).unwrap_err();
        assert!(
            err.to_string().contains("setting `tls`") && err.to_string().contains("use_tls"),
            "{err}"
        );
        let s = Settings::from_map("smtp", [("server", "h.example"), ("tls", "bogus")]).unwrap();
        assert!(tls_mode(&s)
            .unwrap_err()
            .to_string()
            .contains("implicit, starttls"));
    }

    #[test]
    fn seeds_map_keys() {
        let t = crate::create_transport(
            "smtp",
            [
                ("server", "smtp.example.com"),
                ("port", "587"),
                ("username", "app@example.com"),
                ("password", "canary-pw-1"),
                ("use_tls", "true"),
                ("opportunistic_tls", "true"),
                ("auth_type", "basic"),
                ("local_hostname", "app.example.com"),
                ("default_from", "App <app@example.com>"),
                ("timeout", "10"),
                ("pool_size", "2"),
                ("tls_verify", "true"),
            ],
        )
        .unwrap();
        assert_eq!(t.kind(), "smtp");
        assert_eq!(
            t.describe(),
            "smtp://smtp.example.com:587 (starttls, as app@example.com)"
        );
        assert!(!format!("{t:?}").contains("canary-pw-1"));
    }

    #[test]
    fn dsns() {
        let s = Settings::from_dsn("smtp://user%40example.com:p%40ss%3Aw0rd@smtp.example.com:2587")
            .unwrap();
        assert_eq!(s.str("server"), Some("smtp.example.com"));
        assert_eq!(s.str("username"), Some("user@example.com"));
        assert_eq!(s.str("password"), Some("p@ss:w0rd"));
        assert!(s.get("password").unwrap().value.is_secret());
        assert_eq!(s.str("port"), Some("2587"));
        assert_eq!(tls_mode(&s).unwrap(), TlsMode::StartTls);

        let t = crate::from_dsn("smtp://user:pw@smtp.example.com").unwrap();
        assert_eq!(
            t.describe(),
            "smtp://smtp.example.com:587 (starttls, as user)"
        );
        let t = crate::from_dsn("smtps://user:pw@smtp.example.com").unwrap();
        assert_eq!(
            t.describe(),
            "smtp://smtp.example.com:465 (implicit, as user)"
        );
        let t = crate::from_dsn("smtp://relay.internal?tls=none").unwrap();
        assert_eq!(t.describe(), "smtp://relay.internal:25 (none)");
        let t = crate::from_dsn("smtp://relay.internal:2525?tls=opportunistic&from=app@example.com&timeout=5&pool_size=1&local_hostname=app.example.com").unwrap();
        assert_eq!(t.describe(), "smtp://relay.internal:2525 (opportunistic)");
        assert!(format!("{t:?}").contains("chunking: false"), "{t:?}");
        let t = crate::from_dsn("smtp://relay.internal?tls=none&chunking=true").unwrap();
        assert!(format!("{t:?}").contains("chunking: true"), "{t:?}");
        let err = crate::from_dsn("smtp://relay.internal?chunking=maybe").unwrap_err();
        assert!(err.to_string().contains("chunking"), "{err}");
        let t = crate::from_dsn(
            "smtp://app%40example.com@smtp.office365.com?auth=oauth2&access_token=tok-canary",
        )
        .unwrap();
        assert!(!format!("{t:?} {}", t.describe()).contains("tok-canary"));

        let err = crate::from_dsn("smtps://h.example?tls=starttls").unwrap_err();
        assert!(err.to_string().contains("smtps"), "{err}");
        let err = crate::from_dsn("smtp://h.example?tls=weird").unwrap_err();
        assert!(err.to_string().contains("query `tls`"), "{err}");
        let err = crate::from_dsn("smtp://h.example?bogus=1").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = crate::from_dsn("smtp://h.example/some/path").unwrap_err();
        assert!(err.to_string().contains("path"), "{err}");
        let err = crate::from_dsn("smtp://h.example?auth=oauth2").unwrap_err();
        assert!(err.to_string().contains("MAILER_DSN user"), "{err}");
    }

    #[test]
    fn settings_debug_never_shows_secrets() {
        let s = env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_USERNAME", "u"),
            ("SMTP_PASSWORD", "canary-pw-42"),
            ("SMTP_OAUTH2_ACCESS_TOKEN", "canary-tok-42"),
        ]);
        let text = format!("{s:?}");
        assert!(!text.contains("canary"), "{text}");
        let err = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_PASSWORD", "canary-pw-42"),
            ("SMTP_PORT", "x"),
        ]))
        .unwrap_err();
        assert!(!format!("{err:?} {err}").contains("canary"));
    }
}
