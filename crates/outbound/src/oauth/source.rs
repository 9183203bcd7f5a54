//! The [`TokenSource`] trait, the [`CacheKey`] that identifies an account's tokens, and the
//! simplest source, [`StaticToken`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use super::AccessToken;
use crate::Error;

/// Something that can obtain an access token: a token endpoint and a grant, or a fixed token.
///
/// Sources do no caching of their own; wrap one in a [`TokenCache`](super::TokenCache), which
/// refreshes ahead of expiry and makes concurrent callers share one request. The trait is
/// object safe (`Arc<dyn TokenSource>` works) and implemented for `Arc<T>` and `Box<T>`.
///
/// ```
/// use outbound::oauth::{StaticToken, TokenSource};
/// use secrecy::{ExposeSecret, SecretString};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let source: std::sync::Arc<dyn TokenSource> =
///     std::sync::Arc::new(StaticToken::new(SecretString::from("opaque-token")));
/// let token = source.fetch().await?;
/// assert_eq!(token.secret().expose_secret(), "opaque-token");
/// assert_eq!(source.describe(), "static access token (no refresh)");
/// # Ok(()) }
/// ```
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// Requests a new token (always: caching is the [`TokenCache`](super::TokenCache)'s job).
    async fn fetch(&self) -> Result<AccessToken, Error>;

    /// A one-line description for logs and `outbound token`, never containing a secret.
    fn describe(&self) -> String;

    /// Which account's tokens this source yields: sources with equal keys share one cache in
    /// [`TokenCache::shared`](super::TokenCache::shared).
    fn cache_key(&self) -> CacheKey;
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn fetch(&self) -> Result<AccessToken, Error> {
        (**self).fetch().await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn cache_key(&self) -> CacheKey {
        (**self).cache_key()
    }
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Box<T> {
    async fn fetch(&self) -> Result<AccessToken, Error> {
        (**self).fetch().await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn cache_key(&self) -> CacheKey {
        (**self).cache_key()
    }
}

/// Identifies whose tokens a source yields: token URL, client id and scope, plus an account
/// for delegated (refresh token) sources, where one client serves many users.
///
/// ```
/// use outbound::oauth::CacheKey;
/// let a = CacheKey::new("https://login.example/token", "client-1", "mail.send");
/// let b = CacheKey::new("https://login.example/token", "client-1", "mail.send");
/// assert_eq!(a, b);
/// assert_ne!(a, b.clone().with_account("alice@example.com"));
/// assert_eq!(a.to_string(), "client `client-1` at https://login.example/token, scope `mail.send`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    token_url: String,
    client_id: String,
    scope: String,
    account: Option<String>,
}

impl CacheKey {
    /// A key for client `client_id`'s tokens for `scope` from `token_url`.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        scope: impl Into<String>,
    ) -> Self {
        CacheKey {
            token_url: token_url.into(),
            client_id: client_id.into(),
            scope: scope.into(),
            account: None,
        }
    }

    /// Narrows the key to one account (a user of a delegated grant).
    pub fn with_account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The scope (empty when none is requested).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The account, for delegated grants.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client `{}` at {}", self.client_id, self.token_url)?;
        if !self.scope.is_empty() {
            write!(f, ", scope `{}`", self.scope)?;
        }
        if let Some(account) = &self.account {
            write!(f, ", account `{account}`")?;
        }
        Ok(())
    }
}

static NEXT_STATIC: AtomicU64 = AtomicU64::new(1);

/// A fixed access token (the seeds' `oauth_access_token`): never refreshed, expiry unknown.
///
/// It is used until a server rejects it; then sending fails with an `Auth` error, since there
/// is nothing to refresh it with.
///
/// ```
/// use outbound::oauth::{StaticToken, TokenCache};
/// use secrecy::SecretString;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let cache = TokenCache::new(StaticToken::new(SecretString::from("opaque-token")));
/// let token = cache.get().await?;
/// assert!(token.expires_at().is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StaticToken {
    token: AccessToken,
    instance: u64,
}

impl StaticToken {
    /// A source that always yields `token`.
    pub fn new(token: SecretString) -> Self {
        StaticToken {
            token: AccessToken::new(token),
            instance: NEXT_STATIC.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Records the scope the token is known to carry (informational).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.token = self.token.with_scope(scope);
        self
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &"[redacted]")
            .field("scope", &self.token.scope())
            .finish()
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn fetch(&self) -> Result<AccessToken, Error> {
        Ok(self.token.clone())
    }

    fn describe(&self) -> String {
        "static access token (no refresh)".to_string()
    }

    /// Each static token has a key of its own: there is nothing to share.
    fn cache_key(&self) -> CacheKey {
        CacheKey::new("static", "", "").with_account(format!("static#{}", self.instance))
    }
}
