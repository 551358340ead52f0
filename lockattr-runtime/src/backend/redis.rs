//! The Redis single-node backend.
//!
//! Acquires and releases go on connections their calls own outright (see the `wire` module): the
//! calling task writes the request and reads the reply itself, with no connection task in between,
//! which takes two task wake-ups off every round trip (over TLS, which redis-rs sets up, they go on
//! its multiplexed connection instead). At most two such calls are in flight (see `Coalescer`), so a
//! client keeps two or three of these connections. One multiplexed, auto-reconnecting connection
//! carries the other commands (batched renewals, fences, hand-overs), which may be many at once;
//! one more, owned by a background task, carries release notices for every waiter of the client.
//!
//! A lock that no local waiter watches (so it is probably free) is taken with a plain `SET NX PX`,
//! the cheapest acquire a server runs, and released with a small owner-checked delete script
//! (`RELEASE1_LUA`), the same work as the leanest lock; the fence of such a grant is issued when the
//! holder asks for it (`FENCE_LUA`, owner-checked). Everything else (busy locks, minimum hold times,
//! local waiters) runs in one Lua script (`OPS_LUA`) and renewals in another, so each call is one
//! atomic round trip. Concurrent acquires and releases are coalesced (see `Coalescer`): under load one
//! round trip carries the releases of many callers in one script call (`RELEASES_LUA` when they are
//! all plain releases) and their plain acquires pipelined behind it. `EVALSHA` falls back to loading
//! the script when the server answers `NOSCRIPT`
//! (after a restart or `SCRIPT FLUSH`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::wire::{LockConn, Wires};
use super::{
    Acquired, Backend, BoxFuture, HandedOver, NoticeHub, Released, RenewItem, Renewed, Subscription,
};
use crate::error::{BackendError, LockError};
use crate::key::LockName;

/// Owner-checked batch renewal: `PEXPIRE` each key that still holds its token (marked or not). KEYS = n
/// lock keys, ARGV = n tokens then n TTLs in ms. Reply: one 1/0 per key.
pub(crate) const RENEW_LUA: &str = r#"
local n = #KEYS
local out = {}
for i = 1, n do
  local v = redis.pcall('GET', KEYS[i])
  if v == ARGV[i] or v == ARGV[i] .. '*' then
    redis.call('PEXPIRE', KEYS[i], ARGV[n + i])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"#;

/// The owner-checked release of one lock, shared by [`RELEASE_LUA`] and [`OPS_LUA`]: `k` is the lock,
/// `tok` the owner token, `mode` `0` delete, `-1` delete and publish the release notice in any case (a
/// waiter of the releasing client watches the channel), `ms > 0` keep the lock for that long (minimum
/// hold time). A deleted lock that carries the waiter mark (a trailing `*` that a busy acquire left)
/// publishes its notice on `lock:released`, so an uncontended release costs no `PUBLISH`.
/// Returns 1 deleted, 2 kept for the minimum hold time, 0 not ours.
macro_rules! release_one_lua {
    () => {
        r#"
local function release_one(k, tok, mode)
  local v = redis.pcall('GET', k)
  if v ~= tok and v ~= tok .. '*' then
    return 0
  end
  if mode > 0 then
    redis.call('PEXPIRE', k, mode)
    return 2
  end
  redis.call('DEL', k)
  if mode < 0 or v ~= tok then
    redis.call('PUBLISH', k .. ':released', '1')
  end
  return 1
end
"#
    };
}

/// The fence counter update, shared by [`OPS_LUA`] and the Cluster acquire: `take_fences(c, n, px)`
/// issues `n` consecutive fences from counter `c` and returns the first, `base = max(last + 1, server
/// clock in µs)`; the counter keeps the last one issued, for `px` ms when given (a per-lock counter,
/// which would otherwise outlive its lock forever), else without expiry (one counter per prefix). The
/// clock seed keeps fences increasing after a restart that lost the counter, or a failover to a
/// replica whose counter is behind. On the common path this is
/// `TIME` plus one `SET c last GET`. A counter that does not hold a whole number below 2^53 is left as
/// it was and the call returns `nil` and `T:message` (wrong type); any other error `nil` and
/// `E:message`. The caller undoes its grants then.
macro_rules! take_fences_lua {
    () => {
        r#"
local function take_fences(c, n, px)
  local t = redis.call('TIME')
  local base = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local keep = {}
  if px then
    keep = {'PX', px}
  end
  local prev = redis.pcall('SET', c, string.format('%d', base + n - 1), 'GET', unpack(keep))
  if type(prev) == 'table' then
    if string.find(prev.err, 'WRONGTYPE', 1, true) then
      return nil, 'T:fence counter ' .. c .. ' holds a ' .. redis.call('TYPE', c)['ok']
    end
    return nil, 'E:' .. prev.err
  end
  if prev then
    local last = tonumber(prev)
    if last == nil or last < 0 or last >= 9007199254740992 or last % 1 ~= 0 then
      redis.call('SET', c, prev)
      return nil, 'T:fence counter ' .. c .. ' does not hold a whole number below 2^53'
    end
    if last + 1 > base then
      base = last + 1
      redis.call('SET', c, string.format('%d', base + n - 1), unpack(keep))
    end
  end
  return base
end
"#
    };
}
pub(crate) use take_fences_lua;

/// How long a per-lock fence counter (Cluster, Redlock) outlives the lock's last grant: a day past the
/// lock's TTL. Counters of locks that are no longer taken expire instead of piling up (one per lock key
/// ever taken); the next grant of such a lock starts again from the server clock in µs, above every
/// fence issued a day earlier unless the clock went back that far.
pub(crate) const FENCE_COUNTER_KEEP: Duration = Duration::from_secs(24 * 3600);

/// The release of one lock with no minimum hold time and no local waiter (what a release that finds a
/// free slot sends): delete it if it holds the token, and publish the release notice when it carries
/// the waiter mark. KEYS: the lock; ARGV: the token. Reply: 1 deleted, 0 not ours. The same work as
/// the owner-checked delete every Redis lock library sends, plus the mark check, and as cheap on the
/// server (no table, no function call).
const RELEASE1_LUA: &str = r#"
local v = redis.pcall('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
elseif v == ARGV[1] .. '*' then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1] .. ':released', '1')
  return 1
end
return 0
"#;

/// The coalesced call of a batch that holds only releases with no minimum hold time and no local
/// waiter (most batches under load): per lock, what [`RELEASE1_LUA`] does. KEYS: the locks; ARGV: one
/// token per lock. Reply: per lock 1 deleted, 0 not ours. The same work as `release_one` in mode 0,
/// with two arguments per lock instead of three and no function call: about a fifth less server time
/// per lock than [`OPS_LUA`]'s release (BENCHMARKS.md, session 9).
const RELEASES_LUA: &str = r#"
local out = {}
for i = 1, #KEYS do
  local k, tok = KEYS[i], ARGV[i]
  local v = redis.pcall('GET', k)
  if v == tok then
    redis.call('DEL', k)
    out[i] = 1
  elseif v == tok .. '*' then
    redis.call('DEL', k)
    redis.call('PUBLISH', k .. ':released', '1')
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"#;

/// The fence of a grant made by a plain `SET NX PX` (an acquire of a lock no local waiter watched), issued when
/// the holder asks for it: if the lock still holds the token (marked or not), take the next fence of
/// the prefix's counter (see `take_fences`). KEYS: the counter, the lock; ARGV: the token. Reply: the
/// fence (> 0), 0 when the lock is not ours, or `T:`/`E:` message as in [`OPS_LUA`].
const FENCE_LUA: &str = concat!(
    take_fences_lua!(),
    r#"
local v = redis.pcall('GET', KEYS[2])
if v ~= ARGV[1] and v ~= ARGV[1] .. '*' then
  return 0
end
local base, bad = take_fences(KEYS[1], 1)
if bad then
  return bad
end
return base
"#
);

/// The hand-over of a lock to the next local waiter (see [`Backend::hand_over`]): if the lock holds
/// the token without the waiter mark, set it to the next token with the next TTL (`SET` resets the
/// TTL and drops any mark); otherwise release it as `release_one` in mode 0 does (publishing the
/// notice when it is marked). KEYS: the lock; ARGV: the token, the next token, the next TTL in ms.
/// Reply: 3 handed over, else `release_one`'s code (1 deleted, 0 not ours).
pub(crate) const HANDOVER_LUA: &str = concat!(
    release_one_lua!(),
    r#"
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 3
end
return release_one(KEYS[1], ARGV[1], 0)
"#
);

