//! Locks on a Sentinel-managed Redis primary: [`SentinelBackend`].
//!
//! The Sentinels are asked which server is the primary of the named master (the redis crate's
//! [`SentinelClient`], which also checks with `ROLE` that the server named is a primary); locks then run
//! on that primary exactly as on one Redis server, through a [`RedisBackend`] (same scripts, same
//! release-notice subscriber, same error handling).
//!
//! # Following the primary
//! The redis crate resolves the primary when a connection is made and never again, so the backend does
//! the following itself:
//! - Any failure of a command that may mean the primary changed — a connection error or timeout, a
//!   `READONLY` error (the server was demoted to a replica), `MASTERDOWN`, `LOADING` — marks the
//!   current primary as doubtful; the next command asks the Sentinels again. If they name the same
//!   server it is kept (its connection reconnects by itself); if they name another, a connection to the
//!   new primary replaces the old one, its release-notice connection re-subscribes every watched
//!   channel, and every waiter is woken to re-check.
//! - A background task listens for `+switch-master` on one Sentinel (moving to the next one when it
//!   fails) and re-resolves at once when the master is switched, so a client also leaves a primary that
//!   still answers (a primary cut off from the Sentinels by a partition, or demoted by `SENTINEL
//!   FAILOVER`) without waiting for an error.
//! - While no primary is known (between the failure and the promotion, `down-after-milliseconds` plus
//!   the election), commands fail as unavailable: an acquire with a `wait` retries inside its budget,
//!   renewals retry inside the lease deadline.
//!
//! # What a failover can and cannot guarantee
//! Replication is asynchronous: a replica promoted after a crash may miss the last locks granted by the
//! old primary and grant them again while their first owners still believe they hold them.
//! - **Fencing tokens never go backwards**: the acquire script issues `max(last + 1, server clock in
//!   µs)`, so the promoted replica issues fences above every fence of the old primary as long as its
//!   clock is ahead of the old primary's clock at its last grant — promotion takes at least
//!   `down-after-milliseconds`, so this holds unless the hosts' clocks disagree by more than that. A
//!   resource that rejects lower fences refuses the stale owner's writes.
//! - The first owner learns of the loss at its next renewal (the new primary answers "not yours") or at
//!   its deadline, and its guarded work is cancelled.
//! - [`SentinelOptions::wait_for_replicas`] (`WAIT n timeout` after each grant, on a dedicated
//!   connection, in the same pipeline as the acquire script) makes a grant count only once `n` replicas
//!   have it; fewer acknowledgements release the lock and fail the acquire.
//! - A primary cut off from the Sentinels and from this client's Sentinel connection keeps accepting
//!   locks until its clients notice; Redis's `min-replicas-to-write` bounds how long. This is Redis
//!   Sentinel's own split-brain caveat and applies to every client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ConnectionAddr, RedisConnectionInfo};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::cluster::{
    acquired_from, no_hand_over_with_replica_sync, replica_shortfall, synced_acquire,
};
use super::redis::{
    map_err, mask_url, parse_url, split_fragment, timed_out, untrusted_certificate, RedisBackend,
    RedisOptions,
};
use super::{
    Acquired, Backend, BoxFuture, HandedOver, NoticeHub, Released, RenewItem, Renewed, Subscription,
};
use crate::error::{BackendError, BackendErrorKind, LockError};
use crate::key::LockName;

/// Options of a [`SentinelBackend`].
///
/// ```
/// use std::time::Duration;
/// use lockattr_runtime::backend::sentinel::SentinelOptions;
/// let opts = SentinelOptions::default()
///     .password("s3cret")
///     .wait_for_replicas(1, Duration::from_millis(100));
/// assert_eq!(opts.wait_for_replicas, Some((1, Duration::from_millis(100))));
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
///
/// When the backend is built through [`crate::LockClientBuilder::sentinel`], the client's command
/// timeout is used for `command_timeout`.
#[derive(Clone)]
#[non_exhaustive]
pub struct SentinelOptions {
    /// Bound on each command and connection attempt, and on each resolution of the primary through
    /// the Sentinels (default 2 s).
    pub command_timeout: Duration,
    /// Username for the primary (ACL), if any. (Credentials of the Sentinels themselves go into their
    /// URLs.)
    pub username: Option<String>,
    /// Password for the primary, if any.
    pub password: Option<String>,
    /// Database number on the primary (default 0).
    pub db: i64,
    /// After each grant, wait until this many replicas acknowledged it, at most this long (`WAIT n
    /// timeout`); otherwise release it and fail the acquire. `None` (the default): do not wait.
    pub wait_for_replicas: Option<(u32, Duration)>,
    /// How many acquires may wait for replicas at the same time (each on its own connection, because
    /// `WAIT` blocks the connection it runs on). Default 8.
    pub replica_sync_connections: usize,
}

