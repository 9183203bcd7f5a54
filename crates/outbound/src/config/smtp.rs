//! The `smtp` kind of the configuration registry: its settings (Dify's SMTP_* variables with
//! Dify's meaning, plus Outbound's), the `smtp://` and `smtps://` DSNs, and turning settings
//! into an [`SmtpTransport`].
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
//!
//! DSNs: `smtp://` means STARTTLS (required) on port 587, `smtps://` implicit TLS on 465;
//! `?tls=none` (port 25), `?tls=opportunistic` (port 25) or `?tls=starttls` change the mode of
//! `smtp://`, and an explicit port always wins. User and password are percent-decoded.
//!
//! Login happens only when both user name and password are non-empty (as in Dify).
//!
//! With `auth_type=oauth2` (SMTP_AUTH_TYPE) the user name is the mailbox and tokens come from
//! a [`TokenCache`] shared per account (the same cache `Settings::token_cache` returns, so
//! `outbound token` sees what the transport uses):
//! - a static token (SMTP_OAUTH2_ACCESS_TOKEN, the seeds' `oauth_access_token`) wins when set;
//!   the other OAuth2 settings are then ignored (a note and a warning say so);
//! - `oauth2_provider=microsoft` (the default): client credentials with the client id, secret
//!   and tenant (either of Dify's spellings) at MICROSOFT_OAUTH2_AUTHORITY, scope
//!   `https://outlook.office365.com/.default`; with a refresh token, the delegated flow;
//! - `google`: the refresh token flow at Google's token endpoint;
//! - `generic`: SMTP_OAUTH2_TOKEN_URL with client credentials, or the refresh token flow.
//!
//! The shared Microsoft part (keys, both spellings, the client credentials source) lives in
//! `config::microsoft`, used by the `graph` kind too. Every error names the variable, DSN part or
//! map key, e.g. "SMTP_AUTH_TYPE=oauth2 with SMTP_OAUTH2_PROVIDER=microsoft needs
//! SMTP_CLIENT_SECRET (or MICROSOFT_OAUTH2_CLIENT_SECRET)". Each token request may take
//! SMTP_TIMEOUT, like every SMTP phase.
//!
//! The map and DSN also take `mechanism` (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER), `max_messages`
//! (per connection) and `idle_timeout` (seconds), which have no environment variables.
//! `chunking` (`SMTP_CHUNKING`, DSN `?chunking=true`) sends with BDAT where the server offers
//! CHUNKING ([`SmtpTransportBuilder::chunking`](crate::smtp::SmtpTransportBuilder::chunking)).

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;

use super::oauth_provider::{is_oauth2, token_cache};
use super::registry::{Key, DEFAULT_FROM, RATE, RETRIES};
use super::registry::{LIMITS, LIMITS_FAIL};
use super::settings::assignment;
use super::{Settings, Value};
use crate::oauth::TokenCache;
use crate::smtp::{Credentials, Mechanism, SmtpTransport, SmtpTransportBuilder, TlsMode};
use crate::{Error, Transport};

