//! The client credentials grant (RFC 6749 §4.4): an application's own token, for Microsoft
//! (Exchange Online SMTP, Graph) or any OAuth2 provider.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use super::endpoint::{parse_url, ClientAuth, Endpoint, DEFAULT_TIMEOUT};
use super::errors::{Context, Grant, Provider};
use super::{AccessToken, CacheKey, TokenSource};
use crate::Error;

pub use super::scopes::{MICROSOFT_AUTHORITY, MICROSOFT_GRAPH_SCOPE, MICROSOFT_SMTP_SCOPE};

/// Where the token comes from: a Microsoft tenant under an authority, or a URL.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Microsoft { authority: String, tenant: String },
    Url(String),
}

impl Target {
    /// The token URL, validated.
    pub(crate) fn resolve(&self) -> Result<url::Url, Error> {
        match self {
            Target::Url(raw) => parse_url(raw, "the token URL"),
            Target::Microsoft { authority, tenant } => {
                let tenant = tenant.trim();
                if tenant.is_empty() {
                    return Err(Error::config(
                        "the Microsoft tenant id is empty: set it to the tenant's GUID or domain \
                         (e.g. contoso.onmicrosoft.com)",
                    ));
                }
                if !tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                {
                    return Err(Error::config(format!(
                        "the Microsoft tenant id `{tenant}` is not a GUID or a domain name"
                    )));
                }
                let base = parse_url(authority, "the Microsoft authority")?;
                if base.query().is_some() {
                    return Err(Error::config(format!(
                        "the Microsoft authority `{authority}` must not have a query"
                    )));
                }
                let base = base.as_str().trim_end_matches('/');
                parse_url(
                    &format!("{base}/{tenant}/oauth2/v2.0/token"),
                    "the Microsoft token URL",
                )
            }
        }
    }

    pub(crate) fn provider(&self) -> Provider {
        match self {
            Target::Microsoft { .. } => Provider::Microsoft,
            Target::Url(url) if url.contains("googleapis.com") => Provider::Google,
            Target::Url(url) if url.contains("login.microsoftonline.") => Provider::Microsoft,
            Target::Url(_) => Provider::Generic,
        }
    }

    pub(crate) fn tenant(&self) -> Option<String> {
        match self {
            Target::Microsoft { tenant, .. } => Some(tenant.trim().to_string()),
            Target::Url(_) => None,
        }
    }

    pub(crate) fn set_authority(&mut self, new: String) -> Result<(), Error> {
        match self {
            Target::Microsoft { authority, .. } => {
                *authority = new;
                Ok(())
            }
            Target::Url(_) => Err(Error::config(
                "an authority applies to Microsoft token sources only; give the full token URL \
                 instead",
            )),
        }
    }
}

