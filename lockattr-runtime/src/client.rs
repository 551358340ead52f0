//! [`LockClient`]: a backend plus settings, the shared watchdog, and the process-wide default client.

use std::sync::Arc;
use std::time::Duration;

use once_cell::sync::OnceCell;

use crate::backend::{Backend, MemoryBackend};
use crate::error::LockError;
use crate::lease::LockRequest;
use crate::watchdog::Watchdog;

/// The environment variable the default client reads its Redis URL from. A comma-separated list of
/// URLs (3, 5, 7 … independent masters) selects Redlock ([`crate::backend::RedlockBackend`]); a comma
/// inside a password must then be written `%2C`. `redis+cluster://host:port,host:port` selects a Redis
/// Cluster and `redis+sentinel://host:26379,host:26379/mastername[/db]` a Sentinel-managed primary (the
/// credentials in either apply to the data nodes); `rediss+cluster://` and `rediss+sentinel://` use
/// TLS, and a trailing `#insecure` skips the certificate check.
pub const ENV_REDIS_URL: &str = "LOCKATTR_REDIS_URL";
/// The environment variable the default client reads its key prefix from (default `lockattr`).
pub const ENV_PREFIX: &str = "LOCKATTR_PREFIX";

/// Smallest accepted TTL.
pub const MIN_TTL: Duration = Duration::from_millis(100);
/// Largest accepted TTL.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest accepted wait.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Settings of a [`LockClient`]; see [`LockClientBuilder`] for what each means.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) prefix: String,
    pub(crate) default_ttl: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) safety_margin: Duration,
    pub(crate) drift_factor: f64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            prefix: "lockattr".to_owned(),
            default_ttl: Duration::from_secs(30),
            command_timeout: Duration::from_secs(2),
            safety_margin: Duration::from_millis(10),
            drift_factor: 0.01,
        }
    }
}

impl ClientConfig {
    /// The key prefix (`prefix:{key}`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The TTL used when a request does not set one.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }
    /// The bound on each backend command.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }
    /// How much earlier than the TTL a holder considers its lease over: `safety_margin + ttl * drift_factor`.
    pub fn margin_for(&self, ttl: Duration) -> Duration {
        self.safety_margin + ttl.mul_f64(self.drift_factor)
    }
}

pub(crate) struct ClientInner {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: ClientConfig,
    pub(crate) watchdog: Watchdog,
    /// Leases held per task (reentrancy) and local waiters per key (fair hand-off); shared with the
    /// watchdog, which tells it of losses.
    pub(crate) held: Arc<crate::lease::Local>,
}

/// A handle to a lock backend. Cheap to clone (all clones share the backend, the connection, the
/// watchdog and the release-notice subscriber).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lockattr_runtime::LockError> {
/// use std::time::Duration;
/// let client = lockattr_runtime::LockClient::memory();
/// let guard = client.lock("report:2026-11").ttl(Duration::from_secs(5)).acquire().await?;
/// assert!(guard.is_held());
/// assert!(client.lock("report:2026-11").acquire().await.unwrap_err().is_contention());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockClient {
    pub(crate) inner: Arc<ClientInner>,
}

impl std::fmt::Debug for LockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockClient")
            .field("backend", &self.inner.backend.describe())
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

impl LockClient {
    /// Start configuring a client.
    pub fn builder() -> LockClientBuilder {
        LockClientBuilder::default()
    }

    /// Connect to Redis at `url` (`redis://`, `rediss://` with feature `tls`, `unix://`, or a Cluster or
    /// Sentinel URL as [`LockClientBuilder::url`] takes) with default settings, checking that it
    /// answers within the command timeout.
    #[cfg(feature = "redis")]
    pub async fn connect(url: &str) -> Result<LockClient, LockError> {
        Self::builder().url(url).connect().await
    }

    /// Connect to N independent Redis masters (an odd number ≥ 3) and lock with Redlock
    /// ([`crate::backend::RedlockBackend`]): a lock is granted by a majority. Checks that a majority
    /// answers within the command timeout.
    #[cfg(feature = "redis")]
    pub async fn connect_redlock<S: AsRef<str>>(urls: &[S]) -> Result<LockClient, LockError> {
        Self::builder().redlock(urls).connect().await
    }

