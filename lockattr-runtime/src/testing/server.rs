//! A real `redis-server` child process for tests.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable naming the `redis-server` binary to use.
const SERVER_BIN_ENV: &str = "LOCKATTR_REDIS_SERVER";
/// Environment variable naming the `redis-cli` binary to use.
const CLI_BIN_ENV: &str = "LOCKATTR_REDIS_CLI";
/// A port that is never handed out: the machine's own Redis may be listening there.
const RESERVED_PORT: u16 = 6379;
/// How long one start may take until the server answers `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// How many fresh ports `spawn` tries when the chosen port turns out to be taken.
const SPAWN_ATTEMPTS: usize = 5;
/// How long `restart` keeps retrying to bind the same port.
const RESTART_BIND_WINDOW: Duration = Duration::from_secs(5);
/// How long `cli` waits for `redis-cli` to finish.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// What Redis logs when its listening socket cannot be bound.
const ADDR_IN_USE: &str = "Address already in use";

/// A real `redis-server` child process on a free loopback port, in its own temp dir, killed on drop.
///
/// The server runs with `--bind 127.0.0.1 --save "" --appendonly no --protected-mode no`, its data
/// directory and log file inside a fresh temporary directory (removed on drop). Every start waits
/// until the server answers `PING` (and reports the child's own process id, so a server of a
/// parallel test that grabbed the same port is never mistaken for this one).
///
/// Failures panic with a message that includes the server log ([`RedisServer::log`]);
/// [`RedisServer::try_spawn_with`] returns them as an error instead.
///
/// The blocking calls (`spawn*`, `restart`, `cli`) block the calling thread, typically for a few
/// milliseconds; they are fine to call from a `#[tokio::test]`.
#[derive(Debug)]
pub struct RedisServer {
    /// The running child; `None` after [`RedisServer::kill`]. Behind a mutex so `&self` methods
    /// can poll it (`try_wait` needs `&mut Child`).
    child: Mutex<Option<Child>>,
    /// Process id of the most recently started child.
    pid: u32,
    port: u16,
    extra_args: Vec<String>,
    /// Holds `data/`, `redis.log` and `redis.stderr`. Declared last so it is removed after the
    /// child has been killed (in `Drop::drop`).
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with the default arguments and waits until it is ready.
    ///
    /// # Panics
    /// If the server cannot be started or does not become ready within ~10 s; the message
    /// includes the server log.
    pub fn spawn() -> RedisServer {
        Self::spawn_with(&[])
    }

    /// Starts a server with `extra_args` appended to the default arguments (for example
    /// `["--enable-debug-command", "local"]`) and waits until it is ready.
    ///
    /// # Panics
    /// If the server cannot be started or does not become ready within ~10 s; the message
    /// includes the server log.
    pub fn spawn_with(extra_args: &[&str]) -> RedisServer {
        match Self::try_spawn_with(extra_args) {
            Ok(server) => server,
            Err(err) => panic!("RedisServer::spawn_with({extra_args:?}) failed: {err}"),
        }
    }