/// The client credentials grant: the application's own token (app-only), renewed with its
/// client id and secret. For Exchange Online SMTP (`SMTP.SendAsApp`) and Graph (`Mail.Send`).
///
/// Build one with [`ClientCredentials::microsoft`] (token URL
/// `{authority}/{tenant}/oauth2/v2.0/token`) or [`ClientCredentials::generic`].
///
/// ```
/// use std::time::Duration;
/// use outbound::oauth::{ClientCredentials, TokenSource, MICROSOFT_SMTP_SCOPE};
/// use secrecy::SecretString;
///
/// let source = ClientCredentials::microsoft(
///         "contoso.onmicrosoft.com",
///         "11111111-2222-3333-4444-555555555555",
///         SecretString::from("client-secret-value"),
///         MICROSOFT_SMTP_SCOPE,
///     )
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(
///     source.cache_key().token_url(),
///     "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
/// );
/// assert!(!format!("{source:?}").contains("client-secret-value"));
///
/// // A national cloud, or a test server:
/// let us_gov = ClientCredentials::microsoft("contoso.onmicrosoft.us", "id",
///         SecretString::from("s"), "https://outlook.office365.us/.default")
///     .authority("https://login.microsoftonline.us")
///     .build()?;
/// assert!(us_gov.cache_key().token_url().starts_with("https://login.microsoftonline.us/"));
/// # Ok::<(), outbound::Error>(())
/// ```
pub struct ClientCredentials {
    endpoint: Endpoint,
    client_secret: SecretString,
    scope: String,
    client_auth: ClientAuth,
}

/// Builds a [`ClientCredentials`] source.
pub struct ClientCredentialsBuilder {
    target: Target,
    client_id: String,
    client_secret: SecretString,
    scope: String,
    timeout: Duration,
    client_auth: ClientAuth,
    error: Option<Error>,
}

impl ClientCredentials {
    /// Microsoft Entra ID: a tenant (GUID or domain), the app's client id and secret, and the
    /// scope — [`MICROSOFT_SMTP_SCOPE`] for SMTP, [`MICROSOFT_GRAPH_SCOPE`] for Graph.
    pub fn microsoft(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        scope: impl Into<String>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::new(
            Target::Microsoft {
                authority: MICROSOFT_AUTHORITY.to_string(),
                tenant: tenant.into(),
            },
            client_id.into(),
            client_secret,
            scope.into(),
        )
    }

    /// Microsoft Entra ID with the scope for Exchange Online SMTP ([`MICROSOFT_SMTP_SCOPE`]).
    pub fn microsoft_smtp(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> ClientCredentialsBuilder {
        Self::microsoft(tenant, client_id, client_secret, MICROSOFT_SMTP_SCOPE)
    }

    /// Microsoft Entra ID with the scope for Graph `sendMail` ([`MICROSOFT_GRAPH_SCOPE`]).
    pub fn microsoft_graph(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> ClientCredentialsBuilder {
        Self::microsoft(tenant, client_id, client_secret, MICROSOFT_GRAPH_SCOPE)
    }

    /// Any OAuth2 provider: its token URL, the client id and secret, and the scope (may be
    /// empty when the provider needs none).
    ///
    /// ```
    /// use outbound::oauth::{ClientCredentials, TokenSource};
    /// use secrecy::SecretString;
    /// let source = ClientCredentials::generic("http://127.0.0.1:8089/token", "app",
    ///         SecretString::from("s3cret-value"), "mail.send")
    ///     .build()?;
    /// assert_eq!(source.describe(),
    ///     "client credentials for client `app` at http://127.0.0.1:8089/token, scope `mail.send`");
    /// let err = ClientCredentials::generic("http://mail.example.com/token", "app",
    ///         SecretString::from("s"), "").build().unwrap_err();
    /// assert_eq!(err.kind(), outbound::ErrorKind::Config);
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn generic(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        scope: impl Into<String>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::new(
            Target::Url(token_url.into()),
            client_id.into(),
            client_secret,
            scope.into(),
        )
    }

    /// The scope requested.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The token URL.
    pub fn token_url(&self) -> &str {
        self.endpoint.url().as_str()
    }
}

impl ClientCredentialsBuilder {
    fn new(target: Target, client_id: String, client_secret: SecretString, scope: String) -> Self {
        ClientCredentialsBuilder {
            target,
            client_id,
            client_secret,
            scope,
            timeout: DEFAULT_TIMEOUT,
            client_auth: ClientAuth::default(),
            error: None,
        }
    }

    /// The authority host for Microsoft sources (default [`MICROSOFT_AUTHORITY`]): a national
    /// cloud, or a test server (`http://127.0.0.1:PORT`).
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        if let Err(e) = self.target.set_authority(authority.into()) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Time allowed for one token request, connection to last byte (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How the client authenticates (default: secret in the request body).
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Checks the settings and builds the source (no request is made yet).
    pub fn build(self) -> Result<ClientCredentials, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let client_id = self.client_id.trim().to_string();
        if client_id.is_empty() {
            return Err(Error::config("the OAuth2 client id is empty"));
        }
        if secrecy::ExposeSecret::expose_secret(&self.client_secret).is_empty() {
            return Err(Error::config(format!(
                "the OAuth2 client secret for client `{client_id}` is empty"
            )));
        }
        let url = self.target.resolve()?;
        let scope = self.scope.trim().to_string();
        let ctx = Context {
            provider: self.target.provider(),
            grant: Grant::ClientCredentials,
            token_url: url.to_string(),
            client_id,
            tenant: self.target.tenant(),
            scope: (!scope.is_empty()).then(|| scope.clone()),
        };
        Ok(ClientCredentials {
            endpoint: Endpoint::new(url, self.timeout, ctx)?,
            client_secret: self.client_secret,
            scope,
            client_auth: self.client_auth,
        })
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.endpoint.url().as_str())
            .field("client_id", &self.endpoint.ctx.client_id)
            .field("tenant", &self.endpoint.ctx.tenant)
            .field("client_secret", &"[redacted]")
            .field("scope", &self.scope)
            .field("timeout", &self.endpoint.timeout())
            .finish()
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("target", &self.target)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn fetch(&self) -> Result<AccessToken, Error> {
        tracing::debug!(source = %self.describe(), "requesting an OAuth2 token");
        let mut form = vec![("grant_type", "client_credentials")];
        if !self.scope.is_empty() {
            form.push(("scope", self.scope.as_str()));
        }
        let granted = self
            .endpoint
            .request(
                &form,
                Some(&self.client_secret),
                self.client_auth,
                &[&self.client_secret],
            )
            .await?;
        Ok(granted.token)
    }

    fn describe(&self) -> String {
        let ctx = &self.endpoint.ctx;
        let mut out = match (&ctx.tenant, ctx.provider) {
            (Some(tenant), _) => format!(
                "Microsoft client credentials for client `{}` in tenant `{tenant}` at {}",
                ctx.client_id,
                self.endpoint.url()
            ),
            _ => format!(
                "client credentials for client `{}` at {}",
                ctx.client_id,
                self.endpoint.url()
            ),
        };
        if !self.scope.is_empty() {
            out.push_str(&format!(", scope `{}`", self.scope));
        }
        out
    }

    fn cache_key(&self) -> CacheKey {
        CacheKey::new(
            self.endpoint.url().as_str(),
            self.endpoint.ctx.client_id.as_str(),
            self.scope.as_str(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::from("s3cret")
    }

    #[test]
    fn microsoft_urls() {
        let s = ClientCredentials::microsoft_graph("contoso", "id", secret())
            .build()
            .unwrap();
        assert_eq!(
            s.token_url(),
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
        assert_eq!(s.scope(), MICROSOFT_GRAPH_SCOPE);
        let s = ClientCredentials::microsoft_smtp("contoso", "id", secret())
            .authority("http://127.0.0.1:8089/")
            .build()
            .unwrap();
        assert_eq!(
            s.token_url(),
            "http://127.0.0.1:8089/contoso/oauth2/v2.0/token"
        );
        assert_eq!(s.scope(), MICROSOFT_SMTP_SCOPE);
    }

    #[test]
    fn config_errors() {
        let cases = [
            ClientCredentials::microsoft_smtp("", "id", secret()).build(),
            ClientCredentials::microsoft_smtp("con/toso", "id", secret()).build(),
            ClientCredentials::microsoft_smtp("contoso", "", secret()).build(),
            ClientCredentials::microsoft_smtp("contoso", "id", SecretString::from("")).build(),
            ClientCredentials::microsoft_smtp("contoso", "id", secret())
                .authority("http://login.example.com")
                .build(),
            ClientCredentials::generic("https://x/token", "id", secret(), "")
                .authority("https://y")
                .build(),
            ClientCredentials::generic("https://x/token", "id", secret(), "")
                .timeout(Duration::ZERO)
                .build(),
        ];
        for c in cases {
            let e = c.unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
        }
    }

    #[test]
    fn debug_and_describe_hide_the_secret() {
        let s = ClientCredentials::microsoft_smtp("contoso", "id", SecretString::from("hunter22"))
            .build()
            .unwrap();
        assert!(!format!("{s:?}").contains("hunter22"));
        assert!(!s.describe().contains("hunter22"));
        assert!(s.describe().contains("tenant `contoso`"));
        let b = ClientCredentials::microsoft_smtp("contoso", "id", SecretString::from("hunter22"));
        assert!(!format!("{b:?}").contains("hunter22"));
    }
}