/// Owner-checked release of one or many locks, for the Cluster and Redlock backends (they send one
/// lock). KEYS: the locks; ARGV: `release` (tells this call from a renewal in a `MONITOR` trace), then
/// per lock its token and mode (see `release_one` above). Reply: one code per lock.
pub(crate) const RELEASE_LUA: &str = concat!(
    release_one_lua!(),
    r#"
local out = {}
for i = 1, #KEYS do
  out[i] = release_one(KEYS[i], ARGV[2 * i], tonumber(ARGV[2 * i + 1]))
end
return out
"#
);

/// The single-node backend's one script: releases, then acquires, of any number of locks in one call
/// (one operation, or the operations that queued meanwhile, see [`Coalescer`]; queued acquires of
/// locks no local waiter watches go as plain `SET NX PX`s beside it instead).
///
/// KEYS: the fence counter of the acquired locks' prefix (`prefix:fence`), the locks to release, the
/// locks to acquire. ARGV: the number of releases, then token and mode per release (see
/// `release_one`), then token and TTL in ms per acquire.
///
/// Each acquire is one `SET NX PX GET`: on success the lock is granted; when busy the same call
/// returned the holder's value, and the lock gets the waiter mark (a trailing `*`, once; `APPEND` keeps
/// the TTL) so that its release publishes a notice.
///
/// The grants of one call share one counter update: fences are `base, base + 1, ...` in lock order,
/// where `base = max(last + 1, server clock in µs)`, and the counter keeps the last fence issued. One
/// counter per prefix (not per lock) keeps fences strictly increasing per lock (they increase across
/// all locks), costs one write per call instead of one per lock, and the clock seed keeps them
/// increasing after a restart that lost the counter or a failover to a replica that is behind. A
/// counter that does not hold a whole number below 2^53 is left as it was, and every lock this call
/// took is given back before the reply.
///
/// Reply: one entry per release (its code), then one per acquire: a fence (> 0) granted; `-pttl` (≤ 0)
/// busy; `T:message` the lock or the counter holds something else (wrong type); `E:message` any other
/// error (e.g. `OOM`).
const OPS_LUA: &str = concat!(
    release_one_lua!(),
    take_fences_lua!(),
    r#"
local nr = tonumber(ARGV[1])
local out, granted = {}, 0
for i = 1, nr do
  out[i] = release_one(KEYS[i + 1], ARGV[2 * i], tonumber(ARGV[2 * i + 1]))
end
for i = nr + 2, #KEYS do
  local lk, tok = KEYS[i], ARGV[2 * i - 2]
  local held = redis.pcall('SET', lk, tok, 'NX', 'PX', ARGV[2 * i - 1], 'GET')
  if not held then
    granted = granted + 1
    out[i - 1] = granted
  elseif type(held) == 'table' then
    if string.find(held.err, 'WRONGTYPE', 1, true) then
      out[i - 1] = 'T:holds a Redis ' .. redis.call('TYPE', lk)['ok'] .. ' value'
    else
      out[i - 1] = 'E:' .. held.err
    end
  else
    local pttl = redis.call('PTTL', lk)
    if pttl < 0 then
      out[i - 1] = 'T:holds a string without a TTL'
    else
      if #held == #tok then
        redis.call('APPEND', lk, '*')
      end
      out[i - 1] = -pttl
    end
  end
end
if granted == 0 then
  return out
end
local base, bad = take_fences(KEYS[1], granted)
for i = nr + 1, #out do
  local v = out[i]
  if type(v) == 'number' and v > 0 then
    if bad then
      redis.call('DEL', KEYS[i + 1])
      out[i] = bad
    else
      out[i] = base + v - 1
    end
  end
end
return out
"#
);

static OPS: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(OPS_LUA));
static RENEW: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(RENEW_LUA));
static RELEASES: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(RELEASES_LUA));
static RELEASE1: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(RELEASE1_LUA));
static FENCE: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(FENCE_LUA));
static HANDOVER: Lazy<redis::Script> = Lazy::new(|| redis::Script::new(HANDOVER_LUA));

/// What a [`RedisBackend`] has sent since it was opened (see [`RedisBackend::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Acquires sent as a plain `SET NX PX` (of locks no local waiter watched; see [`RedisBackend`]).
    /// Server-side counters cannot tell them from the `SET`s that scripts run; every other command
    /// lockattr sends is a script call, which they count.
    pub plain_acquires: u64,
    /// Locks handed straight to a waiter of the same client ([`Backend::hand_over`]).
    pub hand_overs: u64,
}

/// Options for [`RedisBackend::open`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Bound on each command (and each connection attempt).
    pub command_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            command_timeout: Duration::from_secs(2),
        }
    }
}

/// Locks on one Redis server (or a Redis-protocol server: Valkey, KeyDB, Dragonfly with Lua).
pub struct RedisBackend {
    client: redis::Client,
    conn: ConnectionManager,
    describe: String,
    timeout: Duration,
    hub: NoticeHub,
    subscriber: SubscriberSlot,
    /// Coalesces concurrent acquires and releases (see [`Coalescer`]).
    batch: Arc<Batching>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Mask the password of a URL for messages: `redis://user:secret@host` -> `redis://user:***@host`.
///
/// Conservative on malformed input: everything between `://` and the last `@` is treated as user
/// info (a password may hold a `/` or `@` that the user forgot to percent-encode), and only a user
/// name free of `/` is kept.
pub(crate) fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return match url.rfind('@') {
            Some(at) => format!("***@{}", &url[at + 1..]),
            None => url.to_owned(),
        };
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) if !user.contains('/') => format!("{user}:***"),
        _ => "***".to_owned(),
    };
    format!("{}://{}@{}", &url[..scheme_end], masked, &rest[at + 1..])
}

/// rustls needs a process-wide crypto provider; without one it panics at the first TLS connection
/// (and it cannot pick one by itself when the application's dependencies enable both `ring` and
/// `aws-lc-rs`). Install `ring`'s unless the application installed one already.
#[cfg(feature = "tls")]
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// `rest` (a URL after its scheme) without its fragment, and the fragment with its `#` (empty when
/// there is none), to be put back on each URL made from a multi-host URL (`#insecure`).
pub(crate) fn split_fragment(rest: &str) -> (&str, &str) {
    match rest.find('#') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    }
}

/// Check and parse a Redis URL into a client, with errors that name the fix.
pub(crate) fn parse_url(url: &str) -> Result<redis::Client, LockError> {
    let shown = mask_url(url);
    let bad = |reason: String| LockError::InvalidUrl {
        url: shown.clone(),
        reason,
    };
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(bad(
            "the URL is empty; use e.g. \"redis://127.0.0.1:6379\"".into()
        ));
    }
    let scheme = trimmed.split("://").next().unwrap_or("");
    if !trimmed.contains("://") {
        return Err(bad("missing scheme; use \"redis://host:port\", \"rediss://host:port\" or \"unix:///path/to/redis.sock\"".into()));
    }
    match scheme {
        "redis" | "unix" | "redis+unix" => {}
        "rediss" => {
            if !cfg!(feature = "tls") {
                return Err(bad("TLS (`rediss://`) needs the `tls` feature of lockattr-runtime: `lockattr-runtime = { version = \"..\", features = [\"tls\"] }`".into()));
            }
            #[cfg(feature = "tls")]
            ensure_crypto_provider();
        }
        other => {
            return Err(bad(format!(
                "unsupported scheme `{other}://`; use \"redis://\", \"rediss://\" (feature `tls`) or \"unix://\""
            )))
        }
    }
    redis::Client::open(trimmed).map_err(|e| {
        bad(format!(
            "{e}; expected e.g. \"redis://:password@127.0.0.1:6379/0\""
        ))
    })
}

/// Whether an error's text says the server's TLS certificate was not trusted.
pub(crate) fn untrusted_certificate(text: &str) -> bool {
    text.contains("invalid peer certificate") || text.contains("UnknownIssuer")
}

