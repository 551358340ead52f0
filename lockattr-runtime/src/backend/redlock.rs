//! Redlock: one lock over N independent Redis masters (N odd: 3, 5, 7 …), granted by a majority.
//!
//! [`RedlockBackend`] implements the algorithm of the Redis documentation ("Distributed locks with
//! Redis") behind the same [`Backend`] trait as the single-node backend, so the attribute, the guard,
//! the watchdog and waiting work unchanged. Each node is a [`RedisBackend`] (its own auto-reconnecting
//! connection and its own release-notice connection); every operation is sent to all nodes in
//! parallel and decided by a **majority** (`N / 2 + 1`) as soon as the outcome is known; the caller
//! waits for a lagging node at most a short **per-node timeout**. A minority of nodes may be down,
//! stopped or slow: locking, renewing and releasing keep working, and a stopped node never holds up a
//! renewal past its deadline.
//!
//! # Acquire
//! `SET key value NX PX ttl` on every node. Granted only when a majority grants *and* the acquisition
//! finishes while the lease is still valid: `validity = ttl - elapsed - drift > 0`, with
//! `drift = ttl * drift_factor + 2 ms` (the clock-drift allowance of the Redlock paper; `drift_factor`
//! defaults to 0.01). The validity reported to the client ([`Acquired::Granted`]) is `ttl - drift`
//! counted from the moment the request was sent, so the holder's deadline is
//! `send time + ttl - drift - safety margin`: the elapsed time is accounted for through the send time,
//! never twice. One round: the grant carries no fence.
//!
//! # Fence
//! Issued when the holder first asks for it ([`Backend::fence`]; the client keeps the answer), in two
//! rounds that only count nodes still holding the lease (`GET key == value`):
//! 1. Read: every node that holds the lease issues `max(last + 1, node clock in µs)` from its counter
//!    (atomically with the check, as the single-node script does); the fence `f` is the maximum over
//!    a majority of such nodes. A node that no longer holds it issues nothing.
//! 2. Write-back: every node that lacks `f` raises its counter to at least `f` (never lowering it), and
//!    says whether it held the lease at that moment; a majority of nodes must have `f` while holding
//!    the lease (those that issued `f` or more in step 1 count).
//!
//! When a majority no longer holds the lease, the answer is "not ours": no fence, and the holder learns
//! that the lock is lost. A lease that rests on a bare majority (a grant returns once a majority
//! granted; the other nodes' keys normally land moments later) and loses one of those nodes gets no
//! fence while that node is out (`fence` reports the backend unavailable): no majority of live nodes
//! holds it, which is the situation the delayed-restart rule below is about. Why this orders holders: a later holder's lease rests on a majority, which
//! shares a node with the majority that had `f`; on that node the later holder's key could only be set
//! after this lease's key was gone, so after the counter reached `f`, and the later holder's read there
//! issues more than `f`. So **fences are strictly increasing in the order the holders held the lock**,
//! whatever the nodes' clocks say, as long as a majority of nodes kept their data between the two (a
//! node that restarted empty re-seeds its counter from its clock, see below). Reading the fence inside
//! the grant instead would be wrong: an acquisition could read a stale counter on a node that it does
//! not end up holding. A lock that nobody fences never pays for the two rounds.
//!
//! When no majority grants, the nodes that granted are given back their key and the answer is
//! [`Acquired::Busy`] when a majority answered (contention), or an "unavailable" error naming how many
//! nodes answered (`2 of 5 nodes answered; a majority of 3 is needed`). `Busy` carries the remaining
//! TTL of the holder that holds (or, counting unanswered nodes, may hold) a majority; when the refusals
//! are only other contenders' partial grants (a split vote), it carries a short random retry delay
//! (5–50 ms) instead, so contenders neither wait a whole TTL for nobody nor retry in lock-step. Giving
//! back a *partial* grant publishes no release notice (it would wake the caller itself, which would
//! spin while a real holder keeps its majority); giving back a majority grant (too slow) does.
//!
//! ## Requests that answer after the decision
//! Deciding early means some node requests are still in flight when the caller moves on. Each attempt
//! therefore writes its own value, `token#sequence`, and has a *fate* (open, won, abandoned,
//! released) that is decided under a lock: a node request that answers after the decision reads the
//! fate and, when it granted for an attempt that was abandoned or a lease that was released meanwhile,
//! gives its key back itself, after its own request, so the order is guaranteed. Renewal and release
//! compare the exact value of the winning attempt, and a late request of an earlier attempt of the same
//! acquisition never overwrites a later one's key (sequence order), so nothing that arrives late can
//! delete, extend or resurrect the wrong key. A request that is still unanswered when the node's
//! command timeout ends is given up; if it executes even later (a node stopped for longer than that),
//! its key expires at its TTL.
//!
//! # Renew
//! One script call per node per watchdog batch (all leases due together), in parallel. A lease stays
//! renewed only if a majority of nodes confirm that they still hold its value
//! ([`Renewed::Extended`] with `ttl - drift`); otherwise it is [`Renewed::NotHeld`], the holder is
//! told, and the lease's leftover keys on a minority of nodes are released in the background. When
//! fewer than a majority of nodes answer at all, the batch fails as "unavailable": the watchdog retries
//! inside the deadline and reports the loss at the deadline, exactly as with one node.
//!
//! **Re-establishing on renewal** ([`RedlockOptions::reacquire_on_renew`], on by default; the wish of
//! redsync issue #149): when a lease is confirmed by a majority, the nodes where its key had vanished
//! (a node restarted empty, a node that was down or slow during the acquire) get it back with
//! `SET key value NX PX ttl`, so they rejoin the quorum for live leases, and a later failure of another
//! node does not lose a lock that is in fact held. Only *genuine* confirmations count towards the
//! majority: a key re-established in this round never keeps alive a lease that no longer has a
//! majority, and `NX` never touches a key that holds another value.
//!
//! # Release, waiting
//! Release is an owner-checked delete on every node (publishing a release notice where it deleted).
//! It reports [`Released::Deleted`] when a majority deleted, and waits for slower nodes only briefly (a
//! stopped node does not hold up the caller; its delete is still sent). It reports
//! [`Released::NotHeld`] when a majority answered but fewer than a majority still held the lease.
//! Waiters subscribe on every node through one shared [`NoticeHub`]: a notice from any node wakes
//! them, and they fall back to re-checking at the holder's remaining TTL when notices are lost. The
//! first waiter of a key waits until a majority of nodes confirmed the subscription, so a holder's
//! release (which deletes on a majority) always publishes on at least one node that is listening.
//!
//! # Nodes that lose their data: the delayed-restart rule
//! Redis nodes running without persistence (or with `appendfsync everysec`) forget locks when they
//! restart. If enough nodes restart empty, a lock held by a majority can be granted to a second owner
//! inside its TTL. (A grant returns as soon as a majority granted, so for a moment, and for longer if
//! a node is slow or down, a lease may rest on a bare majority: losing one of those nodes' data is
//! enough.) **A node that lost its data must stay down for at least the largest TTL in use before it
//! rejoins** (then every lock it knew has expired anyway), or run with `appendfsync always`.
//! Re-establishing on renewal shrinks the window (a restarted node gets live leases back at their next
//! renewal, every ttl/3; a lease survives a rolling restart of every node, one at a time), and fencing
//! tokens keep the damage detectable: a restarted node re-seeds its counter from its clock in
//! microseconds, the next fence requests write the current fence back to every node, and a resource that
//! rejects lower fences refuses a stale holder. Fences stay increasing across any number of restarts as
//! long as no majority of nodes lost its data between two grants, or the restarted nodes' clocks are
//! ahead of every fence issued so far.
//!
//! # Timeouts
//! Every phase is decided as soon as its outcome is known, so a dead or stopped node costs nothing
//! while the others form a majority. When a phase does need a slow node, the caller waits for it at
//! most the **per-node timeout** after the first node answered successfully: by default
//! `min(command timeout, max(ttl / 10, 50 ms))`, so a stopped node costs an acquisition at most a tenth
//! of the lease per phase. (Renewals need no cut-off: one with a majority is decided at once, one that
//! needs a slow node can only gain by waiting, bounded by the command timeout, while the watchdog
//! enforces the lease deadline by itself.) Measuring the lag
//! from the fastest live node's answer, rather than from the send time, keeps a stall of this process
//! or its host (which delays every node alike) from being mistaken for dead nodes; the overall bound
//! stays the command timeout, as for one node, and the validity check catches an acquisition that
//! took too long anyway. Set [`RedlockOptions::node_timeout`] to change it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use once_cell::sync::Lazy;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::redis::{
    mask_url, ms, release_codes, release_mode, RedisBackend, RedisOptions, FENCE_COUNTER_KEEP,
};
use super::{Acquired, Backend, BoxFuture, NoticeHub, Released, RenewItem, Renewed, Subscription};
use crate::error::{BackendError, BackendErrorKind, LockError};
use crate::key::LockName;

