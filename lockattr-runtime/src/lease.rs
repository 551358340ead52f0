//! Taking, holding and giving back a lock: [`LockRequest`], [`LockGuard`], and running a future under a
//! lock ([`LockRequest::run`], [`LockRequest::run_result`]).

use std::collections::VecDeque;
use std::future::Future;
use std::hash::Hasher as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{Acquired, Backend, HandedOver, Released, Subscription};
use crate::client::{check_ttl, LockClient, MAX_TTL, MAX_WAIT};
use crate::context::{CurrentLock, CURRENT};
use crate::error::{BackendErrorKind, LockError, LostReason};
use crate::key::{validate_key, LockName};
use crate::watchdog::{FastHasher, FastMap};

static NEXT_LEASE_ID: AtomicU64 = AtomicU64::new(1);

/// An owner token: 128 random bits as 32 lower-case hex digits, kept inline (no allocation).
#[derive(Clone, Copy)]
pub(crate) struct Token([u8; 32]);

impl Token {
    fn random() -> Token {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v: u128 = rand::random();
        let mut buf = [0u8; 32];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
        }
        Token(buf)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

const NOT_LOST: u8 = 0;

fn encode_lost(r: LostReason) -> u8 {
    match r {
        LostReason::NotOwner => 1,
        LostReason::DeadlineExpired => 2,
        LostReason::TtlElapsed => 3,
    }
}

fn decode_lost(v: u8) -> Option<LostReason> {
    match v {
        1 => Some(LostReason::NotOwner),
        2 => Some(LostReason::DeadlineExpired),
        3 => Some(LostReason::TtlElapsed),
        _ => None,
    }
}

fn key_hash(lock_key: &str) -> u64 {
    let mut h = FastHasher::default();
    h.write(lock_key.as_bytes());
    h.finish()
}

/// The leases one task holds under one key hash (almost always one).
enum HeldSlot {
    One(Weak<Lease>),
    Many(Vec<Weak<Lease>>),
}

/// The leases held per (task, hash of the lock key), for reentrancy, and how many are held per hash of
/// the lock key (so that a waiter can tell that a task of its own client holds the lock).
#[derive(Default)]
struct HeldMap {
    by_task: FastMap<(tokio::task::Id, u64), HeldSlot>,
    by_key: FastMap<u64, u32>,
}

impl HeldMap {
    /// One lease fewer held under `hash`.
    fn uncount(&mut self, hash: u64) {
        if let Some(n) = self.by_key.get_mut(&hash) {
            *n -= 1;
            if *n == 0 {
                self.by_key.remove(&hash);
            }
        }
    }
}

/// Per-client bookkeeping of what this process does with its locks: the leases each task holds (for
/// reentrancy) and the tasks that wait for each key, in order (so that a local holder that lets go and
/// asks again queues behind the local waiters instead of taking the lock straight back, and so that a
/// release can hand the lock straight to the longest waiter, see [`Turn`]).
#[derive(Default)]
pub(crate) struct Local {
    held: Mutex<HeldMap>,
    waiting: Mutex<FastMap<String, VecDeque<Arc<Turn>>>>,
    any_waiting: AtomicUsize,
}

/// A local waiter's place in its key's queue. A lease of the same client that releases the lock hands
/// it straight to the first waiter whose turn is [`TurnState::Waiting`] ([`Backend::hand_over`]: one
/// round trip instead of a release, a notice and an acquire), unless someone else marked the lock.
pub(crate) struct Turn {
    /// The waiter's owner token and TTL: what the hand-over sets.
    token: Token,
    ttl: Duration,
    state: Mutex<TurnState>,
    /// Wakes the waiter when a releaser settled its turn.
    notify: Notify,
}

/// Where a [`Turn`] stands. Only the waiter moves it out of `Waiting` into `Trying` and back; only a
/// releaser moves it from `Waiting` into `Taken`, and out of `Taken`; a local holder's loss moves the
/// longest waiting turn from `Waiting` into `Missed` ([`Local::lost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TurnState {
    /// Waiting: a releaser may take it.
    Waiting,
    /// The waiter sends an acquire of its own (a notice or its timer woke it): releasers pass it by,
    /// so the lock never gets the waiter's token behind its back.
    Trying,
    /// A releaser is handing the lock over: the waiter waits for the outcome.
    Taken,
    /// Handed over: the lock holds the waiter's token, valid for its TTL counted from this instant
    /// (when the hand-over was sent).
    Granted(Instant),
    /// Not handed over because the lock was no longer the releaser's (it expired; maybe it is free),
    /// or the lease of the local holder it queued behind was lost: the waiter tries itself.
    Missed,
    /// The releaser could not learn the outcome (an error, or its future was dropped): the lock may
    /// hold the waiter's token, so the waiter gives it back before it tries.
    Unknown,
    /// The waiter is gone: a grant that arrives now is the releaser's to give back.
    Gone,
}

/// What a waiter does next (see [`Turn::begin_try`]).
enum Next {
    /// Send its own acquire.
    Try,
    /// Send its own acquire, after giving back whatever the lock may hold of its token.
    CleanThenTry,
    /// A releaser is handing the lock over: wait for the outcome.
    Wait,
    /// The lock was handed over at this instant.
    Granted(Instant),
}

