//! The refresh token grant (RFC 6749 §6): a delegated account's token, renewed with a refresh
//! token that the provider may rotate.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::client_credentials::{Target, MICROSOFT_AUTHORITY};
use super::endpoint::{ClientAuth, Endpoint, DEFAULT_TIMEOUT};
use super::errors::{Context, Grant};
use super::{AccessToken, CacheKey, TokenSource};
use crate::Error;

/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The scope for SMTP AUTH to Exchange Online with a delegated (user) token from a refresh
/// token: `SMTP.Send` on behalf of the signed-in user, and `offline_access` so the provider
/// keeps issuing refresh tokens.
pub const MICROSOFT_SMTP_DELEGATED_SCOPE: &str =
    "https://outlook.office.com/SMTP.Send offline_access";

/// The refresh token grant, for delegated accounts (a user's mailbox): Google
/// ([`RefreshTokenGrant::google`]), Microsoft ([`RefreshTokenGrant::microsoft`]) or any
/// provider ([`RefreshTokenGrant::builder`]).
///
/// When the provider answers with a new refresh token (rotation), the new one is used from
/// then on and, if a file was named with [`RefreshTokenGrantBuilder::refresh_token_file`],
/// written to it atomically (a temporary file in the same directory, mode 0600, then renamed
/// over it). On start, an existing non-empty file wins over the configured refresh token, so
/// a restarted process continues with the latest token. If writing the file fails, the
/// token is still used (it is the only valid one) and a warning is logged.
///
/// Requests are serialized per source, so two refreshes never race with the same (single
/// use) refresh token.
///
/// ```
/// use outbound::oauth::{RefreshTokenGrant, TokenSource};
/// use secrecy::SecretString;
///
/// let dir = tempfile::tempdir().unwrap();
/// let file = dir.path().join("refresh-token");
/// let source = RefreshTokenGrant::google("1234.apps.googleusercontent.com")
///     .client_secret(SecretString::from("GOCSPX-secret"))
///     .refresh_token(SecretString::from("1//0refresh"))
///     .refresh_token_file(&file)
///     .account("alice@gmail.com")
///     .build()?;
/// assert_eq!(source.cache_key().token_url(), "https://oauth2.googleapis.com/token");
/// assert_eq!(source.cache_key().account(), Some("alice@gmail.com"));
/// assert!(!format!("{source:?}").contains("1//0refresh"));
/// # Ok::<(), outbound::Error>(())
/// ```
pub struct RefreshTokenGrant {
    endpoint: Endpoint,
    client_secret: Option<SecretString>,
    client_auth: ClientAuth,
    scope: String,
    refresh_token: Mutex<SecretString>,
    file: Option<PathBuf>,
    account: String,
    /// Serializes token requests (refresh tokens may be single use).
    exchange: tokio::sync::Mutex<()>,
}

/// Builds a [`RefreshTokenGrant`].
pub struct RefreshTokenGrantBuilder {
    target: Target,
    client_id: String,
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    file: Option<PathBuf>,
    scope: String,
    account: Option<String>,
    timeout: Duration,
    client_auth: ClientAuth,
    error: Option<Error>,
}