    /// Like [`RedisServer::spawn_with`], but returns failures as an error (whose message includes
    /// the server log) instead of panicking.
    ///
    /// If the chosen port turns out to be taken (another test bound it in the meantime), a new
    /// free port is tried, a few times.
    ///
    /// # Errors
    /// The binary cannot be run (kind [`io::ErrorKind::NotFound`] when it is missing), the
    /// server exits during start-up, or it does not answer `PING` within ~10 s.
    pub fn try_spawn_with(extra_args: &[&str]) -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new()
            .prefix("lockattr-redis-")
            .tempdir()?;
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let mut last_failure = String::new();
        for attempt in 1..=SPAWN_ATTEMPTS {
            let port = try_free_port()?;
            // Each attempt starts with an empty log, so that the log shown on failure is the
            // one of the failing attempt.
            remove_if_exists(&log_path(dir.path()))?;
            remove_if_exists(&stderr_path(dir.path()))?;
            match start_process(dir.path(), port, &extra_args) {
                Ok(child) => {
                    let pid = child.id();
                    return Ok(RedisServer {
                        child: Mutex::new(Some(child)),
                        pid,
                        port,
                        extra_args,
                        dir,
                    });
                }
                Err(StartError::PortInUse) => {
                    last_failure = format!(
                        "port {port} was taken on attempt {attempt} of {SPAWN_ATTEMPTS}\n{}",
                        format_log(dir.path())
                    );
                }
                Err(StartError::Io(err)) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("cannot run {:?}: {err}", server_bin()),
                    ));
                }
                Err(StartError::Failed(reason)) => {
                    return Err(io::Error::other(format!(
                        "redis-server on port {port} {reason}\n{}",
                        format_log(dir.path())
                    )));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free port found for redis-server: {last_failure}"),
        ))
    }

    /// The loopback port the server listens on (stays the same across [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id of the most recently started server process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Freezes the server with `SIGSTOP`: connections stay open, nothing is answered, keys do
    /// not expire, until [`RedisServer::resume`].
    ///
    /// # Panics
    /// If the server is not running or the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server continue with `SIGCONT`.
    ///
    /// # Panics
    /// If the server is not running or the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Kills the server with `SIGKILL` (works on a paused server too) and waits for it to exit.
    /// Nothing is saved. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = lock(&self.child).take() {
            // `kill` fails only if the child has already exited; `wait` then just reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a new one on the same port with all data lost (a fresh,
    /// empty data directory), then waits until it is ready. The extra arguments given at spawn
    /// are used again. Binding the port is retried for a few seconds.
    ///
    /// # Panics
    /// If the new server cannot be started or does not become ready; the message includes the
    /// server log (of every start so far).
    pub fn restart(&mut self) {
        self.kill();
        let dir = self.dir.path().to_owned();
        let data = data_path(&dir);
        if let Err(err) = fs::remove_dir_all(&data) {
            if err.kind() != io::ErrorKind::NotFound {
                panic!(
                    "RedisServer::restart: cannot wipe {}: {err}",
                    data.display()
                );
            }
        }
        let deadline = Instant::now() + RESTART_BIND_WINDOW;
        loop {
            match start_process(&dir, self.port, &self.extra_args) {
                Ok(child) => {
                    self.pid = child.id();
                    *lock(&self.child) = Some(child);
                    return;
                }
                Err(StartError::PortInUse) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(StartError::PortInUse) => panic!(
                    "RedisServer::restart: port {} still taken after {RESTART_BIND_WINDOW:?}\n{}",
                    self.port,
                    self.log_for_panic()
                ),
                Err(StartError::Io(err)) => panic!(
                    "RedisServer::restart: cannot run {:?}: {err}\n{}",
                    server_bin(),
                    self.log_for_panic()
                ),
                Err(StartError::Failed(reason)) => panic!(
                    "RedisServer::restart: redis-server on port {} {reason}\n{}",
                    self.port,
                    self.log_for_panic()
                ),
            }
        }
    }

    /// Whether the server process is alive (a paused server counts as running).
    pub fn is_running(&self) -> bool {
        match lock(&self.child).as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server log so far, across restarts. If the server wrote anything to stderr (fatal
    /// configuration errors are reported there, before the log file is opened), that follows
    /// under a `--- stderr ---` line.
    pub fn log(&self) -> String {
        let dir = self.dir.path();
        let mut log = read_lossy(&log_path(dir));
        let stderr = read_lossy(&stderr_path(dir));
        if !stderr.trim().is_empty() {
            log.push_str("--- stderr ---\n");
            log.push_str(&stderr);
        }
        log
    }

    /// The log with a header naming the file, for failure messages.
    fn log_for_panic(&self) -> String {
        format_log(self.dir.path())
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT args...` and returns its stdout, trimmed. Replies are
    /// printed the way `redis-cli` prints them when not on a terminal: `GET` of a missing key
    /// gives `""`, errors give `"ERR ..."`; connection failures go to stderr and give `""`.
    ///
    /// # Panics
    /// If `redis-cli` cannot be started or does not finish within 10 s (for example because the
    /// server is paused); the message includes the server log.
    pub fn cli(&self, args: &[&str]) -> String {
        let bin = cli_bin();
        let child = Command::new(&bin)
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) => panic!(
                "RedisServer::cli({args:?}): cannot run {bin:?}: {err}\n{}",
                self.log_for_panic()
            ),
        };
        let cli_pid = child.id();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(CLI_TIMEOUT) {
            Ok(Ok(output)) => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            Ok(Err(err)) => panic!(
                "RedisServer::cli({args:?}): waiting for redis-cli failed: {err}\n{}",
                self.log_for_panic()
            ),
            Err(_) => {
                // The waiting thread still owns the child and reaps it once it is killed.
                let _ = send_signal(cli_pid, "KILL");
                panic!(
                    "RedisServer::cli({args:?}) did not finish within {CLI_TIMEOUT:?} \
                     (is the server paused?)\n{}",
                    self.log_for_panic()
                )
            }
        }
    }

    /// Sends `signal` (a name such as `STOP`) to the running server, or panics.
    fn signal(&self, signal: &str) {
        // Hold the lock while signalling: the child cannot be reaped meanwhile, so its pid
        // cannot have been reused by another process.
        let mut guard = lock(&self.child);
        let running = match guard.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        };
        if !running {
            drop(guard);
            panic!(
                "RedisServer: cannot send SIG{signal}: the server on port {} is not running\n{}",
                self.port,
                self.log_for_panic()
            );
        }
        if let Err(err) = send_signal(self.pid, signal) {
            drop(guard);
            panic!(
                "RedisServer: cannot send SIG{signal} to pid {}: {err}\n{}",
                self.pid,
                self.log_for_panic()
            );
        }
    }
}

impl Drop for RedisServer {
    /// Kills the server with `SIGKILL` and waits for it; never panics.
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(child) => child.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Returns a loopback port that was free a moment ago: binds `127.0.0.1:0`, reads the port and
/// closes the socket. Never returns 6379.
///
/// # Panics
/// If no socket can be bound on `127.0.0.1`.
pub fn free_port() -> u16 {
    match try_free_port() {
        Ok(port) => port,
        Err(err) => panic!("free_port: cannot bind 127.0.0.1:0: {err}"),
    }
}

/// Whether a `redis-server` binary can be run (`$LOCKATTR_REDIS_SERVER`, else `redis-server` on
/// `PATH`). Tests that need a server assert it, so a missing binary fails with the fix in the message.
pub fn redis_server_available() -> bool {
    Command::new(server_bin())
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Why one start of the server failed.
enum StartError {
    /// The port is taken: the bind failed, or another server answers on it.
    PortInUse,
    /// The binary could not be run.
    Io(io::Error),
    /// Anything else; the text completes "redis-server on port N ...".
    Failed(String),
}

fn try_free_port() -> io::Result<u16> {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if port != RESERVED_PORT {
            return Ok(port);
        }
    }
}

fn server_bin() -> OsString {
    bin_from_env(SERVER_BIN_ENV, "redis-server")
}

fn cli_bin() -> OsString {
    bin_from_env(CLI_BIN_ENV, "redis-cli")
}

fn bin_from_env(var: &str, default: &str) -> OsString {
    std::env::var_os(var)
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.into())
}

fn data_path(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis.log")
}

fn stderr_path(dir: &Path) -> PathBuf {
    dir.join("redis.stderr")
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The log file and the captured stderr, as shown in failure messages.
fn format_log(dir: &Path) -> String {
    let log_file = log_path(dir);
    let mut text = format!("--- redis log ({}) ---\n", log_file.display());
    let log = read_lossy(&log_file);
    if log.is_empty() {
        text.push_str("(empty)\n");
    } else {
        text.push_str(&log);
    }
    let stderr = read_lossy(&stderr_path(dir));
    if !stderr.trim().is_empty() {
        text.push_str("--- stderr ---\n");
        text.push_str(&stderr);
    }
    text
}

fn lock(child: &Mutex<Option<Child>>) -> MutexGuard<'_, Option<Child>> {
    child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends a signal by name with the `kill` command (no `unsafe`, no extra crate).
fn send_signal(pid: u32, signal: &str) -> io::Result<()> {
    let output = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`kill -s {signal} {pid}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Starts one server process on `port` and waits until it is ready.
fn start_process(dir: &Path, port: u16, extra_args: &[String]) -> Result<Child, StartError> {
    let data = data_path(dir);
    fs::create_dir_all(&data).map_err(StartError::Io)?;
    let log_file = log_path(dir);
    let stderr_file = stderr_path(dir);
    // Only what this start appends counts when looking for a bind failure.
    let log_offset = fs::metadata(&log_file).map(|m| m.len()).unwrap_or(0);
    let stderr_offset = fs::metadata(&stderr_file).map(|m| m.len()).unwrap_or(0);
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_file)
        .map_err(StartError::Io)?;

    let mut child = Command::new(server_bin())
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(&data)
        .arg("--logfile")
        .arg(&log_file)
        .args(["--daemonize", "no"])
        .args(["--protected-mode", "no"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(StartError::Io)?;
    let pid = child.id();

    let bind_failed = || {
        tail_contains(&log_file, log_offset, ADDR_IN_USE)
            || tail_contains(&stderr_file, stderr_offset, ADDR_IN_USE)
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(if bind_failed() {
                    StartError::PortInUse
                } else {
                    StartError::Failed(format!("exited with {status} before becoming ready"))
                });
            }
            Ok(None) => {}
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartError::Failed(format!("could not be polled: {err}")));
            }
        }
        match probe(port, pid) {
            Probe::Ready => return Ok(child),
            Probe::Foreign => {
                // Another server owns the port; ours is about to fail its bind.
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartError::PortInUse);
            }
            Probe::NotYet => {}
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Failed(format!(
                "did not answer PING within {READY_TIMEOUT:?}"
            )));
        }
        thread::sleep(PROBE_INTERVAL);
    }
}