/// Phase 1 on one node: take the lock with this attempt's value `token#seq`, or take it over from an
/// *earlier* attempt of the same acquisition (same `token#` prefix, smaller sequence). Fence-counter
/// type checks come first so a bad counter never leaves a half-taken lock.
/// KEYS: lock, fence. ARGV: value, ttl ms, owner prefix (`token#`).
/// Reply: `{1, 0, ''}` granted, `{0, pttl, sha1(holder's token)}` busy.
const ACQUIRE_LUA: &str = r#"
local fence_type = redis.call('TYPE', KEYS[2])['ok']
if fence_type ~= 'none' and fence_type ~= 'string' then
  return redis.error_reply('LOCKATTR_WRONGTYPE fence counter ' .. KEYS[2] .. ' holds a ' .. fence_type)
end
if fence_type == 'string' and tonumber(redis.call('GET', KEYS[2])) == nil then
  return redis.error_reply('LOCKATTR_WRONGTYPE fence counter ' .. KEYS[2] .. ' does not hold a number')
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, 0, ''}
end
local lock_type = redis.call('TYPE', KEYS[1])['ok']
if lock_type ~= 'string' then
  return redis.error_reply('LOCKATTR_WRONGTYPE holds a Redis ' .. lock_type .. ' value')
end
local holder = redis.call('GET', KEYS[1])
if string.sub(holder, 1, #ARGV[3]) == ARGV[3] and holder < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, 0, ''}
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -1 then
  return redis.error_reply('LOCKATTR_WRONGTYPE holds a string without a TTL')
end
return {0, pttl, redis.sha1hex(string.match(holder, '^[^#]*'))}
"#;

/// `read_counter(key)`: a node's fence counter (0 when absent), or `nil` and the error reply for a
/// counter that holds another type or something other than a number.
macro_rules! read_counter_lua {
    () => {
        r#"
local function read_counter(k)
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then
    return 0
  end
  if t ~= 'string' then
    return nil, redis.error_reply('LOCKATTR_WRONGTYPE fence counter ' .. k .. ' holds a ' .. t)
  end
  local last = tonumber(redis.call('GET', k))
  if last == nil then
    return nil, redis.error_reply('LOCKATTR_WRONGTYPE fence counter ' .. k .. ' does not hold a number')
  end
  return last
end
"#
    };
}

/// Fence read on one node, only while the node holds the lease (`GET lock == value`): issue the
/// node's next fence, max(last + 1, node clock in µs), and keep the counter for the lock's remaining
/// TTL plus ARGV[2] ms (see [`FENCE_COUNTER_KEEP`]). KEYS: lock, fence. ARGV: value, ms.
/// Reply: the fence, or 0 when the node does not hold the lease.
const NEXT_FENCE_LUA: &str = concat!(
    read_counter_lua!(),
    r#"
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local last, bad = read_counter(KEYS[2])
if bad then
  return bad
end
local now = redis.call('TIME')
local fence = last + 1
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
if clock > fence then fence = clock end
local keep = redis.call('PTTL', KEYS[1]) + tonumber(ARGV[2])
redis.call('SET', KEYS[2], string.format('%d', fence), 'PX', keep)
return fence
"#
);

/// Fence write-back on one node: raise the counter to at least ARGV[2] (never lowers it), kept for the
/// lock's remaining TTL plus ARGV[3] ms, and say whether the node held the lease meanwhile (only such
/// nodes count towards the majority; raising the others too keeps every node's counter up to date, and
/// a counter that only ever rises is never wrong). KEYS: lock, fence. ARGV: value, fence, ms.
/// Reply: `{counter afterwards, 1 if the node holds the lease else 0}`.
const RAISE_FENCE_LUA: &str = concat!(
    read_counter_lua!(),
    r#"
local owned = 0
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  owned = 1
end
local last, bad = read_counter(KEYS[2])
if bad then
  return bad
end
local f = tonumber(ARGV[2])
if last < f then
  local keep = redis.call('PTTL', KEYS[1])
  if keep < 0 then
    keep = 0
  end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', keep + tonumber(ARGV[3]))
  last = f
end
return {last, owned}
"#
);

/// Owner-checked batch renewal on one node. KEYS: n lock keys. ARGV: n values, then n TTLs in ms.
/// Reply per key: 1 ours and extended, 0 absent, -1 another value (or another type).
const RENEW_LUA: &str = r#"
local n = #KEYS
local out = {}
for i = 1, n do
  local v = redis.pcall('GET', KEYS[i])
  if v == ARGV[i] then
    redis.call('PEXPIRE', KEYS[i], ARGV[n + i])
    out[i] = 1
  elseif v == false then
    out[i] = 0
  else
    out[i] = -1
  end
end
return out
"#;

/// Re-establish a live lease whose key vanished on this node. ARGV: value, ttl ms. Reply: 1 set.
const REJOIN_LUA: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"#;

// Release, and giving back one attempt's grant, is the owner-checked script of every Redis backend
// (`super::redis::RELEASE_LUA`): delete if ours (publishing a notice), or only cut the TTL to the
// minimum hold time. Redlock's acquire leaves no waiter mark, so its releases always publish.

static ACQUIRE: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(ACQUIRE_LUA));
static NEXT_FENCE: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(NEXT_FENCE_LUA));
static RAISE_FENCE: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(RAISE_FENCE_LUA));
static RENEW: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(RENEW_LUA));
static REJOIN: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(REJOIN_LUA));
static RELEASE: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(super::redis::RELEASE_LUA));

/// The fixed part of the clock-drift allowance (the Redlock paper's "+ 2 ms").
pub const DRIFT_FIXED: Duration = Duration::from_millis(2);
/// The smallest automatic per-node timeout.
pub const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(50);
/// Bounds of the retry delay reported as `Busy { remaining }` after a split vote.
const SPLIT_RETRY_MS: (u64, u64) = (5, 50);

