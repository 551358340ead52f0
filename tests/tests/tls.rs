//! `rediss://` against a real redis-server with a TLS port (feature `tls`; `scripts/test` runs this file
//! with `cargo test -p lockattr-tests --features tls --test tls`), and the same against a Redis
//! Cluster and a Sentinel group whose servers speak TLS. The certificate is a throw-away self-signed
//! one made with the `openssl` command-line tool (`testing::TlsCert`).

use std::time::Duration;

use lockattr_runtime::testing::{free_port, RedisCluster, RedisSentinels, TlsCert};
use lockattr_runtime::{LockClient, LockError};
use lockattr_tests::{get, hand_over, raw, spawn_waiter, RedisServer};
use tokio::task::block_in_place;
use tokio::time::Instant;

/// A redis-server that listens on a plain port (for the test's own checks) and on a TLS port.
struct TlsServer {
    server: RedisServer,
    tls_port: u16,
    _cert: TlsCert,
}

impl TlsServer {
    fn spawn() -> TlsServer {
        let cert = TlsCert::generate();
        let tls_port = free_port();
        let args = cert.server_args(tls_port);
        let server = RedisServer::spawn_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
        TlsServer {
            server,
            tls_port,
            _cert: cert,
        }
    }

    /// The TLS URL; `#insecure` skips the certificate check (the certificate is self-signed).
    fn url(&self, insecure: bool) -> String {
        let suffix = if insecure { "/#insecure" } else { "" };
        format!("rediss://127.0.0.1:{}{suffix}", self.tls_port)
    }
}

async fn tls_client(url: &str) -> Result<LockClient, LockError> {
    LockClient::builder()
        .url(url)
        .prefix("t")
        .command_timeout(Duration::from_secs(2))
        .connect()
        .await
}

/// Acquire, fence, renew, release and wake a waiter, all over TLS (the waiter's release notice comes
/// through the subscriber connection, also TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_work_over_tls() {
    let tls = TlsServer::spawn();
    let a = tls_client(&tls.url(true)).await.expect("TLS connect");
    let b = tls_client(&tls.url(true)).await.expect("TLS connect");
    lock_cycle(&a, &b, "order:1", &tls.server.url()).await;
}

/// The same on a Redis Cluster whose nodes, bus and replication all use TLS, reached through the
/// `LOCKATTR_REDIS_URL` form `rediss+cluster://...#insecure`: the client discovers the other nodes'
/// TLS ports from the cluster and listens for notices on a TLS connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_locks_work_over_tls() {
    let cert = TlsCert::generate();
    let cluster = block_in_place(|| RedisCluster::spawn_tls(&cert));
    // One seed node is enough: the others are discovered (at their TLS ports).
    let seed = cluster.tls_urls()[0]
        .trim_start_matches("rediss://")
        .to_owned();
    let url = format!("rediss+cluster://{seed}#insecure");
    // Without `#insecure` the self-signed certificate is refused, with an error that names the fix.
    let untrusted = format!("rediss+cluster://{seed}");
    assert_names_the_fix(tls_client(&untrusted).await.unwrap_err());
    let a = tls_client(&url).await.expect("TLS cluster connect");
    let b = tls_client(&url).await.expect("TLS cluster connect");
    // Keys on every primary, so each is reached at a TLS port the client discovered.
    let mut primaries = std::collections::HashSet::new();
    for n in 0.. {
        let key = format!("order:{n}");
        let primary = block_in_place(|| cluster.primary_of_key(&format!("t:{{{key}}}")));
        if primaries.insert(primary) {
            lock_cycle(&a, &b, &key, &cluster.node(primary).url()).await;
        }
        if primaries.len() == 3 {
            break;
        }
    }
}

/// The same behind Sentinels that, like the servers, speak TLS: the Sentinels name the primary's TLS
/// port, and `#insecure` reaches the primary as it reaches the Sentinels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_locks_work_over_tls() {
    let cert = TlsCert::generate();
    let group = block_in_place(|| RedisSentinels::spawn_tls(&cert));
    let hosts: Vec<String> = group
        .tls_sentinel_urls()
        .iter()
        .map(|u| u.trim_start_matches("rediss://").to_owned())
        .collect();
    let url = format!(
        "rediss+sentinel://{}/{}#insecure",
        hosts.join(","),
        RedisSentinels::MASTER
    );
    assert_names_the_fix(
        tls_client(url.trim_end_matches("#insecure"))
            .await
            .unwrap_err(),
    );
    let a = tls_client(&url).await.expect("TLS Sentinel connect");
    let b = tls_client(&url).await.expect("TLS Sentinel connect");
    lock_cycle(&a, &b, "order:1", &group.server(0).url()).await;
}

/// `err` is an `Unavailable` error that says the certificate is not trusted and names `#insecure`.
fn assert_names_the_fix(err: LockError) {
    let msg = err.to_string();
    assert!(matches!(err, LockError::Unavailable { .. }), "{msg}");
    assert!(msg.contains("certificate"), "{msg}");
    assert!(msg.contains("#insecure"), "the fix is named: {msg}");
}

/// Take `key` with `a` (auto-renewed), check it on the server behind `plain_url` and that renewals keep
/// it, then hand it to a waiter of `b`, woken by the release notice.
async fn lock_cycle(a: &LockClient, b: &LockClient, key: &str, plain_url: &str) {
    let mut plain = raw(plain_url).await;
    let lock_key = format!("t:{{{key}}}");
    let g = a
        .lock(key)
        .ttl(Duration::from_millis(600))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    assert!(g.fence().await.unwrap() > 0);
    // The lock is on this server (seen through its plain port).
    assert!(get(&mut plain, &lock_key).await.is_some());
    // Renewals over TLS keep it past its TTL.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(g.is_held());

    let waiter = spawn_waiter(b, key);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let handoff = hand_over(g, waiter).await;
    // Woken by the notice, not by the re-check at the holder's TTL (its TTL was renewed to 600 ms).
    assert!(handoff < Duration::from_millis(500), "hand-off {handoff:?}");
    assert!(get(&mut plain, &lock_key).await.is_none());
}

/// The attribute works unchanged over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribute_works_over_tls() {
    #[lockattr_runtime::distributed_lock(key = "job:{id}", ttl = "5s", client = client)]
    async fn job(client: &LockClient, id: u32) -> Result<u64, LockError> {
        Ok(lockattr_runtime::current_fence()
            .await
            .expect("inside the lock"))
    }
    let tls = TlsServer::spawn();
    let client = tls_client(&tls.url(true)).await.expect("TLS connect");
    let f1 = job(&client, 7).await.unwrap();
    let f2 = job(&client, 7).await.unwrap();
    assert!(f2 > f1);
}

/// A certificate the client does not trust is a clear error that names the fix, not a hang or a panic;
/// and a plain `redis://` client on the TLS port fails within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_and_wrong_scheme_are_clear_errors() {
    let tls = TlsServer::spawn();
    assert_names_the_fix(tls_client(&tls.url(false)).await.unwrap_err());

    let t0 = Instant::now();
    let err = tls_client(&format!("redis://127.0.0.1:{}", tls.tls_port))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}
