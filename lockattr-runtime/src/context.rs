//! What the guarded body can ask about its lock: [`current_lock`] and [`current_fence`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::{LockError, LostReason};
use crate::lease::{Lease, LeaseCore};

tokio::task_local! {
    pub(crate) static CURRENT: CurrentLock;
}

/// The lock the current task runs under (inside [`LockRequest::run`](crate::LockRequest::run) or a
/// `#[distributed_lock]` fn).
#[derive(Clone)]
pub struct CurrentLock {
    core: Arc<LeaseCore>,
    /// The lease, for reentrant acquires in this task (weak: a stashed `CurrentLock` must not keep the
    /// lock from being released).
    pub(crate) lease: Weak<Lease>,
    /// The enclosing lock of this task, if any.
    pub(crate) parent: Option<Arc<CurrentLock>>,
}

impl std::fmt::Debug for CurrentLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentLock")
            .field("key", &self.key())
            .field("fence", &self.core.issued_fence())
            .finish()
    }
}

impl CurrentLock {
    pub(crate) fn new(core: Arc<LeaseCore>, lease: Weak<Lease>) -> Self {
        let parent = CURRENT.try_with(|c| Arc::new(c.clone())).ok();
        CurrentLock {
            core,
            lease,
            parent,
        }
    }

    /// The innermost-first chain of locks this task runs under.
    pub(crate) fn chain(&self) -> impl Iterator<Item = &CurrentLock> {
        std::iter::successors(Some(self), |c| c.parent.as_deref())
    }
    /// The lock key.
    pub fn key(&self) -> &str {
        &self.core.name.key
    }
    /// The fencing token of this grant (strictly increasing per key), issued on the first call when
    /// the grant came without one; see [`LockGuard::fence`](crate::LockGuard::fence).
    pub async fn fence(&self) -> Result<u64, LockError> {
        if let Some(fence) = self.core.issued_fence() {
            return Ok(fence);
        }
        match self.lease.upgrade() {
            Some(lease) => lease.fence().await,
            None => Err(LockError::NotLocked),
        }
    }
    /// Whether the lease is still ours as far as this process knows.
    pub fn is_held(&self) -> bool {
        self.core.lost_reason_pub().is_none() && tokio::time::Instant::now() < self.core.deadline()
    }
    /// How much longer the lease is known to be valid.
    pub fn valid_for(&self) -> Duration {
        self.core
            .deadline()
            .saturating_duration_since(tokio::time::Instant::now())
    }
    /// Resolves when the lease is lost (useful with `on_lost = "finish"`).
    pub async fn lost(&self) -> LostReason {
        self.core.lost().await
    }
}

/// The lock the current task holds through [`LockRequest::run`](crate::LockRequest::run) or a
/// `#[distributed_lock]` fn (the innermost one when nested); `None` outside.
pub fn current_lock() -> Option<CurrentLock> {
    CURRENT.try_with(|c| c.clone()).ok()
}

/// The fencing token of [`current_lock`]: hand it to the storage you write to, and have the storage
/// reject a write whose token is lower than the highest it has accepted.
///
/// The first call of a lock may cost one round trip (see [`LockGuard::fence`](crate::LockGuard::fence));
/// a lock that nobody fences never pays for a fence. Fails with [`LockError::NotLocked`] outside a
/// lock, and with [`LockError::Lost`] when the lock is not ours any more.
pub async fn current_fence() -> Result<u64, LockError> {
    match current_lock() {
        Some(lock) => lock.fence().await,
        None => Err(LockError::NotLocked),
    }
}