/// Options of a [`RedlockBackend`].
///
/// ```
/// use std::time::Duration;
/// use lockattr_runtime::backend::redlock::RedlockOptions;
/// let opts = RedlockOptions::default()
///     .node_timeout(Duration::from_millis(50))
///     .reacquire_on_renew(true);
/// assert_eq!(opts.node_timeout, Some(Duration::from_millis(50)));
/// ```
///
/// When the backend is built through [`crate::LockClientBuilder::redlock`], the client's command
/// timeout and drift factor are used for `command_timeout` and `drift_factor`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedlockOptions {
    /// Bound on each command and connection attempt of each node (default 2 s); also the upper bound
    /// of the automatic per-node timeout.
    pub command_timeout: Duration,
    /// How far a node may lag behind the fastest node's answer before a phase is decided without it;
    /// `None` (the default) means `min(command_timeout, max(ttl / 10, 50 ms))` for the TTL of the
    /// lock(s) involved.
    pub node_timeout: Option<Duration>,
    /// Clock-drift allowance as a fraction of the TTL (default 0.01); the drift is
    /// `ttl * drift_factor + 2 ms`.
    pub drift_factor: f64,
    /// Re-establish a live lease's key on nodes where it vanished, at renewal (default on; see the
    /// module docs).
    pub reacquire_on_renew: bool,
}

impl Default for RedlockOptions {
    fn default() -> Self {
        RedlockOptions {
            command_timeout: Duration::from_secs(2),
            node_timeout: None,
            drift_factor: 0.01,
            reacquire_on_renew: true,
        }
    }
}

impl RedlockOptions {
    /// Set [`command_timeout`](Self::command_timeout).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }
    /// Set a fixed [`node_timeout`](Self::node_timeout) instead of the automatic one.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = Some(timeout);
        self
    }
    /// Set [`drift_factor`](Self::drift_factor).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }
    /// Set [`reacquire_on_renew`](Self::reacquire_on_renew).
    pub fn reacquire_on_renew(mut self, on: bool) -> Self {
        self.reacquire_on_renew = on;
        self
    }

    fn check(&self) -> Result<(), LockError> {
        if self.command_timeout.is_zero() || self.command_timeout > Duration::from_secs(600) {
            return Err(LockError::InvalidOption(format!(
                "command timeout {:?} must be between 1ms and 10min, e.g. 2s",
                self.command_timeout
            )));
        }
        if let Some(t) = self.node_timeout {
            if t.is_zero() || t > self.command_timeout {
                return Err(LockError::InvalidOption(format!(
                    "Redlock node timeout {t:?} must be between 1ms and the command timeout ({:?}); it should be a small fraction of the TTL, e.g. 50ms",
                    self.command_timeout
                )));
            }
        }
        if !(0.0..=0.2).contains(&self.drift_factor) || self.drift_factor.is_nan() {
            return Err(LockError::InvalidOption(format!(
                "drift factor {} must be between 0.0 and 0.2, e.g. 0.01",
                self.drift_factor
            )));
        }
        Ok(())
    }
}
/// One Redis master of the deployment.
struct Node {
    backend: RedisBackend,
    url: String,
}

/// What one node answered to phase 1.
#[derive(Debug, Clone)]
enum NodeAcquire {
    Granted,
    Busy {
        pttl: Option<Duration>,
        holder: String,
    },
}

impl Node {
    async fn acquire(
        &self,
        name: &LockName,
        value: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<NodeAcquire, BackendError> {
        let mut inv = ACQUIRE.prepare_invoke();
        inv.key(&name.lock_key)
            .key(&name.fence_key)
            .arg(value)
            .arg(ttl_ms)
            .arg(owner);
        let (granted, pttl, holder): (i64, i64, String) = self.backend.invoke(&inv).await?;
        Ok(if granted == 1 {
            NodeAcquire::Granted
        } else {
            NodeAcquire::Busy {
                pttl: (pttl >= 0).then(|| Duration::from_millis(pttl as u64)),
                holder,
            }
        })
    }

    /// This node's next fence for the lease `value`, or `None` when the node does not hold it.
    async fn next_fence(&self, name: &LockName, value: &str) -> Result<Option<u64>, BackendError> {
        let mut inv = NEXT_FENCE.prepare_invoke();
        inv.key(&name.lock_key)
            .key(&name.fence_key)
            .arg(value)
            .arg(ms(FENCE_COUNTER_KEEP));
        let f: i64 = self.backend.invoke(&inv).await?;
        Ok(u64::try_from(f).ok().filter(|f| *f > 0))
    }

    /// Raise this node's counter to at least `fence`: the counter afterwards, if the node holds the
    /// lease `value`, else `None`.
    async fn raise_fence(
        &self,
        name: &LockName,
        value: &str,
        fence: u64,
    ) -> Result<Option<u64>, BackendError> {
        let mut inv = RAISE_FENCE.prepare_invoke();
        inv.key(&name.lock_key)
            .key(&name.fence_key)
            .arg(value)
            .arg(fence.to_string())
            .arg(ms(FENCE_COUNTER_KEEP));
        let (f, owned): (i64, i64) = self.backend.invoke(&inv).await?;
        Ok(u64::try_from(f).ok().filter(|_| owned == 1))
    }

    async fn renew(&self, items: &RenewBatch) -> Result<Vec<i64>, BackendError> {
        let mut inv = RENEW.prepare_invoke();
        for name in &items.names {
            inv.key(&name.lock_key);
        }
        for lease in &items.leases {
            inv.arg(&lease.value);
        }
        for t in &items.ttl_ms {
            inv.arg(*t);
        }
        let reply: Vec<i64> = self.backend.invoke(&inv).await?;
        if reply.len() != items.names.len() {
            return Err(BackendError::other(format!(
                "renewal answered {} results for {} locks",
                reply.len(),
                items.names.len()
            )));
        }
        Ok(reply)
    }

    async fn rejoin(
        &self,
        name: &LockName,
        value: &str,
        ttl_ms: u64,
    ) -> Result<bool, BackendError> {
        let mut inv = REJOIN.prepare_invoke();
        inv.key(&name.lock_key).arg(value).arg(ttl_ms);
        let r: i64 = self.backend.invoke(&inv).await?;
        Ok(r == 1)
    }

    async fn release(
        &self,
        name: &LockName,
        value: &str,
        keep_for: Option<Duration>,
    ) -> Result<Released, BackendError> {
        // Redlock's own acquire leaves no waiter mark: always publish the notice.
        self.release_with(name, value, release_mode(keep_for, true))
            .await
    }

    async fn give_back(
        &self,
        name: &LockName,
        value: &str,
        publish: bool,
    ) -> Result<bool, BackendError> {
        let released = self
            .release_with(name, value, release_mode(None, publish))
            .await?;
        Ok(released == Released::Deleted)
    }

    /// The owner-checked release script on this node, with `mode` (see `release_mode`).
    async fn release_with(
        &self,
        name: &LockName,
        value: &str,
        mode: i64,
    ) -> Result<Released, BackendError> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(&name.lock_key).arg("release").arg(value).arg(mode);
        Ok(release_codes(self.backend.invoke(&inv).await, 1)?[0])
    }
}

