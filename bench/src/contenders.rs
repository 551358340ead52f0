//! The contenders: lockattr (guard API, `run`, the attribute), the raw floor, and two peer crates.
//!
//! Every contender takes a lock with a random owner token and a TTL, and releases it with an
//! owner-checked delete. They differ in how many round trips and how much client work that takes, how a
//! waiting caller learns that a lock was released, and how held locks are kept alive.

use std::sync::Arc;
use std::time::Duration;

use distributed_lock_core::traits::{DistributedLock, LockHandle, LockProvider};
use lockattr_runtime::backend::redis::{RedisBackend, RedisOptions};
use lockattr_runtime::{LockClient, LockError};
use tokio::sync::watch;
use tokio::time::Instant;

/// TTL of the locks in scenarios 1–3 (long enough never to expire during a run).
pub const TTL: Duration = Duration::from_secs(10);

/// The owner-checked delete of the floor (the same script rslock and distributed-lock use).
const FLOOR_RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Poll interval of a waiting caller for contenders without a wait of their own (the floor and
/// distributed-lock, whose `acquire(timeout)` makes one attempt on a single server).
pub const POLL: Duration = Duration::from_millis(10);

/// Which implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `SET NX PX` + an owner-checked delete via `EVALSHA`, on one redis-rs `MultiplexedConnection`.
    Floor,
    /// The same two commands, each written to a socket the caller owns and its reply read back by the
    /// caller itself (one socket per concurrent caller, kept in a pool): no connection task between
    /// the caller and the server, which is how lockattr's single-node backend sends its lock calls.
    FloorWire,
    /// lockattr: `client.lock(k).ttl(..).acquire()` + `guard.release()`.
    Guard,
    /// lockattr: `client.lock(k).ttl(..).run(fut)`.
    Run,
    /// lockattr: an `#[distributed_lock]` fn.
    Attr,
    /// rslock 0.10 (`LockManager::lock` / `acquire` / `unlock`), one server.
    Rslock,
    /// distributed-lock-redis 0.2 (`try_acquire` + `release`), one server.
    DLock,
}

impl Kind {
    /// Every contender, floor first.
    pub const ALL: [Kind; 7] = [
        Kind::Floor,
        Kind::FloorWire,
        Kind::Guard,
        Kind::Run,
        Kind::Attr,
        Kind::Rslock,
        Kind::DLock,
    ];

    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor (SET NX + EVALSHA del)",
            Kind::FloorWire => "floor, own sockets (same commands)",
            Kind::Guard => "lockattr acquire/release",
            Kind::Run => "lockattr run(..)",
            Kind::Attr => "lockattr #[distributed_lock]",
            Kind::Rslock => "rslock 0.10",
            Kind::DLock => "distributed-lock-redis 0.2",
        }
    }

    /// A short name for command lines.
    pub fn id(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::FloorWire => "floor-wire",
            Kind::Guard => "guard",
            Kind::Run => "run",
            Kind::Attr => "attr",
            Kind::Rslock => "rslock",
            Kind::DLock => "dlock",
        }
    }

    /// Parse [`Kind::id`].
    pub fn from_id(id: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.id() == id)
    }

    /// Whether this is one of lockattr's three ways in.
    pub fn is_lockattr(self) -> bool {
        matches!(self, Kind::Guard | Kind::Run | Kind::Attr)
    }

    /// Whether the server's counters cannot tell this contender's own `SET`s from those its scripts
    /// run: lockattr sends `SET` itself only as an idle client's plain acquire, which it counts (see
    /// [`Contender::plain_acquires`]); every other `SET` runs inside its scripts.
    pub fn set_is_scripted(self) -> bool {
        self.is_lockattr()
    }

    /// How a waiting caller learns that the lock is free.
    pub fn wait_mechanism(self) -> &'static str {
        match self {
            Kind::Floor | Kind::FloorWire => "poll every 10 ms (bench loop)",
            Kind::Guard | Kind::Run | Kind::Attr => {
                "hand-over to the next local waiter; release notice (pub/sub) across clients"
            }
            Kind::Rslock => "its own retry: sleep 0–200 ms",
            Kind::DLock => "poll every 10 ms (bench loop)",
        }
    }
}

