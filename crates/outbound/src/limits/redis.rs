//! [`SharedLimits`]: the connection cap and the rate held in Redis (`redis` crate, one
//! multiplexed connection that reconnects by itself; every decision one Lua script).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{
    ConnectionLease, ConnectionSlots, FailPolicy, LimitsUrl, LocalRate, Rate, SharedRate,
    KEY_PREFIX, MAX_SLOT_WAIT,
};
use crate::{Error, ErrorKind};

/// How long one Redis call may take before Redis counts as slow (and the fallback applies).
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed call, how long `local` skips Redis before trying it again, so a dead Redis
/// does not cost every message a timeout.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often `wait` asks again while Redis is unreachable.
const WAIT_RETRY: Duration = Duration::from_millis(200);
/// How often a waiter asks for a slot again (jittered up to twice this).
const SLOT_POLL: Duration = Duration::from_millis(10);
/// A waiter that stopped asking for this long leaves the queue (it died).
const WAITER_TTL: Duration = Duration::from_secs(2);

/// A handle to the shared limits in one Redis. Cheap to clone; nothing connects until the
/// first decision. Build it from `MAIL_LIMITS_URL` (configuration does) or by hand:
///
/// ```
/// use outbound::limits::{FailPolicy, SharedLimits};
/// let limits = SharedLimits::new("redis://:secret@127.0.0.1:6379/0?lease=10", FailPolicy::Local)?;
/// assert_eq!(limits.describe(), "redis://:********@127.0.0.1:6379/0 (lease 10 s, fallback local)");
/// assert!(!format!("{limits:?}").contains("secret"));
/// # Ok::<(), outbound::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedLimits {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// The URL with any password redacted.
    shown: String,
    connection: OnceCell<ConnectionManager>,
    fail: FailPolicy,
    lease: Duration,
    wait: Duration,
    outage: Mutex<Outage>,
    slots: Script,
    release: Script,
    gcra: Script,
}

/// The handles alive in this process, by URL and policy.
type LiveHandles = HashMap<(String, FailPolicy), Weak<Inner>>;

/// Whether Redis is currently failing, so the warning is loud once per outage, not per message.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    retry_at: Option<Instant>,
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits")
            .field("url", &self.inner.shown)
            .field("fail", &self.inner.fail)
            .field("lease", &self.inner.lease)
            .field("wait", &self.inner.wait)
            .finish()
    }
}

impl SharedLimits {
    /// Limits kept in the Redis at `url` (`redis://[:password@]host[:port][/db]`, or
    /// `rediss://` for TLS), with `lease=SECONDS` (default 15) and `wait=SECONDS` (default 30)
    /// in its query. Does not connect. Every handle of a process for the same URL and policy
    /// is the same one while any is alive: one connection, one outage warning.
    pub fn new(url: &str, fail: FailPolicy) -> Result<SharedLimits, Error> {
        static LIVE: OnceLock<Mutex<LiveHandles>> = OnceLock::new();
        let mut live = LIVE
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (url.trim().to_string(), fail);
        if let Some(inner) = live.get(&key).and_then(Weak::upgrade) {
            return Ok(SharedLimits { inner });
        }
        let limits = SharedLimits::open(url, fail)?;
        live.retain(|_, w| w.strong_count() > 0);
        live.insert(key, Arc::downgrade(&limits.inner));
        Ok(limits)
    }

    fn open(url: &str, fail: FailPolicy) -> Result<SharedLimits, Error> {
        let parsed = LimitsUrl::parse(url)?;
        let shown = super::redact_url(&parsed.redis);
        let client = redis::Client::open(parsed.redis.as_str()).map_err(|e| {
            Error::config(format!(
                "the shared limits URL `{shown}` is not usable ({:?})",
                e.kind()
            ))
        })?;
        Ok(SharedLimits {
            inner: Arc::new(Inner {
                client,
                shown,
                connection: OnceCell::new(),
                fail,
                lease: parsed.lease,
                wait: parsed.wait,
                outage: Mutex::new(Outage::default()),
                slots: Script::new(include_str!("slots.lua")),
                release: Script::new(include_str!("release.lua")),
                gcra: Script::new(include_str!("gcra.lua")),
            }),
        })
    }

