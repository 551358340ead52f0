//! A torture worker process: `T` tasks take random keys through one [`LockClient`] (`run` with
//! `auto_renew` and `wait`), and inside each critical section do a fenced read and one or two fenced
//! writes on the resource. Some calls are wrapped in a random short `tokio::time::timeout` (the guarded
//! future is dropped mid-acquire or mid-hold).
//!
//! Protocol with the coordinator: the worker prints `READY` once both servers answered; on the stdin
//! line `stop` it lets every task finish its current call, then prints `IDLE <tracked leases>`; when
//! stdin closes it exits at once. Each call is logged to the file given with `--log` (see
//! [`super::log`]); every line is one `write` system call, so a `SIGKILL` loses at most the line being
//! written.

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockattr_runtime::{LockClient, LockError, LostReason};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::log::{now_us, Gap, Hold, Outcome, Stall, Start, WriterId};
use super::resource::{Answer, Resource};

/// The worker's command line.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Worker slot.
    pub slot: u32,
    /// Process generation in the slot.
    pub gen: u32,
    /// URL of the lock server (through this slot's fault proxy).
    pub lock_url: String,
    /// URL of the resource server (through this slot's resource proxy).
    pub resource_url: String,
    /// Number of keys (`k0`, `k1`, ..).
    pub keys: u32,
    /// Tasks.
    pub tasks: u32,
    /// Lock TTL.
    pub ttl: Duration,
    /// Lock client command timeout.
    pub command_timeout: Duration,
    /// Random seed.
    pub seed: u64,
    /// Probability of wrapping a call in a random timeout.
    pub cancel: f64,
    /// Log file.
    pub log: PathBuf,
    /// Run on a single-threaded runtime (else a 2-thread one).
    pub current_thread: bool,
}

impl WorkerArgs {
    /// The arguments as passed on the command line.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--slot".into(),
            self.slot.to_string(),
            "--gen".into(),
            self.gen.to_string(),
            "--lock-url".into(),
            self.lock_url.clone(),
            "--resource-url".into(),
            self.resource_url.clone(),
            "--keys".into(),
            self.keys.to_string(),
            "--tasks".into(),
            self.tasks.to_string(),
            "--ttl-ms".into(),
            self.ttl.as_millis().to_string(),
            "--command-timeout-ms".into(),
            self.command_timeout.as_millis().to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--cancel".into(),
            self.cancel.to_string(),
            "--log".into(),
            self.log.display().to_string(),
            "--flavor".into(),
            if self.current_thread {
                "current"
            } else {
                "multi"
            }
            .into(),
        ]
    }

    /// Parse the command line (without the program name).
    pub fn parse(args: &[String]) -> Result<WorkerArgs, String> {
        let get = |name: &str| -> Result<&str, String> {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
                .ok_or_else(|| format!("missing {name}"))
        };
        let num = |name: &str| -> Result<u64, String> {
            get(name)?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(WorkerArgs {
            slot: num("--slot")? as u32,
            gen: num("--gen")? as u32,
            lock_url: get("--lock-url")?.to_owned(),
            resource_url: get("--resource-url")?.to_owned(),
            keys: num("--keys")?.max(1) as u32,
            tasks: num("--tasks")?.max(1) as u32,
            ttl: Duration::from_millis(num("--ttl-ms")?),
            command_timeout: Duration::from_millis(num("--command-timeout-ms")?),
            seed: num("--seed")?,
            cancel: get("--cancel")?
                .parse::<f64>()
                .map_err(|e| format!("--cancel: {e}"))?,
            log: PathBuf::from(get("--log")?),
            current_thread: get("--flavor")? == "current",
        })
    }
}

/// Entry point of the `torture_worker` binary.
pub fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match WorkerArgs::parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("torture_worker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("torture_worker: no runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torture_worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

type LogMsg = (String, Option<tokio::sync::oneshot::Sender<()>>);

struct Ctx {
    client: LockClient,
    resource: Resource,
    /// Lines go to a writer thread, so a slow disk never blocks the runtime (and its watchdog).
    log: std::sync::mpsc::Sender<LogMsg>,
    ttl: Duration,
    keys: u32,
    cancel: f64,
    stop: AtomicBool,
    /// A pending `holder-stall`: the next body blocks its thread this long (ms).
    stall_ms: AtomicU64,
}

impl Ctx {
    /// Queue a line for the log.
    fn write(&self, line: &str) {
        let _ = self.log.send((line.to_owned(), None));
    }

    /// Write a line and wait (asynchronously) until it is in the file.
    async fn write_durable(&self, line: &str) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.log.send((line.to_owned(), Some(tx))).is_ok() {
            let _ = rx.await;
        }
    }
}