impl std::fmt::Debug for SentinelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelOptions")
            .field("command_timeout", &self.command_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("wait_for_replicas", &self.wait_for_replicas)
            .field("replica_sync_connections", &self.replica_sync_connections)
            .finish()
    }
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            command_timeout: Duration::from_secs(2),
            username: None,
            password: None,
            db: 0,
            wait_for_replicas: None,
            replica_sync_connections: 8,
        }
    }
}

impl SentinelOptions {
    /// Set [`command_timeout`](Self::command_timeout).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }
    /// Set [`username`](Self::username).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }
    /// Set [`password`](Self::password).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
    /// Set [`db`](Self::db).
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
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

    fn check(&self) -> Result<(), LockError> {
        super::cluster::check_options(
            self.command_timeout,
            self.wait_for_replicas,
            self.replica_sync_connections,
        )?;
        if self.db < 0 {
            return Err(LockError::InvalidOption(format!(
                "database number {} must not be negative",
                self.db
            )));
        }
        Ok(())
    }
}

/// The primary currently in use.
struct Primary {
    backend: RedisBackend,
    client: redis::Client,
    /// `host:port`.
    addr: String,
    /// A command failed in a way that may mean the primary changed: ask the Sentinels again.
    doubtful: AtomicBool,
    /// Dedicated connections for acquires that wait for replicas.
    sync_idle: Mutex<Vec<redis::aio::MultiplexedConnection>>,
}

struct State {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The Sentinels, for the `+switch-master` listener.
    sentinels: Vec<redis::Client>,
    master: String,
    opts: SentinelOptions,
    hub: NoticeHub,
    current: Mutex<Option<Arc<Primary>>>,
    /// Held while asking the Sentinels; holds the number of resolutions so far and the error of the
    /// last one if it failed, so callers that queued behind a failed resolution share its answer
    /// instead of asking again one after another.
    resolving: tokio::sync::Mutex<(u64, Option<BackendError>)>,
    resolutions: std::sync::atomic::AtomicU64,
    sync_permits: Semaphore,
}

impl State {
    fn current(&self) -> Option<Arc<Primary>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn mark_doubtful(&self) {
        if let Some(p) = self.current() {
            p.doubtful.store(true, Ordering::Release);
        }
    }

    /// The primary to use: the current one unless it is doubtful, else whatever the Sentinels name.
    async fn primary(&self) -> Result<Arc<Primary>, BackendError> {
        match self.current() {
            Some(p) if !p.doubtful.load(Ordering::Acquire) => Ok(p),
            _ => self.resolve().await,
        }
    }

    async fn resolve(&self) -> Result<Arc<Primary>, BackendError> {
        let t = self.opts.command_timeout;
        let seen = self.resolutions.load(Ordering::Acquire);
        let Ok(mut resolving) = tokio::time::timeout(t, self.resolving.lock()).await else {
            return Err(timed_out(t));
        };
        // Someone else may have resolved while we waited.
        if let Some(p) = self.current() {
            if !p.doubtful.load(Ordering::Acquire) {
                return Ok(p);
            }
        }
        if resolving.0 != seen {
            if let Some(e) = &resolving.1 {
                return Err(e.clone());
            }
        }
        let result = self.ask_sentinels().await;
        resolving.0 += 1;
        self.resolutions.store(resolving.0, Ordering::Release);
        resolving.1 = result.as_ref().err().cloned();
        result
    }

