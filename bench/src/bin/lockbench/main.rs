//! `lockbench`: lockattr side by side with the raw Redis floor and peer crates, in one run.
//!
//! ```text
//! cargo run --release -p lockattr-bench --bin lockbench              # full run, a few minutes
//! cargo run --release -p lockattr-bench --bin lockbench -- --quick   # under a minute
//! ```
//!
//! It starts its own `redis-server` (from `PATH` or `LOCKATTR_REDIS_SERVER`) on a free loopback port and
//! prints one markdown table per scenario, then the targets with their measured ratios. Options:
//! `--quick`, `--rounds N`, `--only 1,3,4` (scenarios), `--contenders floor,guard,run,attr,rslock,dlock`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockattr_bench::contenders::{Contender, Hold, Kind, TTL};
use lockattr_bench::redis_info::{self, Delta};
use lockattr_bench::stats::{fmt_dur, fmt_rate, fmt_us, median, spread, Samples};
use lockattr_bench::{hold, s5, sys};
use lockattr_runtime::testing::RedisServer;
use lockattr_runtime::LockClient;
use tokio::sync::watch;
use tokio::time::Instant;

type Res<T> = Result<T, String>;

#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    rounds: usize,
    s1_ops: usize,
    s2_callers: Vec<usize>,
    s2_time: Duration,
    s2_rounds: usize,
    /// (callers, acquisitions)
    s3: Vec<(usize, usize)>,
    s3_rounds: usize,
    s3_cap: Duration,
    hold: Duration,
    s4_sizes: Vec<usize>,
    s4_ttl: Duration,
    s4_window: Duration,
    s5_batch: usize,
    s5_batches: usize,
    s6_time: Duration,
    scenarios: [bool; 7],
    contenders: Vec<Kind>,
}

impl Config {
    fn full() -> Config {
        Config {
            quick: false,
            rounds: 3,
            s1_ops: 3000,
            s2_callers: vec![64, 256],
            s2_time: Duration::from_millis(1500),
            s2_rounds: 5,
            s3: vec![(8, 400), (64, 640)],
            s3_rounds: 2,
            s3_cap: Duration::from_secs(12),
            hold: Duration::from_millis(1),
            s4_sizes: vec![10_000, 100_000],
            s4_ttl: Duration::from_secs(10),
            s4_window: Duration::from_secs(10),
            s5_batch: 2_000,
            s5_batches: 400,
            s6_time: Duration::from_secs(1),
            scenarios: [true; 7],
            contenders: Kind::ALL.to_vec(),
        }
    }

    fn quick() -> Config {
        Config {
            quick: true,
            rounds: 1,
            s1_ops: 300,
            s2_callers: vec![64, 256],
            s2_time: Duration::from_millis(300),
            s2_rounds: 1,
            s3: vec![(8, 48), (64, 128)],
            s3_rounds: 1,
            s3_cap: Duration::from_secs(3),
            hold: Duration::from_millis(1),
            s4_sizes: vec![1_000, 4_000],
            s4_ttl: Duration::from_millis(1500),
            s4_window: Duration::from_secs(1),
            s5_batch: 2_000,
            s5_batches: 20,
            s6_time: Duration::from_millis(200),
            scenarios: [true; 7],
            contenders: Kind::ALL.to_vec(),
        }
    }
}

fn usage() -> String {
    "usage: lockbench [--quick] [--rounds N] [--only 1,2,3,4,5,6,7] [--contenders floor,floor-wire,guard,run,attr,rslock,dlock] [--callers 64,256 (scenario 2)]".into()
}