/// What became of an acquisition attempt (see "Requests that answer after the decision").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Not decided yet: node answers go to the deciding caller.
    Open,
    /// Granted (or being completed): a late grant joins the lease.
    Won,
    /// Not granted, or given up: a late grant is given back by its own request.
    Abandoned,
    /// The lease was released (or lost): a late grant or rejoin is given back by its own request.
    Released,
}

#[derive(Debug)]
struct Attempt {
    fate: Mutex<Fate>,
}

impl Attempt {
    fn new() -> Arc<Attempt> {
        Arc::new(Attempt {
            fate: Mutex::new(Fate::Open),
        })
    }

    fn fate(&self) -> MutexGuard<'_, Fate> {
        // A poisoned lock still holds a valid `Fate` (plain value writes).
        self.fate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, fate: Fate) {
        *self.fate() = fate;
    }
}

/// A granted lease: its attempt (for the fate) and the value its keys hold.
#[derive(Debug, Clone)]
struct Lease {
    attempt: Arc<Attempt>,
    value: String,
    ttl: Duration,
}

/// A renewal batch in owned form (it is sent from tasks that outlive the call).
struct RenewBatch {
    names: Vec<LockName>,
    leases: Vec<Lease>,
    ttl_ms: Vec<u64>,
}

type Answers<T> = Vec<Option<Result<T, BackendError>>>;

/// Requests sent to several nodes, each from its own task, and the answers so far. The caller waits
/// for answers until it has enough, or until the slower nodes are `lag` behind the first successful
/// answer (the per-node timeout, measured against the fastest live node so that a stall of this
/// process or host, which delays every node alike, is not mistaken for dead nodes), and never longer
/// than the command timeout. Requests still running go on in the background (each bounded by its
/// node's command timeout).
struct Fan<T> {
    answers: Answers<T>,
    rx: mpsc::UnboundedReceiver<(usize, Result<T, BackendError>)>,
    pending: usize,
    deadline: Instant,
    lag: Duration,
    first_answer: bool,
}

