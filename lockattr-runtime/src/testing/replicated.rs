//! Replicated Redis deployments for tests: a Redis Cluster ([`RedisCluster`]: 3 primaries with one
//! replica each) and a Sentinel group ([`RedisSentinels`]: a primary, a replica, 3 Sentinels).
//!
//! Every process runs on a free loopback port in its own temporary directory and is killed on drop
//! (also when a test panics). Timeouts are short so failovers take a second or two: cluster nodes use
//! `cluster-node-timeout 500` and always allow a replica to take over; Sentinels use
//! `down-after-milliseconds 500`. All methods block the calling thread (they run `redis-cli` or wait
//! for a state); from an async test call them through `tokio::task::block_in_place` or
//! `spawn_blocking`. Failures panic with the logs of every process.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::server::{free_port, RedisServer};
use super::tls::TlsCert;

/// How long a cluster or Sentinel group may take to become healthy.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `redis-cli` may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// Arguments of every cluster node (on top of [`RedisServer`]'s defaults).
const CLUSTER_NODE_ARGS: &[&str] = &[
    "--cluster-enabled",
    "yes",
    "--cluster-node-timeout",
    "500",
    "--cluster-replica-validity-factor",
    "0",
    "--repl-diskless-sync-delay",
    "0",
];
/// Arguments of the servers of a Sentinel group.
const SENTINEL_SERVER_ARGS: &[&str] = &["--repl-diskless-sync-delay", "0"];

fn cli_bin() -> OsString {
    std::env::var_os("LOCKATTR_REDIS_CLI")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "redis-cli".into())
}

fn server_bin() -> OsString {
    std::env::var_os("LOCKATTR_REDIS_SERVER")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "redis-server".into())
}

/// `redis-cli -h 127.0.0.1 -p port args...`, stdout trimmed; `Err` when it cannot run or hangs.
fn cli(port: u16, args: &[&str]) -> io::Result<String> {
    let child = Command::new(cli_bin())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_TIMEOUT) {
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("redis-cli -p {port} {args:?} did not finish within {CLI_TIMEOUT:?}"),
            ))
        }
    }
}

/// Poll `check` every 20 ms until it returns `Some`, or fail after `timeout` with `what`.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> io::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("not within {timeout:?}: {what}"),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    master: bool,
    failed: bool,
    master_id: Option<String>,
    slots: Vec<(u16, u16)>,
}

fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 8 {
                return None;
            }
            let hostport = parts[1].split(['@', ',']).next()?;
            let port = hostport.rsplit_once(':')?.1.parse().ok()?;
            let flags = parts[2];
            let slots = parts[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeLine {
                id: parts[0].to_owned(),
                port,
                master: flags.contains("master"),
                failed: flags.contains("fail"),
                master_id: (parts[3] != "-").then(|| parts[3].to_owned()),
                slots,
            })
        })
        .collect()
}

/// A Redis Cluster of 3 primaries and 3 replicas (one per primary) on loopback, killed on drop.
///
/// Nodes are numbered 0..6 in start order; right after [`RedisCluster::spawn`] nodes 0, 1, 2 are the
/// primaries, but which replica follows which primary is up to `redis-cli --cluster create` (see
/// [`RedisCluster::replica_of`]), and roles change on failover.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Each node's TLS port (empty without TLS).
    tls_ports: Vec<u16>,
    paused: HashSet<usize>,
}

impl RedisCluster {
    /// Start 6 nodes, join them into a cluster with one replica per primary, and wait until every
    /// node reports `cluster_state:ok` and every replica is in sync.
    ///
    /// # Panics
    /// If a node cannot be started or the cluster does not settle within 20 s; the message includes
    /// every node's log.
    pub fn spawn() -> RedisCluster {
        match Self::try_spawn() {
            Ok(c) => c,
            Err(e) => panic!("RedisCluster::spawn failed: {e}"),
        }
    }

    /// Like [`RedisCluster::spawn`], returning failures (with the logs) as an error.
    pub fn try_spawn() -> io::Result<RedisCluster> {
        Self::start(None)
    }

