//! Locks on a Redis Cluster: [`ClusterBackend`].
//!
//! The backend runs the same Lua scripts as the single-node backend ([`super::redis`]: acquire with a
//! fence, owner-checked batch renewal, owner-checked release with a notice, hand-over to the next local
//! waiter, whose fence is issued when it asks) through the redis crate's async cluster client, which keeps the slot map, follows `MOVED`/`ASK` redirects, refreshes the
//! topology and reconnects when a primary fails over to its replica. Everything above the
//! [`Backend`] trait (guard, watchdog, waiting, the attribute) is unchanged.
//!
//! # Routing
//! A lock `K` lives at `prefix:{K}`, its fence counter at `prefix:{K}:fence` (kept for a day past the
//! TTL of the lock's last grant) and its notices on the channel `prefix:{K}:released`. The braces are
//! a hash tag, so all three share one hash slot and every script call is a single-slot command:
//! `EVALSHA` is routed by its first key to the primary that owns the slot. Different keys hash to different slots, so locks spread over all primaries.
//!
//! Scripts are sent as `EVALSHA`; a node that does not know a script yet (a fresh, restarted or just
//! promoted node: since Redis 7 the script cache is not replicated) answers `NOSCRIPT`, and the same
//! call is sent again as `EVAL` with the script's body, routed to the same slot. (The redis crate's own `Script::invoke_async`
//! would answer `NOSCRIPT` with a `SCRIPT LOAD` sent to *every* node, which fails as long as one node is
//! down — exactly during a failover.)
//!
//! **Renewal** batches from the shared watchdog are split per hash slot (Redis rejects a script whose
//! keys span slots); the per-slot calls are sent concurrently over the cluster client's one multiplexed
//! connection per node, so a batch costs one round trip per node, not one per lock. A slot whose primary
//! does not answer does not hold up the others: the other slots' answers are reported, and the
//! unanswered ones are retried until a third of the TTL has passed; what is still unanswered is then
//! reported as [`Renewed::Extended`] with a validity of zero (no new information: the lease's deadline
//! does not move, and the watchdog sends it again at once). Only when no slot answered at all does the
//! batch fail, and the watchdog retries inside the deadline as with one node.
//!
//! # Release notices
//! Waiters are woken through classic pub/sub on **one plain connection to any one cluster node**. In a
//! Redis Cluster a `PUBLISH` (the release script publishes) is broadcast over the cluster bus to every
//! node, so the node this client listens on does not matter, and a failover elsewhere in the cluster
//! does not affect it. When that node fails (the connection drops, or it stops answering the
//! connection's `PING` every second), the subscriber moves to another live node (from `CLUSTER NODES`,
//! else the configured URLs), subscribes again and wakes every waiter to re-check, because notices may
//! have been missed. Waiters also re-check at the holder's remaining TTL, so a lost notice costs latency,
//! never liveness.
//!
//! Alternatives considered: RESP3 push messages through the cluster client (`push_sender`) would switch
//! the data connections to RESP3 too, and subscribe each channel on its slot's primary, so notices for
//! a failed primary's slots stop until the client has refreshed its slot map and re-subscribed; sharded
//! pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis ≥ 7) is cheaper on large clusters (no broadcast) but has the
//! same per-slot coupling and needs a release script of its own. One plain connection to any node
//! keeps notices independent of where slots live; the price is the cluster-wide broadcast of each
//! release notice.
//!
//! # Waiting for replicas
//! [`ClusterOptions::wait_for_replicas`] (Redisson's "lock synced to replicas" check): after a grant,
//! `WAIT n timeout` runs on the same connection to the same primary, in the same pipeline as the acquire
//! script (`WAIT` counts the replicas that acknowledged *this connection's* last write, so it must
//! follow the write on the same connection; a pipeline is routed as a whole by its first key, so both
//! commands reach the slot's primary, and a redirect retries both). When fewer than `n` replicas
//! acknowledged within the timeout, the lock is released again and the acquire fails with
//! [`crate::LockError::Unavailable`] naming how many did. `WAIT` blocks the
//! connection it runs on, so these acquires use a small pool of dedicated cluster connections (at most
//! [`ClusterOptions::replica_sync_connections`] at a time), never the shared one that carries
//! renewals.
//!
//! # What a failover can and cannot guarantee
//! Redis replication is asynchronous. When a primary fails, its replica is promoted with whatever it had
//! received; a lock granted just before the failure may be missing on the new primary, which then grants
//! it to a second owner while the first still believes it holds it. Nothing on the client side can
//! prevent that; what lockattr does:
//! - **Fencing tokens never go backwards.** The acquire script issues `max(last + 1, server clock in
//!   µs)`. A promoted replica whose counter missed the last grants still issues fences above every fence
//!   of the failed primary, as long as the new primary's clock is ahead of the failed primary's clock at
//!   its last grant. Promotion takes at least the cluster node timeout (seconds), so this holds unless
//!   the two hosts' clocks disagree by more than that. A resource that rejects lower fences turns the
//!   double grant into a rejected stale write.
//! - The first owner learns of the loss at its next renewal (the new primary answers "not yours") or at
//!   its deadline, and its guarded work is cancelled.
//! - [`ClusterOptions::wait_for_replicas`] narrows the window: a grant is only reported once `n`
//!   replicas have it. It is not a guarantee either (a replica that acknowledged may not be the one that
//!   gets promoted, and renewals are not waited for), but a single failover then no longer loses fresh
//!   locks.
//! - Locks on slots of healthy primaries keep working during a failover unless the cluster runs with
//!   `cluster-require-full-coverage yes` (the default), where every node refuses commands while any
//!   slot is uncovered; renewals then fail until the replica is promoted and holders whose TTL is shorter
//!   than the failover time lose their locks.
//! - A reply lost in a failover makes the cluster client send the command again: an acquire that was in
//!   fact granted is recognised by its token and reported as granted (with a fresh fence: the one the
//!   lost reply carried is never used); a release that was in fact done reports that the lock was no
//!   longer held; a hand-over that was in fact done reports "not ours" to the releaser, and the waiter
//!   it was for finds its own token when it then tries itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use once_cell::sync::Lazy;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, ServerErrorKind};
use tokio::sync::{mpsc, OnceCell, Semaphore};
use tokio::time::Instant;