fn log_writer(mut file: File, rx: std::sync::mpsc::Receiver<LogMsg>) {
    for (line, ack) in rx {
        let mut buf = line;
        buf.push('\n');
        if let Err(e) = file.write_all(buf.as_bytes()) {
            eprintln!("torture_worker: cannot write the log: {e}");
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

/// Heartbeat period and the gap worth logging.
const HEARTBEAT: Duration = Duration::from_millis(5);
const GAP_US: u64 = 30_000;

async fn run(args: WorkerArgs) -> Result<(), String> {
    let client = LockClient::builder()
        .url(&args.lock_url)
        .prefix("t")
        .command_timeout(args.command_timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = Resource::open(&args.resource_url, Duration::from_secs(10))
        .map_err(|e| format!("resource: {e}"))?;
    // Both servers must answer before we report ready (bounded: 20 s).
    let t0 = std::time::Instant::now();
    loop {
        let lock_ok = client
            .lock("ready-probe")
            .ttl(Duration::from_millis(100))
            .acquire()
            .await;
        let res_ok = resource.ping().await;
        match (lock_ok, res_ok) {
            (Ok(g), Ok(())) => {
                let _ = g.release().await;
                break;
            }
            (l, r) if t0.elapsed() > Duration::from_secs(20) => {
                return Err(format!(
                    "servers not ready: lock {:?}, resource {:?}",
                    l.err(),
                    r.err()
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .map_err(|e| format!("{}: {e}", args.log.display()))?;
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || log_writer(log, log_rx));
    let ctx = Arc::new(Ctx {
        client,
        resource,
        log: log_tx,
        ttl: args.ttl,
        keys: args.keys,
        cancel: args.cancel,
        stop: AtomicBool::new(false),
        stall_ms: AtomicU64::new(0),
    });

    // Control: stdin lines. EOF (the coordinator went away) ends the process at once.
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let ctl = ctx.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => {
                    let _ = stop_tx.send(());
                }
                Ok(l) => {
                    if let Some(ms) = l.strip_prefix("stall ").and_then(|v| v.trim().parse().ok()) {
                        ctl.stall_ms.store(ms, Ordering::SeqCst);
                    }
                }
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });

    // Heartbeat: evidence of when this process's runtime did not run at all.
    {
        let ctx = ctx.clone();
        let (slot, gen) = (args.slot, args.gen);
        tokio::spawn(async move {
            let mut prev = now_us();
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let now = now_us();
                if now.saturating_sub(prev) > GAP_US {
                    ctx.write(
                        &Gap {
                            slot,
                            gen,
                            t_from: prev,
                            t_to: now,
                        }
                        .line(),
                    );
                }
                prev = now;
            }
        });
    }
    let mut tasks = Vec::new();
    for task in 0..args.tasks {
        let ctx = ctx.clone();
        let writer = WriterId {
            slot: args.slot,
            gen: args.gen,
            task,
        };
        let seed = args.seed ^ (u64::from(task) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        tasks.push(tokio::spawn(task_loop(ctx, writer, seed)));
    }
    println!("READY");
    let _ = std::io::stdout().flush();

    let _ = stop_rx.recv().await;
    ctx.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    // Releases of dropped (cancelled) guards are spawned; let them run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("IDLE {}", ctx.client.tracked_leases());
    let _ = std::io::stdout().flush();
    // Stay alive (idle, holding nothing) until the coordinator closes stdin.
    std::future::pending::<()>().await;
    Ok(())
}

/// How long the critical section lasts: mostly short, sometimes longer than the TTL (renewals).
struct Plan {
    hold1: Duration,
    hold2: Option<Duration>,
}

fn one_hold(rng: &mut StdRng, ttl: Duration) -> Duration {
    let p: f64 = rng.random();
    if p < 0.85 {
        Duration::from_micros(rng.random_range(0..2_000))
    } else if p < 0.97 {
        ttl.mul_f64(rng.random_range(0.1..0.6))
    } else {
        ttl.mul_f64(rng.random_range(1.0..2.5))
    }
}

fn plan(rng: &mut StdRng, ttl: Duration) -> Plan {
    let hold1 = one_hold(rng, ttl);
    let hold2 = if rng.random_bool(0.3) {
        Some(one_hold(rng, ttl) / 2)
    } else {
        None
    };
    Plan { hold1, hold2 }
}

async fn task_loop(ctx: Arc<Ctx>, writer: WriterId, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !ctx.stop.load(Ordering::SeqCst) {
        let key = format!("k{}", rng.random_range(0..ctx.keys));
        let plan = plan(&mut rng, ctx.ttl);
        let wait = ctx.ttl * 2 + ctx.ttl.mul_f64(rng.random_range(0.0..1.0));
        let cancel_after = rng
            .random_bool(ctx.cancel)
            .then(|| ctx.ttl.mul_f64(rng.random_range(0.002..1.5)));
        let hold = one_call(&ctx, writer, key, plan, wait, cancel_after).await;
        ctx.write(&hold.line());
        if matches!(hold.outcome, Outcome::Unavailable | Outcome::Error) {
            // The lock server is down or unreachable: do not spin.
            tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
        }
    }
}

#[derive(Default)]
struct BodyState {
    fence: u64,
    t_start: u64,
    t_done: u64,
    reads_ok: u32,
    reads_rejected: u32,
    writes_ok: u32,
    writes_rejected: u32,
    resource_errors: u32,
    stalled_ms: u64,
}

async fn one_call(
    ctx: &Arc<Ctx>,
    writer: WriterId,
    key: String,
    plan: Plan,
    wait: Duration,
    cancel_after: Option<Duration>,
) -> Hold {
    let t_call = now_us();
    let state = Arc::new(Mutex::new(BodyState::default()));
    let body = {
        let state = state.clone();
        let ctx = ctx.clone();
        let key = key.clone();
        async move {
            // A free lock is granted without a fence; asking for it issues one (owner-checked). When
            // that fails (lost, or the server unreachable), the body ends without touching the resource.
            let fence = lockattr_runtime::current_fence().await?;
            let t_start = now_us();
            {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                s.fence = fence;
                s.t_start = t_start;
            }
            // On disk before the body touches the resource, so a SIGKILL cannot lose it.
            ctx.write_durable(
                &Start {
                    writer,
                    key: key.clone(),
                    fence,
                    t_call,
                    t_start,
                }
                .line(),
            )
            .await;
            let who = writer.to_string();
            let bump = |f: &dyn Fn(&mut BodyState)| {
                f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
            };
            let value = match ctx.resource.op(&key, fence, 0, &who, None).await {
                Ok(Answer::Accepted(v)) => {
                    bump(&|s| s.reads_ok += 1);
                    v
                }
                Ok(Answer::Rejected) => {
                    bump(&|s| s.reads_rejected += 1);
                    return Ok(());
                }
                Err(_) => {
                    bump(&|s| s.resource_errors += 1);
                    return Ok(());
                }
            };
            let mut pauses = vec![plan.hold1];
            pauses.extend(plan.hold2);
            for (i, pause) in pauses.into_iter().enumerate() {
                tokio::time::sleep(pause).await;
                let stall = ctx.stall_ms.swap(0, Ordering::SeqCst);
                if stall > 0 {
                    bump(&|s| s.stalled_ms = stall);
                    // Block the thread on purpose, right before a write: on a single-threaded runtime
                    // nothing else runs, not even the renewal watchdog (an executor stall or GC pause
                    // between check and write). The write then goes out with a stale fence.
                    let t_begin = now_us();
                    std::thread::sleep(Duration::from_millis(stall));
                    ctx.write(
                        &Stall {
                            writer,
                            t_begin,
                            t_end: now_us(),
                        }
                        .line(),
                    );
                }
                let seq = i as u32 + 1;
                match ctx
                    .resource
                    .op(&key, fence, seq, &who, Some(value + u64::from(seq)))
                    .await
                {
                    Ok(Answer::Accepted(_)) => bump(&|s| s.writes_ok += 1),
                    Ok(Answer::Rejected) => {
                        bump(&|s| s.writes_rejected += 1);
                        return Ok(());
                    }
                    Err(_) => {
                        bump(&|s| s.resource_errors += 1);
                        return Ok(());
                    }
                }
            }
            bump(&|s| s.t_done = now_us());
            Ok::<(), LockError>(())
        }
    };
    let fut = ctx
        .client
        .lock(key.as_str())
        .ttl(ctx.ttl)
        .auto_renew(true)
        .wait(wait)
        .run(body);
    let result = match cancel_after {
        Some(d) => tokio::time::timeout(d, fut).await.ok(),
        None => Some(fut.await),
    };
    let t_ret = now_us();
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = match result {
        None if s.t_start > 0 => Outcome::Cancelled,
        None => Outcome::AcquireCancelled,
        Some(Ok(Ok(()))) => Outcome::Ok,
        Some(Ok(Err(e)) | Err(e)) => classify(&e),
    };
    Hold {
        writer,
        key,
        fence: s.fence,
        t_call,
        t_start: s.t_start,
        t_done: s.t_done,
        t_ret,
        outcome,
        reads_ok: s.reads_ok,
        reads_rejected: s.reads_rejected,
        writes_ok: s.writes_ok,
        writes_rejected: s.writes_rejected,
        resource_errors: s.resource_errors,
        stalled_ms: s.stalled_ms,
    }
}

fn classify(e: &LockError) -> Outcome {
    match e {
        LockError::Lost {
            reason, cancelled, ..
        } => {
            let cancelled = *cancelled;
            match reason {
                LostReason::NotOwner => Outcome::LostNotOwner { cancelled },
                LostReason::DeadlineExpired => Outcome::LostDeadline { cancelled },
                _ => Outcome::LostOther { cancelled },
            }
        }
        LockError::Timeout { .. } => Outcome::WaitTimeout,
        LockError::Busy { .. } => Outcome::Busy,
        LockError::Unavailable { .. } => Outcome::Unavailable,
        other => {
            eprintln!("torture_worker: lock error: {other}");
            Outcome::Error
        }
    }
}
