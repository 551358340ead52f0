//! The storage side of a lock: one trait, [`Backend`], with a Redis single-node implementation
//! ([`RedisBackend`], feature `redis`) and an in-process one ([`MemoryBackend`]).
//!
//! The trait speaks in *leases*: acquire returns how long the grant is valid counted from the moment the
//! request was sent, renew takes a whole batch (the client has one watchdog that renews every due lock in
//! one call), and release is owner-checked. A quorum backend (Redlock) or a Cluster backend fits the same
//! shape: it reports a shorter validity (ttl minus elapsed time and drift) and groups a batch per node or
//! slot internally; nothing above the trait changes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::BackendError;
use crate::key::LockName;

#[cfg(feature = "redis")]
pub mod cluster;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redlock;
#[cfg(feature = "redis")]
pub mod sentinel;
#[cfg(feature = "redis")]
mod wire;

#[cfg(feature = "redis")]
pub use self::cluster::ClusterBackend;
#[cfg(feature = "redis")]
pub use self::redis::{RedisBackend, RedisStats};
#[cfg(feature = "redis")]
pub use self::redlock::RedlockBackend;
#[cfg(feature = "redis")]
pub use self::sentinel::SentinelBackend;
pub use memory::MemoryBackend;

/// A boxed, `Send` future (what [`Backend`] methods return, so the trait stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer to an acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lock is ours.
    Granted {
        /// The fencing token of this grant (strictly greater than every earlier grant's for the same
        /// key), or `None` when the backend issues it later, on request ([`Backend::fence`]): the
        /// single-node Redis backend grants an uncontended lock with a plain `SET NX PX` and issues the
        /// fence only when the holder asks for it.
        fence: Option<u64>,
        /// How long the grant is valid, counted from the moment the request was sent.
        validity: Duration,
    },
    /// Someone else holds it.
    Busy {
        /// How long their lease still runs, if known.
        remaining: Option<Duration>,
    },
}

/// One lease in a renewal batch.
#[derive(Debug, Clone, Copy)]
pub struct RenewItem<'a> {
    /// The lock's names.
    pub name: &'a LockName,
    /// Our owner token.
    pub token: &'a str,
    /// The TTL to set again.
    pub ttl: Duration,
}

/// The answer for one lease of a renewal batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    /// Extended; valid for this long counted from when the batch was sent.
    Extended(Duration),
    /// Not ours any more (deleted, expired, or another token).
    NotHeld,
}

/// The answer to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Deleted (and a release notice published when anyone waits).
    Deleted,
    /// Kept until the minimum hold time ends (`min_hold`), then it expires by itself.
    Kept,
    /// It was not ours any more: nothing was touched.
    NotHeld,
}

impl Released {
    /// The answer coded as the release scripts reply: 1 deleted, 2 kept, anything else not held.
    pub(crate) fn from_code(code: i64) -> Released {
        match code {
            1 => Released::Deleted,
            2 => Released::Kept,
            _ => Released::NotHeld,
        }
    }
}

/// The answer to a hand-over ([`Backend::hand_over`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandedOver {
    /// The lock now holds the next holder's token with its TTL, counted from when the request was
    /// sent; its fence is issued on request ([`Backend::fence`]).
    Granted,
    /// Not handed over: the lock carried the waiter mark (someone else asked for it meanwhile, maybe
    /// another process), so it was released as by [`Backend::release`] and its notice published; or
    /// it was not ours any more ([`Released::NotHeld`]).
    Released(Released),
}

/// The error of a backend's `open` when its first `PING` failed.
pub(crate) fn unreachable_at_open(backend: String, e: BackendError) -> crate::LockError {
    match e.kind {
        crate::error::BackendErrorKind::Unavailable => crate::LockError::Unavailable {
            backend,
            key: None,
            message: e.message,
        },
        // Refused credentials and the like: "check that it is running" would send the user the
        // wrong way; the message names the fix.
        _ => crate::LockError::Backend {
            backend,
            key: None,
            message: e.message,
        },
    }
}

