//! The line formats workers log and the checker reads.
//!
//! Times are wall-clock microseconds since the Unix epoch (`CLOCK_REALTIME`). Every process of a run is
//! on one machine, so all of them read the same clock; the lock and resource servers stamp their own
//! records with the same clock (`TIME`, `MONITOR`).
//!
//! Two lines per lock call that entered its critical section, one line for a call that did not:
//! - `A slot gen task key fence t_call t_start` when the body starts (written before the body does
//!   anything, so a killed worker's open holds are known);
//! - `G slot gen 0 t_from t_to` when the worker's heartbeat found its runtime did not run for a while;
//! - `S slot gen task t_begin t_end` after a deliberate executor stall (`holder-stall` fault);
//! - `H slot gen task key fence t_call t_start t_done t_ret outcome reads_ok reads_rejected writes_ok
//!   writes_rejected resource_errors stalled_ms` when the call returned (or was cancelled).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How a lock call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The body completed and the call returned its value.
    Ok,
    /// `LockError::Lost` with reason `NotOwner`; `cancelled` tells whether the body was cut short.
    LostNotOwner {
        /// The body was cancelled.
        cancelled: bool,
    },
    /// `LockError::Lost` with reason `DeadlineExpired`.
    LostDeadline {
        /// The body was cancelled.
        cancelled: bool,
    },
    /// `LockError::Lost` with any other reason.
    LostOther {
        /// The body was cancelled.
        cancelled: bool,
    },
    /// The worker's random timeout fired while the body ran (the guarded future was dropped).
    Cancelled,
    /// The worker's random timeout fired before the lock was acquired.
    AcquireCancelled,
    /// The wait budget ran out (`LockError::Timeout`).
    WaitTimeout,
    /// `LockError::Busy`.
    Busy,
    /// The lock server could not be reached (`LockError::Unavailable`).
    Unavailable,
    /// Any other lock error.
    Error,
}

impl Outcome {
    /// The token used in log lines.
    pub fn token(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::LostNotOwner { cancelled: true } => "lost-notowner-c",
            Outcome::LostNotOwner { cancelled: false } => "lost-notowner-f",
            Outcome::LostDeadline { cancelled: true } => "lost-deadline-c",
            Outcome::LostDeadline { cancelled: false } => "lost-deadline-f",
            Outcome::LostOther { cancelled: true } => "lost-other-c",
            Outcome::LostOther { cancelled: false } => "lost-other-f",
            Outcome::Cancelled => "cancelled",
            Outcome::AcquireCancelled => "acq-cancelled",
            Outcome::WaitTimeout => "wait-timeout",
            Outcome::Busy => "busy",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }

    /// Parse a log token.
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "ok" => Outcome::Ok,
            "lost-notowner-c" => Outcome::LostNotOwner { cancelled: true },
            "lost-notowner-f" => Outcome::LostNotOwner { cancelled: false },
            "lost-deadline-c" => Outcome::LostDeadline { cancelled: true },
            "lost-deadline-f" => Outcome::LostDeadline { cancelled: false },
            "lost-other-c" => Outcome::LostOther { cancelled: true },
            "lost-other-f" => Outcome::LostOther { cancelled: false },
            "cancelled" => Outcome::Cancelled,
            "acq-cancelled" => Outcome::AcquireCancelled,
            "wait-timeout" => Outcome::WaitTimeout,
            "busy" => Outcome::Busy,
            "unavailable" => Outcome::Unavailable,
            "error" => Outcome::Error,
            _ => return None,
        })
    }

    /// Whether the holder was told it lost the lock.
    pub fn is_lost(self) -> bool {
        matches!(
            self,
            Outcome::LostNotOwner { .. } | Outcome::LostDeadline { .. } | Outcome::LostOther { .. }
        )
    }
}

/// Identifies one worker task: `slot.gen.task` (a slot is re-used by the worker started after a kill,
/// with the next generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriterId {
    /// Worker slot (one lock proxy and one resource proxy each).
    pub slot: u32,
    /// Process generation within the slot.
    pub gen: u32,
    /// Task within the process.
    pub task: u32,
}

impl fmt::Display for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.slot, self.gen, self.task)
    }
}

impl WriterId {
    /// Parse `slot.gen.task`.
    pub fn parse(s: &str) -> Option<WriterId> {
        let mut it = s.split('.').map(str::parse::<u32>);
        let id = WriterId {
            slot: it.next()?.ok()?,
            gen: it.next()?.ok()?,
            task: it.next()?.ok()?,
        };
        it.next().is_none().then_some(id)
    }
}

/// A body start (`A` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Who.
    pub writer: WriterId,
    /// Lock key.
    pub key: String,
    /// Fencing token of the grant.
    pub fence: u64,
    /// When the lock call began.
    pub t_call: u64,
    /// When the body started.
    pub t_start: u64,
}

impl Start {
    /// The log line (without newline).
    pub fn line(&self) -> String {
        let w = self.writer;
        format!(
            "A {} {} {} {} {} {} {}",
            w.slot, w.gen, w.task, self.key, self.fence, self.t_call, self.t_start
        )
    }
}