use super::redis::{
    drain_while_down, handle_sub_cmd, map_err, mask_url, ms, parse_url, release_codes,
    release_mode, split_fragment, take_fences_lua, timed_out, unsubscribe_idle, SubCmd,
    SubscriberSlot, FENCE_COUNTER_KEEP, HANDOVER_LUA, RELEASE_LUA, RENEW_LUA,
};
use super::{
    Acquired, Backend, BoxFuture, HandedOver, NoticeHub, Released, RenewItem, Renewed, Subscription,
};
use crate::error::{BackendError, LockError};
use crate::key::LockName;

/// `counter_error(bad)`: the error reply for a bad fence counter, from the second result of
/// `take_fences` (`T:` wrong type, as `LOCKATTR_WRONGTYPE …`; `E:` any other error).
macro_rules! counter_error_lua {
    () => {
        r#"
local function counter_error(bad)
  if string.sub(bad, 1, 2) == 'T:' then
    return redis.error_reply('LOCKATTR_WRONGTYPE ' .. string.sub(bad, 3))
  end
  return redis.error_reply(string.sub(bad, 3))
end
"#
    };
}

/// The Cluster acquire: take the lock (`SET NX PX`) and, only on success, issue the next fence from the
/// lock's own counter (`prefix:{key}:fence`, in the lock's hash slot) with the same counter update as the
/// single node (`take_fences`, see [`take_fences_lua`]): three commands on the common path, `SET NX PX`,
/// `TIME` and `SET counter fence GET`. A bad counter undoes the grant before the script returns, so it
/// never leaves a half-taken lock.
/// When busy, the holder's value is marked with a trailing `*` (once): someone waits, so its release
/// must publish a notice (see [`RELEASE_LUA`]). `APPEND` keeps the TTL; the owner checks accept the
/// token with or without the mark.
/// KEYS: lock, fence counter; ARGV: token, TTL in ms, the counter's lifetime in ms.
/// Reply: `{1, fence}` granted, `{0, pttl}` busy; error replies start with `LOCKATTR_WRONGTYPE`.
const ACQUIRE_LUA: &str = concat!(
    take_fences_lua!(),
    counter_error_lua!(),
    r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence, bad = take_fences(KEYS[2], 1, ARGV[3])
  if bad then
    redis.call('DEL', KEYS[1])
    return counter_error(bad)
  end
  return {1, fence}
end
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' then
  local lock_type = redis.call('TYPE', KEYS[1])['ok']
  return redis.error_reply('LOCKATTR_WRONGTYPE holds a Redis ' .. lock_type .. ' value')
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -1 then
  return redis.error_reply('LOCKATTR_WRONGTYPE holds a string without a TTL')
end
if #v == #ARGV[1] then
  redis.call('APPEND', KEYS[1], '*')
end
return {0, pttl}
"#
);

/// An owner-checked fence: if the lock holds the token (with or without the waiter mark), issue the
/// lock's next fence from its counter (`take_fences`, as [`ACQUIRE_LUA`] does), keeping the counter a
/// day (ARGV 2, ms) past the lock's remaining TTL. Used for a grant that came without a fence (a
/// hand-over to a local waiter) and when an acquire found the lock busy with its own token (the cluster
/// client sent the acquire, or a hand-over, again after a reply was lost, and the first one had been
/// granted): a fresh fence, above the one the lost reply carried, which nobody used.
/// KEYS: lock, fence counter. ARGV: token, counter lifetime past the TTL in ms.
/// Reply: the fence (> 0), or 0 when the lock does not hold the token; errors as [`ACQUIRE_LUA`].
const FENCE_LUA: &str = concat!(
    take_fences_lua!(),
    counter_error_lua!(),
    r#"
local v = redis.pcall('GET', KEYS[1])
if v ~= ARGV[1] and v ~= ARGV[1] .. '*' then
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = 0
end
local fence, bad = take_fences(KEYS[2], 1, ttl + tonumber(ARGV[2]))
if bad then
  return counter_error(bad)
end
return fence
"#
);

/// A script sent by hash, with its body at hand for nodes that do not know it yet.
struct Lua {
    body: &'static str,
    hash: String,
}

impl Lua {
    fn new(body: &'static str) -> Lua {
        Lua {
            body,
            hash: redis::Script::new(body).get_hash().to_owned(),
        }
    }

    /// `EVALSHA hash` (or, with `by_body`, `EVAL body`) followed by what `fill` adds (numkeys, keys,
    /// arguments).
    fn cmd(&self, by_body: bool, fill: &(dyn Fn(&mut Cmd) + Sync)) -> Cmd {
        let mut cmd = if by_body {
            let mut c = redis::cmd("EVAL");
            c.arg(self.body);
            c
        } else {
            let mut c = redis::cmd("EVALSHA");
            c.arg(&self.hash);
            c
        };
        fill(&mut cmd);
        cmd
    }
}

