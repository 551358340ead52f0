//! Helpers shared by the integration tests: a private redis-server per test and clients on it.

use std::time::Duration;

pub use lockattr_runtime::testing::{FaultProxy, RedisServer};
use lockattr_runtime::LockClient;

/// A client on `url` with a short command timeout (tests provoke failures) and a fixed prefix.
pub async fn client(url: &str) -> LockClient {
    LockClient::builder()
        .url(url)
        .prefix("t")
        .command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect("connect to the test redis-server")
}

/// A plain redis connection for poking at keys behind the library's back.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// Run a raw command and return its reply as a redis::Value.
pub async fn cmd(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(conn).await.expect("raw command")
}

/// PTTL of a key in ms (-2 missing, -1 no expiry).
pub async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("PTTL")
}

/// GET a key.
pub async fn get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET")
}

/// Calls of `command` since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
pub async fn calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map(|n| n.parse().expect("a count"))
        .unwrap_or(0)
}

use std::sync::Arc;

use lockattr_runtime::backend::MemoryBackend;

/// A backend under test, with ways to tamper with keys behind the library's back.
#[allow(async_fn_in_trait)]
pub trait Fixture {
    /// A new client on the backend (clients made by one fixture share the data).
    async fn client(&self) -> LockClient;
    /// The current value (token) under a backend key.
    async fn value(&self, backend_key: &str) -> Option<String>;
    /// Remaining TTL in ms, if the key exists with a TTL.
    async fn remaining_ms(&self, backend_key: &str) -> Option<u64>;
    /// Delete a key whoever holds it.
    async fn delete(&self, backend_key: &str);
    /// Overwrite a key with another value and TTL.
    async fn overwrite(&self, backend_key: &str, value: &str, ttl: Duration);
}

/// A private redis-server.
pub struct RedisFx {
    /// The server.
    pub server: RedisServer,
}

impl RedisFx {
    /// Start a server.
    pub fn new() -> Self {
        RedisFx {
            server: RedisServer::spawn(),
        }
    }
}

impl Default for RedisFx {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture for RedisFx {
    async fn client(&self) -> LockClient {
        client(&self.server.url()).await
    }
    async fn value(&self, k: &str) -> Option<String> {
        get(&mut raw(&self.server.url()).await, k).await
    }
    async fn remaining_ms(&self, k: &str) -> Option<u64> {
        let t = pttl(&mut raw(&self.server.url()).await, k).await;
        (t >= 0).then_some(t as u64)
    }
    async fn delete(&self, k: &str) {
        cmd(&mut raw(&self.server.url()).await, &["DEL", k]).await;
    }
    async fn overwrite(&self, k: &str, value: &str, ttl: Duration) {
        let ms = ttl.as_millis().to_string();
        cmd(
            &mut raw(&self.server.url()).await,
            &["SET", k, value, "PX", &ms],
        )
        .await;
    }
}

/// The in-process memory backend.
pub struct MemoryFx {
    /// The shared store.
    pub backend: Arc<MemoryBackend>,
}

impl MemoryFx {
    /// A fresh store.
    pub fn new() -> Self {
        MemoryFx {
            backend: Arc::new(MemoryBackend::new()),
        }
    }
}

impl Default for MemoryFx {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture for MemoryFx {
    async fn client(&self) -> LockClient {
        LockClient::builder()
            .backend(self.backend.clone())
            .prefix("t")
            .build()
            .expect("memory client")
    }
    async fn value(&self, k: &str) -> Option<String> {
        self.backend.holder(k)
    }
    async fn remaining_ms(&self, k: &str) -> Option<u64> {
        self.backend.remaining(k).map(|d| d.as_millis() as u64)
    }
    async fn delete(&self, k: &str) {
        self.backend.force_delete(k);
    }
    async fn overwrite(&self, k: &str, value: &str, ttl: Duration) {
        self.backend.force_set(k, value, ttl);
    }
}

/// Declare one `#[tokio::test]` per backend for a scenario `async fn name<F: Fixture>(fx: F)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::RedisFx::new()).await
                }
            )*
        }
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::MemoryFx::new()).await
                }
            )*
        }
    };
}