    /// The URL (password redacted), the lease and the fallback.
    pub fn describe(&self) -> String {
        format!(
            "{} (lease {} s, fallback {})",
            self.inner.shown,
            self.inner.lease.as_secs_f64(),
            self.inner.fail
        )
    }

    /// The fallback policy.
    pub fn fail_policy(&self) -> FailPolicy {
        self.inner.fail
    }

    /// Asks Redis for `PING` and returns how long the answer took: what `outbound check`
    /// reports. An error says why Redis could not be reached (never the password).
    pub async fn ping(&self) -> Result<Duration, Error> {
        let started = Instant::now();
        let mut con = self.connection().await?;
        let ping = redis::cmd("PING");
        let call = ping.query_async::<String>(&mut con);
        match tokio::time::timeout(CALL_TIMEOUT * 4, call).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(self.unreachable(&describe_error(&e))),
            Err(_) => Err(self.unreachable(&format!(
                "no answer within {} ms",
                (CALL_TIMEOUT * 4).as_millis()
            ))),
        }
    }

    /// The shared cap of `limit` connections for the account `account_id` (see
    /// [`account_id`](super::account_id)).
    pub fn connection_slots(&self, account_id: &str, limit: usize) -> Arc<dyn ConnectionSlots> {
        let base = format!("{KEY_PREFIX}:conn:{{{account_id}}}");
        Arc::new(RedisSlots {
            limits: self.clone(),
            keys: Arc::new([
                format!("{base}:holders"),
                format!("{base}:queue"),
                format!("{base}:waiting"),
                format!("{base}:ticket"),
            ]),
            limit: limit.max(1),
        })
    }

    /// The shared `rate` for the account `account_id`.
    pub fn rate(&self, account_id: &str, rate: Rate) -> Arc<dyn SharedRate> {
        Arc::new(RedisRate {
            limits: self.clone(),
            key: format!("{KEY_PREFIX}:rate:{{{account_id}}}"),
            local: LocalRate::new(rate),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, Error> {
        let inner = &self.inner;
        let manager = inner
            .connection
            .get_or_try_init(|| async {
                // Lazy: connecting happens on the first call and again after any failure.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CALL_TIMEOUT))
                    .set_response_timeout(Some(CALL_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(inner.client.clone(), config)
                    .map_err(|e| self.unreachable(&describe_error(&e)))
            })
            .await?;
        Ok(manager.clone())
    }

    fn unreachable(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::Transient,
            format!(
                "the shared limits at {} are unreachable ({why})",
                self.inner.shown
            ),
        )
    }

    /// One script call within [`CALL_TIMEOUT`].
    async fn call<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let mut con = self
            .connection()
            .await
            .map_err(|e| e.message().to_string())?;
        match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<T>(&mut con)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe_error(&e)),
            Err(_) => Err(format!("no answer within {} ms", CALL_TIMEOUT.as_millis())),
        }
    }

    /// A decision from Redis under the fallback policy: `Some` with Redis's answer, `None`
    /// when `local` falls back to this process's limits, an error when `wait` gave up.
    async fn decide<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<Option<T>, Error> {
        let deadline = Instant::now() + self.inner.wait;
        loop {
            if self.inner.fail == FailPolicy::Local && self.skipping() {
                return Ok(None);
            }
            match self.call::<T>(invocation).await {
                Ok(v) => {
                    self.answered();
                    return Ok(Some(v));
                }
                Err(why) => {
                    self.failed(&why);
                    match self.inner.fail {
                        FailPolicy::Local => return Ok(None),
                        FailPolicy::Wait if Instant::now() >= deadline => {
                            return Err(self.unreachable(&format!(
                                "{why}; waited {} s, MAIL_LIMITS_FAIL=wait; nothing was sent",
                                self.inner.wait.as_secs_f64()
                            )));
                        }
                        FailPolicy::Wait => tokio::time::sleep(WAIT_RETRY).await,
                    }
                }
            }
        }
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.inner.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn skipping(&self) -> bool {
        self.outage().retry_at.is_some_and(|at| Instant::now() < at)
    }

    fn failed(&self, why: &str) {
        let mut outage = self.outage();
        outage.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
        if outage.since.is_none() {
            outage.since = Some(Instant::now());
            match self.inner.fail {
                FailPolicy::Local => tracing::warn!(
                    limits = %self.inner.shown,
                    error = %why,
                    "SHARED LIMITS UNREACHABLE: falling back to per-process limits \
                     (MAIL_LIMITS_FAIL=local); other processes may exceed the shared cap and \
                     rate until Redis answers again"
                ),
                FailPolicy::Wait => tracing::warn!(
                    limits = %self.inner.shown,
                    error = %why,
                    wait_s = self.inner.wait.as_secs_f64(),
                    "SHARED LIMITS UNREACHABLE: waiting for Redis (MAIL_LIMITS_FAIL=wait); \
                     sends fail with a temporary error past the wait"
                ),
            }
        }
    }

    fn answered(&self) {
        let mut outage = self.outage();
        outage.retry_at = None;
        if let Some(since) = outage.since.take() {
            tracing::warn!(
                limits = %self.inner.shown,
                after_s = since.elapsed().as_secs_f64(),
                "shared limits reachable again: the shared cap and rate hold again"
            );
        }
    }
}

fn describe_error(e: &redis::RedisError) -> String {
    // The kind and the server's or the OS's words; a RedisError never carries the URL.
    e.to_string()
}

/// A unique id for a lease or a waiter: this process and a counter, with a random part so
/// restarted processes with the same pid do not collide.
fn holder_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    format!(
        "{}-{:016x}-{}",
        std::process::id(),
        u64::from_le_bytes(random),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    base + base.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX))
}