static ACQUIRE: Lazy<Lua> = Lazy::new(|| Lua::new(ACQUIRE_LUA));
static RENEW: Lazy<Lua> = Lazy::new(|| Lua::new(RENEW_LUA));
static RELEASE: Lazy<Lua> = Lazy::new(|| Lua::new(RELEASE_LUA));
static FENCE: Lazy<Lua> = Lazy::new(|| Lua::new(FENCE_LUA));
static HANDOVER: Lazy<Lua> = Lazy::new(|| Lua::new(HANDOVER_LUA));

/// How often the cluster client retries one command (redirects, reconnects, `TRYAGAIN`) within the
/// command timeout.
const CLUSTER_RETRIES: u32 = 8;
/// Shortest and longest pause of the cluster client between retries, in ms.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 200);
/// How often the release-notice connection checks that its node still answers.
const NOTICE_PING_EVERY: Duration = Duration::from_secs(1);
/// How often idle notice channels are unsubscribed.
const NOTICE_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Options of a [`ClusterBackend`].
///
/// ```
/// use std::time::Duration;
/// use lockattr_runtime::backend::cluster::ClusterOptions;
/// let opts = ClusterOptions::default().wait_for_replicas(1, Duration::from_millis(200));
/// assert_eq!(opts.wait_for_replicas, Some((1, Duration::from_millis(200))));
/// ```
///
/// When the backend is built through [`crate::LockClientBuilder::cluster`], the client's command
/// timeout is used for `command_timeout`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// Bound on each command, including the cluster client's redirects and retries, and on each
    /// connection attempt (default 2 s).
    pub command_timeout: Duration,
    /// After each grant, wait until this many replicas of the slot's primary acknowledged it, at most
    /// this long (`WAIT n timeout`); otherwise release it and fail the acquire. `None` (the default):
    /// do not wait. See the module docs.
    pub wait_for_replicas: Option<(u32, Duration)>,
    /// How many acquires may wait for replicas at the same time (each on its own dedicated cluster
    /// connection, because `WAIT` blocks the connection it runs on); more wait for a free connection
    /// within the command timeout. Default 8.
    pub replica_sync_connections: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            command_timeout: Duration::from_secs(2),
            wait_for_replicas: None,
            replica_sync_connections: 8,
        }
    }
}

impl ClusterOptions {
    /// Set [`command_timeout`](Self::command_timeout).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }
    /// Set [`wait_for_replicas`](Self::wait_for_replicas): each grant must be acknowledged by
    /// `replicas` replicas within `timeout` (e.g. `1, 100ms`).
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_for_replicas = Some((replicas, timeout));
        self
    }
    /// Set [`replica_sync_connections`](Self::replica_sync_connections).
    pub fn replica_sync_connections(mut self, connections: usize) -> Self {
        self.replica_sync_connections = connections;
        self
    }

    pub(crate) fn check(&self) -> Result<(), LockError> {
        check_options(
            self.command_timeout,
            self.wait_for_replicas,
            self.replica_sync_connections,
        )
    }
}

/// The checks shared by the Cluster and Sentinel options.
pub(super) fn check_options(
    command_timeout: Duration,
    wait_for_replicas: Option<(u32, Duration)>,
    replica_sync_connections: usize,
) -> Result<(), LockError> {
    if command_timeout.is_zero() || command_timeout > Duration::from_secs(600) {
        return Err(LockError::InvalidOption(format!(
            "command timeout {command_timeout:?} must be between 1ms and 10min, e.g. 2s"
        )));
    }
    if let Some((n, t)) = wait_for_replicas {
        if n == 0 || t.is_zero() || t > Duration::from_secs(60) {
            return Err(LockError::InvalidOption(format!(
                "wait_for_replicas({n}, {t:?}): the number of replicas must be at least 1 and the timeout between 1ms and 60s, e.g. (1, 100ms)"
            )));
        }
    }
    if replica_sync_connections == 0 || replica_sync_connections > 1024 {
        return Err(LockError::InvalidOption(format!(
            "replica_sync_connections {replica_sync_connections} must be between 1 and 1024"
        )));
    }
    Ok(())
}

/// What the backend and its notice subscriber share.
struct Shared {
    client: ClusterClient,
    /// Connected on first use (inside the runtime; a cluster connection runs a task).
    conn: OnceCell<ClusterConnection>,
    /// The configured nodes; the first one is the template (credentials, TLS) for discovered nodes.
    initial: Vec<ConnectionInfo>,
    timeout: Duration,
}

impl Shared {
    async fn conn(&self) -> Result<ClusterConnection, BackendError> {
        let init = self
            .conn
            .get_or_try_init(|| self.client.get_async_connection());
        match tokio::time::timeout(self.timeout, init).await {
            Ok(Ok(conn)) => Ok(conn.clone()),
            Ok(Err(e)) => Err(map_cluster_err(e)),
            Err(_) => Err(BackendError::unavailable(format!(
                "no cluster node answered within the command timeout of {:?}",
                self.timeout
            ))),
        }
    }

