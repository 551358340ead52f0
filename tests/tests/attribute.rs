//! Behaviour of `#[distributed_lock]` fns against a real redis-server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lockattr_runtime::{distributed_lock, LockClient, LockError, LostReason};
use lockattr_tests::{client, RedisServer};
use tokio::time::Instant;

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Domain(&'static str),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

impl AppError {
    fn lock(&self) -> &LockError {
        match self {
            AppError::Lock(e) => e,
            AppError::Domain(d) => panic!("expected a lock error, got domain error {d}"),
        }
    }
}

struct Order {
    id: u64,
}

#[distributed_lock(key = "order:{order.id}", ttl = "2s", client = locks)]
async fn settle(locks: &LockClient, order: &Order, fail: bool) -> Result<u64, AppError> {
    if fail {
        return Err(AppError::Domain("declined"));
    }
    Ok(lockattr_runtime::current_fence()
        .await
        .expect("fence visible in the body"))
}

fn parse(s: &str) -> Result<u64, AppError> {
    s.parse().map_err(|_| AppError::Domain("not a number"))
}

#[distributed_lock(key = "q:{input}", ttl = "2s", client = locks)]
async fn with_question_mark(locks: &LockClient, input: &str) -> Result<u64, AppError> {
    let n = parse(input)?;
    if n == 0 {
        return Ok(0); // early return
    }
    Ok(n * 2)
}

#[distributed_lock(key = "panics", ttl = "2s", auto_renew, client = locks)]
async fn panics(locks: &LockClient) -> Result<(), AppError> {
    panic!("boom inside the lock");
}

#[distributed_lock(key = "slow:{name}", ttl = "300ms", auto_renew, client = locks)]
async fn slow(locks: &LockClient, name: &str, for_ms: u64) -> Result<&'static str, AppError> {
    tokio::time::sleep(Duration::from_millis(for_ms)).await;
    assert!(lockattr_runtime::current_lock()
        .expect("in a lock")
        .is_held());
    Ok("done")
}

#[distributed_lock(key = "waits", ttl = "2s", wait = "1500ms", client = locks)]
async fn waits(locks: &LockClient) -> Result<Instant, AppError> {
    Ok(Instant::now())
}

#[distributed_lock(key = "waits", ttl = "2s", wait = "200ms", client = locks)]
async fn waits_briefly(locks: &LockClient) -> Result<(), AppError> {
    Ok(())
}

