//! Shared helpers of the lockattr examples: choosing a backend (a Redis URL from the environment, a
//! private `redis-server`, or the in-process memory backend) and printing progress lines stamped with
//! the time since the program started.

use std::error::Error;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lockattr_runtime::backend::MemoryBackend;
use lockattr_runtime::testing::{redis_server_available, RedisServer};
use lockattr_runtime::{LockClient, LockError, ENV_PREFIX, ENV_REDIS_URL};

/// The key prefix the examples use unless `LOCKATTR_PREFIX` is set (kept apart from real `lockattr:`
/// locks when `LOCKATTR_REDIS_URL` points at a shared Redis).
pub const DEFAULT_PREFIX: &str = "lockattr-demo";

/// A boxed error for example code.
pub type BoxError = Box<dyn Error + Send + Sync>;

static START: OnceLock<Instant> = OnceLock::new();

/// Start the clock the progress lines count from (the first call wins; later calls do nothing).
pub fn start_clock() {
    START.get_or_init(Instant::now);
}

/// Time since [`start_clock`] (or since the first call of any timing helper).
pub fn since_start() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// The time since the start, formatted as `[  1.234s]`.
pub fn stamp() -> String {
    format!("[{:>7.3}s]", since_start().as_secs_f64())
}

/// `println!` with a [`stamp`] in front.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{} {}", $crate::stamp(), format_args!($($arg)*))
    };
}

/// A duration as milliseconds with one decimal, e.g. `212.4ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Where the example's locks live.
pub enum Backing {
    /// Redis at the URL given in `LOCKATTR_REDIS_URL`.
    External {
        /// The URL.
        url: String,
        /// Key prefix.
        prefix: String,
    },
    /// A private `redis-server` started for this run on a free port; killed when this is dropped.
    Private {
        /// The server process.
        server: RedisServer,
        /// Key prefix.
        prefix: String,
    },
    /// The in-process memory backend: the same semantics as Redis, but only within this process.
    Memory {
        /// The backend, kept concretely so keys can be deleted behind a holder's back.
        backend: Arc<MemoryBackend>,
        /// The one client over it; [`Backing::client`] hands out clones.
        client: LockClient,
    },
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Backing {
    /// Pick a backend: `LOCKATTR_REDIS_URL` if set; else a private `redis-server` (from
    /// `LOCKATTR_REDIS_SERVER` or `PATH`) if one can be started; else the memory backend. Returns the
    /// choice and, for the memory fallback, why Redis was not used.
    ///
    /// Blocking (it may start a process and wait until it answers): call it before entering the async
    /// runtime, or from `spawn_blocking`.
    pub fn choose() -> Result<(Backing, Option<String>), LockError> {
        let prefix = std::env::var(ENV_PREFIX).unwrap_or_else(|_| DEFAULT_PREFIX.to_owned());
        if let Ok(url) = std::env::var(ENV_REDIS_URL) {
            return Ok((Backing::External { url, prefix }, None));
        }
        let why = if redis_server_available() {
            match RedisServer::try_spawn_with(&[]) {
                Ok(server) => return Ok((Backing::Private { server, prefix }, None)),
                Err(e) => format!("starting a private redis-server failed: {e}"),
            }
        } else {
            "no redis-server binary found (install one, set LOCKATTR_REDIS_SERVER=/path/to/redis-server, or set LOCKATTR_REDIS_URL)".to_owned()
        };
        let backend = Arc::new(MemoryBackend::new());
        let client = LockClient::builder()
            .backend(backend.clone())
            .prefix(prefix)
            .build()?;
        Ok((Backing::Memory { backend, client }, Some(why)))
    }

    /// One line saying what this is.
    pub fn describe(&self) -> String {
        match self {
            Backing::External { url, .. } => {
                format!("Redis at {} (from {ENV_REDIS_URL})", mask_password(url))
            }
            Backing::Private { server, .. } => format!(
                "a private redis-server on 127.0.0.1:{} (pid {}), stopped at exit",
                server.port(),
                server.pid()
            ),
            Backing::Memory { .. } => "the in-process memory backend (one process only)".to_owned(),
        }
    }

    /// Whether this is the memory backend.
    pub fn is_memory(&self) -> bool {
        matches!(self, Backing::Memory { .. })
    }

    /// A client. On Redis every call opens a separate client with its own connection and watchdog, as
    /// another process would; on memory it is a clone of the one client (clients of different memory
    /// backends would not see each other's locks).
    pub async fn client(&self) -> Result<LockClient, LockError> {
        let (url, prefix) = match self {
            Backing::Memory { client, .. } => return Ok(client.clone()),
            Backing::External { url, prefix } => (url.clone(), prefix),
            Backing::Private { server, prefix } => (server.url(), prefix),
        };
        LockClient::builder()
            .url(url)
            .prefix(prefix.as_str())
            .connect()
            .await
    }

    /// Delete the key of lock `key` whoever holds it, behind the holder's back (what an operator, a
    /// `FLUSHDB` or a buggy unlock elsewhere might do). `client` names the key (its prefix).
    pub async fn delete_behind_back(&self, client: &LockClient, key: &str) -> Result<(), BoxError> {
        let redis_key = client.backend_key(key);
        let url = match self {
            Backing::Memory { backend, .. } => {
                backend.force_delete(&redis_key);
                return Ok(());
            }
            Backing::External { url, .. } => url.clone(),
            Backing::Private { server, .. } => server.url(),
        };
        let mut conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let _deleted: i64 = redis::cmd("DEL")
            .arg(&redis_key)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// `redis://user:secret@host` -> `redis://user:***@host`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