    /// A client over a fresh in-process [`MemoryBackend`].
    pub fn memory() -> LockClient {
        Self::from_parts(Arc::new(MemoryBackend::new()), ClientConfig::default())
    }

    /// A client over any [`Backend`] with default settings.
    pub fn with_backend(backend: Arc<dyn Backend>) -> LockClient {
        Self::from_parts(backend, ClientConfig::default())
    }

    fn from_parts(backend: Arc<dyn Backend>, config: ClientConfig) -> LockClient {
        let held = Arc::new(crate::lease::Local::default());
        LockClient {
            inner: Arc::new(ClientInner {
                watchdog: Watchdog::new(backend.clone(), held.clone()),
                backend,
                config,
                held,
            }),
        }
    }

    /// Describe a lock on `key`; set its options, then `.acquire()` or `.run(..)` it.
    pub fn lock(&self, key: impl Into<String>) -> LockRequest {
        LockRequest::new(self.clone(), key.into())
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The number of leases the watchdog currently tracks (held locks of this client).
    pub fn tracked_leases(&self) -> usize {
        self.inner.watchdog.len()
    }

    /// The Redis (or backend) key name where `key` lives, e.g. `lockattr:{order:42}`.
    pub fn backend_key(&self, key: &str) -> String {
        crate::key::LockName::new(&self.inner.config.prefix, key).lock_key
    }
}

/// Configures a [`LockClient`].
///
/// ```no_run
/// # async fn f() -> Result<(), lockattr_runtime::LockError> {
/// use std::time::Duration;
/// let client = lockattr_runtime::LockClient::builder()
///     .url("redis://127.0.0.1:6379")
///     .prefix("billing")
///     .default_ttl(Duration::from_secs(10))
///     .command_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct LockClientBuilder {
    url: Option<String>,
    #[cfg(feature = "redis")]
    redlock: Option<(Vec<String>, crate::backend::redlock::RedlockOptions)>,
    #[cfg(feature = "redis")]
    replicated: Option<Replicated>,
    backend: Option<Arc<dyn Backend>>,
    config: ClientConfig,
    error: Option<LockError>,
}