    async fn ask_sentinels(&self) -> Result<Arc<Primary>, BackendError> {
        let t = self.opts.command_timeout;
        let asked = async { self.sentinel.lock().await.async_get_client().await };
        let client = match tokio::time::timeout(t, asked).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) if untrusted_certificate(&e.to_string()) => return Err(map_err(e)),
            Ok(Err(e)) => {
                return Err(BackendError::unavailable(format!(
                    "the Sentinels name no usable primary for `{}` (a failover may be in progress): {e}",
                    self.master
                )))
            }
            Err(_) => {
                return Err(BackendError::unavailable(format!(
                    "the Sentinels did not name a primary for `{}` within the command timeout of {t:?}",
                    self.master
                )))
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        let previous = self.current();
        if let Some(p) = &previous {
            if p.addr == addr {
                p.doubtful.store(false, Ordering::Release);
                return Ok(p.clone());
            }
        }
        let backend = RedisBackend::from_client(
            client.clone(),
            format!("redis://{addr} (primary of `{}`)", self.master),
            RedisOptions { command_timeout: t },
        )
        .map_err(|e| BackendError::other(e.to_string()))?
        .with_hub(self.hub.clone());
        let primary = Arc::new(Primary {
            backend,
            client,
            addr,
            doubtful: AtomicBool::new(false),
            sync_idle: Mutex::new(Vec::new()),
        });
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(primary.clone());
        match &previous {
            Some(old) => {
                tracing::info!(master = %self.master, from = %old.addr, to = %primary.addr, "lockattr: following the Sentinel failover to a new primary")
            }
            None => {
                tracing::debug!(master = %self.master, primary = %primary.addr, "lockattr: primary resolved through the Sentinels")
            }
        }
        // Release notices now come from the new primary: start its subscriber, which subscribes every
        // watched channel; waiters re-check because notices may have been missed meanwhile.
        if let Some(channel) = self.hub.channels().into_iter().next() {
            primary
                .backend
                .watch_channel(&channel, false, Duration::ZERO)
                .await;
        }
        if previous.is_some() {
            self.hub.notify_all();
        }
        Ok(primary)
    }

    /// After a command on `p`: errors that may mean the primary changed make it doubtful.
    fn after<T>(&self, p: &Primary, r: &Result<T, BackendError>) {
        if let Err(e) = r {
            // Too few replicas acknowledging says nothing about which server is the primary.
            let shortfall = e.message.contains("(wait_for_replicas)");
            if !shortfall
                && (e.kind == BackendErrorKind::Unavailable
                    || e.message.contains("READONLY")
                    || e.message.contains("MASTERDOWN"))
            {
                p.doubtful.store(true, Ordering::Release);
            }
        }
    }
}

/// Locks on the primary that a group of Redis Sentinels manages (see the module docs).
pub struct SentinelBackend {
    state: Arc<State>,
    describe: String,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SentinelBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelBackend")
            .field("sentinels", &self.describe)
            .finish_non_exhaustive()
    }
}