pub(crate) fn map_err(e: redis::RedisError) -> BackendError {
    let text = e.to_string();
    if untrusted_certificate(&text) {
        return BackendError::unavailable(format!(
            "{text} (the server's TLS certificate is not trusted: add its CA to this machine's trust \
             store, or, for development against a self-signed certificate only, end the URL with \
             `#insecure`)"
        ));
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        return BackendError::other(format!(
            "{text} (the server refused the credentials: put the right user name and password in \
             the URL, e.g. `redis://user:password@host:6379`, or `redis://:password@host:6379` \
             for a server with only `requirepass`)"
        ));
    }
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
        )
    {
        return BackendError::unavailable(text);
    }
    map_server_error(text)
}

/// An error the server answered, by its text (also the per-lock errors a script reports itself).
fn map_server_error(text: String) -> BackendError {
    // redis-rs shows an error reply `LOCKATTR_WRONGTYPE msg` as `LOCKATTR_WRONGTYPE msg` or, when it
    // takes the first word for an error code it does not know, as `"LOCKATTR_WRONGTYPE": msg`.
    if let Some(pos) = text.find("LOCKATTR_WRONGTYPE") {
        let msg = text[pos + "LOCKATTR_WRONGTYPE".len()..].trim_start_matches(['"', ':', ' ']);
        return BackendError::wrong_type(msg.trim().to_owned());
    }
    if text.contains("WRONGTYPE") {
        return BackendError::wrong_type(format!("holds a value of another type ({text})"));
    }
    if text.contains("BUSY") || text.contains("MASTERDOWN") || text.contains("READONLY") {
        return BackendError::unavailable(text);
    }
    BackendError::other(text)
}

pub(crate) fn timed_out(timeout: Duration) -> BackendError {
    BackendError::unavailable(format!(
        "no answer within the command timeout of {timeout:?}"
    ))
}

impl RedisBackend {
    /// Open a backend for `url` without connecting yet (the first command connects).
    pub fn open_lazy(url: &str, opts: RedisOptions) -> Result<RedisBackend, LockError> {
        let client = parse_url(url)?;
        // The connection manager spawns its driver task at once: it needs a runtime.
        tokio::runtime::Handle::try_current().map_err(|_| LockError::NoRuntime)?;
        Self::from_client(client, mask_url(url.trim()), opts)
    }

    /// Like [`open_lazy`](Self::open_lazy) for an already parsed client (the Sentinel backend opens the
    /// primary it resolved this way); `describe` names it in errors and logs.
    pub(crate) fn from_client(
        client: redis::Client,
        describe: String,
        opts: RedisOptions,
    ) -> Result<RedisBackend, LockError> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.command_timeout))
            .set_connection_timeout(Some(opts.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
                LockError::Unavailable {
                    backend: describe.clone(),
                    key: None,
                    message: e.to_string(),
                }
            })?;
        let wires = Wires::for_server(client.get_connection_info());
        Ok(RedisBackend {
            client,
            describe,
            timeout: opts.command_timeout,
            hub: NoticeHub::default(),
            subscriber: SubscriberSlot::default(),
            batch: Arc::new(Batching {
                conn: match wires {
                    Some(wires) => LockConn::Wires(Arc::new(wires)),
                    None => LockConn::Manager(conn.clone()),
                },
                plain_acquires: AtomicU64::new(0),
                hand_overs: AtomicU64::new(0),
                timeout: opts.command_timeout,
                ops: Coalescer::default(),
            }),
            conn,
        })
    }

    /// Open a backend for `url` and check that the server answers (within the command timeout).
    pub async fn open(url: &str, opts: RedisOptions) -> Result<RedisBackend, LockError> {
        let backend = Self::open_lazy(url, opts)?;
        backend
            .ping()
            .await
            .map_err(|e| super::unreachable_at_open(backend.describe.clone(), e))?;
        Ok(backend)
    }

    /// What this backend has sent since it was opened: for diagnostics and benchmarks (server-side
    /// command counters cannot tell lockattr's plain `SET NX PX` acquires from the `SET`s that
    /// scripts run).
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            plain_acquires: self.batch.plain_acquires.load(Ordering::Relaxed),
            hand_overs: self.batch.hand_overs.load(Ordering::Relaxed),
        }
    }

    /// Send `PING` (bounded by the command timeout).
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let fut = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) => Err(timed_out(self.timeout)),
        }
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(timed_out(self.timeout)),
        }
    }

    /// Report release notices to `hub` instead of this backend's own (several servers of one Redlock
    /// deployment share one hub). Call before the first subscription.
    pub(crate) fn with_hub(mut self, hub: NoticeHub) -> RedisBackend {
        self.hub = hub;
        self
    }

    /// Run a prepared script on this server, bounded by the command timeout, with errors mapped as
    /// for the built-in scripts (`LOCKATTR_WRONGTYPE ...` replies become [`BackendError::wrong_type`]).
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        self.bounded(inv.invoke_async(&mut conn)).await
    }

    /// Have this server's release-notice connection subscribe to `channel` (the caller registered the
    /// local waiter in the hub). With `confirm`, wait up to `wait` for the server's confirmation and
    /// return whether it came; without, return `true` once the request is queued.
    pub(crate) async fn watch_channel(&self, channel: &str, confirm: bool, wait: Duration) -> bool {
        let (client, hub, timeout) = (self.client.clone(), self.hub.clone(), self.timeout);
        self.subscriber
            .watch(channel, confirm, wait, move |rx| {
                run_subscriber(client, hub, rx, timeout)
            })
            .await
    }
}

/// The time left until `deadline` (zero once it has passed).
fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

pub(crate) fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// An `EVALSHA` of `script` with `numkeys` keys; add the keys and arguments (`args` of them, about
/// `bytes` long in all, counting the keys), then [`RedisBackend::eval`]. One contiguous argument
/// buffer, sized once, instead of one allocation per argument or a buffer grown argument by argument.
fn evalsha(script: &redis::Script, numkeys: usize, args: usize, bytes: usize) -> redis::Cmd {
    // `EVALSHA`, the 40-digit hash and the key count come first.
    let mut cmd = redis::Cmd::with_capacity(3 + args, 7 + 40 + NUM_LEN + bytes);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(numkeys);
    cmd
}

/// The length of a number argument, at most (`u64`/`i64` in decimal).
const NUM_LEN: usize = 20;

/// Run a built [`evalsha`] command on `conn` by `deadline`; when the server does not know the script
/// (`NOSCRIPT`: after a restart or `SCRIPT FLUSH`), load it and run the command again. A call that
/// misses the deadline reports the command `timeout`. With `again`, for commands that may run twice
/// (a renewal, a fence request), a call that finds the connection dropped is sent once more, on the
/// connection the manager reconnects: after a server restart, the first command on the shared
/// connection fails that way, and nothing else would have noticed the restart (the lock calls go on
/// their own connections).
async fn eval_on<T: redis::FromRedisValue>(
    conn: &LockConn,
    deadline: Instant,
    timeout: Duration,
    script: &redis::Script,
    cmd: &redis::Cmd,
    again: bool,
) -> Result<T, BackendError> {
    let fut = async move {
        let mut tries = if again { 2 } else { 1 };
        loop {
            tries -= 1;
            let reply = match conn
                .request(cmd)
                .await
                .and_then(redis::Value::extract_error)
            {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    script
                        .prepare_invoke()
                        .load_async(&mut conn.clone())
                        .await?;
                    conn.request(cmd)
                        .await
                        .and_then(redis::Value::extract_error)
                }
                other => other,
            };
            match reply {
                Err(e) if tries > 0 && e.is_connection_dropped() => continue,
                other => return Ok(redis::from_redis_value(other?)?),
            }
        }
    };
    match tokio::time::timeout(until(deadline), fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(timed_out(timeout)),
    }
}

impl RedisBackend {
    /// Run `cmd` (of `script`) on the shared connection, within the command timeout; `again`: see
    /// [`eval_on`].
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        cmd: &redis::Cmd,
        again: bool,
    ) -> Result<T, BackendError> {
        let deadline = Instant::now() + self.timeout;
        let conn = LockConn::Manager(self.conn.clone());
        eval_on(&conn, deadline, self.timeout, script, cmd, again).await
    }
}

