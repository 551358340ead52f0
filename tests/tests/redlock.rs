//! Redlock over 3 and 5 real `redis-server` processes: quorum behaviour with nodes killed, stopped
//! (SIGSTOP) and restarted with their data lost; fencing tokens across restarts; waiting across nodes;
//! and the configuration surface. (The single-node scenarios of `semantics.rs` run on Redlock through
//! `lockattr_tests::on_all_backends!`.)

use std::time::Duration;

use lockattr_runtime::backend::redlock::RedlockOptions;
use lockattr_runtime::{LockClient, LockError, LostReason};
use lockattr_tests::{cmd, get, pttl, raw, FaultProxy, Fixture, RedisServer, RedlockFx};
use tokio::time::Instant;

fn bk(key: &str) -> String {
    format!("t:{{{key}}}")
}

fn fk(key: &str) -> String {
    format!("t:{{{key}}}:fence")
}

fn channel(key: &str) -> String {
    format!("t:{{{key}}}:released")
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

async fn node_get(s: &RedisServer, k: &str) -> Option<String> {
    get(&mut raw(&s.url()).await, k).await
}

async fn node_cmd(s: &RedisServer, args: &[&str]) -> redis::Value {
    cmd(&mut raw(&s.url()).await, args).await
}

async fn node_fence(s: &RedisServer, key: &str) -> u64 {
    node_get(s, &fk(key))
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Poll `check` every 5 ms until it holds; panic naming `what` after `bound` (a hang guard).
async fn eventually<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < bound, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until every node holds the same value at `key`'s lock (a grant returns once a majority granted;
/// the other nodes' keys land moments later).
async fn same_value_everywhere(fx: &RedlockFx, key: &str) {
    eventually(
        "the same value on every node",
        Duration::from_secs(2),
        || async {
            let values = fx.values(&bk(key)).await;
            values.iter().all(|v| v.is_some() && *v == values[0])
        },
    )
    .await;
}

/// Restart a node with all data lost (blocking for a few ms: fine on the multi-thread runtime).
fn restart(fx: &mut RedlockFx, i: usize) {
    tokio::task::block_in_place(|| fx.servers[i].restart());
}

fn kill(fx: &mut RedlockFx, i: usize) {
    tokio::task::block_in_place(|| fx.servers[i].kill());
}

async fn subscribers(s: &RedisServer, ch: &str) -> i64 {
    match node_cmd(s, &["PUBSUB", "NUMSUB", ch]).await {
        redis::Value::Array(v) => match v.get(1) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------------
// Basic behaviour

/// Acquire takes the key on every node with one token; auto-renew keeps it through 3x the TTL while
/// another client is refused; release removes it everywhere; the next grant has a higher fence.
async fn basic(n: usize) {
    let fx = RedlockFx::with_nodes(n);
    let a = fx.client().await;
    let b = fx.client().await;
    let ttl = Duration::from_millis(300);
    let g = a
        .lock("basic")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    // Granted by a majority; the remaining node(s) answer moments later.
    same_value_everywhere(&fx, "basic").await;
    let start = Instant::now();
    while start.elapsed() < ttl * 3 {
        tokio::time::sleep(Duration::from_millis(75)).await;
        assert!(g.is_held(), "lost: {:?}", g.lost_reason());
        match b.lock("basic").ttl(ttl).acquire().await {
            Err(LockError::Busy {
                remaining: Some(r), ..
            }) => assert!(r <= ttl, "{r:?}"),
            other => panic!("expected Busy, got {other:?}"),
        }
    }
    // Every node's TTL was refreshed by the renewals (not only a majority's).
    assert!(fx.remaining_ms(&bk("basic")).await.unwrap() > 0);
    let f = g.fence().await.unwrap();
    // A majority keeps the fence counter for a day past the TTL, not forever.
    let mut kept = 0;
    for s in &fx.servers {
        let t = pttl(&mut raw(&s.url()).await, &fk("basic")).await;
        kept += usize::from((86_390_000..=86_400_300).contains(&t));
    }
    assert!(
        kept > n / 2,
        "{kept} of {n} nodes keep the counter for TTL + 1 day"
    );
    g.release().await.unwrap();
    // A majority deleted before `release` returned; the last node's delete may still be in flight.
    eventually("released everywhere", Duration::from_secs(2), || async {
        fx.values(&bk("basic")).await.iter().all(Option::is_none)
    })
    .await;
    let g2 = b.lock("basic").ttl(ttl).acquire().await.unwrap();
    assert!(g2.fence().await.unwrap() > f);
    g2.release().await.unwrap();
    assert_eq!(a.tracked_leases(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_3_nodes() {
    basic(3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_5_nodes() {
    basic(5).await
}

/// Several clients (separate connections) and tasks contend on 5 nodes: never two holders, fences
/// strictly increasing in grant order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_exclusion_5_nodes() {
    let fx = RedlockFx::with_nodes(5);
    lockattr_tests::contend_on_one_key(&fx, "shared", 6, 8).await;
}

// ---------------------------------------------------------------------------------------------------
// Quorum: minority down, majority down

/// With a minority of nodes dead, acquire, auto-renew through 3x the TTL and release all work.
async fn minority_down(n: usize, down: usize) {
    let mut fx = RedlockFx::with_nodes(n);
    let a = fx.client().await;
    let b = fx.client().await;
    for i in 0..down {
        kill(&mut fx, i);
    }
    let ttl = Duration::from_millis(300);
    let t0 = Instant::now();
    let fence = a
        .lock("minority")
        .ttl(ttl)
        .auto_renew(true)
        .run(async {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                assert!(lockattr_runtime::current_lock().unwrap().is_held());
                let e = b.lock("minority").ttl(ttl).acquire().await.unwrap_err();
                assert!(matches!(e, LockError::Busy { .. }), "{e}");
            }
            lockattr_runtime::current_fence().await.unwrap()
        })
        .await
        .expect("held through 3x ttl with a minority down");
    assert!(t0.elapsed() >= ttl * 3);
    for s in fx.servers.iter().filter(|s| s.is_running()) {
        eventually("released", Duration::from_secs(2), || async {
            node_get(s, &bk("minority")).await.is_none()
        })
        .await;
    }
    let g = b.lock("minority").ttl(ttl).acquire().await.unwrap();
    assert!(g.fence().await.unwrap() > fence);
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_down_1_of_3() {
    minority_down(3, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_down_2_of_5() {
    minority_down(5, 2).await
}

/// With a majority dead: a holder is told by its deadline, acquire fails at once with an error naming
/// how many nodes answered, and connecting fails the same way.
async fn majority_down(n: usize) {
    let q = n / 2 + 1;
    let mut fx = RedlockFx::with_nodes(n);
    let a = fx.client().await;
    let ttl = Duration::from_millis(450);
    let g = a
        .lock("held")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    let killed_at = Instant::now();
    for i in 0..q {
        kill(&mut fx, i);
    }
    let reason = tokio::time::timeout(Duration::from_secs(3), g.lost())
        .await
        .expect("holder told");
    assert_eq!(reason, LostReason::DeadlineExpired);
    assert!(
        killed_at.elapsed() < ttl,
        "told {:?} after the majority died",
        killed_at.elapsed()
    );

    let t0 = Instant::now();
    let e = a
        .lock("m")
        .ttl(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LockError::Unavailable { .. }), "{msg}");
    let want = format!(
        "{} of {n} nodes answered; a majority of {q} is needed",
        n - q
    );
    assert!(msg.contains(&want), "{msg}");
    assert!(msg.contains("redlock["), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());

    let e = LockClient::builder()
        .redlock(&fx.urls())
        .command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    let want = format!(
        "{} of {n} nodes answered PING; a majority of {q} is needed",
        n - q
    );
    assert!(e.to_string().contains(&want), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_down_2_of_3() {
    majority_down(3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_down_3_of_5() {
    majority_down(5).await
}

// ---------------------------------------------------------------------------------------------------
// A stopped node

/// A minority of nodes is SIGSTOPped mid-hold: the holder keeps the lock through 3x the TTL (renewals
/// are decided by the majority, never stalled by the stopped nodes), contenders are refused without
/// waiting for the stopped nodes, and release returns without waiting for them either.
async fn stopped_mid_hold(n: usize, stopped: usize) {
    let fx = RedlockFx::with_nodes(n);
    let a = fx.client().await;
    let b = fx.client().await;
    let ttl = Duration::from_millis(300);
    let g = a
        .lock("stopped")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    for s in &fx.servers[..stopped] {
        s.pause();
    }
    let start = Instant::now();
    let mut min_valid = ttl;
    while start.elapsed() < ttl * 3 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(g.is_held(), "lost while a majority is up");
        min_valid = min_valid.min(g.valid_for());
        let t = Instant::now();
        let e = b.lock("stopped").ttl(ttl).acquire().await.unwrap_err();
        assert!(matches!(e, LockError::Busy { .. }), "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "a refused acquire waited {:?} for the stopped node(s)",
            t.elapsed()
        );
    }
    // Renewals kept coming every ttl/3: the lease never got close to its deadline.
    assert!(min_valid > ttl / 4, "lease ran down to {min_valid:?}");
    let t = Instant::now();
    g.release().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "release waited {:?} for the stopped node(s)",
        t.elapsed()
    );
    for s in &fx.servers[stopped..] {
        assert_eq!(node_get(s, &bk("stopped")).await, None);
    }
    for s in &fx.servers[..stopped] {
        s.resume();
    }
    // The stopped nodes drop the key once they run again (queued release, or expiry).
    for s in &fx.servers[..stopped] {
        eventually(
            "stopped node dropped the key",
            Duration::from_secs(3),
            || async { node_get(s, &bk("stopped")).await.is_none() },
        )
        .await;
    }
    let g = b.lock("stopped").ttl(ttl).acquire().await.unwrap();
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_mid_hold_1_of_3() {
    stopped_mid_hold(3, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_mid_hold_2_of_5() {
    stopped_mid_hold(5, 2).await
}

// ---------------------------------------------------------------------------------------------------
// Restarts that lose all data

/// A minority of nodes restarts empty while a lock is held (no auto-renew, so nothing re-establishes
/// it): inside the TTL nobody else is granted the lock, and contenders leave nothing behind.
async fn restart_no_double_grant(n: usize) {
    let mut fx = RedlockFx::with_nodes(n);
    let a = fx.client().await;
    let b = fx.client().await;
    let ttl = Duration::from_secs(3);
    let g = a.lock("r").ttl(ttl).acquire().await.unwrap();
    // The scenario: the holder holds every node, then a minority restarts empty, so the others still
    // are a majority. (A grant returns once a majority granted; the last nodes' keys land moments
    // later. Restarting a node of a *bare* majority at once is the double grant the delayed-restart
    // rule forbids.)
    eventually(
        "the holder's key on every node",
        Duration::from_secs(2),
        || async { fx.values(&bk("r")).await.iter().all(Option::is_some) },
    )
    .await;
    for i in 0..n / 2 {
        restart(&mut fx, i);
    }
    let mut refused = 0;
    while g.valid_for() > Duration::from_millis(500) && refused < 30 {
        match b.lock("r").ttl(ttl).acquire().await {
            Err(e) if e.is_contention() => refused += 1,
            Err(e) if e.is_unavailable() => {} // a reconnect to a restarted node raced
            Err(e) => panic!("{e}"),
            Ok(g2) => panic!(
                "double grant: fence {} while {} holds",
                g2.fence().await.unwrap(),
                g.fence().await.unwrap()
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused >= 5, "only {refused} refusals");
    assert!(g.is_held());
    // A restarted node that answered after the refusal was decided gives its grant back itself.
    for s in &fx.servers[..n / 2] {
        eventually(
            "a refused contender's partial grant is given back",
            Duration::from_secs(2),
            || async { node_get(s, &bk("r")).await.is_none() },
        )
        .await;
    }
    g.release().await.unwrap();
    b.lock("r")
        .ttl(ttl)
        .acquire()
        .await
        .expect("free after release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_1_of_3_no_double_grant() {
    restart_no_double_grant(3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_2_of_5_no_double_grant() {
    restart_no_double_grant(5).await
}

/// With `reacquire_on_renew` (the default) a node that restarted empty gets the live lease back at the
/// next renewal; so a rolling restart of *every* node, one at a time, never loses the lock, and
/// contenders are refused throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_keeps_lease_with_reacquire_on_renew() {
    let mut fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    let b = fx.client().await;
    let ttl = Duration::from_millis(450);
    let g = a
        .lock("rolling")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    // Values are `token#attempt`; a node that got the lease back holds `token#rejoined`.
    eventually(
        "the holder's key on every node",
        Duration::from_secs(2),
        || async { fx.values(&bk("rolling")).await.iter().all(Option::is_some) },
    )
    .await;
    let value = fx.value(&bk("rolling")).await.expect("held");
    for i in 0..3 {
        restart(&mut fx, i);
        assert_eq!(node_get(&fx.servers[i], &bk("rolling")).await, None);
        eventually(
            "the restarted node got the live lease back",
            Duration::from_secs(2),
            || async {
                node_get(&fx.servers[i], &bk("rolling")).await.as_deref() == Some(value.as_str())
            },
        )
        .await;
        assert!(g.is_held());
        assert!(b
            .lock("rolling")
            .acquire()
            .await
            .unwrap_err()
            .is_contention());
    }
    g.release().await.unwrap();
    eventually("released everywhere", Duration::from_secs(2), || async {
        fx.values(&bk("rolling")).await.iter().all(Option::is_none)
    })
    .await;
}

/// Without `reacquire_on_renew` restarted nodes stay empty; once a majority no longer confirms, the
/// renewal reports the lease as not held and the holder is told (NotOwner) at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reacquire_restarts_lose_the_lease() {
    let mut fx = RedlockFx::with_nodes(3);
    let a = LockClient::builder()
        .redlock_with(
            &fx.urls(),
            RedlockOptions::default().reacquire_on_renew(false),
        )
        .prefix("t")
        .command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let ttl = Duration::from_millis(450);
    let g = a
        .lock("norejoin")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    eventually(
        "the holder's key on every node",
        Duration::from_secs(2),
        || async { fx.values(&bk("norejoin")).await.iter().all(Option::is_some) },
    )
    .await;
    restart(&mut fx, 0);
    // Wait until a renewal has happened after the restart (node 1's TTL goes back up).
    let before = pttl(&mut raw(&fx.servers[1].url()).await, &bk("norejoin")).await;
    eventually(
        "a renewal after the restart",
        Duration::from_secs(2),
        || async { pttl(&mut raw(&fx.servers[1].url()).await, &bk("norejoin")).await > before },
    )
    .await;
    assert_eq!(node_get(&fx.servers[0], &bk("norejoin")).await, None);
    assert!(g.is_held(), "2 of 3 still confirm");
    restart(&mut fx, 1);
    let t0 = Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(2), g.lost())
        .await
        .expect("told");
    assert_eq!(reason, LostReason::NotOwner);
    assert!(t0.elapsed() < ttl, "{:?}", t0.elapsed());
    // The leftover key on node 2 is cleaned up in the background.
    eventually("leftover released", Duration::from_secs(2), || async {
        node_get(&fx.servers[2], &bk("norejoin")).await.is_none()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------
// Fencing

/// The fence is written back to every node: after an acquisition all counters are at least the fence,
/// so restarting the nodes one after another (each restart loses that node's counter) never lets the
/// fence go back. The counters start far ahead of the clock (as if earlier grants had issued such
/// fences), so the nodes' clock seed cannot mask a missing write-back: without it, nodes 0 and 1 would
/// both hold clock-based values after their restarts and a read from them would go backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_write_back_survives_restarts() {
    let mut fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    let seed = now_us() + 1_000_000_000_000;
    for s in &fx.servers {
        node_cmd(s, &["SET", &fk("wb"), &seed.to_string()]).await;
    }
    let mut last = seed;
    for round in 0..4 {
        if round > 0 {
            restart(&mut fx, round - 1);
            assert_eq!(node_fence(&fx.servers[round - 1], "wb").await, 0);
        }
        let g = a
            .lock("wb")
            .ttl(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap();
        let f = g.fence().await.unwrap();
        assert!(f > last, "round {round}: fence {f} after {last}");
        last = f;
        g.release().await.unwrap();
        for (i, s) in fx.servers.iter().enumerate() {
            eventually(
                "fence written back to every node",
                Duration::from_secs(2),
                || async { node_fence(s, "wb").await >= f },
            )
            .await;
            assert!(node_fence(s, "wb").await >= f, "node {i}");
        }
    }
}

/// An acquisition is one round (no fence counter is touched); the fence is issued when the holder asks,
/// once (the answer is kept), from the nodes that still hold the lease, and written back to every node.
/// A holder whose lease a majority no longer holds gets no fence: it learns that the lock is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_is_issued_when_the_holder_asks() {
    let fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    let take = || a.lock("lazy").ttl(Duration::from_secs(5)).acquire();
    let g = take().await.unwrap();
    for s in &fx.servers {
        assert_eq!(node_fence(s, "lazy").await, 0, "no counter before asking");
    }
    let f = g.fence().await.unwrap();
    assert!(f > 0);
    assert_eq!(g.fence().await.unwrap(), f, "issued once");
    for s in &fx.servers {
        eventually(
            "fence written back to every node",
            Duration::from_secs(2),
            || async { node_fence(s, "lazy").await >= f },
        )
        .await;
    }
    g.release().await.unwrap();

    let g = take().await.unwrap();
    // Two of the three nodes lose the lease behind the holder's back.
    let mut before = Vec::new();
    for s in &fx.servers[..2] {
        node_cmd(s, &["DEL", &bk("lazy")]).await;
        before.push(node_fence(s, "lazy").await);
    }
    match g.fence().await {
        Err(LockError::Lost {
            reason: LostReason::NotOwner,
            ..
        }) => {}
        other => panic!("expected Lost(NotOwner), got {other:?}"),
    }
    assert!(!g.is_held());
    // Its leftover key on the third node is released.
    eventually("the leftover released", Duration::from_secs(2), || async {
        node_get(&fx.servers[2], &bk("lazy")).await.is_none()
    })
    .await;
    // The nodes that no longer hold it issued nothing for it.
    for (s, was) in fx.servers[..2].iter().zip(before) {
        assert_eq!(node_fence(s, "lazy").await, was);
    }
    drop(g);
    let g = take().await.unwrap();
    assert!(g.fence().await.unwrap() > f);
    g.release().await.unwrap();
}

/// 240 acquisitions while the nodes are restarted (data lost) in turn every 20 acquisitions: fences
/// strictly increase and never fall back to the nodes' clock values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_increase_across_many_restarts() {
    let mut fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    let seed = now_us() + 1_000_000_000_000;
    for s in &fx.servers {
        node_cmd(s, &["SET", &fk("many"), &seed.to_string()]).await;
    }
    let mut last = seed;
    let mut restarts = 0;
    for i in 0..240 {
        if i > 0 && i % 20 == 0 {
            restart(&mut fx, (i / 20) % 3);
            restarts += 1;
        }
        let g = loop {
            match a.lock("many").ttl(Duration::from_secs(5)).acquire().await {
                Ok(g) => break g,
                // The first command on a restarted node's dropped connection may fail; the other two
                // nodes are a majority, but a slow reconnect can cost one attempt.
                Err(e) if e.is_unavailable() => continue,
                Err(e) => {
                    let mut st = Vec::new();
                    for s in &fx.servers {
                        let v = node_get(s, &bk("many")).await;
                        let t = pttl(&mut raw(&s.url()).await, &bk("many")).await;
                        st.push((v, t));
                    }
                    panic!("{e} at {i}: {st:?}")
                }
            }
        };
        assert!(
            g.fence().await.unwrap() > last,
            "acquisition {i}: fence {} after {last}",
            g.fence().await.unwrap()
        );
        last = g.fence().await.unwrap();
        g.release().await.unwrap();
    }
    assert_eq!(restarts, 11);
}

// ---------------------------------------------------------------------------------------------------
// Contention details

/// Refusals that are other contenders' partial grants (nobody has a majority) are retried soon; a
/// majority holder's refusal carries its remaining TTL. Either way the partial grant is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_vote_and_partial_grants() {
    let fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    node_cmd(&fx.servers[0], &["SET", &bk("split"), "x", "PX", "10000"]).await;
    node_cmd(&fx.servers[1], &["SET", &bk("split"), "y", "PX", "10000"]).await;
    match a.lock("split").acquire().await {
        Err(LockError::Busy {
            remaining: Some(r), ..
        }) => assert!(
            r <= Duration::from_millis(50),
            "split vote: retry soon, got {r:?}"
        ),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(
        node_get(&fx.servers[2], &bk("split")).await,
        None,
        "partial grant kept"
    );
    node_cmd(&fx.servers[1], &["SET", &bk("split"), "x", "PX", "10000"]).await;
    match a.lock("split").acquire().await {
        Err(LockError::Busy {
            remaining: Some(r), ..
        }) => assert!(
            r > Duration::from_secs(9),
            "majority holder's TTL, got {r:?}"
        ),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(
        node_get(&fx.servers[2], &bk("split")).await,
        None,
        "partial grant kept"
    );
    // A waiter behind a split vote gets the lock as soon as the partial holders go away.
    node_cmd(&fx.servers[0], &["SET", &bk("split2"), "x", "PX", "300"]).await;
    node_cmd(&fx.servers[1], &["SET", &bk("split2"), "y", "PX", "300"]).await;
    let t0 = Instant::now();
    let g = a
        .lock("split2")
        .wait(Duration::from_secs(3))
        .acquire()
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    g.release().await.unwrap();
}

/// A node that answers after a refused attempt was decided gives its late grant back itself: nothing
/// else ever sends it a give-back (the caller only gives back grants it heard of), so without that
/// the key would block the node for the whole TTL (30 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_grant_of_a_refused_attempt_is_given_back() {
    let fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    node_cmd(&fx.servers[1], &["SET", &bk("late"), "x", "PX", "10000"]).await;
    node_cmd(&fx.servers[2], &["SET", &bk("late"), "x", "PX", "10000"]).await;
    // Stopped for less than the command timeout (300 ms), so the request is answered, late.
    fx.servers[0].pause();
    let e = a.lock("late").acquire().await.unwrap_err();
    fx.servers[0].resume();
    match e {
        LockError::Busy {
            remaining: Some(r), ..
        } => assert!(r > Duration::from_secs(9), "{r:?}"),
        other => panic!("expected Busy from the majority holder, got {other:?}"),
    }
    eventually(
        "the late grant on the stopped node is given back",
        Duration::from_secs(2),
        || async { node_get(&fx.servers[0], &bk("late")).await.is_none() },
    )
    .await;
}

/// An acquisition that takes longer than the lease's validity (slow links) is refused and given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_slow_acquire_is_refused_and_given_back() {
    let fx = RedlockFx::with_nodes(3);
    let proxies: Vec<FaultProxy> = fx
        .servers
        .iter()
        .map(|s| FaultProxy::start(s.addr()))
        .collect();
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    let a = LockClient::builder()
        .redlock_with(
            &urls,
            RedlockOptions::default().node_timeout(Duration::from_millis(250)),
        )
        .prefix("t")
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    for p in &proxies {
        p.set_delay(Duration::from_millis(20)); // >= 40 ms per round trip, 3 rounds per acquisition
    }
    let e = a
        .lock("slow")
        .ttl(Duration::from_millis(100))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("longer than the lease"), "{e}");
    for s in &fx.servers {
        eventually("given back", Duration::from_secs(2), || async {
            node_get(s, &bk("slow")).await.is_none()
        })
        .await;
    }
    // The same links are fine for a longer TTL.
    let g = a
        .lock("slow")
        .ttl(Duration::from_secs(2))
        .acquire()
        .await
        .unwrap();
    g.release().await.unwrap();
}

// ---------------------------------------------------------------------------------------------------
// Waiting across nodes

/// A release notice from any one node wakes a waiter (here: the keys vanish silently and only node 2
/// publishes), long before its fallback re-check at the holder's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_woken_by_a_notice_from_any_node() {
    let fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    fx.overwrite(&bk("w"), "other", Duration::from_secs(10))
        .await;
    let waiter = tokio::spawn(async move {
        let g = a.lock("w").wait(Duration::from_secs(5)).acquire().await;
        (
            Instant::now(),
            match g {
                Ok(g) => Ok(g.fence().await.unwrap()),
                Err(e) => Err(e),
            },
        )
    });
    for s in &fx.servers {
        eventually("waiter subscribed", Duration::from_secs(2), || async {
            subscribers(s, &channel("w")).await >= 1
        })
        .await;
    }
    fx.delete(&bk("w")).await;
    let published = Instant::now();
    node_cmd(&fx.servers[2], &["PUBLISH", &channel("w"), "1"]).await;
    let (got_at, fence) = waiter.await.unwrap();
    fence.expect("acquired");
    let handoff = got_at.saturating_duration_since(published);
    assert!(handoff < Duration::from_secs(2), "woken after {handoff:?}");
}

/// A node dies while a caller waits; the holder's release (on the surviving majority) still wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_woken_by_release_with_a_node_down() {
    let mut fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    let b = fx.client().await;
    let g = b
        .lock("w2")
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    // The holder's key on every node before anyone contends (a grant returns once a majority
    // granted): the two survivors of the kill below still hold it, and issue its fence.
    same_value_everywhere(&fx, "w2").await;
    let waiter = tokio::spawn(async move {
        let g = a.lock("w2").wait(Duration::from_secs(5)).acquire().await;
        (
            Instant::now(),
            match g {
                Ok(g) => Ok(g.fence().await.unwrap()),
                Err(e) => Err(e),
            },
        )
    });
    for s in &fx.servers {
        eventually("waiter subscribed", Duration::from_secs(2), || async {
            subscribers(s, &channel("w2")).await >= 1
        })
        .await;
    }
    kill(&mut fx, 0);
    let first = g.fence().await.unwrap();
    let released = Instant::now();
    g.release().await.unwrap();
    let (got_at, fence) = waiter.await.unwrap();
    assert!(fence.expect("acquired") > first);
    let handoff = got_at.saturating_duration_since(released);
    assert!(handoff < Duration::from_secs(2), "woken after {handoff:?}");
}

// ---------------------------------------------------------------------------------------------------
// Configuration

/// Bad node lists are refused with an error naming the fix; `.url` and `.redlock` together are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_fix() {
    let url = "redis://127.0.0.1:1".to_owned();
    let e = LockClient::connect_redlock(&[&url]).await.unwrap_err();
    assert!(matches!(e, LockError::InvalidOption(_)), "{e}");
    assert!(e.to_string().contains("single-node backend"), "{e}");
    let e = LockClient::builder()
        .redlock(&["redis://127.0.0.1:1", "redis://127.0.0.1:2"])
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("add a third node"), "{e}");
    let four: Vec<String> = (1..=4).map(|p| format!("redis://127.0.0.1:{p}")).collect();
    let e = LockClient::builder().redlock(&four).build().unwrap_err();
    assert!(e.to_string().contains("odd number"), "{e}");
    let three: Vec<String> = (1..=3).map(|p| format!("redis://127.0.0.1:{p}")).collect();
    let e = LockClient::builder()
        .url(url)
        .redlock(&three)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("both"), "{e}");
    // Built lazily: no node is contacted until the first lock.
    let c = LockClient::builder().redlock(&three).build().unwrap();
    assert!(c
        .backend()
        .describe()
        .starts_with("redlock[redis://127.0.0.1:1, "));
}

/// `LOCKATTR_REDIS_URL` with a comma-separated list builds a Redlock default client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_client_from_comma_separated_env() {
    let fx = RedlockFx::with_nodes(3);
    // The only test of this binary that touches the environment or the default client.
    std::env::set_var(lockattr_runtime::ENV_REDIS_URL, fx.urls().join(" , "));
    std::env::set_var(lockattr_runtime::ENV_PREFIX, "t");
    let c = lockattr_runtime::default_client().unwrap();
    assert!(c.backend().describe().starts_with("redlock["), "{c:?}");
    let g = c
        .lock("env")
        .ttl(Duration::from_secs(2))
        .acquire()
        .await
        .unwrap();
    let held = fx.values(&bk("env")).await.iter().flatten().count();
    assert!(held >= 2, "held on {held} of 3 nodes");
    g.release().await.unwrap();
}

/// A fence counter that holds another type, or a string that is not a number, on every node: the
/// holder's fence request reports it (a `WrongType` error naming the counter, without the script's
/// internal error code), never a fence, and the lease is not taken for lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_fence_counter_is_reported_not_used() {
    let fx = RedlockFx::with_nodes(3);
    let a = fx.client().await;
    for (key, bad) in [
        ("bad-type", ["HSET", "", "f", "1"]),
        ("bad-number", ["SET", "", "x", ""]),
    ] {
        let g = a
            .lock(key)
            .ttl(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap();
        // The counter goes bad after the grant (one bad at the grant already fails the acquire).
        for s in &fx.servers {
            let mut args: Vec<String> = bad.iter().map(|a| a.to_string()).collect();
            args[1] = fk(key);
            args.retain(|a| !a.is_empty());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node_cmd(s, &args).await;
        }
        match g.fence().await {
            Err(e @ LockError::WrongType { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("fence counter {}", fk(key))),
                    "{key}: {text}"
                );
                assert!(!text.contains("LOCKATTR_WRONGTYPE"), "{key}: {text}");
            }
            other => panic!("{key}: expected WrongType, got {other:?}"),
        }
        assert!(g.is_held(), "{key}: the lease itself is fine");
        g.release().await.unwrap();
    }
}
