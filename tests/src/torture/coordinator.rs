//! The coordinator: starts the servers, the proxies, the monitor and the workers, injects faults one
//! at a time, stops everything, checks the quiet window, and hands every record to the checker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lockattr_runtime::testing::{FaultProxy, RedisServer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::check::{analyze, RunData};
use super::config::{Config, FaultKind};
use super::log::now_us;
use super::monitor::Monitor;
use super::report::Report;
use super::resource::Accepted;
use super::worker::WorkerArgs;

/// What the resource recorded: accepted writes per key, and rejections (key, fence, seq).
type ResourceRecords = (BTreeMap<String, Vec<Accepted>>, Vec<(String, u64, u32)>);

/// The key prefix of the workers' lock client.
pub const PREFIX: &str = "t";

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRecord {
    /// What.
    pub kind: FaultKind,
    /// The target worker slot (`None` when every worker is affected).
    pub slot: Option<u32>,
    /// The target process generation (for worker faults).
    pub gen: Option<u32>,
    /// When the fault was in effect (wall clock µs; taken after the fault was applied).
    pub start_us: u64,
    /// When it was lifted.
    pub end_us: u64,
    /// The injected delay (delay faults), in ms.
    pub delay_ms: u64,
}

struct Worker {
    gen: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

struct Slot {
    lock_proxy: FaultProxy,
    res_proxy: FaultProxy,
    worker: Worker,
    logs: Vec<PathBuf>,
}

/// Run the torture program with `cfg` on a fresh multi-threaded runtime, then check the records.
pub fn run(cfg: Config) -> Result<Report, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(run_async(cfg))
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let st = std::process::Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("kill -s {sig} {pid}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("kill -s {sig} {pid}: {st}"))
    }
}

fn spawn_worker(
    cfg: &Config,
    dir: &Path,
    slot: u32,
    gen: u32,
    lock_url: String,
    resource_url: String,
) -> Result<(Worker, PathBuf), String> {
    let log = dir.join(format!("worker-{slot}-{gen}.log"));
    let args = WorkerArgs {
        slot,
        gen,
        lock_url,
        resource_url,
        keys: cfg.keys as u32,
        tasks: cfg.tasks as u32,
        ttl: cfg.ttl,
        command_timeout: cfg.command_timeout,
        seed: cfg
            .seed
            .wrapping_mul(0x2545_f491_4f6c_dd1d)
            .wrapping_add(u64::from(slot) << 32 | u64::from(gen)),
        cancel: cfg.cancel_probability,
        log: log.clone(),
        current_thread: slot % 2 == 1,
    };
    let stderr = std::fs::File::create(dir.join(format!("worker-{slot}-{gen}.stderr")))
        .map_err(|e| format!("stderr file: {e}"))?;
    let mut child = Command::new(&cfg.worker_exe)
        .args(args.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cfg.worker_exe.display()))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no worker stdout")?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Ok((
        Worker {
            gen,
            child,
            stdin,
            lines: rx,
        },
        log,
    ))
}