/// A Redlock client over `urls` with the same settings as [`client`] (short command timeout, prefix `t`).
pub async fn redlock_client(urls: &[String]) -> LockClient {
    LockClient::builder()
        .redlock(urls)
        .prefix("t")
        .command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect("connect to the test redis-servers")
}

/// Private redis-servers used as independent Redlock masters. `value`, `delete` and `overwrite` act on
/// every node: a key counts as absent only when no node has it.
pub struct RedlockFx {
    /// The nodes.
    pub servers: Vec<RedisServer>,
}

impl RedlockFx {
    /// Three nodes.
    pub fn new() -> Self {
        Self::with_nodes(3)
    }

    /// `n` nodes.
    pub fn with_nodes(n: usize) -> Self {
        RedlockFx {
            servers: (0..n).map(|_| RedisServer::spawn()).collect(),
        }
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The value under `k` on each node (`None` for a node that is not running).
    pub async fn values(&self, k: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for s in &self.servers {
            out.push(if s.is_running() {
                get(&mut raw(&s.url()).await, k).await
            } else {
                None
            });
        }
        out
    }
}

impl Default for RedlockFx {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture for RedlockFx {
    async fn client(&self) -> LockClient {
        redlock_client(&self.urls()).await
    }
    /// The value a majority of the nodes hold (what Redlock considers the lock's owner); `None` when no
    /// value has a majority. (A release returns once a majority deleted; the last node may lag.)
    async fn value(&self, k: &str) -> Option<String> {
        let values: Vec<String> = self.values(k).await.into_iter().flatten().collect();
        let majority = self.servers.len() / 2 + 1;
        values
            .iter()
            .find(|v| values.iter().filter(|w| w == v).count() >= majority)
            .cloned()
    }
    /// The largest remaining TTL over the nodes.
    async fn remaining_ms(&self, k: &str) -> Option<u64> {
        let mut best = None;
        for s in self.servers.iter().filter(|s| s.is_running()) {
            let t = pttl(&mut raw(&s.url()).await, k).await;
            if t >= 0 {
                best = best.max(Some(t as u64));
            }
        }
        best
    }
    async fn delete(&self, k: &str) {
        for s in self.servers.iter().filter(|s| s.is_running()) {
            cmd(&mut raw(&s.url()).await, &["DEL", k]).await;
        }
    }
    async fn overwrite(&self, k: &str, value: &str, ttl: Duration) {
        let ms = ttl.as_millis().to_string();
        for s in self.servers.iter().filter(|s| s.is_running()) {
            cmd(&mut raw(&s.url()).await, &["SET", k, value, "PX", &ms]).await;
        }
    }
}

/// Declare one `#[tokio::test]` per scenario on Redlock over three nodes ([`RedlockFx`]), in a module
/// `redlock_backend`.
#[macro_export]
macro_rules! on_redlock {
    ($($name:ident),* $(,)?) => {
        mod redlock_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::RedlockFx::new()).await
                }
            )*
        }
    };
}

/// [`on_both_backends!`] plus [`on_redlock!`]: every scenario on redis-server, memory and Redlock.
#[macro_export]
macro_rules! on_all_backends {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!($($name),*);
        $crate::on_redlock!($($name),*);
    };
}

pub mod torture;

/// Run `processes` copies of a worker binary (`exe args...`), each printing one line per hold:
/// `<start_us> <end_us> <fence>`; check that no two holds overlap and that fences increase in the order
/// the holds happened. Returns the number of holds.
pub async fn run_contenders_and_check(exe: &str, args: &[&str], processes: usize) -> usize {
    let children: Vec<_> = (0..processes)
        .map(|_| {
            tokio::process::Command::new(exe)
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn a contender process")
        })
        .collect();
    let mut holds: Vec<(u128, u128, u64)> = Vec::new();
    for c in children {
        let out = c.wait_with_output().await.expect("contender output");
        assert!(
            out.status.success(),
            "worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: Vec<&str> = line.split(' ').collect();
            assert_eq!(v.len(), 3, "bad contender line {line:?}");
            holds.push((
                v[0].parse().unwrap(),
                v[1].parse().unwrap(),
                v[2].parse().unwrap(),
            ));
        }
    }
    holds.sort();
    for w in holds.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "overlapping holds: {:?} and {:?}",
            w[0],
            w[1]
        );
        assert!(
            w[0].2 < w[1].2,
            "fences out of order: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    holds.len()
}

