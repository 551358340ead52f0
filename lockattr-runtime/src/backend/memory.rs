//! The in-process backend: the same semantics as Redis (TTL expiry, owner-checked renew and release,
//! strictly increasing fences, release notices) inside one process. Use it for tests of code that uses
//! locks and for single-process programs; it does not coordinate separate processes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{
    wall_clock_micros, Acquired, Backend, BoxFuture, NoticeHub, Released, RenewItem, Renewed,
    Subscription,
};
use crate::error::BackendError;
use crate::key::LockName;

#[derive(Debug)]
struct Held {
    token: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    locks: HashMap<String, Held>,
    fences: HashMap<String, u64>,
}

/// Locks kept in this process's memory. Cheap to create; every [`crate::LockClient::memory`] gets its
/// own, and clones of one client share it.
///
/// Expiry uses Tokio's clock, so tests running with a paused clock (`tokio::time::pause`) can advance
/// through TTLs instantly.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    hub: NoticeHub,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token currently holding `lock_key`, if any and not expired (for tests and diagnostics).
    pub fn holder(&self, lock_key: &str) -> Option<String> {
        let now = Instant::now();
        self.state()
            .locks
            .get(lock_key)
            .filter(|h| h.expires > now)
            .map(|h| h.token.clone())
    }

    /// Forget every lock and fence counter (simulates a restart that lost all data). Fences stay
    /// increasing because missing counters are seeded from the wall clock.
    pub fn clear(&self) {
        let mut s = self.state();
        s.locks.clear();
        s.fences.clear();
        drop(s);
        self.hub.notify_all();
    }

    /// Remove `lock_key` whoever holds it (simulates an operator or a bug deleting the key).
    pub fn force_delete(&self, lock_key: &str) {
        self.state().locks.remove(lock_key);
    }

    /// Put `token` under `lock_key` for `ttl`, whoever holds it (simulates another party overwriting the
    /// key behind the holder's back).
    pub fn force_set(&self, lock_key: &str, token: &str, ttl: Duration) {
        let expires = Instant::now() + ttl;
        self.state().locks.insert(
            lock_key.to_owned(),
            Held {
                token: token.to_owned(),
                expires,
            },
        );
    }

    /// The remaining TTL of `lock_key`, if held.
    pub fn remaining(&self, lock_key: &str) -> Option<Duration> {
        let now = Instant::now();
        self.state()
            .locks
            .get(lock_key)
            .filter(|h| h.expires > now)
            .map(|h| h.expires - now)
    }

    fn acquire_now(&self, name: &LockName, token: &str, ttl: Duration) -> Acquired {
        let now = Instant::now();
        let mut s = self.state();
        if let Some(h) = s.locks.get(&name.lock_key) {
            if h.expires > now {
                return Acquired::Busy {
                    remaining: Some(h.expires - now),
                };
            }
        }
        s.locks.insert(
            name.lock_key.clone(),
            Held {
                token: token.to_owned(),
                expires: now + ttl,
            },
        );
        let last = s.fences.get(&name.fence_key).copied().unwrap_or(0);
        let fence = (last + 1).max(wall_clock_micros());
        s.fences.insert(name.fence_key.clone(), fence);
        Acquired::Granted {
            fence: Some(fence),
            validity: ttl,
        }
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Acquired, BackendError>> {
        let r = self.acquire_now(name, token, ttl);
        Box::pin(async move { Ok(r) })
    }

    fn renew<'a>(
        &'a self,
        batch: &'a [RenewItem<'a>],
    ) -> BoxFuture<'a, Result<Vec<Renewed>, BackendError>> {
        let now = Instant::now();
        let mut s = self.state();
        let out = batch
            .iter()
            .map(|item| match s.locks.get_mut(&item.name.lock_key) {
                Some(h) if h.token == item.token && h.expires > now => {
                    h.expires = now + item.ttl;
                    Renewed::Extended(item.ttl)
                }
                _ => Renewed::NotHeld,
            })
            .collect();
        drop(s);
        Box::pin(async move { Ok(out) })
    }

    fn release<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        keep_for: Option<Duration>,
    ) -> BoxFuture<'a, Result<Released, BackendError>> {
        let now = Instant::now();
        let mut s = self.state();
        let r = match s.locks.get_mut(&name.lock_key) {
            Some(h) if h.token == token && h.expires > now => match keep_for {
                Some(keep) if !keep.is_zero() => {
                    h.expires = now + keep;
                    Released::Kept
                }
                _ => {
                    s.locks.remove(&name.lock_key);
                    Released::Deleted
                }
            },
            _ => Released::NotHeld,
        };
        drop(s);
        if r == Released::Deleted {
            self.hub.notify(&name.channel);
        }
        Box::pin(async move { Ok(r) })
    }

    fn subscribe<'a>(&'a self, name: &'a LockName) -> BoxFuture<'a, Subscription> {
        let (sub, _) = self.hub.register(&name.channel);
        Box::pin(async move { sub })
    }
}