fn parse_args(args: &[String]) -> Res<Config> {
    let mut cfg = if args.iter().any(|a| a == "--quick") {
        Config::quick()
    } else {
        Config::full()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => {}
            "--rounds" => {
                let n: usize = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(usage)?;
                cfg.rounds = n;
                cfg.s2_rounds = n;
                cfg.s3_rounds = n;
            }
            "--only" => {
                let list = it.next().ok_or_else(usage)?;
                cfg.scenarios = [false; 7];
                for s in list.split(',') {
                    let i: usize = s
                        .trim()
                        .trim_start_matches(['s', 'S'])
                        .parse()
                        .ok()
                        .filter(|i| (1..=7).contains(i))
                        .ok_or_else(usage)?;
                    cfg.scenarios[i - 1] = true;
                }
            }
            "--callers" => {
                let list = it.next().ok_or_else(usage)?;
                let mut sizes = Vec::new();
                for n in list.split(',') {
                    sizes.push(
                        n.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(usage)?,
                    );
                }
                cfg.s2_callers = sizes;
            }
            "--contenders" => {
                let list = it.next().ok_or_else(usage)?;
                let mut ks = Vec::new();
                for id in list.split(',') {
                    ks.push(Kind::from_id(id.trim()).ok_or_else(usage)?);
                }
                cfg.contenders = ks;
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument `{other}`\n{}", usage())),
        }
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lockbench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.first().map(String::as_str) == Some("--s4-worker") {
        return match rt.block_on(s4_worker(&args[1..])) {
            Ok(()) => {
                // Exit without dropping 100k held locks one by one; their keys expire or are flushed.
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("lockbench s4 worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One target and how this run measured up.
struct Target {
    scenario: &'static str,
    what: String,
    measured: String,
    met: bool,
}

#[derive(Default)]
struct Report {
    targets: Vec<Target>,
}

impl Report {
    fn check(&mut self, scenario: &'static str, what: String, measured: String, met: bool) {
        self.targets.push(Target {
            scenario,
            what,
            measured,
            met,
        });
    }
}

fn rotated(ks: &[Kind], round: usize) -> Vec<Kind> {
    let mut v = ks.to_vec();
    if !v.is_empty() {
        let n = v.len();
        v.rotate_left(round % n);
    }
    v
}

async fn raw_conn(url: &str) -> Res<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())
}

async fn flushall(url: &str) -> Res<()> {
    let mut c = raw_conn(url).await?;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut c)
        .await
        .map_err(|e| e.to_string())
}

/// Round-trip time of `PING` on a multiplexed connection: median of `n`.
async fn ping_rtt(url: &str, n: usize) -> Res<Duration> {
    let mut c = raw_conn(url).await?;
    let mut s = Samples::new();
    for i in 0..n + 50 {
        let t = Instant::now();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        if i >= 50 {
            s.push(t.elapsed());
        }
    }
    Ok(s.p50())
}

async fn run(cfg: Config) -> Res<()> {
    let started = std::time::Instant::now();
    let server =
        RedisServer::try_spawn_with(&[]).map_err(|e| format!("cannot start redis-server: {e}"))?;
    let url = server.url();
    let version = server
        .cli(&["INFO", "server"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("redis_version:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let rtt = ping_rtt(&url, 500).await?;
    println!("# lockbench{}", if cfg.quick { " --quick" } else { "" });
    println!();
    println!(
        "machine: {} cores ({}), redis-server {version} on loopback (PING round trip p50 {}), tokio multi-thread runtime with {} workers",
        sys::cores(),
        sys::cpu_model(),
        fmt_dur(rtt),
        sys::cores()
    );
    println!(
        "contenders: {}",
        cfg.contenders
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    let mut report = Report::default();
    if cfg.scenarios[0] {
        s1(&cfg, &url, &mut report).await?;
    }
    if cfg.scenarios[1] {
        s2(&cfg, &url, &mut report).await?;
    }
    if cfg.scenarios[2] {
        s3(&cfg, &url, rtt, &mut report).await?;
    }
    if cfg.scenarios[3] {
        s4(&cfg, &url, &mut report).await?;
    }
    if cfg.scenarios[4] {
        s5_quick(&cfg, &mut report).await?;
    }
    if cfg.scenarios[5] {
        s6(&cfg).await?;
    }
    if cfg.scenarios[6] {
        s7(&cfg).await?;
    }
    println!("## Targets");
    println!();
    println!("| scenario | target | measured | met |");
    println!("|---|---|---|---|");
    for t in &report.targets {
        println!(
            "| {} | {} | {} | {} |",
            t.scenario,
            t.what,
            t.measured,
            if t.met { "yes" } else { "**no**" }
        );
    }
    println!();
    let met = report.targets.iter().filter(|t| t.met).count();
    println!(
        "lockbench: done in {:.0} s; {met} of {} targets met",
        started.elapsed().as_secs_f64(),
        report.targets.len()
    );
    drop(server);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Scenario 1: uncontended acquire + release, one caller, serial.

async fn s1(cfg: &Config, url: &str, report: &mut Report) -> Res<()> {
    // The machine's speed drifts over seconds (a shared VM), so the contenders take turns in small
    // blocks of operations, and each lockattr block is compared with the floor block next to it.
    let blocks = (cfg.rounds * 10).max(1);
    let per_block = (cfg.s1_ops / 10).max(10);
    let mut conns = Vec::new();
    for &k in &cfg.contenders {
        let c = Contender::connect(k, url, TTL).await?;
        let key = format!("s1:{}", k.id());
        for _ in 0..per_block + 20 {
            c.acquire_release(&key).await?;
        }
        conns.push((k, c, key));
    }
    let mut pooled: HashMap<Kind, Samples> = HashMap::new();
    let mut block_p50: HashMap<Kind, Vec<f64>> = HashMap::new();
    // Redis execution time and CPU per acquire + release (INFO around each block).
    let mut exec_us: HashMap<Kind, (f64, f64)> = HashMap::new();
    let mut info = raw_conn(url).await?;
    for block in 0..blocks {
        let n = conns.len();
        for i in 0..n {
            let (k, c, key) = &conns[(i + block) % n];
            let before = redis_info::snapshot(&mut info)
                .await
                .map_err(|e| e.to_string())?;
            let own0 = c.plain_acquires();
            let mut s = Samples::new();
            for _ in 0..per_block {
                let t = Instant::now();
                c.acquire_release(key).await?;
                s.push(t.elapsed());
            }
            let after = redis_info::snapshot(&mut info)
                .await
                .map_err(|e| e.to_string())?;
            let mut d = redis_info::delta(&before, &after);
            d.own_sets = c.plain_acquires() - own0;
            let ops = (blocks * per_block) as f64;
            let e = exec_us.entry(*k).or_default();
            e.0 += d.request_usec(k.set_is_scripted()) as f64 / ops;
            e.1 += d.cpu_s * 1e6 / ops;
            block_p50
                .entry(*k)
                .or_default()
                .push(s.p50().as_nanos() as f64 / 1e3);
            pooled.entry(*k).or_default().extend(&s);
        }
    }
    println!(
        "## S1 uncontended acquire + release, one caller, serial ({blocks} blocks × {per_block} ops per contender, interleaved)"
    );
    println!();
    println!("floor = the better of the two floors (redis-rs's multiplexed connection, own sockets) in each block");
    println!();
    println!("| contender | p50 | p99 | p50 per block (min–max) | Redis exec / acq | Redis CPU / acq | p50 / floor (pooled) | p50 / floor (median of block pairs) |");
    println!("|---|---|---|---|---|---|---|---|");
    let floor = FLOORS
        .iter()
        .filter_map(|k| pooled.get_mut(k).map(|s| s.p50()))
        .min();
    let floor_blocks = best_floor(&block_p50, f64::min);
    for k in &cfg.contenders {
        let Some(s) = pooled.get_mut(k) else { continue };
        let p50 = s.p50();
        let ratio = floor.map(|f| p50.as_secs_f64() / f.as_secs_f64());
        let paired = floor_blocks
            .as_ref()
            .map(|f| paired_ratio(&block_p50[k], f));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            k.name(),
            fmt_dur(p50),
            fmt_dur(s.p99()),
            spread(&block_p50[k], fmt_us),
            fmt_us(exec_us[k].0),
            fmt_us(exec_us[k].1),
            ratio.map_or("-".into(), |r| format!("{r:.2}×")),
            paired.map_or("-".into(), |r| format!("{r:.3}×")),
        );
        if let (Some(r), true) = (paired, k.is_lockattr()) {
            report.check(
                "S1",
                format!("{}: p50 ≤ 1.05 × floor", k.name()),
                format!("{r:.3}×"),
                r <= 1.05,
            );
        }
    }
    println!();
    Ok(())
}

/// The two floors: the same two commands on redis-rs's multiplexed connection and on sockets the
/// callers own. Ratios to "the floor" are to the better of the two, measurement by measurement.
const FLOORS: [Kind; 2] = [Kind::Floor, Kind::FloorWire];

/// The better floor of each measurement (`pick`: `f64::min` for latencies, `f64::max` for rates),
/// from the floors among `m`; `None` without any.
fn best_floor(m: &HashMap<Kind, Vec<f64>>, pick: fn(f64, f64) -> f64) -> Option<Vec<f64>> {
    let mut floors = FLOORS.iter().filter_map(|k| m.get(k));
    let first = floors.next()?.clone();
    Some(floors.fold(first, |best, f| {
        best.iter().zip(f).map(|(a, b)| pick(*a, *b)).collect()
    }))
}

/// The median of the ratios `mine[i] / floor[i]` of measurements taken next to each other.
fn paired_ratio(mine: &[f64], floor: &[f64]) -> f64 {
    let ratios: Vec<f64> = mine.iter().zip(floor).map(|(m, f)| m / f).collect();
    median(&ratios)
}

// ---------------------------------------------------------------------------------------------------
// Scenario 2: throughput with many concurrent callers on distinct keys.

async fn s2(cfg: &Config, url: &str, report: &mut Report) -> Res<()> {
    println!(
        "## S2 throughput, concurrent callers on distinct keys ({} rounds × {:.1} s per contender and size, interleaved; ratios: median of per-round ratios)",
        cfg.s2_rounds,
        cfg.s2_time.as_secs_f64()
    );
    println!();
    println!("floor = the better of the two floors (redis-rs's multiplexed connection, own sockets) in each round");
    println!();
    println!("| contender | callers | acquire+release /s (median) | per round (min–max) | latency p50 | latency p99 | requests / acq | client CPU / acq | Redis CPU / acq | Redis exec / acq | cores busy | × floor | × rslock |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &callers in &cfg.s2_callers {
        let mut rates: HashMap<Kind, Vec<f64>> = HashMap::new();
        let mut lat: HashMap<Kind, Samples> = HashMap::new();
        // Client CPU, Redis CPU, acquisitions, Redis execution time, requests, wall time (seconds).
        let mut cpu: HashMap<Kind, (f64, f64, f64, f64, f64, f64)> = HashMap::new();
        let mut info = raw_conn(url).await?;
        for round in 0..cfg.s2_rounds {
            for k in rotated(&cfg.contenders, round) {
                let c = Arc::new(Contender::connect(k, url, TTL).await?);
                let before = redis_info::snapshot(&mut info)
                    .await
                    .map_err(|e| e.to_string())?;
                let cpu0 = sys::cpu_time();
                let own0 = c.plain_acquires();
                let (rate, s, ops) = s2_once(
                    &c,
                    callers,
                    cfg.s2_time,
                    &format!("s2:{round}:{callers}:{}", k.id()),
                )
                .await?;
                let client_cpu = (sys::cpu_time() - cpu0).as_secs_f64();
                let after = redis_info::snapshot(&mut info)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut d = redis_info::delta(&before, &after);
                d.own_sets = c.plain_acquires() - own0;
                let e = cpu.entry(k).or_default();
                e.0 += client_cpu;
                e.1 += d.cpu_s;
                e.2 += ops as f64;
                e.3 += d.request_usec(k.set_is_scripted()) as f64 / 1e6;
                e.4 += d.requests(k.set_is_scripted()) as f64;
                e.5 += ops as f64 / rate;
                rates.entry(k).or_default().push(rate);
                lat.entry(k).or_default().extend(&s);
            }
        }
        // Ratios: the median over rounds of this round's rate against the same round's floor (or
        // rslock), so a drift of the machine's speed between rounds cancels out.
        let floor = best_floor(&rates, f64::max);
        let rs = rates.get(&Kind::Rslock).cloned();
        for k in &cfg.contenders {
            let Some(r) = rates.get(k) else { continue };
            let m = median(r);
            let s = lat.get_mut(k).expect("samples");
            let vs_floor = floor.as_ref().map(|f| paired_ratio(r, f));
            let vs_rs = rs.as_ref().map(|f| paired_ratio(r, f));
            let (ccpu, rcpu, ops, rexec, reqs, wall) = cpu[k];
            println!(
                "| {} | {callers} | {} | {} | {} | {} | {:.2} | {} | {} | {} | {:.2} | {} | {} |",
                k.name(),
                fmt_rate(m),
                spread(r, fmt_rate),
                fmt_dur(s.p50()),
                fmt_dur(s.p99()),
                reqs / ops,
                fmt_us(ccpu / ops * 1e6),
                fmt_us(rcpu / ops * 1e6),
                fmt_us(rexec / ops * 1e6),
                // Client and server CPU over the measured time: how much of the machine the
                // contender kept busy (the rest was idle, or other tenants').
                (ccpu + rcpu) / wall,
                vs_floor.map_or("-".into(), |v| format!("{v:.2}×")),
                vs_rs.map_or("-".into(), |v| format!("{v:.2}×")),
            );
            if k.is_lockattr() {
                if let Some(v) = vs_floor {
                    report.check(
                        "S2",
                        format!("{}, {callers} callers: ≥ 0.9 × floor", k.name()),
                        format!("{v:.2}×"),
                        v >= 0.9,
                    );
                }
                if let Some(v) = vs_rs {
                    report.check(
                        "S2",
                        format!("{}, {callers} callers: ≥ 1.4 × rslock", k.name()),
                        format!("{v:.2}×"),
                        v >= 1.4,
                    );
                }
            }
        }
    }
    println!();
    Ok(())
}

async fn s2_once(
    c: &Arc<Contender>,
    callers: usize,
    time: Duration,
    prefix: &str,
) -> Res<(f64, Samples, usize)> {
    // Warm up every caller's key (and the connection) first.
    for i in 0..callers.min(32) {
        c.acquire_release(&format!("{prefix}:{i}")).await?;
    }
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(callers);
    for i in 0..callers {
        let c = c.clone();
        let key = format!("{prefix}:{i}");
        let mut go = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            let start = match go.wait_for(|g| g.is_some()).await {
                Ok(g) => g.expect("set"),
                Err(_) => return Ok::<_, String>((0usize, Samples::new(), Instant::now())),
            };
            let deadline = start + time;
            let mut s = Samples::new();
            let mut n = 0usize;
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                c.acquire_release(&key).await?;
                s.push(t.elapsed());
                n += 1;
            }
            Ok((n, s, Instant::now()))
        }));
    }
    tokio::task::yield_now().await;
    let start = Instant::now();
    go_tx.send_replace(Some(start));
    let mut total = 0usize;
    let mut all = Samples::new();
    let mut end = start;
    for t in tasks {
        let (n, s, done) = t.await.map_err(|e| e.to_string())??;
        total += n;
        all.extend(&s);
        end = end.max(done);
    }
    Ok((
        total as f64 / (end - start).as_secs_f64(),
        all,
        total + callers.min(32),
    ))
}

// ---------------------------------------------------------------------------------------------------
// Scenario 3: contention on one key.

struct S3Run {
    total: Duration,
    holds: Vec<(usize, Hold)>,
    per_caller: Vec<usize>,
    delta: Delta,
}

async fn s3_once(
    c: &Arc<Contender>,
    url: &str,
    callers: usize,
    acquisitions: usize,
    hold_for: Duration,
    cap: Duration,
    key: &str,
) -> Res<S3Run> {
    // Warm up: connection, script cache, the release-notice subscription path.
    c.acquire_release(&format!("{key}:warm")).await?;
    let mut info = raw_conn(url).await?;
    let before = redis_info::snapshot(&mut info)
        .await
        .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let count = Arc::new(AtomicUsize::new(0));
    let holds = Arc::new(Mutex::new(Vec::with_capacity(acquisitions)));
    let last_done = Arc::new(Mutex::new(None::<Instant>));
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let c = c.clone();
        let key = key.to_owned();
        let mut stop = stop_rx.clone();
        let stop_tx = stop_tx.clone();
        let count = count.clone();
        let holds = holds.clone();
        let last_done = last_done.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0usize;
            while !*stop.borrow() {
                match c.hold_contended(&key, hold_for, &mut stop).await? {
                    Some(h) => {
                        let done = Instant::now();
                        let i = count.fetch_add(1, Ordering::AcqRel);
                        if i < acquisitions {
                            mine += 1;
                            holds.lock().expect("holds").push((caller, h));
                            if i + 1 == acquisitions {
                                *last_done.lock().expect("done") = Some(done);
                                let _ = stop_tx.send(true);
                            }
                        }
                    }
                    None => break,
                }
            }
            Ok::<_, String>(mine)
        }));
    }
    let stopper = {
        let stop_tx = stop_tx.clone();
        let failed = failed.clone();
        tokio::spawn(async move {
            tokio::time::sleep(cap).await;
            failed.store(true, Ordering::Release);
            let _ = stop_tx.send(true);
        })
    };
    let mut per_caller = Vec::with_capacity(callers);
    for t in tasks {
        per_caller.push(t.await.map_err(|e| e.to_string())??);
    }
    stopper.abort();
    let end = last_done.lock().expect("done").unwrap_or_else(Instant::now);
    // Let background releases (of callers stopped mid-way) land before reading the counters.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let after = redis_info::snapshot(&mut info)
        .await
        .map_err(|e| e.to_string())?;
    let holds = std::mem::take(&mut *holds.lock().expect("holds"));
    Ok(S3Run {
        total: end - start,
        holds,
        per_caller,
        delta: redis_info::delta(&before, &after),
    })
}

