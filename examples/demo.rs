//! The lockattr demo: `cargo run --example demo`.
//!
//! Uses Redis at `LOCKATTR_REDIS_URL` if set, else a private `redis-server` it starts on a free port,
//! else the in-process memory backend. Then three scenes:
//!
//! a) four workers contend for one key: never two holders at once, fences strictly increase;
//! b) a body outlives its TTL, kept alive by the renewal watchdog, while an intruder is refused;
//! c) the key is deleted behind the holder's back: the body is cancelled and `run` returns `Lost`.
//!
//! Set `RUST_LOG=lockattr_runtime=debug` to see the library's own events as well.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockattr_examples::{ms, say, Backing, BoxError};
use lockattr_runtime::{current_fence, current_lock, LockError};

fn main() -> ExitCode {
    lockattr_examples::start_clock();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    println!("lockattr demo\n");
    // Choosing may start a redis-server and wait for it: blocking, so before the async runtime starts.
    let backing = match Backing::choose() {
        Ok((backing, None)) => {
            say!("backend: {}", backing.describe());
            backing
        }
        Ok((backing, Some(why))) => {
            say!("backend: {}", backing.describe());
            say!("NOTE: not using Redis: {why}.");
            say!("NOTE: the memory backend has the same semantics but only locks within this process;");
            say!("      run `bash scripts/demo` (installs redis-server) to see locks shared by separate clients.");
            backing
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(run(&backing));
    drop(rt);
    drop(backing); // stops a private redis-server

    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("\nSome checks FAILED (see above).");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("\nerror: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenes; `Ok(false)` when a check failed.
async fn run(backing: &Backing) -> Result<bool, BoxError> {
    // Fail early and clearly when LOCKATTR_REDIS_URL points nowhere.
    backing.client().await?;

    let a = scene_a(backing).await?;
    let b = scene_b(backing).await?;
    let c = scene_c(backing).await?;

    println!("\nSummary ({})", backing.describe());
    for line in [&a.summary, &b.summary, &c.summary] {
        println!("  {line}");
    }
    if backing.is_memory() {
        println!("  (memory backend: set LOCKATTR_REDIS_URL or install redis-server to run the same on Redis)");
    }
    Ok(a.ok && b.ok && c.ok)
}

struct SceneResult {
    ok: bool,
    summary: String,
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "OK    "
    } else {
        "FAILED"
    }
}

// ---------------------------------------------------------------------------------------------------
// a) contention
// ---------------------------------------------------------------------------------------------------

const WORKERS: usize = 4;
const ROUNDS: usize = 2;
const HOLD: Duration = Duration::from_millis(120);
const REST: Duration = Duration::from_millis(30);

#[derive(Default)]
struct Contention {
    holders: AtomicUsize,
    max_holders: AtomicUsize,
    /// Fences in the order the lock was granted (pushed while holding it).
    fences: Mutex<Vec<u64>>,
    /// When the last holder's body ended, to show how fast the next waiter got in.
    last_end: Mutex<Option<Instant>>,
    errors: AtomicUsize,
}

async fn scene_a(backing: &Backing) -> Result<SceneResult, BoxError> {
    let key = "order:42";
    println!();
    say!("== a) {WORKERS} workers contend for `{key}` (ttl 5s, wait up to 10s, each holds it {HOLD:?}, {ROUNDS} rounds) ==");
    let shared = Arc::new(Contention::default());
    let mut tasks = Vec::new();
    for worker in 1..=WORKERS {
        let client = backing.client().await?;
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let asked = Instant::now();
                let s = shared.clone();
                let result = client
                    .lock(key)
                    .ttl(Duration::from_secs(5))
                    .wait(Duration::from_secs(10))
                    .run(async move {
                        let now = s.holders.fetch_add(1, Ordering::SeqCst) + 1;
                        s.max_holders.fetch_max(now, Ordering::SeqCst);
                        let fence = current_fence().await.unwrap_or_default();
                        lock(&s.fences).push(fence);
                        let handoff = match lock(&s.last_end).take() {
                            Some(end) => format!(", {} after the previous holder finished", ms(end.elapsed())),
                            None => String::new(),
                        };
                        say!("worker {worker}: acquired {key} (fence {fence}) after waiting {}{handoff}", ms(asked.elapsed()));
                        tokio::time::sleep(HOLD).await;
                        s.holders.fetch_sub(1, Ordering::SeqCst);
                        *lock(&s.last_end) = Some(Instant::now());
                        say!("worker {worker}: done, releasing");
                    })
                    .await;
                if let Err(e) = result {
                    shared.errors.fetch_add(1, Ordering::SeqCst);
                    say!("worker {worker}: ERROR {e}");
                }
                // Rest a moment so the waiters get their turn (the lock itself is not fair).
                tokio::time::sleep(REST).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }

    let fences = lock(&shared.fences).clone();
    let max = shared.max_holders.load(Ordering::SeqCst);
    let errors = shared.errors.load(Ordering::SeqCst);
    let increasing = fences.windows(2).all(|w| w[0] < w[1]);
    let ok = max == 1 && increasing && errors == 0 && fences.len() == WORKERS * ROUNDS;
    say!("max concurrent holders observed: {max}");
    let steps: Vec<String> = fences
        .windows(2)
        .map(|w| format!("{:+}", i128::from(w[1]) - i128::from(w[0])))
        .collect();
    say!(
        "fences in grant order: {}{} -> strictly increasing: {}",
        fences.first().copied().unwrap_or_default(),
        if steps.is_empty() {
            String::new()
        } else {
            format!(", then {}", steps.join(", "))
        },
        if increasing { "yes" } else { "NO" }
    );
    say!("(a fence is max(last + 1, the store's clock in microseconds): it keeps increasing even if Redis restarts empty)");
    let summary = format!(
        "{} a) {} grants to {WORKERS} workers, max concurrent holders = {max}, fences strictly increasing: {}{}",
        verdict(ok),
        fences.len(),
        if increasing { "yes" } else { "NO" },
        if errors > 0 { format!(", {errors} errors") } else { String::new() }
    );
    Ok(SceneResult { ok, summary })
}

// ---------------------------------------------------------------------------------------------------
// b) a body longer than its TTL
// ---------------------------------------------------------------------------------------------------

async fn scene_b(backing: &Backing) -> Result<SceneResult, BoxError> {
    let key = "report:nightly";
    let ttl = Duration::from_millis(600);
    let body_len = Duration::from_secs(2);
    println!();
    say!("== b) a {body_len:?} body under a {ttl:?} TTL on `{key}`, kept alive by auto_renew (renewal every ttl/3) ==");
    let holder = backing.client().await?;
    let intruder = backing.client().await?;

    // The intruder tries once, after the TTL has run out twice over.
    let intruder_task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        say!("intruder: trying `{key}` without waiting (1.2s into the body: the first 600ms TTL ran out long ago)");
        let r = intruder.lock(key).ttl(ttl).run(async {}).await;
        match &r {
            Err(e @ LockError::Busy { .. }) => say!("intruder: refused: {e}"),
            Err(e) => say!("intruder: unexpected error: {e}"),
            Ok(()) => {
                say!("intruder: GOT THE LOCK while the holder was still running (two holders!)")
            }
        }
        r
    });

    let started = Instant::now();
    let result = holder
        .lock(key)
        .ttl(ttl)
        .auto_renew(true)
        .run(async {
            let Some(me) = current_lock() else { return };
            say!(
                "holder: acquired {key} (fence {}), working for {body_len:?}",
                me.fence().await.unwrap_or_default()
            );
            let step = Duration::from_millis(400);
            let mut done = Duration::ZERO;
            while done < body_len {
                tokio::time::sleep(step).await;
                done += step;
                say!(
                    "holder: {done:.1?} into the body, lease still valid for {}",
                    ms(me.valid_for())
                );
            }
        })
        .await;
    let ran = started.elapsed();
    let holder_ok = match &result {
        Ok(()) => {
            say!("holder: body finished after {ran:.2?}; run returned Ok and released the lock");
            true
        }
        Err(e) => {
            say!("holder: ERROR {e}");
            false
        }
    };
    let intruder_refused = matches!(intruder_task.await?, Err(LockError::Busy { .. }));

    // Released: the next one gets in at once, with a higher fence.
    let after = backing.client().await?;
    let fence_after = after
        .lock(key)
        .ttl(ttl)
        .run(async { current_fence().await.unwrap_or_default() })
        .await;
    match &fence_after {
        Ok(f) => say!("after the release another client takes `{key}` at once (fence {f})"),
        Err(e) => say!("after the release: ERROR {e}"),
    }

    let ok = holder_ok && intruder_refused && fence_after.is_ok();
    let summary = format!(
        "{} b) body ran {ran:.2?} under a {ttl:?} TTL; intruder refused with Busy: {}",
        verdict(ok),
        if intruder_refused { "yes" } else { "NO" }
    );
    Ok(SceneResult { ok, summary })
}

// ---------------------------------------------------------------------------------------------------
// c) a lost lock cancels the body
// ---------------------------------------------------------------------------------------------------

/// Says so when the body's future is dropped before it finished.
struct CancelProbe {
    step: Arc<AtomicUsize>,
    finished: Arc<AtomicBool>,
}

impl Drop for CancelProbe {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            say!(
                "holder: body dropped at step {} - cancelled mid-work, no further writes",
                self.step.load(Ordering::SeqCst)
            );
        }
    }
}