    /// Where the notice subscriber may connect: the live nodes `CLUSTER NODES` names, then the
    /// configured ones.
    async fn notice_nodes(&self) -> Vec<ConnectionInfo> {
        let mut out: Vec<ConnectionInfo> = Vec::new();
        if let Ok(mut conn) = self.conn().await {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("NODES");
            let fut =
                conn.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random));
            if let Ok(Ok(v)) = tokio::time::timeout(self.timeout, fut).await {
                if let Ok(text) = redis::from_redis_value::<String>(v) {
                    for (host, port) in live_nodes(&text) {
                        out.push(with_addr(&self.initial[0], host, port));
                    }
                }
            }
        }
        for info in &self.initial {
            if !out.iter().any(|o| o.addr() == info.addr()) {
                out.push(info.clone());
            }
        }
        out
    }
}

/// `host:port` of every node in a `CLUSTER NODES` reply that is not failed, in handshake or without
/// an address.
fn live_nodes(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let _id = parts.next()?;
            let addr = parts.next()?;
            let flags = parts.next()?;
            if flags.contains("fail") || flags.contains("handshake") || flags.contains("noaddr") {
                return None;
            }
            let hostport = addr.split(['@', ',']).next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
        })
        .collect()
}

/// `template` (credentials, database, TLS settings) pointed at `host:port`.
fn with_addr(template: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let addr = match template.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    template.clone().set_addr(addr)
}

/// Like the single-node mapping, plus the cluster's transient states (failover in progress, slot
/// moving, no connection to the slot's node) as "unavailable".
fn map_cluster_err(e: redis::RedisError) -> BackendError {
    let transient = matches!(
        e.kind(),
        ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::ClusterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
            )
    );
    if transient {
        return BackendError::unavailable(e.to_string());
    }
    let text = e.to_string();
    if text.contains("CLUSTERDOWN") || text.contains("TRYAGAIN") {
        return BackendError::unavailable(text);
    }
    map_err(e)
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) || e.to_string().contains("NOSCRIPT")
}

pub(super) fn acquired_from(reply: &[i64], ttl: Duration) -> Result<Acquired, BackendError> {
    match reply {
        [1, fence] if *fence > 0 => Ok(Acquired::Granted {
            fence: Some(*fence as u64),
            validity: ttl,
        }),
        [0, pttl] => Ok(Acquired::Busy {
            remaining: (*pttl >= 0).then(|| Duration::from_millis(*pttl as u64)),
        }),
        other => Err(BackendError::other(format!(
            "unexpected acquire reply {other:?}"
        ))),
    }
}

/// The [`ACQUIRE_LUA`] keys and arguments for `name`: lock and fence counter; token, TTL in ms and the
/// counter's lifetime in ms ([`FENCE_COUNTER_KEEP`] past the TTL).
fn acquire_args(c: &mut Cmd, name: &LockName, token: &str, ttl: Duration) {
    c.arg(2)
        .arg(&name.lock_key)
        .arg(&name.fence_key)
        .arg(token)
        .arg(ms(ttl))
        .arg(ms(ttl + FENCE_COUNTER_KEEP));
}

/// The acquire script (by body: a dedicated connection may reach a node that never ran it) and
/// `WAIT replicas wait` in one pipeline on `conn`. Reply: the acquire reply and the number of replicas
/// that acknowledged.
pub(super) async fn synced_acquire<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    name: &LockName,
    token: &str,
    ttl: Duration,
    replicas: u32,
    wait: Duration,
) -> redis::RedisResult<(Vec<i64>, i64)> {
    let mut pipe = redis::pipe();
    pipe.add_command(ACQUIRE.cmd(true, &|c: &mut Cmd| acquire_args(c, name, token, ttl)));
    let mut wait_cmd = redis::cmd("WAIT");
    wait_cmd.arg(replicas).arg(ms(wait));
    pipe.add_command(wait_cmd);
    pipe.query_async(conn).await
}

/// The error for a grant that too few replicas acknowledged.
/// The error of a hand-over asked of a backend whose grants wait for replicas (Cluster, Sentinel):
/// a hand-over is not acknowledged by replicas, so such backends do not hand over.
pub(super) fn no_hand_over_with_replica_sync() -> BackendError {
    BackendError::other("no hand-over with wait_for_replicas (grants wait for replicas)")
}

pub(super) fn replica_shortfall(
    name: &LockName,
    acked: i64,
    replicas: u32,
    wait: Duration,
    released: bool,
) -> BackendError {
    let what = if released {
        "it was released again"
    } else {
        "releasing it failed, so it expires at its TTL"
    };
    BackendError::unavailable(format!(
        "the primary granted `{}`, but only {acked} of {replicas} replica(s) acknowledged it within {wait:?} (wait_for_replicas); {what}, because a failover now could hand the lock to a second owner",
        name.lock_key
    ))
}

/// Dedicated cluster connections for acquires that wait for replicas (see the module docs).
struct ReplicaSync {
    replicas: u32,
    wait: Duration,
    /// The size of the pool.
    connections: usize,
    /// A client whose response timeout leaves room for `WAIT`.
    client: ClusterClient,
    idle: Mutex<Vec<ClusterConnection>>,
    permits: Semaphore,
}

/// Locks on a Redis Cluster (see the module docs): routing by hash slot, failover through the redis
/// crate's cluster client, release notices through one node, optional replica acknowledgement.
pub struct ClusterBackend {
    shared: Arc<Shared>,
    describe: String,
    hub: NoticeHub,
    subscriber: SubscriberSlot,
    sync: Option<ReplicaSync>,
}

impl std::fmt::Debug for ClusterBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBackend")
            .field("nodes", &self.describe)
            .finish_non_exhaustive()
    }
}