/// Calls that any operation may start. An operation (acquire or release) that finds this many in
/// flight is queued, and queued operations go out together in one round trip when the call ends:
/// the releases (and acquires of watched locks) in one script call, the other acquires as plain
/// `SET NX PX`s pipelined behind it. Under load one round trip carries many locks, so the per-request
/// cost on both sides (system calls, script set-up) is shared. An idle client sends each operation at
/// once, exactly as without batching. One regular call (rather than two) makes the batches under load
/// about twice as large: with 64 callers on 2 cores, less client and server time per acquisition and
/// more throughput, and no loss at 2–8 callers, whose round trips are bound by the network anyway
/// (BENCHMARKS.md, session 9).
const MAX_IN_FLIGHT: usize = 1;
/// Script calls in flight at most, counting the extra one that carries a full batch: when the regular
/// call is busy and [`FULL_BATCH`] operations have queued, the queue goes out at once instead of
/// waiting for it, so the server is not left idle while the client handles answers (a full batch
/// shares the per-call cost as well as a later one would). More extra calls made the batches smaller
/// and cost throughput (session 9).
const MAX_IN_FLIGHT_FULL: usize = 2;
/// Queued operations that make a batch worth an extra call (see [`MAX_IN_FLIGHT_FULL`]). With 64
/// callers on 2 cores, 24 gave more throughput than 16 or 32 (BENCHMARKS.md, sessions 7 and 9).
const FULL_BATCH: usize = 24;
/// Most operations in one coalesced script call.
const MAX_COALESCED: usize = 128;

/// The queue and in-flight count of the coalesced calls.
///
/// Invariant: while requests are queued, at least one call is in flight, and each call in flight ends
/// with [`Coalescer::next`], which sends the queue on or hands it to the calls still in flight. Every
/// queued request is therefore answered, by the call that takes it, within the command timeout counted
/// from when the oldest request of its batch was queued (see [`Batch::since`]): one deadline per batch
/// instead of a timer per request.
struct Coalescer<R> {
    state: Mutex<Queue<R>>,
}

/// The calls in flight and the queue of a [`Coalescer`].
struct Queue<R> {
    in_flight: usize,
    queued: Vec<R>,
    /// When the oldest request in `queued` was queued (meaningless while it is empty).
    since: Instant,
}

/// Queued requests taken to be sent together.
#[derive(Debug)]
struct Batch<R> {
    ops: Vec<R>,
    /// When the oldest of them was queued: their answers are due within the command timeout from then.
    since: Instant,
}

/// What [`Coalescer::enter`] decided for one request.
enum Entry<R, T> {
    /// A regular slot is free: send the request at once (and call [`Coalescer::next`] when done).
    Slot,
    /// Queued; the answer comes on the receiver.
    Queued(oneshot::Receiver<T>),
    /// Queued, and the queue made a full batch while the regular slots are busy: an extra slot was
    /// taken for these requests (this one among them); send them, then call [`Coalescer::next`].
    Lead(oneshot::Receiver<T>, Batch<R>),
}

impl<R> Default for Coalescer<R> {
    fn default() -> Self {
        Coalescer {
            state: Mutex::new(Queue {
                in_flight: 0,
                queued: Vec::new(),
                since: Instant::now(),
            }),
        }
    }
}

impl<R> Coalescer<R> {
    fn state(&self) -> std::sync::MutexGuard<'_, Queue<R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot, or queue the request `make()` builds (see [`Entry`]).
    fn enter<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> R) -> Entry<R, T> {
        let mut st = self.state();
        if st.in_flight < MAX_IN_FLIGHT {
            st.in_flight += 1;
            return Entry::Slot;
        }
        let (tx, rx) = oneshot::channel();
        if st.queued.is_empty() {
            st.since = Instant::now();
        }
        st.queued.push(make(tx));
        if st.in_flight < MAX_IN_FLIGHT_FULL && st.queued.len() >= FULL_BATCH {
            st.in_flight += 1;
            return Entry::Lead(rx, st.take());
        }
        Entry::Queued(rx)
    }

    /// Requests queued.
    fn queued(&self) -> usize {
        self.state().queued.len()
    }

    /// A call finished: the queued requests to send next in the same slot, or `None` (slot freed).
    /// An extra slot is freed when less than a full batch is queued: the regular calls still in flight
    /// take it.
    fn next(&self) -> Option<Batch<R>> {
        let mut st = self.state();
        if st.queued.is_empty() || (st.in_flight > MAX_IN_FLIGHT && st.queued.len() < FULL_BATCH) {
            st.in_flight -= 1;
            return None;
        }
        Some(st.take())
    }
}

impl<R> Queue<R> {
    /// Take the queued requests (up to [`MAX_COALESCED`]) as one batch. Requests left behind count as
    /// queued from now: they wait for one more call at most.
    fn take(&mut self) -> Batch<R> {
        let since = self.since;
        let ops = if self.queued.len() <= MAX_COALESCED {
            // The next queue starts with room for as many: no growing it push by push.
            let room = self.queued.len();
            std::mem::replace(&mut self.queued, Vec::with_capacity(room))
        } else {
            self.since = Instant::now();
            self.queued.drain(..MAX_COALESCED).collect()
        };
        Batch { ops, since }
    }
}

/// A queued acquire.
struct AcquireReq {
    lock_key: String,
    token: String,
    ttl: Duration,
    /// Sent as a plain `SET NX PX` (no local waiter watches the lock, so it is probably free); when
    /// that finds the lock busy, the acquire goes again through the lock script, which marks it and
    /// reads its TTL. `false`: through the lock script at once.
    plain: bool,
    tx: oneshot::Sender<Result<Acquired, BackendError>>,
}

/// A queued release.
struct ReleaseReq {
    lock_key: String,
    token: String,
    /// The release mode (see [`release_mode`]).
    mode: i64,
    tx: oneshot::Sender<Result<Released, BackendError>>,
}

/// A queued operation.
enum Op {
    Acquire(AcquireReq),
    Release(ReleaseReq),
}

/// What the coalesced calls need, shared with the tasks that send them.
struct Batching {
    /// The lock calls' own connections (see the module docs).
    conn: LockConn,
    /// Plain `SET NX PX` acquires sent (see [`RedisBackend::stats`]).
    plain_acquires: AtomicU64,
    /// Locks handed over (see [`RedisBackend::stats`]).
    hand_overs: AtomicU64,
    timeout: Duration,
    ops: Coalescer<Op>,
}

/// Holds a slot of the [`Coalescer`] while a call runs; when it ends (also when the caller's future is
/// dropped mid-call), the queued operations are sent in the same slot by a task of their own.
struct SlotGuard {
    batch: Arc<Batching>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(ops) = self.batch.ops.next() {
            self.batch.lead(ops);
        }
    }
}

/// The prefix of a lock key `prefix:{key}` (prefixes hold no braces).
fn prefix_of(lock_key: &str) -> &str {
    match lock_key.find(":{") {
        Some(end) => &lock_key[..end],
        None => lock_key,
    }
}

/// The fence counter of the locks under `prefix` on a single node (see [`OPS_LUA`]).
fn counter_key(prefix: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + 6);
    key.push_str(prefix);
    key.push_str(":fence");
    key
}

/// A lock to release in a script call: lock key, token, mode.
type ReleaseItem<'r> = (&'r str, &'r str, i64);
/// A lock to acquire in a script call: lock key, token, TTL.
type AcquireItem<'r> = (&'r str, &'r str, Duration);

/// The release mode of one release (see `release_one` in [`RELEASE_LUA`]): keep the lock for
/// `keep_for` (minimum hold time) when given and not zero, else delete it, and with `publish` publish
/// the release notice even without the waiter mark.
pub(crate) fn release_mode(keep_for: Option<Duration>, publish: bool) -> i64 {
    match keep_for.filter(|d| !d.is_zero()) {
        Some(keep) => ms(keep).min(i64::MAX as u64) as i64,
        None if publish => -1,
        None => 0,
    }
}

/// A [`RELEASE_LUA`] reply for `n` locks, checked for length.
pub(crate) fn release_codes(
    reply: Result<Vec<i64>, BackendError>,
    n: usize,
) -> Result<Vec<Released>, BackendError> {
    let codes = reply?;
    if codes.len() != n {
        return Err(BackendError::other(format!(
            "release answered {} values for {n} locks",
            codes.len()
        )));
    }
    Ok(codes.into_iter().map(Released::from_code).collect())
}