impl RefreshTokenGrant {
    /// Any provider: its token URL and the client id.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> RefreshTokenGrantBuilder {
        RefreshTokenGrantBuilder::new(Target::Url(token_url.into()), client_id.into())
    }

    /// Google ([`GOOGLE_TOKEN_URL`]); set the client secret too.
    pub fn google(client_id: impl Into<String>) -> RefreshTokenGrantBuilder {
        Self::builder(GOOGLE_TOKEN_URL, client_id)
    }

    /// Microsoft Entra ID (`{authority}/{tenant}/oauth2/v2.0/token`; use `common` or
    /// `organizations` as the tenant for multi-tenant apps). Microsoft wants a scope, e.g.
    /// `https://outlook.office.com/SMTP.Send offline_access`.
    pub fn microsoft(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
    ) -> RefreshTokenGrantBuilder {
        RefreshTokenGrantBuilder::new(
            Target::Microsoft {
                authority: MICROSOFT_AUTHORITY.to_string(),
                tenant: tenant.into(),
            },
            client_id.into(),
        )
    }

    /// The token URL.
    pub fn token_url(&self) -> &str {
        self.endpoint.url().as_str()
    }

    /// The file rotated refresh tokens are written to, if any.
    pub fn refresh_token_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn current(&self) -> SecretString {
        self.refresh_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl RefreshTokenGrantBuilder {
    fn new(target: Target, client_id: String) -> Self {
        RefreshTokenGrantBuilder {
            target,
            client_id,
            client_secret: None,
            refresh_token: None,
            file: None,
            scope: String::new(),
            account: None,
            timeout: DEFAULT_TIMEOUT,
            client_auth: ClientAuth::default(),
            error: None,
        }
    }

    /// The client secret (confidential clients; Google requires it, public clients have none).
    pub fn client_secret(mut self, secret: SecretString) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// The refresh token. An existing, non-empty [refresh token
    /// file](Self::refresh_token_file) takes precedence.
    pub fn refresh_token(mut self, token: SecretString) -> Self {
        self.refresh_token = Some(token);
        self
    }

    /// A file that holds the latest refresh token: read on start (it wins over
    /// [`refresh_token`](Self::refresh_token) when it exists and is not empty) and rewritten
    /// atomically, mode 0600, whenever the provider rotates the token.
    pub fn refresh_token_file(mut self, path: impl AsRef<Path>) -> Self {
        self.file = Some(path.as_ref().to_path_buf());
        self
    }

    /// The scope to ask for (optional for Google; Microsoft wants one).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The account (user) the refresh token belongs to, e.g. the SMTP username. Sources with
    /// the same token URL, client, scope and account share a cache in
    /// [`TokenCache::shared`](super::TokenCache::shared); without an account, the refresh token
    /// file (or, failing that, this source alone) identifies the account.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// The authority host for [`RefreshTokenGrant::microsoft`] (default
    /// [`MICROSOFT_AUTHORITY`]).
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        if let Err(e) = self.target.set_authority(authority.into()) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Time allowed for one token request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How the client authenticates when it has a secret (default: in the request body).
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Redeems an authorization code, the last step of the OAuth2 authorization-code flow
    /// (RFC 6749 section 4.1.3), at this builder's token endpoint with its client id, client
    /// secret and scope; `redirect_uri` must be the one the code was issued for. Returns the
    /// first access token and the refresh token the provider issued, if it issued one (give
    /// it to [`refresh_token`](Self::refresh_token) to keep the account's tokens fresh). The
    /// code and the tokens never appear in errors or logs.
    ///
    /// ```no_run
    /// use outbound::oauth::RefreshTokenGrant;
    /// use secrecy::SecretString;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), outbound::Error> {
    /// let builder = RefreshTokenGrant::microsoft("contoso.onmicrosoft.com", "app-id")
    ///     .client_secret(SecretString::from("app-secret"))
    ///     .scope("https://outlook.office.com/SMTP.Send offline_access");
    /// let code = SecretString::from("code-from-the-redirect");
    /// let (token, refresh) = builder.redeem_code(&code, "https://app.example.com/callback").await?;
    /// println!("{} (refresh token issued: {})", token.masked(), refresh.is_some());
    /// let grant = builder.refresh_token(refresh.expect("offline_access gives one")).build()?;
    /// # let _ = grant;
    /// # Ok(()) }
    /// ```
    pub async fn redeem_code(
        &self,
        code: &SecretString,
        redirect_uri: &str,
    ) -> Result<(AccessToken, Option<SecretString>), Error> {
        if let Some(e) = &self.error {
            return Err(e.replicate());
        }
        let client_id = self.client_id.trim().to_string();
        if client_id.is_empty() {
            return Err(Error::config("the OAuth2 client id is empty"));
        }
        if code.expose_secret().trim().is_empty() {
            return Err(Error::config("the authorization code is empty"));
        }
        let url = self.target.resolve()?;
        let scope = self.scope.trim().to_string();
        let ctx = Context {
            provider: self.target.provider(),
            grant: Grant::AuthorizationCode,
            token_url: url.to_string(),
            client_id,
            tenant: self.target.tenant(),
            scope: (!scope.is_empty()).then(|| scope.clone()),
        };
        let endpoint = Endpoint::new(url, self.timeout, ctx)?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
        ];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        let client_secret = self
            .client_secret
            .as_ref()
            .filter(|s| !s.expose_secret().is_empty());
        let mut secrets = vec![code];
        if let Some(s) = client_secret {
            secrets.push(s);
        }
        tracing::debug!(token_url = %endpoint.url(), "redeeming an OAuth2 authorization code");
        let granted = endpoint
            .request(&form, client_secret, self.client_auth, &secrets)
            .await?;
        Ok((granted.token, granted.refresh_token))
    }

    /// Checks the settings, reads the refresh token file if there is one, and builds the
    /// source (no request is made yet).
    pub fn build(self) -> Result<RefreshTokenGrant, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let client_id = self.client_id.trim().to_string();
        if client_id.is_empty() {
            return Err(Error::config("the OAuth2 client id is empty"));
        }
        let client_secret = self.client_secret.filter(|s| !s.expose_secret().is_empty());
        let from_file = match &self.file {
            Some(path) => read_token_file(path)?,
            None => None,
        };
        let configured = self
            .refresh_token
            .filter(|t| !t.expose_secret().trim().is_empty());
        let refresh_token = match (from_file, configured) {
            (Some(t), configured) => {
                if let Some(path) = &self.file {
                    tracing::debug!(
                        file = %path.display(),
                        overrides_configured = configured.is_some(),
                        "using the refresh token from the refresh token file"
                    );
                }
                t
            }
            (None, Some(t)) => SecretString::from(t.expose_secret().trim().to_string()),
            (None, None) => {
                return Err(Error::config(match &self.file {
                    Some(path) => format!(
                        "no refresh token: none is configured and the refresh token file {} \
                         does not exist or is empty",
                        path.display()
                    ),
                    None => "no refresh token is configured".to_string(),
                }))
            }
        };
        let url = self.target.resolve()?;
        let scope = self.scope.trim().to_string();
        let account = match (&self.account, &self.file) {
            (Some(a), _) if !a.trim().is_empty() => a.trim().to_string(),
            (_, Some(path)) => format!("file:{}", path.display()),
            _ => {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                format!(
                    "source#{}",
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                )
            }
        };
        let ctx = Context {
            provider: self.target.provider(),
            grant: Grant::RefreshToken,
            token_url: url.to_string(),
            client_id,
            tenant: self.target.tenant(),
            scope: (!scope.is_empty()).then(|| scope.clone()),
        };
        Ok(RefreshTokenGrant {
            endpoint: Endpoint::new(url, self.timeout, ctx)?,
            client_secret,
            client_auth: self.client_auth,
            scope,
            refresh_token: Mutex::new(refresh_token),
            file: self.file,
            account,
            exchange: tokio::sync::Mutex::new(()),
        })
    }
}