fn cluster_client(
    infos: &[ConnectionInfo],
    response_timeout: Duration,
    connect_timeout: Duration,
) -> redis::RedisResult<ClusterClient> {
    ClusterClientBuilder::new(infos.to_vec())
        .connection_timeout(connect_timeout)
        .response_timeout(response_timeout)
        .overall_response_timeout(Some(response_timeout))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
        .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1)
        .build()
}

impl ClusterBackend {
    /// A backend for the cluster that `urls` (one or more of its nodes, `redis://` or `rediss://` with
    /// feature `tls`) belong to, without connecting yet: the first command discovers the cluster.
    /// Fails on a malformed URL or bad options.
    pub fn open_lazy<S: AsRef<str>>(
        urls: &[S],
        opts: ClusterOptions,
    ) -> Result<ClusterBackend, LockError> {
        opts.check()?;
        if urls.is_empty() {
            return Err(LockError::InvalidOption(
                "a Redis Cluster needs at least one node URL, e.g. [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]".into(),
            ));
        }
        let mut infos = Vec::with_capacity(urls.len());
        let mut shown = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.as_ref().trim();
            let client = parse_url(url)?;
            let info = client.get_connection_info().clone();
            if matches!(info.addr(), ConnectionAddr::Unix(_)) {
                return Err(LockError::InvalidUrl {
                    url: mask_url(url),
                    reason: "cluster nodes are reached over TCP; use \"redis://host:port\"".into(),
                });
            }
            infos.push(info);
            shown.push(mask_url(url));
        }
        let describe = format!("redis-cluster[{}]", shown.join(", "));
        let bad_config = |e: redis::RedisError| {
            LockError::InvalidOption(format!(
                "the Redis Cluster client rejected the node URLs {shown:?}: {e}"
            ))
        };
        let t = opts.command_timeout;
        let client = cluster_client(&infos, t, t).map_err(bad_config)?;
        let sync = match opts.wait_for_replicas {
            Some((replicas, wait)) => Some(ReplicaSync {
                replicas,
                wait,
                connections: opts.replica_sync_connections,
                client: cluster_client(&infos, t + wait, t).map_err(bad_config)?,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(opts.replica_sync_connections),
            }),
            None => None,
        };
        Ok(ClusterBackend {
            shared: Arc::new(Shared {
                client,
                conn: OnceCell::new(),
                initial: infos,
                timeout: t,
            }),
            describe,
            hub: NoticeHub::default(),
            subscriber: SubscriberSlot::default(),
            sync,
        })
    }

    /// Open a backend (see [`open_lazy`](Self::open_lazy)) and check that the cluster answers: its slot
    /// map can be read and every primary answers `PING`, within the command timeout.
    pub async fn open<S: AsRef<str>>(
        urls: &[S],
        opts: ClusterOptions,
    ) -> Result<ClusterBackend, LockError> {
        let backend = Self::open_lazy(urls, opts)?;
        backend
            .ping()
            .await
            .map_err(|e| super::unreachable_at_open(backend.describe.clone(), e))?;
        Ok(backend)
    }

    /// `PING` every primary (bounded by the command timeout).
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.shared.conn().await?;
        let ping = redis::cmd("PING");
        let fut = ping.query_async::<redis::Value>(&mut conn);
        match tokio::time::timeout(self.shared.timeout, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(map_cluster_err(e)),
            Err(_) => Err(timed_out(self.shared.timeout)),
        }
    }

    /// Run a script on the primary of the slot of its first key, bounded by `bound`: by hash, and
    /// again with its body when the node does not know it.
    async fn run<T: FromRedisValue>(
        &self,
        script: &Lua,
        fill: &(dyn Fn(&mut Cmd) + Sync),
        bound: Duration,
    ) -> Result<T, BackendError> {
        let fut = async {
            let mut conn = self.shared.conn().await?;
            let by_hash = script.cmd(false, fill).query_async::<T>(&mut conn).await;
            match by_hash {
                Err(e) if is_noscript(&e) => script
                    .cmd(true, fill)
                    .query_async::<T>(&mut conn)
                    .await
                    .map_err(map_cluster_err),
                other => other.map_err(map_cluster_err),
            }
        };
        match tokio::time::timeout(bound, fut).await {
            Ok(r) => r,
            Err(_) => Err(timed_out(bound)),
        }
    }

    /// The next fence of `name` if it holds `token` ([`FENCE_LUA`]); `None` when it does not.
    async fn owned_fence(&self, name: &LockName, token: &str) -> Result<Option<u64>, BackendError> {
        let keep = ms(FENCE_COUNTER_KEEP);
        let fence: i64 = self
            .run(
                &FENCE,
                &|c: &mut Cmd| {
                    c.arg(2)
                        .arg(&name.lock_key)
                        .arg(&name.fence_key)
                        .arg(token)
                        .arg(keep);
                },
                self.shared.timeout,
            )
            .await?;
        Ok(u64::try_from(fence).ok().filter(|f| *f > 0))
    }

    /// Acquire and `WAIT` for replicas in one pipeline on a dedicated connection.
    async fn acquire_synced(
        &self,
        sync: &ReplicaSync,
        name: &LockName,
        token: &str,
        ttl: Duration,
    ) -> Result<Acquired, BackendError> {
        let t = self.shared.timeout;
        let fut = async {
            let Ok(_permit) = tokio::time::timeout(t, sync.permits.acquire()).await else {
                return Err(BackendError::unavailable(format!(
                    "all {} replica-sync connections stayed busy for the command timeout of {t:?}; raise ClusterOptions::replica_sync_connections",
                    sync.connections
                )));
            };
            let pooled = sync.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => match tokio::time::timeout(t, sync.client.get_async_connection()).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Err(map_cluster_err(e)),
                    Err(_) => return Err(timed_out(t)),
                },
            };
            let (reply, acked) =
                synced_acquire(&mut conn, name, token, ttl, sync.replicas, sync.wait)
                    .await
                    .map_err(map_cluster_err)?;
            // Only a connection whose last request completed goes back to the pool.
            sync.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            Ok((reply, acked))
        };
        let bound = t + sync.wait;
        let (reply, acked) = match tokio::time::timeout(bound, fut).await {
            Ok(r) => r?,
            Err(_) => return Err(timed_out(bound)),
        };
        let outcome = acquired_from(&reply, ttl)?;
        if matches!(outcome, Acquired::Granted { .. }) && acked < i64::from(sync.replicas) {
            let released = self.release(name, token, None).await;
            return Err(replica_shortfall(
                name,
                acked,
                sync.replicas,
                sync.wait,
                released.is_ok(),
            ));
        }
        Ok(outcome)
    }

    /// Renew one slot's leases (`idx` into `batch`); one 1/0 per lease.
    async fn renew_slot(
        &self,
        batch: &[RenewItem<'_>],
        idx: &[usize],
        bound: Duration,
    ) -> Result<Vec<i64>, BackendError> {
        let reply: Vec<i64> = self
            .run(
                &RENEW,
                &|c: &mut Cmd| {
                    c.arg(idx.len());
                    for &i in idx {
                        c.arg(&batch[i].name.lock_key);
                    }
                    for &i in idx {
                        c.arg(batch[i].token);
                    }
                    for &i in idx {
                        c.arg(ms(batch[i].ttl));
                    }
                },
                bound,
            )
            .await?;
        if reply.len() != idx.len() {
            return Err(BackendError::other(format!(
                "renewal answered {} results for {} locks",
                reply.len(),
                idx.len()
            )));
        }
        Ok(reply)
    }
}

