//! Lock semantics, run on a real redis-server and on the memory backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockattr_runtime::{LockError, LostReason, OnLost};
use lockattr_tests::{on_all_backends, Fixture};
use tokio::time::Instant;

const T: &str = "t:{";

fn bk(key: &str) -> String {
    format!("{T}{key}}}")
}

/// Many tasks, one key: the holder count never exceeds one and fences strictly increase in grant order.
async fn mutual_exclusion_among_tasks<F: Fixture>(fx: F) {
    lockattr_tests::contend_on_one_key(&fx, "shared", 8, 10).await;
}

/// A body running 3x the TTL keeps the lock with auto-renew, while others are refused.
async fn auto_renew_outlives_ttl<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let b = fx.client().await;
    let ttl = Duration::from_millis(300);
    let key = "renewed";
    let body = async {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let err = b
                .lock(key)
                .ttl(ttl)
                .acquire()
                .await
                .expect_err("the holder still has it");
            assert!(matches!(err, LockError::Busy { .. }), "{err}");
            assert!(lockattr_runtime::current_lock().unwrap().is_held());
        }
        "done"
    };
    let out = a
        .lock(key)
        .ttl(ttl)
        .auto_renew(true)
        .run(body)
        .await
        .expect("kept through 3x ttl");
    assert_eq!(out, "done");
    assert_eq!(fx.value(&bk(key)).await, None);
    assert_eq!(a.tracked_leases(), 0);
}

/// Without auto-renew the lease ends at the TTL and the holder is told (body cancelled).
async fn without_renew_lease_ends_at_ttl<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let ttl = Duration::from_millis(300);
    let started = Instant::now();
    let reached_end = Arc::new(AtomicUsize::new(0));
    let r2 = reached_end.clone();
    let err = a
        .lock("short")
        .ttl(ttl)
        .run(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            r2.store(1, Ordering::SeqCst);
        })
        .await
        .expect_err("lease ends before the body");
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            LockError::Lost {
                reason: LostReason::TtlElapsed,
                cancelled: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        took < ttl,
        "told at {took:?}, after the ttl: the key may already be someone else's"
    );
    assert!(took > ttl / 2, "told too early: {took:?}");
    assert_eq!(reached_end.load(Ordering::SeqCst), 0, "body not cancelled");
    // The guard's view agrees, and the key is gone soon after the TTL.
    let g = a.lock("short2").ttl(ttl).acquire().await.unwrap();
    assert_eq!(g.lost().await, LostReason::TtlElapsed);
    assert!(!g.is_held());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fx.value(&bk("short2")).await, None);
}

/// The key is overwritten behind the holder's back: the renewal must not extend the stranger's key, and
/// the holder is told and cancelled within ttl/3 plus margin.
async fn renewal_never_extends_a_foreign_lock<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let ttl = Duration::from_millis(600);
    let key = "stolen";
    let g = a
        .lock(key)
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    fx.overwrite(&bk(key), "stranger", Duration::from_millis(1500))
        .await;
    let t0 = Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(3), g.lost())
        .await
        .expect("holder told");
    assert_eq!(reason, LostReason::NotOwner);
    assert!(
        t0.elapsed() < ttl / 3 + Duration::from_millis(150),
        "told after {:?}",
        t0.elapsed()
    );
    assert_eq!(fx.value(&bk(key)).await.as_deref(), Some("stranger"));
    // Let several renewal periods pass: the stranger's TTL keeps falling, never reset to ours.
    tokio::time::sleep(ttl).await;
    let left = fx
        .remaining_ms(&bk(key))
        .await
        .expect("stranger's key still there");
    assert!(
        left <= 1500 - 600,
        "stranger's key was extended: {left} ms left"
    );
    // Releasing the lost guard reports the loss and leaves the stranger's key alone.
    let err = g.release().await.unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert_eq!(fx.value(&bk(key)).await.as_deref(), Some("stranger"));
}

/// A lock that expired and was taken by someone else is never deleted by the first holder's release.
async fn release_never_deletes_a_foreign_lock<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let b = fx.client().await;
    let key = "expired";
    let ga = a
        .lock(key)
        .ttl(Duration::from_millis(150))
        .acquire()
        .await
        .unwrap();
    let fa = ga.fence().await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let gb = b
        .lock(key)
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .expect("free after expiry");
    assert!(gb.fence().await.unwrap() > fa);
    let err = ga.release().await.unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert!(fx.value(&bk(key)).await.is_some(), "b's lock deleted by a");
    assert!(gb.is_held());
    gb.release().await.unwrap();
    assert_eq!(fx.value(&bk(key)).await, None);
}