#[derive(Debug)]
struct RedisSlots {
    limits: SharedLimits,
    keys: Arc<[String; 4]>,
    limit: usize,
}

impl RedisSlots {
    fn ask<'a>(&'a self, script: &'a Script, id: &str) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.iter() {
            inv.key(key);
        }
        inv.arg(id)
            .arg(self.limit)
            .arg(self.limits.inner.lease.as_millis() as u64)
            .arg(WAITER_TTL.as_millis() as u64);
        inv
    }

    /// Leaves the queue or gives the slot back.
    async fn release(limits: SharedLimits, keys: Arc<[String; 4]>, id: String) {
        let mut inv = limits.inner.release.prepare_invoke();
        inv.key(&keys[0]).key(&keys[1]).key(&keys[2]).arg(&id);
        if let Err(why) = limits.call::<i64>(&inv).await {
            tracing::debug!(error = %why, "could not give a shared slot back; it expires");
        }
    }

    /// [`release`](Self::release) in the background (from a `Drop`).
    fn release_later(limits: SharedLimits, keys: Arc<[String; 4]>, id: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the lease expires by itself.
        };
        handle.spawn(RedisSlots::release(limits, keys, id));
    }

    /// A lease held in Redis (or, `shared: false`, granted locally while Redis was
    /// unreachable), renewed in the background; the renewal also asks for a real slot when
    /// Redis answers again, and tells the connection to close when it cannot have one or
    /// others wait.
    fn lease(&self, id: String) -> ConnectionLease {
        // A fresh slot is kept for at least one renewal period even when others wait, so a
        // connection carries more than one message under contention.
        let close = Arc::new(AtomicBool::new(false));
        let limits = self.limits.clone();
        let keys = self.keys.clone();
        let flag = close.clone();
        let renew_every = (limits.inner.lease / 3).min(Duration::from_secs(1));
        let renewer_id = id.clone();
        let limit = self.limit;
        let renewer = tokio::spawn(async move {
            let slots = RedisSlots {
                limits,
                keys,
                limit,
            };
            loop {
                tokio::time::sleep(renew_every).await;
                let inv = slots.ask(&slots.limits.inner.slots, &renewer_id);
                match slots.limits.call::<(i64, i64)>(&inv).await {
                    Ok((granted, waiters)) => {
                        slots.limits.answered();
                        // Lost (Redis restarted, or never had it): close after this message;
                        // others waiting: give them a turn.
                        flag.store(granted != 1 || waiters > 0, Ordering::Release);
                    }
                    // Redis unreachable: the connection keeps the slot it had.
                    Err(why) => slots.limits.failed(&why),
                }
            }
        });
        let limits = self.limits.clone();
        let keys = self.keys.clone();
        ConnectionLease::new(
            close,
            Box::new(move || {
                renewer.abort();
                Box::pin(RedisSlots::release(limits, keys, id))
            }),
        )
    }
}