impl Turn {
    fn state(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The waiter is about to act: claim the turn for an acquire of its own, or learn that a releaser
    /// has it.
    fn begin_try(&self) -> Next {
        let mut st = self.state();
        match *st {
            TurnState::Taken => Next::Wait,
            TurnState::Granted(sent) => {
                // The waiter holds the lock now (or gives it back and tries again): releasers pass
                // it by, and its leaving gives nothing back.
                *st = TurnState::Trying;
                Next::Granted(sent)
            }
            TurnState::Unknown => {
                *st = TurnState::Trying;
                Next::CleanThenTry
            }
            _ => {
                *st = TurnState::Trying;
                Next::Try
            }
        }
    }

    /// The waiter's own acquire found the lock busy: it waits again, in its place.
    fn end_try(&self) {
        let mut st = self.state();
        if *st == TurnState::Trying {
            *st = TurnState::Waiting;
        }
    }

    /// Resolves when a releaser has settled this turn (it is neither waiting nor being tried).
    async fn settled(&self) {
        loop {
            self.notify.notified().await;
            if !matches!(*self.state(), TurnState::Waiting | TurnState::Trying) {
                return;
            }
        }
    }

    /// Resolves when the releaser that took this turn has settled it.
    async fn handed(&self) {
        loop {
            self.notify.notified().await;
            if *self.state() != TurnState::Taken {
                return;
            }
        }
    }

    /// A releaser settles the turn it took. `false` when the waiter is gone (then a grant is the
    /// releaser's to give back).
    fn settle(&self, to: TurnState) -> bool {
        let mut st = self.state();
        if *st != TurnState::Taken {
            return false;
        }
        *st = to;
        drop(st);
        self.notify.notify_one();
        true
    }
}

/// A turn a releaser took ([`Local::take_turn`]). Dropped unsettled (the releaser's future was
/// dropped mid-call), it tells the waiter the outcome is unknown; if the waiter is gone too, the lock
/// may hold its token with nobody to give it back, so it is released in the background.
struct TakenTurn<'a> {
    turn: Option<Arc<Turn>>,
    backend: &'a Arc<dyn Backend>,
    name: &'a LockName,
}

impl TakenTurn<'_> {
    /// The token and TTL to hand the lock over with.
    fn target(&self) -> (Token, Duration) {
        let turn = self.turn.as_ref().expect("not settled yet");
        (turn.token, turn.ttl)
    }

    /// Settle the turn. If the waiter is gone while the lock holds (or may hold) its token, the lock
    /// is given back before this returns.
    async fn settle(mut self, to: TurnState) {
        let turn = self.turn.take().expect("settled once");
        if Self::orphaned(&turn, to) {
            let _ = self
                .backend
                .release(self.name, turn.token.as_str(), None)
                .await;
        }
    }

    /// Settle `turn`; `true` when its waiter is gone and the lock holds, or may hold, its token.
    fn orphaned(turn: &Turn, to: TurnState) -> bool {
        !turn.settle(to) && matches!(to, TurnState::Granted(_) | TurnState::Unknown)
    }
}

impl Drop for TakenTurn<'_> {
    fn drop(&mut self) {
        let Some(turn) = self.turn.take() else { return };
        if !Self::orphaned(&turn, TurnState::Unknown) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (backend, name) = (self.backend.clone(), self.name.clone());
            drop(rt.spawn(async move {
                let _ = backend.release(&name, turn.token.as_str(), None).await;
            }));
        }
    }
}

impl Local {
    fn held(&self) -> std::sync::MutexGuard<'_, HeldMap> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, FastMap<String, VecDeque<Arc<Turn>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live lease `task` holds on `lock_key`, if any.
    fn find_held(&self, task: tokio::task::Id, lock_key: &str) -> Option<Arc<Lease>> {
        let held = self.held();
        let slot = held.by_task.get(&(task, key_hash(lock_key)))?;
        let matches = |w: &Weak<Lease>| w.upgrade().filter(|l| l.core.name.lock_key == lock_key);
        match slot {
            HeldSlot::One(w) => matches(w),
            HeldSlot::Many(v) => v.iter().find_map(matches),
        }
    }

    /// Count a lease of `hash` held, and for reentrancy note it under `task` if it ran in one.
    fn insert_held(&self, task: Option<tokio::task::Id>, hash: u64, lease: Weak<Lease>) {
        let mut guard = self.held();
        *guard.by_key.entry(hash).or_default() += 1;
        let Some(task) = task else { return };
        let slot = (task, hash);
        let held = &mut guard.by_task;
        match held.get_mut(&slot) {
            None => {
                held.insert(slot, HeldSlot::One(lease));
            }
            Some(HeldSlot::One(w)) if w.strong_count() == 0 => *w = lease,
            Some(HeldSlot::One(w)) => {
                let first = w.clone();
                held.insert(slot, HeldSlot::Many(vec![first, lease]));
            }
            Some(HeldSlot::Many(v)) => {
                v.retain(|w| w.strong_count() > 0);
                v.push(lease);
            }
        }
    }

    /// Forget the caller's lease of `hash` (dead by now: released or dropped), with the other dead
    /// leases of its task's slot; `counted`: it is still counted as held under its key.
    fn remove_dead(&self, task: Option<tokio::task::Id>, hash: u64, counted: bool) {
        let mut guard = self.held();
        if counted {
            guard.uncount(hash);
        }
        let Some(task) = task else { return };
        let slot = (task, hash);
        let held = &mut guard.by_task;
        let empty = match held.get_mut(&slot) {
            None => return,
            Some(HeldSlot::One(w)) => w.strong_count() == 0,
            Some(HeldSlot::Many(v)) => {
                v.retain(|w| w.strong_count() > 0);
                v.is_empty()
            }
        };
        if empty {
            held.remove(&slot);
        }
    }

    /// Whether a task of this client holds `lock_key` (by the key's 64-bit hash: a collision would
    /// only make a waiter queue instead of trying at once, until its fallback timer).
    fn holds(&self, lock_key: &str) -> bool {
        self.held().by_key.contains_key(&key_hash(lock_key))
    }

    /// Whether the waiter that queued last for `lock_key` is behind someone of this client: a task that
    /// holds the lock (with a lease not lost), or another waiter.
    fn queued_behind(&self, lock_key: &str) -> bool {
        self.holds(lock_key) || self.waiting().get(lock_key).is_some_and(|q| q.len() > 1)
    }

    /// Whether some task of this client waits for `lock_key`.
    fn has_waiters(&self, lock_key: &str) -> bool {
        self.any_waiting.load(Ordering::Acquire) > 0 && self.waiting().contains_key(lock_key)
    }