/// One release's answer in an [`OPS_LUA`] reply.
fn release_answer(answer: &redis::Value) -> Result<Released, BackendError> {
    match answer {
        redis::Value::Int(code) => Ok(Released::from_code(*code)),
        other => Err(BackendError::other(format!(
            "unexpected release reply {other:?}"
        ))),
    }
}

/// One acquire's answer in an [`OPS_LUA`] reply.
fn acquire_answer(answer: &redis::Value, ttl: Duration) -> Result<Acquired, BackendError> {
    use redis::Value;
    let text = match answer {
        Value::Int(fence) if *fence > 0 => {
            return Ok(Acquired::Granted {
                fence: Some(*fence as u64),
                validity: ttl,
            })
        }
        Value::Int(pttl) => {
            return Ok(Acquired::Busy {
                remaining: Some(Duration::from_millis(pttl.unsigned_abs())),
            })
        }
        Value::BulkString(b) => String::from_utf8_lossy(b),
        Value::SimpleString(s) => s.as_str().into(),
        other => {
            return Err(BackendError::other(format!(
                "unexpected acquire reply {other:?}"
            )))
        }
    };
    match text.split_once(':') {
        Some(("T", msg)) => Err(BackendError::wrong_type(msg.to_owned())),
        Some(("E", msg)) => Err(map_server_error(msg.to_owned())),
        _ => Err(BackendError::other(format!(
            "unexpected acquire reply {text:?}"
        ))),
    }
}

