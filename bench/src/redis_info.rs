//! Counters from the server's `INFO`: commands processed (including those run inside scripts), per-command
//! calls, and the server's own CPU time.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

/// Commands that run inside the contenders' Lua scripts (never sent by a client in these benchmarks,
/// except `SET`, which the floor and the peers send directly and lockattr only runs inside a script).
const SCRIPT_ONLY: &[&str] = &[
    "get", "del", "pexpire", "publish", "type", "time", "pttl", "incr", "append",
];

/// Whether calls of `cmd` are requests a client sent (not commands run inside a script).
fn is_request(cmd: &str, set_is_scripted: bool) -> bool {
    let scripted = SCRIPT_ONLY.contains(&cmd) || (set_is_scripted && cmd == "set");
    !scripted
}

/// One `INFO` snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `total_commands_processed`: every command, including those called from scripts.
    pub total: u64,
    /// `cmdstat_<name>:calls` per command (lower case).
    pub calls: HashMap<String, u64>,
    /// `cmdstat_<name>:usec` per command (time spent executing it, including commands it ran).
    pub usec: HashMap<String, u64>,
    /// Server CPU time (user + sys) in seconds.
    pub cpu_s: f64,
}

/// The difference of two snapshots, less the `INFO` calls themselves.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Commands processed, including commands called from scripts.
    pub total: u64,
    /// Calls per command.
    pub calls: HashMap<String, u64>,
    /// Execution time per command in microseconds.
    pub usec: HashMap<String, u64>,
    /// Server CPU seconds.
    pub cpu_s: f64,
    /// `SET`s the contender sent itself although it marks `SET` as scripted (lockattr's plain acquires,
    /// counted by its client); set by the caller, 0 from [`delta`].
    pub own_sets: u64,
}

impl Delta {
    /// Calls of `cmd`.
    pub fn calls(&self, cmd: &str) -> u64 {
        self.calls.get(cmd).copied().unwrap_or(0)
    }

    /// Requests sent by clients (a script invocation counts once): every command except those that only
    /// run inside scripts. `set_is_scripted` says whether this contender runs `SET` only inside a script.
    pub fn requests(&self, set_is_scripted: bool) -> u64 {
        let own_sets = if set_is_scripted { self.own_sets } else { 0 };
        self.calls
            .iter()
            .filter(|(c, _)| is_request(c, set_is_scripted))
            .map(|(_, n)| *n)
            .sum::<u64>()
            + own_sets
    }

    /// Microseconds the server spent executing the requests counted by [`Delta::requests`] (commands run
    /// inside a script are part of the script's time); the rest of its CPU time is I/O and protocol.
    pub fn request_usec(&self, set_is_scripted: bool) -> u64 {
        let scripted: u64 = self
            .usec
            .iter()
            .filter(|(c, _)| is_request(c, set_is_scripted))
            .map(|(_, n)| *n)
            .sum();
        if !set_is_scripted || self.own_sets == 0 {
            return scripted;
        }
        // The contender's own `SET`s, at the mean time of a `SET` (the server keeps one total for
        // the `SET`s sent and those scripts ran).
        let sets = self.calls("set").max(1);
        let set_usec = self.usec.get("set").copied().unwrap_or(0);
        scripted + set_usec * self.own_sets.min(sets) / sets
    }

    /// Script invocations (`EVAL`, `EVALSHA`, `FCALL` and their read-only forms).
    pub fn script_calls(&self) -> u64 {
        [
            "eval",
            "evalsha",
            "eval_ro",
            "evalsha_ro",
            "fcall",
            "fcall_ro",
        ]
        .iter()
        .map(|c| self.calls(c))
        .sum()
    }
}

/// Take a snapshot (one `INFO everything`-like round trip: `INFO stats commandstats cpu`).
pub async fn snapshot(conn: &mut MultiplexedConnection) -> redis::RedisResult<Snapshot> {
    let text: String = redis::cmd("INFO")
        .arg("stats")
        .arg("commandstats")
        .arg("cpu")
        .query_async(conn)
        .await?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Snapshot {
    let mut s = Snapshot::default();
    let mut cpu = 0.0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("total_commands_processed:") {
            s.total = v.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(key))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            let name = name.to_ascii_lowercase();
            s.usec.insert(name.clone(), field("usec="));
            s.calls.insert(name, field("calls="));
        } else if let Some(v) = line
            .strip_prefix("used_cpu_user:")
            .or_else(|| line.strip_prefix("used_cpu_sys:"))
        {
            cpu += v.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    s.cpu_s = cpu;
    s
}

/// `after - before`, without the `INFO` commands (the first snapshot's own `INFO` is counted in `after`).
pub fn delta(before: &Snapshot, after: &Snapshot) -> Delta {
    let diff = |a: &HashMap<String, u64>, b: &HashMap<String, u64>| {
        let mut out = HashMap::new();
        for (c, n) in a {
            if c == "info" {
                continue;
            }
            let d = n.saturating_sub(b.get(c).copied().unwrap_or(0));
            if d > 0 {
                out.insert(c.clone(), d);
            }
        }
        out
    };
    let calls = diff(&after.calls, &before.calls);
    let usec = diff(&after.usec, &before.usec);
    let info_calls = |s: &Snapshot| s.calls.get("info").copied().unwrap_or(0);
    let infos = info_calls(after).saturating_sub(info_calls(before));
    Delta {
        total: after
            .total
            .saturating_sub(before.total)
            .saturating_sub(infos),
        calls,
        usec,
        cpu_s: (after.cpu_s - before.cpu_s).max(0.0),
        own_sets: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info() {
        let a = parse("# Stats\r\ntotal_commands_processed:10\r\n# Commandstats\r\ncmdstat_set:calls=4,usec=1\r\ncmdstat_info:calls=1,usec=3\r\n# CPU\r\nused_cpu_sys:0.5\r\nused_cpu_user:0.25\r\n");
        assert_eq!(a.total, 10);
        assert_eq!(a.calls["set"], 4);
        assert!((a.cpu_s - 0.75).abs() < 1e-9);
        let b = parse("total_commands_processed:21\r\ncmdstat_set:calls=8\r\ncmdstat_get:calls=3\r\ncmdstat_evalsha:calls=3\r\ncmdstat_info:calls=2\r\n");
        let d = delta(&a, &b);
        assert_eq!(d.total, 10);
        assert_eq!(d.calls("set"), 4);
        assert_eq!(d.requests(false), 7);
        assert_eq!(d.requests(true), 3);
        assert_eq!(d.script_calls(), 3);
    }
}