#[async_trait]
impl ConnectionSlots for RedisSlots {
    async fn acquire(&self) -> Result<ConnectionLease, Error> {
        let id = holder_id();
        // Leaves the queue if this wait is abandoned (the send was cancelled or failed).
        let mut queued = Some(QueueGuard {
            limits: self.limits.clone(),
            keys: self.keys.clone(),
            id: id.clone(),
        });
        let deadline = Instant::now() + MAX_SLOT_WAIT;
        loop {
            let inv = self.ask(&self.limits.inner.slots, &id);
            match self.limits.decide::<(i64, i64)>(&inv).await? {
                Some((1, _)) => {
                    if let Some(g) = queued.as_mut() {
                        g.id.clear(); // Granted: the lease releases it from now on.
                    }
                    return Ok(self.lease(id));
                }
                Some(_) if Instant::now() >= deadline => {
                    return Err(Error::new(
                        ErrorKind::Transient,
                        format!(
                            "no shared connection slot became free within {} s ({} at most, \
                             shared through {}); nothing was sent",
                            MAX_SLOT_WAIT.as_secs(),
                            self.limit,
                            self.limits.inner.shown
                        ),
                    ));
                }
                Some(_) => tokio::time::sleep(jitter(SLOT_POLL)).await,
                None => {
                    // Fallback: this process's own cap holds; the renewal asks Redis for a real
                    // slot once it answers. The queue entry, if any, expires by itself.
                    if let Some(g) = queued.as_mut() {
                        g.id.clear();
                    }
                    return Ok(self.lease(id));
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} connections shared through {}",
            self.limit, self.limits.inner.shown
        )
    }
}

struct QueueGuard {
    limits: SharedLimits,
    keys: Arc<[String; 4]>,
    id: String,
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            RedisSlots::release_later(
                self.limits.clone(),
                self.keys.clone(),
                std::mem::take(&mut self.id),
            );
        }
    }
}

#[derive(Debug)]
struct RedisRate {
    limits: SharedLimits,
    key: String,
    /// The fallback (`MAIL_LIMITS_FAIL=local`), at the same rate.
    local: LocalRate,
}

#[async_trait]
impl SharedRate for RedisRate {
    async fn admit(&self) -> Result<(), Error> {
        // The same interval and tolerance as the in-process GCRA it falls back to.
        let rate = self.local.rate();
        let mut inv = self.limits.inner.gcra.prepare_invoke();
        inv.key(&self.key)
            .arg(rate.interval().as_micros() as u64)
            .arg(rate.tolerance().as_micros() as u64);
        match self.limits.decide::<i64>(&inv).await? {
            Some(wait_us) => {
                let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            None => self.local.admit().await,
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("shared through {}", self.limits.inner.shown)
    }
}