/// The [`RELEASES_LUA`] call for `releases` (all in mode 0), and the script to load if the server
/// lost it.
fn releases_cmd(releases: &[ReleaseItem<'_>]) -> (&'static redis::Script, redis::Cmd) {
    let bytes = releases.iter().map(|(k, t, _)| k.len() + t.len()).sum();
    let mut cmd = evalsha(&RELEASES, releases.len(), 2 * releases.len(), bytes);
    for (lock_key, _, _) in releases {
        cmd.arg(*lock_key);
    }
    for (_, token, _) in releases {
        cmd.arg(*token);
    }
    (&RELEASES, cmd)
}

/// The script call for `releases` and `acquires` (all under `prefix`), and the script to load if the
/// server lost it: [`RELEASES_LUA`] when there are only releases in mode 0, else [`OPS_LUA`]. Both
/// answer one value per operation, releases first.
fn script_cmd(
    prefix: &str,
    releases: &[ReleaseItem<'_>],
    acquires: &[AcquireItem<'_>],
) -> (&'static redis::Script, redis::Cmd) {
    if acquires.is_empty() && releases.iter().all(|(_, _, mode)| *mode == 0) {
        releases_cmd(releases)
    } else {
        (&OPS, ops_cmd(prefix, releases, acquires))
    }
}

/// The [`OPS_LUA`] call for `releases` and `acquires` (all under `prefix`).
fn ops_cmd(prefix: &str, releases: &[ReleaseItem<'_>], acquires: &[AcquireItem<'_>]) -> redis::Cmd {
    let (nr, na) = (releases.len(), acquires.len());
    let bytes: usize = releases
        .iter()
        .map(|(k, t, _)| k.len() + t.len() + NUM_LEN)
        .chain(acquires.iter().map(|(k, t, _)| k.len() + t.len() + NUM_LEN))
        .sum();
    let mut cmd = evalsha(
        &OPS,
        nr + na + 1,
        2 + 3 * (nr + na),
        prefix.len() + 6 + NUM_LEN + bytes,
    );
    cmd.arg(counter_key(prefix));
    for (lock_key, _, _) in releases {
        cmd.arg(*lock_key);
    }
    for (lock_key, _, _) in acquires {
        cmd.arg(*lock_key);
    }
    cmd.arg(releases.len());
    for (_, token, mode) in releases {
        cmd.arg(*token).arg(*mode);
    }
    for (_, token, ttl) in acquires {
        cmd.arg(*token).arg(ms(*ttl));
    }
    cmd
}

/// A plain `SET lock token NX PX ttl`.
fn plain_set(lock_key: &str, token: &str, ttl: Duration) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(6, lock_key.len() + token.len() + 32);
    cmd.arg("SET");
    cmd.arg(lock_key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ms(ttl));
    cmd
}

/// The [`OPS_LUA`] answers of a call for `n` operations, checked for length.
fn ops_answers(reply: redis::Value, n: usize) -> Result<Vec<redis::Value>, BackendError> {
    let answers = match reply {
        redis::Value::Array(v) => v,
        other => {
            return Err(BackendError::other(format!(
                "unexpected lock script reply {other:?}"
            )))
        }
    };
    if answers.len() != n {
        return Err(BackendError::other(format!(
            "the lock script answered {} values for {n} operations",
            answers.len()
        )));
    }
    Ok(answers)
}

/// A plain acquire's answer: granted (its fence is issued on request), `None` when the lock was
/// busy (the acquire goes again through the lock script, which tells how long it stays busy).
fn plain_answer(reply: redis::Value, ttl: Duration) -> Option<Result<Acquired, BackendError>> {
    match reply {
        redis::Value::Nil => None,
        redis::Value::Okay => Some(Ok(Acquired::Granted {
            fence: None,
            validity: ttl,
        })),
        redis::Value::ServerError(e) => Some(Err(map_err(e.into()))),
        other => Some(Err(BackendError::other(format!(
            "unexpected SET reply {other:?}"
        )))),
    }
}

/// The locks of queued acquires, as a call takes them.
fn acquire_items(acquires: &[AcquireReq]) -> Vec<AcquireItem<'_>> {
    acquires
        .iter()
        .map(|a| (a.lock_key.as_str(), a.token.as_str(), a.ttl))
        .collect()
}

/// What one round trip of the coalesced calls answered: the lock script's answers (when it ran),
/// and one reply per plain acquire.
struct RoundTrip {
    script: Result<Vec<redis::Value>, BackendError>,
    plain: Vec<redis::Value>,
}

impl Batching {
    /// One script call (see [`script_cmd`]): release `releases`, then acquire `acquires` (all under
    /// `prefix`), by `deadline`. One answer per operation, releases first.
    async fn call<'r>(
        &self,
        prefix: &str,
        releases: &[ReleaseItem<'r>],
        acquires: &[AcquireItem<'r>],
        deadline: Instant,
    ) -> Result<Vec<redis::Value>, BackendError> {
        let n = releases.len() + acquires.len();
        let (script, cmd) = script_cmd(prefix, releases, acquires);
        let reply: redis::Value =
            eval_on(&self.conn, deadline, self.timeout, script, &cmd, false).await?;
        ops_answers(reply, n)
    }

    /// One round trip: the script call for `releases` and `acquires` (as [`call`](Self::call);
    /// skipped when both are empty), then a plain `SET NX PX` per lock of `plain`, pipelined. A plain
    /// `SET` is the cheapest acquire a server runs (far cheaper than the same `SET` inside a
    /// script), and the releases before it in the same round trip may free the locks it takes.
    async fn round_trip<'r>(
        &self,
        prefix: &str,
        releases: &[ReleaseItem<'r>],
        acquires: &[AcquireItem<'r>],
        plain: &[AcquireItem<'r>],
        deadline: Instant,
    ) -> Result<RoundTrip, BackendError> {
        let n = releases.len() + acquires.len();
        if plain.is_empty() {
            return Ok(RoundTrip {
                script: self.call(prefix, releases, acquires, deadline).await,
                plain: Vec::new(),
            });
        }
        let mut pipe = redis::Pipeline::with_capacity(plain.len() + 1);
        pipe.ignore_errors();
        if n > 0 {
            pipe.add_command(script_cmd(prefix, releases, acquires).1);
        }
        for (lock_key, token, ttl) in plain {
            pipe.add_command(plain_set(lock_key, token, *ttl));
        }
        self.plain_acquires
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
        let mut conn = self.conn.clone();
        // With `ignore_errors`, each command's error reply comes back in place, as a value.
        let sent = pipe.query_async::<redis::Value>(&mut conn);
        let mut replies = match tokio::time::timeout(until(deadline), sent).await {
            Ok(Ok(redis::Value::Array(replies)))
                if replies.len() == plain.len() + usize::from(n > 0) =>
            {
                replies
            }
            Ok(Ok(other)) => {
                return Err(BackendError::other(format!(
                    "a pipeline of {} commands answered {other:?}",
                    plain.len() + usize::from(n > 0)
                )))
            }
            Ok(Err(e)) => return Err(map_err(e)),
            Err(_) => return Err(timed_out(self.timeout)),
        };
        let script = if n == 0 {
            Ok(Vec::new())
        } else {
            match replies.remove(0) {
                // The server lost the script (restart, `SCRIPT FLUSH`): `call` loads it and runs it
                // again. The plain `SET`s ran meanwhile; one that found its lock still held by a
                // release of this call goes again through the script, after the release.
                redis::Value::ServerError(e)
                    if e.kind() == Some(redis::ServerErrorKind::NoScript) =>
                {
                    self.call(prefix, releases, acquires, deadline).await
                }
                redis::Value::ServerError(e) => Err(map_err(e.into())),
                reply => ops_answers(reply, n),
            }
        };
        Ok(RoundTrip {
            script,
            plain: replies,
        })
    }

    /// Take a slot (held by the returned guard) or queue the operation `make()` builds (its answer comes
    /// on the returned receiver; a full batch is sent at once, see [`Entry::Lead`]).
    fn enter<T>(
        self: &Arc<Self>,
        make: impl FnOnce(oneshot::Sender<T>) -> Op,
    ) -> Result<SlotGuard, oneshot::Receiver<T>> {
        match self.ops.enter(make) {
            Entry::Slot => Ok(SlotGuard {
                batch: self.clone(),
            }),
            Entry::Queued(rx) => Err(rx),
            Entry::Lead(rx, batch) => {
                self.lead(batch);
                Err(rx)
            }
        }
    }

    /// Send `ops` (queued operations this caller took a slot for) from a task of their own, then go on
    /// with the queue as [`run_queued`](Self::run_queued) does. Without a runtime the operations are
    /// dropped and the slot freed: their callers see a closed channel and report the backend
    /// unavailable.
    fn lead(self: &Arc<Self>, mut ops: Batch<Op>) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let batching = self.clone();
            drop(rt.spawn(async move { batching.run_queued(ops).await }));
            return;
        }
        loop {
            drop(ops);
            match self.ops.next() {
                Some(more) => ops = more,
                None => return,
            }
        }
    }

    /// Send queued operations, call after call, until the queue is empty (then free the slot).
    async fn run_queued(self: Arc<Self>, mut batch: Batch<Op>) {
        loop {
            self.send(batch).await;
            // With less than a full batch queued, let the callers just answered run first: most of
            // them queue their next operation at once (a release after an acquire), and it rides the
            // next call instead of waiting for a later one. A full queue goes out at once (waiting
            // for hundreds of callers would leave the server idle).
            if self.ops.queued() < FULL_BATCH {
                tokio::task::yield_now().await;
            }
            match self.ops.next() {
                Some(next) => batch = next,
                None => return,
            }
        }
    }

    /// Send `batch` and answer each caller, within the command timeout from when its oldest operation
    /// was queued (an operation that could not be sent by then is answered "timed out"). One round trip carries the releases, the script acquires
    /// of the first acquire's prefix (each prefix has its own fence counter, so script acquires under
    /// other prefixes, which are rare, go in round trips of their own), and every plain acquire.
    async fn send(&self, batch: Batch<Op>) {
        let Batch { ops, since } = batch;
        let mut deadline = since + self.timeout;
        // Sized for the whole batch once: most batches are all plain acquires and releases, and
        // growing three vectors push by push cost more than the batch's own bookkeeping.
        let n = ops.len();
        let mut releases = Vec::with_capacity(n);
        let mut acquires = Vec::new();
        let mut plain = Vec::with_capacity(n);
        for op in ops {
            match op {
                Op::Acquire(a) if a.plain => plain.push(a),
                Op::Acquire(a) => acquires.push(a),
                Op::Release(r) => releases.push(r),
            }
        }
        while !releases.is_empty() || !acquires.is_empty() || !plain.is_empty() {
            let prefix = acquires
                .first()
                .map(|a| prefix_of(&a.lock_key))
                .or_else(|| releases.first().map(|r| prefix_of(&r.lock_key)))
                .unwrap_or_default()
                .to_owned();
            let mut others: Vec<AcquireReq> = if acquires.is_empty() {
                Vec::new()
            } else {
                acquires
                    .extract_if(.., |a| prefix_of(&a.lock_key) != prefix)
                    .collect()
            };
            let (gone, busy) = self
                .answer(
                    &prefix,
                    std::mem::take(&mut releases),
                    std::mem::take(&mut acquires),
                    std::mem::take(&mut plain),
                    deadline,
                )
                .await;
            // Grants whose caller went away (cancelled, or its wait timed out) are given back, telling
            // any waiter, with a full command timeout of their own (a give-back must not fail because
            // the batch used its time); plain acquires that found their lock busy go again through the
            // script.
            if !gone.is_empty() {
                deadline = deadline.max(Instant::now() + self.timeout);
            }
            releases = gone;
            others.extend(busy);
            acquires = others;
        }
    }

    /// One round trip for `releases` and `acquires` (all under `prefix`) and `plain`; answer each
    /// caller. Returns the releases of grants whose caller went away, and the plain acquires that
    /// found their lock busy (to go again through the script, without `plain`).
    async fn answer(
        &self,
        prefix: &str,
        releases: Vec<ReleaseReq>,
        acquires: Vec<AcquireReq>,
        plain: Vec<AcquireReq>,
        deadline: Instant,
    ) -> (Vec<ReleaseReq>, Vec<AcquireReq>) {
        let rel: Vec<ReleaseItem<'_>> = releases
            .iter()
            .map(|r| (r.lock_key.as_str(), r.token.as_str(), r.mode))
            .collect();
        let (acq, pl) = (acquire_items(&acquires), acquire_items(&plain));
        let (script, plain_replies) = match self.round_trip(prefix, &rel, &acq, &pl, deadline).await
        {
            Ok(rt) => (rt.script, rt.plain),
            Err(e) => (Err(e), Vec::new()),
        };
        let mut plain_replies = plain_replies.into_iter();
        drop((rel, acq, pl));
        let nr = releases.len();
        for (i, r) in releases.into_iter().enumerate() {
            let _ = r.tx.send(match &script {
                Err(e) => Err(e.clone()),
                Ok(v) => release_answer(&v[i]),
            });
        }
        let mut gone = Vec::new();
        let mut give_back = |a: AcquireReq, outcome: Result<Acquired, BackendError>| {
            let granted = matches!(outcome, Ok(Acquired::Granted { .. }));
            if a.tx.send(outcome).is_err() && granted {
                let (tx, _) = oneshot::channel();
                gone.push(ReleaseReq {
                    lock_key: a.lock_key,
                    token: a.token,
                    mode: release_mode(None, true),
                    tx,
                });
            }
        };
        for (i, a) in acquires.into_iter().enumerate() {
            let outcome = match &script {
                Err(e) => Err(e.clone()),
                Ok(v) => acquire_answer(&v[nr + i], a.ttl),
            };
            give_back(a, outcome);
        }
        let mut busy = Vec::new();
        for mut a in plain {
            let outcome = match (plain_replies.next(), &script) {
                (Some(reply), _) => plain_answer(reply, a.ttl),
                // The round trip failed as a whole.
                (None, Err(e)) => Some(Err(e.clone())),
                (None, Ok(_)) => Some(Err(BackendError::other("no reply to a plain acquire"))),
            };
            match outcome {
                Some(outcome) => give_back(a, outcome),
                None => {
                    a.plain = false;
                    busy.push(a);
                }
            }
        }
        (gone, busy)
    }
}

/// A queued operation's answer. No timer of its own: the call that takes the operation answers it
/// within the command timeout from when it was queued (see [`Coalescer`]), or drops it (the runtime is
/// shutting down), which reports the backend unavailable.
async fn queued_answer<T>(
    rx: oneshot::Receiver<Result<T, BackendError>>,
) -> Result<T, BackendError> {
    match rx.await {
        Ok(r) => r,
        Err(_) => Err(BackendError::unavailable(
            "the coalesced call was dropped (runtime shutting down)",
        )),
    }
}

impl Backend for RedisBackend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Acquired, BackendError>> {
        Box::pin(async move {
            // No local waiter on this lock, so it is probably free: a plain `SET NX PX`, the least a
            // lock can cost (queued, it rides a pipeline with the other queued operations); the
            // fence is issued later, when the holder asks (`fence`). When it is busy, the script
            // call marks it, reads its TTL, or takes it if it was freed meanwhile.
            let plain = !self.hub.is_watched(&name.channel);
            let queued = self.batch.enter(|tx| {
                Op::Acquire(AcquireReq {
                    lock_key: name.lock_key.clone(),
                    token: token.to_owned(),
                    ttl,
                    plain,
                    tx,
                })
            });
            let _slot = match queued {
                Ok(slot) => slot,
                Err(rx) => return queued_answer(rx).await,
            };
            if plain {
                let cmd = plain_set(&name.lock_key, token, ttl);
                self.batch.plain_acquires.fetch_add(1, Ordering::Relaxed);
                let set = self.bounded(self.batch.conn.request(&cmd)).await?;
                if set.extract_error().map_err(map_err)? != redis::Value::Nil {
                    return Ok(Acquired::Granted {
                        fence: None,
                        validity: ttl,
                    });
                }
            }
            let prefix = prefix_of(&name.lock_key);
            let lock = (name.lock_key.as_str(), token, ttl);
            let deadline = Instant::now() + self.timeout;
            let answers = self.batch.call(prefix, &[], &[lock], deadline).await?;
            acquire_answer(&answers[0], ttl)
        })
    }

    fn renew<'a>(
        &'a self,
        batch: &'a [RenewItem<'a>],
    ) -> BoxFuture<'a, Result<Vec<Renewed>, BackendError>> {
        Box::pin(async move {
            let bytes = batch
                .iter()
                .map(|i| i.name.lock_key.len() + i.token.len() + NUM_LEN)
                .sum();
            let mut cmd = evalsha(&RENEW, batch.len(), 3 * batch.len(), bytes);
            for item in batch {
                cmd.arg(&item.name.lock_key);
            }
            for item in batch {
                cmd.arg(item.token);
            }
            for item in batch {
                cmd.arg(ms(item.ttl));
            }
            let reply: Vec<i64> = self.eval(&RENEW, &cmd, true).await?;
            if reply.len() != batch.len() {
                return Err(BackendError::other(format!(
                    "renewal answered {} results for {} locks",
                    reply.len(),
                    batch.len()
                )));
            }
            Ok(batch
                .iter()
                .zip(reply)
                .map(|(item, r)| {
                    if r == 1 {
                        Renewed::Extended(item.ttl)
                    } else {
                        Renewed::NotHeld
                    }
                })
                .collect())
        })
    }

    fn release<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        keep_for: Option<Duration>,
    ) -> BoxFuture<'a, Result<Released, BackendError>> {
        Box::pin(async move {
            // Waiters of other clients mark the lock when they find it busy; this client's own waiters
            // may instead queue behind each other without asking, so they are told by a forced notice.
            let mode = release_mode(keep_for, self.hub.is_watched(&name.channel));
            let queued = self.batch.enter(|tx| {
                Op::Release(ReleaseReq {
                    lock_key: name.lock_key.clone(),
                    token: token.to_owned(),
                    mode,
                    tx,
                })
            });
            let _slot = match queued {
                Ok(slot) => slot,
                Err(rx) => return queued_answer(rx).await,
            };
            if mode == 0 {
                let mut cmd = evalsha(&RELEASE1, 1, 2, name.lock_key.len() + token.len());
                cmd.arg(&name.lock_key).arg(token);
                let deadline = Instant::now() + self.timeout;
                let code: i64 = eval_on(
                    &self.batch.conn,
                    deadline,
                    self.timeout,
                    &RELEASE1,
                    &cmd,
                    false,
                )
                .await?;
                return Ok(Released::from_code(code));
            }
            let prefix = prefix_of(&name.lock_key);
            let lock = (name.lock_key.as_str(), token, mode);
            let deadline = Instant::now() + self.timeout;
            let answers = self.batch.call(prefix, &[lock], &[], deadline).await?;
            release_answer(&answers[0])
        })
    }

    fn fence<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        Box::pin(async move {
            let mut cmd = evalsha(&FENCE, 2, 3, 2 * name.lock_key.len() + 6 + token.len());
            cmd.arg(counter_key(prefix_of(&name.lock_key)))
                .arg(&name.lock_key)
                .arg(token);
            let answer: redis::Value = self.eval(&FENCE, &cmd, true).await?;
            match answer {
                redis::Value::Int(0) => Ok(None),
                other => match acquire_answer(&other, Duration::ZERO)? {
                    Acquired::Granted { fence, .. } => Ok(fence),
                    Acquired::Busy { .. } => Err(BackendError::other(format!(
                        "unexpected fence reply {other:?}"
                    ))),
                },
            }
        })
    }

    fn hands_over(&self) -> bool {
        true
    }

    fn hand_over<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        next: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<HandedOver, BackendError>> {
        Box::pin(async move {
            let bytes = name.lock_key.len() + token.len() + next.len() + NUM_LEN;
            let mut cmd = evalsha(&HANDOVER, 1, 4, bytes);
            cmd.arg(&name.lock_key).arg(token).arg(next).arg(ms(ttl));
            // Never sent twice: a hand-over whose reply was lost has made the lock the waiter's,
            // and a second run would answer "not ours".
            let code: i64 = self.eval(&HANDOVER, &cmd, false).await?;
            if code == 3 {
                self.batch.hand_overs.fetch_add(1, Ordering::Relaxed);
                return Ok(HandedOver::Granted);
            }
            Ok(HandedOver::Released(Released::from_code(code)))
        })
    }

    fn subscribe<'a>(&'a self, name: &'a LockName) -> BoxFuture<'a, Subscription> {
        Box::pin(async move {
            let (sub, first) = self.hub.register(&name.channel);
            // The first local waiter of a channel waits (bounded) until the server confirmed, so a
            // release right after its next attempt is not missed. On failure it still re-checks on
            // its timer.
            self.watch_channel(&name.channel, first, self.timeout).await;
            sub
        })
    }
}