fn tail_contains(path: &Path, offset: u64, needle: &str) -> bool {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).contains(needle)
}

/// Result of one readiness probe.
enum Probe {
    /// Our server answers.
    Ready,
    /// A Redis with another process id answers on the port.
    Foreign,
    /// Nothing (usable) answers yet.
    NotYet,
}

/// Connects, sends `PING` and checks that the answering server is process `pid`.
fn probe(port: u16, pid: u32) -> Probe {
    match probe_inner(port) {
        Ok(Some(server_pid)) if server_pid == pid => Probe::Ready,
        Ok(Some(_)) => Probe::Foreign,
        // Answered PING but the process id could not be read (e.g. `--requirepass`): accept.
        Ok(None) => Probe::Ready,
        Err(_) => Probe::NotYet,
    }
}

/// `Ok(Some(pid))` when the server answered `PING` and reported its pid, `Ok(None)` when it
/// answered but its pid could not be read, `Err` when it is not ready.
fn probe_inner(port: u16) -> io::Result<Option<u32>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"PING\r\nINFO server\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    if line.starts_with("-NOAUTH") {
        return Ok(None);
    }
    if line != "+PONG" {
        return Err(io::Error::other(format!("PING answered {line:?}")));
    }
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let len: usize = match header.trim_end().strip_prefix('$').map(str::parse) {
        Some(Ok(len)) => len,
        _ => return Ok(None),
    };
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body);
    Ok(body
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `PING` on `stream` and reads the reply line.
    fn ping(stream: &mut TcpStream) -> io::Result<String> {
        stream.write_all(b"PING\r\n")?;
        read_line(stream)
    }

    fn read_line(stream: &mut TcpStream) -> io::Result<String> {
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            if stream.read(&mut byte)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            reply.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }

    fn is_timeout(err: &io::Error) -> bool {
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }

    #[test]
    fn spawn_answers_ping_over_raw_tcp() {
        let server = RedisServer::spawn();
        assert_ne!(server.port(), RESERVED_PORT);
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        assert_eq!(server.addr().port(), server.port());
        assert!(server.is_running());
        let mut stream = TcpStream::connect(server.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        assert_eq!(ping(&mut stream).expect("ping"), "+PONG");
        assert_eq!(server.cli(&["PING"]), "PONG");
        assert!(server.log().contains("Ready to accept connections"));
    }

    #[test]
    fn spawn_with_passes_extra_args() {
        let server = RedisServer::spawn_with(&["--enable-debug-command", "local"]);
        assert_eq!(server.cli(&["DEBUG", "SLEEP", "0"]), "OK");
        assert_eq!(server.cli(&["CONFIG", "GET", "save"]), "save");
    }

    #[test]
    fn try_spawn_with_reports_bad_arguments_with_the_log() {
        let err = RedisServer::try_spawn_with(&["--no-such-option", "1"])
            .expect_err("bad option must fail");
        let text = err.to_string();
        // The reason is printed on stderr before the log file is opened; both are shown.
        assert!(text.contains("no-such-option"), "{text}");
        assert!(text.contains("--- redis log"), "{text}");
    }

    #[test]
    fn pause_stops_answers_and_resume_restores_them() {
        let server = RedisServer::spawn();
        let mut stream = TcpStream::connect(server.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        assert_eq!(ping(&mut stream).expect("ping"), "+PONG");

        server.pause();
        assert!(server.is_running());
        let err = ping(&mut stream).expect_err("paused server must not answer");
        assert!(is_timeout(&err), "{err:?}");

        server.resume();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        // The PING sent while paused is answered now.
        assert_eq!(read_line(&mut stream).expect("reply"), "+PONG");
        assert_eq!(ping(&mut stream).expect("ping"), "+PONG");
    }

    #[test]
    fn kill_then_restart_reuses_the_port_and_loses_data() {
        let mut server = RedisServer::spawn();
        let port = server.port();
        let old_pid = server.pid();
        assert_eq!(server.cli(&["SET", "harness:key", "v"]), "OK");
        assert_eq!(server.cli(&["GET", "harness:key"]), "v");

        server.kill();
        assert!(!server.is_running());
        server.kill(); // idempotent
        assert!(TcpStream::connect(server.addr()).is_err());

        server.restart();
        assert!(server.is_running());
        assert_eq!(server.port(), port);
        assert_ne!(server.pid(), old_pid);
        assert_eq!(server.cli(&["GET", "harness:key"]), "");
        assert_eq!(server.cli(&["DBSIZE"]), "0");
    }

    #[test]
    fn restart_of_a_paused_server_works() {
        let mut server = RedisServer::spawn();
        assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
        server.pause();
        server.restart();
        assert_eq!(server.cli(&["EXISTS", "k"]), "0");
    }

    #[test]
    fn start_reports_a_taken_port_as_port_in_use() {
        // A plain listener holds the port: the bind fails.
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = holder.local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            start_process(dir.path(), port, &[]),
            Err(StartError::PortInUse)
        ));
        // Another redis-server holds the port: never mistaken for ours.
        let other = RedisServer::spawn();
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            start_process(dir.path(), other.port(), &[]),
            Err(StartError::PortInUse)
        ));
        assert!(other.is_running());
    }

    #[test]
    fn restart_waits_for_the_port_to_be_released() {
        let mut server = RedisServer::spawn();
        let port = server.port();
        server.kill();
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind old port");
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            drop(holder);
        });
        server.restart();
        releaser.join().expect("releaser");
        assert_eq!(server.port(), port);
        assert_eq!(server.cli(&["PING"]), "PONG");
    }

    #[test]
    fn drop_kills_the_server() {
        let server = RedisServer::spawn();
        let addr = server.addr();
        let dir = server.dir.path().to_owned();
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
        assert!(!dir.exists());
    }

    #[test]
    fn free_port_is_bindable_and_not_6379() {
        let port = free_port();
        assert_ne!(port, RESERVED_PORT);
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
        assert!(redis_server_available());
    }
}