    /// Queue the calling task as a waiter for `name` (with the token and TTL a hand-over would give
    /// it) until the returned value is dropped.
    fn wait_for<'a>(
        &'a self,
        backend: &'a Arc<dyn Backend>,
        name: &'a LockName,
        token: Token,
        ttl: Duration,
    ) -> Waiting<'a> {
        let turn = Arc::new(Turn {
            token,
            ttl,
            state: Mutex::new(TurnState::Waiting),
            notify: Notify::new(),
        });
        self.waiting()
            .entry(name.lock_key.clone())
            .or_default()
            .push_back(turn.clone());
        self.any_waiting.fetch_add(1, Ordering::AcqRel);
        Waiting {
            local: self,
            backend,
            name,
            turn,
        }
    }

    /// Take the turn of the longest waiter for `name` that waits (not one that is trying itself), to
    /// hand it the lock.
    fn take_turn<'a>(
        &self,
        backend: &'a Arc<dyn Backend>,
        name: &'a LockName,
    ) -> Option<TakenTurn<'a>> {
        let turn = self.claim_longest_waiting(&name.lock_key, TurnState::Taken)?;
        Some(TakenTurn {
            turn: Some(turn),
            backend,
            name,
        })
    }

    /// Move the longest waiter for `lock_key` that waits (not one that is trying itself, or whose turn
    /// a releaser has) from `Waiting` to `to`, and return its turn.
    fn claim_longest_waiting(&self, lock_key: &str, to: TurnState) -> Option<Arc<Turn>> {
        if self.any_waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let w = self.waiting();
        let turn = w.get(lock_key)?.iter().find(|t| {
            let mut st = t.state();
            let waiting = *st == TurnState::Waiting;
            if waiting {
                *st = to;
            }
            waiting
        })?;
        Some(turn.clone())
    }

    /// Mark `core`'s lease lost (see [`LeaseCore::mark_lost`]); the first time, tell the waiters
    /// (see [`Local::lost`]). Every loss goes through here.
    pub(crate) fn mark_lost(&self, core: &LeaseCore, reason: LostReason) {
        if core.mark_lost(reason) {
            self.lost(core);
        }
    }

    /// A lease of this client was lost while its task may still run (with [`OnLost::Finish`], or
    /// until its body sees the loss): it no longer counts as held, so new requests try at once, and
    /// the longest waiter queued behind it looks at the lock itself (it may be free: it expired, or
    /// was deleted) instead of waiting for the lost holder's release or its own fallback.
    fn lost(&self, core: &LeaseCore) {
        if core.counted.swap(false, Ordering::AcqRel) {
            self.held().uncount(key_hash(&core.name.lock_key));
        }
        if let Some(turn) = self.claim_longest_waiting(&core.name.lock_key, TurnState::Missed) {
            turn.notify.notify_one();
        }
    }
}

/// One task waiting for a key (see [`Local::wait_for`]). Dropped, it leaves the queue; if the lock was
/// handed to it meanwhile (or may have been), it gives the lock back in the background.
struct Waiting<'a> {
    local: &'a Local,
    backend: &'a Arc<dyn Backend>,
    name: &'a LockName,
    turn: Arc<Turn>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let was = std::mem::replace(&mut *self.turn.state(), TurnState::Gone);
        let mut w = self.local.waiting();
        if let Some(q) = w.get_mut(&self.name.lock_key) {
            q.retain(|t| !Arc::ptr_eq(t, &self.turn));
            if q.is_empty() {
                w.remove(&self.name.lock_key);
            }
        }
        drop(w);
        self.local.any_waiting.fetch_sub(1, Ordering::AcqRel);
        if matches!(was, TurnState::Granted(_) | TurnState::Unknown) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (backend, name, token) =
                    (self.backend.clone(), self.name.clone(), self.turn.token);
                drop(rt.spawn(async move {
                    let _ = backend.release(&name, token.as_str(), None).await;
                }));
            }
        }
    }
}

/// Give back the lock `core` holds: hand it straight to the longest local waiter when there is one and
/// the backend can ([`Backend::hand_over`]), else release it ([`Backend::release`]).
async fn give_back(
    local: &Local,
    backend: &Arc<dyn Backend>,
    core: &LeaseCore,
    keep_for: Option<Duration>,
) -> Result<Released, crate::error::BackendError> {
    let name = &core.name;
    // A lost lease hands nothing over: its loss already told the longest waiter to look for itself
    // (`Local::lost`), and a hand-over would only find the lock not ours and send the next one too.
    let taken = (backend.hands_over() && core.lost_reason().is_none())
        .then(|| local.take_turn(backend, name))
        .flatten();
    let Some(taken) = taken else {
        return backend.release(name, core.token.as_str(), keep_for).await;
    };
    if keep_for.is_some() {
        // Kept for its minimum hold time: it expires by itself, without a notice. The longest local
        // waiter looks at it now and learns how long it remains.
        let r = backend.release(name, core.token.as_str(), keep_for).await;
        taken.settle(TurnState::Missed).await;
        return r;
    }
    let (next, ttl) = taken.target();
    let sent = Instant::now();
    match backend
        .hand_over(name, core.token.as_str(), next.as_str(), ttl)
        .await
    {
        Ok(HandedOver::Granted) => {
            // (Given back at once if the waiter left while the lock was on its way.)
            taken.settle(TurnState::Granted(sent)).await;
            tracing::trace!(key = %name.key, "lockattr: handed over to a local waiter");
            Ok(Released::Deleted)
        }
        Ok(HandedOver::Released(Released::Deleted)) => {
            // Someone else marked the lock: it was released with a notice, which wakes one local
            // waiter to compete with them. This one keeps its place (were it to try as well, one of
            // the two would find the lock busy and mark it again, and the next release could not
            // hand over either).
            taken.settle(TurnState::Waiting).await;
            Ok(Released::Deleted)
        }
        Ok(HandedOver::Released(r)) => {
            // Not ours any more (expired, maybe free): the waiter looks for itself.
            taken.settle(TurnState::Missed).await;
            Ok(r)
        }
        Err(e) => {
            // The hand-over may or may not have run: the waiter gives back its token before it
            // tries (or, gone, we do), and this lease releases its own as usual.
            taken.settle(TurnState::Unknown).await;
            tracing::debug!(key = %name.key, error = %e, "lockattr: hand-over failed; releasing");
            backend.release(name, core.token.as_str(), None).await
        }
    }
}