impl std::fmt::Debug for LockClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockClientBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LockClientBuilder {
    /// Use Redis at `url`: `redis://`, `rediss://` (feature `tls`) or `unix://` for one server;
    /// `redis+cluster://[user:pw@]host:port,host:port` for a Redis Cluster (as
    /// [`cluster`](Self::cluster)) or `redis+sentinel://[user:pw@]host:26379,host:26379/mymaster[/db]`
    /// for a Sentinel-managed primary (as [`sentinel_with`](Self::sentinel_with), the credentials and
    /// database being the primary's); `rediss+…` for TLS, with an optional trailing `#insecure`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
    /// Use Redlock over these independent Redis masters (an odd number ≥ 3; see
    /// [`crate::backend::RedlockBackend`]) instead of one server.
    #[cfg(feature = "redis")]
    pub fn redlock<S: AsRef<str>>(self, urls: &[S]) -> Self {
        self.redlock_with(urls, Default::default())
    }
    /// Like [`redlock`](Self::redlock), with Redlock options (per-node timeout, re-establishing on
    /// renewal). The client's command timeout and drift factor replace those of `opts`.
    #[cfg(feature = "redis")]
    pub fn redlock_with<S: AsRef<str>>(
        mut self,
        urls: &[S],
        opts: crate::backend::redlock::RedlockOptions,
    ) -> Self {
        let urls = urls.iter().map(|u| u.as_ref().to_owned()).collect();
        self.redlock = Some((urls, opts));
        self
    }
    /// Use a Redis Cluster ([`crate::backend::ClusterBackend`]): `urls` are one or more of its nodes
    /// (the others are discovered); locks spread over all primaries by hash slot.
    #[cfg(feature = "redis")]
    pub fn cluster<S: AsRef<str>>(self, urls: &[S]) -> Self {
        self.cluster_with(urls, Default::default())
    }
    /// Like [`cluster`](Self::cluster), with options (e.g. waiting for replicas to acknowledge each
    /// grant). The client's command timeout replaces that of `opts`.
    #[cfg(feature = "redis")]
    pub fn cluster_with<S: AsRef<str>>(
        mut self,
        urls: &[S],
        opts: crate::backend::cluster::ClusterOptions,
    ) -> Self {
        let urls = urls.iter().map(|u| u.as_ref().to_owned()).collect();
        self.replicated = Some(Replicated::Cluster(urls, opts));
        self
    }
    /// Use the primary that the Redis Sentinels at `sentinel_urls` manage under `master_name`
    /// ([`crate::backend::SentinelBackend`]), following it through failovers.
    #[cfg(feature = "redis")]
    pub fn sentinel<S: AsRef<str>>(
        self,
        sentinel_urls: &[S],
        master_name: impl Into<String>,
    ) -> Self {
        self.sentinel_with(sentinel_urls, master_name, Default::default())
    }
    /// Like [`sentinel`](Self::sentinel), with options (the primary's credentials and database,
    /// waiting for replicas). The client's command timeout replaces that of `opts`.
    #[cfg(feature = "redis")]
    pub fn sentinel_with<S: AsRef<str>>(
        mut self,
        sentinel_urls: &[S],
        master_name: impl Into<String>,
        opts: crate::backend::sentinel::SentinelOptions,
    ) -> Self {
        let urls = sentinel_urls
            .iter()
            .map(|u| u.as_ref().to_owned())
            .collect();
        self.replicated = Some(Replicated::Sentinel(urls, master_name.into(), opts));
        self
    }
    /// Use this backend (instead of a URL).
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }
    /// Use a fresh in-process memory backend.
    pub fn memory(self) -> Self {
        self.backend(Arc::new(MemoryBackend::new()))
    }
    /// Key prefix: locks live at `prefix:{key}` (default `lockattr`). No braces.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        if let Err(e) = crate::key::validate_prefix(&prefix) {
            self.error.get_or_insert(e);
        }
        self.config.prefix = prefix;
        self
    }
    /// TTL of requests that do not set one (default 30 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        if let Err(e) = check_ttl(ttl) {
            self.error.get_or_insert(e);
        }
        self.config.default_ttl = ttl;
        self
    }
    /// Bound on each backend command and connection attempt (default 2 s). An unreachable backend fails
    /// an acquire within this time.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() || timeout > Duration::from_secs(600) {
            self.error.get_or_insert(LockError::InvalidOption(format!(
                "command timeout {timeout:?} must be between 1ms and 10min, e.g. 2s"
            )));
        }
        self.config.command_timeout = timeout;
        self
    }
    /// Fixed part of the safety margin (default 10 ms): a holder considers its lease over this much
    /// (plus `drift_factor * ttl`) before the TTL counted from the last confirmed renewal's send time.
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        if margin > Duration::from_secs(1) {
            self.error.get_or_insert(LockError::InvalidOption(format!(
                "safety margin {margin:?} is too large: it must leave room for renewals even at the smallest TTL ({MIN_TTL:?}); use a few milliseconds"
            )));
            return self;
        }
        self.config.safety_margin = margin;
        self
    }
    /// Clock-drift allowance as a fraction of the TTL (default 0.01, as in the Redlock paper).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        if !(0.0..=0.2).contains(&factor) || factor.is_nan() {
            self.error.get_or_insert(LockError::InvalidOption(format!(
                "drift factor {factor} must be between 0.0 and 0.2, e.g. 0.01"
            )));
        }
        self.config.drift_factor = factor;
        self
    }

    /// The Redlock nodes and options, with the client's timeout and drift; refuses `.url` + `.redlock`.
    #[cfg(feature = "redis")]
    #[allow(clippy::type_complexity)]
    fn redlock_options(
        &mut self,
    ) -> Result<Option<(Vec<String>, crate::backend::redlock::RedlockOptions)>, LockError> {
        let Some((urls, opts)) = self.redlock.take() else {
            return Ok(None);
        };
        if self.url.is_some() {
            return Err(LockError::InvalidOption(
                "both `.url(..)` and `.redlock(..)` were given; use `.url` for one Redis server or `.redlock` for several independent masters".into(),
            ));
        }
        let opts = opts
            .command_timeout(self.config.command_timeout)
            .drift_factor(self.config.drift_factor);
        Ok(Some((urls, opts)))
    }

    /// The Cluster or Sentinel deployment asked for, with the client's command timeout; refuses it
    /// together with `.url` or `.redlock`.
    #[cfg(feature = "redis")]
    fn replicated(&mut self) -> Result<Option<Replicated>, LockError> {
        let Some(r) = self.replicated.take() else {
            return Ok(None);
        };
        if self.url.is_some() || self.redlock.is_some() {
            return Err(LockError::InvalidOption(
                "`.cluster(..)` / `.sentinel(..)` cannot be combined with `.url(..)` or `.redlock(..)`; pick one way to reach Redis".into(),
            ));
        }
        Ok(Some(r.command_timeout(self.config.command_timeout)))
    }

    /// A `redis+cluster://` or `redis+sentinel://` URL given to [`url`](Self::url), as the deployment
    /// it names; refuses it together with another one.
    #[cfg(feature = "redis")]
    fn resolve_url(&mut self) -> Result<(), LockError> {
        let Some(url) = self.url.as_deref().map(str::trim) else {
            return Ok(());
        };
        let target = if url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://")
        {
            let urls = crate::backend::cluster::parse_env_url(url)?;
            Replicated::Cluster(urls, Default::default())
        } else if url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://") {
            let (urls, master, opts) = crate::backend::sentinel::parse_env_url(url)?;
            Replicated::Sentinel(urls, master, opts)
        } else {
            return Ok(());
        };
        if self.replicated.is_some() || self.redlock.is_some() {
            return Err(LockError::InvalidOption(
                "a `redis+cluster://` / `redis+sentinel://` URL cannot be combined with `.cluster(..)`, `.sentinel(..)` or `.redlock(..)`; pick one way to reach Redis".into(),
            ));
        }
        self.url = None;
        self.replicated = Some(target);
        Ok(())
    }

    fn check(&mut self) -> Result<(), LockError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        #[cfg(feature = "redis")]
        self.resolve_url()?;
        let m = self.config.margin_for(MIN_TTL);
        if m * 3 > MIN_TTL * 2 || self.config.safety_margin > Duration::from_secs(60) {
            return Err(LockError::InvalidOption(format!(
                "safety margin {:?} is too large: it must leave room for renewals even at the smallest TTL ({MIN_TTL:?}); use a few milliseconds",
                self.config.safety_margin
            )));
        }
        Ok(())
    }

    /// Build without contacting the backend (a Redis URL connects on first use). Fails on bad settings
    /// or a malformed URL, and with [`LockError::NoRuntime`] when a Redis URL is built outside a Tokio
    /// runtime (the connection's driver task needs one).
    pub fn build(mut self) -> Result<LockClient, LockError> {
        self.check()?;
        #[cfg(feature = "redis")]
        if self.backend.is_none() {
            if let Some(r) = self.replicated()? {
                return Ok(LockClient::from_parts(r.open_lazy()?, self.config));
            }
        }
        #[cfg(feature = "redis")]
        if self.backend.is_none() {
            if let Some((urls, opts)) = self.redlock_options()? {
                let backend = crate::backend::RedlockBackend::open_lazy(&urls, opts)?;
                return Ok(LockClient::from_parts(Arc::new(backend), self.config));
            }
        }
        let backend = match (self.backend, self.url) {
            (Some(b), _) => b,
            #[cfg(feature = "redis")]
            (None, Some(url)) => Arc::new(crate::backend::RedisBackend::open_lazy(
                &url,
                crate::backend::redis::RedisOptions { command_timeout: self.config.command_timeout },
            )?),
            #[cfg(not(feature = "redis"))]
            (None, Some(url)) => {
                return Err(LockError::InvalidUrl {
                    url,
                    reason: "the `redis` feature of lockattr-runtime is off; enable it to use Redis".into(),
                })
            }
            (None, None) => {
                return Err(LockError::InvalidOption(
                    "no backend: call `.url(\"redis://127.0.0.1:6379\")`, `.memory()` or `.backend(..)`".into(),
                ))
            }
        };
        Ok(LockClient::from_parts(backend, self.config))
    }

    /// Build and check that the backend answers (a Redis `PING` within the command timeout).
    pub async fn connect(mut self) -> Result<LockClient, LockError> {
        self.check()?;
        #[cfg(feature = "redis")]
        if self.backend.is_none() {
            if let Some(r) = self.replicated()? {
                return Ok(LockClient::from_parts(r.open().await?, self.config));
            }
        }
        #[cfg(feature = "redis")]
        if self.backend.is_none() {
            if let Some((urls, opts)) = self.redlock_options()? {
                let backend = crate::backend::RedlockBackend::open(&urls, opts).await?;
                return Ok(LockClient::from_parts(Arc::new(backend), self.config));
            }
        }
        #[cfg(feature = "redis")]
        if self.backend.is_none() {
            if let Some(url) = self.url.take() {
                let backend = crate::backend::RedisBackend::open(
                    &url,
                    crate::backend::redis::RedisOptions {
                        command_timeout: self.config.command_timeout,
                    },
                )
                .await?;
                return Ok(LockClient::from_parts(Arc::new(backend), self.config));
            }
        }
        self.build()
    }
}