/// A request to the notice subscriber task: subscribe `channel`; answer on `ack` once confirmed.
pub(crate) struct SubCmd {
    pub(crate) channel: String,
    pub(crate) ack: Option<oneshot::Sender<bool>>,
}

/// A backend's lazily started notice-subscriber task: started on first use (and again if it ended, e.g.
/// with the runtime it ran on), aborted when the backend is dropped.
#[derive(Default)]
pub(crate) struct SubscriberSlot(Mutex<Option<(mpsc::UnboundedSender<SubCmd>, JoinHandle<()>)>>);

impl SubscriberSlot {
    /// Ask the task (started with `start` if it is not running) to subscribe `channel`. With `confirm`,
    /// wait up to `wait` and return whether the server confirmed; without, return `true` once queued.
    /// Outside a Tokio runtime nothing can be started: `false`.
    pub(crate) async fn watch<F, Fut>(
        &self,
        channel: &str,
        confirm: bool,
        wait: Duration,
        start: F,
    ) -> bool
    where
        F: FnOnce(mpsc::UnboundedReceiver<SubCmd>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let tx = {
            let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some((tx, handle)) if !handle.is_finished() && !tx.is_closed() => tx.clone(),
                _ => {
                    let Ok(rt) = tokio::runtime::Handle::try_current() else {
                        return false;
                    };
                    let (tx, rx) = mpsc::unbounded_channel();
                    *slot = Some((tx.clone(), rt.spawn(start(rx))));
                    tx
                }
            }
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        let cmd = SubCmd {
            channel: channel.to_owned(),
            ack: confirm.then_some(ack_tx),
        };
        if tx.send(cmd).is_err() {
            return false;
        }
        !confirm || matches!(tokio::time::timeout(wait, ack_rx).await, Ok(Ok(true)))
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        if let Some((_, handle)) = self.0.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            handle.abort();
        }
    }
}