/// The key is deleted behind the holder's back: body cancelled, `Lost` within ttl/3 + margin.
async fn deleted_key_cancels_body<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let ttl = Duration::from_millis(600);
    let key = "deleted";
    let fx = Arc::new(fx);
    let fx2 = fx.clone();
    let t_delete = Arc::new(std::sync::Mutex::new(None));
    let td = t_delete.clone();
    let finished = Arc::new(AtomicUsize::new(0));
    let f2 = finished.clone();
    let err = a
        .lock(key)
        .ttl(ttl)
        .auto_renew(true)
        .run(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fx2.delete(&bk(key)).await;
            *td.lock().unwrap() = Some(Instant::now());
            tokio::time::sleep(Duration::from_secs(5)).await;
            f2.store(1, Ordering::SeqCst);
        })
        .await
        .expect_err("lost");
    let detected = t_delete.lock().unwrap().expect("deleted").elapsed();
    assert!(
        matches!(
            err,
            LockError::Lost {
                reason: LostReason::NotOwner,
                cancelled: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        detected < ttl / 3 + Duration::from_millis(150),
        "detected after {detected:?}"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    assert!(err.to_string().contains("deleted"), "{err}");
}

/// Release on return, on error, on panic and on drop; after drop nothing is renewed.
async fn release_on_every_exit_path<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let ttl = Duration::from_millis(300);
    // Return.
    a.lock("ret")
        .ttl(ttl)
        .auto_renew(true)
        .run(async {})
        .await
        .unwrap();
    assert_eq!(fx.value(&bk("ret")).await, None);
    // Error.
    let r: Result<(), std::io::Error> = a
        .lock("err")
        .ttl(ttl)
        .auto_renew(true)
        .run_result(async { Err(std::io::Error::other("boom")) })
        .await;
    assert_eq!(r.unwrap_err().to_string(), "boom");
    assert_eq!(fx.value(&bk("err")).await, None);
    // Panic (in a task, so the test survives it).
    let a2 = a.clone();
    let joined = tokio::spawn(async move {
        a2.lock("panic")
            .ttl(ttl)
            .auto_renew(true)
            .run(async { panic!("body panicked") })
            .await
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    wait_until_absent(&fx, &bk("panic")).await;
    // Dropped future (cancelled by a timeout).
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        a.lock("drop")
            .ttl(ttl)
            .auto_renew(true)
            .run(tokio::time::sleep(Duration::from_secs(10))),
    )
    .await;
    assert!(dropped.is_err());
    wait_until_absent(&fx, &bk("drop")).await;
    assert_eq!(
        a.tracked_leases(),
        0,
        "watchdog still tracks a dropped lease"
    );
    // Nothing resurrects or renews it later.
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(fx.value(&bk("drop")).await, None);
    assert_eq!(a.tracked_leases(), 0);
}

async fn wait_until_absent<F: Fixture>(fx: &F, k: &str) {
    let start = Instant::now();
    while fx.value(k).await.is_some() {
        assert!(start.elapsed() < Duration::from_secs(2), "{k} not released");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Fences strictly increase over 1,000 acquisitions.
async fn fences_strictly_increase<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let mut last = 0;
    for _ in 0..1000 {
        let g = a
            .lock("fenced")
            .ttl(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap();
        assert!(
            g.fence().await.unwrap() > last,
            "fence {} after {}",
            g.fence().await.unwrap(),
            last
        );
        last = g.fence().await.unwrap();
        g.release().await.unwrap();
    }
}

/// No wait: Busy at once with the remaining TTL. Wait: woken by the release. Timeout at the deadline.
async fn busy_wait_timeout<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let b = fx.client().await;
    let g = a
        .lock("w")
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    let t0 = Instant::now();
    match b.lock("w").acquire().await {
        Err(LockError::Busy {
            remaining: Some(r),
            key,
        }) => {
            assert_eq!(key, "w");
            assert!(
                r > Duration::from_secs(8) && r <= Duration::from_secs(10),
                "{r:?}"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_millis(200));
    // Timeout.
    let t0 = Instant::now();
    let err = b
        .lock("w")
        .wait(Duration::from_millis(300))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Timeout { .. }), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(300) && t0.elapsed() < Duration::from_secs(2));
    // Woken by the release, long before the holder's 10 s TTL would end.
    let waiter = tokio::spawn(async move {
        let g = b
            .lock("w")
            .wait(Duration::from_secs(8))
            .acquire()
            .await
            .unwrap();
        (Instant::now(), g.fence().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first_fence = g.fence().await.unwrap();
    let released_at = Instant::now();
    g.release().await.unwrap();
    let (got_at, fence) = waiter.await.unwrap();
    assert!(fence > first_fence);
    let handoff = got_at.saturating_duration_since(released_at);
    assert!(
        handoff < Duration::from_secs(2),
        "hand-off took {handoff:?}: the release notice was not used"
    );
}

/// A holder that never publishes a release (its key just expires) still lets waiters in: a missed notice
/// costs latency, never liveness.
async fn waiter_rechecks_without_notice<F: Fixture>(fx: F) {
    let a = fx.client().await;
    fx.overwrite(&bk("silent"), "someone-else", Duration::from_millis(300))
        .await;
    let t0 = Instant::now();
    let g = a
        .lock("silent")
        .wait(Duration::from_secs(3))
        .acquire()
        .await
        .expect("acquired after expiry");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(1),
        "{took:?}"
    );
    g.release().await.unwrap();
}

/// Nested acquire of the same key in the same task does not deadlock; released when the outermost ends.
async fn reentrancy<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let b = fx.client().await;
    let fx = &fx;
    let out = a
        .lock("re")
        .ttl(Duration::from_secs(5))
        .run(async {
            let outer = lockattr_runtime::current_fence().await.unwrap();
            let inner = a
                .lock("re")
                .ttl(Duration::from_secs(5))
                .run(async { lockattr_runtime::current_fence().await.unwrap() })
                .await
                .expect("reentrant acquire");
            assert_eq!(inner, outer, "the nested call shares the outer lease");
            assert!(
                fx.value(&bk("re")).await.is_some(),
                "inner end released the outer lock"
            );
            // A different client (another owner) is still refused.
            assert!(b.lock("re").acquire().await.unwrap_err().is_contention());
            // Guard API nests too.
            let g = a.lock("re").acquire().await.unwrap();
            assert!(g.is_reentrant());
            g.release().await.unwrap();
            assert!(fx.value(&bk("re")).await.is_some());
            7
        })
        .await
        .unwrap();
    assert_eq!(out, 7);
    assert_eq!(fx.value(&bk("re")).await, None);
    // Another task does not re-enter: it is refused.
    let g = a
        .lock("re2")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    let a2 = a.clone();
    let other_task = tokio::spawn(async move { a2.lock("re2").acquire().await.map(|_| ()) })
        .await
        .unwrap();
    assert!(other_task.unwrap_err().is_contention());
    drop(g);
}

/// `on_lost = Finish` lets the body complete and reports the loss; min_hold keeps the key afterwards.
async fn finish_policy_and_min_hold<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let finished = Arc::new(AtomicUsize::new(0));
    let f2 = finished.clone();
    let err = a
        .lock("fin")
        .ttl(Duration::from_millis(200))
        .on_lost(OnLost::Finish)
        .run(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            f2.store(1, Ordering::SeqCst);
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Lost {
                cancelled: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    // min_hold: a quick body, yet the key stays for the minimum hold time.
    a.lock("job")
        .ttl(Duration::from_secs(5))
        .min_hold(Duration::from_millis(800))
        .run(async {})
        .await
        .unwrap();
    let left = fx
        .remaining_ms(&bk("job"))
        .await
        .expect("kept for min_hold");
    assert!(left > 500 && left <= 800, "{left}");
    assert!(a.lock("job").acquire().await.unwrap_err().is_contention());
    tokio::time::sleep(Duration::from_millis(900)).await;
    a.lock("job").acquire().await.expect("free after min_hold");
}

/// Bad input is refused with an error naming the fix; nothing panics.
async fn bad_input<F: Fixture>(fx: F) {
    let a = fx.client().await;
    let e = a.lock("").acquire().await.unwrap_err();
    assert!(
        matches!(e, LockError::InvalidKey { .. }) && e.to_string().contains("empty"),
        "{e}"
    );
    let e = a.lock("k".repeat(5000)).acquire().await.unwrap_err();
    assert!(e.to_string().contains("4096"), "{e}");
    let e = a.lock("k").ttl(Duration::ZERO).acquire().await.unwrap_err();
    assert!(
        e.to_string().contains("ttl") && e.to_string().contains("100ms"),
        "{e}"
    );
    let e = a
        .lock("k")
        .ttl(Duration::from_secs(365 * 24 * 3600))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::InvalidOption(_)), "{e}");
    let e = a
        .lock("k")
        .wait(Duration::from_secs(3 * 24 * 3600))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::InvalidOption(_)), "{e}");
    // Unicode, binary-looking and long (but legal) keys work.
    for key in [
        "ünïcødé:🔒",
        "bytes:\u{fffd}\u{1}x".replace('\u{1}', "").as_str(),
        &"x".repeat(4096),
    ] {
        let g = a
            .lock(key)
            .ttl(Duration::from_secs(1))
            .acquire()
            .await
            .unwrap();
        g.release().await.unwrap();
    }
}

on_all_backends!(
    mutual_exclusion_among_tasks,
    auto_renew_outlives_ttl,
    without_renew_lease_ends_at_ttl,
    renewal_never_extends_a_foreign_lock,
    release_never_deletes_a_foreign_lock,
    deleted_key_cancels_body,
    release_on_every_exit_path,
    fences_strictly_increase,
    busy_wait_timeout,
    waiter_rechecks_without_notice,
    reentrancy,
    finish_policy_and_min_hold,
    bad_input,
);
