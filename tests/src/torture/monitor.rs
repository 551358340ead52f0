//! An independent witness on the lock server: a `MONITOR` connection that sees every command the server
//! executes, in execution order, including the commands each Lua script runs. From it the checker
//! rebuilds, per lock key, who holds it (the token of the last successful `SET NX`, cleared by `DEL`),
//! and checks that
//! - every `PEXPIRE` (renewal) and `DEL` (release) a lockattr script runs on a key is done on behalf of
//!   the token that holds it (no release or renewal ever touches another holder's lock);
//! - fences are issued in strictly increasing order per key (also across restarts);
//! - nothing but the scripts writes lock keys;
//! - nothing runs a lockattr script after a given moment (the end-of-run quiet window).
//!
//! Scripts are recognised by their shape (see `finalize`): the single-node script (the fence counter,
//! then the locks to release and to acquire), the one-lock release (1 key, the token), the fence issue
//! (the counter and the lock, the token), the hand-over (the lock; the token, the next token, the TTL),
//! the Cluster/Redlock release (`release` marker) and renewal
//! batches (`n` keys, `2n` arguments). An idle client also takes a free lock with a plain client
//! `SET lock token NX PX ttl`; the trace does not show whether it succeeded, so the witness decides
//! from its own view of the key: a free key is granted, a held one may have expired in the meantime,
//! so the holder becomes one of a few candidates (the old holder or the new token) until a script
//! shows which: an owner-checked `PEXPIRE`, `DEL` or fence issue, or a busy script acquire by a
//! candidate. When the connection drops (a restart), commands may have been missed, so every key's
//! holder becomes unknown (never a false alarm) until its next grant.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Examples kept per kind of finding.
const MAX_EXAMPLES: usize = 10;

/// What the monitor saw.
#[derive(Debug, Default, Clone)]
pub struct MonitorStats {
    /// Lines read.
    pub lines: u64,
    /// Times the connection was (re-)established.
    pub connections: u64,
    /// Successful grants seen (a script `SET NX` followed by the fence update, or a plain `SET NX` on a
    /// key the witness knows to be free).
    pub grants: u64,
    /// Fences issued (with a grant, or later on the holder's request).
    pub fences: u64,
    /// Plain client `SET NX` attempts on lock keys.
    pub plain_sets: u64,
    /// Acquire attempts that found the key busy.
    pub busy: u64,
    /// Renewal batches.
    pub renew_batches: u64,
    /// Leases in renewal batches.
    pub renew_items: u64,
    /// Leases extended (`PEXPIRE` run).
    pub renew_extended: u64,
    /// Release calls.
    pub releases: u64,
    /// Releases that deleted the key.
    pub releases_deleted: u64,
    /// Locks handed straight from a holder to the next holder (one `SET` of the next token).
    pub hand_overs: u64,
    /// `EVALSHA` calls that ran nothing (`NOSCRIPT`, then reloaded).
    pub noscript: u64,
    /// Renewal attempts (owner-checked, so harmless) that reached the server after the same token's
    /// release had deleted the key.
    pub renew_attempts_after_release: u64,
    /// Violations: a renewal or release touched a key held by another token.
    pub foreign_touches: u64,
    /// Examples of foreign touches.
    pub foreign_examples: Vec<String>,
    /// Violations: a fence not greater than the previous one issued for the key.
    pub fence_regressions: u64,
    /// Examples of fence regressions.
    pub fence_examples: Vec<String>,
    /// Violations: a lock key written by something other than a lockattr script or lockattr's plain
    /// `SET lock token NX PX ttl`.
    pub unscripted_writes: u64,
    /// Examples of unscripted writes.
    pub unscripted_examples: Vec<String>,
    /// Lockattr script calls seen after the quiet-window start (see [`Monitor::set_quiet_from`]).
    pub calls_in_quiet_window: u64,
    /// Examples of such calls.
    pub quiet_examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Token(String),
    /// One of these tokens holds it (or, for the first, the lease ran out and nobody does).
    Maybe(Vec<String>),
    Free,
    Unknown,
}

#[derive(Default)]
struct State {
    stats: MonitorStats,
    owners: HashMap<String, Owner>,
    /// Holder of keys not in `owners`: `Free` until the first gap, `Unknown` after.
    default_unknown: bool,
    last_fence: HashMap<String, u64>,
    deleted_tokens: HashSet<String>,
    /// (lock key, fence) -> token, for grants.
    token_of: HashMap<(String, u64), String>,
    pending: Option<Group>,
}

struct Group {
    ts: u64,
    args: Vec<String>,
    lua: Vec<Vec<String>>,
}

/// The monitor: a thread reading `MONITOR` from the lock server, reconnecting after restarts.
pub struct Monitor {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    quiet_from: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    prefix: String,
}

impl Monitor {
    /// Start monitoring the server at `addr`; lock keys start with `prefix:{`. Returns once the first
    /// `MONITOR` is confirmed (or after 5 s).
    pub fn start(addr: SocketAddr, prefix: &str) -> Monitor {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let quiet_from = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let lock_prefix = format!("{prefix}:{{");
        let thread = {
            let (state, stop, quiet_from, connections) = (
                state.clone(),
                stop.clone(),
                quiet_from.clone(),
                connections.clone(),
            );
            let lock_prefix = lock_prefix.clone();
            std::thread::Builder::new()
                .name("torture-monitor".into())
                .spawn(move || reader(addr, state, stop, quiet_from, connections, lock_prefix))
                .ok()
        };
        let m = Monitor {
            state,
            stop,
            quiet_from,
            connections,
            thread,
            prefix: lock_prefix,
        };
        m.wait_connected(1, Duration::from_secs(5));
        m
    }

