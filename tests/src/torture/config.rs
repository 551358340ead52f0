//! Settings of a torture run and the kinds of faults it injects.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// One kind of injected fault. Faults run one at a time, each bounded in time (at most 3 × TTL plus
/// the time a restart takes), separated by quiet gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `SIGSTOP` one worker process for 0.5–3 × TTL, then `SIGCONT` (a GC-like pause of holders).
    WorkerPause,
    /// `SIGKILL` one worker process and start a new one in its slot.
    WorkerKill,
    /// `SIGSTOP` the lock `redis-server` for 1.2–3 × TTL.
    LockSigstop,
    /// `DEBUG SLEEP` on the lock server for 1.2–3 × TTL.
    LockDebugSleep,
    /// `CLIENT PAUSE .. ALL` on the lock server for 1.2–3 × TTL.
    LockClientPause,
    /// Kill the lock server and start a new, empty one on the same port (all locks and fence counters
    /// lost).
    LockRestart,
    /// Blackhole one worker's connection to the lock server for 1.2–3 × TTL, then cut its connections
    /// and heal (a partition that ends with the connections reset).
    Partition,
    /// Delay one worker's lock traffic by 0.6–1.5 × TTL each way for 1.2–3 × TTL (a partition whose
    /// packets arrive late: renewals are confirmed after the lease could have expired).
    LockDelayLong,
    /// Delay one worker's lock traffic by 2–20 % of the TTL each way for 1–3 × TTL (a slow link).
    LockDelayShort,
    /// Cut every connection of one worker to the lock server (it reconnects).
    LockCut,
    /// Make the next critical section of one single-threaded worker block its thread (and so the whole
    /// runtime, watchdog included) for 1.2–3 × TTL between its fenced read and write: an executor stall
    /// or GC pause at the worst moment. Its write then goes out with a stale fence.
    HolderStall,
    /// Delay one worker's traffic to the resource by 0.3–1.5 × TTL for 1–3 × TTL, so its fenced writes
    /// can arrive after its lock was lost and taken by someone else.
    ResourceDelay,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::WorkerPause,
        FaultKind::WorkerKill,
        FaultKind::LockSigstop,
        FaultKind::LockDebugSleep,
        FaultKind::LockClientPause,
        FaultKind::LockRestart,
        FaultKind::Partition,
        FaultKind::LockDelayLong,
        FaultKind::LockDelayShort,
        FaultKind::LockCut,
        FaultKind::HolderStall,
        FaultKind::ResourceDelay,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::WorkerPause => "worker-sigstop",
            FaultKind::WorkerKill => "worker-sigkill",
            FaultKind::LockSigstop => "lock-sigstop",
            FaultKind::LockDebugSleep => "lock-debug-sleep",
            FaultKind::LockClientPause => "lock-client-pause",
            FaultKind::LockRestart => "lock-restart",
            FaultKind::Partition => "partition",
            FaultKind::LockDelayLong => "lock-delay-long",
            FaultKind::LockDelayShort => "lock-delay-short",
            FaultKind::LockCut => "lock-conn-cut",
            FaultKind::HolderStall => "holder-stall",
            FaultKind::ResourceDelay => "resource-delay",
        }
    }

    /// Whether, during this fault, no renewal sent after it began can be confirmed before the lease of
    /// the affected holders runs out, so each of them must be told by `fault start + TTL`.
    pub fn blocks_renewals(self) -> bool {
        matches!(
            self,
            FaultKind::LockSigstop
                | FaultKind::LockDebugSleep
                | FaultKind::LockClientPause
                | FaultKind::LockRestart
                | FaultKind::Partition
                | FaultKind::LockDelayLong
        )
    }

    /// Whether the fault affects every worker (else one target worker).
    pub fn affects_all_workers(self) -> bool {
        matches!(
            self,
            FaultKind::LockSigstop
                | FaultKind::LockDebugSleep
                | FaultKind::LockClientPause
                | FaultKind::LockRestart
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind `{s}`; known: {}", names.join(", "))
            })
    }
}

