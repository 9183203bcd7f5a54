//! [`TokenCache`]: the current token of one account, refreshed ahead of expiry, one request at
//! a time however many senders ask.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use super::{AccessToken, CacheKey, TokenSource};
use crate::{Error, ErrorKind};

/// Refresh at most this long before expiry (long-lived tokens).
const MAX_MARGIN: Duration = Duration::from_secs(300);
/// Refresh at least this long before expiry (unless that is more than half the lifetime).
const MIN_MARGIN: Duration = Duration::from_secs(1);
/// After a failed refresh while the current token is still valid, wait at most this long
/// before trying again.
const RETRY_BACKOFF: Duration = Duration::from_secs(5);

/// How long before expiry a token with `lifetime` is refreshed.
///
/// The rule: 10% of the lifetime, at most 5 minutes, and at least 1 second (or half the
/// lifetime when that is shorter). Why:
/// - Microsoft's tokens live 60-90 minutes (chosen at random per token) and Google's an hour:
///   they are refreshed 5 minutes early, as Microsoft's own MSAL does. That leaves room for a
///   slow token endpoint (retries included) and for the clock skew between this host and the
///   server that checks the token, while costing only ~6-8% more token requests.
/// - Shorter lifetimes (e.g. Keycloak's 5 minutes) are refreshed at 90% of their life, so a
///   token is never refreshed much more often than it expires.
/// - The floor keeps very short lifetimes (seconds, in tests) from being handed out with a
///   few milliseconds left: an SMTP server must still accept the token after TCP, TLS and
///   EHLO.
///
/// The lifetime is the server's `expires_in`, counted from when the request was sent; nothing
/// assumes an hour.
///
/// ```
/// use std::time::Duration;
/// use outbound::oauth::refresh_margin;
/// let s = Duration::from_secs;
/// assert_eq!(refresh_margin(s(3600)), s(300));   // Google, Microsoft: 5 minutes early
/// assert_eq!(refresh_margin(s(5400)), s(300));
/// assert_eq!(refresh_margin(s(600)), s(60));     // 10%
/// assert_eq!(refresh_margin(s(5)), s(1));        // floor
/// assert_eq!(refresh_margin(s(1)), Duration::from_millis(500)); // half a tiny lifetime
/// ```
pub fn refresh_margin(lifetime: Duration) -> Duration {
    let tenth = lifetime / 10;
    let floor = MIN_MARGIN.min(lifetime / 2);
    tenth.max(floor).min(MAX_MARGIN)
}

/// Whether `token` can be handed out without refreshing first.
fn is_fresh(token: &AccessToken, now: Instant) -> bool {
    match (token.expires_instant(), token.lifetime()) {
        (Some(at), Some(lifetime)) => now + refresh_margin(lifetime) < at,
        _ => true, // expiry unknown: used until a server rejects it
    }
}

/// Whether `token` is still valid (perhaps inside its refresh window).
fn is_valid(token: &AccessToken, now: Instant) -> bool {
    token.expires_instant().is_none_or(|at| now < at)
}

/// Whether `token`, inside its refresh window, may still be handed out while the refresh
/// runs in the background: while more than half the margin (and more than 2 s) is left. So
/// senders do not wait for the routine refresh of a long-lived token; only a refresh that is
/// late (slow or failing endpoint) or a token with seconds to live makes them wait.
fn servable_while_refreshing(token: &AccessToken, now: Instant) -> bool {
    match (token.expires_instant(), token.lifetime()) {
        (Some(at), Some(lifetime)) => {
            at.saturating_duration_since(now) > (refresh_margin(lifetime) / 2).max(2 * MIN_MARGIN)
        }
        _ => false,
    }
}

type Outcome = Result<Arc<AccessToken>, Arc<Error>>;

struct Inner {
    source: Arc<dyn TokenSource>,
    key: CacheKey,
    description: String,
    current: ArcSwapOption<AccessToken>,
    flight: Mutex<Flight>,
}

#[derive(Default)]
struct Flight {
    /// The refresh in progress, if any: every caller waits on it.
    running: Option<watch::Receiver<Option<Outcome>>>,
    /// After a failed refresh ahead of expiry, keep using the current token until then.
    retry_not_before: Option<Instant>,
}

