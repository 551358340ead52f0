//! Hand-over on the single-node backend: a lease that is released while tasks of the same client wait
//! for the lock gives it straight to the longest waiter, in one script call (no release notice, no
//! acquire), unless someone else marked the lock; and neither side leaving mid-way strands the lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockattr_runtime::backend::redis::{RedisBackend, RedisOptions};
use lockattr_runtime::{LockClient, LockError};
use lockattr_tests::{calls, client, cmd, get, raw, waiter, FaultProxy, RedisServer};
use tokio::time::Instant;

/// A client on `url` and its backend (for its counters), with the tests' prefix and a 2 s timeout.
async fn client_with_stats(url: &str) -> (LockClient, Arc<RedisBackend>) {
    let opts = RedisOptions {
        command_timeout: Duration::from_secs(2),
    };
    let backend = Arc::new(RedisBackend::open(url, opts).await.expect("open"));
    let client = LockClient::builder()
        .backend(backend.clone())
        .prefix("t")
        .connect()
        .await
        .expect("connect");
    (client, backend)
}

/// Take `k` through `client` with a 30 s TTL (longer than any test: only a release frees it).
async fn hold(client: &LockClient) -> lockattr_runtime::LockGuard {
    client
        .lock("k")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("k is free")
}

/// Join `task` within 10 s.
async fn join<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("finished within 10 s")
        .expect("the task")
}

