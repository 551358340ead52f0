//! Release notices on the single-node backend: a release publishes a notice only when someone waits
//! (a busy acquire marked the lock, or a waiter of the releasing client watches the channel), so an
//! uncontended acquire + release costs no `PUBLISH`; and every kind of waiter is still woken by the
//! notice, long before its fallback re-check at the holder's TTL.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lockattr_runtime::LockClient;
use lockattr_tests::{calls, client, cmd, get, hand_over, raw, spawn_waiter, RedisServer};
use tokio::time::Instant;

/// Uncontended acquires and releases, one at a time and many at once (coalesced), publish nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncontended_releases_publish_nothing() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    cmd(&mut conn, &["CONFIG", "RESETSTAT"]).await;
    for i in 0..20 {
        let g = a.lock(format!("serial:{i}")).acquire().await.unwrap();
        g.release().await.unwrap();
    }
    let tasks = (0..64).map(|i| {
        let a = a.clone();
        tokio::spawn(async move {
            for round in 0..5 {
                let g = a.lock(format!("many:{i}")).acquire().await.unwrap();
                assert!(g.fence().await.unwrap() > 0, "round {round}");
                g.release().await.unwrap();
            }
        })
    });
    for t in join_all(tasks).await {
        t.unwrap();
    }
    assert_eq!(calls(&mut conn, "publish").await, 0);
    assert_eq!(calls(&mut conn, "append").await, 0);
    // Every lock was really taken and deleted.
    assert_eq!(calls(&mut conn, "del").await, 20 + 64 * 5);
}

/// A waiter of another client marks the holder's value; the release then publishes, the waiter gets
/// the lock at once, and the holder's renewals and release still recognise its (marked) lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_marks_the_lock_and_is_woken_by_the_release() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let b = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    let ttl = Duration::from_millis(900);
    let g = a
        .lock("job")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    let token = get(&mut conn, "t:{job}").await.expect("held");
    assert_eq!(token.len(), 32);

    // A waiter that gives up still leaves the mark (it was busy, so someone waited).
    let err = b
        .lock("job")
        .wait(Duration::from_millis(50))
        .acquire()
        .await
        .unwrap_err();
    assert!(err.is_contention(), "{err}");
    assert_eq!(
        get(&mut conn, "t:{job}").await.as_deref(),
        Some(format!("{token}*").as_str())
    );
    // Renewals (every ttl/3) keep the marked lock for several TTLs.
    tokio::time::sleep(ttl * 2).await;
    assert!(g.is_held());
    assert_eq!(
        get(&mut conn, "t:{job}").await.as_deref(),
        Some(format!("{token}*").as_str()),
        "marked once, not again"
    );

    // Now a real waiter; its hand-off comes from the notice, not from the re-check at the TTL.
    let waiter = spawn_waiter(&b, "job");
    tokio::time::sleep(Duration::from_millis(200)).await;
    cmd(&mut conn, &["CONFIG", "RESETSTAT"]).await;
    let handoff = hand_over(g, waiter).await;
    // Generous bound: the fallback re-check would come about a TTL (900 ms) after the last attempt.
    assert!(handoff < Duration::from_millis(600), "hand-off {handoff:?}");
    assert!(calls(&mut conn, "publish").await >= 1);
}

/// Tasks of one client that queue behind each other (without asking Redis) are woken by the notice
/// that the releasing client forces, on every hand-off: many hand-offs finish far faster than one
/// fallback re-check per hand-off (the TTL is 10 s) would allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_waiters_are_woken_without_a_mark() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let holds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let tasks = (0..4).map(|_| {
        let (a, holds) = (a.clone(), holds.clone());
        tokio::spawn(async move { take_turns(&a, &holds, 5).await })
    });
    for t in join_all(tasks).await {
        t.unwrap();
    }
    assert_eq!(holds.load(std::sync::atomic::Ordering::SeqCst), 20);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(8), "20 hand-offs took {took:?}");
}

async fn take_turns(a: &LockClient, holds: &std::sync::atomic::AtomicUsize, n: usize) {
    for _ in 0..n {
        let g = a
            .lock("turns")
            .ttl(Duration::from_secs(10))
            .wait(Duration::from_secs(60))
            .acquire()
            .await
            .unwrap();
        holds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        g.release().await.unwrap();
    }
}

/// Under load, queued acquires of locks that no local waiter watches go out as plain `SET NX PX`s,
/// pipelined beside the coalesced script call. One that finds its lock busy goes again through the
/// script in the same send: it reports how long the lock stays busy and marks it, so the holder's
/// release publishes a notice. The free locks are granted, and their fences are issued on request,
/// still strictly above every fence issued before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_plain_acquires_fall_back_to_the_script_when_busy() {
    use lockattr_runtime::backend::redis::{RedisBackend, RedisOptions};
    use lockattr_runtime::LockError;

    let server = RedisServer::spawn();
    let backend = Arc::new(
        RedisBackend::open(&server.url(), RedisOptions::default())
            .await
            .unwrap(),
    );
    let a = LockClient::builder()
        .backend(backend.clone())
        .prefix("t")
        .connect()
        .await
        .unwrap();
    let b = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    // Another client holds every fourth key; its fence bounds every later one.
    let ttl = Duration::from_secs(20);
    let mut held = Vec::new();
    for i in (0..128).step_by(4) {
        held.push(b.lock(format!("k:{i}")).ttl(ttl).acquire().await.unwrap());
    }
    let first_fence = held[0].fence().await.unwrap();
    let plain0 = backend.stats().plain_acquires;
    let tasks = (0..128).map(|i| {
        let a = a.clone();
        tokio::spawn(async move {
            match a.lock(format!("k:{i}")).acquire().await {
                Ok(g) => {
                    let fence = g.fence().await.unwrap();
                    g.release().await.unwrap();
                    Ok(fence)
                }
                Err(e) => Err((i, e)),
            }
        })
    });
    let mut fences = Vec::new();
    let mut busy = Vec::new();
    for (i, t) in join_all(tasks).await.into_iter().enumerate() {
        match t.unwrap() {
            Ok(fence) => {
                assert_ne!(i % 4, 0, "k:{i} is held by the other client");
                fences.push(fence);
            }
            Err((i, LockError::Busy { remaining, .. })) => {
                assert_eq!(i % 4, 0, "k:{i} was free");
                // The script answered (a plain SET would not know the holder's TTL).
                let remaining = remaining.expect("the script reports the holder's TTL");
                assert!(remaining <= ttl && remaining > ttl / 2, "{remaining:?}");
                busy.push(i);
            }
            Err((i, e)) => panic!("k:{i}: {e}"),
        }
    }
    assert_eq!((fences.len(), busy.len()), (96, 32));
    assert!(fences.iter().all(|&f| f > first_fence));
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 96, "fences are unique");
    // Every acquire went out first as a plain SET (idle, in a free slot, or pipelined in a batch).
    assert_eq!(backend.stats().plain_acquires - plain0, 128);
    // The busy ones were marked by the script, so their holder's release tells the waiters.
    for i in busy {
        let v = get(&mut conn, &format!("t:{{k:{i}}}"))
            .await
            .expect("still held");
        assert!(v.ends_with('*'), "k:{i} not marked: {v}");
    }
    cmd(&mut conn, &["CONFIG", "RESETSTAT"]).await;
    for g in held {
        g.release().await.unwrap();
    }
    assert_eq!(calls(&mut conn, "publish").await, 32);
}