    /// How many times the connection has been established.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Wait (bounded) until the connection has been established at least `n` times.
    pub fn wait_connected(&self, n: u64, max: Duration) -> bool {
        let deadline = std::time::Instant::now() + max;
        while self.connections() < n {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Count every lockattr script call the server runs at or after `us` (server clock, µs).
    pub fn set_quiet_from(&self, us: u64) {
        self.quiet_from.store(us, Ordering::SeqCst);
    }

    /// Stop and return what was seen, and the token of each grant by (lock key, fence).
    pub fn finish(
        mut self,
    ) -> (
        MonitorStats,
        HashMap<(String, u64), String>,
        HashSet<String>,
    ) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let quiet = self.quiet_from.load(Ordering::SeqCst);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        finalize(&mut st, &self.prefix, quiet);
        (
            st.stats.clone(),
            std::mem::take(&mut st.token_of),
            std::mem::take(&mut st.deleted_tokens),
        )
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn reader(
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    quiet_from: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    prefix: String,
) {
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        if stream.write_all(b"MONITOR\r\n").is_err() {
            continue;
        }
        let mut r = BufReader::with_capacity(1 << 20, stream);
        let mut line = String::new();
        // Wait for +OK.
        let mut ok = false;
        for _ in 0..50 {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) if line.starts_with("+OK") => {
                    ok = true;
                    break;
                }
                Ok(_) => break,
                Err(e) if is_timeout(&e) => continue,
                Err(_) => break,
            }
        }
        if !ok {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if !first {
                // Commands may have been missed: forget every holder.
                finalize(&mut st, &prefix, 0);
                for o in st.owners.values_mut() {
                    *o = Owner::Unknown;
                }
                st.default_unknown = true;
            }
        }
        first = false;
        connections.fetch_add(1, Ordering::SeqCst);
        let mut batch: Vec<String> = Vec::with_capacity(256);
        line.clear();
        loop {
            match r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.ends_with('\n') {
                        batch.push(line.trim_end_matches(['\r', '\n']).to_owned());
                        line.clear();
                    }
                    if r.buffer().is_empty() || batch.len() >= 4096 {
                        flush(&state, &mut batch, &prefix, &quiet_from);
                    }
                }
                Err(e) if is_timeout(&e) => {
                    // A partial line stays in `line` and is completed by the next read.
                    flush(&state, &mut batch, &prefix, &quiet_from);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        flush(&state, &mut batch, &prefix, &quiet_from);
    }
}

fn flush(state: &Mutex<State>, batch: &mut Vec<String>, prefix: &str, quiet_from: &AtomicU64) {
    if batch.is_empty() {
        return;
    }
    let quiet = quiet_from.load(Ordering::SeqCst);
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for l in batch.drain(..) {
        process(&mut st, &l, prefix, quiet);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// One parsed `MONITOR` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorLine {
    /// Server time, µs.
    pub ts: u64,
    /// `lua` for commands run by a script, else the client address.
    pub client: String,
    /// The command and its arguments (unescaped, lossy UTF-8).
    pub args: Vec<String>,
}

/// Parse `+1700000000.123456 [0 127.0.0.1:5000] "SET" "k" "v"` (the leading `+` is optional).
pub fn parse_monitor_line(line: &str) -> Option<MonitorLine> {
    let line = line.strip_prefix('+').unwrap_or(line);
    let (ts, rest) = line.split_once(' ')?;
    let (secs, frac) = ts.split_once('.')?;
    let frac = format!("{frac:0<6}");
    let ts = secs.parse::<u64>().ok()? * 1_000_000 + frac.get(..6)?.parse::<u64>().ok()?;
    let rest = rest.strip_prefix('[')?;
    let (inside, rest) = rest.split_once("] ")?;
    let client = inside.split_once(' ').map(|(_, c)| c)?.to_owned();
    Some(MonitorLine {
        ts,
        client,
        args: unquote_args(rest)?,
    })
}

/// Split `"a" "b\x00" "c\"d"` into unescaped arguments (the escaping of Redis's `sdscatrepr`).
pub fn unquote_args(s: &str) -> Option<Vec<String>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        if b[i] != b'"' {
            return None;
        }
        i += 1;
        let mut arg = Vec::new();
        loop {
            let c = *b.get(i)?;
            i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *b.get(i)?;
                    i += 1;
                    match e {
                        b'n' => arg.push(b'\n'),
                        b'r' => arg.push(b'\r'),
                        b't' => arg.push(b'\t'),
                        b'a' => arg.push(7),
                        b'b' => arg.push(8),
                        b'x' => {
                            let h = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                            arg.push(u8::from_str_radix(h, 16).ok()?);
                            i += 2;
                        }
                        other => arg.push(other),
                    }
                }
                other => arg.push(other),
            }
        }
        out.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Some(out)
}

/// Commands that write their first key.
const WRITES: &[&str] = &[
    "SET",
    "DEL",
    "UNLINK",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
    "GETDEL",
    "GETSET",
    "SETEX",
    "PSETEX",
    "SETNX",
    "RENAME",
    "INCR",
    "INCRBY",
    "APPEND",
    "HSET",
    "LPUSH",
    "RPUSH",
    "SADD",
    "ZADD",
    "GETEX",
    "COPY",
    "MOVE",
    "RESTORE",
];