impl<T> Fan<T> {
    /// Collect answers until `enough` says so, every node answered, or the per-node deadline passed.
    async fn until(&mut self, mut enough: impl FnMut(&Answers<T>) -> bool) {
        while self.pending > 0 && !enough(&self.answers) {
            match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
                Ok(Some((i, r))) => self.record(i, r),
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Collect further answers until `until` (at most until the per-node deadline).
    async fn rest_until(&mut self, until: Instant) {
        let deadline = self.deadline;
        self.deadline = until.min(deadline);
        self.until(|_| false).await;
        self.deadline = deadline;
    }

    /// Take the answers already delivered, without waiting.
    fn drain(&mut self) {
        while let Ok((i, r)) = self.rx.try_recv() {
            self.record(i, r);
        }
    }

    fn record(&mut self, i: usize, r: Result<T, BackendError>) {
        // The lag is counted from the first node that answered successfully: an error (connection
        // refused) says nothing about how fast live nodes answer.
        if !self.first_answer && r.is_ok() {
            self.first_answer = true;
            self.deadline = self.deadline.min(Instant::now() + self.lag);
        }
        self.answers[i] = Some(r);
        self.pending -= 1;
    }

    fn count(&self, pred: impl Fn(&Result<T, BackendError>) -> bool) -> usize {
        self.answers.iter().flatten().filter(|r| pred(r)).count()
    }

    fn ok(&self) -> usize {
        count_ok(&self.answers)
    }
}

/// Gives back an acquisition whose future is dropped (cancelled) before it returned.
struct Cleanup {
    nodes: Vec<Arc<Node>>,
    attempt: Arc<Attempt>,
    name: LockName,
    value: String,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.attempt.set(Fate::Abandoned);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for node in &self.nodes {
            let (node, name, value) = (node.clone(), self.name.clone(), self.value.clone());
            rt.spawn(async move {
                let _ = node.give_back(&name, &value, true).await;
            });
        }
    }
}

/// Locks over N independent Redis masters, granted by a majority (see the [module docs](self)).
///
/// Renew and release work on leases this backend granted (it remembers the value each lease's keys
/// hold); a lease of another backend instance is reported as not held.
///
/// ```no_run
/// # async fn f() -> Result<(), lockattr_runtime::LockError> {
/// use lockattr_runtime::LockClient;
/// let client = LockClient::connect_redlock(&[
///     "redis://10.0.0.1:6379",
///     "redis://10.0.0.2:6379",
///     "redis://10.0.0.3:6379",
/// ])
/// .await?;
/// let guard = client.lock("invoice:7").acquire().await?;
/// println!("fence {}", guard.fence().await?);
/// # Ok(()) }
/// ```
pub struct RedlockBackend {
    nodes: Vec<Arc<Node>>,
    quorum: usize,
    opts: RedlockOptions,
    hub: NoticeHub,
    describe: String,
    /// Granted leases by token.
    leases: Mutex<HashMap<String, Lease>>,
    /// Sequence of acquisition attempts (orders the attempts of one acquisition).
    next_attempt: AtomicU64,
}

impl std::fmt::Debug for RedlockBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedlockBackend")
            .field("nodes", &self.node_urls())
            .field("quorum", &self.quorum)
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Check the node list: an odd number of at least 3 distinct URLs.
fn check_node_count(urls: &[String]) -> Result<(), LockError> {
    let n = urls.len();
    match n {
        0 => {
            return Err(LockError::InvalidOption(
                "Redlock needs the URLs of 3 or more independent Redis masters (an odd number: 3, 5, 7); none were given".into(),
            ))
        }
        1 => {
            return Err(LockError::InvalidOption(
                "Redlock needs at least 3 independent Redis masters, got 1; for a single Redis server use the single-node backend: `LockClient::connect(url)` or `.url(url)`".into(),
            ))
        }
        2 => {
            return Err(LockError::InvalidOption(
                "Redlock needs at least 3 independent Redis masters, got 2: with 2 nodes the majority is both, so one failed node stops all locking; add a third node, or use one node with `.url(url)`".into(),
            ))
        }
        n if n % 2 == 0 => {
            return Err(LockError::InvalidOption(format!(
                "Redlock needs an odd number of nodes, got {n}: a majority of {n} is {}, which tolerates {} failed nodes, no more than {} nodes would; add or remove one node",
                n / 2 + 1,
                n / 2 - 1,
                n - 1
            )))
        }
        _ => {}
    }
    let mut seen = std::collections::HashSet::new();
    for u in urls {
        if !seen.insert(u.trim()) {
            return Err(LockError::InvalidOption(format!(
                "Redlock node `{}` is listed twice; every node must be a separate, independent Redis master",
                mask_url(u.trim())
            )));
        }
    }
    Ok(())
}

impl RedlockBackend {
    /// Open a backend over `urls` (an odd number ≥ 3 of independent Redis masters) without connecting
    /// yet. Fails on a bad node count, a repeated or malformed URL, or bad options.
    pub fn open_lazy<S: AsRef<str>>(
        urls: &[S],
        opts: RedlockOptions,
    ) -> Result<RedlockBackend, LockError> {
        let urls: Vec<String> = urls.iter().map(|u| u.as_ref().trim().to_owned()).collect();
        check_node_count(&urls)?;
        opts.check()?;
        let hub = NoticeHub::default();
        let mut nodes = Vec::with_capacity(urls.len());
        for url in &urls {
            let backend = RedisBackend::open_lazy(
                url,
                RedisOptions {
                    command_timeout: opts.command_timeout,
                },
            )?
            .with_hub(hub.clone());
            nodes.push(Arc::new(Node {
                backend,
                url: mask_url(url),
            }));
        }
        let describe = format!(
            "redlock[{}]",
            nodes
                .iter()
                .map(|n| n.url.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(RedlockBackend {
            quorum: nodes.len() / 2 + 1,
            nodes,
            opts,
            hub,
            describe,
            leases: Mutex::new(HashMap::new()),
            next_attempt: AtomicU64::new(1),
        })
    }

    /// Open a backend over `urls` and check that a majority of nodes answers `PING` (within the
    /// command timeout). Fails with [`LockError::Unavailable`] naming how many nodes answered.
    pub async fn open<S: AsRef<str>>(
        urls: &[S],
        opts: RedlockOptions,
    ) -> Result<RedlockBackend, LockError> {
        let backend = Self::open_lazy(urls, opts)?;
        backend
            .ping()
            .await
            .map_err(|e| super::unreachable_at_open(backend.describe.clone(), e))?;
        Ok(backend)
    }

    /// `PING` every node; succeeds when a majority answers (within the command timeout).
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut fan = self.fan_out(
            0..self.nodes.len(),
            self.opts.command_timeout,
            |_, node| async move { node.backend.ping().await },
        );
        let q = self.quorum;
        fan.until(|a| count_ok(a) >= q).await;
        if fan.ok() >= q {
            Ok(())
        } else {
            Err(self.too_few(&fan, "answered PING"))
        }
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many nodes make a majority (`N / 2 + 1`).
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The nodes' URLs (passwords masked), in the order given.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// The options in effect.
    pub fn options(&self) -> &RedlockOptions {
        &self.opts
    }

    /// The per-node timeout used for locks of `ttl` (see the module docs).
    pub fn node_timeout_for(&self, ttl: Duration) -> Duration {
        self.opts.node_timeout.unwrap_or_else(|| {
            (ttl / 10)
                .max(MIN_NODE_TIMEOUT)
                .min(self.opts.command_timeout)
        })
    }

    /// The clock-drift allowance for `ttl`: `ttl * drift_factor + 2 ms`.
    pub fn drift_for(&self, ttl: Duration) -> Duration {
        ttl.mul_f64(self.opts.drift_factor) + DRIFT_FIXED
    }

    /// How long a grant or renewal of `ttl` is valid, counted from the send time: `ttl - drift`.
    pub fn validity_for(&self, ttl: Duration) -> Duration {
        ttl.saturating_sub(self.drift_for(ttl))
    }

    /// Send `op` to the nodes `targets`, each from its own task; see [`Fan`].
    fn fan_out<T, Fut>(
        &self,
        targets: impl IntoIterator<Item = usize>,
        lag: Duration,
        mut op: impl FnMut(usize, Arc<Node>) -> Fut,
    ) -> Fan<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pending = 0;
        for i in targets {
            let fut = op(i, self.nodes[i].clone());
            let tx = tx.clone();
            pending += 1;
            tokio::spawn(async move {
                let _ = tx.send((i, fut.await));
            });
        }
        self.fan(rx, pending, lag)
    }

    fn fan<T>(
        &self,
        rx: mpsc::UnboundedReceiver<(usize, Result<T, BackendError>)>,
        pending: usize,
        lag: Duration,
    ) -> Fan<T> {
        Fan {
            answers: (0..self.nodes.len()).map(|_| None).collect(),
            rx,
            pending,
            deadline: Instant::now() + self.opts.command_timeout,
            lag,
            first_answer: false,
        }
    }

    /// "k of N nodes {what}; a majority of q is needed (node: error; …)".
    fn too_few<T>(&self, fan: &Fan<T>, what: &str) -> BackendError {
        BackendError::unavailable(format!(
            "{} of {} nodes {what}; a majority of {} is needed ({})",
            fan.ok(),
            self.nodes.len(),
            self.quorum,
            self.errors(fan)
        ))
    }

    /// "node: error; node: error" for the nodes that failed or did not answer in time.
    fn errors<T>(&self, fan: &Fan<T>) -> String {
        let mut details = Vec::new();
        for (node, a) in self.nodes.iter().zip(&fan.answers) {
            match a {
                Some(Err(e)) => details.push(format!("{}: {}", node.url, e.message)),
                None if fan.first_answer => details.push(format!(
                    "{}: no answer within the per-node timeout of {:?} after the first node's",
                    node.url, fan.lag
                )),
                None => details.push(format!(
                    "{}: no answer within the command timeout of {:?}",
                    node.url, self.opts.command_timeout
                )),
                Some(Ok(_)) => {}
            }
        }
        details.join("; ")
    }

    /// The first wrong-type error among the answers, naming its node.
    fn wrong_type<T>(&self, answers: &Answers<T>) -> Option<BackendError> {
        self.nodes
            .iter()
            .zip(answers)
            .find_map(|(node, a)| match a {
                Some(Err(e)) if e.kind == BackendErrorKind::WrongType => Some(
                    BackendError::wrong_type(format!("{} (on {})", e.message, node.url)),
                ),
                _ => None,
            })
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        // Plain inserts and removals: a poisoned map is still consistent.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Phase 1: `SET NX PX` on every node. A node that answers after the attempt was decided handles
    /// its own grant according to the attempt's fate (see the module docs).
    fn fan_out_acquire(
        &self,
        name: &LockName,
        value: &str,
        owner: &str,
        ttl: Duration,
        attempt: &Arc<Attempt>,
    ) -> Fan<NodeAcquire> {
        let (tx, rx) = mpsc::unbounded_channel();
        let ttl_ms = ms(ttl);
        for (i, node) in self.nodes.iter().enumerate() {
            let (node, name, value, owner) = (
                node.clone(),
                name.clone(),
                value.to_owned(),
                owner.to_owned(),
            );
            let (attempt, tx) = (attempt.clone(), tx.clone());
            tokio::spawn(async move {
                let r = node.acquire(&name, &value, &owner, ttl_ms).await;
                let late = {
                    let fate = attempt.fate();
                    if *fate == Fate::Open {
                        let _ = tx.send((i, r));
                        return;
                    }
                    *fate
                };
                if matches!(r, Ok(NodeAcquire::Granted))
                    && matches!(late, Fate::Abandoned | Fate::Released)
                {
                    let _ = node.give_back(&name, &value, false).await;
                }
            });
        }
        self.fan(rx, self.nodes.len(), self.node_timeout_for(ttl))
    }

    /// Give back the grants of an abandoned attempt on every node: `publish` a release notice where
    /// deleted when it had a majority. Waits for the nodes in `wait_for` (they granted, so they
    /// answer; bounded by the per-node timeout); requests of later-answering nodes give back their own
    /// grants.
    async fn give_back(
        &self,
        name: &LockName,
        value: &str,
        publish: bool,
        wait_for: &[usize],
        timeout: Duration,
    ) {
        let mut fan = self.fan_out(wait_for.iter().copied(), timeout, |_, node| {
            let (name, value) = (name.clone(), value.to_owned());
            async move { node.give_back(&name, &value, publish).await }
        });
        fan.until(|_| false).await;
    }

    async fn acquire_inner(
        &self,
        name: &LockName,
        token: &str,
        ttl: Duration,
    ) -> Result<Acquired, BackendError> {
        let start = Instant::now();
        let n = self.nodes.len();
        let q = self.quorum;
        let validity = self.validity_for(ttl);
        let nt = self.node_timeout_for(ttl);
        let seq = self.next_attempt.fetch_add(1, Ordering::Relaxed);
        let value = format!("{token}#{seq:016x}");
        let owner = format!("{token}#");
        let attempt = Attempt::new();
        let mut cleanup = Cleanup {
            nodes: self.nodes.clone(),
            attempt: attempt.clone(),
            name: name.clone(),
            value: value.clone(),
            armed: true,
        };

        // Phase 1: the lock itself. Decided when a majority granted, or when a majority became
        // impossible and enough nodes answered to tell contention (a majority answered) from
        // unavailability.
        let mut fan = self.fan_out_acquire(name, &value, &owner, ttl, &attempt);
        let is_granted =
            |r: &Result<NodeAcquire, BackendError>| matches!(r, Ok(NodeAcquire::Granted));
        fan.until(|a| {
            let granted = a.iter().flatten().filter(|r| is_granted(r)).count();
            let refused = a.iter().flatten().filter(|r| !is_granted(r)).count();
            granted >= q || (n - refused < q && count_ok(a) >= q)
        })
        .await;
        // Refused: before naming a holder's TTL, hear the nodes that could still make a partial holder
        // a majority holder (bounded by the per-node timeout).
        fan.until(|a| !self.busy_ambiguous(a)).await;
        let granted: Vec<usize> = {
            let mut fate = attempt.fate();
            fan.drain();
            let granted: Vec<usize> = (0..n)
                .filter(|&i| matches!(fan.answers[i], Some(Ok(NodeAcquire::Granted))))
                .collect();
            *fate = if granted.len() >= q {
                Fate::Won
            } else {
                Fate::Abandoned
            };
            granted
        };
        if granted.len() < q {
            let outcome = if let Some(e) = self.wrong_type(&fan.answers) {
                Err(e)
            } else if fan.ok() < q {
                Err(self.too_few(&fan, "answered"))
            } else {
                Ok(Acquired::Busy {
                    remaining: self.busy_remaining(&fan.answers),
                })
            };
            // Silently: a notice would wake this very caller, which would spin while a real holder
            // keeps its majority.
            self.give_back(name, &value, false, &granted, nt).await;
            cleanup.armed = false;
            return outcome;
        }

        // Still valid? (ttl - elapsed - drift > 0)
        let elapsed = start.elapsed();
        if elapsed >= validity {
            self.abandon(name, &value, &attempt, nt).await;
            cleanup.armed = false;
            return Err(BackendError::unavailable(format!(
                "acquiring on a majority took {elapsed:?}, longer than the lease's validity ({validity:?} = ttl {ttl:?} - drift): the nodes are too slow for this TTL; raise the TTL"
            )));
        }
        self.leases().insert(
            token.to_owned(),
            Lease {
                attempt,
                value,
                ttl,
            },
        );
        cleanup.armed = false;
        Ok(Acquired::Granted {
            fence: None,
            validity,
        })
    }

    /// The fence of the lease `token` holds on `name`, issued when its holder asks (see the module
    /// docs, "Fence"): read from a majority of nodes that still hold the lease, then written back to a
    /// majority of nodes that still hold it. `None` when too few nodes hold it any more (its leftover
    /// keys are then released, as after a renewal that finds it lost).
    async fn fence_inner(&self, name: &LockName, token: &str) -> Result<Option<u64>, BackendError> {
        let Some(lease) = self.leases().get(token).cloned() else {
            return Ok(None);
        };
        let (value, ttl) = (lease.value.clone(), lease.ttl);
        let n = self.nodes.len();
        let q = self.quorum;
        let nt = self.node_timeout_for(ttl);
        let holds = |r: &Result<Option<u64>, BackendError>| matches!(r, Ok(Some(_)));
        let lost = |r: &Result<Option<u64>, BackendError>| matches!(r, Ok(None));

        // Read: each node that holds the lease issues its next fence.
        let mut reads = self.fan_out(0..n, nt, |_, node| {
            let (name, value) = (name.clone(), value.clone());
            async move { node.next_fence(&name, &value).await }
        });
        reads
            .until(|a| {
                let held = a.iter().flatten().filter(|r| holds(r)).count();
                let other = a.iter().flatten().filter(|r| !holds(r)).count();
                held >= q || n - other < q
            })
            .await;
        if reads.count(holds) < q {
            if let Some(e) = self.wrong_type(&reads.answers) {
                return Err(e);
            }
            if n - reads.count(lost) < q {
                self.let_go(name, &lease);
                return Ok(None);
            }
            return Err(self.too_few(&reads, "answered for the lease"));
        }
        let fence = reads
            .answers
            .iter()
            .flatten()
            .filter_map(|r| r.as_ref().ok().copied().flatten())
            .max()
            .unwrap_or(0);

        // Write back to every node that lacks it; a majority must hold the lease while it does.
        let has_it: Vec<usize> = (0..n)
            .filter(|&i| matches!(reads.answers[i], Some(Ok(Some(f))) if f >= fence))
            .collect();
        let mut raised = self.fan_out((0..n).filter(|i| !has_it.contains(i)), nt, |_, node| {
            let (name, value) = (name.clone(), value.clone());
            async move { node.raise_fence(&name, &value, fence).await }
        });
        let acked = |a: &Answers<Option<u64>>| {
            has_it.len()
                + a.iter()
                    .flatten()
                    .filter(|r| matches!(r, Ok(Some(f)) if *f >= fence))
                    .count()
        };
        raised.until(|a| acked(a) >= q).await;
        if acked(&raised.answers) < q {
            if let Some(e) = self.wrong_type(&raised.answers) {
                return Err(e);
            }
            if n - reads.count(lost).max(raised.count(lost)) < q {
                self.let_go(name, &lease);
                return Ok(None);
            }
            return Err(BackendError::unavailable(format!(
                "the fence was written back to {} of {n} nodes; a majority of {q} is needed ({})",
                acked(&raised.answers),
                self.errors(&raised)
            )));
        }
        Ok(Some(fence))
    }

    /// Give up an attempt that had a majority: every node gives back its grant (with a release notice),
    /// waiting for the nodes up to the per-node timeout.
    async fn abandon(&self, name: &LockName, value: &str, attempt: &Attempt, timeout: Duration) {
        attempt.set(Fate::Abandoned);
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.give_back(name, value, true, &all, timeout).await;
    }

    /// Whether some holder has a minority of the answers but could have a majority counting the
    /// nodes that have not answered yet.
    fn busy_ambiguous(&self, answers: &Answers<NodeAcquire>) -> bool {
        let waiting = answers.iter().filter(|a| a.is_none()).count();
        if waiting == 0 || count_ok(answers) < self.quorum {
            return false;
        }
        let granted = answers
            .iter()
            .filter(|a| matches!(a, Some(Ok(NodeAcquire::Granted))))
            .count();
        if granted >= self.quorum {
            return false;
        }
        let holders = holder_counts(answers);
        let unknown = self.nodes.len() - count_ok(answers);
        holders.values().all(|(count, _)| *count < self.quorum)
            && holders
                .values()
                .any(|(count, _)| count + unknown >= self.quorum)
    }

    /// The `remaining` of a refused acquisition: the smallest remaining TTL of a holder that holds (or,
    /// counting unanswered nodes, may hold) a majority; a short random retry delay after a split vote.
    fn busy_remaining(&self, answers: &Answers<NodeAcquire>) -> Option<Duration> {
        let unknown = answers.iter().filter(|a| !matches!(a, Some(Ok(_)))).count();
        let majority_holder = holder_counts(answers)
            .values()
            .filter(|(count, _)| count + unknown >= self.quorum)
            .filter_map(|(_, pttl)| *pttl)
            .min();
        majority_holder.or_else(|| {
            Some(Duration::from_millis(rand::random_range(
                SPLIT_RETRY_MS.0..=SPLIT_RETRY_MS.1,
            )))
        })
    }

    async fn renew_inner(&self, batch: &[RenewItem<'_>]) -> Result<Vec<Renewed>, BackendError> {
        let n = self.nodes.len();
        let q = self.quorum;
        // Leases this backend does not know (released, lost, or never granted here) are not held.
        let known: Vec<(usize, Lease)> = {
            let leases = self.leases();
            batch
                .iter()
                .enumerate()
                .filter_map(|(j, item)| leases.get(item.token).map(|l| (j, l.clone())))
                .collect()
        };
        let mut out = vec![Renewed::NotHeld; batch.len()];
        if known.is_empty() {
            return Ok(out);
        }
        let items = Arc::new(RenewBatch {
            names: known.iter().map(|(j, _)| batch[*j].name.clone()).collect(),
            leases: known.iter().map(|(_, l)| l.clone()).collect(),
            ttl_ms: known.iter().map(|(j, _)| ms(batch[*j].ttl)).collect(),
        });
        // No per-node cut-off: a renewal that has its majority is decided at once whatever the other
        // nodes do, and one that needs a slow node can only gain by waiting for it (the watchdog
        // enforces the lease deadline by itself, also while a renewal is in flight).
        let mut fan = self.fan_out(0..n, self.opts.command_timeout, |_, node| {
            let items = items.clone();
            async move { node.renew(&items).await }
        });
        let m = known.len();
        // Decided when every lease has a majority of confirmations or can no longer get one, and a
        // majority answered (to tell "not held" from "unavailable").
        fan.until(|a| {
            count_ok(a) >= q
                && (0..m).all(|k| {
                    let (yes, no) = tally(a, k);
                    yes >= q || no > n - q
                })
        })
        .await;
        if fan.ok() < q {
            return Err(self.too_few(&fan, "answered the renewal"));
        }
        let mut extended = vec![false; m];
        for (k, (j, _)) in known.iter().enumerate() {
            if tally(&fan.answers, k).0 >= q {
                extended[k] = true;
                out[*j] = Renewed::Extended(self.validity_for(batch[*j].ttl));
            }
        }
        self.after_renewal(fan, items, extended);
        Ok(out)
    }

    /// In the background: release the leftovers of leases that lost their majority, and (with
    /// `reacquire_on_renew`) re-establish live leases on nodes where their key vanished, also for nodes
    /// that answer after the decision.
    fn after_renewal(&self, mut fan: Fan<Vec<i64>>, items: Arc<RenewBatch>, extended: Vec<bool>) {
        for (k, lease) in items.leases.iter().enumerate() {
            if !extended[k] {
                self.let_go(&items.names[k], lease);
            }
        }
        if !self.opts.reacquire_on_renew || !extended.iter().any(|e| *e) {
            return;
        }
        let nodes = self.nodes.clone();
        tokio::spawn(async move {
            let mut seen = vec![false; nodes.len()];
            loop {
                for (i, a) in fan.answers.iter().enumerate() {
                    let Some(Ok(reply)) = a else { continue };
                    if std::mem::replace(&mut seen[i], true) {
                        continue;
                    }
                    for k in (0..extended.len()).filter(|&k| extended[k] && reply[k] == 0) {
                        rejoin(
                            &nodes[i],
                            &items.names[k],
                            &items.leases[k],
                            items.ttl_ms[k],
                        )
                        .await;
                    }
                }
                if fan.pending == 0 {
                    return;
                }
                // Late answers, bounded by the nodes' command timeout.
                match fan.rx.recv().await {
                    Some((i, r)) => {
                        fan.answers[i] = Some(r);
                        fan.pending -= 1;
                    }
                    None => return,
                }
            }
        });
    }

    /// Forget a lease that lost its majority and release its leftover keys, in the background.
    fn let_go(&self, name: &LockName, lease: &Lease) {
        self.forget(&lease.value);
        lease.attempt.set(Fate::Released);
        for node in &self.nodes {
            let (node, name, value) = (node.clone(), name.clone(), lease.value.clone());
            tokio::spawn(async move {
                let _ = node.release(&name, &value, None).await;
            });
        }
    }

    /// Remove the lease whose keys hold `value` from the registry.
    fn forget(&self, value: &str) {
        let token = value.split('#').next().unwrap_or_default();
        self.leases().remove(token);
    }

    async fn release_inner(
        &self,
        name: &LockName,
        token: &str,
        keep_for: Option<Duration>,
    ) -> Result<Released, BackendError> {
        let n = self.nodes.len();
        let q = self.quorum;
        let Some(lease) = self.leases().remove(token) else {
            return Ok(Released::NotHeld);
        };
        // From now on a late grant or rejoin of this lease gives itself back.
        lease.attempt.set(Fate::Released);
        let started = Instant::now();
        let mut fan = self.fan_out(0..n, self.opts.command_timeout, |_, node| {
            let (name, value) = (name.clone(), lease.value.clone());
            async move { node.release(&name, &value, keep_for).await }
        });
        let confirmed = |r: &Result<Released, BackendError>| {
            matches!(r, Ok(Released::Deleted) | Ok(Released::Kept))
        };
        fan.until(|a| {
            let yes = a.iter().flatten().filter(|r| confirmed(r)).count();
            let no = a.iter().flatten().filter(|r| !confirmed(r)).count();
            yes >= q || (no > n - q && count_ok(a) >= q)
        })
        .await;
        // Decided; give slower nodes a moment (as long as the decision took, at least 2 ms), so that
        // normally every node has dropped the key when this returns, while a stopped node does not
        // hold up the caller. Its release is still sent and completes in the background.
        let grace = started.elapsed().max(Duration::from_millis(2));
        fan.rest_until(Instant::now() + grace).await;
        let yes = fan.count(|r| confirmed(r));
        let kept = fan.count(|r| matches!(r, Ok(Released::Kept)));
        if yes >= q {
            Ok(if kept > 0 {
                Released::Kept
            } else {
                Released::Deleted
            })
        } else if fan.ok() >= q {
            Ok(Released::NotHeld)
        } else {
            Err(self.too_few(&fan, "answered the release"))
        }
    }

    async fn subscribe_inner(&self, name: &LockName) -> Subscription {
        let (sub, first) = self.hub.register(&name.channel);
        let wait = self.opts.command_timeout;
        let mut fan = self.fan_out(0..self.nodes.len(), wait, |_, node| {
            let channel = name.channel.clone();
            async move {
                if node.backend.watch_channel(&channel, first, wait).await {
                    Ok(())
                } else {
                    Err(BackendError::unavailable("not subscribed"))
                }
            }
        });
        if first {
            // A majority listening means every release by a majority holder publishes on one of them.
            let q = self.quorum;
            fan.until(|a| count_ok(a) >= q).await;
        }
        sub
    }
}

/// Re-establish `lease` on `node` (`SET NX`) unless it was released meanwhile; if it is released while
/// the request runs, give the key back (so a rejoin can never outlive its lease).
async fn rejoin(node: &Node, name: &LockName, lease: &Lease, ttl_ms: u64) {
    if *lease.attempt.fate() != Fate::Won {
        return;
    }
    match node.rejoin(name, &lease.value, ttl_ms).await {
        Ok(set) => {
            if set && *lease.attempt.fate() != Fate::Won {
                let _ = node.give_back(name, &lease.value, false).await;
            } else if set {
                tracing::debug!(node = %node.url, key = %name.key, "lockattr: re-established a live lease on a node that had lost it");
            }
        }
        Err(e) => {
            tracing::debug!(node = %node.url, key = %name.key, error = %e, "lockattr: re-establishing a lease failed")
        }
    }
}

/// Busy answers per holder: how many nodes, and the smallest remaining TTL.
fn holder_counts(answers: &Answers<NodeAcquire>) -> HashMap<&str, (usize, Option<Duration>)> {
    let mut holders: HashMap<&str, (usize, Option<Duration>)> = HashMap::new();
    for a in answers.iter().flatten() {
        if let Ok(NodeAcquire::Busy { pttl, holder }) = a {
            let e = holders.entry(holder.as_str()).or_insert((0, None));
            e.0 += 1;
            e.1 = match (e.1, *pttl) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
    }
    holders
}

fn count_ok<T>(answers: &Answers<T>) -> usize {
    answers.iter().flatten().filter(|r| r.is_ok()).count()
}

/// (confirmations, refusals) of lease `k` in renewal answers; a failed node counts as a refusal.
fn tally(answers: &Answers<Vec<i64>>, k: usize) -> (usize, usize) {
    let mut yes = 0;
    let mut no = 0;
    for a in answers.iter().flatten() {
        match a {
            Ok(reply) if reply.get(k) == Some(&1) => yes += 1,
            _ => no += 1,
        }
    }
    (yes, no)
}

impl Backend for RedlockBackend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Acquired, BackendError>> {
        Box::pin(self.acquire_inner(name, token, ttl))
    }

    fn renew<'a>(
        &'a self,
        batch: &'a [RenewItem<'a>],
    ) -> BoxFuture<'a, Result<Vec<Renewed>, BackendError>> {
        Box::pin(self.renew_inner(batch))
    }