impl SentinelBackend {
    /// A backend for the primary that the Sentinels at `sentinel_urls` (`redis://host:26379`, with
    /// the Sentinels' own credentials if they need any) manage under `master_name`, without connecting
    /// yet. Fails on a malformed URL or bad options.
    pub fn open_lazy<S: AsRef<str>>(
        sentinel_urls: &[S],
        master_name: &str,
        opts: SentinelOptions,
    ) -> Result<SentinelBackend, LockError> {
        opts.check()?;
        if sentinel_urls.is_empty() {
            return Err(LockError::InvalidOption(
                "Sentinel needs at least one Sentinel URL, e.g. [\"redis://10.0.0.1:26379\", \"redis://10.0.0.2:26379\", \"redis://10.0.0.3:26379\"]".into(),
            ));
        }
        if master_name.trim().is_empty() {
            return Err(LockError::InvalidOption(
                "the Sentinel master name is empty; use the name from `sentinel monitor <name> ...`, e.g. \"mymaster\"".into(),
            ));
        }
        let mut infos = Vec::new();
        let mut clients = Vec::new();
        let mut shown = Vec::new();
        // The primary is reached as the Sentinels are: over TLS when any Sentinel URL is `rediss://`,
        // without checking the certificate when such a URL says `#insecure`.
        let mut tls = None;
        for url in sentinel_urls {
            let url = url.as_ref().trim();
            let client = parse_url(url)?;
            if let ConnectionAddr::TcpTls { insecure, .. } = client.get_connection_info().addr() {
                if *insecure {
                    tls = Some(redis::TlsMode::Insecure);
                } else if tls.is_none() {
                    tls = Some(redis::TlsMode::Secure);
                }
            }
            infos.push(client.get_connection_info().clone());
            clients.push(client);
            shown.push(mask_url(url));
        }
        let mut redis_info = RedisConnectionInfo::default().set_db(opts.db);
        if let Some(u) = &opts.username {
            redis_info = redis_info.set_username(u);
        }
        if let Some(p) = &opts.password {
            redis_info = redis_info.set_password(p);
        }
        let mut node_info =
            SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_info);
        if let Some(mode) = tls {
            node_info = node_info.set_tls_mode(mode);
        }
        // A `String` suits both signatures of `build` (with and without the redis crate's TLS).
        let service: String = master_name.to_owned();
        let sentinel =
            SentinelClient::build(infos, service, Some(node_info), SentinelServerType::Master)
                .map_err(|e| {
                    LockError::InvalidOption(format!(
                        "the Sentinel client rejected the Sentinel URLs {shown:?}: {e}"
                    ))
                })?;
        let describe = format!("redis-sentinel[{}]/{master_name}", shown.join(", "));
        Ok(SentinelBackend {
            state: Arc::new(State {
                sentinel: tokio::sync::Mutex::new(sentinel),
                sentinels: clients,
                master: master_name.to_owned(),
                sync_permits: Semaphore::new(opts.replica_sync_connections),
                opts,
                hub: NoticeHub::default(),
                current: Mutex::new(None),
                resolving: tokio::sync::Mutex::new((0, None)),
                resolutions: std::sync::atomic::AtomicU64::new(0),
            }),
            describe,
            watcher: Mutex::new(None),
        })
    }

    /// Open a backend (see [`open_lazy`](Self::open_lazy)) and check that the Sentinels name a primary
    /// and that it answers `PING`, within the command timeout.
    pub async fn open<S: AsRef<str>>(
        sentinel_urls: &[S],
        master_name: &str,
        opts: SentinelOptions,
    ) -> Result<SentinelBackend, LockError> {
        let backend = Self::open_lazy(sentinel_urls, master_name, opts)?;
        backend
            .ping()
            .await
            .map_err(|e| super::unreachable_at_open(backend.describe.clone(), e))?;
        Ok(backend)
    }

    /// Resolve the primary if needed and `PING` it.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let p = self.primary().await?;
        let r = p.backend.ping().await;
        self.state.after(&p, &r);
        r
    }

    /// `host:port` of the primary in use, if one was resolved.
    pub fn current_primary(&self) -> Option<String> {
        self.state.current().map(|p| p.addr.clone())
    }

    async fn primary(&self) -> Result<Arc<Primary>, BackendError> {
        self.ensure_watcher();
        self.state.primary().await
    }

    fn ensure_watcher(&self) {
        let mut slot = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            *slot = Some(rt.spawn(watch_switches(self.state.clone())));
        }
    }

    /// Acquire and `WAIT` for replicas in one pipeline on a dedicated connection to the primary.
    async fn acquire_synced(
        &self,
        p: &Primary,
        (replicas, wait): (u32, Duration),
        name: &LockName,
        token: &str,
        ttl: Duration,
    ) -> Result<Acquired, BackendError> {
        let t = self.state.opts.command_timeout;
        let fut = async {
            let Ok(_permit) = tokio::time::timeout(t, self.state.sync_permits.acquire()).await
            else {
                return Err(BackendError::unavailable(format!(
                    "all {} replica-sync connections stayed busy for the command timeout of {t:?}; raise SentinelOptions::replica_sync_connections",
                    self.state.opts.replica_sync_connections
                )));
            };
            let pooled = p.sync_idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(t))
                        .set_response_timeout(Some(t + wait));
                    match tokio::time::timeout(
                        t,
                        p.client
                            .get_multiplexed_async_connection_with_config(&config),
                    )
                    .await
                    {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => return Err(super::redis::map_err(e)),
                        Err(_) => return Err(timed_out(t)),
                    }
                }
            };
            let r = synced_acquire(&mut conn, name, token, ttl, replicas, wait)
                .await
                .map_err(super::redis::map_err)?;
            p.sync_idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            Ok(r)
        };
        let bound = t + wait;
        let (reply, acked) = match tokio::time::timeout(bound, fut).await {
            Ok(r) => r?,
            Err(_) => return Err(timed_out(bound)),
        };
        let outcome = acquired_from(&reply, ttl)?;
        if matches!(outcome, Acquired::Granted { .. }) && acked < i64::from(replicas) {
            let released = p.backend.release(name, token, None).await;
            return Err(replica_shortfall(
                name,
                acked,
                replicas,
                wait,
                released.is_ok(),
            ));
        }
        Ok(outcome)
    }
}

