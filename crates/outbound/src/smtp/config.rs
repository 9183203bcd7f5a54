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
//! Login happens only when both user name and password are non-empty (as in Dify); with
//! `auth_type=oauth2` a static access token (SMTP_OAUTH2_ACCESS_TOKEN) is sent with XOAUTH2 or
//! OAUTHBEARER.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::{Credentials, SmtpTransport, SmtpTransportBuilder, TlsMode};
use crate::config::kinds::{Key, DEFAULT_FROM};
use crate::config::{Origin, Settings, Value};
use crate::{Error, Transport};

/// The settings the `smtp` kind understands.
pub(crate) const KEYS: &[Key] = &[
    DEFAULT_FROM,
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
        name: "local_hostname",
        env: &["SMTP_LOCAL_HOSTNAME"],
        aliases: &["ehlo"],
        secret: false,
        default: None,
        help: "EHLO name; default this host's FQDN, else an address literal",
    },
    Key {
        name: "auth_type",
        env: &["SMTP_AUTH_TYPE"],
        aliases: &["auth"],
        secret: false,
        default: Some("basic"),
        help: "basic (password) or oauth2 (access token)",
    },
    Key {
        name: "access_token",
        env: &["SMTP_OAUTH2_ACCESS_TOKEN"],
        aliases: &[],
        secret: true,
        default: None,
        help: "a static OAuth2 access token (auth_type=oauth2)",
    },
];

fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// How to name `key` in an error when it is missing or derived: the variable, DSN part or
/// map key the settings came from.
fn name_of(settings: &Settings, name: &str) -> String {
    if let Some(s) = settings.get(name) {
        return s.origin.to_string();
    }
    match settings.kind_origin() {
        Origin::Env(_) => key(name)
            .and_then(|k| k.env.first())
            .map(|v| (*v).to_string())
            .unwrap_or_else(|| format!("`{name}`")),
        Origin::Dsn(_) => match name {
            "server" => "MAILER_DSN host".to_string(),
            "username" => "MAILER_DSN user".to_string(),
            "password" => "MAILER_DSN password".to_string(),
            other => format!("MAILER_DSN query `{other}`"),
        },
        _ => format!("setting `{name}`"),
    }
}

/// Reads the host, port, user and password of an `smtp://` or `smtps://` DSN; the query is
/// read by the registry.
pub(crate) fn dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let scheme = url.scheme().to_ascii_lowercase();
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
        Error::config(
            "MAILER_DSN has no host; expected e.g. `smtp://user:pass@smtp.example.com:587` or \
             `smtps://user:pass@smtp.example.com`",
        )
    })?;
    settings.set(
        "server",
        Value::Plain(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        ),
        Origin::Dsn("host".into()),
    );
    if let Some(port) = url.port() {
        settings.set(
            "port",
            Value::Plain(port.to_string()),
            Origin::Dsn("port".into()),
        );
    }
    let decode = |part: &str, what: &str| -> Result<String, Error> {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                Error::config(format!(
                    "MAILER_DSN {what} is not valid UTF-8 after percent-decoding"
                ))
            })
    };
    if !url.username().is_empty() {
        settings.set(
            "username",
            Value::Plain(decode(url.username(), "user")?),
            Origin::Dsn("user".into()),
        );
    }
    if let Some(pw) = url.password().filter(|p| !p.is_empty()) {
        settings.set(
            "password",
            Value::Secret(SecretString::from(decode(pw, "password")?)),
            Origin::Dsn("password".into()),
        );
    }
    if !(url.path().is_empty() || url.path() == "/") {
        return Err(Error::config(format!(
            "MAILER_DSN path `{}` is not used by smtp; expected `{scheme}://user:pass@host:port`",
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
                    "MAILER_DSN scheme `smtps` means implicit TLS but query `tls` is `{v}`; use \
                     `smtp://...?tls={v}` instead"
                )));
            }
        }
    }
    settings.set(
        "tls",
        Value::Plain(implied.as_str().to_string()),
        Origin::Dsn("scheme".into()),
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
                name_of(settings, "opportunistic_tls"),
                name_of(settings, "use_tls"),
                name_of(settings, "use_tls"),
                name_of(settings, "opportunistic_tls"),
            )))
        }
        _ => Some(TlsMode::None),
    };
    match (explicit, dify) {
        (Some((e, origin)), Some(d)) if e != d => Err(Error::config(format!(
            "{origin} says TLS mode `{e}` but {}/{} say `{d}`; set only one of them",
            name_of(settings, "use_tls"),
            name_of(settings, "opportunistic_tls"),
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
            name_of(settings, "server")
        )));
    }
    let mode = tls_mode(settings)?;
    let mut b = SmtpTransport::builder(server).tls(mode);
    b.labels.host = name_of(settings, "server");
    b.labels.ca_file = name_of(settings, "ca_file");
    b.labels.local_hostname = name_of(settings, "local_hostname");
    if let Some(port) = settings.number::<u16>("port", 1..=65535)? {
        b = b.port(port);
    }

    let username = settings.str("username").filter(|u| !u.trim().is_empty());
    let password = settings
        .get("password")
        .filter(|p| !p.value.expose().is_empty());
    let auth_type = settings.get("auth_type");
    let oauth2 = match auth_type.map(|s| s.value.expose().trim().to_ascii_lowercase()) {
        None => false,
        Some(t) if t == "basic" => false,
        Some(t) if t == "oauth2" => true,
        Some(other) => {
            return Err(Error::config(format!(
                "{} is `{other}`; expected basic or oauth2",
                name_of(settings, "auth_type")
            )))
        }
    };
    if oauth2 {
        let Some(user) = username else {
            return Err(Error::config(format!(
                "{} is oauth2 but {} is not set; XOAUTH2 needs the mailbox the token is for",
                name_of(settings, "auth_type"),
                name_of(settings, "username")
            )));
        };
        let Some(token) = settings.get("access_token") else {
            return Err(Error::config(format!(
                "{} is oauth2 but no access token is set: set {} to a current access token. \
                 Acquiring tokens automatically (client credentials, refresh tokens) arrives \
                 with Outbound's OAuth2 support",
                name_of(settings, "auth_type"),
                name_of(settings, "access_token")
            )));
        };
        b = b.credentials(Credentials::oauth2_static(user, token.value.expose()));
    } else {
        match (username, password) {
            (Some(user), Some(pw)) => {
                b = b.credentials(Credentials::password(user, pw.value.expose()));
            }
            (Some(_), None) => tracing::warn!(
                "{} is set but {} is not: connecting without authentication (Dify logs in only \
                 when both are set)",
                name_of(settings, "username"),
                name_of(settings, "password")
            ),
            (None, Some(_)) => tracing::warn!(
                "{} is set but {} is not: connecting without authentication (Dify logs in only \
                 when both are set)",
                name_of(settings, "password"),
                name_of(settings, "username")
            ),
            (None, None) => {}
        }
    }

    if let Some(verify) = settings.bool("tls_verify")? {
        b = b.tls_verify(verify);
    }
    if let Some(path) = settings
        .str("ca_file")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        b = b.ca_file(PathBuf::from(path));
    }
    if let Some(s) = settings.get("timeout") {
        let raw = s.value.expose().trim();
        let secs: f64 = raw
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0 && *v <= 3600.0)
            .ok_or_else(|| {
                Error::config(format!(
                    "{} is `{raw}`; expected a number of seconds greater than 0 and at most 3600",
                    s.origin
                ))
            })?;
        b = b.timeout(Duration::from_secs_f64(secs));
    }
    if let Some(size) = settings.number::<usize>("pool_size", 1..=100)? {
        b = b.pool_size(size);
    }
    if let Some(name) = settings
        .str("local_hostname")
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        b = b.local_hostname(name);
    }
    Ok(b.default_from_opt(settings.default_from()?))
}

