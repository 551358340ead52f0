//! The result of a run: counts, checks, latencies, and the summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::config::{Config, FaultKind};
use super::log::Outcome;
use super::monitor::MonitorStats;

/// One invariant and how the run fared against it.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// Short name.
    pub name: &'static str,
    /// What is checked, in plain words.
    pub what: String,
    /// How many cases were checked.
    pub checked: u64,
    /// How many broke the invariant.
    pub violations: u64,
    /// Some of the violations, described.
    pub examples: Vec<String>,
}

impl CheckResult {
    /// A check with nothing counted yet.
    pub fn new(name: &'static str, what: &str) -> CheckResult {
        CheckResult {
            name,
            what: what.to_owned(),
            checked: 0,
            violations: 0,
            examples: Vec::new(),
        }
    }
}

/// Critical sections of one key that intersected in time.
#[derive(Debug, Clone, Default)]
pub struct Overlaps {
    /// All overlaps.
    pub total: u64,
    /// The earlier holder's process was stopped (`SIGSTOP`) or its executor blocked (`holder-stall`)
    /// during its critical section.
    pub holder_paused: u64,
    /// The lock server lost its data (restart) during the earlier holder's critical section.
    pub lock_data_lost: u64,
    /// The earlier holder's process was killed before it logged the end of its critical section.
    pub holder_killed: u64,
    /// None of these: the earlier holder was not told in time.
    pub unexplained: u64,
    /// Overlaps whose earlier holder had a stale read or write rejected by the resource.
    pub fencing_rejected: u64,
    /// Longest overlap, µs.
    pub max_us: u64,
    /// Some unexplained overlaps, described.
    pub examples: Vec<String>,
}

/// The result of a torture run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The settings.
    pub cfg: Config,
    /// How long contention under faults ran, µs.
    pub elapsed_us: u64,
    /// Lock calls made.
    pub calls: u64,
    /// Critical sections entered (acquisitions).
    pub entered: u64,
    /// Calls by outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Injected faults by kind: count and total time in effect (µs).
    pub faults: BTreeMap<FaultKind, (u64, u64)>,
    /// What the `MONITOR` witness saw.
    pub monitor: MonitorStats,
    /// Writes the resource accepted.
    pub accepted_writes: u64,
    /// Operations the resource rejected (stale fence).
    pub resource_rejections: u64,
    /// Stale fenced reads rejected (as the resource recorded them).
    pub stale_reads_rejected: u64,
    /// Stale fenced writes rejected (as the resource recorded them; the writer may have been cancelled
    /// before the answer came back).
    pub stale_writes_rejected: u64,
    /// The invariants.
    pub checks: Vec<CheckResult>,
    /// Findings attributed to the environment (a worker that was not scheduled), reported but not
    /// counted as violations.
    pub environment: Vec<CheckResult>,
    /// Heartbeat gaps of worker runtimes (not counting deliberate holder stalls), µs.
    pub runtime_gaps_us: Vec<u64>,
    /// Unfenced overlaps of critical sections.
    pub overlaps: Overlaps,
    /// Per blocking fault kind: time from the fault's start to the holder being told (µs).
    pub detection_us: BTreeMap<FaultKind, Vec<u64>>,
    /// Time from `SIGCONT` to a paused holder being told (µs).
    pub told_after_resume_us: Vec<u64>,
    /// Time from `SIGKILL` of a holder to its key being taken again (µs).
    pub reacquire_us: Vec<u64>,
    /// Keys of killed holders that no one took again before the run ended.
    pub not_reacquired: u64,
    /// Calls that returned Ok.
    pub ok_holds: u64,
    /// Of those, how many the witness saw delete their key on release.
    pub ok_released: u64,
    /// Anything else worth knowing.
    pub notes: Vec<String>,
}