/// Reads a refresh token file: `None` when it does not exist or is blank.
fn read_token_file(path: &Path) -> Result<Option<SecretString>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                return Ok(None);
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                if let Ok(meta) = std::fs::metadata(path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(
                            file = %path.display(),
                            "the refresh token file is readable by other users; chmod 600 it"
                        );
                    }
                }
            }
            Ok(Some(SecretString::from(token.to_string())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::config(format!(
            "cannot read the refresh token file {}: {e}",
            path.display()
        ))
        .with_source(e)),
    }
}

/// Writes `token` to `path` atomically: a temporary file in the same directory (mode 0600),
/// flushed to disk, renamed over `path`, then the directory synced.
fn write_token_file(path: &Path, token: &SecretString) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".refresh-token-")
        .tempfile_in(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(token.expose_secret().as_bytes())?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl fmt::Debug for RefreshTokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenGrant")
            .field("token_url", &self.endpoint.url().as_str())
            .field("client_id", &self.endpoint.ctx.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("refresh_token", &"[redacted]")
            .field("refresh_token_file", &self.file)
            .field("scope", &self.scope)
            .field("account", &self.account)
            .finish()
    }
}

impl fmt::Debug for RefreshTokenGrantBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenGrantBuilder")
            .field("target", &self.target)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("refresh_token_file", &self.file)
            .field("scope", &self.scope)
            .finish()
    }
}