async fn s3(cfg: &Config, url: &str, rtt: Duration, report: &mut Report) -> Res<()> {
    println!(
        "## S3 contention: callers on one key, each holding it {} ({} rounds per contender and size, interleaved)",
        fmt_dur(cfg.hold),
        cfg.s3_rounds
    );
    println!();
    println!(
        "bound = sum of measured hold times + 2 × PING round trip ({}) per acquisition; cmds = every command Redis ran (INFO total_commands_processed, incl. commands inside scripts); requests = commands sent by clients (a script call counts once)",
        fmt_dur(rtt)
    );
    println!();
    println!("| contender | callers | acquisitions | total time | total / bound | hand-off p50 | hand-off p99 | requests / acq | cmds / acq | min/max per caller | overlaps | how waiters wake |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &(callers, acquisitions) in &cfg.s3 {
        struct Acc {
            totals: Vec<f64>,
            ratio: Vec<f64>,
            handoff: Samples,
            acq: usize,
            req: u64,
            cmds: u64,
            min: usize,
            max: usize,
            overlaps: usize,
        }
        let mut acc: HashMap<Kind, Acc> = HashMap::new();
        for round in 0..cfg.s3_rounds {
            for k in rotated(&cfg.contenders, round) {
                let c = Arc::new(Contender::connect(k, url, TTL).await?);
                let key = format!("s3:{round}:{callers}:{}", k.id());
                let own0 = c.plain_acquires();
                let mut r =
                    s3_once(&c, url, callers, acquisitions, cfg.hold, cfg.s3_cap, &key).await?;
                r.delta.own_sets = c.plain_acquires() - own0;
                drop(c);
                let mut holds: Vec<Hold> = r.holds.iter().map(|(_, h)| *h).collect();
                holds.sort_by_key(|h| h.acquired);
                let mut handoff = Samples::new();
                let mut overlaps = 0;
                for w in holds.windows(2) {
                    if w[1].acquired < w[0].releasing {
                        overlaps += 1;
                    } else {
                        handoff.push(w[1].acquired - w[0].releasing);
                    }
                }
                let held: Duration = holds.iter().map(|h| h.releasing - h.acquired).sum();
                let bound = held + rtt * 2 * holds.len() as u32;
                let a = acc.entry(k).or_insert(Acc {
                    totals: vec![],
                    ratio: vec![],
                    handoff: Samples::new(),
                    acq: 0,
                    req: 0,
                    cmds: 0,
                    min: usize::MAX,
                    max: 0,
                    overlaps: 0,
                });
                a.totals.push(r.total.as_secs_f64());
                a.ratio
                    .push(r.total.as_secs_f64() / bound.as_secs_f64().max(1e-9));
                a.handoff.extend(&handoff);
                a.acq += holds.len();
                a.req += r.delta.requests(k.set_is_scripted());
                a.cmds += r.delta.total;
                a.min = a.min.min(r.per_caller.iter().copied().min().unwrap_or(0));
                a.max = a.max.max(r.per_caller.iter().copied().max().unwrap_or(0));
                a.overlaps += overlaps;
            }
        }
        for k in &cfg.contenders {
            let Some(a) = acc.get_mut(k) else { continue };
            let acq = a.acq.max(1) as f64;
            let req = a.req as f64 / acq;
            let ratio = median(&a.ratio);
            let p99 = a.handoff.p99();
            println!(
                "| {} | {callers} | {} | {} | {:.2}× | {} | {} | {req:.2} | {:.2} | {}/{} | {} | {} |",
                k.name(),
                a.acq,
                fmt_dur(Duration::from_secs_f64(median(&a.totals))),
                ratio,
                fmt_dur(a.handoff.p50()),
                fmt_dur(p99),
                a.cmds as f64 / acq,
                a.min,
                a.max,
                a.overlaps,
                k.wait_mechanism(),
            );
            if callers == 8 && k.is_lockattr() {
                report.check(
                    "S3",
                    format!("{}, 8 callers: ≤ 2.5 requests per acquisition", k.name()),
                    format!(
                        "{req:.2} ({:.2} incl. script commands)",
                        a.cmds as f64 / acq
                    ),
                    req <= 2.5,
                );
                report.check(
                    "S3",
                    format!("{}, 8 callers: hand-off p99 ≤ 2 ms", k.name()),
                    fmt_dur(p99),
                    p99 <= Duration::from_millis(2),
                );
                report.check(
                    "S3",
                    format!("{}, 8 callers: total ≤ 1.2 × bound", k.name()),
                    format!("{ratio:.2}×"),
                    ratio <= 1.2,
                );
            }
            if k.is_lockattr() && a.overlaps > 0 {
                report.check(
                    "S3",
                    format!("{}, {callers} callers: mutual exclusion", k.name()),
                    format!("{} overlapping holds", a.overlaps),
                    false,
                );
            }
        }
    }
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Scenario 4: many held locks with auto-renewal, each contender in a process of its own.

const S4_KINDS: [Kind; 3] = [Kind::Guard, Kind::Rslock, Kind::DLock];

async fn s4(cfg: &Config, url: &str, report: &mut Report) -> Res<()> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    println!(
        "## S4 renewal at scale: locks held at once with auto-renew (TTL {}, measured over {} after one renewal period; one process per run)",
        fmt_dur(cfg.s4_ttl),
        fmt_dur(cfg.s4_window)
    );
    println!();
    println!("| contender | locks | acquire all | renewal round trips /s | locks renewed /s | Redis cmds /s | client CPU (% of one core) | client CPU / renewal | Redis CPU (% of one core) | RSS per held lock | still held |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &cfg.s4_sizes {
        for k in S4_KINDS {
            if !cfg.contenders.contains(&k) {
                continue;
            }
            let out = tokio::process::Command::new(&exe)
                .arg("--s4-worker")
                .arg(k.id())
                .arg(n.to_string())
                .arg(cfg.s4_ttl.as_millis().to_string())
                .arg(cfg.s4_window.as_millis().to_string())
                .arg(url)
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("cannot run the S4 worker: {e}"))?;
            flushall(url).await?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("S4RESULT ")) else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if k == Kind::Guard {
                    return Err(format!(
                        "S4 worker for {} with {n} locks failed ({}): {stdout}{stderr}",
                        k.name(),
                        out.status,
                    ));
                }
                // A peer that cannot take its locks on a loaded machine is a finding of the run,
                // not a breakage of lockbench: distributed-lock gives up on a grant that arrives
                // with less than its minimum validity left and leaves the key set for a TTL.
                let why = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                println!(
                    "| {} | {n} | failed: {} | - | - | - | - | - | - | - | 0/{n} |",
                    k.name(),
                    why.replace('|', "/")
                );
                continue;
            };
            let v: HashMap<&str, f64> = line
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(a, b)| Some((a, b.parse().ok()?)))
                .collect();
            let g = |key: &str| v.get(key).copied().unwrap_or(f64::NAN);
            let window = g("window_s");
            let cpu_pct = g("cpu_s") / window * 100.0;
            let renewed = g("renewed") / window;
            let per_lock = (g("rss1") - g("rss0")) / n as f64;
            println!(
                "| {} | {n} | {} | {} | {} | {} | {cpu_pct:.2} % | {} | {:.1} % | {:.0} B | {}/{n} |",
                k.name(),
                fmt_dur(Duration::from_secs_f64(g("acquire_s"))),
                fmt_rate(g("script_calls") / window),
                fmt_rate(renewed),
                fmt_rate(g("cmds") / window),
                if renewed > 0.0 {
                    fmt_us(g("cpu_s") / g("renewed") * 1e6)
                } else {
                    "-".into()
                },
                g("redis_cpu_s") / window * 100.0,
                per_lock,
                if g("held").is_nan() { "?".into() } else { format!("{}", g("held")) },
            );
            if k == Kind::Guard && n >= 100_000 {
                report.check(
                    "S4",
                    format!("{n} held locks renewed: ≤ 5 % of one core"),
                    format!("{cpu_pct:.2} %"),
                    cpu_pct <= 5.0,
                );
                report.check(
                    "S4",
                    format!("{n} held locks: ≤ 1 KiB resident per lock"),
                    format!("{per_lock:.0} B"),
                    per_lock <= 1024.0,
                );
            }
        }
    }
    println!();
    Ok(())
}

