//! Where the `smtp` kind's OAuth2 tokens come from (`auth_type=oauth2`): the provider
//! (`microsoft`, `google`, `generic`), the flow it implies (client credentials, a refresh
//! token, or a static token that wins over both), and the notes about OAuth2 settings that
//! the chosen authentication leaves unused.
//!
//! Every error names the variable, DSN part or map key, e.g. "SMTP_AUTH_TYPE=oauth2 with
//! SMTP_OAUTH2_PROVIDER=microsoft needs SMTP_CLIENT_SECRET (or MICROSOFT_OAUTH2_CLIENT_SECRET)".
//! Each token request may take SMTP_TIMEOUT, like every SMTP phase.

#[cfg(feature = "oauth")]
use std::path::PathBuf;

use super::settings::Settings;
use super::vocabulary::assignment;
#[cfg(feature = "oauth")]
use crate::oauth::{self, ClientCredentials, RefreshTokenGrant, RefreshTokenGrantBuilder};
use crate::oauth::{StaticToken, TokenCache, TokenSource};
use crate::Error;

/// The OAuth2 settings other than `auth_type` (for notes about unused settings).
const OAUTH_KEYS: &[&str] = &[
    "oauth2_provider",
    "client_id",
    "client_secret",
    "tenant_id",
    "authority",
    "token_url",
    "scope",
    "refresh_token",
    "refresh_token_file",
    "access_token",
];

/// Whether `auth_type` is oauth2 (unset means basic, as in Dify).
pub(crate) fn is_oauth2(settings: &Settings) -> Result<bool, Error> {
    Ok(settings.value::<&str>("auth_type")? == Some("oauth2"))
}

/// Where SMTP OAuth2 tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    /// Entra ID: client credentials (app-only), or a refresh token when one is given.
    Microsoft,
    /// Google: a refresh token (Gmail has no client credentials grant).
    Google,
    /// Any token URL: client credentials, or a refresh token when one is given.
    Generic,
}

impl Provider {
    fn as_str(self) -> &'static str {
        match self {
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
            Provider::Generic => "generic",
        }
    }
}

/// The provider: given, else the table's default (`microsoft`).
fn provider(settings: &Settings) -> Result<Provider, Error> {
    Ok(match settings.value::<&str>("oauth2_provider")? {
        Some("google") => Provider::Google,
        Some("generic") => Provider::Generic,
        _ => Provider::Microsoft,
    })
}

/// `SMTP_AUTH_TYPE=oauth2 with SMTP_OAUTH2_PROVIDER=microsoft`, in the words of the settings'
/// source, for errors about the OAuth2 settings.
fn oauth_context(settings: &Settings, provider: Provider) -> String {
    let auth = assignment(&settings.name_of("auth_type"), "oauth2");
    let provider = match settings.get("oauth2_provider") {
        Some(s) => assignment(&s.origin.to_string(), provider.as_str()),
        None => format!(
            "{} (the default)",
            assignment(&settings.name_of("oauth2_provider"), provider.as_str())
        ),
    };
    format!("{auth} with {provider}")
}

/// What a missing OAuth2 setting is, for "needs ..." errors.
fn what_it_is(settings: &Settings, key: &str, provider: Provider) -> String {
    match key {
        "client_id" => "the OAuth2 client (application) id".to_string(),
        "client_secret" => match provider {
            Provider::Microsoft => "the app's client secret (its value, not its id)".to_string(),
            _ => "the OAuth2 client secret".to_string(),
        },
        "tenant_id" => {
            "the Entra ID tenant (GUID or domain, e.g. contoso.onmicrosoft.com)".to_string()
        }
        "token_url" => "the provider's token endpoint (https://...)".to_string(),
        "refresh_token" => format!(
            "the account's refresh token (or {} naming a file that holds it){}",
            settings.name_of("refresh_token_file"),
            if provider == Provider::Google {
                "; Google issues SMTP tokens to users, not to applications"
            } else {
                ""
            }
        ),
        other => format!("setting `{other}`"),
    }
}

