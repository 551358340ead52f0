//! A scheduled job run by three processes, where exactly one runs per tick (ShedLock-style).
//!
//! The parent starts a private redis-server (or uses LOCKATTR_REDIS_URL), then spawns three copies of
//! itself. Each copy wakes at every whole second for five ticks and calls the annotated job. The first
//! process to get the lock runs it; the others get `LockError::Busy` and skip. `min_hold = "800ms"`
//! keeps the lock for most of the tick even though the job itself is quick, so a process whose clock
//! or scheduler fires a little late cannot run the same tick again.
//!
//! Run: `cargo run --example scheduled_job`

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockattr_runtime::{distributed_lock, LockClient, LockError};

const TICKS: u64 = 5;

#[derive(Debug)]
enum JobError {
    Lock(LockError),
}

impl From<LockError> for JobError {
    fn from(e: LockError) -> Self {
        JobError::Lock(e)
    }
}

/// The job. The tick number is part of the key, so each tick is its own lock.
#[distributed_lock(key = "job:nightly-report:{tick}", ttl = "5s", min_hold = "800ms", client = LOCKS)]
async fn nightly_report(worker: usize, tick: u64) -> Result<(), JobError> {
    let fence = lockattr_runtime::current_fence().await?;
    println!("tick {tick}: worker {worker} RUNS the job (fence {fence})");
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

static LOCKS: std::sync::OnceLock<LockClient> = std::sync::OnceLock::new();

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn worker(
    worker: usize,
    first_tick: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for tick in first_tick..first_tick + TICKS {
        // Sleep until the start of this tick's second.
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let target = Duration::from_secs(tick);
        if target > now {
            tokio::time::sleep(target - now).await;
        }
        match nightly_report(worker, tick).await {
            Ok(()) => {}
            Err(JobError::Lock(e)) if e.is_contention() => {
                println!("tick {tick}: worker {worker} skips (another process holds the lock)")
            }
            Err(JobError::Lock(e)) => return Err(e.into()),
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rt = tokio::runtime::Runtime::new()?;
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "--worker" {
        return rt.block_on(async {
            let client = LockClient::builder()
                .url(args[3].as_str())
                .prefix("scheduled-example")
                .connect()
                .await?;
            let _ = LOCKS.set(client);
            worker(args[2].parse()?, args[4].parse()?).await
        });
    }
    let (backing, why) = lockattr_examples::Backing::choose()?;
    let url = match &backing {
        lockattr_examples::Backing::External { url, .. } => url.clone(),
        lockattr_examples::Backing::Private { server, .. } => server.url(),
        lockattr_examples::Backing::Memory { client, .. } => {
            println!("NOTE: {}", why.unwrap_or_default());
            println!("NOTE: without Redis the three workers run as tasks of this one process (memory backend).");
            let _ = LOCKS.set(client.clone());
            return rt.block_on(in_process());
        }
    };
    rt.block_on(across_processes(url))
}

/// Memory fallback: the same three workers as tasks of this process.
async fn in_process() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let first_tick = unix_secs() + 1;
    let tasks: Vec<_> = (1..=3)
        .map(|w| tokio::spawn(worker(w, first_tick)))
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn across_processes(url: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let first_tick = unix_secs() + 2;
    println!(
        "three processes share redis at {url}; ticks {first_tick}..{}",
        first_tick + TICKS - 1
    );
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for w in 1..=3 {
        children.push(
            tokio::process::Command::new(&exe)
                .args(["--worker", &w.to_string(), &url, &first_tick.to_string()])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    let mut lines = Vec::new();
    for c in children {
        let out = c.wait_with_output().await?;
        if !out.status.success() {
            return Err(format!("a worker failed: {}", out.status).into());
        }
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    lines.sort();
    for l in &lines {
        println!("{l}");
    }
    let runs = lines.iter().filter(|l| l.contains("RUNS")).count();
    let skips = lines.iter().filter(|l| l.contains("skips")).count();
    println!("\n{TICKS} ticks x 3 processes: {runs} runs, {skips} skips");
    if runs as u64 != TICKS {
        return Err(format!(
            "expected exactly one run per tick, got {runs} runs for {TICKS} ticks"
        )
        .into());
    }
    println!("exactly one process ran each tick.");
    Ok(())
}
