//! The Redis Cluster backend against a real cluster of 3 primaries and 3 replicas on loopback: locks
//! spread over every primary, renewal batches across slots, release notices, the attribute, a primary
//! killed (its replica takes over; callers recover; fences never go backwards, also for a grant the
//! replica never received), `wait_for_replicas` with a stopped replica, hand-over to the next local
//! waiter, and the owner-checked fence of a grant that came without one.
//!
//! Every test starts its own cluster (a few seconds), so failovers in one test cannot disturb another.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockattr_runtime::backend::cluster::ClusterOptions;
use lockattr_runtime::backend::Acquired;
use lockattr_runtime::key::LockName;
use lockattr_runtime::testing::RedisCluster;
use lockattr_runtime::{distributed_lock, LockClient, LockError, LostReason};
use lockattr_tests::{calls, cmd, waiter};
use tokio::task::block_in_place;
use tokio::time::Instant;

async fn cluster_client(cluster: &RedisCluster, opts: ClusterOptions) -> LockClient {
    LockClient::builder()
        .cluster_with(&cluster.urls(), opts)
        .prefix("t")
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("connect to the test cluster")
}

/// `EXISTS key` on node `i` directly (no redirects): `None` when the node does not serve the key's slot
/// (it answers `MOVED`) or does not answer.
async fn exists_on(cluster: &RedisCluster, i: usize, key: &str) -> Option<bool> {
    let client = redis::Client::open(cluster.node(i).url()).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(n == 1)
}

/// A command on node `i` directly; its reply as a string (`nil` for none).
async fn cmd_on(cluster: &RedisCluster, i: usize, args: &[&str]) -> String {
    let client = redis::Client::open(cluster.node(i).url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("node connection");
    let reply: Option<String> = redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut conn)
        .await
        .expect("command on the owning primary");
    reply.unwrap_or_else(|| "nil".into())
}