/// What happens to the guarded future when the lock is lost while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLost {
    /// Drop (cancel) the future at once and return [`LockError::Lost`]. The default.
    #[default]
    Cancel,
    /// Let the future run to completion, then return [`LockError::Lost`] instead of its output. The body
    /// can watch for the loss itself with [`crate::current_lock`].
    Finish,
}

/// The part of a lease the watchdog shares: names, token, TTL, deadline, loss signal.
pub(crate) struct LeaseCore {
    pub(crate) id: u64,
    pub(crate) name: LockName,
    pub(crate) token: Token,
    /// The fencing token, `0` until issued (with the grant, or on the first [`Lease::fence`]).
    fence: AtomicU64,
    pub(crate) ttl: Duration,
    pub(crate) auto_renew: bool,
    pub(crate) margin: Duration,
    /// Send time of the acquire request.
    pub(crate) acquired_at: Instant,
    /// Deadline as nanoseconds after `acquired_at`.
    deadline_ns: AtomicU64,
    /// Why the lease was lost (`NOT_LOST` while it is not); set once.
    lost: AtomicU8,
    /// Wakes [`LeaseCore::lost`] waiters when `lost` is set.
    lost_notify: Notify,
    released: AtomicBool,
    /// Whether [`Local`] counts this lease as held under its key ([`Local::holds`]): cleared once, by
    /// the loss or the release, whichever comes first.
    counted: AtomicBool,
}

impl LeaseCore {
    /// The fencing token, if it has been issued.
    pub(crate) fn issued_fence(&self) -> Option<u64> {
        Some(self.fence.load(Ordering::Acquire)).filter(|&f| f > 0)
    }

    /// Keep `fence` unless another call issued one first; returns the one kept (both were issued while
    /// the lock was ours, so either orders this holder correctly).
    fn keep_fence(&self, fence: u64) -> u64 {
        match self
            .fence
            .compare_exchange(0, fence, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => fence,
            Err(first) => first,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.acquired_at + Duration::from_nanos(self.deadline_ns.load(Ordering::Acquire))
    }

    /// A confirmed renewal (or grant) makes the lease valid until `valid_until`; the deadline is that
    /// minus the safety margin. Deadlines only move forward.
    pub(crate) fn extend(&self, valid_until: Instant) {
        let d = valid_until
            .saturating_duration_since(self.acquired_at)
            .saturating_sub(self.margin);
        self.deadline_ns
            .fetch_max(d.as_nanos() as u64, Ordering::AcqRel);
    }

    pub(crate) fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Record the loss; `true` the first time (callers go through [`Local::mark_lost`], which then
    /// tells the client's waiters).
    fn mark_lost(&self, reason: LostReason) -> bool {
        if self.released.load(Ordering::Acquire) {
            return false;
        }
        let first = self
            .lost
            .compare_exchange(
                NOT_LOST,
                encode_lost(reason),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if first {
            self.lost_notify.notify_waiters();
            tracing::warn!(key = %self.name.key, fence = ?self.issued_fence(), %reason, "lockattr: lock lost");
        }
        first
    }

    fn lost_reason(&self) -> Option<LostReason> {
        decode_lost(self.lost.load(Ordering::Acquire))
    }

    pub(crate) fn lost_reason_pub(&self) -> Option<LostReason> {
        self.lost_reason()
    }

    fn is_held(&self) -> bool {
        self.lost_reason().is_none()
            && !self.released.load(Ordering::Acquire)
            && Instant::now() < self.deadline()
    }

    /// Resolves when the lease is lost (never, if it is released first).
    pub(crate) async fn lost(&self) -> LostReason {
        loop {
            let notified = self.lost_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.lost_reason() {
                return r;
            }
            notified.await;
        }
    }

    fn lost_error(&self, reason: LostReason, cancelled: bool) -> LockError {
        LockError::Lost {
            key: self.name.key.clone(),
            fence: self.issued_fence(),
            reason,
            cancelled,
        }
    }
}

/// A held lease, shared by the outer guard and reentrant guards of the same task. Dropping the last
/// reference stops renewal and releases the lock in a spawned task.
pub(crate) struct Lease {
    client: LockClient,
    pub(crate) core: Arc<LeaseCore>,
    min_hold: Duration,
    rt: tokio::runtime::Handle,
    /// The task that took this lease (if it ran in one), under which [`Local`] knows it for
    /// reentrancy.
    task: Option<tokio::task::Id>,
    /// The hash of the lock key, under which [`Local`] counts the leases held.
    key_hash: u64,
    /// Where the client's watchdog keeps this lease.
    watch: u64,
}

impl Lease {
    /// The fence of this lease, issued first (owner-checked, see [`Backend::fence`]) when the grant
    /// came without one.
    pub(crate) async fn fence(&self) -> Result<u64, LockError> {
        let core = &self.core;
        if let Some(fence) = core.issued_fence() {
            return Ok(fence);
        }
        if let Some(reason) = core.lost_reason() {
            return Err(core.lost_error(reason, false));
        }
        if core.released.load(Ordering::Acquire) {
            return Err(LockError::NotLocked);
        }
        let backend = &self.client.inner.backend;
        match backend.fence(&core.name, core.token.as_str()).await {
            Ok(Some(fence)) => Ok(core.keep_fence(fence)),
            Ok(None) => {
                self.client.inner.held.mark_lost(core, LostReason::NotOwner);
                Err(core.lost_error(LostReason::NotOwner, false))
            }
            Err(e) => {
                Err(e.into_lock_error(&backend.describe(), &core.name.key, &core.name.lock_key))
            }
        }
    }

    fn keep_for(&self) -> Option<Duration> {
        if self.min_hold.is_zero() {
            return None;
        }
        let held = self.core.acquired_at.elapsed();
        (self.min_hold > held).then(|| self.min_hold - held)
    }

    /// Stop renewal and forget the reentrancy slot. Idempotent: only the first call does anything.
    fn detach(&self) {
        if self.core.released.swap(true, Ordering::AcqRel) {
            return;
        }
        self.client
            .inner
            .watchdog
            .unregister(self.watch, self.core.id);
        let counted = self.core.counted.swap(false, Ordering::AcqRel);
        self.client
            .inner
            .held
            .remove_dead(self.task, self.key_hash, counted);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let already = self.core.released.load(Ordering::Acquire);
        self.detach();
        if already || self.core.lost_reason() == Some(LostReason::NotOwner) {
            return;
        }
        // Dropped without an explicit release (early return, `?`, panic, cancelled future): release in
        // the background. Never block in Drop.
        let client = self.client.clone();
        let core = self.core.clone();
        let keep_for = self.keep_for();
        drop(self.rt.spawn(async move {
            let (name, fence) = (&core.name, core.issued_fence());
            let inner = &client.inner;
            match give_back(&inner.held, &inner.backend, &core, keep_for).await {
                Ok(r) => tracing::debug!(key = %name.key, ?fence, outcome = ?r, "lockattr: released on drop"),
                Err(e) => tracing::warn!(key = %name.key, ?fence, error = %e, "lockattr: release on drop failed; the key expires at its TTL"),
            }
        }));
    }
}

/// A held lock. Dropping it releases the lock in the background; [`LockGuard::release`] releases it and
/// reports the outcome.
pub struct LockGuard {
    lease: Arc<Lease>,
    reentrant: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key())
            .field("fence", &self.lease.core.issued_fence())
            .field("held", &self.is_held())
            .field("reentrant", &self.reentrant)
            .finish()
    }
}

impl LockGuard {
    /// The lock key (as given, without the client prefix).
    pub fn key(&self) -> &str {
        &self.lease.core.name.key
    }

