//! A TCP proxy that injects network faults between a client and a server.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

/// Size of the buffer each direction reads into.
const BUF_SIZE: usize = 16 * 1024;
/// Chunks queued per direction (waiting for their delay) before reading pauses.
const QUEUE_CHUNKS: usize = 64;
/// How long connecting to the upstream may take before the client is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `close_all` waits for the cut connections to be torn down.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A TCP proxy between a client and a server that can inject faults. Runs on its own thread with
/// its own tokio current-thread runtime, so it keeps working even if the test's runtime is
/// blocked. Stops on drop (closing every connection).
///
/// Point the client under test at [`FaultProxy::url`] / [`FaultProxy::addr`] instead of the
/// server, then inject faults while it runs:
///
/// - [`set_delay`](FaultProxy::set_delay): every chunk is forwarded `d` after it was read, in
///   both directions, in order (a round trip therefore takes at least `2 * d`);
/// - [`set_blackhole`](FaultProxy::set_blackhole): bytes are read and dropped, connections stay
///   open (a network partition as the client sees it);
/// - [`set_refuse`](FaultProxy::set_refuse): new connections are closed right after accept;
/// - [`close_all`](FaultProxy::close_all): every current connection is cut;
/// - [`heal`](FaultProxy::heal): back to plain forwarding.
///
/// End-of-stream is always forwarded (also while blackholed), so connections closed by either
/// side go away. Settings are read when a chunk is read and again before it is written, so
/// turning the blackhole on also drops chunks still waiting out their delay.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// State shared between the handle and the proxy thread.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    delay_nanos: AtomicU64,
    blackhole: AtomicBool,
    refuse: AtomicBool,
    next_id: AtomicU64,
    /// Open connections by id; the sender cancels the connection (taken by `close_all`).
    connections: Mutex<HashMap<u64, Option<oneshot::Sender<()>>>>,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::SeqCst))
    }

    fn blackholed(&self) -> bool {
        self.blackhole.load(Ordering::SeqCst)
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<u64, Option<oneshot::Sender<()>>>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FaultProxy {
    /// Starts a proxy listening on `127.0.0.1` (a free port) that forwards every connection to
    /// `upstream`. The listener is bound before this returns.
    ///
    /// # Panics
    /// If the listening socket, the runtime or the thread cannot be created.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .unwrap_or_else(|err| panic!("FaultProxy::start: cannot bind 127.0.0.1:0: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("FaultProxy::start: no local address: {err}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("FaultProxy::start: cannot build a runtime: {err}"));
        let shared = Arc::new(Shared {
            upstream,
            delay_nanos: AtomicU64::new(0),
            blackhole: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        });
        let shutdown = Arc::new(Notify::new());
        let thread = {
            let shared = Arc::clone(&shared);
            let shutdown = Arc::clone(&shutdown);
            thread::Builder::new()
                .name(format!("fault-proxy-{}", addr.port()))
                .spawn(move || {
                    runtime.block_on(accept_loop(listener, shared, shutdown));
                    // Dropping the runtime here cancels every connection task, closing sockets.
                })
                .unwrap_or_else(|err| panic!("FaultProxy::start: cannot spawn a thread: {err}"))
        };
        FaultProxy {
            addr,
            shared,
            shutdown,
            thread: Some(thread),
        }
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:{port}` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// Delays every chunk forwarded (in both directions) by `d` from the moment it was read,
    /// preserving order. Applies to chunks read from now on. `Duration::ZERO` turns it off.
    pub fn set_delay(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::SeqCst);
    }

    /// While on, bytes from both sides are read and discarded: connections stay open and
    /// nothing arrives. New connections are accepted (and connected upstream) but are
    /// blackholed too. End-of-stream is still forwarded.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }

    /// While on, new connections are accepted and closed immediately (the client reads
    /// end-of-stream). Existing connections are not affected.
    pub fn set_refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Cuts every current connection (both halves) and waits (up to 2 s) until they are closed.
    ///
    /// "Current" means accepted by the proxy: a connection whose TCP handshake completed a
    /// moment ago may still be waiting in the listen backlog and survive. Do a round trip
    /// through the proxy first when the test depends on it.
    pub fn close_all(&self) {
        let cut: Vec<u64> = self
            .shared
            .connections()
            .iter_mut()
            .filter_map(|(id, cancel)| {
                let cancel = cancel.take()?;
                let _ = cancel.send(());
                Some(*id)
            })
            .collect();
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        while std::time::Instant::now() < deadline {
            {
                let connections = self.shared.connections();
                if cut.iter().all(|id| !connections.contains_key(id)) {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// The number of currently open proxied connections.
    pub fn connections(&self) -> usize {
        self.shared.connections().len()
    }

    /// Back to plain forwarding: delay 0, blackhole off, refuse off. Chunks already waiting out
    /// an earlier delay keep their time.
    pub fn heal(&self) {
        self.set_delay(Duration::ZERO);
        self.set_blackhole(false);
        self.set_refuse(false);
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("delay", &self.shared.delay())
            .field("blackhole", &self.shared.blackholed())
            .field("refuse", &self.shared.refuse.load(Ordering::SeqCst))
            .field("connections", &self.connections())
            .finish()
    }
}

impl Drop for FaultProxy {
    /// Stops the proxy thread, closing the listener and every connection.
    fn drop(&mut self) {
        self.shutdown.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: std::net::TcpListener, shared: Arc<Shared>, shutdown: Arc<Notify>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(_) => return,
    };
    loop {
        tokio::select! {
            _ = shutdown.notified() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    if shared.refuse.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                    let (cancel_tx, cancel_rx) = oneshot::channel();
                    shared.connections().insert(id, Some(cancel_tx));
                    let registration = Registration { shared: Arc::clone(&shared), id };
                    tokio::spawn(handle_connection(client, registration, cancel_rx));
                }
                // e.g. too many open files: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// Removes a connection from the shared map when its task ends (or is dropped).
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.connections().remove(&self.id);
    }
}

async fn handle_connection(
    mut client: TcpStream,
    registration: Registration,
    cancel: oneshot::Receiver<()>,
) {
    let shared = Arc::clone(&registration.shared);
    tokio::select! {
        _ = relay(&mut client, &shared) => {}
        _ = cancel => {}
    }
    // The upstream socket was owned by the relay future, dropped above. Close the client before
    // deregistering so that `close_all` returns only once both halves are closed.
    drop(client);
    drop(registration);
}

async fn relay(client: &mut TcpStream, shared: &Shared) -> io::Result<()> {
    let mut upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    tokio::try_join!(
        pipe(client_read, upstream_write, shared),
        pipe(upstream_read, client_write, shared),
    )?;
    Ok(())
}

/// A chunk waiting to be written: `None` data means end-of-stream.
struct Chunk {
    due: Instant,
    data: Option<Vec<u8>>,
}

/// Forwards one direction: a reader that timestamps chunks into a queue and a writer that
/// writes each one when it is due, so a delay adds latency without reducing throughput.
async fn pipe<R, W>(mut reader: R, mut writer: W, shared: &Shared) -> io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let read_side = async move {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let n = reader.read(&mut buf).await?;
            let due = Instant::now() + shared.delay();
            if n == 0 {
                let _ = tx.send(Chunk { due, data: None }).await;
                return Ok::<(), io::Error>(());
            }
            if shared.blackholed() {
                continue;
            }
            let chunk = Chunk {
                due,
                data: Some(buf[..n].to_vec()),
            };
            if tx.send(chunk).await.is_err() {
                // The writer has finished; nothing more can be delivered.
                return Ok(());
            }
        }
    };
    let write_side = async move {
        while let Some(chunk) = rx.recv().await {
            if chunk.due > Instant::now() {
                tokio::time::sleep_until(chunk.due).await;
            }
            match chunk.data {
                Some(_) if shared.blackholed() => {}
                Some(data) => writer.write_all(&data).await?,
                None => {
                    // Forward end-of-stream as a half close; the other direction goes on.
                    let _ = writer.shutdown().await;
                    return Ok::<(), io::Error>(());
                }
            }
        }
        Ok(())
    };
    tokio::try_join!(read_side, write_side)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    fn connect(proxy: &FaultProxy, read_timeout: Duration) -> StdStream {
        let stream = StdStream::connect(proxy.addr()).expect("connect to proxy");
        stream
            .set_read_timeout(Some(read_timeout))
            .expect("read timeout");
        stream
    }

    /// Reads until `expected.len()` bytes arrived; returns them.
    fn read_exactly(stream: &mut StdStream, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn ping(stream: &mut StdStream) -> io::Result<()> {
        stream.write_all(b"PING\r\n")?;
        let reply = read_exactly(stream, 7)?;
        assert_eq!(reply, b"+PONG\r\n");
        Ok(())
    }

    fn is_timeout(err: &io::Error) -> bool {
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }

    /// The peer closed: either end-of-stream or a reset.
    fn assert_closed(stream: &mut StdStream) {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the proxy to close the connection, got {other:?}"),
        }
    }

    fn wait_for_connections(proxy: &FaultProxy, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while proxy.connections() != n {
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} connections, have {}",
                proxy.connections()
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn forwards_ping() {
        let server = RedisServer::spawn();
        let proxy = FaultProxy::start(server.addr());
        assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}", proxy.port()));
        assert_ne!(proxy.port(), server.port());
        let mut stream = connect(&proxy, Duration::from_secs(2));
        ping(&mut stream).expect("ping through proxy");
        ping(&mut stream).expect("second ping");
        assert_eq!(proxy.connections(), 1);
        drop(stream);
        wait_for_connections(&proxy, 0);
    }

    #[test]
    fn delay_adds_latency_in_both_directions() {
        let server = RedisServer::spawn();
        let proxy = FaultProxy::start(server.addr());
        let mut stream = connect(&proxy, Duration::from_secs(3));
        ping(&mut stream).expect("warm-up ping");

        let delay = Duration::from_millis(150);
        proxy.set_delay(delay);
        let started = std::time::Instant::now();
        ping(&mut stream).expect("delayed ping");
        let elapsed = started.elapsed();
        assert!(elapsed >= 2 * delay, "round trip took only {elapsed:?}");
        assert!(elapsed < 2 * delay + Duration::from_secs(2), "{elapsed:?}");

        proxy.heal();
        let started = std::time::Instant::now();
        ping(&mut stream).expect("healed ping");
        assert!(started.elapsed() < 2 * delay, "{:?}", started.elapsed());
    }

    #[test]
    fn delay_preserves_order() {
        let server = RedisServer::spawn();
        let proxy = FaultProxy::start(server.addr());
        let mut stream = connect(&proxy, Duration::from_secs(3));
        proxy.set_delay(Duration::from_millis(200));
        stream.write_all(b"ECHO first\r\n").expect("write");
        thread::sleep(Duration::from_millis(20));
        proxy.set_delay(Duration::ZERO);
        stream.write_all(b"ECHO second\r\n").expect("write");
        let expected = b"$5\r\nfirst\r\n$6\r\nsecond\r\n";
        let reply = read_exactly(&mut stream, expected.len()).expect("replies");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn blackhole_swallows_bytes_and_heal_restores_new_connections() {
        let server = RedisServer::spawn();
        let proxy = FaultProxy::start(server.addr());
        let mut old = connect(&proxy, Duration::from_millis(300));
        ping(&mut old).expect("ping before blackhole");

        proxy.set_blackhole(true);
        let err = ping(&mut old).expect_err("blackholed ping must not be answered");
        assert!(is_timeout(&err), "{err:?}");
        let mut new = connect(&proxy, Duration::from_millis(300));
        let err = ping(&mut new).expect_err("new connection is blackholed too");
        assert!(is_timeout(&err), "{err:?}");
        assert_eq!(proxy.connections(), 2, "blackholed connections stay open");

        proxy.heal();
        let mut healed = connect(&proxy, Duration::from_secs(2));
        ping(&mut healed).expect("ping after heal");
    }

    #[test]
    fn close_all_cuts_current_connections() {
        let server = RedisServer::spawn();
        let proxy = FaultProxy::start(server.addr());
        let mut a = connect(&proxy, Duration::from_secs(2));
        let mut b = connect(&proxy, Duration::from_secs(2));
        ping(&mut a).expect("ping a");
        ping(&mut b).expect("ping b");
        assert_eq!(proxy.connections(), 2);

        proxy.close_all();
        assert_eq!(proxy.connections(), 0);
        assert_closed(&mut a);
        assert_closed(&mut b);

        let mut c = connect(&proxy, Duration::from_secs(2));
        ping(&mut c).expect("new connections still work");
    }

    #[test]
    fn refuse_closes_new_connections() {
        let server = RedisServer::spawn();
        let proxy = FaultProxy::start(server.addr());
        let mut existing = connect(&proxy, Duration::from_secs(2));
        ping(&mut existing).expect("ping");

        proxy.set_refuse(true);
        let mut refused = connect(&proxy, Duration::from_secs(2));
        assert_closed(&mut refused);
        ping(&mut existing).expect("existing connection is unaffected");
        assert_eq!(proxy.connections(), 1);

        proxy.heal();
        let mut accepted = connect(&proxy, Duration::from_secs(2));
        ping(&mut accepted).expect("ping after heal");
    }

    #[test]
    fn works_while_the_test_runtime_is_blocked_and_stops_on_drop() {
        let server = RedisServer::spawn();
        let proxy = FaultProxy::start(server.addr());
        let addr = proxy.addr();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // Blocking std I/O inside the test's runtime: the proxy has its own thread.
            let mut stream = connect(&proxy, Duration::from_secs(2));
            ping(&mut stream).expect("ping");
            drop(proxy);
            assert_closed(&mut stream);
        });
        assert!(StdStream::connect(addr).is_err());
    }
}