impl Backend for ClusterBackend {
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
            let outcome = match &self.sync {
                Some(sync) => self.acquire_synced(sync, name, token, ttl).await?,
                None => {
                    let reply: Vec<i64> = self
                        .run(
                            &ACQUIRE,
                            &|c: &mut Cmd| acquire_args(c, name, token, ttl),
                            self.shared.timeout,
                        )
                        .await?;
                    acquired_from(&reply, ttl)?
                }
            };
            if let Acquired::Busy { .. } = outcome {
                // A retried acquire (or hand-over) whose first attempt was granted finds its own
                // token.
                if let Ok(Some(fence)) = self.owned_fence(name, token).await {
                    return Ok(Acquired::Granted {
                        fence: Some(fence),
                        validity: ttl,
                    });
                }
            }
            Ok(outcome)
        })
    }

    fn renew<'a>(
        &'a self,
        batch: &'a [RenewItem<'a>],
    ) -> BoxFuture<'a, Result<Vec<Renewed>, BackendError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            // Group by hash slot, keeping the batch order inside each group.
            let mut slots: HashMap<Slot, usize> = HashMap::new();
            let mut pending: Vec<Vec<usize>> = Vec::new();
            for (i, item) in batch.iter().enumerate() {
                let slot = Slot::for_key(item.name.lock_key.as_bytes());
                let g = *slots.entry(slot).or_insert_with(|| {
                    pending.push(Vec::new());
                    pending.len() - 1
                });
                pending[g].push(i);
            }
            let min_ttl = batch.iter().map(|i| i.ttl).min().unwrap_or_default();
            let started = Instant::now();
            // Unanswered slots are retried until the next regular renewal would be due (each try
            // bounded by the command timeout); answered ones are reported then, well inside their
            // deadlines.
            let give_up = started + (min_ttl / 3).max(Duration::from_millis(10));
            let pause = (min_ttl / 20).clamp(Duration::from_millis(5), Duration::from_millis(100));
            let mut out: Vec<Option<Renewed>> = vec![None; batch.len()];
            let mut answered = false;
            let mut last_err = None;
            loop {
                let bound = give_up
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(5), self.shared.timeout);
                let results = futures_util::future::join_all(
                    pending.iter().map(|idx| self.renew_slot(batch, idx, bound)),
                )
                .await;
                let mut failed = Vec::new();
                for (idx, result) in pending.into_iter().zip(results) {
                    match result {
                        Ok(replies) => {
                            answered = true;
                            for (&i, r) in idx.iter().zip(replies) {
                                out[i] = Some(if r == 1 {
                                    Renewed::Extended(batch[i].ttl)
                                } else {
                                    Renewed::NotHeld
                                });
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, locks = idx.len(), "lockattr: cluster renewal of one slot failed");
                            last_err = Some(e);
                            failed.push(idx);
                        }
                    }
                }
                pending = failed;
                if pending.is_empty() || Instant::now() + pause >= give_up {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            if !answered {
                return Err(last_err
                    .unwrap_or_else(|| BackendError::unavailable("no slot answered the renewal")));
            }
            // Unanswered slots: no news (validity zero leaves their deadlines where they are).
            Ok(out
                .into_iter()
                .map(|o| o.unwrap_or(Renewed::Extended(Duration::ZERO)))
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
            // As in the single-node backend: notices go out when the lock carries the waiter mark, or
            // when a waiter of this client watches the channel.
            let mode = release_mode(keep_for, self.hub.is_watched(&name.channel));
            let reply = self
                .run(
                    &RELEASE,
                    &|c: &mut Cmd| {
                        c.arg(1)
                            .arg(&name.lock_key)
                            .arg("release")
                            .arg(token)
                            .arg(mode);
                    },
                    self.shared.timeout,
                )
                .await;
            Ok(release_codes(reply, 1)?[0])
        })
    }

    fn fence<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        Box::pin(self.owned_fence(name, token))
    }

    /// Not with [`ClusterOptions::wait_for_replicas`]: a hand-over is not acknowledged by replicas.
    fn hands_over(&self) -> bool {
        self.sync.is_none()
    }

    /// As the single node does, on the lock's slot: one script call gives the lock to the next local
    /// waiter, whose fence is issued when it asks ([`Backend::fence`], owner-checked). When the
    /// cluster client sends it again after a lost reply, the second run finds the lock the waiter's
    /// and answers "not ours"; the waiter then tries itself and finds its own token
    /// ([`Backend::acquire`]).
    fn hand_over<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        next: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<HandedOver, BackendError>> {
        Box::pin(async move {
            if !self.hands_over() {
                return Err(no_hand_over_with_replica_sync());
            }
            let code: i64 = self
                .run(
                    &HANDOVER,
                    &|c: &mut Cmd| {
                        c.arg(1)
                            .arg(&name.lock_key)
                            .arg(token)
                            .arg(next)
                            .arg(ms(ttl));
                    },
                    self.shared.timeout,
                )
                .await?;
            if code == 3 {
                return Ok(HandedOver::Granted);
            }
            Ok(HandedOver::Released(Released::from_code(code)))
        })
    }

    fn subscribe<'a>(&'a self, name: &'a LockName) -> BoxFuture<'a, Subscription> {
        Box::pin(async move {
            let (sub, first) = self.hub.register(&name.channel);
            // The first local waiter waits (bounded) for the node's confirmation, so a release right
            // after its next attempt is not missed; without it the waiter still re-checks on its timer.
            let (shared, hub) = (self.shared.clone(), self.hub.clone());
            self.subscriber
                .watch(&name.channel, first, self.shared.timeout, move |rx| {
                    run_subscriber(shared, hub, rx)
                })
                .await;
            sub
        })
    }
}