/// One connected contender.
pub enum Contender {
    /// The floor.
    Floor {
        /// The connection.
        conn: redis::aio::MultiplexedConnection,
        /// The release script.
        release: Arc<redis::Script>,
    },
    /// The floor on owned sockets.
    FloorWire(RawSockets),
    /// lockattr, any of its three ways in, and its backend (for what it sent: see
    /// [`Contender::plain_acquires`]).
    Lockattr(Kind, LockClient, Arc<RedisBackend>),
    /// rslock.
    Rslock(rslock::LockManager),
    /// distributed-lock-redis.
    DLock(distributed_lock_redis::RedisLockProvider),
}

/// When a contended hold began and when the holder started to give the lock back.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// The caller learned it holds the lock.
    pub acquired: Instant,
    /// The caller finished its work and is about to release.
    pub releasing: Instant,
}

fn token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Contender {
    /// How many plain `SET NX PX` acquires lockattr's backend has sent so far (0 for the others, whose
    /// `SET`s the server counts as requests).
    pub fn plain_acquires(&self) -> u64 {
        match self {
            Contender::Lockattr(_, _, backend) => backend.stats().plain_acquires,
            _ => 0,
        }
    }

    /// Connect `kind` to the server at `url`. `renew_every` configures distributed-lock's extension
    /// cadence (its TTL is [`TTL`] unless `ttl` is given).
    pub async fn connect(kind: Kind, url: &str, ttl: Duration) -> Result<Contender, String> {
        Ok(match kind {
            Kind::Floor => {
                let client = redis::Client::open(url).map_err(|e| e.to_string())?;
                let conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                Contender::Floor {
                    conn,
                    release: Arc::new(redis::Script::new(FLOOR_RELEASE_LUA)),
                }
            }
            Kind::FloorWire => Contender::FloorWire(RawSockets::new(url).await?),
            Kind::Guard | Kind::Run | Kind::Attr => {
                let backend = Arc::new(
                    RedisBackend::open(url, RedisOptions::default())
                        .await
                        .map_err(|e| e.to_string())?,
                );
                let client = LockClient::builder()
                    .backend(backend.clone())
                    .prefix("lb")
                    .default_ttl(ttl)
                    .connect()
                    .await
                    .map_err(|e| e.to_string())?;
                Contender::Lockattr(kind, client, backend)
            }
            Kind::Rslock => Contender::Rslock(rslock::LockManager::new(vec![url.to_owned()])),
            Kind::DLock => {
                let provider = distributed_lock_redis::RedisLockProvider::builder()
                    .url(url)
                    .expiry(ttl)
                    .min_validity(ttl.mul_f64(0.9))
                    .extension_cadence(ttl / 3)
                    .build()
                    .await
                    .map_err(|e| e.to_string())?;
                Contender::DLock(provider)
            }
        })
    }

    /// The lockattr client, for lockattr contenders.
    pub fn lockattr_client(&self) -> Option<&LockClient> {
        match self {
            Contender::Lockattr(_, c, _) => Some(c),
            _ => None,
        }
    }

    /// Take `key` (which must be free) and give it back at once. Fails if it was busy.
    pub async fn acquire_release(&self, key: &str) -> Result<(), String> {
        match self {
            Contender::Floor { conn, release } => {
                let mut conn = conn.clone();
                let token = token();
                let ok: Option<String> = redis::cmd("SET")
                    .arg(key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(TTL.as_millis() as u64)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if ok.is_none() {
                    return Err(format!("{key} was busy"));
                }
                let n: i64 = release
                    .key(key)
                    .arg(&token)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if n != 1 {
                    return Err(format!("{key} was not ours at release"));
                }
                Ok(())
            }
            Contender::FloorWire(raw) => {
                let token = token();
                if !raw.set_nx(key, &token).await? {
                    return Err(format!("{key} was busy"));
                }
                if !raw.release(key, &token).await? {
                    return Err(format!("{key} was not ours at release"));
                }
                Ok(())
            }
            Contender::Lockattr(Kind::Guard, client, _) => {
                let guard = client
                    .lock(key)
                    .ttl(TTL)
                    .acquire()
                    .await
                    .map_err(|e| e.to_string())?;
                guard.release().await.map_err(|e| e.to_string())
            }
            Contender::Lockattr(Kind::Run, client, _) => client
                .lock(key)
                .ttl(TTL)
                .run(async {})
                .await
                .map_err(|e| e.to_string()),
            Contender::Lockattr(_, client, _) => attr_uncontended(client, key)
                .await
                .map_err(|e| e.to_string()),
            Contender::Rslock(manager) => {
                let lock = manager
                    .lock(key.as_bytes(), TTL)
                    .await
                    .map_err(|e| format!("{key}: {e}"))?;
                manager.unlock(&lock).await;
                Ok(())
            }
            Contender::DLock(provider) => {
                let lock = provider.create_lock(key);
                let handle = lock
                    .try_acquire()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{key} was busy"))?;
                handle.release().await.map_err(|e| e.to_string())
            }
        }
    }

    /// Wait for `key`, hold it for `hold`, release it. `None` when `stop` fired first.
    pub async fn hold_contended(
        &self,
        key: &str,
        hold: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Hold>, String> {
        let work = async {
            match self {
                Contender::Floor { conn, release } => {
                    let mut conn = conn.clone();
                    let token = token();
                    loop {
                        let ok: Option<String> = redis::cmd("SET")
                            .arg(key)
                            .arg(&token)
                            .arg("NX")
                            .arg("PX")
                            .arg(TTL.as_millis() as u64)
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| e.to_string())?;
                        if ok.is_some() {
                            break;
                        }
                        tokio::time::sleep(POLL).await;
                    }
                    let acquired = Instant::now();
                    tokio::time::sleep(hold).await;
                    let releasing = Instant::now();
                    let _: i64 = release
                        .key(key)
                        .arg(&token)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(Hold {
                        acquired,
                        releasing,
                    })
                }
                Contender::FloorWire(raw) => {
                    let token = token();
                    while !raw.set_nx(key, &token).await? {
                        tokio::time::sleep(POLL).await;
                    }
                    let acquired = Instant::now();
                    tokio::time::sleep(hold).await;
                    let releasing = Instant::now();
                    raw.release(key, &token).await?;
                    Ok(Hold {
                        acquired,
                        releasing,
                    })
                }
                Contender::Lockattr(Kind::Guard, client, _) => {
                    let guard = client
                        .lock(key)
                        .ttl(TTL)
                        .wait(Duration::from_secs(3600))
                        .acquire()
                        .await
                        .map_err(|e| e.to_string())?;
                    let acquired = Instant::now();
                    tokio::time::sleep(hold).await;
                    let releasing = Instant::now();
                    guard.release().await.map_err(|e| e.to_string())?;
                    Ok(Hold {
                        acquired,
                        releasing,
                    })
                }
                Contender::Lockattr(Kind::Run, client, _) => client
                    .lock(key)
                    .ttl(TTL)
                    .wait(Duration::from_secs(3600))
                    .run(async {
                        let acquired = Instant::now();
                        tokio::time::sleep(hold).await;
                        Hold {
                            acquired,
                            releasing: Instant::now(),
                        }
                    })
                    .await
                    .map_err(|e| e.to_string()),
                Contender::Lockattr(_, client, _) => attr_contended(client, key, hold)
                    .await
                    .map_err(|e| e.to_string()),
                Contender::Rslock(manager) => {
                    let guard = manager
                        .acquire(key.as_bytes(), TTL)
                        .await
                        .map_err(|e| e.to_string())?;
                    let acquired = Instant::now();
                    tokio::time::sleep(hold).await;
                    let releasing = Instant::now();
                    guard.release().await;
                    Ok(Hold {
                        acquired,
                        releasing,
                    })
                }
                Contender::DLock(provider) => {
                    let handle = loop {
                        let lock = provider.create_lock(key);
                        if let Some(h) = lock.try_acquire().await.map_err(|e| e.to_string())? {
                            break h;
                        }
                        tokio::time::sleep(POLL).await;
                    };
                    let acquired = Instant::now();
                    tokio::time::sleep(hold).await;
                    let releasing = Instant::now();
                    handle.release().await.map_err(|e| e.to_string())?;
                    Ok(Hold {
                        acquired,
                        releasing,
                    })
                }
            }
        };
        tokio::select! {
            r = work => r.map(Some),
            _ = stop.wait_for(|s| *s) => Ok(None),
        }
    }
}

/// The attribute, uncontended: what [`Kind::Attr`] runs in scenarios 1 and 2.
#[lockattr_runtime::distributed_lock(key_expr = key, ttl = "10s", client = client)]
pub async fn attr_uncontended(client: &LockClient, key: &str) -> Result<(), LockError> {
    Ok(())
}

/// The attribute, waiting for a busy key and holding it for `hold`: scenario 3.
#[lockattr_runtime::distributed_lock(key_expr = key, ttl = "10s", wait = "1h", client = client)]
pub async fn attr_contended(
    client: &LockClient,
    key: &str,
    hold: Duration,
) -> Result<Hold, LockError> {
    let acquired = Instant::now();
    tokio::time::sleep(hold).await;
    Ok(Hold {
        acquired,
        releasing: Instant::now(),
    })
}

/// The sockets of [`Kind::FloorWire`]: a pool of plain TCP connections, each used by one caller at a
/// time, which writes a command and reads its one-line reply itself.
pub struct RawSockets {
    addr: (String, u16),
    sha: String,
    idle: std::sync::Mutex<Vec<RawSocket>>,
}

/// One socket of [`RawSockets`] and its read buffer.
struct RawSocket {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawSockets {
    async fn new(url: &str) -> Result<RawSockets, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let addr = match client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            other => {
                return Err(format!(
                    "the floor on own sockets needs plain TCP, not {other:?}"
                ))
            }
        };
        let script = redis::Script::new(FLOOR_RELEASE_LUA);
        let raw = RawSockets {
            addr,
            sha: script.get_hash().to_owned(),
            idle: std::sync::Mutex::new(Vec::new()),
        };
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(FLOOR_RELEASE_LUA);
        let reply = raw.request(&load).await?;
        if !reply.starts_with(b"$") {
            return Err(format!(
                "SCRIPT LOAD answered {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        Ok(raw)
    }

    /// Send `cmd` on a socket of the pool (or a new one) and read its reply, which must be one line.
    async fn request(&self, cmd: &redis::Cmd) -> Result<Vec<u8>, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let idle = self.idle.lock().expect("pool").pop();
        let mut sock = match idle {
            Some(sock) => sock,
            None => {
                let stream = tokio::net::TcpStream::connect((self.addr.0.as_str(), self.addr.1))
                    .await
                    .map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                RawSocket {
                    stream,
                    buf: Vec::with_capacity(512),
                }
            }
        };
        sock.stream
            .write_all(&cmd.get_packed_command())
            .await
            .map_err(|e| e.to_string())?;
        sock.buf.clear();
        while !sock.buf.ends_with(b"\r\n") {
            if sock
                .stream
                .read_buf(&mut sock.buf)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("the server closed the connection".into());
            }
        }
        let reply = sock.buf.clone();
        self.idle.lock().expect("pool").push(sock);
        Ok(reply)
    }

    /// `SET key token NX PX ttl`: whether it was set.
    async fn set_nx(&self, key: &str, token: &str) -> Result<bool, String> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(TTL.as_millis() as u64);
        match self.request(&cmd).await?.as_slice() {
            b"+OK\r\n" => Ok(true),
            b"$-1\r\n" => Ok(false),
            other => Err(format!("SET answered {}", String::from_utf8_lossy(other))),
        }
    }

    /// The owner-checked delete: whether the lock was ours.
    async fn release(&self, key: &str, token: &str) -> Result<bool, String> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(1).arg(key).arg(token);
        match self.request(&cmd).await?.as_slice() {
            b":1\r\n" => Ok(true),
            b":0\r\n" => Ok(false),
            other => Err(format!(
                "EVALSHA answered {}",
                String::from_utf8_lossy(other)
            )),
        }
    }
}