    fn release<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        keep_for: Option<Duration>,
    ) -> BoxFuture<'a, Result<Released, BackendError>> {
        Box::pin(self.release_inner(name, token, keep_for))
    }

    fn fence<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        Box::pin(self.fence_inner(name, token))
    }

    fn subscribe<'a>(&'a self, name: &'a LockName) -> BoxFuture<'a, Subscription> {
        Box::pin(self.subscribe_inner(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("redis://127.0.0.1:{}", 40000 + i))
            .collect()
    }

    fn invalid(n: usize) -> String {
        match RedlockBackend::open_lazy(&urls(n), RedlockOptions::default()) {
            Err(LockError::InvalidOption(m)) => m,
            other => panic!("expected InvalidOption for {n} nodes, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn node_count_must_be_odd_and_at_least_three() {
        assert!(invalid(0).contains("none were given"));
        let one = invalid(1);
        assert!(
            one.contains("single-node") && one.contains(".url(url)"),
            "{one}"
        );
        assert!(invalid(2).contains("add a third node"));
        let four = invalid(4);
        assert!(
            four.contains("odd number") && four.contains("add or remove one node"),
            "{four}"
        );
        assert!(invalid(6).contains("majority of 6 is 4"));
        for n in [3, 5, 7] {
            let b = RedlockBackend::open_lazy(&urls(n), RedlockOptions::default()).unwrap();
            assert_eq!(b.node_count(), n);
            assert_eq!(b.quorum(), n / 2 + 1);
        }
    }

    #[tokio::test]
    async fn repeated_nodes_and_bad_options_are_refused() {
        let mut u = urls(3);
        u[2] = format!(" {} ", u[0]);
        let e = RedlockBackend::open_lazy(&u, RedlockOptions::default()).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let e = RedlockBackend::open_lazy(
            &urls(3),
            RedlockOptions::default().node_timeout(Duration::ZERO),
        )
        .unwrap_err();
        assert!(e.to_string().contains("node timeout"), "{e}");
        let e = RedlockBackend::open_lazy(&urls(3), RedlockOptions::default().drift_factor(0.5))
            .unwrap_err();
        assert!(e.to_string().contains("drift factor"), "{e}");
        let mut u = urls(3);
        u[1] = "http://x".into();
        let e = RedlockBackend::open_lazy(&u, RedlockOptions::default()).unwrap_err();
        assert!(matches!(e, LockError::InvalidUrl { .. }), "{e}");
    }

    #[tokio::test]
    async fn timing_math() {
        let b = RedlockBackend::open_lazy(&urls(3), RedlockOptions::default()).unwrap();
        let s = Duration::from_secs;
        let m = Duration::from_millis;
        assert_eq!(b.drift_for(s(10)), m(102));
        assert_eq!(b.validity_for(s(10)), m(9898));
        assert_eq!(b.node_timeout_for(s(1)), m(100));
        assert_eq!(b.node_timeout_for(m(20)), MIN_NODE_TIMEOUT);
        assert_eq!(b.node_timeout_for(s(60)), s(2)); // capped by the command timeout
        let b = RedlockBackend::open_lazy(&urls(3), RedlockOptions::default().node_timeout(m(7)))
            .unwrap();
        assert_eq!(b.node_timeout_for(s(60)), m(7));
        assert!(b
            .describe()
            .starts_with("redlock[redis://127.0.0.1:40000, "));
    }

    #[test]
    fn split_vote_retries_soon_and_majority_holder_reports_its_ttl() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let b = RedlockBackend::open_lazy(&urls(3), RedlockOptions::default()).unwrap();
        let busy = |h: &str, ms: u64| {
            Some(Ok(NodeAcquire::Busy {
                pttl: Some(Duration::from_millis(ms)),
                holder: h.into(),
            }))
        };
        // Holder "a" on two nodes: its smallest TTL.
        let a: Answers<NodeAcquire> = vec![
            busy("a", 9000),
            busy("a", 8000),
            Some(Ok(NodeAcquire::Granted)),
        ];
        assert_eq!(b.busy_remaining(&a), Some(Duration::from_millis(8000)));
        // Three different partial holders: nobody has a majority, retry soon.
        let a: Answers<NodeAcquire> = vec![
            busy("a", 9000),
            busy("b", 9000),
            Some(Ok(NodeAcquire::Granted)),
        ];
        let r = b.busy_remaining(&a).unwrap();
        assert!(r <= Duration::from_millis(50), "{r:?}");
        // One unanswered node could complete "a"'s majority: wait for "a".
        let a: Answers<NodeAcquire> = vec![busy("a", 9000), None, Some(Ok(NodeAcquire::Granted))];
        assert_eq!(b.busy_remaining(&a), Some(Duration::from_millis(9000)));
    }
}
