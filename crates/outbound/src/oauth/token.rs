//! [`AccessToken`]: a bearer token, when it expires, and what it is for.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An OAuth2 access token.
///
/// The token itself is a [`SecretString`]: `Debug` shows everything but the secret, and there
/// is no `Display`. Expiry is tracked on the monotonic clock (so changing the system clock
/// cannot make a token look fresh) and reported as a wall-clock [`SystemTime`].
///
/// Every token gets a process-unique identity when it is created; clones share it. The
/// [`TokenCache`](super::TokenCache) uses it to tell whether a token a server rejected is still
/// the one it hands out (see [`TokenCache::invalidate`](super::TokenCache::invalidate)).
///
/// ```
/// use std::time::Duration;
/// use outbound::oauth::AccessToken;
/// use secrecy::{ExposeSecret, SecretString};
///
/// let token = AccessToken::new(SecretString::from("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig"))
///     .with_lifetime(Duration::from_secs(3599))
///     .with_scope("https://outlook.office365.com/.default");
/// assert_eq!(token.token_type(), "Bearer");
/// assert!(!token.is_expired());
/// assert!(token.remaining().unwrap() <= Duration::from_secs(3599));
/// assert_eq!(token.masked(), "eyJ0eX…sig (44 chars)");
/// assert!(!format!("{token:?}").contains("eyJ0eX"));
/// assert_eq!(token.secret().expose_secret().len(), 44);
/// ```
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    token_type: String,
    scope: Option<String>,
    /// When the token was issued (the moment the request was sent), monotonic.
    issued: Instant,
    /// The lifetime the server announced (`expires_in`), if any.
    lifetime: Option<Duration>,
    /// Wall-clock expiry, for display.
    expires_at: Option<SystemTime>,
    id: u64,
}

impl AccessToken {
    /// A bearer token whose expiry is unknown (a static token: used until a server rejects it).
    pub fn new(secret: SecretString) -> Self {
        AccessToken {
            secret,
            token_type: "Bearer".to_string(),
            scope: None,
            issued: Instant::now(),
            lifetime: None,
            expires_at: None,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sets the lifetime, counted from when the token was created (or, for tokens from a token
    /// endpoint, from when the request was sent: never later than the server's own clock).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        let age = self.issued.elapsed();
        self.expires_at = Some(
            SystemTime::now()
                .checked_add(lifetime.saturating_sub(age))
                .unwrap_or_else(SystemTime::now),
        );
        self
    }

    /// Sets the scope the token was granted for.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the token type (`Bearer` unless the server said otherwise).
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Backdates the issue instant (used by token endpoints: the lifetime counts from the
    /// moment the request went out).
    pub(crate) fn issued_at(mut self, issued: Instant) -> Self {
        self.issued = issued;
        self
    }

    /// The token itself. Handle with care: never log it.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// The token type, normally `Bearer`.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The scope the token was granted for, when known.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The lifetime the server announced (`expires_in`), when known.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// When the token expires (wall clock), when known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The monotonic instant the token expires, when known.
    pub(crate) fn expires_instant(&self) -> Option<Instant> {
        self.lifetime.and_then(|l| self.issued.checked_add(l))
    }

    /// How long the token stays valid from now (zero once expired); `None` when unknown.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires_instant()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the token is known to have expired.
    pub fn is_expired(&self) -> bool {
        self.expires_instant()
            .is_some_and(|at| Instant::now() >= at)
    }

    /// The token for display: its first 6 and last 3 characters and its length, e.g.
    /// `eyJ0eX…sig (1234 chars)`; only `****** (N chars)` when it is shorter than 24
    /// characters (too short to show any of it safely).
    pub fn masked(&self) -> String {
        let s = self.secret.expose_secret();
        let n = s.chars().count();
        if n < 24 {
            return format!("****** ({n} chars)");
        }
        let head: String = s.chars().take(6).collect();
        let tail: String = s.chars().skip(n - 3).collect();
        format!("{head}…{tail} ({n} chars)")
    }

    /// The process-unique identity of this token (shared by its clones).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .field("lifetime", &self.lifetime)
            .field("remaining", &self.remaining())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_masks() {
        let t = AccessToken::new(SecretString::from("short-secret"));
        assert_eq!(t.masked(), "****** (12 chars)");
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("short-secret"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
    }

    #[test]
    fn expiry_unknown_by_default() {
        let t = AccessToken::new(SecretString::from("x"));
        assert!(t.remaining().is_none());
        assert!(t.expires_at().is_none());
        assert!(!t.is_expired());
    }

    #[test]
    fn lifetime_counts_from_issue() {
        let issued = Instant::now() - Duration::from_secs(10);
        let t = AccessToken::new(SecretString::from("x"))
            .issued_at(issued)
            .with_lifetime(Duration::from_secs(5));
        assert!(t.is_expired());
        assert_eq!(t.remaining(), Some(Duration::ZERO));
        let clone = t.clone();
        assert_eq!(clone.id(), t.id());
        let other = AccessToken::new(SecretString::from("x"));
        assert_ne!(other.id(), t.id());
    }
}