async fn scene_c(backing: &Backing) -> Result<SceneResult, BoxError> {
    let key = "invoice:7";
    let ttl = Duration::from_millis(900);
    let delete_after = Duration::from_millis(700);
    println!();
    say!("== c) `{key}` (ttl {ttl:?}, auto_renew) is deleted behind the holder's back ==");
    let holder = backing.client().await?;
    let step = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();

    let body = {
        let (step, finished) = (step.clone(), finished.clone());
        async move {
            let _probe = CancelProbe {
                step: step.clone(),
                finished: finished.clone(),
            };
            say!(
                "holder: acquired {key} (fence {}), starting 25 steps of 200ms",
                current_fence().await.unwrap_or_default()
            );
            let _ = started_tx.send(());
            for i in 1..=25 {
                step.store(i, Ordering::SeqCst);
                say!("holder: step {i}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            finished.store(true, Ordering::SeqCst);
        }
    };
    let holder_run = async {
        let result = holder.lock(key).ttl(ttl).auto_renew(true).run(body).await;
        (result, Instant::now())
    };

    // Someone else (an operator, a FLUSHDB, a buggy unlock elsewhere) deletes the key mid-body.
    let someone_else = async {
        started_rx.await.map_err(|_| "the body never started")?;
        tokio::time::sleep(delete_after).await;
        backing.delete_behind_back(&holder, key).await?;
        let at = Instant::now();
        say!(
            "someone else: deleted {} (the holder is not told)",
            holder.backend_key(key)
        );
        Ok::<Instant, BoxError>(at)
    };

    let ((result, returned_at), deleted_at) = tokio::join!(holder_run, someone_else);
    let detection = deleted_at
        .as_ref()
        .ok()
        .map(|at| returned_at.saturating_duration_since(*at));

    let (lost, cancelled) = match &result {
        Err(e @ LockError::Lost { cancelled, .. }) => {
            say!("holder: run returned Err: {e}");
            (true, *cancelled)
        }
        Err(e) => {
            say!("holder: unexpected error: {e}");
            (false, false)
        }
        Ok(()) => {
            say!("holder: run returned Ok - the loss went unnoticed!");
            (false, false)
        }
    };
    if let Err(e) = &deleted_at {
        say!("someone else: delete FAILED: {e}");
    }
    let detection = detection.map(ms).unwrap_or_else(|| "?".into());
    say!(
        "loss detected {detection} after the delete (the watchdog renews every ttl/3 = {}; the owner-checked renewal answered \"not yours\")",
        ms(ttl / 3)
    );
    let ok = lost && cancelled && !finished.load(Ordering::SeqCst) && deleted_at.is_ok();
    let summary = format!(
        "{} c) key deleted under the holder: body cancelled at step {}, run returned Lost {detection} after the delete",
        verdict(ok),
        step.load(Ordering::SeqCst)
    );
    Ok(SceneResult { ok, summary })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