pub(crate) fn check_ttl(ttl: Duration) -> Result<(), LockError> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(LockError::InvalidOption(format!(
            "ttl {ttl:?} is out of range: use between {MIN_TTL:?} and 7 days (e.g. 30s); a lock that must live longer should use auto_renew"
        )));
    }
    Ok(())
}

static DEFAULT_CLIENT: OnceCell<LockClient> = OnceCell::new();

/// Set the process-wide default client (used by `#[distributed_lock]` without `client = ..`).
/// Returns the client back if a default was already set (or built from the environment).
pub fn set_default_client(client: LockClient) -> Result<(), LockClient> {
    DEFAULT_CLIENT.set(client)
}

/// The process-wide default client: the one given to [`set_default_client`], or else one built (lazily,
/// once) from `LOCKATTR_REDIS_URL` (and `LOCKATTR_PREFIX`); a comma-separated list of URLs there selects
/// Redlock over those nodes.
///
/// The client's background tasks (renewal watchdog, release-notice subscriber) run on the Tokio runtime
/// where it is first used; keep one runtime per process, or give each runtime its own client.
pub fn default_client() -> Result<LockClient, LockError> {
    DEFAULT_CLIENT
        .get_or_try_init(|| {
            let url = std::env::var(ENV_REDIS_URL).map_err(|_| {
                LockError::NoDefaultClient(format!(
                    "call `lockattr_runtime::set_default_client(LockClient::connect(url).await?)` at startup, set {ENV_REDIS_URL}=redis://host:6379, or pass `client = ...` to the attribute"
                ))
            })?;
            // A list under a `redis+cluster://` or `redis+sentinel://` scheme is taken by `url`; any
            // other list is Redlock's.
            #[cfg(feature = "redis")]
            let deployment = url.split("://").next().is_some_and(|scheme| scheme.contains('+'));
            #[cfg(feature = "redis")]
            let mut b = if url.contains(',') && !deployment {
                let urls: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
                LockClient::builder().redlock(&urls)
            } else {
                LockClient::builder().url(url)
            };
            #[cfg(not(feature = "redis"))]
            let mut b = LockClient::builder().url(url);
            if let Ok(prefix) = std::env::var(ENV_PREFIX) {
                b = b.prefix(prefix);
            }
            b.build()
        })
        .cloned()
}