    /// The backend key where the lock lives, e.g. `lockattr:{order:42}`.
    pub fn backend_key(&self) -> &str {
        &self.lease.core.name.lock_key
    }

    /// The fencing token: strictly greater than every earlier holder's for this key. Pass it to the
    /// resource you write to and have it reject writes with a token lower than the highest it has seen.
    ///
    /// The single-node Redis backend (and Sentinel) grants an uncontended lock without a fence, so that
    /// a lock nobody fences costs no more than a plain `SET NX PX`; the first call then issues it in
    /// one round trip, checked on the server against the lock's owner. Later calls, and grants that
    /// carried a fence (a single node's grants after a wait, Cluster, Redlock, memory), answer at once.
    ///
    /// Returns [`LockError::Lost`] when the lock is not ours any more (no fence is issued then, and
    /// the guard reports the loss), and [`LockError::Unavailable`] when the backend cannot be reached.
    pub async fn fence(&self) -> Result<u64, LockError> {
        self.lease.fence().await
    }

    /// True while the lease is ours as far as this process can know: not reported lost, not released,
    /// and the local deadline (last confirmed renewal + ttl - margin) not passed.
    pub fn is_held(&self) -> bool {
        self.lease.core.is_held()
    }

    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.lease.core.lost_reason()
    }

    /// Resolves when the lease is lost (a renewal said "not yours", or the deadline passed). Never
    /// resolves while the lock stays held.
    pub async fn lost(&self) -> LostReason {
        self.lease.core.lost().await
    }

    /// How much longer the lease is known to be valid (zero once the deadline passed).
    pub fn valid_for(&self) -> Duration {
        self.lease
            .core
            .deadline()
            .saturating_duration_since(Instant::now())
    }

    /// True when this guard re-entered a lock its task already held (it shares the outer lease).
    pub fn is_reentrant(&self) -> bool {
        self.reentrant
    }

    /// Release the lock: stop renewal, then delete the key if (and only if) it still holds our token. A
    /// reentrant guard only drops its share; the lock is released when the outermost guard ends.
    ///
    /// Returns [`LockError::Lost`] if the lock had already been lost (nothing is deleted then), and
    /// [`LockError::Unavailable`] if the backend could not be reached (the key expires at its TTL).
    pub async fn release(self) -> Result<(), LockError> {
        let LockGuard { lease, .. } = self;
        let lease = match Arc::try_unwrap(lease) {
            Ok(lease) => lease,
            Err(_shared) => return Ok(()), // an outer holder keeps it
        };
        if let Some(reason) = lease.core.lost_reason() {
            lease.detach();
            return Err(lease.core.lost_error(reason, false));
        }
        lease.detach();
        let core = &lease.core;
        let inner = &lease.client.inner;
        let backend = &inner.backend;
        match give_back(&inner.held, backend, core, lease.keep_for()).await {
            Ok(Released::Deleted) => {
                tracing::debug!(key = %core.name.key, fence = ?core.issued_fence(), "lockattr: released");
                Ok(())
            }
            Ok(Released::Kept) => {
                tracing::debug!(key = %core.name.key, fence = ?core.issued_fence(), "lockattr: kept for its minimum hold time");
                Ok(())
            }
            Ok(Released::NotHeld) => Err(core.lost_error(LostReason::NotOwner, false)),
            Err(e) => {
                Err(e.into_lock_error(&backend.describe(), &core.name.key, &core.name.lock_key))
            }
        }
    }

    pub(crate) fn core(&self) -> &Arc<LeaseCore> {
        &self.lease.core
    }
}

/// A lock to take: key and options. Made by [`LockClient::lock`].
#[derive(Debug, Clone)]
#[must_use = "a lock request does nothing until `.acquire().await` or `.run(..).await`"]
pub struct LockRequest {
    client: LockClient,
    key: String,
    ttl: Option<Duration>,
    auto_renew: bool,
    wait: Duration,
    on_lost: OnLost,
    min_hold: Duration,
    /// Why the request could not be built (the attribute's client could not be resolved): returned
    /// by the first step of [`acquire`](Self::acquire), so that a failed request runs the same code
    /// as a good one.
    failed: Option<Box<LockError>>,
}