async fn pttl_on(cluster: &RedisCluster, i: usize, key: &str) -> i64 {
    let client = redis::Client::open(cluster.node(i).url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("node connection");
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("PTTL on the owning primary")
}

/// `count` keys `prefix:N` whose lock keys (`t:{prefix:N}`) are served by primary `on` (or, with
/// `on_other`, by any other primary).
fn keys_on(
    cluster: &RedisCluster,
    client: &LockClient,
    prefix: &str,
    on: usize,
    on_other: bool,
    count: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for n in 0.. {
        let key = format!("{prefix}:{n}");
        let served_by = cluster.primary_of_key(&client.backend_key(&key));
        if (served_by == on) != on_other {
            out.push(key);
            if out.len() == count {
                break;
            }
        }
    }
    out
}

#[distributed_lock(key = "attr:{id}", ttl = "2s", auto_renew, client = locks)]
async fn fenced_write(locks: &LockClient, id: u64, hold_ms: u64) -> Result<u64, LockError> {
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    Ok(lockattr_runtime::current_fence()
        .await
        .expect("fence inside the lock"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_spread_over_every_primary_renew_and_release() {
    let cluster = block_in_place(RedisCluster::spawn);
    let client = cluster_client(&cluster, ClusterOptions::default()).await;
    let started = Instant::now();

    // 48 locks, renewed by the watchdog in batches that span many slots, for 3× their TTL.
    let keys: Vec<String> = (0..48).map(|i| format!("spread:{i}")).collect();
    let mut guards = Vec::new();
    for k in &keys {
        let g = client
            .lock(k)
            .ttl(Duration::from_millis(600))
            .auto_renew(true)
            .acquire()
            .await
            .expect("acquire on the cluster");
        assert!(g.fence().await.unwrap() > 0);
        guards.push(g);
    }
    let mut per_primary: HashMap<usize, usize> = HashMap::new();
    let mut owner = HashMap::new();
    for k in &keys {
        let bk = client.backend_key(k);
        let p = block_in_place(|| cluster.primary_of_key(&bk));
        assert_eq!(
            exists_on(&cluster, p, &bk).await,
            Some(true),
            "{bk} must live on its slot's primary {p}"
        );
        *per_primary.entry(p).or_default() += 1;
        owner.insert(k.clone(), p);
    }
    let primaries = block_in_place(|| cluster.primaries());
    assert_eq!(primaries.len(), 3);
    assert_eq!(
        per_primary.keys().copied().collect::<HashSet<_>>(),
        primaries.iter().copied().collect::<HashSet<_>>(),
        "locks land on all three primaries: {per_primary:?}"
    );

    tokio::time::sleep(Duration::from_millis(1800)).await;
    for (k, g) in keys.iter().zip(&guards) {
        assert!(g.is_held(), "{k} kept through 3x its TTL");
        let bk = client.backend_key(k);
        assert!(pttl_on(&cluster, owner[k], &bk).await > 0, "{bk} renewed");
    }

    // Contention from another client.
    let other = cluster_client(&cluster, ClusterOptions::default()).await;
    let err = other.lock(&keys[0]).acquire().await.expect_err("busy");
    assert!(err.is_contention(), "{err}");

    for g in guards {
        g.release().await.expect("release");
    }
    for k in &keys {
        let bk = client.backend_key(k);
        assert_eq!(
            exists_on(&cluster, owner[k], &bk).await,
            Some(false),
            "{bk} deleted"
        );
    }

    // A waiter is woken by the release notice (long before the holder's 10 s TTL would run out).
    let held = client
        .lock("notify")
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .expect("acquire");
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .lock("notify")
                .ttl(Duration::from_secs(2))
                .wait(Duration::from_secs(8))
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released_at = Instant::now();
    held.release().await.expect("release");
    let g = waiter
        .await
        .expect("waiter task")
        .expect("waiter gets the lock");
    let woke_after = released_at.elapsed();
    assert!(
        woke_after < Duration::from_millis(1000),
        "woken by the notice, not the TTL: {woke_after:?}"
    );
    g.release().await.expect("release");

    // The attribute, unchanged, on the cluster backend.
    let f1 = fenced_write(&client, 7, 0).await.expect("first call");
    let f2 = fenced_write(&client, 7, 0).await.expect("second call");
    assert!(f2 > f1, "fences increase: {f1} then {f2}");
    let (a, b) = tokio::join!(fenced_write(&client, 8, 400), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fenced_write(&other, 8, 0).await
    });
    a.expect("holder finishes");
    assert!(b.expect_err("concurrent call is refused").is_contention());

    // A fence counter that is not a whole number below 2^53 is refused with a clear error; the counter
    // is left as it was and no lock is left behind. A counter ahead of the clock is continued.
    let bk = client.backend_key("badfence");
    let counter = format!("{bk}:fence");
    let p = block_in_place(|| cluster.primary_of_key(&bk));
    for bad in ["-5", "1.5", "nope", "9007199254740992"] {
        cmd_on(&cluster, p, &["SET", &counter, bad]).await;
        let err = client.lock("badfence").acquire().await.expect_err(bad);
        assert!(matches!(err, LockError::WrongType { .. }), "{bad}: {err}");
        assert_eq!(exists_on(&cluster, p, &bk).await, Some(false), "{bad}");
        assert_eq!(cmd_on(&cluster, p, &["GET", &counter]).await, bad);
    }
    let ahead = 8_000_000_000_000_000u64;
    cmd_on(&cluster, p, &["SET", &counter, &ahead.to_string()]).await;
    let g = client.lock("badfence").acquire().await.expect("acquire");
    assert_eq!(g.fence().await.unwrap(), ahead + 1);
    // The counter outlives its lock (default TTL 30 s) by a day, not forever.
    let kept = pttl_on(&cluster, p, &counter).await;
    assert!(
        (86_400_000..=86_430_000).contains(&kept),
        "counter PTTL {kept} ms"
    );
    g.release().await.expect("release");

    // Waiting for replicas succeeds on a healthy cluster, on every primary.
    let synced = cluster_client(
        &cluster,
        ClusterOptions::default().wait_for_replicas(1, Duration::from_millis(500)),
    )
    .await;
    for k in keys.iter().take(12) {
        let g = synced
            .lock(k)
            .acquire()
            .await
            .expect("acknowledged by the replica");
        g.release().await.expect("release");
    }
    eprintln!("cluster basics took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_replica_takes_over_and_fences_never_go_backwards() {
    let mut cluster = block_in_place(RedisCluster::spawn);
    let client = cluster_client(&cluster, ClusterOptions::default()).await;
    let other = cluster_client(&cluster, ClusterOptions::default()).await;

    let victim = block_in_place(|| cluster.primary_of_key(&client.backend_key("failover:probe")));
    let replica = block_in_place(|| cluster.replica_of(victim)).expect("the victim has a replica");
    let (on_victim, elsewhere) = block_in_place(|| {
        (
            keys_on(&cluster, &client, "fo", victim, false, 6),
            keys_on(&cluster, &client, "fo", victim, true, 6),
        )
    });

    // Fences issued before the failover.
    let mut before = HashMap::new();
    for k in on_victim.iter().chain(&elsewhere) {
        let g = client.lock(k).acquire().await.expect("acquire");
        before.insert(k.clone(), g.fence().await.unwrap());
        g.release().await.expect("release");
    }

    // A lock on a healthy primary, kept alive through the failover.
    let survivor = client
        .lock(&elsewhere[0])
        .ttl(Duration::from_secs(6))
        .auto_renew(true)
        .acquire()
        .await
        .expect("acquire");

    // The replica misses a grant: stop it and cut its replication link (a stopped process still
    // receives what is already on the wire), grant, kill the primary, let the replica take over.
    block_in_place(|| {
        cluster.pause(replica);
        let killed = cluster
            .node(victim)
            .cli(&["CLIENT", "KILL", "TYPE", "replica"]);
        assert_eq!(killed, "1", "the replication link is cut");
    });
    let stale = client
        .lock(&on_victim[0])
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("grant the replica never sees");
    let stale_fence = stale.fence().await.unwrap();
    assert!(stale_fence > before[&on_victim[0]]);
    block_in_place(|| {
        cluster.kill(victim);
        cluster.resume(replica);
    });
    let killed_at = Instant::now();

    // Callers keep working after a bounded recovery: the promoted replica grants the lock again (it
    // never had it), with a higher fence, so the stale owner's writes are refused downstream.
    let regranted = other
        .lock(&on_victim[0])
        .ttl(Duration::from_secs(5))
        .wait(Duration::from_secs(15))
        .acquire()
        .await
        .expect("the promoted replica grants the lock");
    let recovery = killed_at.elapsed();
    assert!(
        recovery < Duration::from_secs(12),
        "recovered in {recovery:?}"
    );
    assert!(
        regranted.fence().await.unwrap() > stale_fence,
        "fence went backwards across the failover: {} after {stale_fence}",
        regranted.fence().await.unwrap()
    );
    block_in_place(|| cluster.wait_for_failover(replica));

    // The stale owner finds out: its release touches nothing.
    let err = stale.release().await.expect_err("no longer ours");
    assert!(
        matches!(
            err,
            LockError::Lost {
                reason: LostReason::NotOwner,
                ..
            }
        ),
        "{err}"
    );
    regranted.release().await.expect("release");

    // Every key, on the failed-over slots and elsewhere: fences keep increasing.
    for k in on_victim.iter().chain(&elsewhere).skip(1) {
        if k == &elsewhere[0] {
            continue; // held by the survivor
        }
        let g = client
            .lock(k)
            .wait(Duration::from_secs(5))
            .acquire()
            .await
            .expect("acquire after the failover");
        assert!(
            g.fence().await.unwrap() > before[k],
            "{k}: fence {} after {}",
            g.fence().await.unwrap(),
            before[k]
        );
        g.release().await.expect("release");
    }
    assert!(survivor.is_held(), "a lock on a healthy primary survives");
    survivor.release().await.expect("release the survivor");
    eprintln!("failover recovery took {recovery:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_fails_clearly_when_the_replica_is_stopped() {
    let mut cluster = block_in_place(RedisCluster::spawn);
    let opts = ClusterOptions::default().wait_for_replicas(1, Duration::from_millis(200));
    let client = cluster_client(&cluster, opts).await;

    let key = "synced";
    let bk = client.backend_key(key);
    let primary = block_in_place(|| cluster.primary_of_key(&bk));
    let replica = block_in_place(|| cluster.replica_of(primary)).expect("replica");
    let elsewhere = block_in_place(|| keys_on(&cluster, &client, "sync", primary, true, 1));

    let g = client.lock(key).acquire().await.expect("acknowledged");
    g.release().await.expect("release");

    block_in_place(|| cluster.pause(replica));
    let started = Instant::now();
    let err = client
        .lock(key)
        .acquire()
        .await
        .expect_err("no replica acknowledges");
    let took = started.elapsed();
    let text = err.to_string();
    assert!(err.is_unavailable(), "{text}");
    assert!(
        text.contains("0 of 1 replica") && text.contains("wait_for_replicas"),
        "{text}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "failed within the WAIT timeout: {took:?}"
    );
    assert_eq!(
        exists_on(&cluster, primary, &bk).await,
        Some(false),
        "the unacknowledged grant was released"
    );
    // Other primaries' replicas still acknowledge.
    let g = client
        .lock(&elsewhere[0])
        .acquire()
        .await
        .expect("another primary's replica acknowledges");
    g.release().await.expect("release");

    block_in_place(|| cluster.resume(replica));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.lock(key).acquire().await {
            Ok(g) => {
                g.release().await.expect("release");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_unavailable(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after the replica resumed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_primary_does_not_hold_up_renewals_on_the_others() {
    let mut cluster = block_in_place(RedisCluster::spawn);
    let client = cluster_client(&cluster, ClusterOptions::default()).await;
    let stopped = block_in_place(|| cluster.primary_of_key(&client.backend_key("stall:probe")));
    let (on_stopped, elsewhere) = block_in_place(|| {
        (
            keys_on(&cluster, &client, "stall", stopped, false, 4),
            keys_on(&cluster, &client, "stall", stopped, true, 8),
        )
    });
    // Taken together, so the watchdog renews them in the same batches.
    let ttl = Duration::from_millis(300);
    let mut stalled = Vec::new();
    let mut healthy = Vec::new();
    for k in &on_stopped {
        stalled.push(
            client
                .lock(k)
                .ttl(ttl)
                .auto_renew(true)
                .acquire()
                .await
                .expect("acquire"),
        );
    }
    for k in &elsewhere {
        healthy.push(
            client
                .lock(k)
                .ttl(ttl)
                .auto_renew(true)
                .acquire()
                .await
                .expect("acquire"),
        );
    }
    // Stopped for 1.5x the TTL (shorter than the cluster node timeout, so no failover starts).
    block_in_place(|| cluster.pause(stopped));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let held_elsewhere = healthy.iter().filter(|g| g.is_held()).count();
    let held_on_stopped = stalled.iter().filter(|g| g.is_held()).count();
    block_in_place(|| cluster.resume(stopped));
    assert_eq!(
        held_elsewhere,
        healthy.len(),
        "locks on answering primaries keep being renewed"
    );
    assert_eq!(
        held_on_stopped, 0,
        "locks on the stopped primary are reported lost at their deadline"
    );
    for g in &stalled {
        assert_eq!(g.lost_reason(), Some(LostReason::DeadlineExpired));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(healthy.iter().all(|g| g.is_held()));
    for g in healthy {
        g.release().await.expect("release");
    }
}

/// Tasks of one client queued behind its own holder get the lock by hand-over, as on one node: one
/// script call per hand-off on the slot's primary (no notice, no mark), first come first served, and
/// each fence issued when its holder asks, owner-checked, from the lock's own counter, strictly above
/// the last. With `wait_for_replicas` a release goes with its notice instead (a hand-over is not
/// acknowledged by replicas).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_waiters_get_the_lock_by_hand_over() {
    let cluster = block_in_place(RedisCluster::spawn);
    let client = cluster_client(&cluster, ClusterOptions::default()).await;
    let bk = client.backend_key("ho");
    let p = block_in_place(|| cluster.primary_of_key(&bk));
    let mut conn = lockattr_tests::raw(&cluster.node(p).url()).await;
    let holder = client
        .lock("ho")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("ho is free");
    let f0 = holder.fence().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let w1 = waiter(&client, "ho", 1, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let w2 = waiter(&client, "ho", 2, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    cmd(&mut conn, &["CONFIG", "RESETSTAT"]).await;

    holder.release().await.unwrap();
    let join = |w: tokio::task::JoinHandle<Result<u64, LockError>>| async move {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("the waiter got the lock within 10 s")
            .expect("waiter task")
            .expect("waiter")
    };
    let f1 = join(w1).await;
    let f2 = join(w2).await;
    assert_eq!(*order.lock().unwrap(), vec![1, 2]);
    assert!(f0 < f1 && f1 < f2, "fences {f0}, {f1}, {f2}");
    // Nobody marked the lock, nothing was published, and only the last release deleted it.
    assert_eq!(calls(&mut conn, "append").await, 0);
    assert_eq!(calls(&mut conn, "publish").await, 0);
    assert_eq!(calls(&mut conn, "del").await, 1);
    assert_eq!(exists_on(&cluster, p, &bk).await, Some(false));
    // The handed-over holders' fences came from the lock's own counter, kept a day past their TTL.
    let kept = pttl_on(&cluster, p, &format!("{bk}:fence")).await;
    assert!(
        (86_400_000..=86_430_000).contains(&kept),
        "counter PTTL {kept} ms"
    );

    let synced = cluster_client(
        &cluster,
        ClusterOptions::default().wait_for_replicas(1, Duration::from_millis(500)),
    )
    .await;
    let holder = synced
        .lock("ho")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("ho is free again");
    let f3 = holder.fence().await.unwrap();
    let w3 = waiter(&synced, "ho", 3, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    cmd(&mut conn, &["CONFIG", "RESETSTAT"]).await;
    holder.release().await.unwrap();
    assert!(join(w3).await > f3);
    assert!(
        calls(&mut conn, "publish").await >= 1,
        "released with a notice, not handed over"
    );

    // An acquire that finds the lock holding its own token (the cluster client sent it, or a
    // hand-over, again after a lost reply) gets a fresh fence above every one issued so far, never
    // the last one again (which, after a hand-over, was the previous holder's).
    let name = LockName::new("t", "reclaim");
    let backend = client.backend();
    let granted = |a: Acquired| match a {
        Acquired::Granted {
            fence: Some(fence), ..
        } => fence,
        other => panic!("not granted with a fence: {other:?}"),
    };
    let ttl = Duration::from_secs(30);
    let first = granted(backend.acquire(&name, "tok", ttl).await.unwrap());
    let again = granted(backend.acquire(&name, "tok", ttl).await.unwrap());
    assert!(again > first, "fence {again} after {first}");
    // And a fence asked for by anyone else but the holder is refused.
    assert_eq!(backend.fence(&name, "other").await.unwrap(), None);
    assert!(backend.fence(&name, "tok").await.unwrap().unwrap() > again);
    backend.release(&name, "tok", None).await.unwrap();
}

/// Two clients of four tasks each take one key on the cluster 15 times per task, holding it 2 ms:
/// hand-overs within a client, notices between the clients. Never two holders, fences strictly
/// increasing in hold order (the handed-over holders' fences are issued on request), no hand-off left
/// to the fallback re-check at the holder's 10 s TTL, and the lock gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_contend_with_hand_overs_and_notices() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cluster = block_in_place(RedisCluster::spawn);
    let clients = [
        cluster_client(&cluster, ClusterOptions::default()).await,
        cluster_client(&cluster, ClusterOptions::default()).await,
    ];
    let holders = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for client in clients.iter().cycle().take(8) {
        let (client, holders, fences) = (client.clone(), holders.clone(), fences.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                let g = client
                    .lock("busy")
                    .ttl(Duration::from_secs(10))
                    .wait(Duration::from_secs(30))
                    .acquire()
                    .await
                    .expect("every task gets the lock");
                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                let fence = g.fence().await.expect("the holder's fence");
                fences.lock().unwrap().push(fence);
                tokio::time::sleep(Duration::from_millis(2)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                g.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("done within 60 s")
            .expect("contending task");
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "120 holds of 2 ms took {took:?}: a hand-off waited for the fallback"
    );
    let fences = fences.lock().unwrap().clone();
    assert_eq!(fences.len(), 120);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not strictly increasing: {fences:?}"
    );
    let bk = clients[0].backend_key("busy");
    let p = block_in_place(|| cluster.primary_of_key(&bk));
    assert_eq!(exists_on(&cluster, p, &bk).await, Some(false));
}