/// Builds the transport for the registry.
pub(crate) fn build(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    Ok(Arc::new(builder(settings)?.build()?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
        let t = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_LOCAL_HOSTNAME", ""),
        ]))
        .unwrap()
        .build()
        .unwrap();
        assert_ne!(t.inner.params.ehlo_name.as_deref(), Some(""));
        let t = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_LOCAL_HOSTNAME", "app.example.org"),
        ]))
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(t.inner.params.ehlo_name.as_deref(), Some("app.example.org"));
        let err = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_LOCAL_HOSTNAME", "bad name"),
        ]))
        .unwrap()
        .build()
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
        let t = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_TIMEOUT", "2.5"),
            ("SMTP_POOL_SIZE", "7"),
            ("SMTP_TLS_VERIFY", "false"),
            ("SMTP_USE_TLS", "true"),
        ]))
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(t.inner.params.timeouts.command, Duration::from_millis(2500));
        assert_eq!(t.inner.pool.options().size, 7);
        assert!(!t.inner.tls_verify);
        for (var, bad) in [
            ("SMTP_TIMEOUT", "0"),
            ("SMTP_POOL_SIZE", "0"),
            ("SMTP_TLS_VERIFY", "nah"),
        ] {
            let err = builder(&env(&[("SMTP_SERVER", "h.example"), (var, bad)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_USE_TLS", "true"),
            ("SMTP_TLS_CA_FILE", "/nonexistent/ca.pem"),
        ]))
        .unwrap()
        .build()
        .unwrap_err();
        assert!(err.to_string().contains("SMTP_TLS_CA_FILE"), "{err}");
    }

    #[test]
    fn oauth2_needs_a_static_token_for_now() {
        let err = builder(&env(&[
            ("SMTP_SERVER", "smtp.office365.com"),
            ("SMTP_AUTH_TYPE", "oauth2"),
            ("SMTP_USERNAME", "app@example.com"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("SMTP_OAUTH2_ACCESS_TOKEN") && text.contains("OAuth2 support"),
            "{text}"
        );
        let b = builder(&env(&[
            ("SMTP_SERVER", "smtp.office365.com"),
            ("SMTP_AUTH_TYPE", "oauth2"),
            ("SMTP_USERNAME", "app@example.com"),
            ("SMTP_OAUTH2_ACCESS_TOKEN", "eyJ0eXAi.canary"),
        ]))
        .unwrap();
        let t = b.build().unwrap();
        assert!(matches!(
            t.inner.params.credentials,
            Some(Credentials::OAuth2 { .. })
        ));
        assert!(!format!("{t:?}").contains("canary"));
        let err = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_AUTH_TYPE", "kerberos"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("SMTP_AUTH_TYPE")
                && err.to_string().contains("basic or oauth2")
        );
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