fn process(st: &mut State, line: &str, prefix: &str, quiet: u64) {
    st.stats.lines += 1;
    let Some(m) = parse_monitor_line(line) else {
        return;
    };
    if m.client == "lua" {
        if let Some(g) = st.pending.as_mut() {
            g.lua.push(m.args);
        }
        return;
    }
    finalize(st, prefix, quiet);
    let Some(cmd) = m.args.first() else {
        return;
    };
    let cmd = cmd.to_ascii_uppercase();
    if cmd == "EVALSHA" || cmd == "EVAL" {
        st.pending = Some(Group {
            ts: m.ts,
            args: m.args,
            lua: Vec::new(),
        });
        return;
    }
    let lock_key = m.args.get(1).filter(|k| k.starts_with(prefix));
    if let (Some(lock), true) = (lock_key, is_plain_acquire(&m.args)) {
        let (lock, token) = (lock.clone(), m.args[2].clone());
        plain_set(st, &lock, &token);
        return;
    }
    if WRITES.contains(&cmd.as_str()) && lock_key.is_some() {
        st.stats.unscripted_writes += 1;
        if st.stats.unscripted_examples.len() < MAX_EXAMPLES {
            st.stats.unscripted_examples.push(line.to_owned());
        }
    }
}

/// `SET lock token NX PX ttl`, exactly as lockattr sends it.
fn is_plain_acquire(args: &[String]) -> bool {
    args.len() == 6
        && eq(&args[0], "SET")
        && eq(&args[3], "NX")
        && eq(&args[4], "PX")
        && args[5].parse::<u64>().is_ok()
}

fn owner(st: &State, key: &str) -> Owner {
    st.owners
        .get(key)
        .cloned()
        .unwrap_or(if st.default_unknown {
            Owner::Unknown
        } else {
            Owner::Free
        })
}

