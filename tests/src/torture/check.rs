//! The checker: reads every record of a run and decides whether an invariant was broken.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::config::{Config, FaultKind};
use super::coordinator::{FaultRecord, PREFIX};
use super::log::{parse_line, Gap, Hold, Line, Outcome, Stall, WriterId};
use super::monitor::MonitorStats;
use super::report::{CheckResult, Overlaps, Report};
use super::resource::Accepted;

/// Everything a run recorded, for [`analyze`].
#[derive(Debug)]
pub struct RunData {
    /// The settings.
    pub cfg: Config,
    /// When contention began (µs).
    pub started_us: u64,
    /// When fault injection ended (µs).
    pub faults_end_us: u64,
    /// The injected faults, in order.
    pub faults: Vec<FaultRecord>,
    /// Worker log files (every generation of every slot).
    pub log_files: Vec<PathBuf>,
    /// Per slot: the number of leases its client still tracked once idle (`None`: never went idle).
    pub idle: Vec<(u32, Option<usize>)>,
    /// Lock keys (not fence counters) present 3 × TTL after every worker went idle.
    pub orphan_keys: Vec<String>,
    /// `EVALSHA` calls the lock server counted during that quiet window.
    pub quiet_evalsha: u64,
    /// What the `MONITOR` witness saw.
    pub monitor: MonitorStats,
    /// Token of each grant seen by the monitor, by (lock key, fence).
    pub token_of: HashMap<(String, u64), String>,
    /// Tokens whose release deleted their key.
    pub deleted_tokens: HashSet<String>,
    /// Accepted writes per key, as the resource recorded them.
    pub resource_log: BTreeMap<String, Vec<Accepted>>,
    /// Operations the resource rejected (stale fence): key, fence, seq (0 = read).
    pub resource_rejections: Vec<(String, u64, u32)>,
    /// Anything odd the coordinator noticed.
    pub notes: Vec<String>,
}

/// One critical section: from the body's start to its end (completion, cancellation, the call
/// returning `Lost`, or the process being killed).
#[derive(Debug, Clone)]
pub struct Interval {
    /// Who.
    pub writer: WriterId,
    /// Key.
    pub key: String,
    /// Fence.
    pub fence: u64,
    /// When the lock call began.
    pub t_call: u64,
    /// When the body started.
    pub t_start: u64,
    /// When the critical section ended.
    pub end: u64,
    /// The call's record (`None` if the process was killed during it).
    pub hold: Option<Hold>,
}

const MAX_EXAMPLES: usize = 8;