async fn s4_worker(args: &[String]) -> Res<()> {
    let [kind, n, ttl_ms, window_ms, url] = args else {
        return Err("usage: --s4-worker KIND N TTL_MS WINDOW_MS URL".into());
    };
    let kind = Kind::from_id(kind).ok_or("unknown contender")?;
    let n: usize = n.parse().map_err(|_| "bad N")?;
    let ttl = Duration::from_millis(ttl_ms.parse().map_err(|_| "bad TTL")?);
    let window = Duration::from_millis(window_ms.parse().map_err(|_| "bad window")?);
    let c = Contender::connect(kind, url, ttl).await?;
    let mut info = raw_conn(url).await?;
    // Warm up the connection and the allocator's arenas with a few short-lived locks.
    for i in 0..64 {
        if kind != Kind::Rslock {
            c.acquire_release(&format!("s4warm-{}:{i}", kind.id()))
                .await?;
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rss0 = sys::rss_bytes();
    let t = Instant::now();
    // Keys of its own per contender and size: a previous worker's locks may outlive it by a TTL (a
    // peer that had not released them all when its process exited).
    let prefix = format!("s4-{}-{n}", kind.id());
    let held = hold::hold_many(&c, &prefix, n, ttl, 256).await?;
    let acquire_s = t.elapsed().as_secs_f64();
    // Let one full renewal period pass so every lock has been renewed once and memory is in steady state.
    tokio::time::sleep(ttl / 3 + Duration::from_millis(300)).await;
    let cpu0 = sys::cpu_time();
    let before = redis_info::snapshot(&mut info)
        .await
        .map_err(|e| e.to_string())?;
    let w = Instant::now();
    tokio::time::sleep(window).await;
    let after = redis_info::snapshot(&mut info)
        .await
        .map_err(|e| e.to_string())?;
    let window_s = w.elapsed().as_secs_f64();
    let cpu_s = (sys::cpu_time() - cpu0).as_secs_f64();
    let rss1 = sys::rss_bytes();
    let d = redis_info::delta(&before, &after);
    let still_held = match &held {
        hold::Held::Guards(g) => format!("{}", g.iter().filter(|g| g.is_held()).count()),
        hold::Held::DLock(h) => {
            use distributed_lock_core::traits::LockHandle;
            format!("{}", h.iter().filter(|h| !*h.lost_token().borrow()).count())
        }
        hold::Held::Rslock { tasks, .. } => {
            format!("{}", tasks.iter().filter(|t| !t.is_finished()).count())
        }
    };
    println!(
        "S4RESULT n={} acquire_s={acquire_s:.3} window_s={window_s:.3} cpu_s={cpu_s:.3} rss0={rss0} rss1={rss1} cmds={} script_calls={} renewed={} redis_cpu_s={:.3} held={still_held}",
        held.len(),
        d.total,
        d.script_calls(),
        d.calls("pexpire") + d.calls("set"),
        d.cpu_s,
    );
    if let hold::Held::Rslock { stop, .. } = &held {
        let _ = stop.send(true);
    }
    std::mem::forget(held);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Scenario 5 (short form; `cargo bench -p lockattr-bench` has the criterion version).

async fn s5_quick(cfg: &Config, report: &mut Report) -> Res<()> {
    // On a thread of its own with a current-thread runtime: no work stealing or other tasks between
    // the two variants, so what differs is the code under test.
    let (batch, pairs) = (cfg.s5_batch, cfg.s5_batches);
    let (attr, hand) = std::thread::spawn(move || -> Result<(Vec<f64>, Vec<f64>), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(s5_batches(batch, pairs))
    })
    .join()
    .map_err(|_| "scenario 5 panicked".to_owned())??;
    // Adjacent batches ran under the same machine conditions: the median of their ratios is the
    // estimate least moved by noise that comes and goes.
    let ratios: Vec<f64> = attr.iter().zip(&hand).map(|(a, h)| a / h).collect();
    let ratio = median(&ratios);
    let (a, h) = (median(&attr), median(&hand));
    println!(
        "## S5 attribute overhead, memory backend ({pairs} pairs of adjacent batches of {batch} calls, order alternating; criterion: `cargo bench -p lockattr-bench`)"
    );
    println!();
    println!(
        "| variant | per call (median of batches) | batches (min–max) | / hand-written (median of pair ratios) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| #[distributed_lock] fn | {} | {} | {ratio:.3}× (pairs: {}) |",
        fmt_us(a / 1e3),
        spread(&attr, |v| fmt_us(v / 1e3)),
        spread(&ratios, |v| format!("{v:.3}×"))
    );
    println!(
        "| hand-written client.lock(format!(..)).ttl(..).run(..) | {} | {} | 1.000× |",
        fmt_us(h / 1e3),
        spread(&hand, |v| fmt_us(v / 1e3))
    );
    println!();
    report.check(
        "S5",
        "attribute within 2 % of hand-written (memory backend)".into(),
        format!("{ratio:.3}×"),
        ratio <= 1.02,
    );
    Ok(())
}

/// `pairs` pairs of timed batches of `batch` calls, attribute and hand-written back to back (which goes
/// first alternates): nanoseconds per call of each batch.
async fn s5_batches(batch: usize, pairs: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let client = LockClient::memory();
    let mut attr = Vec::with_capacity(pairs);
    let mut hand = Vec::with_capacity(pairs);
    let mut id = 0u64;
    // Warm-up.
    for _ in 0..batch.max(1000) {
        id = (id + 1) % 4096;
        s5::with_attribute(&client, id)
            .await
            .map_err(|e| e.to_string())?;
        s5::by_hand(&client, id).await.map_err(|e| e.to_string())?;
    }
    for p in 0..pairs {
        let attr_first = p % 2 == 0;
        for which in [attr_first, !attr_first] {
            let t = Instant::now();
            for _ in 0..batch {
                id = (id + 1) % 4096;
                if which {
                    s5::with_attribute(&client, id)
                        .await
                        .map_err(|e| e.to_string())?;
                } else {
                    s5::by_hand(&client, id).await.map_err(|e| e.to_string())?;
                }
            }
            let per = t.elapsed().as_nanos() as f64 / batch as f64;
            if which {
                attr.push(per);
            } else {
                hand.push(per);
            }
        }
    }
    Ok((attr, hand))
}

// ---------------------------------------------------------------------------------------------------
// Scenario 6: the memory backend.

async fn s6(cfg: &Config) -> Res<()> {
    println!("## S6 memory backend: acquisitions per second");
    println!();
    println!("| how | callers | acquire+release /s |");
    println!("|---|---|---|");
    let client = LockClient::memory();
    // Serial, guard API.
    for (label, use_run) in [("acquire/release", false), ("run(..)", true)] {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < cfg.s6_time {
            for _ in 0..256 {
                if use_run {
                    client
                        .lock("s6")
                        .ttl(TTL)
                        .run(async {})
                        .await
                        .map_err(|e| e.to_string())?;
                } else {
                    let g = client
                        .lock("s6")
                        .ttl(TTL)
                        .acquire()
                        .await
                        .map_err(|e| e.to_string())?;
                    g.release().await.map_err(|e| e.to_string())?;
                }
                n += 1;
            }
        }
        println!(
            "| {label} | 1 | {} |",
            fmt_rate(n as f64 / t.elapsed().as_secs_f64())
        );
    }
    for callers in [2usize, 64] {
        let start = Instant::now();
        let deadline = start + cfg.s6_time;
        let mut tasks = Vec::new();
        for i in 0..callers {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("s6:{i}");
                let mut n = 0u64;
                while Instant::now() < deadline {
                    for _ in 0..64 {
                        let g = client
                            .lock(key.as_str())
                            .ttl(TTL)
                            .acquire()
                            .await
                            .map_err(|e| e.to_string())?;
                        g.release().await.map_err(|e| e.to_string())?;
                        n += 1;
                    }
                }
                Ok::<_, String>(n)
            }));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await.map_err(|e| e.to_string())??;
        }
        println!(
            "| acquire/release, distinct keys | {callers} | {} |",
            fmt_rate(n as f64 / start.elapsed().as_secs_f64())
        );
    }
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Scenario 7: lockattr on every backend — one node, Redlock over 3 and 5 masters, a 3+3 Cluster.