/// Settings of one torture run.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long workers contend while faults are injected (the stop phase comes on top).
    pub duration: Duration,
    /// Worker OS processes.
    pub processes: usize,
    /// Contending tasks per worker process.
    pub tasks: usize,
    /// Number of distinct lock keys.
    pub keys: usize,
    /// Lock TTL (every lock is taken with `auto_renew`).
    pub ttl: Duration,
    /// The lock client's command timeout.
    pub command_timeout: Duration,
    /// Seed of the coordinator's random choices (workers derive theirs from it).
    pub seed: u64,
    /// Upper bound on the number of injected faults.
    pub max_faults: usize,
    /// The kinds of faults to inject (each at least once if time allows, then at random).
    pub faults: Vec<FaultKind>,
    /// Probability that a worker wraps a lock call in a random short `tokio::time::timeout`.
    pub cancel_probability: f64,
    /// After `SIGKILL` of a holder, the key must be taken again within `ttl + reacquire_margin`.
    pub reacquire_margin: Duration,
    /// The `torture_worker` executable.
    pub worker_exe: PathBuf,
    /// Where logs and the summary go (a temporary directory, removed afterwards, when `None`).
    pub out_dir: Option<PathBuf>,
    /// Print each fault as it is injected.
    pub verbose: bool,
}

impl Config {
    /// The short run for CI: 3 processes × 3 tasks on 3 keys, TTL 500 ms, 25 s of faults, every kind
    /// at least once.
    pub fn short(worker_exe: impl Into<PathBuf>) -> Config {
        Config {
            duration: Duration::from_secs(25),
            processes: 3,
            tasks: 3,
            keys: 3,
            ttl: Duration::from_millis(500),
            command_timeout: Duration::from_millis(250),
            seed: 0x10c4_a77e,
            max_faults: 40,
            faults: FaultKind::ALL.to_vec(),
            cancel_probability: 0.1,
            reacquire_margin: Duration::from_millis(250),
            worker_exe: worker_exe.into(),
            out_dir: None,
            verbose: false,
        }
    }

    /// The usage text of the `torture` binary.
    pub const USAGE: &'static str = "\
usage: torture [options]
  --duration SECS        how long to inject faults (default 300)
  --processes N          worker processes (default 4)
  --tasks N              tasks per worker process (default 4)
  --keys N               lock keys (default 4)
  --ttl-ms MS            lock TTL (default 500)
  --command-timeout-ms MS  lock client command timeout (default 250)
  --seed N               random seed (default: from the clock)
  --max-faults N         bound on injected faults (default 10000)
  --faults a,b,..        fault kinds (default: all): worker-sigstop, worker-sigkill, lock-sigstop,
                         lock-debug-sleep, lock-client-pause, lock-restart, partition,
                         lock-delay-long, lock-delay-short, lock-conn-cut, holder-stall,
                         resource-delay
  --cancel P             probability of a random timeout around a lock call (default 0.1)
  --reacquire-margin-ms MS  allowed re-acquire delay beyond the TTL after SIGKILL (default 250)
  --worker PATH          the torture_worker binary (default: next to this one)
  --out DIR              keep logs and the summary in DIR
  --verbose              print each fault as it happens";

    /// Parse the `torture` binary's arguments (without the program name).
    pub fn from_args(args: &[String], default_worker: PathBuf) -> Result<Config, String> {
        let mut cfg = Config::short(default_worker);
        cfg.duration = Duration::from_secs(300);
        cfg.processes = 4;
        cfg.tasks = 4;
        cfg.keys = 4;
        cfg.max_faults = 10_000;
        cfg.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--verbose" {
                cfg.verbose = true;
                continue;
            }
            if flag == "--help" || flag == "-h" {
                return Err(Self::USAGE.to_owned());
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{}", Self::USAGE))?;
            let num = |v: &str| -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|e| format!("{flag} {v}: {e}\n{}", Self::USAGE))
            };
            match flag.as_str() {
                "--duration" => cfg.duration = Duration::from_secs(num(value)?),
                "--processes" => cfg.processes = num(value)?.max(2) as usize,
                "--tasks" => cfg.tasks = num(value)?.max(1) as usize,
                "--keys" => cfg.keys = num(value)?.max(1) as usize,
                "--ttl-ms" => cfg.ttl = Duration::from_millis(num(value)?.max(100)),
                "--command-timeout-ms" => {
                    cfg.command_timeout = Duration::from_millis(num(value)?.max(1))
                }
                "--seed" => cfg.seed = num(value)?,
                "--max-faults" => cfg.max_faults = num(value)? as usize,
                "--faults" => {
                    cfg.faults = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--cancel" => {
                    cfg.cancel_probability = value
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=1.0).contains(p))
                        .ok_or_else(|| format!("--cancel {value}: expected 0.0..=1.0"))?
                }
                "--reacquire-margin-ms" => {
                    cfg.reacquire_margin = Duration::from_millis(num(value)?)
                }
                "--worker" => cfg.worker_exe = PathBuf::from(value),
                "--out" => cfg.out_dir = Some(PathBuf::from(value)),
                other => return Err(format!("unknown option {other}\n{}", Self::USAGE)),
            }
        }
        Ok(cfg)
    }
}