/// The token source the settings describe (`auth_type=oauth2`):
/// - a static access token when one is given (it wins; other OAuth2 settings are ignored);
/// - `microsoft` (the default): client credentials for client id, secret and tenant at
///   `{authority}/{tenant}/oauth2/v2.0/token` (or the token URL), scope
///   `https://outlook.office365.com/.default`; with a refresh token, the refresh grant
///   (tenant default `common`, scope `https://outlook.office.com/SMTP.Send offline_access`);
/// - `google`: the refresh grant at Google's token URL (client id, refresh token, usually the
///   client secret);
/// - `generic`: the token URL with client credentials, or the refresh grant when a refresh
///   token is given.
///
/// Each token request may take SMTP_TIMEOUT (default 30 s).
fn token_source(settings: &Settings) -> Result<Box<dyn TokenSource>, Error> {
    let scope = nonempty(settings, "scope");
    if let Some(token) = settings.secret("access_token") {
        let ignored = ignored_by_static_token(settings);
        if !ignored.is_empty() {
            tracing::warn!(
                "{} is set, so that static token is used (never refreshed) and {} ignored",
                settings.name_of("access_token"),
                ignored.join(", ")
            );
        }
        let mut source = StaticToken::new(token);
        if let Some(scope) = scope {
            source = source.with_scope(scope);
        }
        return Ok(Box::new(source));
    }
    requested_token_source(settings, scope)
}

/// A trimmed, non-empty value of `key`.
fn nonempty(settings: &Settings, key: &str) -> Option<String> {
    settings
        .str(key)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Without the `oauth` feature there are no token requests: only static tokens.
#[cfg(not(feature = "oauth"))]
fn requested_token_source(
    settings: &Settings,
    _scope: Option<String>,
) -> Result<Box<dyn TokenSource>, Error> {
    Err(Error::config(format!(
        "{} needs OAuth2 token requests, which this build of Outbound leaves out (cargo feature \
         `oauth`); give a static token with {}, or build with the feature",
        assignment(&settings.name_of("auth_type"), "oauth2"),
        settings.name_of("access_token")
    )))
}

/// A source that requests tokens: client credentials or a refresh token, per provider.
#[cfg(feature = "oauth")]
fn requested_token_source(
    settings: &Settings,
    scope: Option<String>,
) -> Result<Box<dyn TokenSource>, Error> {
    // SMTP_TIMEOUT, as the transport reads it: one definition, parsed once.
    let timeout = settings.value_or_default::<std::time::Duration>("timeout")?;
    let nonempty = |key: &str| nonempty(settings, key);
    let provider = provider(settings)?;
    let context = oauth_context(settings, provider);
    let missing = |key: &'static str| {
        Error::config(format!(
            "{context} needs {}: {}",
            settings.name_of(key),
            what_it_is(settings, key, provider)
        ))
    };
    let named = |e: Error| {
        if e.kind() == crate::ErrorKind::Config {
            Error::config(format!("{context}: {}", e.message())).with_source(e)
        } else {
            e
        }
    };
    let token_url = match nonempty("token_url") {
        Some(raw) => {
            let what = format!("{} (the token URL)", settings.name_of("token_url"));
            super::microsoft::parse_url(&raw, &what)?;
            Some(raw)
        }
        None => None,
    };
    let client_id = || super::microsoft::required(settings, "client_id", &missing);
    let client_secret = settings.secret("client_secret");
    let refresh_token = settings.secret("refresh_token");
    let refresh_file = nonempty("refresh_token_file").map(PathBuf::from);
    let delegated = refresh_token.is_some() || refresh_file.is_some();

    let refresh_grant = |builder: RefreshTokenGrantBuilder, default_scope: Option<&str>| {
        let mut b = builder.timeout(timeout);
        if let Some(secret) = client_secret.clone() {
            b = b.client_secret(secret);
        }
        if let Some(token) = refresh_token.clone() {
            b = b.refresh_token(token);
        }
        if let Some(file) = &refresh_file {
            b = b.refresh_token_file(file);
        }
        if let Some(scope) = scope.as_deref().or(default_scope) {
            b = b.scope(scope);
        }
        if let Some(user) = nonempty("username") {
            b = b.account(user);
        }
        b.build()
            .map(|s| Box::new(s) as Box<dyn TokenSource>)
            .map_err(named)
    };

    match (provider, delegated) {
        (Provider::Microsoft, false) => {
            let scope = scope.as_deref().unwrap_or(oauth::MICROSOFT_SMTP_SCOPE);
            match token_url {
                Some(url) => {
                    let secret = client_secret.ok_or_else(|| missing("client_secret"))?;
                    ClientCredentials::generic(url, client_id()?, secret, scope)
                        .timeout(timeout)
                        .build()
                        .map(|s| Box::new(s) as Box<dyn TokenSource>)
                        .map_err(named)
                }
                // Errors already name the setting (missing ones through `missing`).
                None => super::microsoft::microsoft_client_credentials(
                    settings, scope, timeout, &missing,
                )
                .map(|s| Box::new(s) as Box<dyn TokenSource>),
            }
        }
        (Provider::Microsoft, true) => {
            let builder = match token_url {
                Some(url) => RefreshTokenGrant::builder(url, client_id()?),
                None => {
                    let tenant = nonempty("tenant_id").unwrap_or_else(|| "common".to_string());
                    let (authority, _) = super::microsoft::authority(settings);
                    RefreshTokenGrant::microsoft(tenant, client_id()?).authority(authority)
                }
            };
            refresh_grant(builder, Some(oauth::MICROSOFT_SMTP_DELEGATED_SCOPE))
        }
        (Provider::Google, false) => Err(missing("refresh_token")),
        (Provider::Google, true) => {
            let url = token_url.unwrap_or_else(|| oauth::GOOGLE_TOKEN_URL.to_string());
            refresh_grant(RefreshTokenGrant::builder(url, client_id()?), None)
        }
        (Provider::Generic, delegated) => {
            let url = token_url.ok_or_else(|| missing("token_url"))?;
            if delegated {
                refresh_grant(RefreshTokenGrant::builder(url, client_id()?), None)
            } else {
                let secret = client_secret.ok_or_else(|| missing("client_secret"))?;
                ClientCredentials::generic(url, client_id()?, secret, scope.unwrap_or_default())
                    .timeout(timeout)
                    .build()
                    .map(|s| Box::new(s) as Box<dyn TokenSource>)
                    .map_err(named)
            }
        }
    }
}