impl Drop for SentinelBackend {
    fn drop(&mut self) {
        if let Some(h) = self
            .watcher
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

impl Backend for SentinelBackend {
    fn describe(&self) -> String {
        match self.state.current() {
            Some(p) => format!("{} (primary {})", self.describe, p.addr),
            None => self.describe.clone(),
        }
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Acquired, BackendError>> {
        Box::pin(async move {
            let p = self.primary().await?;
            let r = match self.state.opts.wait_for_replicas {
                Some(sync) => self.acquire_synced(&p, sync, name, token, ttl).await,
                None => p.backend.acquire(name, token, ttl).await,
            };
            self.state.after(&p, &r);
            r
        })
    }

    fn renew<'a>(
        &'a self,
        batch: &'a [RenewItem<'a>],
    ) -> BoxFuture<'a, Result<Vec<Renewed>, BackendError>> {
        Box::pin(async move {
            let p = self.primary().await?;
            let r = p.backend.renew(batch).await;
            self.state.after(&p, &r);
            r
        })
    }

    fn release<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
        keep_for: Option<Duration>,
    ) -> BoxFuture<'a, Result<Released, BackendError>> {
        Box::pin(async move {
            let p = self.primary().await?;
            let r = p.backend.release(name, token, keep_for).await;
            self.state.after(&p, &r);
            r
        })
    }

    /// Hand-over as on a single node, on the primary; not with `wait_for_replicas`, whose grants
    /// wait for replicas to acknowledge them (a hand-over would need that `WAIT` too).
    fn hands_over(&self) -> bool {
        self.state.opts.wait_for_replicas.is_none()
    }

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
            let p = self.primary().await?;
            let r = p.backend.hand_over(name, token, next, ttl).await;
            self.state.after(&p, &r);
            r
        })
    }

    fn fence<'a>(
        &'a self,
        name: &'a LockName,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        Box::pin(async move {
            let p = self.primary().await?;
            let r = p.backend.fence(name, token).await;
            self.state.after(&p, &r);
            r
        })
    }

    fn subscribe<'a>(&'a self, name: &'a LockName) -> BoxFuture<'a, Subscription> {
        Box::pin(async move {
            match self.primary().await {
                Ok(p) => p.backend.subscribe(name).await,
                // No primary now: register anyway; the next primary's subscriber picks the channel up.
                Err(_) => self.state.hub.register(&name.channel).0,
            }
        })
    }
}