/// The settings the `smtp` kind understands.
pub(crate) const KEYS: &[Key] = &[
    DEFAULT_FROM,
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key {
        name: "server",
        env: &["SMTP_SERVER"],
        aliases: &["host"],
        secret: false,
        default: None,
        help: "SMTP server host name or IP address",
    },
    Key {
        name: "port",
        env: &["SMTP_PORT"],
        aliases: &[],
        secret: false,
        default: None,
        help: "port; default from the TLS mode: 465 implicit, 587 starttls, 25 none/opportunistic",
    },
    Key {
        name: "username",
        env: &["SMTP_USERNAME"],
        aliases: &["user"],
        secret: false,
        default: None,
        help: "user name; login happens only when user name and password are both set",
    },
    Key {
        name: "password",
        env: &["SMTP_PASSWORD"],
        aliases: &[],
        secret: true,
        default: None,
        help: "password (basic auth)",
    },
    Key {
        name: "use_tls",
        env: &["SMTP_USE_TLS"],
        aliases: &[],
        secret: false,
        default: Some("false"),
        help: "Dify: true = TLS (implicit, or STARTTLS with opportunistic_tls=true)",
    },
    Key {
        name: "opportunistic_tls",
        env: &["SMTP_OPPORTUNISTIC_TLS"],
        aliases: &[],
        secret: false,
        default: Some("false"),
        help: "Dify: with use_tls=true, STARTTLS (required) instead of implicit TLS",
    },
    Key {
        name: "tls",
        env: &[],
        aliases: &["tls_mode"],
        secret: false,
        default: None,
        help: "TLS mode: implicit, starttls, opportunistic or none (overrides the Dify flags)",
    },
    Key {
        name: "tls_verify",
        env: &["SMTP_TLS_VERIFY"],
        aliases: &["verify"],
        secret: false,
        default: Some("true"),
        help: "false turns certificate verification off (warned)",
    },
    Key {
        name: "ca_file",
        env: &["SMTP_TLS_CA_FILE"],
        aliases: &["tls_ca_file"],
        secret: false,
        default: None,
        help: "PEM file of extra trusted CA certificates",
    },
    Key {
        name: "timeout",
        env: &["SMTP_TIMEOUT"],
        aliases: &[],
        secret: false,
        default: Some("30"),
        help: "seconds allowed for each SMTP phase",
    },
    Key {
        name: "pool_size",
        env: &["SMTP_POOL_SIZE"],
        aliases: &[],
        secret: false,
        default: Some("3"),
        help: "connection cap per server and account",
    },
    Key {
        name: "chunking",
        env: &["SMTP_CHUNKING"],
        aliases: &["bdat"],
        secret: false,
        default: Some("false"),
        help: "true: BDAT (RFC 3030) when the server offers CHUNKING, up to 16 messages in \
               flight per connection (a connection lost then leaves each of them Ambiguous)",
    },
    Key {
        name: "local_hostname",
        env: &["SMTP_LOCAL_HOSTNAME"],
        aliases: &["ehlo"],
        secret: false,
        default: None,
        help: "EHLO name; default this host's FQDN, else an address literal",
    },
    Key {
        name: "mechanism",
        env: &[],
        aliases: &["sasl_mechanism", "auth_mechanism"],
        secret: false,
        default: None,
        help: "SASL mechanism: PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER (default: chosen from what \
               the server offers)",
    },
    Key {
        name: "max_messages",
        env: &[],
        aliases: &["max_messages_per_connection"],
        secret: false,
        default: Some("100"),
        help: "messages sent over one connection before it is replaced",
    },
    Key {
        name: "idle_timeout",
        env: &[],
        aliases: &[],
        secret: false,
        default: Some("30"),
        help: "seconds an unused pooled connection is kept open",
    },
    Key {
        name: "auth_type",
        env: &["SMTP_AUTH_TYPE"],
        aliases: &["auth"],
        secret: false,
        default: Some("basic"),
        help: "basic (user name and password) or oauth2 (XOAUTH2/OAUTHBEARER with a token)",
    },
    Key {
        name: "oauth2_provider",
        env: &["SMTP_OAUTH2_PROVIDER"],
        aliases: &["provider"],
        secret: false,
        default: Some("microsoft"),
        help: "with auth_type=oauth2: microsoft (client credentials), google (refresh token) or \
               generic (any token URL)",
    },
    super::microsoft::client_id_key(&["SMTP_CLIENT_ID", "MICROSOFT_OAUTH2_CLIENT_ID"]),
    super::microsoft::client_secret_key(&["SMTP_CLIENT_SECRET", "MICROSOFT_OAUTH2_CLIENT_SECRET"]),
    super::microsoft::tenant_id_key(&["SMTP_TENANT_ID", "MICROSOFT_OAUTH2_TENANT_ID"]),
    super::microsoft::AUTHORITY_KEY,
    Key {
        name: "token_url",
        env: &["SMTP_OAUTH2_TOKEN_URL"],
        aliases: &[],
        secret: false,
        default: None,
        help: "token endpoint (overrides the provider's)",
    },
    Key {
        name: "scope",
        env: &["SMTP_OAUTH2_SCOPE"],
        aliases: &[],
        secret: false,
        default: None,
        help: "scope to ask for (default: the provider's for SMTP)",
    },
    Key {
        name: "refresh_token",
        env: &["SMTP_OAUTH2_REFRESH_TOKEN"],
        aliases: &[],
        secret: true,
        default: None,
        help:
            "refresh token of a delegated account (google; microsoft and generic use it when set)",
    },
    Key {
        name: "refresh_token_file",
        env: &["SMTP_OAUTH2_REFRESH_TOKEN_FILE"],
        aliases: &[],
        secret: false,
        default: None,
        help: "file holding the latest refresh token (read at start, rewritten on rotation)",
    },
    Key {
        name: "access_token",
        env: &["SMTP_OAUTH2_ACCESS_TOKEN"],
        aliases: &["oauth_access_token"],
        secret: true,
        default: None,
        help: "a static OAuth2 access token (never refreshed; wins over the other OAuth2 settings)",
    },
];

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
    settings.set(
        "server",
        Value::Plain(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        ),
        settings.dsn_origin("host"),
    );
    if let Some(port) = url.port() {
        settings.set(
            "port",
            Value::Plain(port.to_string()),
            settings.dsn_origin("port"),
        );
    }
    let decode =
        |part: &str, what: &str| super::dsn::decode_part(part, &format!("{source} {what}"));
    if !url.username().is_empty() {
        settings.set(
            "username",
            Value::Plain(decode(url.username(), "user")?),
            settings.dsn_origin("user"),
        );
    }
    if let Some(pw) = url.password().filter(|p| !p.is_empty()) {
        settings.set(
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
        if let Some((_, v)) = url
            .query_pairs()
            .find(|(k, _)| k == "tls" || k == "tls_mode")
        {
            if v.trim().parse::<TlsMode>().ok() != Some(TlsMode::Implicit) {
                return Err(Error::config(format!(
                    "{source} scheme `smtps` means implicit TLS but query `tls` is `{v}`; use \
                     `smtp://...?tls={v}` instead"
                )));
            }
        }
    }
    settings.set(
        "tls",
        Value::Plain(implied.as_str().to_string()),
        settings.dsn_origin("scheme"),
    );
    Ok(())
}