/// The OAuth2 settings a static access token makes irrelevant, by where they came from.
fn ignored_by_static_token(settings: &Settings) -> Vec<String> {
    OAUTH_KEYS
        .iter()
        .filter(|k| !matches!(**k, "access_token" | "scope"))
        .filter_map(|k| settings.get(k))
        .map(|s| s.origin.to_string())
        .collect()
}

/// The OAuth2 token cache of `auth_type=oauth2` settings (shared per token URL, client, scope
/// and account); `None` for basic auth. The transport built from the same settings uses the
/// same cache.
pub(crate) fn token_cache(settings: &Settings) -> Result<Option<TokenCache>, Error> {
    if !is_oauth2(settings)? {
        return Ok(None);
    }
    Ok(Some(TokenCache::shared(
        super::explain::ConfiguredTokens::new(token_source(settings)?, settings),
    )))
}

/// Settings that are set but will not be used by the chosen authentication.
pub(crate) fn notes(settings: &Settings) -> Vec<String> {
    let mut notes = Vec::new();
    let list = |v: &[String]| {
        let verb = if v.len() == 1 { "is" } else { "are" };
        format!("{} {verb}", v.join(", "))
    };
    match is_oauth2(settings) {
        Ok(false) => {
            let set: Vec<String> = OAUTH_KEYS
                .iter()
                .filter_map(|k| settings.get(k))
                .map(|s| s.origin.to_string())
                .collect();
            if !set.is_empty() {
                let auth = settings.name_of("auth_type");
                notes.push(format!(
                    "{} set but not used: OAuth2 settings apply only with {} ({auth} is {})",
                    list(&set),
                    assignment(&auth, "oauth2"),
                    settings.str("auth_type").unwrap_or("unset, i.e. basic"),
                ));
            }
        }
        Ok(true) => {
            if let Some(token) = settings.get("access_token") {
                let ignored = ignored_by_static_token(settings);
                if !ignored.is_empty() {
                    notes.push(format!(
                        "{} is set, so that static token is used (it is never refreshed) and {} \
                         ignored",
                        token.origin,
                        list(&ignored)
                    ));
                }
            }
            if let Some(pw) = settings.get("password") {
                notes.push(format!(
                    "{} is not used with {}",
                    pw.origin,
                    assignment(&settings.name_of("auth_type"), "oauth2")
                ));
            }
        }
        Err(_) => {}
    }
    notes
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::smtp::builder;
    use crate::smtp::Credentials;

    fn env(pairs: &[(&str, &str)]) -> Settings {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("MAIL_TYPE".into(), "smtp".into());
        Settings::from_env_source(&map).unwrap().unwrap()
    }

    fn oauth_env(pairs: &[(&str, &str)]) -> Settings {
        let mut all = vec![
            ("SMTP_SERVER", "smtp.office365.com"),
            ("SMTP_PORT", "587"),
            ("SMTP_USE_TLS", "true"),
            ("SMTP_OPPORTUNISTIC_TLS", "true"),
            ("SMTP_USERNAME", "mailer@contoso.com"),
            ("SMTP_AUTH_TYPE", "oauth2"),
        ];
        all.extend_from_slice(pairs);
        env(&all)
    }

    fn described(settings: &Settings) -> Result<String, Error> {
        let cache = token_cache(settings)?.expect("oauth2 settings have a token cache");
        Ok(format!("{} | {}", cache.describe(), cache.key()))
    }

    #[test]
    fn oauth2_microsoft_client_credentials_from_either_spelling() {
        for (id, secret, tenant) in [
            ("SMTP_CLIENT_ID", "SMTP_CLIENT_SECRET", "SMTP_TENANT_ID"),
            (
                "MICROSOFT_OAUTH2_CLIENT_ID",
                "MICROSOFT_OAUTH2_CLIENT_SECRET",
                "MICROSOFT_OAUTH2_TENANT_ID",
            ),
        ] {
            let s = oauth_env(&[
                (id, "app-1"),
                (secret, "canary-secret-1"),
                (tenant, "contoso.onmicrosoft.com"),
            ]);
            let text = described(&s).unwrap();
            assert!(
                text.contains(
                    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
                ) && text.contains("scope `https://outlook.office365.com/.default`")
                    && text.contains("client `app-1`"),
                "{text}"
            );
            let t = builder(&s).unwrap().build().unwrap();
            assert!(matches!(
                &t.inner.params.credentials,
                Some(Credentials::OAuth2 { username, .. }) if username == "mailer@contoso.com"
            ));
            assert!(!format!("{t:?} {s:?} {text}").contains("canary"));
            assert!(s.notes().is_empty(), "{:?}", s.notes());
        }
        // Both spellings with the same value are fine; different values are an error naming both.
        let s = oauth_env(&[
            ("SMTP_CLIENT_ID", "app-1"),
            ("MICROSOFT_OAUTH2_CLIENT_ID", "app-1"),
            ("SMTP_CLIENT_SECRET", "x"),
            ("SMTP_TENANT_ID", "contoso"),
        ]);
        assert!(described(&s).is_ok());
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in [
            ("MAIL_TYPE", "smtp"),
            ("SMTP_CLIENT_SECRET", "canary-a"),
            ("MICROSOFT_OAUTH2_CLIENT_SECRET", "canary-b"),
        ] {
            map.insert(k.into(), v.into());
        }
        let err = Settings::from_env_source(&map).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("SMTP_CLIENT_SECRET")
                && text.contains("MICROSOFT_OAUTH2_CLIENT_SECRET")
                && !text.contains("canary"),
            "{text}"
        );
        // Scope and authority overrides (national clouds, tests).
        let s = oauth_env(&[
            ("SMTP_CLIENT_ID", "app-1"),
            ("SMTP_CLIENT_SECRET", "x"),
            ("SMTP_TENANT_ID", "contoso"),
            ("MICROSOFT_OAUTH2_AUTHORITY", "http://127.0.0.1:8089"),
            ("SMTP_OAUTH2_SCOPE", "https://outlook.office365.us/.default"),
        ]);
        let text = described(&s).unwrap();
        assert!(
            text.contains("http://127.0.0.1:8089/contoso/oauth2/v2.0/token")
                && text.contains("office365.us"),
            "{text}"
        );
    }

    #[test]
    fn oauth2_errors_name_the_variable_and_what_is_valid() {
        let err = |pairs: &[(&str, &str)]| {
            let s = oauth_env(pairs);
            builder(&s).map(|_| ()).unwrap_err().to_string()
        };
        let text = err(&[("SMTP_CLIENT_ID", "app"), ("SMTP_TENANT_ID", "contoso")]);
        assert!(
            text.contains(
                "SMTP_AUTH_TYPE=oauth2 with SMTP_OAUTH2_PROVIDER=microsoft (the default) needs \
                 SMTP_CLIENT_SECRET (or MICROSOFT_OAUTH2_CLIENT_SECRET)"
            ),
            "{text}"
        );
        let text = err(&[
            ("SMTP_OAUTH2_PROVIDER", "microsoft"),
            ("SMTP_CLIENT_ID", "app"),
            ("SMTP_TENANT_ID", "contoso"),
        ]);
        assert!(
            text.contains(
                "SMTP_AUTH_TYPE=oauth2 with SMTP_OAUTH2_PROVIDER=microsoft needs \
                 SMTP_CLIENT_SECRET (or MICROSOFT_OAUTH2_CLIENT_SECRET)"
            ),
            "{text}"
        );
        let text = err(&[("SMTP_CLIENT_SECRET", "x"), ("SMTP_TENANT_ID", "contoso")]);
        assert!(
            text.contains("needs SMTP_CLIENT_ID (or MICROSOFT_OAUTH2_CLIENT_ID)"),
            "{text}"
        );
        let text = err(&[("SMTP_CLIENT_ID", "a"), ("SMTP_CLIENT_SECRET", "x")]);
        assert!(
            text.contains("needs SMTP_TENANT_ID (or MICROSOFT_OAUTH2_TENANT_ID)")
                && text.contains("contoso.onmicrosoft.com"),
            "{text}"
        );
        let text = err(&[
            ("SMTP_CLIENT_ID", "a"),
            ("SMTP_CLIENT_SECRET", "x"),
            ("SMTP_TENANT_ID", "con/toso"),
        ]);
        assert!(
            text.contains("con/toso") && text.contains("SMTP_TENANT_ID"),
            "{text}"
        );
        let text = err(&[("SMTP_OAUTH2_PROVIDER", "azure")]);
        assert!(
            text.contains("SMTP_OAUTH2_PROVIDER is `azure`")
                && text.contains("microsoft")
                && text.contains("google")
                && text.contains("generic"),
            "{text}"
        );
        let text = err(&[("SMTP_OAUTH2_PROVIDER", "google"), ("SMTP_CLIENT_ID", "a")]);
        assert!(
            text.contains("SMTP_OAUTH2_PROVIDER=google needs SMTP_OAUTH2_REFRESH_TOKEN")
                && text.contains("SMTP_OAUTH2_REFRESH_TOKEN_FILE"),
            "{text}"
        );
        let text = err(&[("SMTP_OAUTH2_PROVIDER", "generic"), ("SMTP_CLIENT_ID", "a")]);
        assert!(
            text.contains("SMTP_OAUTH2_PROVIDER=generic needs SMTP_OAUTH2_TOKEN_URL"),
            "{text}"
        );
        let text = err(&[
            ("SMTP_OAUTH2_PROVIDER", "generic"),
            ("SMTP_OAUTH2_TOKEN_URL", "http://login.example.com/token"),
            ("SMTP_CLIENT_ID", "a"),
            ("SMTP_CLIENT_SECRET", "x"),
        ]);
        assert!(
            text.contains("SMTP_OAUTH2_TOKEN_URL") && text.contains("https"),
            "{text}"
        );
        let s = oauth_env(&[("SMTP_OAUTH2_ACCESS_TOKEN", "t")]);
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in [
            ("MAIL_TYPE", "smtp"),
            ("SMTP_SERVER", "h.example"),
            ("SMTP_AUTH_TYPE", "oauth2"),
            ("SMTP_OAUTH2_ACCESS_TOKEN", "t"),
        ] {
            map.insert(k.into(), v.into());
        }
        let no_user = Settings::from_env_source(&map).unwrap().unwrap();
        let text = builder(&no_user).map(|_| ()).unwrap_err().to_string();
        assert!(
            text.contains("SMTP_AUTH_TYPE=oauth2 but SMTP_USERNAME is not set"),
            "{text}"
        );
        assert!(builder(&s).is_ok());
        let text = builder(&env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_AUTH_TYPE", "kerberos"),
        ]))
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("SMTP_AUTH_TYPE") && text.contains("basic or oauth2"),
            "{text}"
        );
    }

    #[test]
    fn oauth2_google_generic_and_refresh_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rt");
        let s = oauth_env(&[
            ("SMTP_OAUTH2_PROVIDER", "google"),
            ("SMTP_USERNAME", "alice@gmail.com"),
            ("SMTP_CLIENT_ID", "1234.apps.googleusercontent.com"),
            ("SMTP_CLIENT_SECRET", "GOCSPX-canary"),
            ("SMTP_OAUTH2_REFRESH_TOKEN", "1//canary"),
            ("SMTP_OAUTH2_REFRESH_TOKEN_FILE", file.to_str().unwrap()),
        ]);
        let text = described(&s).unwrap();
        assert!(
            text.starts_with("refresh token grant")
                && text.contains("https://oauth2.googleapis.com/token")
                && text.contains("account `alice@gmail.com`"),
            "{text}"
        );
        assert!(!format!("{text} {s:?}").contains("canary"));

        let s = oauth_env(&[
            ("SMTP_OAUTH2_PROVIDER", "generic"),
            (
                "SMTP_OAUTH2_TOKEN_URL",
                "https://idp.example.com/oauth/token",
            ),
            ("SMTP_OAUTH2_SCOPE", "smtp.send"),
            ("SMTP_CLIENT_ID", "app"),
            ("SMTP_CLIENT_SECRET", "x"),
        ]);
        let text = described(&s).unwrap();
        assert!(
            text.starts_with("client credentials for client `app` at https://idp.example.com")
                && text.contains("scope `smtp.send`"),
            "{text}"
        );
        let s = oauth_env(&[
            ("SMTP_OAUTH2_PROVIDER", "generic"),
            (
                "SMTP_OAUTH2_TOKEN_URL",
                "https://idp.example.com/oauth/token",
            ),
            ("SMTP_CLIENT_ID", "app"),
            ("SMTP_OAUTH2_REFRESH_TOKEN", "rt"),
        ]);
        assert!(described(&s).unwrap().starts_with("refresh token grant"));
        // Microsoft with a refresh token: a delegated account.
        let s = oauth_env(&[
            ("SMTP_CLIENT_ID", "app"),
            ("SMTP_OAUTH2_REFRESH_TOKEN", "rt"),
        ]);
        let text = described(&s).unwrap();
        assert!(
            text.contains("https://login.microsoftonline.com/common/oauth2/v2.0/token")
                && text.contains("SMTP.Send offline_access"),
            "{text}"
        );
        // A refresh token file that does not exist, and no token: named.
        let s = oauth_env(&[
            ("SMTP_OAUTH2_PROVIDER", "google"),
            ("SMTP_CLIENT_ID", "app"),
            (
                "SMTP_OAUTH2_REFRESH_TOKEN_FILE",
                dir.path().join("missing").to_str().unwrap(),
            ),
        ]);
        let text = described(&s).unwrap_err().to_string();
        assert!(
            text.contains("SMTP_OAUTH2_PROVIDER=google") && text.contains("missing"),
            "{text}"
        );
    }

    #[test]
    fn oauth2_static_token_wins_and_notes_say_what_is_ignored() {
        let s = oauth_env(&[
            ("SMTP_OAUTH2_ACCESS_TOKEN", "eyJ0eXAi.canary"),
            ("SMTP_CLIENT_ID", "app"),
            ("SMTP_PASSWORD", "canary-pw"),
        ]);
        assert!(described(&s)
            .unwrap()
            .starts_with("static access token (no refresh) | "));
        let notes = s.notes().join("\n");
        assert!(
            notes.contains("SMTP_OAUTH2_ACCESS_TOKEN is set, so that static token is used")
                && notes.contains("SMTP_CLIENT_ID is ignored")
                && notes.contains("SMTP_PASSWORD is not used with SMTP_AUTH_TYPE=oauth2"),
            "{notes}"
        );
        let t = builder(&s).unwrap().build().unwrap();
        assert!(!format!("{t:?} {s:?} {notes}").contains("canary"));

        // Basic auth with OAuth2 settings: they are unused.
        let s = env(&[
            ("SMTP_SERVER", "h.example"),
            ("SMTP_CLIENT_ID", "app"),
            ("MICROSOFT_OAUTH2_TENANT_ID", "contoso"),
        ]);
        let notes = s.notes().join("\n");
        assert!(
            notes.contains("SMTP_CLIENT_ID, MICROSOFT_OAUTH2_TENANT_ID are set but not used")
                && notes.contains("SMTP_AUTH_TYPE=oauth2"),
            "{notes}"
        );
        assert!(token_cache(&s).unwrap().is_none());
    }

    #[test]
    fn oauth2_dsn_and_seed_map_keys() {
        let s = Settings::from_dsn(
            "smtp://mailer%40contoso.com@smtp.office365.com:587?auth=oauth2&tenant=contoso\
             &client_id=app-1&client_secret=canary%2Fs3c+r%3Dt&provider=microsoft\
             &scope=https%3A%2F%2Foutlook.office365.com%2F.default",
        )
        .unwrap();
        assert_eq!(s.str("username"), Some("mailer@contoso.com"));
        assert_eq!(s.str("client_secret"), Some("canary/s3c+r=t"));
        assert!(s.get("client_secret").unwrap().value.is_secret());
        let text = described(&s).unwrap();
        assert!(
            text.contains("/contoso/oauth2/v2.0/token") && text.contains("client `app-1`"),
            "{text}"
        );
        let t = crate::from_dsn(
            "smtp://mailer%40contoso.com@127.0.0.1:587?auth=oauth2&tenant=contoso&client_id=a\
             &client_secret=canary-x&authority=http://127.0.0.1:9&mechanism=oauthbearer",
        )
        .unwrap();
        assert_eq!(
            t.describe(),
            "smtp://127.0.0.1:587 (starttls, as mailer@contoso.com)"
        );
        assert!(!format!("{t:?}").contains("canary"));
        let err = crate::from_dsn("smtp://u@h.example?auth=oauth2&client_id=a&tenant=t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MAILER_DSN query `auth=oauth2`")
                && err.contains("needs MAILER_DSN query `client_secret`"),
            "{err}"
        );
        for dsn in [
            "smtp://u@h.example?auth=oauth2&provider=generic&token_url=http://127.0.0.1:1/token\
             &client_id=a&refresh_token=r&refresh_token_file=/tmp/none",
            "smtp://u@h.example?auth=oauth2&oauth_access_token=tok",
            "smtp://u@h.example?auth=oauth2&access_token=tok&scope=s",
        ] {
            Settings::from_dsn(dsn).unwrap().build().unwrap();
        }

        // The seeds' map keys.
        let t = crate::create_transport(
            "smtp",
            [
                ("server", "smtp.office365.com"),
                ("port", "587"),
                ("username", "mailer@contoso.com"),
                ("use_tls", "true"),
                ("opportunistic_tls", "true"),
                ("auth_type", "oauth2"),
                ("oauth2_provider", "microsoft"),
                ("client_id", "app-1"),
                ("client_secret", "canary-map"),
                ("tenant_id", "contoso"),
                ("default_from", "mailer@contoso.com"),
            ],
        )
        .unwrap();
        assert!(!format!("{t:?}").contains("canary"));
        let err = crate::create_transport(
            "smtp",
            [
                ("server", "smtp.office365.com"),
                ("username", "mailer@contoso.com"),
                ("auth_type", "oauth2"),
                ("client_id", "app-1"),
                ("tenant_id", "contoso"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "setting `auth_type=oauth2` with setting `oauth2_provider=microsoft` \
                 (the default) needs setting `client_secret`"
            ),
            "{err}"
        );
        let err =
            crate::create_transport("smtp", [("server", "h.example"), ("mechanism", "cram-md5")])
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("setting `mechanism`") && err.contains("XOAUTH2"),
            "{err}"
        );
    }
}