async fn expect_line(w: &mut Worker, prefix: &str, max: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + max;
    loop {
        match tokio::time::timeout_at(deadline, w.lines.recv()).await {
            Ok(Some(l)) if l.starts_with(prefix) => return Some(l),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

fn sync_conn(url: &str) -> Result<redis::Connection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| format!("{url}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

fn evalsha_calls(url: &str) -> Result<u64, String> {
    let mut c = sync_conn(url)?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .map_err(|e| e.to_string())?;
    let mut total = 0;
    for line in info.lines() {
        if let Some(rest) = line
            .strip_prefix("cmdstat_evalsha:")
            .or_else(|| line.strip_prefix("cmdstat_eval:"))
        {
            if let Some(calls) = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += calls;
            }
        }
    }
    Ok(total)
}

fn uniform(rng: &mut StdRng, ttl: Duration, lo: f64, hi: f64) -> Duration {
    ttl.mul_f64(rng.random_range(lo..hi))
}

/// Everything a run holds; dropping it kills the workers (kill-on-drop), the proxies and the servers.
struct Cluster {
    cfg: Config,
    dir: PathBuf,
    lock: RedisServer,
    resource: RedisServer,
    monitor: Option<Monitor>,
    slots: Vec<Slot>,
    faults: Vec<FaultRecord>,
    notes: Vec<String>,
}

impl Cluster {
    async fn respawn(&mut self, slot: usize) -> Result<(), String> {
        let gen = self.slots[slot].worker.gen + 1;
        let (w, log) = spawn_worker(
            &self.cfg,
            &self.dir,
            slot as u32,
            gen,
            self.slots[slot].lock_proxy.url(),
            self.slots[slot].res_proxy.url(),
        )?;
        self.slots[slot].worker = w;
        self.slots[slot].logs.push(log);
        Ok(())
    }

    fn say(&self, msg: impl AsRef<str>) {
        if self.cfg.verbose {
            eprintln!("torture: {}", msg.as_ref());
        }
    }

    async fn inject(&mut self, kind: FaultKind, rng: &mut StdRng) -> Result<(), String> {
        let ttl = self.cfg.ttl;
        let slot = rng.random_range(0..self.slots.len());
        let mut rec = FaultRecord {
            kind,
            slot: (!kind.affects_all_workers()).then_some(slot as u32),
            gen: None,
            start_us: 0,
            end_us: 0,
            delay_ms: 0,
        };
        match kind {
            FaultKind::WorkerPause => {
                let d = uniform(rng, ttl, 0.5, 3.0);
                let w = &self.slots[slot].worker;
                rec.gen = Some(w.gen);
                let Some(pid) = w.child.id() else {
                    return Ok(());
                };
                blocking(|| signal(pid, "STOP"))?;
                rec.start_us = now_us();
                tokio::time::sleep(d).await;
                rec.end_us = now_us();
                blocking(|| signal(pid, "CONT"))?;
            }
            FaultKind::WorkerKill => {
                let w = &mut self.slots[slot].worker;
                rec.gen = Some(w.gen);
                w.child
                    .start_kill()
                    .map_err(|e| format!("SIGKILL worker: {e}"))?;
                rec.start_us = now_us();
                let _ = w.child.wait().await;
                rec.end_us = now_us();
                self.respawn(slot).await?;
                // Keep the next fault out of the re-acquire measurement.
                tokio::time::sleep(ttl + self.cfg.reacquire_margin).await;
            }
            FaultKind::LockSigstop => {
                let d = uniform(rng, ttl, 1.2, 3.0);
                blocking(|| self.lock.pause());
                rec.start_us = now_us();
                tokio::time::sleep(d).await;
                rec.end_us = now_us();
                blocking(|| self.lock.resume());
            }
            FaultKind::LockDebugSleep => {
                let d = uniform(rng, ttl, 1.2, 3.0);
                let url = self.lock.url();
                let sent = now_us();
                let secs = format!("{:.3}", d.as_secs_f64());
                let reply = tokio::task::spawn_blocking(move || -> Result<u64, String> {
                    let mut c = sync_conn(&url)?;
                    let _: String = redis::cmd("DEBUG")
                        .arg("SLEEP")
                        .arg(&secs)
                        .query(&mut c)
                        .map_err(|e| format!("DEBUG SLEEP: {e}"))?;
                    Ok(now_us())
                })
                .await
                .map_err(|e| e.to_string())??;
                // The sleep began no later than `reply - d`: a start taken that late can only make the
                // "told by start + ttl" check more lenient, never report a false violation.
                rec.start_us = sent.max(reply.saturating_sub(d.as_micros() as u64));
                rec.end_us = reply;
            }
            FaultKind::LockClientPause => {
                let d = uniform(rng, ttl, 1.2, 3.0);
                let url = self.lock.url();
                let ms = d.as_millis().to_string();
                blocking(|| -> Result<(), String> {
                    let mut c = sync_conn(&url)?;
                    let _: String = redis::cmd("CLIENT")
                        .arg("PAUSE")
                        .arg(&ms)
                        .arg("ALL")
                        .query(&mut c)
                        .map_err(|e| format!("CLIENT PAUSE: {e}"))?;
                    Ok(())
                })?;
                rec.start_us = now_us();
                tokio::time::sleep(d).await;
                rec.end_us = now_us();
            }
            FaultKind::LockRestart => {
                // Keep workers out until the monitor watches the new server, so it misses nothing.
                for s in &self.slots {
                    s.lock_proxy.set_refuse(true);
                }
                blocking(|| {
                    for s in &self.slots {
                        s.lock_proxy.close_all();
                    }
                });
                rec.start_us = now_us();
                let seen = self.monitor.as_ref().map(Monitor::connections).unwrap_or(0);
                blocking(|| self.lock.restart());
                if let Some(m) = &self.monitor {
                    if !blocking(|| m.wait_connected(seen + 1, Duration::from_secs(5))) {
                        self.notes
                            .push("monitor did not reconnect within 5 s after a restart".into());
                    }
                }
                rec.end_us = now_us();
                for s in &self.slots {
                    s.lock_proxy.heal();
                }
            }
            FaultKind::Partition => {
                let d = uniform(rng, ttl, 1.2, 3.0);
                let p = &self.slots[slot].lock_proxy;
                rec.gen = Some(self.slots[slot].worker.gen);
                p.set_blackhole(true);
                rec.start_us = now_us();
                tokio::time::sleep(d).await;
                rec.end_us = now_us();
                // Bytes were dropped: a stream cannot continue after that. Reset the connections (as
                // a real partition ends: timeouts and resets), then heal.
                blocking(|| p.close_all());
                p.heal();
            }
            FaultKind::LockDelayLong | FaultKind::LockDelayShort | FaultKind::ResourceDelay => {
                let (delay, d) = match kind {
                    FaultKind::LockDelayLong => {
                        (uniform(rng, ttl, 0.6, 1.5), uniform(rng, ttl, 1.2, 3.0))
                    }
                    FaultKind::LockDelayShort => {
                        (uniform(rng, ttl, 0.02, 0.2), uniform(rng, ttl, 1.0, 3.0))
                    }
                    _ => (uniform(rng, ttl, 0.3, 1.5), uniform(rng, ttl, 1.0, 3.0)),
                };
                let p = if kind == FaultKind::ResourceDelay {
                    &self.slots[slot].res_proxy
                } else {
                    &self.slots[slot].lock_proxy
                };
                rec.gen = Some(self.slots[slot].worker.gen);
                rec.delay_ms = delay.as_millis() as u64;
                p.set_delay(delay);
                rec.start_us = now_us();
                tokio::time::sleep(d).await;
                rec.end_us = now_us();
                p.heal();
            }
            FaultKind::HolderStall => {
                // Single-threaded workers are the odd slots.
                let odd: Vec<usize> = (0..self.slots.len()).filter(|s| s % 2 == 1).collect();
                let slot = odd[rng.random_range(0..odd.len())];
                let d = uniform(rng, ttl, 1.2, 3.0);
                rec.slot = Some(slot as u32);
                rec.gen = Some(self.slots[slot].worker.gen);
                if let Some(stdin) = self.slots[slot].worker.stdin.as_mut() {
                    let _ = stdin
                        .write_all(format!("stall {}\n", d.as_millis()).as_bytes())
                        .await;
                    let _ = stdin.flush().await;
                }
                rec.start_us = now_us();
                tokio::time::sleep(d + ttl).await;
                rec.end_us = now_us();
            }
            FaultKind::LockCut => {
                let p = &self.slots[slot].lock_proxy;
                rec.gen = Some(self.slots[slot].worker.gen);
                blocking(|| p.close_all());
                rec.start_us = now_us();
                rec.end_us = rec.start_us;
            }
        }
        self.say(format!(
            "{kind} slot {:?} for {} ms{}",
            rec.slot,
            (rec.end_us.saturating_sub(rec.start_us)) / 1000,
            if rec.delay_ms > 0 {
                format!(" (delay {} ms)", rec.delay_ms)
            } else {
                String::new()
            }
        ));
        self.faults.push(rec);
        Ok(())
    }
}

async fn run_async(cfg: Config) -> Result<Report, String> {
    let (dir, _tmp) = match &cfg.out_dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("lockattr-torture-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            (t.path().to_owned(), Some(t))
        }
    };
    let lock = blocking(|| {
        RedisServer::try_spawn_with(&["--enable-debug-command", "local"])
            .map_err(|e| format!("lock server: {e}"))
    })?;
    let resource = blocking(|| RedisServer::try_spawn_with(&[]).map_err(|e| e.to_string()))?;
    let monitor = blocking(|| Monitor::start(lock.addr(), PREFIX));
    let mut slots = Vec::new();
    for slot in 0..cfg.processes as u32 {
        let lock_proxy = FaultProxy::start(lock.addr());
        let res_proxy = FaultProxy::start(resource.addr());
        let (worker, log) = spawn_worker(&cfg, &dir, slot, 0, lock_proxy.url(), res_proxy.url())?;
        slots.push(Slot {
            lock_proxy,
            res_proxy,
            worker,
            logs: vec![log],
        });
    }
    let mut c = Cluster {
        cfg: cfg.clone(),
        dir: dir.clone(),
        lock,
        resource,
        monitor: Some(monitor),
        slots,
        faults: Vec::new(),
        notes: Vec::new(),
    };
    for s in &mut c.slots {
        if expect_line(&mut s.worker, "READY", Duration::from_secs(30))
            .await
            .is_none()
        {
            return Err(format!(
                "a worker did not start; see {}/worker-*.stderr",
                dir.display()
            ));
        }
    }

    // --- contention under faults ---
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let started = now_us();
    let t0 = tokio::time::Instant::now();
    let end = t0 + cfg.duration;
    let mut queue: Vec<FaultKind> = cfg.faults.clone();
    queue.shuffle(&mut rng);
    queue.reverse();
    // Every fault is over within ~3 x TTL (+ the re-acquire window after a kill).
    let longest = cfg.ttl * 4 + cfg.reacquire_margin;
    tokio::time::sleep(cfg.ttl).await;
    while c.faults.len() < cfg.max_faults && !cfg.faults.is_empty() {
        let gap = uniform(&mut rng, cfg.ttl, 0.5, 1.5);
        if tokio::time::Instant::now() + gap + longest > end {
            break;
        }
        tokio::time::sleep(gap).await;
        let kind = queue
            .pop()
            .unwrap_or_else(|| cfg.faults[rng.random_range(0..cfg.faults.len())]);
        c.inject(kind, &mut rng).await?;
    }
    tokio::time::sleep_until(end).await;
    let faults_end = now_us();

    // --- stop: every worker finishes its call and goes idle ---
    for s in &c.slots {
        s.lock_proxy.heal();
        s.res_proxy.heal();
    }
    for s in &mut c.slots {
        if let Some(stdin) = s.worker.stdin.as_mut() {
            let _ = stdin.write_all(b"stop\n").await;
            let _ = stdin.flush().await;
        }
    }
    let idle_budget = cfg.ttl * 8 + Duration::from_secs(10);
    let mut idle = Vec::new();
    for (i, s) in c.slots.iter_mut().enumerate() {
        let line = expect_line(&mut s.worker, "IDLE", idle_budget).await;
        let leases = line.and_then(|l| l.split(' ').nth(1).and_then(|n| n.parse::<usize>().ok()));
        idle.push((i as u32, leases));
    }
    // --- quiet window: 3 x TTL with every worker alive and idle ---
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quiet_from = now_us();
    if let Some(m) = &c.monitor {
        m.set_quiet_from(quiet_from);
    }
    let lock_url = c.lock.url();
    let before = blocking(|| evalsha_calls(&lock_url))?;
    tokio::time::sleep(cfg.ttl * 3).await;
    let after = blocking(|| evalsha_calls(&lock_url))?;
    let keys: Vec<String> = blocking(|| -> Result<Vec<String>, String> {
        let mut conn = sync_conn(&lock_url)?;
        redis::cmd("KEYS")
            .arg(format!("{PREFIX}:*"))
            .query(&mut conn)
            .map_err(|e| e.to_string())
    })?;
    let orphan_keys: Vec<String> = keys
        .into_iter()
        .filter(|k| !k.ends_with(":fence"))
        .collect();
    // The INFO and KEYS calls above are not scripts; the difference counts lockattr scripts only.
    let quiet_evalsha = after.saturating_sub(before);

    // --- shut the workers down ---
    for s in &mut c.slots {
        s.worker.stdin = None;
    }
    for s in &mut c.slots {
        if tokio::time::timeout(Duration::from_secs(5), s.worker.child.wait())
            .await
            .is_err()
        {
            let _ = s.worker.child.start_kill();
            let _ = s.worker.child.wait().await;
        }
    }
    let (monitor_stats, token_of, deleted_tokens) = match c.monitor.take() {
        Some(m) => blocking(|| m.finish()),
        None => Default::default(),
    };

    // --- the resource's records ---
    let res_url = c.resource.url();
    let n_keys = cfg.keys;
    let (resource_log, resource_rejections) = blocking(|| -> Result<ResourceRecords, String> {
        let mut conn = sync_conn(&res_url)?;
        let mut logs = BTreeMap::new();
        let mut rejections = Vec::new();
        for k in 0..n_keys {
            let key = format!("k{k}");
            let raw: Vec<String> = redis::cmd("LRANGE")
                .arg(format!("r:{{{key}}}:log"))
                .arg(0)
                .arg(-1)
                .query(&mut conn)
                .map_err(|e| e.to_string())?;
            let parsed = raw.iter().filter_map(|s| Accepted::parse(s)).collect();
            let rej: Vec<String> = redis::cmd("LRANGE")
                .arg(format!("r:{{{key}}}:rej"))
                .arg(0)
                .arg(-1)
                .query(&mut conn)
                .map_err(|e| e.to_string())?;
            for r in &rej {
                let f: Vec<&str> = r.split(' ').collect();
                if let (Some(fence), Some(seq)) = (
                    f.first().and_then(|v| v.parse::<u64>().ok()),
                    f.get(1).and_then(|v| v.parse::<u32>().ok()),
                ) {
                    rejections.push((key.clone(), fence, seq));
                }
            }
            logs.insert(key, parsed);
        }
        Ok((logs, rejections))
    })?;

    let log_files: Vec<PathBuf> = c.slots.iter().flat_map(|s| s.logs.clone()).collect();
    if cfg.out_dir.is_some() {
        let lines: String = c
            .faults
            .iter()
            .map(|f| {
                format!(
                    "{} slot={:?} gen={:?} start_us={} end_us={} delay_ms={}\n",
                    f.kind, f.slot, f.gen, f.start_us, f.end_us, f.delay_ms
                )
            })
            .collect();
        let _ = std::fs::write(dir.join("faults.txt"), lines);
    }
    let data = RunData {
        cfg: cfg.clone(),
        started_us: started,
        faults_end_us: faults_end,
        faults: std::mem::take(&mut c.faults),
        log_files,
        idle,
        orphan_keys,
        quiet_evalsha,
        monitor: monitor_stats,
        token_of,
        deleted_tokens,
        resource_log,
        resource_rejections,
        notes: std::mem::take(&mut c.notes),
    };
    let report = analyze(data)?;
    if cfg.out_dir.is_some() {
        let _ = std::fs::write(dir.join("summary.txt"), report.table());
    }
    Ok(report)
}