/// The client's one release-notice connection: to any live cluster node, moving to another when it
/// fails; subscribes on demand, lingers on idle channels, and wakes every waiter after any reconnect.
async fn run_subscriber(
    shared: Arc<Shared>,
    hub: NoticeHub,
    mut rx: mpsc::UnboundedReceiver<SubCmd>,
) {
    use futures_util::StreamExt;
    let timeout = shared.timeout;
    let mut backoff = Duration::from_millis(20);
    let mut last_node = String::new();
    loop {
        let mut nodes = shared.notice_nodes().await;
        // Try the node that failed last time only after all others.
        nodes.sort_by_key(|n| n.addr().to_string() == last_node);
        let mut connected = None;
        for info in nodes {
            let Ok(client) = redis::Client::open(info.clone()) else {
                continue;
            };
            if let Ok(Ok(p)) = tokio::time::timeout(timeout, client.get_async_pubsub()).await {
                connected = Some((p, info.addr().to_string()));
                break;
            }
        }
        let Some((pubsub, node)) = connected else {
            tracing::debug!(
                "lockattr: no cluster node accepts the release-notice connection; retrying"
            );
            if !drain_while_down(&mut rx, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        backoff = Duration::from_millis(20);
        last_node = node;
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<String> = HashSet::new();
        let wanted = hub.channels();
        if !wanted.is_empty() {
            match tokio::time::timeout(timeout, sink.subscribe(&wanted)).await {
                Ok(Ok(())) => subscribed.extend(wanted),
                _ => continue,
            }
        }
        hub.notify_all();
        let mut ping = tokio::time::interval(NOTICE_PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
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
                _ = ping.tick() => {
                    if !matches!(tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await, Ok(Ok(_))) {
                        break;
                    }
                    if last_sweep.elapsed() >= NOTICE_SWEEP_EVERY {
                        last_sweep = Instant::now();
                        unsubscribe_idle(&mut sink, &mut subscribed, &hub, timeout).await;
                    }
                }
            }
        }
        tracing::debug!(node = %last_node, "lockattr: release-notice connection lost; moving to another cluster node");
        hub.notify_all();
    }
}

/// Parse `redis+cluster://[user:password@]host1:port1,host2:port2[#insecure]` (the form
/// `LOCKATTR_REDIS_URL` accepts) into one node URL per host, each with the credentials and the
/// fragment; `rediss+cluster://` uses TLS (`#insecure`: without checking the certificate).
pub(crate) fn parse_env_url(url: &str) -> Result<Vec<String>, LockError> {
    let bad = |reason: &str| LockError::InvalidUrl {
        url: mask_url(url),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = url
        .trim()
        .split_once("://")
        .ok_or_else(|| bad("missing scheme"))?;
    let scheme = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return Err(bad("expected redis+cluster://host:port,host:port")),
    };
    let (rest, fragment) = split_fragment(rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(path.trim_end_matches('/'), "" | "0") {
        return Err(bad(
            "a Redis Cluster has only database 0; drop the database from the URL",
        ));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let urls: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{userinfo}{h}{fragment}"))
        .collect();
    if urls.is_empty() {
        return Err(bad("no cluster node given"));
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_nodes_skips_failed_and_handshaking_nodes() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,node-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected 10923-16383
d4 127.0.0.1:7003@17003 slave,fail? a1 0 0 1 connected
e5 :0@0 master,noaddr - 0 0 0 disconnected
f6 127.0.0.1:7005@17005 handshake - 0 0 0 connected
";
        assert_eq!(
            live_nodes(text),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }

    #[test]
    fn options_are_checked() {
        assert!(ClusterOptions::default().check().is_ok());
        assert!(ClusterOptions::default()
            .wait_for_replicas(0, Duration::from_millis(10))
            .check()
            .is_err());
        assert!(ClusterOptions::default()
            .wait_for_replicas(1, Duration::ZERO)
            .check()
            .is_err());
        assert!(ClusterOptions::default()
            .command_timeout(Duration::ZERO)
            .check()
            .is_err());
        assert!(ClusterOptions::default()
            .replica_sync_connections(0)
            .check()
            .is_err());
    }

    #[test]
    fn open_lazy_checks_urls() {
        let err = ClusterBackend::open_lazy::<&str>(&[], ClusterOptions::default()).unwrap_err();
        assert!(err.to_string().contains("at least one node"), "{err}");
        let err =
            ClusterBackend::open_lazy(&["127.0.0.1:7000"], ClusterOptions::default()).unwrap_err();
        assert!(err.to_string().contains("missing scheme"), "{err}");
        let b = ClusterBackend::open_lazy(
            &[
                "redis://:secret@127.0.0.1:7000",
                "redis://:secret@127.0.0.1:7001",
            ],
            ClusterOptions::default(),
        )
        .expect("valid urls");
        let d = b.describe();
        assert!(d.contains("127.0.0.1:7001") && !d.contains("secret"), "{d}");
    }

    #[test]
    fn builder_opens_lazily_and_refuses_mixed_setups() {
        // No runtime here: nothing may connect or spawn before the first command.
        let client = crate::LockClient::builder()
            .cluster(&["redis://127.0.0.1:1"])
            .build()
            .expect("lazy cluster client");
        assert!(client.backend().describe().starts_with("redis-cluster["));
        let client = crate::LockClient::builder()
            .sentinel(&["redis://127.0.0.1:1"], "mymaster")
            .build()
            .expect("lazy sentinel client");
        assert!(client.backend().describe().ends_with("/mymaster"));
        let err = crate::LockClient::builder()
            .url("redis://127.0.0.1:1")
            .cluster(&["redis://127.0.0.1:2"])
            .build()
            .expect_err("two ways to reach Redis");
        assert!(err.to_string().contains("cannot be combined"), "{err}");
        // `.url` takes the deployment URLs of `LOCKATTR_REDIS_URL` too.
        let client = crate::LockClient::builder()
            .url("redis+cluster://127.0.0.1:1,127.0.0.1:2")
            .build()
            .expect("lazy cluster client from a URL");
        assert_eq!(
            client.backend().describe(),
            "redis-cluster[redis://127.0.0.1:1, redis://127.0.0.1:2]"
        );
        let client = crate::LockClient::builder()
            .url("redis+sentinel://127.0.0.1:1/mymaster")
            .build()
            .expect("lazy sentinel client from a URL");
        assert!(client.backend().describe().ends_with("/mymaster"));
        let err = crate::LockClient::builder()
            .url("redis+cluster://127.0.0.1:1")
            .redlock(&[
                "redis://127.0.0.1:2",
                "redis://127.0.0.1:3",
                "redis://127.0.0.1:4",
            ])
            .build()
            .expect_err("two ways to reach Redis");
        assert!(err.to_string().contains("cannot be combined"), "{err}");
        let err = crate::LockClient::builder()
            .url("redis+sentinel://127.0.0.1:1")
            .build()
            .expect_err("no master name");
        assert!(err.to_string().contains("master name is missing"), "{err}");
    }

    #[test]
    fn env_url_is_parsed() {
        assert_eq!(
            parse_env_url("redis+cluster://:pw@10.0.0.1:7000, 10.0.0.2:7001").expect("valid"),
            ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]
        );
        assert!(parse_env_url("redis+cluster://").is_err());
        // `#insecure` (and only the fragment) goes on to every node's URL.
        assert_eq!(
            parse_env_url("rediss+cluster://h1:7000,h2:7001/#insecure").expect("valid"),
            ["rediss://h1:7000#insecure", "rediss://h2:7001#insecure"]
        );
        assert_eq!(
            parse_env_url("rediss+cluster://h1:7000,h2:7001#insecure").expect("valid"),
            ["rediss://h1:7000#insecure", "rediss://h2:7001#insecure"]
        );
        assert_eq!(
            parse_env_url("redis+cluster://h1:7000/0").expect("valid"),
            ["redis://h1:7000"]
        );
        let err = parse_env_url("redis+cluster://h1:7000/3").unwrap_err();
        assert!(err.to_string().contains("only database 0"), "{err}");
        let err = parse_env_url("redis://:secret@h:1").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn scripts_hash_like_redis() {
        assert_eq!(ACQUIRE.hash, redis::Script::new(ACQUIRE_LUA).get_hash());
        let by_hash =
            String::from_utf8_lossy(&ACQUIRE.cmd(false, &|_| {}).get_packed_command()).into_owned();
        assert!(by_hash.contains("EVALSHA") && by_hash.contains(&ACQUIRE.hash));
        let by_body =
            String::from_utf8_lossy(&ACQUIRE.cmd(true, &|_| {}).get_packed_command()).into_owned();
        assert!(by_body.contains("EVAL\r\n") && by_body.contains("SET"));
    }
}