fn push_example(v: &mut Vec<String>, s: impl FnOnce() -> String) {
    if v.len() < MAX_EXAMPLES {
        v.push(s());
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Check a run and build its report.
pub fn analyze(d: RunData) -> Result<Report, String> {
    let ttl_us = d.cfg.ttl.as_micros() as u64;
    let mut calls = 0u64;
    let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
    let mut starts = Vec::new();
    let mut holds = Vec::new();
    let mut torn = 0u64;
    let mut stalls: Vec<Stall> = Vec::new();
    let mut gaps: Vec<Gap> = Vec::new();
    for f in &d.log_files {
        let text = match std::fs::read(f) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", f.display())),
        };
        for line in text.lines() {
            match parse_line(line) {
                Some(Line::Start(s)) => starts.push(s),
                Some(Line::Stall(s)) => stalls.push(s),
                Some(Line::Gap(g)) => gaps.push(g),
                Some(Line::Hold(h)) => {
                    calls += 1;
                    *outcomes.entry(h.outcome).or_default() += 1;
                    holds.push(h)
                }
                None => torn += 1,
            }
        }
    }
    let kills: HashMap<(u32, u32), u64> = d
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::WorkerKill)
        .filter_map(|f| Some(((f.slot?, f.gen?), f.start_us)))
        .collect();

    // --- intervals ---
    let mut by_id: HashMap<(WriterId, String, u64), usize> = HashMap::new();
    let mut iv: Vec<Interval> = Vec::with_capacity(starts.len());
    for s in starts {
        by_id.insert((s.writer, s.key.clone(), s.fence), iv.len());
        iv.push(Interval {
            writer: s.writer,
            key: s.key,
            fence: s.fence,
            t_call: s.t_call,
            t_start: s.t_start,
            end: 0,
            hold: None,
        });
    }
    for h in holds.into_iter().filter(|h| h.t_start > 0) {
        match by_id.get(&(h.writer, h.key.clone(), h.fence)) {
            Some(&i) => {
                iv[i].end = h.end();
                iv[i].hold = Some(h);
            }
            None => iv.push(Interval {
                writer: h.writer,
                key: h.key.clone(),
                fence: h.fence,
                t_call: h.t_call,
                t_start: h.t_start,
                end: h.end(),
                hold: Some(h),
            }),
        }
    }
    let mut incomplete = 0u64;
    for i in &mut iv {
        if i.hold.is_none() {
            match kills.get(&(i.writer.slot, i.writer.gen)) {
                Some(&k) => i.end = k.max(i.t_start),
                None => {
                    incomplete += 1;
                    i.end = i.t_start;
                }
            }
        }
    }
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, i) in iv.iter().enumerate() {
        per_key.entry(i.key.clone()).or_default().push(n);
    }

    let mut checks = Vec::new();

    // S2a: one grant per (key, fence).
    {
        let mut seen: HashMap<(&str, u64), usize> = HashMap::new();
        let mut c = CheckResult::new(
            "fence-unique",
            "no two critical sections of a key ever got the same fence",
        );
        for (n, i) in iv.iter().enumerate() {
            c.checked += 1;
            if let Some(&m) = seen.get(&(i.key.as_str(), i.fence)) {
                c.violations += 1;
                let other = &iv[m];
                push_example(&mut c.examples, || {
                    format!(
                        "{} fence {} held by {} and {}",
                        i.key, i.fence, other.writer, i.writer
                    )
                });
            } else {
                seen.insert((i.key.as_str(), i.fence), n);
            }
        }
        checks.push(c);
    }

    // S2b: fences follow real-time order (across lock-server restarts): if X's body started before Y's
    // lock call began, X's fence is lower.
    {
        let mut c = CheckResult::new(
            "fence-real-time-order",
            "a critical section that began before another's lock call has the lower fence (also across restarts)",
        );
        for idx in per_key.values() {
            let mut by_fence: Vec<&Interval> = idx.iter().map(|&n| &iv[n]).collect();
            by_fence.sort_by_key(|i| i.fence);
            let mut max_call: Option<&Interval> = None;
            for x in by_fence {
                c.checked += 1;
                if let Some(y) = max_call {
                    if y.t_call > x.t_start && y.fence < x.fence {
                        c.violations += 1;
                        push_example(&mut c.examples, || {
                            format!(
                                "{}: fence {} ({}) started at {} but fence {} ({}) was requested later, at {}",
                                x.key, x.fence, x.writer, x.t_start, y.fence, y.writer, y.t_call
                            )
                        });
                    }
                }
                if max_call.is_none_or(|y| x.t_call > y.t_call) {
                    max_call = Some(x);
                }
            }
        }
        checks.push(c);
    }

    // S2c: the server issued fences in increasing order (MONITOR).
    {
        let mut c = CheckResult::new(
            "fence-issue-order",
            "the lock server issued each key's fences in strictly increasing order (MONITOR)",
        );
        c.checked = d.monitor.fences;
        c.violations = d.monitor.fence_regressions;
        c.examples = d.monitor.fence_examples.clone();
        checks.push(c);
    }

    // S1: the resource's accepted (fence, seq) strictly increase per key; no lost update.
    let accepted_writes: u64 = d.resource_log.values().map(|v| v.len() as u64).sum();
    {
        let mut mono = CheckResult::new(
            "no-stale-write-accepted",
            "the resource's accepted writes strictly increase in (fence, seq) per key (checked here, not by its script)",
        );
        let mut lost = CheckResult::new(
            "no-lost-update",
            "accepted writes of a key carry consecutive values 1, 2, 3, .. (fenced read-modify-write)",
        );
        let mut who = CheckResult::new(
            "writes-by-the-fence-holder",
            "every accepted write came from the critical section that was granted its fence",
        );
        let holder: HashMap<(&str, u64), WriterId> = iv
            .iter()
            .map(|i| ((i.key.as_str(), i.fence), i.writer))
            .collect();
        for (key, writes) in &d.resource_log {
            let mut prev: Option<&Accepted> = None;
            for (n, w) in writes.iter().enumerate() {
                mono.checked += 1;
                lost.checked += 1;
                who.checked += 1;
                if let Some(p) = prev {
                    if (w.fence, w.seq) <= (p.fence, p.seq) {
                        mono.violations += 1;
                        push_example(&mut mono.examples, || {
                            format!(
                                "{key}: accepted ({}, {}) by {} after ({}, {}) by {}",
                                w.fence, w.seq, w.writer, p.fence, p.seq, p.writer
                            )
                        });
                    }
                }
                if w.value != n as u64 + 1 {
                    lost.violations += 1;
                    push_example(&mut lost.examples, || {
                        format!(
                            "{key}: write #{} wrote {} (fence {}, {})",
                            n + 1,
                            w.value,
                            w.fence,
                            w.writer
                        )
                    });
                }
                match holder.get(&(key.as_str(), w.fence)) {
                    Some(h) if h.to_string() == w.writer => {}
                    other => {
                        who.violations += 1;
                        push_example(&mut who.examples, || {
                            format!(
                                "{key}: write with fence {} by {} but the fence was granted to {:?}",
                                w.fence, w.writer, other
                            )
                        });
                    }
                }
                prev = Some(w);
            }
        }
        checks.push(mono);
        checks.push(lost);
        checks.push(who);
    }

    // S5: owner-only renewal and release (MONITOR).
    {
        let mut c = CheckResult::new(
            "owner-only-renew-release",
            "every renewal/release the server ran touched only a key holding the caller's token; nothing else wrote lock keys (MONITOR)",
        );
        c.checked = d.monitor.renew_extended + d.monitor.releases;
        c.violations = d.monitor.foreign_touches + d.monitor.unscripted_writes;
        c.examples = d.monitor.foreign_examples.clone();
        c.examples
            .extend(d.monitor.unscripted_examples.iter().cloned());
        checks.push(c);
    }

    // S6a: in every stall or partition, each affected holder was told (or finished) by fault start + TTL.
    let mut detection: BTreeMap<FaultKind, Vec<u64>> = BTreeMap::new();
    let mut told_after_resume = Vec::new();
    let mut environment = Vec::new();
    {
        let mut env = CheckResult::new(
            "told-late-worker-unscheduled",
            "told after the deadline while the holder's own runtime did not run (heartbeat gap): a pause by the environment, like SIGSTOP; not counted as a violation",
        );
        let mut c = CheckResult::new(
            "told-before-deadline",
            "in every lock-server stall, restart and partition, each holder's critical section ended by fault start + TTL",
        );
        let mut p = CheckResult::new(
            "told-after-pause-or-stall",
            "a holder whose process or executor was stopped past its lease never had its call return Ok",
        );
        // An executor stall blocks every task of a single-threaded worker, the watchdog included.
        for st in stalls.iter().filter(|s| s.t_end > s.t_begin + ttl_us) {
            for i in iv.iter().filter(|i| {
                i.writer.slot == st.writer.slot
                    && i.writer.gen == st.writer.gen
                    && i.t_start < st.t_begin
                    && i.end > st.t_end
            }) {
                let Some(h) = &i.hold else { continue };
                p.checked += 1;
                if h.outcome == Outcome::Ok {
                    p.violations += 1;
                    push_example(&mut p.examples, || {
                        format!(
                            "{} fence {} ({}) was blocked {:.0} ms by a stall of {} (ttl {} ms) and returned Ok",
                            i.writer,
                            i.fence,
                            i.key,
                            ms(st.t_end - st.t_begin),
                            st.writer,
                            ttl_us / 1000
                        )
                    });
                }
            }
        }
        for f in &d.faults {
            let affected = |i: &Interval| match (f.slot, f.gen) {
                (None, _) => true,
                (Some(s), Some(g)) => i.writer.slot == s && i.writer.gen == g,
                (Some(s), None) => i.writer.slot == s,
            };
            if f.kind.blocks_renewals() {
                let bound = f.start_us + ttl_us;
                for i in iv.iter().filter(|i| affected(i)) {
                    let Some(h) = &i.hold else { continue };
                    if i.t_start >= f.start_us || i.end <= f.start_us {
                        continue;
                    }
                    c.checked += 1;
                    // Late, but the worker's own runtime did not run from before the deadline until
                    // (nearly) the moment it told: the process was paused by its environment.
                    let unscheduled = i.end > bound
                        && gaps.iter().any(|g| {
                            g.slot == i.writer.slot
                                && g.gen == i.writer.gen
                                && g.t_from <= bound
                                && g.t_to + 25_000 >= i.end
                        });
                    if unscheduled {
                        env.checked += 1;
                        env.violations += 1;
                        push_example(&mut env.examples, || {
                            format!(
                                "{}: {} fence {} ({}) told {:.1} ms after the fault began (ttl {} ms); its runtime did not run for a {:.0} ms stretch covering the deadline",
                                f.kind,
                                i.writer,
                                i.fence,
                                i.key,
                                ms(i.end - f.start_us),
                                ttl_us / 1000,
                                gaps.iter()
                                    .filter(|g| g.slot == i.writer.slot && g.gen == i.writer.gen && g.t_from <= bound && g.t_to + 25_000 >= i.end)
                                    .map(|g| ms(g.t_to - g.t_from))
                                    .fold(0.0, f64::max)
                            )
                        });
                    } else if i.end > bound {
                        c.violations += 1;
                        push_example(&mut c.examples, || {
                            format!(
                                "{}: {} fence {} ({}) ran until {:.1} ms after the fault began (ttl {} ms); outcome {}",
                                f.kind,
                                i.writer,
                                i.fence,
                                i.key,
                                ms(i.end - f.start_us),
                                ttl_us / 1000,
                                h.outcome.token()
                            )
                        });
                    }
                    // Detection latency: holders still inside when told (a body that had already
                    // completed was not unaware, even if its release later answered "not yours").
                    if h.outcome.is_lost() && h.t_done == 0 && h.t_ret >= f.start_us {
                        detection
                            .entry(f.kind)
                            .or_default()
                            .push(h.t_ret - f.start_us);
                    }
                }
            }
            if f.kind == FaultKind::WorkerPause {
                let paused_past_lease = f.end_us > f.start_us + ttl_us;
                for i in iv.iter().filter(|i| affected(i)) {
                    let Some(h) = &i.hold else { continue };
                    if i.t_start >= f.start_us || i.end <= f.end_us {
                        continue;
                    }
                    if h.outcome.is_lost() {
                        told_after_resume.push(h.t_ret.saturating_sub(f.end_us));
                    }
                    if paused_past_lease {
                        p.checked += 1;
                        if h.outcome == Outcome::Ok {
                            p.violations += 1;
                            push_example(&mut p.examples, || {
                                format!(
                                    "{} fence {} ({}) paused {:.0} ms (ttl {} ms) returned Ok",
                                    i.writer,
                                    i.fence,
                                    i.key,
                                    ms(f.end_us - f.start_us),
                                    ttl_us / 1000
                                )
                            });
                        }
                    }
                }
            }
        }
        checks.push(c);
        checks.push(p);
        if env.checked > 0 {
            environment.push(env);
        }
    }

    // L1: after SIGKILL of a holder, its keys are taken again within TTL + margin.
    let mut reacquire = Vec::new();
    let mut not_reacquired = 0u64;
    {
        let margin_us = d.cfg.reacquire_margin.as_micros() as u64;
        let mut c = CheckResult::new(
            "reacquire-after-kill",
            "after SIGKILL of a holder, its key was taken again within TTL + margin",
        );
        for f in d.faults.iter().filter(|f| f.kind == FaultKind::WorkerKill) {
            let (Some(slot), Some(gen)) = (f.slot, f.gen) else {
                continue;
            };
            for v in iv
                .iter()
                .filter(|i| i.hold.is_none() && i.writer.slot == slot && i.writer.gen == gen)
            {
                let next = per_key[&v.key]
                    .iter()
                    .map(|&n| &iv[n])
                    .filter(|i| i.fence > v.fence)
                    .map(|i| i.t_start)
                    .min();
                match next {
                    Some(t) if t <= d.faults_end_us + ttl_us * 10 => {
                        let lat = t.saturating_sub(f.start_us);
                        c.checked += 1;
                        reacquire.push(lat);
                        if lat > ttl_us + margin_us {
                            c.violations += 1;
                            push_example(&mut c.examples, || {
                                format!(
                                    "{} after killing {} (fence {}): taken again after {:.1} ms",
                                    v.key,
                                    v.writer,
                                    v.fence,
                                    ms(lat)
                                )
                            });
                        }
                    }
                    _ => not_reacquired += 1,
                }
            }
        }
        checks.push(c);
    }

    // S6b: nothing left behind.
    {
        let mut c = CheckResult::new(
            "quiet-after-stop",
            "once idle: no lease tracked, and 3 x TTL later no lock key left and no lockattr script run",
        );
        c.checked = d.idle.len() as u64 + 3;
        for (slot, leases) in &d.idle {
            match leases {
                Some(0) => {}
                Some(n) => {
                    c.violations += 1;
                    push_example(&mut c.examples, || {
                        format!("worker slot {slot} still tracked {n} lease(s) once idle")
                    });
                }
                None => {
                    c.violations += 1;
                    push_example(&mut c.examples, || {
                        format!("worker slot {slot} did not go idle (stuck call?)")
                    });
                }
            }
        }
        if !d.orphan_keys.is_empty() {
            c.violations += d.orphan_keys.len() as u64;
            push_example(&mut c.examples, || {
                format!("orphan lock keys: {:?}", d.orphan_keys)
            });
        }
        if d.quiet_evalsha > 0 {
            c.violations += 1;
            push_example(&mut c.examples, || {
                format!(
                    "{} EVALSHA calls in the quiet window (INFO commandstats)",
                    d.quiet_evalsha
                )
            });
        }
        if d.monitor.calls_in_quiet_window > 0 {
            c.violations += 1;
            c.examples.extend(d.monitor.quiet_examples.iter().cloned());
        }
        checks.push(c);
    }

    // Overlaps of critical sections (not a violation: what fencing is for).
    let rejected: HashSet<(&str, u64)> = d
        .resource_rejections
        .iter()
        .map(|(k, f, _)| (k.as_str(), *f))
        .collect();
    let mut overlaps = Overlaps::default();
    for idx in per_key.values() {
        let mut by_start: Vec<&Interval> = idx.iter().map(|&n| &iv[n]).collect();
        by_start.sort_by_key(|i| (i.t_start, i.fence));
        let mut cover: Option<&Interval> = None;
        for x in by_start {
            if let Some(c) = cover {
                if x.t_start < c.end {
                    let amount = c.end.min(x.end).saturating_sub(x.t_start);
                    overlaps.total += 1;
                    overlaps.max_us = overlaps.max_us.max(amount);
                    let paused = d.faults.iter().any(|f| {
                        f.kind == FaultKind::WorkerPause
                            && f.slot == Some(c.writer.slot)
                            && f.gen == Some(c.writer.gen)
                            && f.start_us < c.end
                            && f.end_us > c.t_start
                    });
                    let restarted = d.faults.iter().any(|f| {
                        f.kind == FaultKind::LockRestart
                            && f.start_us >= c.t_start.saturating_sub(1000)
                            && f.start_us <= x.t_start
                    });
                    let stale_rejected = rejected.contains(&(c.key.as_str(), c.fence));
                    if stale_rejected {
                        overlaps.fencing_rejected += 1;
                    }
                    let stalled = stalls.iter().any(|s| {
                        s.writer.slot == c.writer.slot
                            && s.writer.gen == c.writer.gen
                            && s.t_begin < c.end
                            && s.t_end > c.t_start
                    });
                    let unscheduled = gaps.iter().any(|g| {
                        g.slot == c.writer.slot
                            && g.gen == c.writer.gen
                            && g.t_from < c.end
                            && g.t_to > c.t_start
                    });
                    if c.hold.is_none() {
                        overlaps.holder_killed += 1;
                    } else if paused || stalled || unscheduled {
                        overlaps.holder_paused += 1;
                    } else if restarted {
                        overlaps.lock_data_lost += 1;
                    } else {
                        overlaps.unexplained += 1;
                        push_example(&mut overlaps.examples, || {
                            format!(
                                "{}: {} fence {} [{}, {}] ({}) overlaps {} fence {} from {} by {:.1} ms",
                                x.key,
                                c.writer,
                                c.fence,
                                c.t_start,
                                c.end,
                                c.hold
                                    .as_ref()
                                    .map(|h| h.outcome.token())
                                    .unwrap_or("killed"),
                                x.writer,
                                x.fence,
                                x.t_start,
                                ms(amount)
                            )
                        });
                    }
                }
            }
            if cover.is_none_or(|c| x.end > c.end) {
                cover = Some(x);
            }
        }
    }

    // Releases the witness saw for calls that returned Ok.
    let mut ok_holds = 0u64;
    let mut ok_released = 0u64;
    for i in &iv {
        if i.hold.as_ref().is_some_and(|h| h.outcome == Outcome::Ok) {
            ok_holds += 1;
            let lock_key = format!("{PREFIX}:{{{}}}", i.key);
            if d.token_of
                .get(&(lock_key, i.fence))
                .is_some_and(|t| d.deleted_tokens.contains(t))
            {
                ok_released += 1;
            }
        }
    }

    let stale_reads = d.resource_rejections.iter().filter(|r| r.2 == 0).count() as u64;
    let stale_writes = d.resource_rejections.len() as u64 - stale_reads;
    let mut faults: BTreeMap<FaultKind, (u64, u64)> = BTreeMap::new();
    for f in &d.faults {
        let e = faults.entry(f.kind).or_default();
        e.0 += 1;
        e.1 += f.end_us.saturating_sub(f.start_us);
    }
    let mut notes = d.notes;
    if torn > 0 {
        notes.push(format!("{torn} log line(s) torn by SIGKILL were skipped"));
    }
    if incomplete > 0 {
        notes.push(format!(
            "{incomplete} critical section(s) of live workers have no end record"
        ));
    }
    if d.monitor.connections > 1 {
        notes.push(format!(
            "the MONITOR witness reconnected {} time(s) (lock-server restarts)",
            d.monitor.connections - 1
        ));
    }
    // Gaps not explained by a deliberate stall or a SIGSTOP of the worker: the machine did not run it.
    let stall_gap = |g: &Gap| {
        stalls.iter().any(|s| {
            s.writer.slot == g.slot
                && s.writer.gen == g.gen
                && s.t_begin < g.t_to
                && s.t_end > g.t_from
        }) || d.faults.iter().any(|f| {
            f.kind == FaultKind::WorkerPause
                && f.slot == Some(g.slot)
                && f.gen == Some(g.gen)
                && f.start_us < g.t_to
                && f.end_us + 5_000 > g.t_from
        })
    };
    let env_gaps: Vec<u64> = gaps
        .iter()
        .filter(|g| !stall_gap(g))
        .map(|g| g.t_to - g.t_from)
        .collect();
    Ok(Report {
        environment,
        runtime_gaps_us: env_gaps,
        cfg: d.cfg,
        elapsed_us: d.faults_end_us.saturating_sub(d.started_us),
        calls,
        entered: iv.len() as u64,
        outcomes,
        faults,
        monitor: d.monitor,
        accepted_writes,
        resource_rejections: d.resource_rejections.len() as u64,
        stale_reads_rejected: stale_reads,
        stale_writes_rejected: stale_writes,
        checks,
        overlaps,
        detection_us: detection,
        told_after_resume_us: told_after_resume,
        reacquire_us: reacquire,
        not_reacquired,
        ok_holds,
        ok_released,
        notes,
    })
}