/// The tokens of one account: lock-free reads of the current token, refreshed ahead of
/// expiry (see [`refresh_margin`]), with at most one token request in flight.
///
/// - [`get`](Self::get) returns the current token when it is fresh: one atomic load, no lock.
///   Otherwise it joins the refresh in progress or starts one; any number of concurrent
///   callers cause exactly one request and all receive its result (token or error). The
///   request runs in its own task, so a caller that gives up (a timeout, a dropped future)
///   does not cancel it for the others.
/// - Early in the refresh window (more than half the margin and more than 2 s left), callers
///   keep getting the current token while the one refresh runs in the background, so the
///   routine hourly refresh delays no sender. Later than that, callers wait for the refresh.
/// - If a refresh ahead of expiry fails while the current token is still valid, callers keep
///   getting that token (a warning is logged) and the next attempt waits a few seconds.
/// - [`invalidate`](Self::invalidate) is for a token a server rejected (SMTP 535 or a 334
///   JSON error, HTTP 401): the next `get` fetches a new one. Invalidating a token that has
///   already been replaced does nothing, so many senders whose old token failed cause one
///   refresh, not many.
///
/// Clones share the same cache. [`TokenCache::shared`] gives every transport of the same
/// account (same [`CacheKey`]) the same cache, process-wide.
///
/// Retry once when a server rejects the token:
///
/// ```
/// use outbound::oauth::{StaticToken, TokenCache};
/// use outbound::{Error, ErrorKind};
/// use secrecy::SecretString;
///
/// async fn authenticate(token: &str) -> Result<(), Error> {
///     // e.g. SMTP AUTH XOAUTH2; a 535 becomes ErrorKind::Auth
/// #   let _ = token;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// use secrecy::ExposeSecret;
/// let cache = TokenCache::shared(StaticToken::new(SecretString::from("opaque-token")));
/// let token = cache.get().await?;
/// match authenticate(token.secret().expose_secret()).await {
///     Err(e) if e.kind() == ErrorKind::Auth => {
///         cache.invalidate(&token);
///         let token = cache.get().await?;
///         authenticate(token.secret().expose_secret()).await?;
///     }
///     other => other?,
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

