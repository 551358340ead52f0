//! The Sentinel backend against a real Sentinel group on loopback (a primary, a replica, 3 Sentinels):
//! locks, renewal, notices and hand-over on the primary; the primary killed (the replica is promoted,
//! the client follows it, fences never go backwards, also for a grant the replica never received); the
//! attribute; `wait_for_replicas` with a stopped replica.

use std::time::Duration;

use lockattr_runtime::backend::sentinel::SentinelOptions;
use lockattr_runtime::testing::RedisSentinels;
use lockattr_runtime::{distributed_lock, LockClient, LockError, LostReason};
use tokio::task::block_in_place;
use tokio::time::Instant;

async fn sentinel_client(group: &RedisSentinels, opts: SentinelOptions) -> LockClient {
    LockClient::builder()
        .sentinel_with(&group.sentinel_urls(), RedisSentinels::MASTER, opts)
        .prefix("t")
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("connect through the Sentinels")
}

async fn exists_on(group: &RedisSentinels, i: usize, key: &str) -> bool {
    let client = redis::Client::open(group.server(i).url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("server connection");
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    n == 1
}

#[distributed_lock(key = "attr:{id}", ttl = "2s", auto_renew, client = locks)]
async fn fenced_write(locks: &LockClient, id: u64, hold_ms: u64) -> Result<u64, LockError> {
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    Ok(lockattr_runtime::current_fence()
        .await
        .expect("fence inside the lock"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_follow_the_primary_through_a_failover() {
    let started = Instant::now();
    let mut group = block_in_place(RedisSentinels::spawn);
    eprintln!("sentinel group ready after {:?}", started.elapsed());
    let client = sentinel_client(&group, SentinelOptions::default()).await;
    let other = sentinel_client(&group, SentinelOptions::default()).await;
    assert!(
        client
            .backend()
            .describe()
            .contains(&group.server(0).port().to_string()),
        "{}",
        client.backend().describe()
    );

    // Renewal through 3x the TTL, contention, release.
    let g = client
        .lock("renewed")
        .ttl(Duration::from_millis(600))
        .auto_renew(true)
        .acquire()
        .await
        .expect("acquire");
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(g.is_held());
    assert!(exists_on(&group, 0, "t:{renewed}").await);
    assert!(other
        .lock("renewed")
        .acquire()
        .await
        .expect_err("busy")
        .is_contention());
    g.release().await.expect("release");
    assert!(!exists_on(&group, 0, "t:{renewed}").await);

    // Hand-over on the primary: a waiter of the same client queued behind the holder gets the lock
    // straight from its release, so of the two releases only the waiter's deletes the key.
    let deletes = |group: &RedisSentinels| {
        let stats = group.server(0).cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_del:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u64>().expect("a count"))
    };
    let holder = client.lock("handed").acquire().await.expect("acquire");
    let holder_fence = holder.fence().await.unwrap();
    let next = {
        let client = client.clone();
        tokio::spawn(async move {
            let g = client
                .lock("handed")
                .wait(Duration::from_secs(10))
                .acquire()
                .await?;
            let fence = g.fence().await?;
            g.release().await?;
            Ok::<_, LockError>(fence)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dels = block_in_place(|| deletes(&group));
    holder.release().await.expect("release");
    let next_fence = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("handed over within 5 s")
        .unwrap()
        .expect("the waiter's lock");
    assert!(next_fence > holder_fence);
    assert_eq!(
        block_in_place(|| deletes(&group)),
        dels + 1,
        "one DEL: handed over"
    );

    // Fences before the failover.
    let keys = ["a", "b", "c"];
    let mut before = Vec::new();
    for k in keys {
        let g = client.lock(k).acquire().await.expect("acquire");
        before.push(g.fence().await.unwrap());
        g.release().await.expect("release");
    }

    // The replica misses a grant: stop it and cut its link, grant, kill the primary, resume it.
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .lock("waited")
                .ttl(Duration::from_secs(2))
                .wait(Duration::from_secs(15))
                .acquire()
                .await
        })
    };
    block_in_place(|| {
        group.server(1).pause();
        let killed = group.server(0).cli(&["CLIENT", "KILL", "TYPE", "replica"]);
        assert_eq!(killed, "1", "the replication link is cut");
    });
    let stale = client
        .lock("k")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("grant the replica never sees");
    let stale_fence = stale.fence().await.expect("a fence the replica never sees");
    block_in_place(|| {
        group.kill(0);
        group.server(1).resume();
    });
    let killed_at = Instant::now();

    // The client follows the new primary; the promoted replica grants `k` again, with a higher fence.
    let regranted = other
        .lock("k")
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
    let regranted_fence = regranted.fence().await.unwrap();
    assert!(
        regranted_fence > stale_fence,
        "fence went backwards across the failover: {regranted_fence} after {stale_fence}"
    );
    block_in_place(|| group.wait_for_primary(1));
    assert!(
        other
            .backend()
            .describe()
            .contains(&group.server(1).port().to_string()),
        "{}",
        other.backend().describe()
    );
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

    // A waiter that started before the failover gets its lock from the new primary.
    let w = waiter
        .await
        .expect("waiter task")
        .expect("waiter gets the lock");
    w.release().await.expect("release");

    for (k, f) in keys.iter().zip(before) {
        let g = client
            .lock(*k)
            .wait(Duration::from_secs(5))
            .acquire()
            .await
            .expect("acquire after the failover");
        assert!(
            g.fence().await.unwrap() > f,
            "{k}: fence {} after {f}",
            g.fence().await.unwrap()
        );
        g.release().await.expect("release");
    }

    // The attribute on the new primary.
    let f1 = fenced_write(&client, 1, 0).await.expect("call");
    let f2 = fenced_write(&client, 1, 0).await.expect("call");
    assert!(f2 > f1);
    eprintln!("sentinel failover recovery took {recovery:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_notices_and_wait_for_replicas() {
    let group = block_in_place(RedisSentinels::spawn);
    let client = sentinel_client(
        &group,
        SentinelOptions::default().wait_for_replicas(1, Duration::from_millis(200)),
    )
    .await;
    let plain = sentinel_client(&group, SentinelOptions::default()).await;

    // The attribute, unchanged: fences increase, a concurrent call is refused.
    let f1 = fenced_write(&client, 7, 0).await.expect("first call");
    let f2 = fenced_write(&client, 7, 0).await.expect("second call");
    assert!(f2 > f1, "{f1} then {f2}");
    let (a, b) = tokio::join!(fenced_write(&client, 8, 400), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fenced_write(&plain, 8, 0).await
    });
    a.expect("holder finishes");
    assert!(b.expect_err("refused").is_contention());

    // A waiter is woken by the release notice, long before the 10 s TTL.
    let held = plain
        .lock("notify")
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .expect("acquire");
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .lock("notify")
                .wait(Duration::from_secs(8))
                .acquire()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released_at = Instant::now();
    held.release().await.expect("release");
    let g = waiter.await.expect("task").expect("waiter gets the lock");
    assert!(
        released_at.elapsed() < Duration::from_millis(1000),
        "{:?}",
        released_at.elapsed()
    );
    g.release().await.expect("release");

    // The replica stops acknowledging: the grant is given back and the acquire fails clearly.
    block_in_place(|| group.server(1).pause());
    let started = Instant::now();
    let err = client
        .lock("synced")
        .acquire()
        .await
        .expect_err("no replica acknowledges");
    let text = err.to_string();
    assert!(err.is_unavailable(), "{text}");
    assert!(text.contains("0 of 1 replica"), "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(!exists_on(&group, 0, "t:{synced}").await, "released again");
    block_in_place(|| group.server(1).resume());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.lock("synced").acquire().await {
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