/// Anything that can give a [`LockClient`]: a client, a reference to one, an `Arc`, a lazily
/// initialised static (`std::sync::LazyLock`, `once_cell::sync::Lazy`), or a set-once cell. This is what
/// `#[distributed_lock(client = EXPR)]` accepts.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a lock client",
    label = "expected a `LockClient` (or `&LockClient`, `Arc<LockClient>`, a `LazyLock<LockClient>` static)",
    note = "`client = ...` takes an expression giving a `lockattr_runtime::LockClient`, e.g. `client = self.locks` or `client = LOCKS`"
)]
pub trait AsLockClient {
    /// A clone of the client (clients are cheap handles).
    fn lock_client(&self) -> Result<LockClient, LockError>;
}

impl AsLockClient for LockClient {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        Ok(self.clone())
    }
}
impl<T: AsLockClient + ?Sized> AsLockClient for &T {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        (**self).lock_client()
    }
}
impl<T: AsLockClient + ?Sized> AsLockClient for Arc<T> {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        (**self).lock_client()
    }
}
impl<T: AsLockClient + ?Sized> AsLockClient for Box<T> {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        (**self).lock_client()
    }
}
impl<T: AsLockClient, F: FnOnce() -> T> AsLockClient for std::sync::LazyLock<T, F> {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        (**self).lock_client()
    }
}
impl<T: AsLockClient, F: FnOnce() -> T> AsLockClient for once_cell::sync::Lazy<T, F> {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        (**self).lock_client()
    }
}
impl<T: AsLockClient> AsLockClient for std::sync::OnceLock<T> {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        self.get()
            .ok_or_else(|| {
                LockError::NoDefaultClient(
                    "the client cell is not initialised yet; set it at startup".into(),
                )
            })?
            .lock_client()
    }
}
impl<T: AsLockClient> AsLockClient for OnceCell<T> {
    fn lock_client(&self) -> Result<LockClient, LockError> {
        self.get()
            .ok_or_else(|| {
                LockError::NoDefaultClient(
                    "the client cell is not initialised yet; set it at startup".into(),
                )
            })?
            .lock_client()
    }
}