/// Check that `token` may hold `key` for an owner-checked `what`; `false` (and a violation) if not.
fn touch(st: &mut State, key: &str, token: &str, what: &str, ts: u64) -> bool {
    let ok = match owner(st, key) {
        Owner::Token(t) => t == token,
        Owner::Maybe(ts) => ts.iter().any(|t| t == token),
        Owner::Unknown => true,
        Owner::Free => false,
    };
    if !ok {
        st.stats.foreign_touches += 1;
        if st.stats.foreign_examples.len() < MAX_EXAMPLES {
            let holder = owner(st, key);
            st.stats.foreign_examples.push(format!(
                "at {ts}: {what} of {key} on behalf of token {token} while the key is {holder:?}"
            ));
        }
    }
    ok
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A grant of `lock` to `token` with `fence`: check the fence order, record the holder.
fn record_grant(st: &mut State, lock: &str, token: String, fence: u64, ts: u64) {
    st.stats.grants += 1;
    record_fence(st, lock, token, fence, ts);
}

/// `fence` issued to `token`, the holder of `lock`: check the fence order, record the holder.
fn record_fence(st: &mut State, lock: &str, token: String, fence: u64, ts: u64) {
    st.stats.fences += 1;
    let last = st.last_fence.get(lock).copied().unwrap_or(0);
    if fence <= last {
        st.stats.fence_regressions += 1;
        if st.stats.fence_examples.len() < MAX_EXAMPLES {
            st.stats.fence_examples.push(format!(
                "at {ts}: {lock} granted fence {fence} after fence {last}"
            ));
        }
    }
    st.last_fence.insert(lock.to_owned(), fence.max(last));
    st.owners
        .insert(lock.to_owned(), Owner::Token(token.clone()));
    st.token_of.insert((lock.to_owned(), fence), token);
}

/// The acquire part of a single-node script call: per lock `SET lock token NX PX ttl GET`; a busy lock
/// is followed by PTTL (+ APPEND of the waiter mark), a wrong type by TYPE. Then, when any was granted,
/// TIME and `SET counter last GET` (maybe `SET counter last` again): the granted locks get fences
/// last - granted + 1 ..= last in order. A bad counter gives every grant back (DEL). A SET that the
/// server refused (OOM) is not in the trace at all.
fn follow_acquires(
    st: &mut State,
    counter: &str,
    locks: &[String],
    tokens: &[&String],
    lua: &[Vec<String>],
    ts: u64,
) {
    let mut granted: Vec<usize> = Vec::new();
    let mut last: Option<u64> = None;
    let mut current: Option<usize> = None;
    for c in lua {
        let is = |name: &str| eq(&c[0], name);
        if is("SET") && c.len() >= 3 && c.iter().any(|a| eq(a, "NX")) {
            current = (0..locks.len()).find(|&i| locks[i] == c[1] && *tokens[i] == c[2]);
            if let Some(i) = current {
                granted.push(i);
            }
        } else if (is("PTTL") || is("TYPE")) && c.get(1).is_some_and(|k| k != counter) {
            if let Some(i) = current.take() {
                granted.retain(|&j| j != i);
            }
        } else if is("SET") && c.get(1).is_some_and(|k| k == counter) {
            current = None;
            last = c.get(2).and_then(|v| v.parse::<u64>().ok());
        } else if is("DEL") {
            granted.retain(|&j| c.get(1) != Some(&locks[j]));
        }
    }
    st.stats.busy += (locks.len() - granted.len()) as u64;
    // A token whose script acquire found the lock busy does not hold it: drop it from the candidates
    // a plain `SET NX` left.
    for (i, lock) in locks.iter().enumerate() {
        if granted.contains(&i) {
            continue;
        }
        if let Some(Owner::Maybe(ts)) = st.owners.get_mut(lock) {
            ts.retain(|t| t != tokens[i]);
            match ts.len() {
                0 => {
                    st.owners.insert(lock.clone(), Owner::Unknown);
                }
                1 => {
                    let t = ts[0].clone();
                    st.owners.insert(lock.clone(), Owner::Token(t));
                }
                _ => {}
            }
        }
    }
    match last {
        Some(last) => {
            let first = (last + 1).saturating_sub(granted.len() as u64);
            for (rank, i) in granted.into_iter().enumerate() {
                record_grant(st, &locks[i], tokens[i].clone(), first + rank as u64, ts);
            }
        }
        None => st.stats.busy += granted.len() as u64,
    }
}

/// The release part of a script call: per lock (in order) GET, then DEL (+ PUBLISH when someone
/// waits) or PEXPIRE (minimum hold) if ours.
fn follow_releases(
    st: &mut State,
    locks: &[String],
    tokens: &[&String],
    lua: &[Vec<String>],
    ts: u64,
) {
    st.stats.releases += locks.len() as u64;
    let mut current: Option<usize> = None;
    let mut next = 0usize;
    for c in lua {
        if eq(&c[0], "GET") {
            current = Some(next);
            next += 1;
            continue;
        }
        let Some(i) = current else { continue };
        let (Some(lock), Some(token)) = (locks.get(i), tokens.get(i)) else {
            continue;
        };
        let (lock, token) = (lock.clone(), (*token).clone());
        if eq(&c[0], "DEL") && c.get(1) == Some(&lock) {
            let _ = touch(st, &lock, &token, "release (DEL)", ts);
            st.owners.insert(lock.clone(), Owner::Free);
            st.deleted_tokens.insert(token);
            st.stats.releases_deleted += 1;
        } else if eq(&c[0], "PEXPIRE")
            && c.get(1) == Some(&lock)
            && touch(st, &lock, &token, "release (PEXPIRE)", ts)
        {
            resolve(st, &lock, token);
        }
    }
}

/// An owner-checked command ran for `token` on `lock`: the token holds it (unless the holder is
/// unknown, which stays unknown).
fn resolve(st: &mut State, lock: &str, token: String) {
    if owner(st, lock) != Owner::Unknown {
        st.owners.insert(lock.to_owned(), Owner::Token(token));
    }
}

/// A plain client `SET lock token NX PX ttl` (an idle client's acquire).
fn plain_set(st: &mut State, lock: &str, token: &str) {
    st.stats.plain_sets += 1;
    let next = match owner(st, lock) {
        Owner::Free => {
            st.stats.grants += 1;
            Owner::Token(token.to_owned())
        }
        Owner::Token(t) => Owner::Maybe(vec![t, token.to_owned()]),
        Owner::Maybe(mut ts) => {
            ts.push(token.to_owned());
            Owner::Maybe(ts)
        }
        Owner::Unknown => Owner::Unknown,
    };
    st.owners.insert(lock.to_owned(), next);
}

/// Process the pending script group, if any.
fn finalize(st: &mut State, prefix: &str, quiet: u64) {
    let Some(g) = st.pending.take() else {
        return;
    };
    if g.lua.is_empty() {
        st.stats.noscript += 1;
        return;
    }
    let Some(nkeys) = g.args.get(2).and_then(|n| n.parse::<usize>().ok()) else {
        return;
    };
    let Some(keys) = g.args.get(3..3 + nkeys) else {
        return;
    };
    let argv = &g.args[3 + nkeys..];
    let is_lock_script = keys.last().is_some_and(|k| k.starts_with(prefix));
    if !is_lock_script {
        return;
    }
    if quiet > 0 && g.ts >= quiet {
        st.stats.calls_in_quiet_window += 1;
        if st.stats.quiet_examples.len() < MAX_EXAMPLES {
            st.stats
                .quiet_examples
                .push(format!("at {}: {}", g.ts, g.args.join(" ")));
        }
    }
    match (nkeys, argv.len()) {
        (2, 1) if keys[0].ends_with(":fence") => {
            // Fence issue: KEYS = counter, lock; ARGV = token. GET the lock, and when it holds the
            // token, TIME and `SET counter fence GET` (maybe `SET counter fence` again).
            let (lock, token) = (keys[1].clone(), argv[0].clone());
            let fence = g
                .lua
                .iter()
                .filter(|c| eq(&c[0], "SET") && c.get(1) == Some(&keys[0]))
                .filter_map(|c| c.get(2).and_then(|v| v.parse::<u64>().ok()))
                .next_back();
            if let Some(fence) = fence {
                let _ = touch(st, &lock, &token, "fence issue", g.ts);
                record_fence(st, &lock, token, fence, g.ts);
            }
        }
        (n, a) if n >= 1 && a == n => {
            // Release of locks with no minimum hold (one, or a coalesced batch): KEYS = the locks;
            // ARGV = one token per lock.
            let tokens: Vec<&String> = argv.iter().collect();
            follow_releases(st, keys, &tokens, &g.lua, g.ts);
        }
        (1, 3) if !eq(&argv[0], "release") => {
            // Hand-over (a Cluster/Redlock release of one lock has the same shape, with its
            // `release` marker where the hand-over has the token): KEYS = the lock; ARGV = the holder's token, the next holder's token, the
            // TTL. GET the lock; when it holds the holder's token unmarked, `SET lock next PX ttl`;
            // otherwise the one-lock release (its own GET, then DEL + PUBLISH if marked).
            let (lock, token, next) = (&keys[0], &argv[0], &argv[1]);
            let handed = g
                .lua
                .iter()
                .any(|c| eq(&c[0], "SET") && c.get(1) == Some(lock) && c.get(2) == Some(next));
            if handed {
                let _ = touch(st, lock, token, "hand-over (SET)", g.ts);
                st.owners.insert(lock.clone(), Owner::Token(next.clone()));
                st.deleted_tokens.insert(token.clone());
                st.stats.hand_overs += 1;
                st.stats.grants += 1;
            } else if let Some(rest) = g.lua.get(1..) {
                follow_releases(st, keys, &[token], rest, g.ts);
            }
        }
        (n, a) if n >= 1 && a == 2 * n - 1 && keys[0].ends_with(":fence") => {
            // The single-node script: KEYS = the fence counter, the locks to release, the locks to
            // acquire; ARGV = the number of releases, token and mode per release, token and ttl per
            // acquire. The releases run first (they never `SET NX`), then the acquires.
            let Ok(nr) = argv[0].parse::<usize>() else {
                return;
            };
            if nr > n - 1 {
                return;
            }
            let split = g
                .lua
                .iter()
                .position(|c| eq(&c[0], "SET") && c.iter().any(|a| eq(a, "NX")))
                .unwrap_or(g.lua.len());
            let rel_tokens: Vec<&String> = (0..nr).map(|i| &argv[1 + 2 * i]).collect();
            follow_releases(st, &keys[1..1 + nr], &rel_tokens, &g.lua[..split], g.ts);
            let acq_tokens: Vec<&String> =
                (0..n - 1 - nr).map(|i| &argv[1 + 2 * nr + 2 * i]).collect();
            follow_acquires(
                st,
                &keys[0],
                &keys[1 + nr..],
                &acq_tokens,
                &g.lua[split..],
                g.ts,
            );
        }
        (n, a) if a == 2 * n + 1 && eq(&argv[0], "release") => {
            // Release (Cluster, Redlock): KEYS = the locks; ARGV = `release`, then token, mode per lock.
            let tokens: Vec<&String> = (0..n).map(|i| &argv[1 + 2 * i]).collect();
            follow_releases(st, keys, &tokens, &g.lua, g.ts);
        }
        (n, a) if a == 2 * n => {
            // Renewal batch: for each lease GET, then PEXPIRE if it is still ours.
            st.stats.renew_batches += 1;
            st.stats.renew_items += n as u64;
            for t in &argv[..n] {
                if st.deleted_tokens.contains(t) {
                    st.stats.renew_attempts_after_release += 1;
                }
            }
            let mut current: Option<usize> = None;
            let mut next = 0usize;
            for c in &g.lua {
                if eq(&c[0], "GET") {
                    current = Some(next);
                    next += 1;
                } else if eq(&c[0], "PEXPIRE") {
                    let Some(i) = current else { continue };
                    let (Some(key), Some(token)) = (keys.get(i), argv.get(i)) else {
                        continue;
                    };
                    if c.get(1) != Some(key) {
                        st.stats.foreign_touches += 1;
                        if st.stats.foreign_examples.len() < MAX_EXAMPLES {
                            st.stats.foreign_examples.push(format!(
                                "at {}: renewal batch ran PEXPIRE on {:?} for item {i} ({key})",
                                g.ts,
                                c.get(1)
                            ));
                        }
                        continue;
                    }
                    st.stats.renew_extended += 1;
                    let (key, token) = (key.clone(), token.clone());
                    if touch(st, &key, &token, "renewal (PEXPIRE)", g.ts) {
                        resolve(st, &key, token);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_monitor_lines() {
        let l = parse_monitor_line(r#"+1795295261.160465 [0 lua] "SET" "k{\xc3\xa9}\\n\"x" "v""#)
            .unwrap();
        assert_eq!(l.ts, 1_795_295_261_160_465);
        assert_eq!(l.client, "lua");
        assert_eq!(
            l.args,
            vec!["SET".to_owned(), "k{é}\\n\"x".into(), "v".into()]
        );
        let l = parse_monitor_line(r#"1.5 [0 127.0.0.1:53766] "evalsha" "ab" "0""#).unwrap();
        assert_eq!(l.ts, 1_500_000);
        assert_eq!(l.client, "127.0.0.1:53766");
    }

    fn feed(st: &mut State, lines: &[&str]) {
        for l in lines {
            process(st, l, "t:{", 0);
        }
        finalize(st, "t:{", 0);
    }

    #[test]
    fn follows_coalesced_acquires_and_releases() {
        let mut st = State::default();
        feed(
            &mut st,
            &[
                r#"1.0 [0 c:1] "EVALSHA" "m" "3" "t:fence" "t:{a}" "t:{b}" "0" "tok1" "500" "tok2" "500""#,
                r#"1.01 [0 lua] "SET" "t:{a}" "tok1" "NX" "PX" "500" "GET""#,
                r#"1.02 [0 lua] "SET" "t:{b}" "tok2" "NX" "PX" "500" "GET""#,
                r#"1.03 [0 lua] "PTTL" "t:{b}""#,
                r#"1.04 [0 lua] "APPEND" "t:{b}" "*""#,
                r#"1.05 [0 lua] "TIME""#,
                r#"1.06 [0 lua] "SET" "t:fence" "7" "GET""#,
                r#"1.1 [0 c:1] "EVALSHA" "m" "3" "t:fence" "t:{a}" "t:{b}" "2" "tok1" "0" "tok2" "0""#,
                r#"1.11 [0 lua] "GET" "t:{a}""#,
                r#"1.12 [0 lua] "DEL" "t:{a}""#,
                r#"1.13 [0 lua] "GET" "t:{b}""#,
            ],
        );
        assert_eq!(st.stats.grants, 1, "{:?}", st.stats);
        assert_eq!(st.stats.busy, 1);
        assert_eq!(st.last_fence.get("t:{a}"), Some(&7));
        assert_eq!(st.stats.releases_deleted, 1);
        assert_eq!(st.stats.foreign_touches, 0, "{:?}", st.stats);
        // Two grants in one call take consecutive fences up to the counter's new value (raised once
        // more because the counter was ahead of the clock); a coalesced release of someone else's
        // lock is caught.
        feed(
            &mut st,
            &[
                r#"2.0 [0 c:1] "EVALSHA" "m" "3" "t:fence" "t:{c}" "t:{d}" "0" "tok5" "500" "tok6" "500""#,
                r#"2.01 [0 lua] "SET" "t:{c}" "tok5" "NX" "PX" "500" "GET""#,
                r#"2.02 [0 lua] "SET" "t:{d}" "tok6" "NX" "PX" "500" "GET""#,
                r#"2.03 [0 lua] "TIME""#,
                r#"2.04 [0 lua] "SET" "t:fence" "5" "GET""#,
                r#"2.05 [0 lua] "SET" "t:fence" "9""#,
                r#"2.1 [0 c:2] "EVALSHA" "m" "3" "t:fence" "t:{x}" "t:{c}" "2" "tok8" "0" "tok7" "-1""#,
                r#"2.11 [0 lua] "GET" "t:{x}""#,
                r#"2.12 [0 lua] "GET" "t:{c}""#,
                r#"2.13 [0 lua] "DEL" "t:{c}""#,
            ],
        );
        assert_eq!(st.stats.grants, 3);
        assert_eq!(st.last_fence.get("t:{c}"), Some(&8));
        assert_eq!(st.last_fence.get("t:{d}"), Some(&9));
        assert_eq!(st.stats.foreign_touches, 1, "{:?}", st.stats);
        // A bad counter gives the grants back: nothing is recorded as granted.
        feed(
            &mut st,
            &[
                r#"3.0 [0 c:1] "EVALSHA" "m" "2" "t:fence" "t:{e}" "0" "tok9" "500""#,
                r#"3.01 [0 lua] "SET" "t:{e}" "tok9" "NX" "PX" "500" "GET""#,
                r#"3.02 [0 lua] "TIME""#,
                r#"3.03 [0 lua] "TYPE" "t:fence""#,
                r#"3.04 [0 lua] "DEL" "t:{e}""#,
            ],
        );
        assert_eq!(st.stats.grants, 3);
    }

    #[test]
    fn follows_a_coalesced_release_of_plain_locks() {
        let mut st = State::default();
        feed(
            &mut st,
            &[
                r#"1.0 [0 c:1] "SET" "t:{a}" "tok1" "NX" "PX" "500""#,
                r#"1.01 [0 c:1] "SET" "t:{b}" "tok2" "NX" "PX" "500""#,
                r#"1.02 [0 c:1] "SET" "t:{c}" "tok4" "NX" "PX" "500""#,
                // One call releases two locks (KEYS = the locks, ARGV = one token each).
                r#"1.1 [0 c:1] "EVALSHA" "r" "2" "t:{a}" "t:{b}" "tok1" "tok2""#,
                r#"1.11 [0 lua] "GET" "t:{a}""#,
                r#"1.12 [0 lua] "DEL" "t:{a}""#,
                r#"1.13 [0 lua] "GET" "t:{b}""#,
                r#"1.14 [0 lua] "DEL" "t:{b}""#,
            ],
        );
        assert_eq!(st.stats.grants, 3, "{:?}", st.stats);
        assert_eq!(st.stats.releases_deleted, 2, "{:?}", st.stats);
        assert_eq!(st.stats.foreign_touches, 0, "{:?}", st.stats);
        // A batch that deletes a lock another token holds is caught.
        feed(
            &mut st,
            &[
                r#"2.0 [0 c:2] "EVALSHA" "r" "2" "t:{d}" "t:{c}" "tok5" "tok3""#,
                r#"2.01 [0 lua] "GET" "t:{d}""#,
                r#"2.02 [0 lua] "GET" "t:{c}""#,
                r#"2.03 [0 lua] "DEL" "t:{c}""#,
            ],
        );
        assert_eq!(st.stats.foreign_touches, 1, "{:?}", st.stats);
    }

    #[test]
    fn follows_a_release_and_an_acquire_in_one_call() {
        let mut st = State::default();
        feed(
            &mut st,
            &[
                r#"1.0 [0 c:1] "EVALSHA" "m" "2" "t:fence" "t:{a}" "0" "tok1" "500""#,
                r#"1.01 [0 lua] "SET" "t:{a}" "tok1" "NX" "PX" "500" "GET""#,
                r#"1.02 [0 lua] "TIME""#,
                r#"1.03 [0 lua] "SET" "t:fence" "7" "GET""#,
                // One call: tok1 releases a (marked by a waiter), tok2 takes it, tok3 finds b busy.
                r#"2.0 [0 c:1] "EVALSHA" "m" "4" "t:fence" "t:{a}" "t:{a}" "t:{b}" "1" "tok1" "0" "tok2" "500" "tok3" "500""#,
                r#"2.01 [0 lua] "GET" "t:{a}""#,
                r#"2.02 [0 lua] "DEL" "t:{a}""#,
                r#"2.03 [0 lua] "PUBLISH" "t:{a}:released" "1""#,
                r#"2.04 [0 lua] "SET" "t:{a}" "tok2" "NX" "PX" "500" "GET""#,
                r#"2.05 [0 lua] "SET" "t:{b}" "tok3" "NX" "PX" "500" "GET""#,
                r#"2.06 [0 lua] "PTTL" "t:{b}""#,
                r#"2.07 [0 lua] "TIME""#,
                r#"2.08 [0 lua] "SET" "t:fence" "8" "GET""#,
            ],
        );
        assert_eq!(st.stats.grants, 2, "{:?}", st.stats);
        assert_eq!(st.stats.busy, 1);
        assert_eq!(st.stats.releases_deleted, 1);
        assert_eq!(st.stats.foreign_touches, 0, "{:?}", st.stats);
        assert_eq!(st.last_fence.get("t:{a}"), Some(&8));
        assert_eq!(owner(&st, "t:{a}"), Owner::Token("tok2".into()));
    }

    #[test]
    fn follows_a_hand_over_and_a_marked_lock_released_instead() {
        let mut st = State::default();
        feed(
            &mut st,
            &[
                r#"1.000001 [0 c:1] "EVALSHA" "m" "2" "t:fence" "t:{a}" "0" "tok1" "500""#,
                r#"1.000003 [0 lua] "SET" "t:{a}" "tok1" "NX" "PX" "500" "GET""#,
                r#"1.000004 [0 lua] "TIME""#,
                r#"1.000005 [0 lua] "SET" "t:fence" "7" "GET""#,
                // Hand-over from tok1 to tok2.
                r#"1.1 [0 c:1] "EVALSHA" "h" "1" "t:{a}" "tok1" "tok2" "500""#,
                r#"1.11 [0 lua] "GET" "t:{a}""#,
                r#"1.12 [0 lua] "SET" "t:{a}" "tok2" "PX" "500""#,
                // tok2 renews (its own), tok1 renews (no longer its own).
                r#"1.2 [0 c:1] "EVALSHA" "r" "1" "t:{a}" "tok2" "500""#,
                r#"1.21 [0 lua] "GET" "t:{a}""#,
                r#"1.22 [0 lua] "PEXPIRE" "t:{a}" "500""#,
                r#"1.3 [0 c:1] "EVALSHA" "r" "1" "t:{a}" "tok1" "500""#,
                r#"1.31 [0 lua] "GET" "t:{a}""#,
                r#"1.32 [0 lua] "PEXPIRE" "t:{a}" "500""#,
            ],
        );
        assert_eq!(st.stats.hand_overs, 1);
        assert_eq!(
            st.stats.foreign_touches, 1,
            "{:?}",
            st.stats.foreign_examples
        );
        // A hand-over that finds the lock marked releases it instead (the release's own GET, then
        // DEL and PUBLISH); the key is then free, and a later hand-over by tok2 touches nothing.
        feed(
            &mut st,
            &[
                r#"1.4 [0 c:1] "EVALSHA" "h" "1" "t:{a}" "tok2" "tok3" "500""#,
                r#"1.41 [0 lua] "GET" "t:{a}""#,
                r#"1.42 [0 lua] "GET" "t:{a}""#,
                r#"1.43 [0 lua] "DEL" "t:{a}""#,
                r#"1.44 [0 lua] "PUBLISH" "t:{a}:released" "1""#,
            ],
        );
        assert_eq!(st.stats.hand_overs, 1);
        assert_eq!(st.stats.releases_deleted, 1);
        assert_eq!(st.stats.foreign_touches, 1);
        assert_eq!(st.owners.get("t:{a}"), Some(&Owner::Free));
    }

    #[test]
    fn detects_a_renewal_of_someone_elses_lock() {
        let mut st = State::default();
        feed(
            &mut st,
            &[
                r#"1.000001 [0 c:1] "EVALSHA" "m" "2" "t:fence" "t:{a}" "0" "tok1" "500""#,
                r#"1.000003 [0 lua] "SET" "t:{a}" "tok1" "NX" "PX" "500" "GET""#,
                r#"1.000004 [0 lua] "TIME""#,
                r#"1.000005 [0 lua] "SET" "t:fence" "7" "GET""#,
                r#"1.000006 [0 c:2] "EVALSHA" "r" "1" "t:{a}" "tok2" "500""#,
                r#"1.000007 [0 lua] "GET" "t:{a}""#,
                r#"1.000008 [0 lua] "PEXPIRE" "t:{a}" "500""#,
            ],
        );
        assert_eq!(st.stats.grants, 1);
        assert_eq!(st.stats.renew_extended, 1);
        assert_eq!(st.stats.foreign_touches, 1, "{:?}", st.stats);
        // The owner's own renewal and release are fine; a second grant must raise the fence.
        feed(
            &mut st,
            &[
                r#"1.1 [0 c:1] "EVALSHA" "r" "1" "t:{a}" "tok1" "500""#,
                r#"1.2 [0 lua] "GET" "t:{a}""#,
                r#"1.3 [0 lua] "PEXPIRE" "t:{a}" "500""#,
                r#"1.4 [0 c:1] "EVALSHA" "d" "1" "t:{a}" "release" "tok1" "-1""#,
                r#"1.5 [0 lua] "GET" "t:{a}""#,
                r#"1.6 [0 lua] "DEL" "t:{a}""#,
                r#"1.7 [0 lua] "PUBLISH" "t:{a}:released" "1""#,
                r#"1.8 [0 c:3] "EVALSHA" "m" "2" "t:fence" "t:{a}" "0" "tok3" "500""#,
                r#"1.81 [0 lua] "SET" "t:{a}" "tok3" "NX" "PX" "500" "GET""#,
                r#"1.82 [0 lua] "TIME""#,
                r#"1.83 [0 lua] "SET" "t:fence" "7" "GET""#,
                r#"1.9 [0 c:9] "DEL" "t:{a}""#,
            ],
        );
        assert_eq!(st.stats.foreign_touches, 1);
        assert_eq!(st.stats.releases_deleted, 1);
        assert_eq!(st.stats.fence_regressions, 1);
        assert_eq!(st.stats.unscripted_writes, 1);
    }

    #[test]
    fn follows_plain_acquires_one_lock_releases_and_fence_issues() {
        let mut st = State::default();
        feed(
            &mut st,
            &[
                // tok1 takes the free lock with a plain SET, asks for its fence, releases.
                r#"1.0 [0 c:1] "SET" "t:{a}" "tok1" "NX" "PX" "500""#,
                r#"1.1 [0 c:1] "EVALSHA" "f" "2" "t:fence" "t:{a}" "tok1""#,
                r#"1.11 [0 lua] "GET" "t:{a}""#,
                r#"1.12 [0 lua] "TIME""#,
                r#"1.13 [0 lua] "SET" "t:fence" "7" "GET""#,
                r#"1.2 [0 c:1] "EVALSHA" "r1" "1" "t:{a}" "tok1""#,
                r#"1.21 [0 lua] "GET" "t:{a}""#,
                r#"1.22 [0 lua] "DEL" "t:{a}""#,
                // tok2 takes it; tok3's plain SET may have found it expired: either holds it now.
                r#"2.0 [0 c:2] "SET" "t:{a}" "tok2" "NX" "PX" "500""#,
                r#"2.1 [0 c:3] "SET" "t:{a}" "tok3" "NX" "PX" "500""#,
            ],
        );
        assert_eq!(st.stats.plain_sets, 3);
        assert_eq!(st.stats.grants, 2, "{:?}", st.stats);
        assert_eq!(st.stats.fences, 1);
        assert_eq!(st.stats.releases_deleted, 1);
        assert_eq!(st.stats.unscripted_writes, 0);
        assert_eq!(st.token_of.get(&("t:{a}".into(), 7)), Some(&"tok1".into()));
        assert_eq!(
            owner(&st, "t:{a}"),
            Owner::Maybe(vec!["tok2".into(), "tok3".into()])
        );
        // tok3's script acquire then finds it busy: tok2 holds it; its fence must be above 7, and a
        // release by tok3 would touch tok2's lock.
        feed(
            &mut st,
            &[
                r#"2.2 [0 c:3] "EVALSHA" "m" "2" "t:fence" "t:{a}" "0" "tok3" "500""#,
                r#"2.21 [0 lua] "SET" "t:{a}" "tok3" "NX" "PX" "500" "GET""#,
                r#"2.22 [0 lua] "PTTL" "t:{a}""#,
                r#"2.23 [0 lua] "APPEND" "t:{a}" "*""#,
            ],
        );
        assert_eq!(owner(&st, "t:{a}"), Owner::Token("tok2".into()));
        assert_eq!(st.stats.busy, 1);
        feed(
            &mut st,
            &[
                r#"3.0 [0 c:2] "EVALSHA" "f" "2" "t:fence" "t:{a}" "tok2""#,
                r#"3.01 [0 lua] "GET" "t:{a}""#,
                r#"3.02 [0 lua] "TIME""#,
                r#"3.03 [0 lua] "SET" "t:fence" "6" "GET""#,
                r#"3.1 [0 c:3] "EVALSHA" "r1" "1" "t:{a}" "tok3""#,
                r#"3.11 [0 lua] "GET" "t:{a}""#,
                r#"3.12 [0 lua] "DEL" "t:{a}""#,
                r#"3.13 [0 lua] "PUBLISH" "t:{a}:released" "1""#,
            ],
        );
        assert_eq!(st.stats.fence_regressions, 1, "{:?}", st.stats);
        assert_eq!(st.stats.foreign_touches, 1, "{:?}", st.stats);
        // A fence refused (not the owner) issues nothing; a foreign fence issue is a violation.
        feed(
            &mut st,
            &[
                r#"4.0 [0 c:4] "EVALSHA" "f" "2" "t:fence" "t:{b}" "tok4""#,
                r#"4.01 [0 lua] "GET" "t:{b}""#,
                r#"4.1 [0 c:5] "SET" "t:{b}" "tok5" "NX" "PX" "500""#,
                r#"4.2 [0 c:6] "EVALSHA" "f" "2" "t:fence" "t:{b}" "tok6""#,
                r#"4.21 [0 lua] "GET" "t:{b}""#,
                r#"4.22 [0 lua] "TIME""#,
                r#"4.23 [0 lua] "SET" "t:fence" "9" "GET""#,
            ],
        );
        assert_eq!(st.stats.fences, 3, "{:?}", st.stats);
        assert_eq!(st.stats.foreign_touches, 2, "{:?}", st.stats);
    }
}