impl LockRequest {
    pub(crate) fn new(client: LockClient, key: String) -> Self {
        LockRequest {
            client,
            key,
            ttl: None,
            auto_renew: false,
            wait: Duration::ZERO,
            on_lost: OnLost::Cancel,
            min_hold: Duration::ZERO,
            failed: None,
        }
    }

    /// A request that fails with `error` when run (no lock is taken).
    pub(crate) fn failed(error: LockError) -> Self {
        let mut req = LockRequest::new(LockClient::memory(), String::new());
        req.failed = Some(Box::new(error));
        req
    }

    /// Lease length (default: the client's default TTL, 30 s). Between 100 ms and 7 days.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Keep the lock alive while held: the client's watchdog renews it every ttl/3.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }
    /// How long to wait for a busy lock (default zero: fail at once with [`LockError::Busy`]).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
    /// What [`run`](Self::run) does with the future when the lock is lost.
    pub fn on_lost(mut self, on_lost: OnLost) -> Self {
        self.on_lost = on_lost;
        self
    }
    /// Keep the lock at least this long after it was taken, even if released earlier (ShedLock's
    /// `lockAtLeastFor`): on release the key's TTL is cut to the remaining time instead of deleting it.
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = min_hold;
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn validate(&self) -> Result<Duration, LockError> {
        validate_key(&self.key)?;
        let ttl = self.ttl.unwrap_or(self.client.inner.config.default_ttl);
        check_ttl(ttl)?;
        if self.wait > MAX_WAIT {
            return Err(LockError::InvalidOption(format!(
                "wait {:?} is longer than a day; use a bounded wait such as 30s",
                self.wait
            )));
        }
        if self.min_hold > MAX_TTL {
            return Err(LockError::InvalidOption(format!(
                "min_hold {:?} is longer than 7 days",
                self.min_hold
            )));
        }
        Ok(ttl)
    }

    /// Take the lock, waiting up to the configured `wait` for a busy one.
    pub async fn acquire(self) -> Result<LockGuard, LockError> {
        use tracing::Instrument as _;
        let span = tracing::debug_span!("lockattr.acquire", key = %self.key, wait_ms = self.wait.as_millis() as u64);
        if span.is_disabled() {
            // No subscriber wants it: skip entering and leaving the span on every poll.
            return self.acquire_inner().await;
        }
        self.acquire_inner().instrument(span).await
    }

    async fn acquire_inner(mut self) -> Result<LockGuard, LockError> {
        if let Some(error) = self.failed.take() {
            return Err(*error);
        }
        let ttl = self.validate()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| LockError::NoRuntime)?;
        let client = self.client.clone();
        let inner = &client.inner;
        let name = LockName::from_key(&inner.config.prefix, std::mem::take(&mut self.key));
        let task = tokio::task::try_id();

        // Reentrancy: this task already runs under this key through this client (inside `run`/the
        // attribute, found through the task-local chain), or holds a guard for it (by task id).
        let enclosing = CURRENT
            .try_with(|c| {
                c.chain().find_map(|c| {
                    c.lease.upgrade().filter(|l| {
                        Arc::ptr_eq(&l.client.inner, inner) && l.core.name.lock_key == name.lock_key
                    })
                })
            })
            .ok()
            .flatten();
        if let Some(lease) = enclosing {
            if lease.core.is_held() {
                tracing::trace!(key = %name.key, "lockattr: reentrant acquire");
                return Ok(LockGuard {
                    lease,
                    reentrant: true,
                });
            }
        }
        if let Some(task) = task {
            if let Some(lease) = inner.held.find_held(task, &name.lock_key) {
                if lease.core.is_held() {
                    tracing::trace!(key = %name.key, "lockattr: reentrant acquire");
                    return Ok(LockGuard {
                        lease,
                        reentrant: true,
                    });
                }
            }
        }