#[distributed_lock(key = "lost:{name}", ttl = "600ms", auto_renew, client = locks)]
async fn gets_deleted(
    locks: &LockClient,
    name: &str,
    progress: Arc<AtomicUsize>,
) -> Result<(), AppError> {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

#[distributed_lock(key = "acct:{id}", ttl = "2s", client = locks)]
async fn outer(locks: &LockClient, id: u32) -> Result<(u64, u64), AppError> {
    let mine = lockattr_runtime::current_fence().await.unwrap();
    let inner = inner(locks, id).await?;
    Ok((mine, inner))
}

#[distributed_lock(key = "acct:{id}", ttl = "2s", client = locks)]
async fn inner(locks: &LockClient, id: u32) -> Result<u64, AppError> {
    Ok(lockattr_runtime::current_fence().await.unwrap())
}

#[distributed_lock(key = "k:{a}:{b}", ttl = "2s", client = locks)]
async fn two_parts(locks: &LockClient, a: &str, b: &str) -> Result<String, AppError> {
    Ok(lockattr_runtime::current_lock()
        .expect("in a lock")
        .key()
        .to_owned())
}

struct Service {
    locks: LockClient,
    tenant: String,
}

impl Service {
    #[distributed_lock(key = "tenant:{self.tenant}:job:{job}", ttl = "2s", client = self.locks)]
    async fn run_job(&self, job: u32) -> Result<String, AppError> {
        Ok(lockattr_runtime::current_lock()
            .expect("in a lock")
            .key()
            .to_owned())
    }
}

async fn exists(server: &RedisServer, key: &str) -> bool {
    server.cli(&["EXISTS", key]) == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_on_return_error_question_mark_and_early_return() {
    let server = RedisServer::spawn();
    let locks = client(&server.url()).await;
    let f1 = settle(&locks, &Order { id: 7 }, false).await.unwrap();
    assert!(!exists(&server, "t:{order:7}").await);
    assert!(matches!(
        settle(&locks, &Order { id: 7 }, true).await,
        Err(AppError::Domain("declined"))
    ));
    assert!(!exists(&server, "t:{order:7}").await);
    let f2 = settle(&locks, &Order { id: 7 }, false).await.unwrap();
    assert!(f2 > f1, "fences increase: {f1} then {f2}");
    assert!(matches!(
        with_question_mark(&locks, "x").await,
        Err(AppError::Domain("not a number"))
    ));
    assert!(!exists(&server, "t:{q:x}").await);
    assert_eq!(with_question_mark(&locks, "0").await.unwrap(), 0);
    assert_eq!(with_question_mark(&locks, "21").await.unwrap(), 42);
    assert!(!exists(&server, "t:{q:0}").await && !exists(&server, "t:{q:21}").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_on_panic_and_on_dropped_future() {
    let server = RedisServer::spawn();
    let locks = client(&server.url()).await;
    let l2 = locks.clone();
    let res = tokio::spawn(async move { panics(&l2).await }).await;
    assert!(res.unwrap_err().is_panic());
    let t0 = Instant::now();
    while exists(&server, "t:{panics}").await {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "not released after panic"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Dropped (cancelled) future.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), slow(&locks, "dropped", 5_000))
            .await
            .is_err()
    );
    let t0 = Instant::now();
    while exists(&server, "t:{slow:dropped}").await {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "not released after drop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(locks.tracked_leases(), 0);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !exists(&server, "t:{slow:dropped}").await,
        "renewed after drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_wait_and_timeout() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let b = client(&server.url()).await;
    // Busy without wait.
    let (first, second) = tokio::join!(slow(&a, "busy", 300), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        slow(&b, "busy", 10).await
    });
    assert_eq!(first.unwrap(), "done");
    assert!(matches!(second.unwrap_err().lock(), LockError::Busy { .. }));
    // Wait: gets it right after the holder releases; timeout when the wait is too short.
    let holder = a
        .lock("waits")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    let timed_out = waits_briefly(&b).await.unwrap_err();
    assert!(
        matches!(timed_out.lock(), LockError::Timeout { .. }),
        "{timed_out:?}"
    );
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { waits(&b).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    holder.release().await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(got.saturating_duration_since(released) < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_renew_past_ttl_and_lost_cancels() {
    let server = RedisServer::spawn();
    let locks = client(&server.url()).await;
    assert_eq!(slow(&locks, "long", 1_000).await.unwrap(), "done"); // 3x the 300ms TTL
    let progress = Arc::new(AtomicUsize::new(0));
    let p2 = progress.clone();
    let l2 = locks.clone();
    let task = tokio::spawn(async move { gets_deleted(&l2, "x", p2).await });
    tokio::time::sleep(Duration::from_millis(120)).await;
    server.cli(&["DEL", "t:{lost:x}"]);
    let deleted_at = Instant::now();
    let err = task.await.unwrap().unwrap_err();
    let took = deleted_at.elapsed();
    assert!(
        matches!(
            err.lock(),
            LockError::Lost {
                reason: LostReason::NotOwner,
                cancelled: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        took < Duration::from_millis(400),
        "lost detected after {took:?}"
    );
    let steps = progress.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        progress.load(Ordering::SeqCst),
        steps,
        "body kept running after the loss"
    );
    assert!(steps < 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentrant_calls_share_the_lock() {
    let server = RedisServer::spawn();
    let locks = client(&server.url()).await;
    let (outer_fence, inner_fence) = tokio::time::timeout(Duration::from_secs(3), outer(&locks, 5))
        .await
        .expect("no deadlock")
        .unwrap();
    assert_eq!(outer_fence, inner_fence);
    assert!(!exists(&server, "t:{acct:5}").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_rendered_and_escaped() {
    let server = RedisServer::spawn();
    let locks = client(&server.url()).await;
    assert_eq!(two_parts(&locks, "1:2", "3").await.unwrap(), "k:1%3A2:3");
    assert_eq!(two_parts(&locks, "1", "2:3").await.unwrap(), "k:1:2%3A3");
    assert_eq!(
        two_parts(&locks, "50%", "{x}").await.unwrap(),
        "k:50%25:%7Bx%7D"
    );
    let svc = Service {
        locks: locks.clone(),
        tenant: "acme:eu".into(),
    };
    assert_eq!(svc.run_job(9).await.unwrap(), "tenant:acme%3Aeu:job:9");
    // Distinct argument tuples never share a lock: both can be held at once.
    let g = locks.lock("k:1%3A2:3").acquire().await.unwrap();
    assert_eq!(two_parts(&locks, "1", "2:3").await.unwrap(), "k:1:2%3A3");
    drop(g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_future_is_send_and_spawnable() {
    let server = RedisServer::spawn();
    let locks = client(&server.url()).await;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let locks = locks.clone();
            tokio::spawn(async move { settle(&locks, &Order { id: 100 + i }, false).await })
        })
        .collect();
    for h in handles {
        assert!(h.await.unwrap().unwrap() > 0);
    }
}

/// Two OS processes run an annotated fn on one key: their holds never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_overlap() {
    let server = RedisServer::spawn();
    let url = server.url();
    let args: Vec<&str> = [&url, "20", "3"].to_vec();
    let holds =
        lockattr_tests::run_contenders_and_check(env!("CARGO_BIN_EXE_attr_contender"), &args, 2)
            .await;
    assert_eq!(holds, 40);
}