/// Two local waiters queue behind a local holder; each release hands the lock to the longest waiter:
/// first come, first served, one script call per hand-off, no notice, no mark, and fences still
/// strictly increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_hands_the_lock_to_the_longest_local_waiter() {
    let server = RedisServer::spawn();
    let (a, backend) = client_with_stats(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    let holder = hold(&a).await;
    let first_fence = holder.fence().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let w1 = waiter(&a, "k", 1, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let w2 = waiter(&a, "k", 2, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    cmd(&mut conn, &["CONFIG", "RESETSTAT"]).await;
    let before = backend.stats();

    holder.release().await.unwrap();
    let f1 = join(w1).await.unwrap();
    let f2 = join(w2).await.unwrap();

    assert_eq!(*order.lock().unwrap(), vec![1, 2]);
    assert!(
        first_fence < f1 && f1 < f2,
        "fences {first_fence}, {f1}, {f2}"
    );
    assert_eq!(backend.stats().hand_overs - before.hand_overs, 2);
    assert_eq!(
        backend.stats().plain_acquires,
        before.plain_acquires,
        "no waiter asked for the lock itself"
    );
    // The waiters queued behind a holder of their own client: nobody marked the lock, so nothing
    // was published; the last release deleted it.
    assert_eq!(calls(&mut conn, "append").await, 0);
    assert_eq!(calls(&mut conn, "publish").await, 0);
    assert_eq!(calls(&mut conn, "del").await, 1);
    assert_eq!(get(&mut conn, "t:{k}").await, None);
}

/// A waiter of another client marked the lock: the release is not handed over to the local waiter
/// but published, so the other client gets its turn too; both get the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_marked_elsewhere_is_released_with_a_notice() {
    let server = RedisServer::spawn();
    let (a, backend) = client_with_stats(&server.url()).await;
    let b = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    let holder = hold(&a).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let local = waiter(&a, "k", 1, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let remote = waiter(&b, "k", 2, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let value = get(&mut conn, "t:{k}").await.expect("held");
    assert!(value.ends_with('*'), "the remote waiter marks the lock");
    cmd(&mut conn, &["CONFIG", "RESETSTAT"]).await;
    let before = backend.stats();

    let t0 = Instant::now();
    holder.release().await.unwrap();
    join(local).await.unwrap();
    join(remote).await.unwrap();

    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "both got the lock long before any fallback (30 s TTL): {:?}",
        t0.elapsed()
    );
    assert_eq!(
        backend.stats().hand_overs,
        before.hand_overs,
        "the marked lock was not handed over"
    );
    assert!(calls(&mut conn, "publish").await >= 1);
    let mut order = order.lock().unwrap().clone();
    order.sort_unstable();
    assert_eq!(order, vec![1, 2]);
}

/// A waiter that left (its future was dropped) leaves the queue: the release goes to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_left_is_passed_by() {
    let server = RedisServer::spawn();
    let (a, backend) = client_with_stats(&server.url()).await;
    let holder = hold(&a).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let quitter = waiter(&a, "k", 1, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stayer = waiter(&a, "k", 2, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(50)).await;
    quitter.abort();
    assert!(quitter.await.unwrap_err().is_cancelled());
    let before = backend.stats();
    let t0 = Instant::now();
    holder.release().await.unwrap();
    join(stayer).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(*order.lock().unwrap(), vec![2]);
    assert_eq!(backend.stats().hand_overs - before.hand_overs, 1);
}

/// The waiter is cancelled while the hand-over is on its way (a slow link): the releaser learns that
/// nobody took the lock and gives it back, so a third client gets it at once instead of after the
/// 30 s TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_cancelled_mid_hand_over_does_not_strand_the_lock() {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(server.addr());
    let (a, backend) = client_with_stats(&proxy.url()).await;
    let c = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    let holder = hold(&a).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let w = waiter(&a, "k", 1, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.set_delay(Duration::from_millis(100));
    let before = backend.stats();
    let release = tokio::spawn(async move { holder.release().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    w.abort();
    assert!(w.await.unwrap_err().is_cancelled());
    join(release).await.unwrap();
    assert_eq!(backend.stats().hand_overs - before.hand_overs, 1);
    assert_eq!(
        get(&mut conn, "t:{k}").await,
        None,
        "the releaser gave back the lock nobody took"
    );
    let g = c
        .lock("k")
        .wait(Duration::from_secs(2))
        .acquire()
        .await
        .expect("free again");
    g.release().await.unwrap();
    assert!(order.lock().unwrap().is_empty());
}

/// The releaser is cancelled while the hand-over is on its way: the waiter cannot know whether the lock
/// holds its token, gives back whatever it may hold, and takes the lock itself, long before the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_releaser_cancelled_mid_hand_over_does_not_strand_the_waiter() {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(server.addr());
    let (a, backend) = client_with_stats(&proxy.url()).await;
    // One hand-over first, so the server has the script: the cut-off one is then a single request,
    // which the server runs once it has left the client.
    let first = a.lock("k").acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let w0 = waiter(&a, "k", 0, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.release().await.unwrap();
    join(w0).await.unwrap();
    assert_eq!(backend.stats().hand_overs, 1);
    order.lock().unwrap().clear();
    let holder = hold(&a).await;
    let w = waiter(&a, "k", 1, Duration::from_secs(20), &order);
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.set_delay(Duration::from_millis(100));
    let t0 = Instant::now();
    let cut = tokio::time::timeout(Duration::from_millis(50), holder.release()).await;
    assert!(cut.is_err(), "the release was cut off mid-way");
    join(w).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(*order.lock().unwrap(), vec![1]);
    // The hand-over ran on the server (the request had left), but its answer was never read.
    assert_eq!(backend.stats().hand_overs, 1);
}

/// Tasks of one client that all start at once on one key (so their first attempts find the lock busy
/// and mark it, and the first releases go out with a notice while hand-overs are on their way) keep
/// the lock moving: no hand-off waits for the fallback re-check (the TTL, 10 s). Five keys, eight
/// tasks each, 25 holds of 1 ms per task; the lock then moves by hand-over, first come first served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_starting_together_never_wait_for_the_fallback() {
    let server = RedisServer::spawn();
    let (a, backend) = client_with_stats(&server.url()).await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for key in 0..5 {
        for _ in 0..8 {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    let g = a
                        .lock(format!("start:{key}"))
                        .ttl(Duration::from_secs(10))
                        .wait(Duration::from_secs(60))
                        .acquire()
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    g.release().await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("done within 30 s")
            .unwrap();
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "1,000 holds of 1 ms took {took:?}: a hand-off waited for the fallback"
    );
    assert!(
        backend.stats().hand_overs > 900,
        "most hand-offs by hand-over: {}",
        backend.stats().hand_overs
    );
}

/// A local holder whose lease is lost while its task still runs (here the key is deleted behind its
/// back, which its next renewal finds) does not keep the waiters queued behind it: the longest one is
/// told at once and takes the freed lock while the lost holder's task still holds its guard, instead
/// of at its fallback (a lease's length) or when it gives up (which the bound below tells apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_local_holder_lets_its_waiters_look_at_once() {
    let server = RedisServer::spawn();
    let (a, mut conn, holder) = renewed_holder(&server).await;
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move {
            let g = hold_for(&a, Duration::from_secs(20)).await?;
            Ok::<_, LockError>((Instant::now(), g.fence().await?, g))
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "the waiter queues behind the holder"
    );
    let deleted = Instant::now();
    let reason = lose(&mut conn, &holder).await;
    let (got, fence, g) = join(waiting)
        .await
        .expect("the waiter takes the freed lock");
    assert!(
        got - deleted < Duration::from_secs(5),
        "told at the loss ({reason:?}), not at its fallback (30 s) or when it gives up (20 s): {:?}",
        got - deleted
    );
    assert!(fence > 0 && g.is_held());
    assert!(!holder.is_held(), "the lost holder still has its guard");
    let token = get(&mut conn, "t:{k}").await.expect("held by the waiter");
    assert!(!token.ends_with('*'), "nobody else waits: {token}");
    g.release().await.unwrap();
    drop(holder);
}

/// A request that comes after a local holder's lease was lost (its task still holds the guard) does
/// not queue behind it: it tries at once and takes the freed lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_local_holders_loss_tries_at_once() {
    let server = RedisServer::spawn();
    let (a, mut conn, holder) = renewed_holder(&server).await;
    let reason = lose(&mut conn, &holder).await;

    let t0 = Instant::now();
    let g = hold_for(&a, Duration::from_secs(20))
        .await
        .expect("the freed lock");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "not queued behind the lost holder ({reason:?}) until its fallback (30 s) or giving up (20 s): {:?}",
        t0.elapsed()
    );
    assert!(g.is_held() && !holder.is_held());
    g.release().await.unwrap();
    drop(holder);
}

/// A client on `server`, a connection of its own to it, and that client's guard of `k` with a 3 s TTL,
/// renewed every second.
async fn renewed_holder(
    server: &RedisServer,
) -> (
    LockClient,
    redis::aio::MultiplexedConnection,
    lockattr_runtime::LockGuard,
) {
    let (client, _) = client_with_stats(&server.url()).await;
    let conn = raw(&server.url()).await;
    let holder = client
        .lock("k")
        .ttl(Duration::from_secs(3))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    (client, conn, holder)
}

/// Delete `k` behind `holder`'s back and wait until its next renewal finds the loss (within 3 s).
async fn lose(
    conn: &mut redis::aio::MultiplexedConnection,
    holder: &lockattr_runtime::LockGuard,
) -> lockattr_runtime::LostReason {
    cmd(conn, &["DEL", "t:{k}"]).await;
    tokio::time::timeout(Duration::from_secs(3), holder.lost())
        .await
        .expect("the holder's next renewal finds the loss")
}

/// Take `k` through `client` with a 30 s TTL, waiting up to `wait`.
async fn hold_for(
    client: &LockClient,
    wait: Duration,
) -> Result<lockattr_runtime::LockGuard, LockError> {
    client
        .lock("k")
        .ttl(Duration::from_secs(30))
        .wait(wait)
        .acquire()
        .await
}