/// Listen for `+switch-master` on one Sentinel at a time and re-resolve when our master is switched;
/// after (re)connecting to a Sentinel, a switch may have been missed, so the primary is re-checked too.
async fn watch_switches(state: Arc<State>) {
    use futures_util::StreamExt;
    let t = state.opts.command_timeout;
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(50);
    loop {
        let client = &state.sentinels[next % state.sentinels.len()];
        next = next.wrapping_add(1);
        let pubsub = match tokio::time::timeout(t, client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        if !matches!(
            tokio::time::timeout(t, sink.subscribe("+switch-master")).await,
            Ok(Ok(()))
        ) {
            continue;
        }
        backoff = Duration::from_millis(50);
        state.mark_doubtful();
        let mut ping = tokio::time::interval(Duration::from_secs(1));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let payload: String = msg.get_payload().unwrap_or_default();
                        if payload.split(' ').next() == Some(state.master.as_str()) {
                            tracing::debug!(master = %state.master, switch = %payload, "lockattr: Sentinel switched the primary");
                            state.mark_doubtful();
                            let _ = state.resolve().await;
                        }
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    if !matches!(tokio::time::timeout(t, sink.ping::<redis::Value>()).await, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        // Lost this Sentinel: a switch may be missed until the next one is connected.
        state.mark_doubtful();
    }
}

/// Parse `redis+sentinel://[user:password@]host1:port1,host2:port2/master_name[/db][#insecure]` (the
/// form `LOCKATTR_REDIS_URL` accepts): the Sentinel URLs (each with the fragment), the master name, and
/// options carrying the primary's credentials and database. `rediss+sentinel://` uses TLS for the
/// Sentinels and the primary (`#insecure`: without checking their certificates).
pub(crate) fn parse_env_url(
    url: &str,
) -> Result<(Vec<String>, String, SentinelOptions), LockError> {
    let shown = mask_url(url);
    let bad = |reason: &str| LockError::InvalidUrl {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = url
        .trim()
        .split_once("://")
        .ok_or_else(|| bad("missing scheme"))?;
    let scheme = match scheme {
        "redis+sentinel" => "redis",
        "rediss+sentinel" => "rediss",
        _ => {
            return Err(bad(
                "expected redis+sentinel://host:26379,host:26379/mastername",
            ))
        }
    };
    let (rest, fragment) = split_fragment(rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let master = segments.next().ok_or_else(|| {
        bad("the master name is missing: redis+sentinel://host:26379,host:26379/mymaster")
    })?;
    let mut opts = SentinelOptions::default();
    if let Some(db) = segments.next() {
        opts.db = db
            .parse()
            .map_err(|_| bad("the database after the master name must be a number"))?;
    }
    if let Some(u) = userinfo {
        let (user, pass) = match u.split_once(':') {
            Some((user, pass)) => (user, Some(pass)),
            None => (u, None),
        };
        if !user.is_empty() {
            opts.username = Some(user.to_owned());
        }
        if let Some(p) = pass {
            opts.password = Some(p.to_owned());
        }
    }
    let urls: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{h}{fragment}"))
        .collect();
    if urls.is_empty() {
        return Err(bad("no Sentinel host given"));
    }
    Ok((urls, master.to_owned(), opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_url_is_parsed() {
        let (urls, master, opts) =
            parse_env_url("redis+sentinel://:pw@10.0.0.1:26379, 10.0.0.2:26379/mymaster/2")
                .expect("valid");
        assert_eq!(urls, ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]);
        assert_eq!(master, "mymaster");
        assert_eq!(opts.db, 2);
        assert_eq!(opts.password.as_deref(), Some("pw"));
        assert_eq!(opts.username, None);
        assert!(parse_env_url("redis+sentinel://10.0.0.1:26379").is_err());
        assert!(parse_env_url("redis://10.0.0.1:26379/m").is_err());
        // `#insecure` goes on to every Sentinel's URL, not into the master name or the database.
        for url in [
            "rediss+sentinel://h1:26379,h2:26379/mymaster#insecure",
            "rediss+sentinel://h1:26379,h2:26379/mymaster/0#insecure",
        ] {
            let (urls, master, opts) = parse_env_url(url).expect("valid");
            assert_eq!(
                urls,
                ["rediss://h1:26379#insecure", "rediss://h2:26379#insecure"]
            );
            assert_eq!(master, "mymaster");
            assert_eq!(opts.db, 0);
        }
        let err = parse_env_url("redis+sentinel://:secret@h:1/m/x").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn open_lazy_checks_arguments() {
        let err =
            SentinelBackend::open_lazy::<&str>(&[], "m", SentinelOptions::default()).unwrap_err();
        assert!(err.to_string().contains("at least one Sentinel"), "{err}");
        let err = SentinelBackend::open_lazy(
            &["redis://127.0.0.1:26379"],
            " ",
            SentinelOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("master name"), "{err}");
        let b = SentinelBackend::open_lazy(
            &["redis://127.0.0.1:26379"],
            "mymaster",
            SentinelOptions::default().password("x"),
        )
        .expect("valid");
        assert_eq!(
            b.describe(),
            "redis-sentinel[redis://127.0.0.1:26379]/mymaster"
        );
        assert!(SentinelOptions::default().db(-1).check().is_err());
    }
}