/// A Cluster or Sentinel deployment chosen on the builder.
#[cfg(feature = "redis")]
enum Replicated {
    Cluster(Vec<String>, crate::backend::cluster::ClusterOptions),
    Sentinel(
        Vec<String>,
        String,
        crate::backend::sentinel::SentinelOptions,
    ),
}

#[cfg(feature = "redis")]
impl Replicated {
    fn command_timeout(self, timeout: Duration) -> Replicated {
        match self {
            Replicated::Cluster(urls, opts) => {
                Replicated::Cluster(urls, opts.command_timeout(timeout))
            }
            Replicated::Sentinel(urls, master, opts) => {
                Replicated::Sentinel(urls, master, opts.command_timeout(timeout))
            }
        }
    }

    fn open_lazy(self) -> Result<Arc<dyn Backend>, LockError> {
        Ok(match self {
            Replicated::Cluster(urls, opts) => {
                Arc::new(crate::backend::ClusterBackend::open_lazy(&urls, opts)?)
            }
            Replicated::Sentinel(urls, master, opts) => Arc::new(
                crate::backend::SentinelBackend::open_lazy(&urls, &master, opts)?,
            ),
        })
    }

    /// Boxed: the cluster client's connect future is deep, and `connect()` futures are embedded in
    /// users' futures (whose layout the compiler must compute).
    fn open(self) -> crate::backend::BoxFuture<'static, Result<Arc<dyn Backend>, LockError>> {
        Box::pin(async move {
            let backend: Arc<dyn Backend> = match self {
                Replicated::Cluster(urls, opts) => {
                    Arc::new(crate::backend::ClusterBackend::open(&urls, opts).await?)
                }
                Replicated::Sentinel(urls, master, opts) => {
                    Arc::new(crate::backend::SentinelBackend::open(&urls, &master, opts).await?)
                }
            };
            Ok(backend)
        })
    }
}