#[async_trait]
impl TokenSource for RefreshTokenGrant {
    async fn fetch(&self) -> Result<AccessToken, Error> {
        let _one_at_a_time = self.exchange.lock().await;
        tracing::debug!(source = %self.describe(), "requesting an OAuth2 token");
        let current = self.current();
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", current.expose_secret()),
        ];
        if !self.scope.is_empty() {
            form.push(("scope", self.scope.as_str()));
        }
        let mut secrets = vec![&current];
        if let Some(s) = &self.client_secret {
            secrets.push(s);
        }
        let granted = self
            .endpoint
            .request(
                &form,
                self.client_secret.as_ref(),
                self.client_auth,
                &secrets,
            )
            .await?;
        if let Some(new) = granted.refresh_token {
            if new.expose_secret() != current.expose_secret() {
                *self.refresh_token.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
                tracing::debug!(source = %self.describe(), "the provider rotated the refresh token");
                if let Some(path) = self.file.clone() {
                    let shown = path.display().to_string();
                    let written =
                        tokio::task::spawn_blocking(move || write_token_file(&path, &new)).await;
                    match written {
                        Ok(Ok(())) => {
                            tracing::debug!(file = %shown, "saved the rotated refresh token");
                        }
                        Ok(Err(e)) => tracing::warn!(
                            file = %shown,
                            "cannot save the rotated refresh token ({e}); it is kept in memory, \
                             but a restart will use the old one, which the provider may refuse"
                        ),
                        Err(e) => tracing::warn!(
                            file = %shown,
                            "saving the rotated refresh token did not complete: {e}"
                        ),
                    }
                }
            }
        }
        Ok(granted.token)
    }

    fn describe(&self) -> String {
        let ctx = &self.endpoint.ctx;
        let mut out = format!(
            "refresh token grant for client `{}` at {}",
            ctx.client_id,
            self.endpoint.url()
        );
        if !self.scope.is_empty() {
            out.push_str(&format!(", scope `{}`", self.scope));
        }
        if !self.account.starts_with("source#") {
            out.push_str(&format!(", account `{}`", self.account));
        }
        out
    }

    fn cache_key(&self) -> CacheKey {
        CacheKey::new(
            self.endpoint.url().as_str(),
            self.endpoint.ctx.client_id.as_str(),
            self.scope.as_str(),
        )
        .with_account(self.account.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt");
        std::fs::write(&path, "from-file\n").unwrap();
        let s = RefreshTokenGrant::builder("http://127.0.0.1:1/token", "id")
            .refresh_token(SecretString::from("configured"))
            .refresh_token_file(&path)
            .build()
            .unwrap();
        assert_eq!(s.current().expose_secret(), "from-file");
        assert_eq!(
            s.cache_key().account(),
            Some(&*format!("file:{}", path.display()))
        );
    }

    #[test]
    fn empty_or_missing_file_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt");
        let s = RefreshTokenGrant::builder("http://127.0.0.1:1/token", "id")
            .refresh_token(SecretString::from(" configured "))
            .refresh_token_file(&path)
            .build()
            .unwrap();
        assert_eq!(s.current().expose_secret(), "configured");
        std::fs::write(&path, "  \n").unwrap();
        let s = RefreshTokenGrant::builder("http://127.0.0.1:1/token", "id")
            .refresh_token(SecretString::from("configured"))
            .refresh_token_file(&path)
            .build()
            .unwrap();
        assert_eq!(s.current().expose_secret(), "configured");
        let e = RefreshTokenGrant::builder("http://127.0.0.1:1/token", "id")
            .refresh_token_file(&path)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("no refresh token"), "{e}");
    }

    #[test]
    fn atomic_write_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt");
        std::fs::write(&path, "old\n").unwrap();
        write_token_file(&path, &SecretString::from("new-token")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new-token\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn microsoft_url_and_keys() {
        let s = RefreshTokenGrant::microsoft("common", "id")
            .scope("https://outlook.office.com/SMTP.Send offline_access")
            .refresh_token(SecretString::from("rt"))
            .account("alice@contoso.com")
            .build()
            .unwrap();
        assert_eq!(
            s.token_url(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(s.cache_key().account(), Some("alice@contoso.com"));
        let a = RefreshTokenGrant::google("id")
            .refresh_token(SecretString::from("rt"))
            .build()
            .unwrap();
        let b = RefreshTokenGrant::google("id")
            .refresh_token(SecretString::from("rt"))
            .build()
            .unwrap();
        assert_ne!(a.cache_key(), b.cache_key(), "no account: never shared");
    }
}
