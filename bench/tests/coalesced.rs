//! Many concurrent acquires and releases through one client (the Redis backend coalesces them into
//! batched script calls): exclusion holds, fences are strictly increasing per key, every lock is given
//! back, and a wrong-type key inside a batch fails only its own request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockattr_runtime::testing::RedisServer;
use lockattr_runtime::{LockClient, LockError};

/// A private redis-server and a client with `prefix` on it.
async fn server_and_client(prefix: &str) -> (RedisServer, LockClient) {
    assert!(
        lockattr_runtime::testing::redis_server_available(),
        "redis-server is not installed: run `bash scripts/test` (it installs it) or set \
         LOCKATTR_REDIS_SERVER to a redis-server binary"
    );
    let server = RedisServer::spawn();
    let client = LockClient::builder()
        .url(server.url())
        .prefix(prefix)
        .connect()
        .await
        .unwrap();
    (server, client)
}

/// Fences recorded per key, in grant order.
type Fences = Arc<Mutex<HashMap<String, Vec<u64>>>>;

/// Wait for `tasks`; check that `total` grants were recorded and that each key's fences, recorded in
/// grant order (the lock is exclusive), strictly increase. Returns the fences.
async fn join_and_check_fences(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    fences: &Fences,
    total: usize,
) -> HashMap<String, Vec<u64>> {
    for t in tasks {
        t.await.unwrap();
    }
    let fences = fences.lock().unwrap().clone();
    assert_eq!(fences.values().map(Vec::len).sum::<usize>(), total);
    for (key, f) in fences.iter() {
        assert!(
            f.windows(2).all(|w| w[0] < w[1]),
            "fences of {key} not increasing: {f:?}"
        );
    }
    fences
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acquires_and_releases_stay_exclusive_and_fenced() {
    let (server, client) = server_and_client("co").await;
    server.cli(&["HSET", "co:{bad}", "f", "v"]);
    let fences: Fences = Arc::default();
    let inside: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..200usize {
        let client = client.clone();
        let fences = fences.clone();
        let inside = inside.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20usize {
                // Half the tasks share 4 hot keys, the rest use keys of their own.
                let key = if t % 2 == 0 {
                    format!("hot:{}", (t + i) % 4)
                } else {
                    format!("own:{t}")
                };
                let g = client
                    .lock(key.as_str())
                    .ttl(Duration::from_secs(10))
                    .wait(Duration::from_secs(30))
                    .acquire()
                    .await
                    .unwrap();
                {
                    let mut inside = inside.lock().unwrap();
                    let n = inside.entry(key.clone()).or_default();
                    *n += 1;
                    assert_eq!(*n, 1, "two holders of {key}");
                }
                let fence = g.fence().await.unwrap();
                fences
                    .lock()
                    .unwrap()
                    .entry(key.clone())
                    .or_default()
                    .push(fence);
                tokio::task::yield_now().await;
                *inside.lock().unwrap().get_mut(&key).unwrap() -= 1;
                g.release().await.unwrap();
            }
            // A wrong-type key fails alone.
            if t % 50 == 0 {
                let err = client.lock("bad").acquire().await.unwrap_err();
                assert!(matches!(err, LockError::WrongType { .. }), "{err}");
            }
        }));
    }
    join_and_check_fences(tasks, &fences, 200 * 20).await;
    assert_eq!(
        server.cli(&["KEYS", "co:{hot*}"]),
        "",
        "a lock was left behind"
    );
    assert_eq!(server.cli(&["EXISTS", "co:{own:1}"]), "0");
}

/// Two clients with different prefixes share one backend, so their concurrent operations meet in the
/// same coalesced calls: each prefix keeps its own fence counter (`prefix:fence`), which ends at the
/// highest fence issued under it, fences increase per key, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_sharing_a_backend_keep_their_own_counters() {
    let (server, first) = server_and_client("pa").await;
    let second = LockClient::builder()
        .backend(first.backend().clone())
        .prefix("pb")
        .connect()
        .await
        .unwrap();
    let fences: Fences = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..128usize {
        let (client, prefix) = if t % 2 == 0 {
            (first.clone(), "pa")
        } else {
            (second.clone(), "pb")
        };
        let fences = fences.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25usize {
                let key = format!("k:{}", (t / 2 + i) % 8);
                let g = client
                    .lock(key.as_str())
                    .ttl(Duration::from_secs(10))
                    .wait(Duration::from_secs(30))
                    .acquire()
                    .await
                    .unwrap();
                let fence = g.fence().await.unwrap();
                fences
                    .lock()
                    .unwrap()
                    .entry(format!("{prefix}/{key}"))
                    .or_default()
                    .push(fence);
                g.release().await.unwrap();
            }
        }));
    }
    let fences = join_and_check_fences(tasks, &fences, 128 * 25).await;
    for prefix in ["pa", "pb"] {
        let highest = fences
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{prefix}/")))
            .flat_map(|(_, f)| f.iter().copied())
            .max()
            .unwrap();
        assert_eq!(
            server.cli(&["GET", &format!("{prefix}:fence")]),
            highest.to_string(),
            "counter of {prefix}"
        );
    }
    assert_eq!(server.cli(&["KEYS", "p?:{*"]), "", "a lock was left behind");
}