/// `tasks` tasks, each with its own client of `fx`, take the lock `key` `rounds` times each (waiting
/// for it) and hold it 2 ms. Asserts that no two ever hold it at once and that fences strictly
/// increase in grant order, and that the lock is gone afterwards.
pub async fn contend_on_one_key<F: Fixture>(fx: &F, key: &str, tasks: usize, rounds: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let holders = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let client = fx.client().await;
        let (holders, max_seen, fences) = (holders.clone(), max_seen.clone(), fences.clone());
        let key = key.to_owned();
        handles.push(tokio::spawn(async move {
            for _ in 0..rounds {
                client
                    .lock(key.as_str())
                    .ttl(Duration::from_secs(5))
                    .wait(Duration::from_secs(20))
                    .run(async {
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        max_seen.fetch_max(now, Ordering::SeqCst);
                        let fence = lockattr_runtime::current_fence()
                            .await
                            .expect("fence in the body");
                        fences.lock().unwrap_or_else(|p| p.into_inner()).push(fence);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        holders.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .expect("every task eventually gets the lock");
            }
        }));
    }
    for h in handles {
        h.await.expect("contending task");
    }
    assert_eq!(max_seen.load(Ordering::SeqCst), 1, "two holders at once");
    let fences = fences.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(fences.len(), tasks * rounds);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not strictly increasing: {fences:?}"
    );
    let backend_key = format!("t:{{{key}}}");
    assert_eq!(fx.value(&backend_key).await, None, "lock left behind");
}

/// A task that waits (up to 20 s) for `key` through `client`, and once it holds it notes when, reads
/// its fence and releases it. Join it (bounded) after releasing the current holder to measure the
/// hand-off: `(moment it held the lock, its fence)`.
pub fn spawn_waiter(
    client: &LockClient,
    key: &str,
) -> tokio::task::JoinHandle<(tokio::time::Instant, u64)> {
    let (client, key) = (client.clone(), key.to_owned());
    tokio::spawn(async move {
        let g = client
            .lock(key)
            .ttl(Duration::from_secs(30))
            .wait(Duration::from_secs(20))
            .acquire()
            .await
            .expect("the waiter gets the lock within 20 s");
        let at = tokio::time::Instant::now();
        let fence = g.fence().await.expect("the waiter's fence");
        g.release().await.expect("the waiter releases");
        (at, fence)
    })
}

/// Release `holder` and wait (at most 10 s) for `waiter` (from [`spawn_waiter`]) to take the lock.
/// Checks that the waiter held it after the release and with a higher fence; returns the hand-off time
/// (release sent -> waiter holds the lock).
pub async fn hand_over(
    holder: lockattr_runtime::LockGuard,
    waiter: tokio::task::JoinHandle<(tokio::time::Instant, u64)>,
) -> Duration {
    let fence = holder.fence().await.expect("the holder's fence");
    let released = tokio::time::Instant::now();
    holder.release().await.expect("the holder releases");
    let (got, next_fence) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter got the lock within 10 s")
        .expect("the waiter task");
    assert!(got >= released);
    assert!(
        next_fence > fence,
        "fence {next_fence} after {fence}: not increasing"
    );
    got - released
}

/// A task that waits (up to `wait`) for `key`, notes `id` in `order` once it holds it, holds it for
/// 20 ms and releases it; returns its fence.
pub fn waiter(
    client: &LockClient,
    key: &str,
    id: u32,
    wait: Duration,
    order: &std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
) -> tokio::task::JoinHandle<Result<u64, lockattr_runtime::LockError>> {
    let (client, key, order) = (client.clone(), key.to_owned(), order.clone());
    tokio::spawn(async move {
        let g = client
            .lock(key)
            .ttl(Duration::from_secs(30))
            .wait(wait)
            .acquire()
            .await?;
        order.lock().unwrap().push(id);
        let fence = g.fence().await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        g.release().await?;
        Ok(fence)
    })
}