/// The `p`-th percentile (nearest rank) of `v`, or `None` when empty.
pub fn percentile(v: &[u64], p: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

fn lat(v: &[u64]) -> String {
    match (percentile(v, 50.0), percentile(v, 99.0), v.iter().max()) {
        (Some(a), Some(b), Some(m)) => format!(
            "n={:<6} p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
            v.len(),
            a as f64 / 1000.0,
            b as f64 / 1000.0,
            *m as f64 / 1000.0
        ),
        _ => "n=0".to_owned(),
    }
}

impl Report {
    /// Total violations over every check.
    pub fn violations(&self) -> u64 {
        self.checks.iter().map(|c| c.violations).sum()
    }

    /// Every detection latency, over all blocking fault kinds.
    pub fn all_detection_us(&self) -> Vec<u64> {
        self.detection_us.values().flatten().copied().collect()
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let c = &self.cfg;
        let mut o = String::new();
        let secs = self.elapsed_us as f64 / 1e6;
        let _ = writeln!(
            o,
            "lockattr torture: {} processes x {} tasks on {} keys, ttl {} ms, command timeout {} ms, {:.0} s, seed {}",
            c.processes,
            c.tasks,
            c.keys,
            c.ttl.as_millis(),
            c.command_timeout.as_millis(),
            secs,
            c.seed
        );
        let _ = writeln!(
            o,
            "clock: wall clock (CLOCK_REALTIME) in µs, shared by every process on this one machine"
        );
        let _ = writeln!(o, "\n== work");
        let _ = writeln!(
            o,
            "lock calls            {:>9}   ({:.0}/s)",
            self.calls,
            self.calls as f64 / secs.max(1e-9)
        );
        let _ = writeln!(
            o,
            "acquisitions          {:>9}   ({:.0}/s; critical sections entered)",
            self.entered,
            self.entered as f64 / secs.max(1e-9)
        );
        for (k, v) in &self.outcomes {
            let _ = writeln!(o, "  {:<19} {:>9}", k.token(), v);
        }
        let m = &self.monitor;
        let _ = writeln!(
            o,
            "server (MONITOR)      grants {} ({} hand-overs)  plain SET NX attempts {}  fences {}  busy {}  renewal batches {} ({} leases, {} extended)  releases {} ({} deleted)  NOSCRIPT reloads {}",
            m.grants,
            m.hand_overs,
            m.plain_sets,
            m.fences,
            m.busy,
            m.renew_batches,
            m.renew_items,
            m.renew_extended,
            m.releases,
            m.releases_deleted,
            m.noscript
        );
        let _ = writeln!(
            o,
            "resource              accepted writes {}  rejected ops {} (stale reads {}, stale writes {})",
            self.accepted_writes,
            self.resource_rejections,
            self.stale_reads_rejected,
            self.stale_writes_rejected
        );
        let _ = writeln!(
            o,
            "releases              {} of {} calls that returned Ok were seen deleting their key; renewal attempts after own release (owner-checked no-ops): {}",
            self.ok_released, self.ok_holds, m.renew_attempts_after_release
        );
        let _ = writeln!(o, "\n== faults (one at a time)");
        let _ = writeln!(o, "{:<20} {:>6} {:>12}", "kind", "count", "total s");
        let mut n = 0;
        for (k, (count, us)) in &self.faults {
            n += count;
            let _ = writeln!(
                o,
                "{:<20} {:>6} {:>12.1}",
                k.name(),
                count,
                *us as f64 / 1e6
            );
        }
        let _ = writeln!(
            o,
            "{:<20} {:>6}   (+ random cancellation of {:.0} % of calls)",
            "total",
            n,
            c.cancel_probability * 100.0
        );
        let _ = writeln!(o, "\n== invariants");
        for ch in &self.checks {
            let _ = writeln!(
                o,
                "{:<28} {:>4}  {:>3} violations / {:>8} checked   {}",
                ch.name,
                if ch.violations == 0 { "ok" } else { "FAIL" },
                ch.violations,
                ch.checked,
                ch.what
            );
            for e in &ch.examples {
                let _ = writeln!(o, "      - {e}");
            }
        }
        for ch in &self.environment {
            let _ = writeln!(
                o,
                "{:<28} {:>4}  {:>3} cases                        {}",
                ch.name, "env", ch.violations, ch.what
            );
            for e in &ch.examples {
                let _ = writeln!(o, "      - {e}");
            }
        }
        let _ = writeln!(
            o,
            "worker runtime stalls (heartbeat gaps > 30 ms, excluding deliberate holder-stalls): {}",
            lat(&self.runtime_gaps_us)
        );
        let ov = &self.overlaps;
        let _ = writeln!(o, "\n== unfenced overlaps (critical sections of one key intersecting in time; reported, not hidden)");
        let _ = writeln!(
            o,
            "total {}  holder paused/stalled {}  lock data lost {}  holder killed {}  unexplained {}  longest {:.1} ms  stale holder's op rejected by the fence in {}",
            ov.total,
            ov.holder_paused,
            ov.lock_data_lost,
            ov.holder_killed,
            ov.unexplained,
            ov.max_us as f64 / 1000.0,
            ov.fencing_rejected
        );
        for e in &ov.examples {
            let _ = writeln!(o, "      - {e}");
        }
        let _ = writeln!(o, "\n== latencies");
        let _ = writeln!(
            o,
            "told of loss, from fault start (all stalls/partitions)  {}",
            lat(&self.all_detection_us())
        );
        for (k, v) in &self.detection_us {
            let _ = writeln!(o, "  {:<52} {}", k.name(), lat(v));
        }
        let _ = writeln!(
            o,
            "told of loss, from SIGCONT of a paused holder           {}",
            lat(&self.told_after_resume_us)
        );
        let _ = writeln!(
            o,
            "key taken again, from SIGKILL of its holder             {}   (not taken again: {})",
            lat(&self.reacquire_us),
            self.not_reacquired
        );
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\n== notes");
            for n in &self.notes {
                let _ = writeln!(o, "- {n}");
            }
        }
        let _ = writeln!(
            o,
            "\nRESULT: {}",
            if self.violations() == 0 {
                "PASS (0 violations)".to_owned()
            } else {
                format!("FAIL ({} violations)", self.violations())
            }
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