/// A finished lock call (`H` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Who.
    pub writer: WriterId,
    /// Lock key.
    pub key: String,
    /// Fencing token (0 if the body never started).
    pub fence: u64,
    /// When the lock call began.
    pub t_call: u64,
    /// When the body started (0 if it never did).
    pub t_start: u64,
    /// When the body completed (0 if it did not).
    pub t_done: u64,
    /// When the call returned or was cancelled.
    pub t_ret: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Fenced reads the resource accepted.
    pub reads_ok: u32,
    /// Fenced reads the resource rejected (stale fence).
    pub reads_rejected: u32,
    /// Fenced writes the resource accepted.
    pub writes_ok: u32,
    /// Fenced writes the resource rejected (stale fence).
    pub writes_rejected: u32,
    /// Resource operations that failed (connection, timeout).
    pub resource_errors: u32,
    /// How long the body blocked its thread on purpose (`holder-stall` fault), ms.
    pub stalled_ms: u64,
}

impl Hold {
    /// The log line (without newline).
    pub fn line(&self) -> String {
        let w = self.writer;
        format!(
            "H {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            w.slot,
            w.gen,
            w.task,
            self.key,
            self.fence,
            self.t_call,
            self.t_start,
            self.t_done,
            self.t_ret,
            self.outcome.token(),
            self.reads_ok,
            self.reads_rejected,
            self.writes_ok,
            self.writes_rejected,
            self.resource_errors,
            self.stalled_ms
        )
    }

    /// When the critical section ended: the body's completion, or else the moment the call returned
    /// (told of the loss, or cancelled).
    pub fn end(&self) -> u64 {
        if self.t_done > 0 {
            self.t_done
        } else {
            self.t_ret
        }
    }
}

/// A deliberate executor stall (`S` line): the body blocked its thread from `t_begin` to `t_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Who stalled (on a single-threaded runtime the whole process stalled).
    pub writer: WriterId,
    /// When the stall began.
    pub t_begin: u64,
    /// When it ended.
    pub t_end: u64,
}

impl Stall {
    /// The log line (without newline).
    pub fn line(&self) -> String {
        let w = self.writer;
        format!(
            "S {} {} {} {} {}",
            w.slot, w.gen, w.task, self.t_begin, self.t_end
        )
    }
}

/// A gap in a worker's heartbeat (`G` line): its runtime ran no task from `t_from` to `t_to` (the
/// process was not scheduled, or its thread was blocked). A 5 ms heartbeat logs gaps over 30 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Slot of the worker.
    pub slot: u32,
    /// Generation of the worker.
    pub gen: u32,
    /// Last heartbeat before the gap.
    pub t_from: u64,
    /// First heartbeat after it.
    pub t_to: u64,
}

impl Gap {
    /// The log line (without newline).
    pub fn line(&self) -> String {
        format!(
            "G {} {} 0 {} {}",
            self.slot, self.gen, self.t_from, self.t_to
        )
    }
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A heartbeat gap.
    Gap(Gap),
    /// A body start.
    Start(Start),
    /// A finished call.
    Hold(Hold),
    /// An executor stall.
    Stall(Stall),
}

/// Parse one log line; `None` for a malformed (e.g. torn by `SIGKILL`) line.
pub fn parse_line(line: &str) -> Option<Line> {
    let f: Vec<&str> = line.split(' ').collect();
    let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    let writer = WriterId {
        slot: n(1)? as u32,
        gen: n(2)? as u32,
        task: n(3)? as u32,
    };
    match *f.first()? {
        "A" if f.len() == 8 => Some(Line::Start(Start {
            writer,
            key: f[4].to_owned(),
            fence: n(5)?,
            t_call: n(6)?,
            t_start: n(7)?,
        })),
        "G" if f.len() == 6 => Some(Line::Gap(Gap {
            slot: writer.slot,
            gen: writer.gen,
            t_from: n(4)?,
            t_to: n(5)?,
        })),
        "S" if f.len() == 6 => Some(Line::Stall(Stall {
            writer,
            t_begin: n(4)?,
            t_end: n(5)?,
        })),
        "H" if f.len() == 17 => Some(Line::Hold(Hold {
            writer,
            key: f[4].to_owned(),
            fence: n(5)?,
            t_call: n(6)?,
            t_start: n(7)?,
            t_done: n(8)?,
            t_ret: n(9)?,
            outcome: Outcome::parse(f[10])?,
            reads_ok: n(11)? as u32,
            reads_rejected: n(12)? as u32,
            writes_ok: n(13)? as u32,
            writes_rejected: n(14)? as u32,
            resource_errors: n(15)? as u32,
            stalled_ms: n(16)?,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let w = WriterId {
            slot: 1,
            gen: 2,
            task: 3,
        };
        let s = Start {
            writer: w,
            key: "k1".into(),
            fence: 17,
            t_call: 5,
            t_start: 9,
        };
        assert_eq!(parse_line(&s.line()), Some(Line::Start(s)));
        let h = Hold {
            writer: w,
            key: "k1".into(),
            fence: 17,
            t_call: 5,
            t_start: 9,
            t_done: 0,
            t_ret: 12,
            outcome: Outcome::LostDeadline { cancelled: true },
            reads_ok: 1,
            reads_rejected: 0,
            writes_ok: 1,
            writes_rejected: 1,
            resource_errors: 0,
            stalled_ms: 3,
        };
        assert_eq!(h.end(), 12);
        assert_eq!(parse_line(&h.line()), Some(Line::Hold(h)));
        assert_eq!(parse_line("H 1 2"), None);
        assert_eq!(WriterId::parse("1.2.3"), Some(w));
        assert_eq!(WriterId::parse("1.2"), None);
    }
}