    /// Like [`RedisCluster::spawn`], and every node also listens on a TLS port with `cert`; the
    /// cluster bus and replication use TLS too (`tls-cluster yes`, `tls-replication yes`), so the
    /// nodes announce their TLS ports to clients that connect over TLS ([`RedisCluster::tls_urls`]).
    ///
    /// # Panics
    /// As [`RedisCluster::spawn`].
    pub fn spawn_tls(cert: &TlsCert) -> RedisCluster {
        match Self::start(Some(cert)) {
            Ok(c) => c,
            Err(e) => panic!("RedisCluster::spawn_tls failed: {e}"),
        }
    }

    fn start(tls: Option<&TlsCert>) -> io::Result<RedisCluster> {
        let mut nodes = Vec::with_capacity(6);
        let mut tls_ports = Vec::new();
        for _ in 0..6 {
            let mut args: Vec<String> = CLUSTER_NODE_ARGS.iter().map(|a| (*a).to_owned()).collect();
            if let Some(cert) = tls {
                let port = free_port();
                args.extend(cert.server_args(port));
                args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
                tls_ports.push(port);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(RedisServer::try_spawn_with(&args)?);
        }
        let cluster = RedisCluster {
            nodes,
            tls_ports,
            paused: HashSet::new(),
        };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = cli(cluster.nodes[0].port(), &args)?;
        if !out.contains("All 16384 slots covered") {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed:\n{out}\n{}",
                cluster.logs()
            )));
        }
        cluster
            .settle(SETTLE_TIMEOUT)
            .map_err(|e| io::Error::new(e.kind(), format!("{e}\n{}", cluster.logs())))?;
        Ok(cluster)
    }

    /// Wait until every running, unpaused node reports `cluster_state:ok`, sees 3 primaries that
    /// cover all slots and no failed node among the running ones, and every replica's link is up.
    fn settle(&self, timeout: Duration) -> io::Result<()> {
        wait_for("the cluster to settle", timeout, || {
            let live = self.live();
            for &i in &live {
                let info = cli(self.nodes[i].port(), &["CLUSTER", "INFO"]).ok()?;
                if !info.contains("cluster_state:ok") {
                    return None;
                }
            }
            let view = self.view()?;
            let masters: Vec<&NodeLine> = view
                .iter()
                .filter(|n| n.master && !n.failed && !n.slots.is_empty())
                .collect();
            let covered: u32 = masters
                .iter()
                .flat_map(|m| m.slots.iter())
                .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
                .sum();
            if masters.len() != 3 || covered != 16384 {
                return None;
            }
            let running_ports: HashSet<u16> = live.iter().map(|&i| self.nodes[i].port()).collect();
            if view
                .iter()
                .any(|n| n.failed && running_ports.contains(&n.port))
            {
                return None;
            }
            for n in view
                .iter()
                .filter(|n| !n.master && running_ports.contains(&n.port))
            {
                let master_alive = n
                    .master_id
                    .as_ref()
                    .and_then(|id| view.iter().find(|m| &m.id == id))
                    .is_some_and(|m| running_ports.contains(&m.port));
                if !master_alive {
                    continue;
                }
                let repl = cli(n.port, &["INFO", "replication"]).ok()?;
                if !repl.contains("master_link_status:up") {
                    return None;
                }
            }
            Some(())
        })
    }

    /// Indexes of running, unpaused nodes.
    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_running() && !self.paused.contains(i))
            .collect()
    }

    /// `CLUSTER NODES` as seen by the first live node.
    fn view(&self) -> Option<Vec<NodeLine>> {
        let i = *self.live().first()?;
        let text = cli(self.nodes[i].port(), &["CLUSTER", "NODES"]).ok()?;
        let nodes = parse_nodes(&text);
        (!nodes.is_empty()).then_some(nodes)
    }

    /// The node listening on `port` (plain or TLS).
    fn index_of_port(&self, port: u16) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.has_port(i, port))
    }

    fn has_port(&self, i: usize, port: u16) -> bool {
        self.nodes[i].port() == port || self.tls_ports.get(i) == Some(&port)
    }

    /// The `redis://` URL of every node (also of stopped ones).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The `rediss://127.0.0.1:port` URL of every node's TLS port (empty unless started with
    /// [`RedisCluster::spawn_tls`]).
    pub fn tls_urls(&self) -> Vec<String> {
        self.tls_ports
            .iter()
            .map(|p| format!("rediss://127.0.0.1:{p}"))
            .collect()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// The number of nodes (6).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false (a cluster has nodes); for symmetry with [`RedisCluster::len`].
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes that currently serve slots as primaries (as a live node sees it), sorted.
    ///
    /// # Panics
    /// If no live node answers.
    pub fn primaries(&self) -> Vec<usize> {
        let view = self.view_or_panic();
        let mut out: Vec<usize> = view
            .iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .filter_map(|n| self.index_of_port(n.port))
            .collect();
        out.sort_unstable();
        out
    }

    /// The replica that follows primary `primary`, if any.
    ///
    /// # Panics
    /// If no live node answers.
    pub fn replica_of(&self, primary: usize) -> Option<usize> {
        let view = self.view_or_panic();
        let id = &view.iter().find(|n| self.has_port(primary, n.port))?.id;
        view.iter()
            .find(|n| !n.master && n.master_id.as_ref() == Some(id) && !n.failed)
            .and_then(|n| self.index_of_port(n.port))
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    ///
    /// # Panics
    /// If no live node answers.
    pub fn keyslot(&self, key: &str) -> u16 {
        let i = *self.live().first().expect("a live cluster node");
        let out = cli(self.nodes[i].port(), &["CLUSTER", "KEYSLOT", key]).unwrap_or_default();
        out.parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key} answered {out:?}"))
    }

    /// The node that serves `key`'s slot as primary.
    ///
    /// # Panics
    /// If no live node answers or no primary covers the slot.
    pub fn primary_of_key(&self, key: &str) -> usize {
        let slot = self.keyslot(key);
        let view = self.view_or_panic();
        view.iter()
            .filter(|n| n.master && !n.failed)
            .find(|n| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .and_then(|n| self.index_of_port(n.port))
            .unwrap_or_else(|| panic!("no primary serves slot {slot}\n{}", self.logs()))
    }

    /// Kill node `i` with `SIGKILL` (nothing saved).
    pub fn kill(&mut self, i: usize) {
        self.paused.remove(&i);
        self.nodes[i].kill();
    }

    /// Freeze node `i` with `SIGSTOP`.
    pub fn pause(&mut self, i: usize) {
        self.nodes[i].pause();
        self.paused.insert(i);
    }

    /// Let a paused node `i` continue.
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].resume();
        self.paused.remove(&i);
    }

    /// After primary `failed` was killed: wait until its former replica `replica` is a primary (by
    /// its own `ROLE`) and the surviving nodes agree that the cluster is healthy again.
    ///
    /// # Panics
    /// If that does not happen within 20 s; the message includes every node's log.
    pub fn wait_for_failover(&self, replica: usize) {
        let port = self.nodes[replica].port();
        let promoted = wait_for("the replica to be promoted", SETTLE_TIMEOUT, || {
            cli(port, &["ROLE"])
                .ok()
                .filter(|r| r.starts_with("master"))
        });
        if let Err(e) = promoted.and_then(|_| self.settle(SETTLE_TIMEOUT)) {
            panic!("RedisCluster::wait_for_failover: {e}\n{}", self.logs());
        }
    }

    /// Wait until the cluster is healthy (see [`RedisCluster::spawn`]) among the live nodes.
    ///
    /// # Panics
    /// If that does not happen within 20 s.
    pub fn wait_healthy(&self) {
        if let Err(e) = self.settle(SETTLE_TIMEOUT) {
            panic!("RedisCluster::wait_healthy: {e}\n{}", self.logs());
        }
    }

    fn view_or_panic(&self) -> Vec<NodeLine> {
        self.view()
            .unwrap_or_else(|| panic!("no cluster node answers CLUSTER NODES\n{}", self.logs()))
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let log = n.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("--- node {i} (port {}) ---\n", n.port()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// A `redis-server --sentinel` child process with its own config file, killed on drop.
#[derive(Debug)]
struct SentinelProcess {
    child: Child,
    port: u16,
    /// The TLS port, when started with a certificate.
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl SentinelProcess {
    /// A Sentinel monitoring `master` at `primary_port`; with `tls`, it also listens on a TLS port and
    /// reaches servers and other Sentinels over TLS (`primary_port` is then the primary's TLS port).
    fn start(
        master: &str,
        primary_port: u16,
        tls: Option<&TlsCert>,
    ) -> io::Result<SentinelProcess> {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("lockattr-sentinel-")
                .tempdir()?;
            let port = {
                let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                l.local_addr()?.port()
            };
            if port == 6379 {
                continue;
            }
            let conf = dir.path().join("sentinel.conf");
            let mut f = fs::File::create(&conf)?;
            write!(
                f,
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {master} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {master} 500\n\
                 sentinel failover-timeout {master} 1000\n\
                 sentinel parallel-syncs {master} 1\n",
                dir = dir.path().display()
            )?;
            let tls_port = tls.map(|_| free_port());
            if let (Some(cert), Some(p)) = (tls, tls_port) {
                f.write_all(cert.sentinel_conf(p).as_bytes())?;
            }
            drop(f);
            let stderr = fs::File::create(dir.path().join("sentinel.stderr"))?;
            let child = Command::new(server_bin())
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr))
                .spawn()?;
            let mut p = SentinelProcess {
                child,
                port,
                tls_port,
                dir,
            };
            let ready = wait_for(
                "the Sentinel to answer PING",
                Duration::from_secs(10),
                || {
                    if !matches!(p.child.try_wait(), Ok(None)) {
                        return Some(false);
                    }
                    ping(port).then_some(true)
                },
            )?;
            if ready {
                return Ok(p);
            }
            last = p.log();
            let _ = p.child.wait();
        }
        Err(io::Error::other(format!(
            "redis-server --sentinel did not start:\n{last}"
        )))
    }

    fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default();
        s.push_str(
            &fs::read_to_string(self.dir.path().join("sentinel.stderr")).unwrap_or_default(),
        );
        s
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PING` over raw TCP answers `+PONG`.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.trim_end() == "+PONG"
}

/// `SENTINEL MASTER name` as a map.
fn sentinel_master(port: u16, master: &str) -> Option<HashMap<String, String>> {
    let out = cli(port, &["SENTINEL", "MASTER", master]).ok()?;
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() < 2 {
        return None;
    }
    Some(
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect(),
    )
}

/// A Sentinel-managed deployment on loopback: server 0 starts as the primary, server 1 as its
/// replica, and 3 Sentinels (quorum 2) monitor them under [`RedisSentinels::MASTER`]. Killed on drop.
#[derive(Debug)]
pub struct RedisSentinels {
    servers: Vec<RedisServer>,
    /// Each server's TLS port (empty without TLS).
    tls_ports: Vec<u16>,
    sentinels: Vec<SentinelProcess>,
}

impl RedisSentinels {
    /// The master name the Sentinels monitor.
    pub const MASTER: &'static str = "lockattr-primary";

    /// Start the primary, the replica and 3 Sentinels, and wait until every Sentinel knows the
    /// replica and the other two Sentinels (so a failover can be authorised).
    ///
    /// # Panics
    /// If a process cannot be started or the group does not settle within 20 s; the message
    /// includes every log.
    pub fn spawn() -> RedisSentinels {
        match Self::try_spawn() {
            Ok(s) => s,
            Err(e) => panic!("RedisSentinels::spawn failed: {e}"),
        }
    }

    /// Like [`RedisSentinels::spawn`], returning failures (with the logs) as an error.
    pub fn try_spawn() -> io::Result<RedisSentinels> {
        Self::start(None)
    }

    /// Like [`RedisSentinels::spawn`], and every server and Sentinel also listens on a TLS port with
    /// `cert`; replication and the Sentinels' own connections use TLS, so the Sentinels name the
    /// servers' TLS ports ([`RedisSentinels::tls_sentinel_urls`]).
    ///
    /// # Panics
    /// As [`RedisSentinels::spawn`].
    pub fn spawn_tls(cert: &TlsCert) -> RedisSentinels {
        match Self::start(Some(cert)) {
            Ok(s) => s,
            Err(e) => panic!("RedisSentinels::spawn_tls failed: {e}"),
        }
    }

    fn start(tls: Option<&TlsCert>) -> io::Result<RedisSentinels> {
        let tls_ports: Vec<u16> = match tls {
            Some(_) => vec![free_port(), free_port()],
            None => Vec::new(),
        };
        let server_args = |i: usize| -> Vec<String> {
            let mut args: Vec<String> = SENTINEL_SERVER_ARGS
                .iter()
                .map(|a| (*a).to_owned())
                .collect();
            if let Some(cert) = tls {
                args.extend(cert.server_args(tls_ports[i]));
                args.extend(["--tls-replication", "yes"].map(String::from));
            }
            args
        };
        let args = server_args(0);
        let primary =
            RedisServer::try_spawn_with(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        // Replicas and Sentinels reach the primary on its TLS port when there is one.
        let primary_port = tls_ports.first().copied().unwrap_or(primary.port());
        let mut args = server_args(1);
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary_port.to_string(),
        ]);
        let replica =
            RedisServer::try_spawn_with(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut group = RedisSentinels {
            servers: vec![primary, replica],
            tls_ports,
            sentinels: Vec::new(),
        };
        for _ in 0..3 {
            let s = SentinelProcess::start(Self::MASTER, primary_port, tls)?;
            group.sentinels.push(s);
        }
        let settled = wait_for(
            "every Sentinel to know the replica and the other Sentinels",
            SETTLE_TIMEOUT,
            || {
                let replica_up = cli(group.servers[1].port(), &["INFO", "replication"])
                    .ok()?
                    .contains("master_link_status:up");
                let all = group.sentinels.iter().all(|s| {
                    sentinel_master(s.port, Self::MASTER).is_some_and(|m| {
                        m.get("num-other-sentinels").map(String::as_str) == Some("2")
                            && m.get("num-slaves").map(String::as_str) == Some("1")
                            && m.get("flags").map(String::as_str) == Some("master")
                    })
                });
                (replica_up && all).then_some(())
            },
        );
        if let Err(e) = settled {
            return Err(io::Error::new(e.kind(), format!("{e}\n{}", group.logs())));
        }
        Ok(group)
    }

    /// The Sentinels' `redis://` URLs.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The Sentinels' `rediss://127.0.0.1:port` URLs (empty unless started with
    /// [`RedisSentinels::spawn_tls`]).
    pub fn tls_sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .filter_map(|s| s.tls_port)
            .map(|p| format!("rediss://127.0.0.1:{p}"))
            .collect()
    }

    /// Server `i` (0: the initial primary, 1: the initial replica).
    pub fn server(&self, i: usize) -> &RedisServer {
        &self.servers[i]
    }

    /// Kill server `i` with `SIGKILL`.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Which server every Sentinel names as the primary, if they all agree on a running one.
    pub fn primary(&self) -> Option<usize> {
        let mut named = None;
        for s in &self.sentinels {
            let out = cli(
                s.port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER],
            )
            .ok()?;
            let port: u16 = out.lines().nth(1)?.trim().parse().ok()?;
            let i = (0..self.servers.len()).find(|&i| {
                self.servers[i].port() == port || self.tls_ports.get(i) == Some(&port)
            })?;
            if named.is_some_and(|n| n != i) {
                return None;
            }
            named = Some(i);
        }
        named.filter(|i| self.servers[*i].is_running())
    }

    /// Wait until every Sentinel names `server` as the primary and it reports the primary role.
    ///
    /// # Panics
    /// If that does not happen within 20 s; the message includes every log.
    pub fn wait_for_primary(&self, server: usize) {
        let port = self.servers[server].port();
        let r = wait_for(
            "the Sentinels to promote the server",
            SETTLE_TIMEOUT,
            || {
                let role = cli(port, &["ROLE"]).ok()?;
                (self.primary() == Some(server) && role.starts_with("master")).then_some(())
            },
        );
        if let Err(e) = r {
            panic!(
                "RedisSentinels::wait_for_primary({server}): {e}\n{}",
                self.logs()
            );
        }
    }

    /// Every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            out.push_str(&format!(
                "--- server {i} (port {}) ---\n{}",
                s.port(),
                s.log()
            ));
        }
        for (i, s) in self.sentinels.iter().enumerate() {
            out.push_str(&format!(
                "--- sentinel {i} (port {}) ---\n{}",
                s.port,
                s.log()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let text = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-b]
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 16000
c 127.0.0.1:7002@17002 slave,fail a 0 0 1 disconnected
";
        let n = parse_nodes(text);
        assert_eq!(n.len(), 3);
        assert_eq!(n[0].slots, vec![(0, 5460)]);
        assert_eq!(n[1].slots, vec![(5461, 10922), (16000, 16000)]);
        assert!(n[2].failed && !n[2].master);
        assert_eq!(n[2].master_id.as_deref(), Some("a"));
    }
}