        let backend: &Arc<dyn Backend> = &inner.backend;
        let token = Token::random();
        let margin = inner.config.margin_for(ttl);
        // Only a waiting request needs the start time.
        let started = (!self.wait.is_zero()).then(Instant::now);
        let give_up = started.map(|s| s + self.wait);
        let mut sub: Option<Subscription> = None;
        let mut waiting = None;
        // Whether the last wake-up was a release notice (a notice wakes one local waiter: it tries).
        let mut noticed = false;
        // Fair hand-off inside this process: when other tasks of this client already wait for the key,
        // queue behind them (for a hand-over, or the next release notice, which wakes the longest
        // waiter first) instead of trying first. Without this, a task that releases and at once asks
        // again would usually win against the waiter that the release woke. When a task of this
        // client holds the key and the backend hands locks over, queue as well: trying would only
        // find the lock busy and mark it, and a marked lock is released with a notice instead of
        // being handed over.
        if let (Some(started), Some(give_up)) = (started, give_up) {
            if inner.held.has_waiters(&name.lock_key)
                || (backend.hands_over() && inner.held.holds(&name.lock_key))
            {
                let w = inner.held.wait_for(backend, &name, token, ttl);
                let s = backend.subscribe(&name).await;
                let notify = s.notify().clone();
                sub = Some(s);
                // The holder's lease may have been lost since (`Local::lost` then woke the waiter
                // ahead, or nobody if this one had not queued yet): look at the lock now.
                let behind = inner.held.queued_behind(&name.lock_key);
                // Every release of the lock by this client hands it to a waiting turn or publishes
                // a notice, and a holder elsewhere publishes one because the first local waiter
                // marked the lock; should none come (the notice connection was down), the lock is
                // looked at again after a lease's length.
                let fallback = ttl + jitter(Some(ttl));
                if behind {
                    tracing::trace!(key = %name.key, "lockattr: queueing behind local waiters");
                    tokio::select! {
                        _ = notify.notified() => noticed = true,
                        _ = w.turn.settled() => {}
                        _ = tokio::time::sleep_until((started + fallback).min(give_up)) => {}
                    }
                } else {
                    tracing::trace!(key = %name.key, "lockattr: the local holder's lease was lost; trying");
                }
                waiting = Some(w);
            }
        }
        loop {
            let notify = sub.as_ref().map(|s| s.notify().clone());
            let mut notified = notify.as_ref().map(|n| Box::pin(n.notified()));
            if let Some(n) = notified.as_mut() {
                n.as_mut().enable();
            }
            // A releaser of this client may have handed the lock to us, or be doing so.
            let handed = match waiting.as_ref().map(|w| w.turn.begin_try()) {
                None | Some(Next::Try) => None,
                Some(Next::Granted(sent)) => Some(sent),
                Some(Next::CleanThenTry) => {
                    // Owner-checked: it deletes nothing unless the lock holds our token.
                    let _ = backend.release(&name, token.as_str(), None).await;
                    None
                }
                Some(Next::Wait) => {
                    let turn = &waiting.as_ref().expect("waiting").turn;
                    let give_up = give_up.unwrap_or_else(Instant::now);
                    if tokio::time::timeout_at(give_up, turn.handed())
                        .await
                        .is_err()
                    {
                        drop(waiting);
                        return Err(LockError::Timeout {
                            key: name.key,
                            waited: started.map_or(Duration::ZERO, |s| s.elapsed()),
                        });
                    }
                    let now_waiting = *turn.state() == TurnState::Waiting;
                    if let (true, false, Some(n)) = (now_waiting, noticed, notified) {
                        // Released with a notice instead (someone else had marked the lock): the
                        // notice wakes one local waiter. Had it woken this one (while the hand-over
                        // was on its way), this one would try now; it did not, so it waits for it.
                        // Should no notice come, the lock is looked at again after a lease's length.
                        let fallback = Instant::now() + ttl + jitter(Some(ttl));
                        tokio::select! {
                            _ = n => noticed = true,
                            _ = turn.settled() => {}
                            _ = tokio::time::sleep_until(fallback.min(give_up)) => {}
                        }
                    }
                    continue;
                }
            };
            noticed = false;
            let (sent, outcome) = match handed {
                Some(sent) => (
                    sent,
                    Ok(Acquired::Granted {
                        fence: None,
                        validity: ttl,
                    }),
                ),
                None => {
                    let sent = Instant::now();
                    (sent, backend.acquire(&name, token.as_str(), ttl).await)
                }
            };
            match outcome {
                Ok(Acquired::Granted { fence, validity }) => {
                    if sent.elapsed() + margin >= validity {
                        // The grant is already (nearly) expired by the time we heard of it: give it back.
                        let _ = backend.release(&name, token.as_str(), None).await;
                        if give_up.is_some_and(|g| Instant::now() < g) {
                            continue;
                        }
                        return Err(LockError::Unavailable {
                            backend: backend.describe(),
                            key: Some(name.key.clone()),
                            message: format!("the acquire took longer than the lease ({ttl:?})"),
                        });
                    }
                    drop(waiting);
                    return Ok(
                        self.grant(rt, name, token, fence, validity, sent, margin, ttl, task)
                    );
                }
                Ok(Acquired::Busy { remaining }) => {
                    let (Some(started), Some(give_up)) = (started, give_up) else {
                        drop(waiting);
                        return Err(LockError::Busy {
                            key: name.key,
                            remaining,
                        });
                    };
                    let now = Instant::now();
                    if now >= give_up {
                        drop(waiting);
                        return Err(LockError::Timeout {
                            key: name.key,
                            waited: now - started,
                        });
                    }
                    match waiting.as_ref() {
                        Some(w) => w.turn.end_try(),
                        None => waiting = Some(inner.held.wait_for(backend, &name, token, ttl)),
                    }
                    let Some(n) = notified else {
                        // First time busy: subscribe to release notices, then re-check at once so a
                        // release between our attempt and the subscription is not missed.
                        sub = Some(backend.subscribe(&name).await);
                        continue;
                    };
                    let turn = &waiting.as_ref().expect("waiting").turn;
                    let fallback =
                        remaining.unwrap_or(Duration::from_millis(50)) + jitter(remaining);
                    tracing::trace!(key = %name.key, ?remaining, "lockattr: busy; waiting for a release notice");
                    tokio::select! {
                        _ = n => noticed = true,
                        _ = turn.settled() => {}
                        _ = tokio::time::sleep_until((now + fallback).min(give_up)) => {}
                    }
                }
                Err(e)
                    if e.kind == BackendErrorKind::Unavailable
                        && give_up
                            .is_some_and(|g| Instant::now() + Duration::from_millis(20) < g) =>
                {
                    tracing::debug!(key = %name.key, error = %e, "lockattr: acquire failed; retrying while waiting");
                    let pause =
                        Duration::from_millis(20) + jitter(Some(Duration::from_millis(200)));
                    let give_up = give_up.unwrap_or_else(Instant::now);
                    tokio::time::sleep_until((Instant::now() + pause).min(give_up)).await;
                }
                Err(e) => {
                    return Err(e.into_lock_error(&backend.describe(), &name.key, &name.lock_key))
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &self,
        rt: tokio::runtime::Handle,
        name: LockName,
        token: Token,
        fence: Option<u64>,
        validity: Duration,
        sent: Instant,
        margin: Duration,
        ttl: Duration,
        task: Option<tokio::task::Id>,
    ) -> LockGuard {
        let inner = &self.client.inner;
        let core = Arc::new(LeaseCore {
            id: NEXT_LEASE_ID.fetch_add(1, Ordering::Relaxed),
            name,
            token,
            fence: AtomicU64::new(fence.unwrap_or(0)),
            ttl,
            auto_renew: self.auto_renew,
            margin,
            acquired_at: sent,
            deadline_ns: AtomicU64::new(0),
            lost: AtomicU8::new(NOT_LOST),
            lost_notify: Notify::new(),
            released: AtomicBool::new(false),
            counted: AtomicBool::new(true),
        });
        core.extend(sent + validity);
        tracing::debug!(key = %core.name.key, ?fence, ttl_ms = ttl.as_millis() as u64, auto_renew = self.auto_renew, "lockattr: acquired");
        let watch = inner.watchdog.register(core.clone(), &rt);
        let hash = key_hash(&core.name.lock_key);
        let lease = Arc::new(Lease {
            client: self.client.clone(),
            core,
            min_hold: self.min_hold,
            rt,
            task,
            key_hash: hash,
            watch,
        });
        inner.held.insert_held(task, hash, Arc::downgrade(&lease));
        LockGuard {
            lease,
            reentrant: false,
        }
    }

    /// Run `fut` under the lock: acquire (waiting as configured), run the future while the watchdog keeps
    /// the lease, release on every exit path (return, panic, or this future being dropped). If the lock
    /// is lost meanwhile the future is cancelled (or, with [`OnLost::Finish`], allowed to finish) and
    /// [`LockError::Lost`] is returned. Inside, [`crate::current_lock`] describes the lock.
    pub async fn run<F: Future>(self, fut: F) -> Result<F::Output, LockError> {
        self.run_inner::<F, Plain>(fut).await
    }

    /// Like [`run`](Self::run) for a fallible future: lock errors are converted into the future's error
    /// type. What `#[distributed_lock]` generates.
    pub async fn run_result<T, E, F>(self, fut: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<LockError>,
    {
        self.run_inner::<F, Fallible>(fut).await
    }

    /// The body of [`run`](Self::run) and [`run_result`](Self::run_result); `M` builds the result
    /// on each exit path (so no intermediate tuple is moved out to be taken apart).
    async fn run_inner<F: Future, M: RunOutput<F::Output>>(self, fut: F) -> M::Out {
        let on_lost = self.on_lost;
        let guard = match self.acquire().await {
            Ok(guard) => guard,
            Err(e) => return M::failed(e),
        };
        let current = CurrentLock::new(guard.core().clone(), Arc::downgrade(&guard.lease));
        let body = CURRENT.scope(current, fut);
        let out = match on_lost {
            OnLost::Cancel => {
                let core = guard.core().clone();
                match until_lost(&core, body).await {
                    Ok(out) => out,
                    // `body` was dropped: the guarded work is cancelled.
                    Err(reason) => return M::failed(core.lost_error(reason, true)),
                }
            }
            OnLost::Finish => body.await,
        };
        let core = guard.core().clone();
        if let Some(reason) = core.lost_reason() {
            drop(guard);
            return M::lost(out, core.lost_error(reason, false));
        }
        if !core.is_held() {
            // The deadline passed while the body finished; the watchdog had not said so yet.
            let reason = if core.auto_renew {
                LostReason::DeadlineExpired
            } else {
                LostReason::TtlElapsed
            };
            guard.lease.client.inner.held.mark_lost(&core, reason);
            drop(guard);
            return M::lost(out, core.lost_error(reason, false));
        }
        match guard.release().await {
            Ok(()) => M::done(out),
            Err(e @ LockError::Lost { .. }) => M::lost(out, e),
            Err(e) => {
                // Held through the whole body as far as we know; only the release failed, so the key
                // expires at its TTL. Report success.
                tracing::warn!(key = %core.name.key, error = %e, "lockattr: release failed after the guarded work finished; the key expires at its TTL");
                M::done(out)
            }
        }
    }
}

/// How [`LockRequest::run_inner`] turns the body's output `O` and the lock's fate into its result.
trait RunOutput<O> {
    type Out;
    /// The lock was not taken, or was lost and the body cancelled.
    fn failed(error: LockError) -> Self::Out;
    /// The body finished, but the lock was lost before the end.
    fn lost(out: O, error: LockError) -> Self::Out;
    /// The body finished under the lock.
    fn done(out: O) -> Self::Out;
}

/// [`LockRequest::run`]: lock errors beside the body's output.
struct Plain;

impl<O> RunOutput<O> for Plain {
    type Out = Result<O, LockError>;
    fn failed(error: LockError) -> Self::Out {
        Err(error)
    }
    fn lost(_: O, error: LockError) -> Self::Out {
        Err(error)
    }
    fn done(out: O) -> Self::Out {
        Ok(out)
    }
}

/// [`LockRequest::run_result`]: lock errors converted into the body's error type; the body's own error
/// wins over a loss.
struct Fallible;

impl<T, E: From<LockError>> RunOutput<Result<T, E>> for Fallible {
    type Out = Result<T, E>;
    fn failed(error: LockError) -> Self::Out {
        Err(E::from(error))
    }
    fn lost(out: Result<T, E>, error: LockError) -> Self::Out {
        match out {
            Err(user) => Err(user),
            Ok(_) => Err(E::from(error)),
        }
    }
    fn done(out: Result<T, E>) -> Self::Out {
        out
    }
}

fn jitter(remaining: Option<Duration>) -> Duration {
    let cap = remaining
        .map(|r| r / 20)
        .unwrap_or_default()
        .clamp(Duration::from_millis(1), Duration::from_millis(25));
    Duration::from_micros(rand::random_range(0..=cap.as_micros() as u64))
}

/// Run `body` until it finishes or the lease is lost, whichever comes first (a lease lost before
/// the body's first poll, or between two polls, stops it without another poll).
///
/// The loss is checked with one atomic load before each poll of the body; the wake-up on loss is
/// registered only once the body has to wait. A body that finishes in its first poll (a cache hit, a
/// quick write) therefore costs no waiter registration on the lease's `Notify`.
async fn until_lost<F: Future>(core: &LeaseCore, body: F) -> Result<F::Output, LostReason> {
    use std::task::Poll;
    let mut body = std::pin::pin!(body);
    let mut lost = std::pin::pin!(core.lost());
    std::future::poll_fn(|cx| {
        if let Some(reason) = core.lost_reason() {
            return Poll::Ready(Err(reason));
        }
        if let Poll::Ready(out) = body.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        lost.as_mut().poll(cx).map(Err)
    })
    .await
}