/// Subscribe the channel of `cmd` on `sink` unless already subscribed, and answer its ack. Returns false
/// when the connection failed (the caller reconnects).
pub(crate) async fn handle_sub_cmd(
    sink: &mut redis::aio::PubSubSink,
    subscribed: &mut HashSet<String>,
    cmd: SubCmd,
    timeout: Duration,
) -> bool {
    let SubCmd { channel, ack } = cmd;
    let mut ok = true;
    if !subscribed.contains(&channel) {
        match tokio::time::timeout(timeout, sink.subscribe(&channel)).await {
            Ok(Ok(())) => {
                subscribed.insert(channel);
            }
            _ => ok = false,
        }
    }
    if let Some(ack) = ack {
        let _ = ack.send(ok);
    }
    ok
}

/// Unsubscribe the channels no local waiter watches any more (they linger until this sweep, so a busy
/// key is not re-subscribed for every wait).
pub(crate) async fn unsubscribe_idle(
    sink: &mut redis::aio::PubSubSink,
    subscribed: &mut HashSet<String>,
    hub: &NoticeHub,
    timeout: Duration,
) {
    let idle: Vec<String> = subscribed
        .iter()
        .filter(|c| !hub.is_watched(c))
        .cloned()
        .collect();
    if !idle.is_empty() {
        if let Ok(Ok(())) = tokio::time::timeout(timeout, sink.unsubscribe(&idle)).await {
            for c in &idle {
                subscribed.remove(c);
            }
        }
    }
}

/// The client's one subscriber connection: subscribes on demand, lingers on idle channels for a while
/// (so a busy key is not re-subscribed for every wait), reconnects with backoff, re-subscribes, and
/// after any reconnect wakes every waiter because notices may have been missed.
async fn run_subscriber(
    client: redis::Client,
    hub: NoticeHub,
    mut rx: mpsc::UnboundedReceiver<SubCmd>,
    timeout: Duration,
) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(20);
    loop {
        let pubsub = match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "lockattr: release-notice connection failed; retrying");
                if !drain_while_down(&mut rx, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {
                if !drain_while_down(&mut rx, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<String> = HashSet::new();
        let wanted = hub.channels();
        if !wanted.is_empty() {
            if tokio::time::timeout(timeout, sink.subscribe(&wanted))
                .await
                .is_err()
            {
                continue;
            }
            subscribed.extend(wanted);
        }
        hub.notify_all();
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => hub.notify(msg.get_channel_name()),
                    None => break,
                },
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(cmd) => {
                        if !handle_sub_cmd(&mut sink, &mut subscribed, cmd, timeout).await {
                            break;
                        }
                    }
                },
                _ = sweep.tick() => unsubscribe_idle(&mut sink, &mut subscribed, &hub, timeout).await,
            }
        }
        tracing::debug!("lockattr: release-notice connection lost; reconnecting");
        hub.notify_all();
    }
}

/// While the subscriber cannot connect: answer subscribe requests with "not subscribed" for `pause`.
/// Returns false when the backend is gone.
pub(crate) async fn drain_while_down(
    rx: &mut mpsc::UnboundedReceiver<SubCmd>,
    pause: Duration,
) -> bool {
    let until = tokio::time::Instant::now() + pause;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return true,
            cmd = rx.recv() => match cmd {
                None => return false,
                Some(SubCmd { ack, .. }) => { if let Some(ack) = ack { let _ = ack.send(false); } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{
        mask_url, Coalescer, Entry, FULL_BATCH, MAX_COALESCED, MAX_IN_FLIGHT, MAX_IN_FLIGHT_FULL,
    };

    /// What `enter` decided: `"slot"`, `"queued"`, or `"lead N"` for an extra call of N requests.
    fn enter(c: &Coalescer<u32>, id: u32) -> String {
        match c.enter::<()>(|_| id) {
            Entry::Slot => "slot".into(),
            Entry::Queued(_) => "queued".into(),
            Entry::Lead(_, batch) => format!("lead {}", batch.ops.len()),
        }
    }

    fn in_flight(c: &Coalescer<u32>) -> usize {
        c.state().in_flight
    }

    #[test]
    fn coalescer_sends_full_batches_in_extra_calls_and_never_strands_the_queue() {
        let c = Coalescer::<u32>::default();
        // An idle client sends at once, in the regular slots.
        for id in 0..MAX_IN_FLIGHT as u32 {
            assert_eq!(enter(&c, id), "slot");
        }
        // Then requests queue until a full batch goes out in an extra call ...
        let mut id = 100;
        for _ in 1..FULL_BATCH {
            assert_eq!(enter(&c, id), "queued");
            id += 1;
        }
        assert_eq!(enter(&c, id), format!("lead {FULL_BATCH}"));
        assert!(c.state().queued.is_empty());
        // ... as long as fewer than MAX_IN_FLIGHT_FULL calls are in flight.
        while in_flight(&c) < MAX_IN_FLIGHT_FULL {
            for _ in 0..FULL_BATCH {
                id += 1;
                enter(&c, id);
            }
        }
        assert_eq!(in_flight(&c), MAX_IN_FLIGHT_FULL);
        for _ in 0..2 * FULL_BATCH {
            id += 1;
            assert_eq!(enter(&c, id), "queued");
        }
        // A finished call takes the queue (up to MAX_COALESCED) in its slot.
        assert_eq!(c.next().map(|b| b.ops.len()), Some(2 * FULL_BATCH));
        assert_eq!(in_flight(&c), MAX_IN_FLIGHT_FULL);
        // With less than a full batch queued, the extra calls free their slots and leave the queue to
        // the regular calls still in flight, which take it.
        for _ in 0..3 {
            id += 1;
            enter(&c, id);
        }
        for left in (MAX_IN_FLIGHT..MAX_IN_FLIGHT_FULL).rev() {
            assert!(c.next().is_none());
            assert_eq!(in_flight(&c), left);
        }
        assert_eq!(c.next().map(|b| b.ops.len()), Some(3));
        assert_eq!(in_flight(&c), MAX_IN_FLIGHT);
        // An empty queue frees every slot.
        for _ in 0..MAX_IN_FLIGHT {
            assert!(c.next().is_none());
        }
        assert_eq!(in_flight(&c), 0);
        assert_eq!(enter(&c, 1), "slot");
    }

    #[test]
    fn a_batch_is_due_from_when_its_oldest_request_was_queued() {
        let c = Coalescer::<u32>::default();
        for id in 0..MAX_IN_FLIGHT as u32 {
            assert_eq!(enter(&c, id), "slot");
        }
        let before = Instant::now();
        assert_eq!(enter(&c, 100), "queued");
        std::thread::sleep(Duration::from_millis(20));
        let later = Instant::now();
        assert_eq!(enter(&c, 101), "queued");
        let batch = c.next().expect("the queue goes out when the call ends");
        assert_eq!(batch.ops, vec![100, 101]);
        assert!(batch.since >= before && batch.since < later, "{batch:?}");
        // More than one call carries: those left behind count from when the first call took its share.
        // (The extra calls are busy first, so that everything else queues.)
        let mut id = 200;
        while in_flight(&c) < MAX_IN_FLIGHT_FULL {
            enter(&c, id);
            id += 1;
        }
        for _ in 0..MAX_COALESCED + 5 {
            assert_eq!(enter(&c, id), "queued");
            id += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
        let drained = Instant::now();
        let first = c.next().expect("a full call");
        assert_eq!(first.ops.len(), MAX_COALESCED);
        assert!(first.since < drained);
        for _ in MAX_IN_FLIGHT..MAX_IN_FLIGHT_FULL {
            assert!(c.next().is_none());
        }
        let rest = c.next().expect("the rest");
        assert_eq!(rest.ops.len(), 5);
        assert!(rest.since >= drained, "{rest:?}");
    }

    #[test]
    fn mask_url_hides_every_password_shape() {
        let cases = [
            (
                "redis://user:secret@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:secret@host", "redis://:***@host"),
            ("redis://secret@host", "redis://***@host"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            // Found by the property test: no host, the "password" sits after a `/`.
            ("redis:///:a%=a@", "redis://***@"),
            // An unencoded `/` or `@` inside the password.
            ("redis://u:pa/ss@host", "redis://u:***@host"),
            ("redis://u:p@ss@host", "redis://u:***@host"),
            ("redis//u:secret@host", "***@host"),
        ];
        for (url, want) in cases {
            let got = mask_url(url);
            assert_eq!(got, want, "{url}");
            assert!(
                !got.contains("secret") && !got.contains("ss@"),
                "{url} -> {got}"
            );
        }
    }
}