/// A storage for locks. Every operation must be atomic per key and owner-checked: renew and release only
/// ever touch a key that still holds `token`.
pub trait Backend: Send + Sync + 'static {
    /// A short description for errors and logs, e.g. `redis://127.0.0.1:6379` (never a password).
    fn describe(&self) -> String;

    /// Try once to take `name` with `token` for `ttl`; on success also issue the next fencing token.
    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Acquired, BackendError>>;

    /// Extend every lease of the batch that is still ours; one answer per item, in order.
    fn renew<'a>(
        &'a self,
        batch: &'a [RenewItem<'a>],
    ) -> BoxFuture<'a, Result<Vec<Renewed>, BackendError>>;

    /// Delete `name` if it still holds `token` (and wake its waiters, here and in other processes, when
    /// any wait: the Redis backends publish a release notice), or, with `keep_for`, only shorten its TTL
    /// to `keep_for` (minimum hold time).
    fn release<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        keep_for: Option<Duration>,
    ) -> BoxFuture<'a, Result<Released, BackendError>>;

    /// Issue the fencing token of a grant that came without one (`Acquired::Granted { fence: None }`),
    /// if `name` still holds `token`: strictly greater than every fence issued before for the same
    /// key. `Ok(None)` when the lock is not ours any more (nothing is issued then).
    ///
    /// The check and the issue are one atomic step on the server, so a fence issued this way orders
    /// holders exactly as one issued at the grant: every earlier holder's fence was issued while that
    /// holder held the lock, before this grant. Backends that issue every fence at the grant keep this
    /// default, which reports an error.
    fn fence<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        let _ = (name, token);
        Box::pin(async {
            Err(BackendError::other(
                "this backend issues every fence with its grant and was asked for a later one",
            ))
        })
    }

    /// Whether [`hand_over`](Self::hand_over) is supported. A client hands a released lock straight to
    /// its next local waiter only on backends that say so.
    fn hands_over(&self) -> bool {
        false
    }

    /// Release `name`, held with `token`, by giving it to `next` (a waiter of the same client) with
    /// `ttl`, in one atomic step, unless the lock carries the waiter mark: then release it as
    /// [`release`](Self::release) does (notice included), so that waiters elsewhere get their turn.
    /// One round trip instead of a release, a notice and an acquire. Backends that cannot do this keep
    /// the default, which reports an error (the client then releases as usual).
    fn hand_over<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        next: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<HandedOver, BackendError>> {
        let _ = (name, token, next, ttl);
        Box::pin(async { Err(BackendError::other("this backend does not hand locks over")) })
    }

    /// Be told when `name` is released. Never fails: if notices cannot be received, the subscription simply
    /// never fires and waiters fall back to re-checking at the holder's remaining TTL.
    fn subscribe<'a>(&'a self, name: &'a LockName) -> BoxFuture<'a, Subscription>;
}

/// A registration for release notices of one lock (see [`Backend::subscribe`]). Dropping it unregisters.
pub struct Subscription {
    notify: Arc<Notify>,
    _registration: Option<Registration>,
}

impl Subscription {
    /// A subscription that never fires (waiters re-check on their fallback timer).
    pub fn inert() -> Subscription {
        Subscription {
            notify: Arc::new(Notify::new()),
            _registration: None,
        }
    }
    /// The notifier that fires (one waiter at a time) when a release notice arrives.
    pub fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// Keeps one [`Notify`] per watched channel with a count of local waiters; shared by backends.
#[derive(Debug, Default, Clone)]
pub struct NoticeHub {
    inner: Arc<Mutex<Channels>>,
    /// Local waiters registered on any channel: lets [`NoticeHub::is_watched`], asked on every release,
    /// answer without the lock when nobody waits.
    waiters: Arc<AtomicUsize>,
}

/// Watched channel -> (its notifier, number of local waiters).
type Channels = HashMap<String, (Arc<Notify>, usize)>;

struct Registration {
    hub: NoticeHub,
    channel: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.hub.lock();
        if let Some(entry) = map.get_mut(&self.channel) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.channel);
            }
        }
        self.hub.waiters.fetch_sub(1, Ordering::Release);
    }
}

impl NoticeHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a local waiter on `channel`; `true` in the second field when it is the first one.
    pub fn register(&self, channel: &str) -> (Subscription, bool) {
        let mut map = self.lock();
        let entry = map
            .entry(channel.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        self.waiters.fetch_add(1, Ordering::Release);
        let first = entry.1 == 1;
        let notify = entry.0.clone();
        drop(map);
        let reg = Registration {
            hub: self.clone(),
            channel: channel.to_owned(),
        };
        (
            Subscription {
                notify,
                _registration: Some(reg),
            },
            first,
        )
    }

    /// A release notice for `channel` arrived: wake one local waiter (it retries; if it loses the race to
    /// another process it waits again, so one notice never causes a stampede).
    pub fn notify(&self, channel: &str) {
        if let Some((n, _)) = self.lock().get(channel) {
            n.notify_one();
        }
    }

    /// Wake every waiter of every channel (after a reconnect, when notices may have been missed).
    pub fn notify_all(&self) {
        for (n, _) in self.lock().values() {
            n.notify_waiters();
        }
    }

    /// Whether any local waiter watches `channel`.
    pub fn is_watched(&self, channel: &str) -> bool {
        self.waiters.load(Ordering::Acquire) > 0 && self.lock().contains_key(channel)
    }

    /// All watched channels.
    pub fn channels(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// A fence value from the wall clock in microseconds since the Unix epoch, used to seed a missing counter
/// so fences keep increasing after a backend lost its data (assumes the clock does not run backwards).
pub(crate) fn wall_clock_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