async fn s7(cfg: &Config) -> Res<()> {
    use lockattr_runtime::testing::RedisCluster;
    let (ops, window, handoffs) = if cfg.quick {
        (200, Duration::from_millis(300), 48)
    } else {
        (2000, Duration::from_secs(2), 400)
    };
    let servers: Vec<RedisServer> = (0..5).map(|_| RedisServer::spawn()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let cluster = tokio::task::spawn_blocking(RedisCluster::spawn)
        .await
        .map_err(|e| format!("cluster setup: {e}"))?;
    let backends: Vec<(&str, LockClient)> = vec![
        (
            "one node",
            connect_with(LockClient::builder().url(&urls[0])).await?,
        ),
        (
            "Redlock, 3 masters",
            connect_with(LockClient::builder().redlock(&urls[..3])).await?,
        ),
        (
            "Redlock, 5 masters",
            connect_with(LockClient::builder().redlock(&urls[..5])).await?,
        ),
        (
            "Cluster, 3 primaries + 3 replicas",
            connect_with(LockClient::builder().cluster(&cluster.urls())).await?,
        ),
    ];
    println!(
        "## S7 lockattr on every backend (acquire + release; serial: {ops} ops; throughput: 64 callers on distinct keys for {:.1} s; hand-off: 8 tasks of one client on one key, each holding it {}, {handoffs} acquisitions)",
        window.as_secs_f64(),
        fmt_dur(cfg.hold)
    );
    println!();
    println!("| backend | serial p50 | serial p99 | acquire+release /s, 64 callers | × one node | hand-off p50 | hand-off p99 |");
    println!("|---|---|---|---|---|---|---|");
    let mut base = None;
    for (name, client) in &backends {
        let mut s = Samples::new();
        for i in 0..ops + ops / 10 {
            let t = Instant::now();
            let g = client
                .lock(format!("s7:serial:{}", i % 64))
                .ttl(TTL)
                .acquire()
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            g.release().await.map_err(|e| format!("{name}: {e}"))?;
            if i >= ops / 10 {
                s.push(t.elapsed());
            }
        }
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..64)
            .map(|c| {
                let (client, done, stop) = (client.clone(), done.clone(), stop.clone());
                tokio::spawn(async move {
                    let key = format!("s7:tp:{c}");
                    while !stop.load(Ordering::Relaxed) {
                        let g = client
                            .lock(key.as_str())
                            .ttl(TTL)
                            .acquire()
                            .await
                            .map_err(|e| e.to_string())?;
                        g.release().await.map_err(|e| e.to_string())?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = t0.elapsed();
        for t in tasks {
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let rate = done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
        let base_rate = *base.get_or_insert(rate);
        let mut h = s7_handoffs(client, handoffs, cfg.hold)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        println!(
            "| {name} | {} | {} | {} | {:.2}× | {} | {} |",
            fmt_dur(s.p50()),
            fmt_dur(s.p99()),
            fmt_rate(rate),
            rate / base_rate,
            fmt_dur(h.p50()),
            fmt_dur(h.p99())
        );
    }
    println!();
    drop(servers);
    drop(cluster);
    Ok(())
}

/// 8 tasks of `client` take turns on one key, each holding it for `hold`, until `total` acquisitions:
/// the hand-off times (a holder about to release → the next holder has it).
async fn s7_handoffs(client: &LockClient, total: usize, hold: Duration) -> Res<Samples> {
    let left = Arc::new(AtomicUsize::new(total));
    let released = Arc::new(Mutex::new(None::<Instant>));
    let samples = Arc::new(Mutex::new(Samples::new()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, left) = (client.clone(), left.clone());
            let (released, samples) = (released.clone(), samples.clone());
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let g = client
                        .lock("s7:one")
                        .ttl(TTL)
                        .wait(Duration::from_secs(10))
                        .acquire()
                        .await
                        .map_err(|e| e.to_string())?;
                    let now = Instant::now();
                    if let Some(at) = released.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        samples
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(now - at);
                    }
                    tokio::time::sleep(hold).await;
                    *released.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    g.release().await.map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let s = std::mem::replace(
        &mut *samples.lock().unwrap_or_else(|p| p.into_inner()),
        Samples::new(),
    );
    Ok(s)
}

async fn connect_with(b: lockattr_runtime::LockClientBuilder) -> Res<LockClient> {
    b.prefix("bench7")
        .connect()
        .await
        .map_err(|e| e.to_string())
}