fn registry() -> &'static Mutex<HashMap<CacheKey, Weak<Inner>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<CacheKey, Weak<Inner>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl TokenCache {
    /// A cache of its own for `source`.
    pub fn new<S: TokenSource + 'static>(source: S) -> Self {
        let source: Arc<dyn TokenSource> = Arc::new(source);
        let key = source.cache_key();
        let description = source.describe();
        TokenCache {
            inner: Arc::new(Inner {
                source,
                key,
                description,
                current: ArcSwapOption::empty(),
                flight: Mutex::new(Flight::default()),
            }),
        }
    }

    /// The process-wide cache for `source`'s [`CacheKey`] (token URL, client id, scope, and
    /// account for delegated grants): two transports for the same account share one cache,
    /// one token and one refresh. The first source registered for a key is the one used;
    /// a cache lives as long as someone holds it.
    ///
    /// ```
    /// use outbound::oauth::{ClientCredentials, TokenCache};
    /// use secrecy::SecretString;
    /// let make = || ClientCredentials::microsoft_smtp("contoso", "app-id", SecretString::from("s3cret"))
    ///     .build();
    /// let a = TokenCache::shared(make()?);
    /// let b = TokenCache::shared(make()?);
    /// assert!(a.same_cache(&b));
    /// assert!(!a.same_cache(&TokenCache::new(make()?)));
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn shared<S: TokenSource + 'static>(source: S) -> Self {
        let key = source.cache_key();
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inner) = map.get(&key).and_then(Weak::upgrade) {
            return TokenCache { inner };
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let cache = TokenCache::new(source);
        map.insert(key, Arc::downgrade(&cache.inner));
        cache
    }

    /// Whether `self` and `other` are the same cache.
    pub fn same_cache(&self, other: &TokenCache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The key of the account this cache serves.
    pub fn key(&self) -> &CacheKey {
        &self.inner.key
    }

    /// The source's description (no secrets).
    pub fn describe(&self) -> &str {
        &self.inner.description
    }

    /// The token held now, if any, without refreshing (a lock-free read).
    pub fn current(&self) -> Option<Arc<AccessToken>> {
        self.inner.current.load_full()
    }

    /// A token that is valid now and not about to expire: the cached one, or a new one from
    /// the source (one request, however many callers ask at once).
    pub async fn get(&self) -> Result<Arc<AccessToken>, Error> {
        if let Some(token) = self.inner.current.load_full() {
            if is_fresh(&token, Instant::now()) {
                return Ok(token);
            }
        }
        self.slow_get().await
    }

    async fn slow_get(&self) -> Result<Arc<AccessToken>, Error> {
        enum Next {
            Ready(Arc<AccessToken>),
            Wait(watch::Receiver<Option<Outcome>>),
            Run(
                watch::Receiver<Option<Outcome>>,
                watch::Sender<Option<Outcome>>,
            ),
            /// Start a refresh in the background and hand out this (still good) token.
            Background(Arc<AccessToken>, watch::Sender<Option<Outcome>>),
        }
        let next = {
            let mut flight = self.inner.lock_flight();
            let now = Instant::now();
            let current = self.inner.current.load_full();
            let backing_off = flight.retry_not_before.is_some_and(|t| now < t);
            match (current, &flight.running) {
                // Look again under the lock: a refresh may just have finished.
                (Some(token), _) if is_fresh(&token, now) => Next::Ready(token),
                (Some(token), Some(_)) if servable_while_refreshing(&token, now) => {
                    Next::Ready(token)
                }
                (_, Some(rx)) => Next::Wait(rx.clone()),
                // A refresh ahead of expiry failed a moment ago: keep the valid token for now.
                (Some(token), None) if is_valid(&token, now) && backing_off => Next::Ready(token),
                (current, None) => {
                    let (tx, rx) = watch::channel(None);
                    flight.running = Some(rx.clone());
                    flight.retry_not_before = None;
                    match current {
                        Some(token)
                            if servable_while_refreshing(&token, now)
                                && tokio::runtime::Handle::try_current().is_ok() =>
                        {
                            Next::Background(token, tx)
                        }
                        _ => Next::Run(rx, tx),
                    }
                }
            }
        };
        let mut rx = match next {
            Next::Ready(token) => return Ok(token),
            Next::Background(token, tx) => {
                tokio::spawn(refresh(Arc::clone(&self.inner), tx));
                return Ok(token);
            }
            Next::Wait(rx) => rx,
            Next::Run(rx, tx) => {
                let inner = Arc::clone(&self.inner);
                match tokio::runtime::Handle::try_current() {
                    // Its own task: callers that give up do not cancel it for the others.
                    Ok(handle) => drop(handle.spawn(refresh(inner, tx))),
                    Err(_) => refresh(inner, tx).await,
                }
                rx
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(token)) => Ok(token),
            Some(Err(err)) => {
                // A refresh ahead of expiry failed: the current token is still good for now.
                if let Some(token) = self.inner.current.load_full() {
                    if is_valid(&token, Instant::now()) {
                        return Ok(token);
                    }
                }
                Err(err.replicate())
            }
            None => Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "the token request for {} ended without an answer",
                    self.inner.key
                ),
            )),
        }
    }

    /// Drops `token` if it is still the current one, so the next [`get`](Self::get) fetches a
    /// new token; use it when a server rejected `token`. Returns whether it was dropped: when
    /// `token` was already replaced (another sender noticed first), nothing happens and no
    /// extra request will follow.
    ///
    /// ```
    /// use outbound::oauth::{StaticToken, TokenCache};
    /// use secrecy::SecretString;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), outbound::Error> {
    /// let cache = TokenCache::new(StaticToken::new(SecretString::from("t")));
    /// let token = cache.get().await?;
    /// assert!(cache.invalidate(&token));
    /// assert!(!cache.invalidate(&token)); // already gone
    /// # Ok(()) }
    /// ```
    pub fn invalidate(&self, token: &AccessToken) -> bool {
        let current = self.inner.current.load();
        let matches = current.as_ref().is_some_and(|c| c.id() == token.id());
        if !matches {
            return false;
        }
        let previous = self.inner.current.compare_and_swap(&*current, None);
        let dropped = match (&*previous, &*current) {
            (Some(p), Some(c)) => Arc::ptr_eq(p, c),
            _ => false,
        };
        if dropped {
            self.inner.lock_flight().retry_not_before = None;
            tracing::debug!(key = %self.inner.key, "token invalidated (a server rejected it)");
        }
        dropped
    }
}

impl TokenCache {
    /// Like [`invalidate`](Self::invalidate), for callers that kept only the token's secret
    /// (e.g. the SMTP client's `AccessTokenSource::invalidate(&SecretString)`): drops the
    /// current token if its secret is `secret`.
    ///
    /// ```
    /// use outbound::oauth::{StaticToken, TokenCache};
    /// use secrecy::SecretString;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), outbound::Error> {
    /// let cache = TokenCache::new(StaticToken::new(SecretString::from("t")));
    /// let secret = cache.get().await?.secret().clone();
    /// assert!(!cache.invalidate_secret(&SecretString::from("another")));
    /// assert!(cache.invalidate_secret(&secret));
    /// # Ok(()) }
    /// ```
    pub fn invalidate_secret(&self, secret: &secrecy::SecretString) -> bool {
        use secrecy::ExposeSecret as _;
        match self.inner.current.load_full() {
            Some(current) if current.secret().expose_secret() == secret.expose_secret() => {
                self.invalidate(&current)
            }
            _ => false,
        }
    }
}