/// The TLS mode from the `tls` key and Dify's flags.
pub(crate) fn tls_mode(settings: &Settings) -> Result<TlsMode, Error> {
    let explicit = match settings.get("tls") {
        Some(s) => Some((
            s.value.expose().parse::<TlsMode>().map_err(|_| {
                Error::config(format!(
                    "{} is `{}`; expected one of: implicit, starttls, opportunistic, none",
                    s.origin,
                    s.value.expose()
                ))
            })?,
            s.origin.clone(),
        )),
        None => None,
    };
    let use_tls = settings.bool("use_tls")?;
    let opportunistic = settings.bool("opportunistic_tls")?;
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
    if let Some(port) = settings.number::<u16>("port", 1..=65535)? {
        b = b.port(port);
    }
    b = shared_connection_cap(settings, b, server, mode)?;

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
        b = b.credentials(Credentials::oauth2_cache(user.trim(), cache));
    } else {
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
    }
    if let Some(s) = settings.get("mechanism") {
        let raw = s.value.expose().trim();
        let m = raw.parse::<Mechanism>().map_err(|_| {
            Error::config(format!(
                "{} is `{raw}`; expected one of: PLAIN, LOGIN, XOAUTH2, OAUTHBEARER",
                s.origin
            ))
        })?;
        b = b.mechanism(m);
    }
    if let Some(n) = settings.number::<u32>("max_messages", 1..=100_000)? {
        b = b.max_messages_per_connection(n);
    }
    if let Some(idle) = settings.seconds("idle_timeout", 86_400.0)? {
        b = b.idle_timeout(idle);
    }

    if let Some(verify) = settings.bool("tls_verify")? {
        b = b.danger_accept_invalid_certs(!verify);
    }
    if let Some(path) = settings
        .str("ca_file")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        b = b.ca_file(PathBuf::from(path));
    }
    if let Some(limit) = settings.seconds("timeout", 3600.0)? {
        b = b.timeout(limit);
    }
    if let Some(size) = settings.number::<usize>("pool_size", 1..=100)? {
        b = b.pool_size(size);
    }
    if let Some(chunking) = settings.bool("chunking")? {
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
        .number::<u16>("port", 1..=65535)?
        .unwrap_or(mode.default_port())
        .to_string();
    let account = settings.str("username").unwrap_or_default();
    let id = crate::limits::account_id(&["smtp", &server.to_ascii_lowercase(), &port, account]);
    let size = settings
        .number::<usize>("pool_size", 1..=100)?
        .unwrap_or(crate::smtp::DEFAULT_POOL_SIZE);
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

/// Builds the transport for the registry.
/// The transport, builder errors naming the settings' sources.
pub(crate) fn transport(settings: &Settings) -> Result<SmtpTransport, Error> {
    builder(settings)?.build().map_err(|e| settings.explain(e))
}

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
