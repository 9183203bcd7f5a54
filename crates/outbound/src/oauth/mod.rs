//! OAuth2 access tokens for SMTP (XOAUTH2, OAUTHBEARER) and HTTP providers (Graph): where
//! they come from, and a cache that keeps one current per account.
//!
//! - [`TokenSource`]: obtains a token. [`ClientCredentials`] (Microsoft Entra ID with a
//!   tenant, or any provider's token URL), [`RefreshTokenGrant`] (delegated accounts: Google,
//!   Microsoft, any provider; keeps and optionally saves a rotated refresh token),
//!   [`StaticToken`] (a fixed token, never refreshed).
//! - [`TokenCache`]: lock-free reads of the current token, refresh ahead of expiry computed
//!   from the server's `expires_in` ([`refresh_margin`]), one request however many senders
//!   ask, and [`TokenCache::invalidate`] for a token a server rejected. The SMTP transport
//!   takes a cache as its token source ([`Credentials::oauth2_cache`](crate::smtp::Credentials::oauth2_cache));
//!   Graph takes one in its builder; configuration builds both from the same settings
//!   ([`Settings::token_cache`](crate::config::Settings::token_cache)).
//! - Token endpoint failures become [`Error`](crate::Error)s with a kind to act on: a wrong or
//!   expired client secret is [`Auth`](crate::ErrorKind::Auth), an unknown tenant or
//!   application or a bad scope is [`Config`](crate::ErrorKind::Config), 5xx and answers that
//!   are not tokens are [`Transient`](crate::ErrorKind::Transient), and timeouts are
//!   [`Timeout`](crate::ErrorKind::Timeout), each with a hint (Microsoft's AADSTS codes are
//!   recognised) and the provider's own words as the server text.
//!
//! Secrets (client secrets, refresh tokens, access tokens) are kept in
//! [`SecretString`](secrecy::SecretString) and never appear in `Display`, `Debug`, errors or
//! logs; logs name the account (client id, token URL, scope) and the expiry only.
//!
//! ```no_run
//! use outbound::oauth::{ClientCredentials, TokenCache};
//! use secrecy::{ExposeSecret, SecretString};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), outbound::Error> {
//! let source = ClientCredentials::microsoft_smtp(
//!     "contoso.onmicrosoft.com",
//!     "11111111-2222-3333-4444-555555555555",
//!     SecretString::from(std::env::var("CLIENT_SECRET").unwrap_or_default()),
//! )
//! .build()?;
//! let cache = TokenCache::shared(source);
//! let token = cache.get().await?; // one request; later calls reuse it until shortly before expiry
//! println!("{} expires in {:?}", token.masked(), token.remaining());
//! # let _ = token.secret().expose_secret();
//! # Ok(()) }
//! ```

mod cache;
#[cfg(feature = "oauth")]
mod client_credentials;
mod current;
#[cfg(feature = "oauth")]
mod endpoint;
#[cfg(feature = "oauth")]
mod errors;
#[cfg(any(feature = "smtp", feature = "graph"))]
mod fresh_token;
#[cfg(feature = "oauth")]
mod refresh;
mod scopes;
mod source;
mod token;

pub use cache::{refresh_margin, TokenCache};
#[cfg(feature = "oauth")]
pub use client_credentials::{ClientCredentials, ClientCredentialsBuilder};
pub use current::AccessTokenSource;
#[cfg(feature = "oauth")]
pub(crate) use endpoint::parse_url;
#[cfg(feature = "oauth")]
pub use endpoint::{ClientAuth, DEFAULT_TIMEOUT};
#[cfg(any(feature = "smtp", feature = "graph"))]
pub(crate) use fresh_token::{current_token, with_fresh_token, Attempt};
#[cfg(feature = "oauth")]
pub use refresh::{
    RefreshTokenGrant, RefreshTokenGrantBuilder, GOOGLE_TOKEN_URL, MICROSOFT_SMTP_DELEGATED_SCOPE,
};
pub use scopes::{MICROSOFT_AUTHORITY, MICROSOFT_GRAPH_SCOPE, MICROSOFT_SMTP_SCOPE};
pub use source::{CacheKey, StaticToken, TokenSource};
pub use token::AccessToken;
