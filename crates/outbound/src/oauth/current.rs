//! [`AccessTokenSource`]: where a connection gets the token it authenticates with right now,
//! and how it reports a token the server rejected. SMTP's XOAUTH2/OAUTHBEARER login and
//! Graph's requests both use it, through [`with_fresh_token`](super::with_fresh_token).

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use super::{StaticToken, TokenCache, TokenSource as _};
use crate::Error;

/// Where an OAuth2 access token comes from each time a connection authenticates.
///
/// Implemented by [`TokenCache`] (the normal case: a token from a token endpoint, refreshed
/// ahead of expiry, one request however many connections ask) and by
/// [`oauth::StaticToken`](StaticToken) (a fixed token, for short-lived processes). Every new
/// connection asks for a token just before it connects, so a pooled connection opened an hour
/// after the first one still authenticates with a current token.
///
/// When the server rejects a token (a `535`, or a `334` carrying a JSON error), the client calls
/// [`invalidate`](Self::invalidate) and asks once more: if it then gets a different token, it
/// authenticates once more with that one (on the same connection, or on a new one when the
/// server closed it); if it gets the same token back (a static token), it fails at once.
///
/// ```
/// use outbound::oauth::{StaticToken, TokenCache};
/// use outbound::smtp::{AccessTokenSource, Credentials};
/// use secrecy::{ExposeSecret, SecretString};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let cache = TokenCache::new(StaticToken::new(SecretString::from("ya29.token")));
/// assert_eq!(cache.access_token().await?.expose_secret(), "ya29.token");
/// let credentials = Credentials::oauth2_cache("app@example.com", cache);
/// assert_eq!(credentials.username(), "app@example.com");
/// # Ok(()) }
/// ```
#[async_trait]
pub trait AccessTokenSource: Send + Sync + fmt::Debug {
    /// A token that is valid now.
    async fn access_token(&self) -> Result<SecretString, Error>;

    /// Called when the server rejected `token`, so a cache can drop it and fetch a new one.
    fn invalidate(&self, _token: &SecretString) {}
}

/// The cache's current token, refreshed ahead of expiry; a rejected token is dropped (only if
/// it is still the current one, so many connections rejecting the same token cause one
/// refresh).
#[async_trait]
impl AccessTokenSource for TokenCache {
    async fn access_token(&self) -> Result<SecretString, Error> {
        Ok(self.get().await?.secret().clone())
    }

    fn invalidate(&self, token: &SecretString) {
        self.invalidate_secret(token);
    }
}

/// A fixed token: always the same, so a rejection is final.
#[async_trait]
impl AccessTokenSource for StaticToken {
    async fn access_token(&self) -> Result<SecretString, Error> {
        Ok(self.fetch().await?.secret().clone())
    }
}