impl Inner {
    fn lock_flight(&self) -> std::sync::MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears the in-flight marker however the refresh task ends (even by panic), so a failed
/// task never leaves the cache waiting on nothing.
struct FlightGuard(Arc<Inner>);

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.0.lock_flight().running = None;
    }
}

async fn refresh(inner: Arc<Inner>, tx: watch::Sender<Option<Outcome>>) {
    let guard = FlightGuard(Arc::clone(&inner));
    let started = Instant::now();
    let outcome: Outcome = match inner.source.fetch().await {
        Ok(token) => {
            let token = Arc::new(token);
            match token.remaining() {
                Some(left) => tracing::debug!(
                    key = %inner.key,
                    took_ms = started.elapsed().as_millis() as u64,
                    "token acquired, expires in {} s",
                    left.as_secs()
                ),
                None => tracing::debug!(
                    key = %inner.key,
                    took_ms = started.elapsed().as_millis() as u64,
                    "token acquired, expiry unknown"
                ),
            }
            inner.current.store(Some(Arc::clone(&token)));
            Ok(token)
        }
        Err(err) => {
            let still_valid = inner
                .current
                .load()
                .as_ref()
                .is_some_and(|t| is_valid(t, Instant::now()));
            if still_valid {
                let backoff = inner
                    .current
                    .load()
                    .as_ref()
                    .and_then(|t| t.remaining())
                    .map_or(RETRY_BACKOFF, |left| (left / 4).min(RETRY_BACKOFF));
                inner.lock_flight().retry_not_before = Some(Instant::now() + backoff);
                tracing::warn!(
                    key = %inner.key,
                    "token refresh failed; the current token is still valid and stays in use: {err}"
                );
            } else {
                tracing::warn!(key = %inner.key, "token request failed: {err}");
            }
            Err(Arc::new(err))
        }
    };
    drop(guard);
    tx.send_replace(Some(outcome));
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.inner.current.load();
        f.debug_struct("TokenCache")
            .field("key", &self.inner.key)
            .field("token", &current.as_deref())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use secrecy::{ExposeSecret, SecretString};

    use super::*;

    /// A source that counts its requests, takes `delay`, and issues tokens of `lifetime`.
    struct Counting {
        calls: Arc<AtomicUsize>,
        delay: Duration,
        lifetime: Option<Duration>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        key: &'static str,
        /// Tokens come out this old (as if issued earlier).
        age: Duration,
    }

    impl Counting {
        fn new(lifetime: Option<Duration>, delay: Duration) -> (Self, Arc<AtomicUsize>) {
            let calls = Arc::new(AtomicUsize::new(0));
            (
                Counting {
                    calls: Arc::clone(&calls),
                    delay,
                    lifetime,
                    fail: Arc::default(),
                    key: "counting",
                    age: Duration::ZERO,
                },
                calls,
            )
        }
    }

    #[async_trait]
    impl TokenSource for Counting {
        async fn fetch(&self) -> Result<AccessToken, Error> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::Transient, "token endpoint down"));
            }
            let token = AccessToken::new(SecretString::from(format!("token-{n}")))
                .issued_at(Instant::now() - self.age);
            Ok(match self.lifetime {
                Some(l) => token.with_lifetime(l),
                None => token,
            })
        }
        fn describe(&self) -> String {
            "counting".into()
        }
        fn cache_key(&self) -> CacheKey {
            CacheKey::new(self.key, "c", "s")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_cold_callers_cause_one_request() {
        let (source, calls) =
            Counting::new(Some(Duration::from_secs(3600)), Duration::from_millis(100));
        let cache = TokenCache::new(source);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get().await })
            })
            .collect();
        for t in tasks {
            let token = t.await.unwrap().unwrap();
            assert_eq!(token.secret().expose_secret(), "token-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_reach_every_waiter_from_one_request() {
        let (source, calls) = Counting::new(None, Duration::from_millis(50));
        source.fail.store(true, Ordering::SeqCst);
        let cache = TokenCache::new(source);
        let results = futures_join_all((0..16).map(|_| {
            let c = cache.clone();
            async move { c.get().await }
        }))
        .await;
        for r in results {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Transient);
            assert_eq!(e.message(), "token endpoint down");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    async fn futures_join_all<F: std::future::Future + Send + 'static>(
        futs: impl Iterator<Item = F>,
    ) -> Vec<F::Output>
    where
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn invalidate_once() {
        let (source, calls) = Counting::new(Some(Duration::from_secs(3600)), Duration::ZERO);
        let cache = TokenCache::new(source);
        let first = cache.get().await.unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get().await.unwrap()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(cache.invalidate(&first));
        let second = cache.get().await.unwrap();
        assert_eq!(second.secret().expose_secret(), "token-2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A late rejection of the old token changes nothing.
        assert!(!cache.invalidate(&first));
        let again = cache.get().await.unwrap();
        assert!(Arc::ptr_eq(&second, &again));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refreshes_ahead_of_expiry() {
        // lifetime 2 s -> margin 1 s: fresh for ~1 s.
        let (source, calls) = Counting::new(Some(Duration::from_secs(2)), Duration::ZERO);
        let cache = TokenCache::new(source);
        let a = cache.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(Arc::ptr_eq(&a, &cache.get().await.unwrap()));
        tokio::time::sleep(Duration::from_millis(900)).await;
        let b = cache.get().await.unwrap();
        assert_eq!(b.secret().expose_secret(), "token-2");
        assert!(b.remaining().unwrap() > Duration::from_millis(1500));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn long_lived_tokens_are_refreshed_in_the_background() {
        // Lifetime 60 s, margin 6 s; tokens come out 55 s old: 5 s left, inside the window
        // but above half the margin, so callers keep getting it while the refresh runs.
        let (mut source, calls) =
            Counting::new(Some(Duration::from_secs(60)), Duration::from_millis(200));
        source.age = Duration::from_secs(55);
        let cache = TokenCache::new(source);
        let first = cache.get().await.unwrap(); // cold: waits
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let started = Instant::now();
        for _ in 0..10 {
            let t = cache.get().await.unwrap();
            assert!(Arc::ptr_eq(&t, &first));
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "nobody waited"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one background refresh");
        assert_eq!(cache.current().unwrap().secret().expose_secret(), "token-2");
    }

    #[tokio::test]
    async fn failed_refresh_keeps_valid_token_and_backs_off() {
        let (source, calls) = Counting::new(Some(Duration::from_secs(4)), Duration::ZERO);
        let fail = Arc::clone(&source.fail);
        let cache = TokenCache::new(source);
        let a = cache.get().await.unwrap();
        // Enter the refresh window (margin 1 s).
        tokio::time::sleep(Duration::from_millis(3100)).await;
        fail.store(true, Ordering::SeqCst);
        let b = cache.get().await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "still-valid token returned");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Within the backoff, no new request.
        let c = cache.get().await.unwrap();
        assert!(Arc::ptr_eq(&a, &c));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Once expired, the error surfaces.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(cache.get().await.is_err());
    }

    #[tokio::test]
    async fn panicking_source_does_not_wedge_the_cache() {
        struct Panics(Arc<AtomicUsize>);
        #[async_trait]
        impl TokenSource for Panics {
            async fn fetch(&self) -> Result<AccessToken, Error> {
                if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("boom");
                }
                Ok(AccessToken::new(SecretString::from("ok")))
            }
            fn describe(&self) -> String {
                "panics".into()
            }
            fn cache_key(&self) -> CacheKey {
                CacheKey::new("p", "p", "p")
            }
        }
        let cache = TokenCache::new(Panics(Arc::new(AtomicUsize::new(0))));
        let e = cache.get().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(cache.get().await.unwrap().secret().expose_secret(), "ok");
    }

    #[tokio::test]
    async fn shared_registry_by_key() {
        let (a, _) = Counting::new(None, Duration::ZERO);
        let (b, _) = Counting::new(None, Duration::ZERO);
        let (mut c, _) = Counting::new(None, Duration::ZERO);
        c.key = "other";
        let ca = TokenCache::shared(a);
        let cb = TokenCache::shared(b);
        let cc = TokenCache::shared(c);
        assert!(ca.same_cache(&cb));
        assert!(!ca.same_cache(&cc));
        drop((ca, cb));
        let (d, _) = Counting::new(None, Duration::ZERO);
        let cd = TokenCache::shared(d);
        assert!(cd.current().is_none(), "a dropped cache is not resurrected");
    }

    #[test]
    fn margins() {
        let s = Duration::from_secs;
        assert_eq!(refresh_margin(s(0)), s(0));
        assert_eq!(refresh_margin(s(30)), s(3));
        assert_eq!(refresh_margin(s(3599)), s(300));
        assert_eq!(refresh_margin(s(86400)), s(300));
    }
}
