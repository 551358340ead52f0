//! Connections that the single-node backend's lock calls own outright (see [`Wires`]).
//!
//! redis-rs's multiplexed connection runs a driver task per connection: a request goes from the
//! caller's task to the driver over a channel, and the reply comes back over another. Under load each
//! round trip of the coalesced lock calls thus wakes two tasks more than it has to, and on a small
//! machine a wake-up costs about as much as the server's work on a whole batch (BENCHMARKS.md,
//! sessions 10–12). A [`Wire`] is a plain connection that the calling task writes to and reads from
//! itself: one request at a time, no driver, no channel. The coalescer keeps at most two calls in
//! flight, so a handful of wires serve a whole client.
//!
//! Plain TCP and Unix sockets only: a TLS connection (`rediss://`) goes through redis-rs's own
//! connection, which knows how to set TLS up.

#[cfg(unix)]
use std::path::PathBuf;
use std::sync::Mutex;

use redis::{ConnectionAddr, ConnectionInfo, RedisError, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Idle wires kept at most (the coalescer has two calls in flight at most; a few more serve callers
/// that found a free slot meanwhile).
const MAX_IDLE: usize = 4;

/// Where the wires connect to.
#[derive(Debug, Clone)]
enum Target {
    Tcp(String, u16),
    #[cfg(unix)]
    Unix(PathBuf),
}

/// A pool of [`Wire`]s to one server: a request takes an idle wire (or opens one), and gives it back
/// only when its whole answer was read, so a request that failed, timed out or was dropped midway
/// never leaves a half-read reply on a wire that another request then reads.
pub(crate) struct Wires {
    target: Target,
    /// The commands a new wire sends first (`AUTH`, `SELECT`), packed, and how many they are.
    hello: (Vec<u8>, usize),
    /// The database the hello selects.
    db: i64,
    idle: Mutex<Vec<Wire>>,
}

/// One connection owned by the request that uses it.
struct Wire {
    stream: Stream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
    /// The request being written (kept for the next one: no allocation per request).
    out: Vec<u8>,
}

/// The socket of a [`Wire`].
enum Stream {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Stream {
    /// Whether the server closed the connection (or sent something unasked) while it was idle: a
    /// read that does not block finds either. A wire found so is not used: after a server restart
    /// the first request goes on a new connection instead of failing on the old one.
    fn is_stale(&self) -> bool {
        let mut probe = [0u8; 1];
        let read = match self {
            Stream::Tcp(s) => s.try_read(&mut probe),
            #[cfg(unix)]
            Stream::Unix(s) => s.try_read(&mut probe),
        };
        !matches!(read, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes).await,
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(bytes).await,
        }
    }

    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_buf(buf).await,
            #[cfg(unix)]
            Stream::Unix(s) => s.read_buf(buf).await,
        }
    }
}

impl Wires {
    /// Wires for `info`'s server, or `None` when it is reached over TLS.
    pub(crate) fn for_server(info: &ConnectionInfo) -> Option<Wires> {
        let target = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Target::Tcp(host.clone(), *port),
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Target::Unix(path.clone()),
            _ => return None,
        };
        let settings = info.redis_settings();
        let mut hello = redis::pipe();
        if let Some(password) = settings.password() {
            let auth = hello.cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
        }
        if settings.db() != 0 {
            hello.cmd("SELECT").arg(settings.db());
        }
        let n = hello.len();
        Some(Wires {
            target,
            hello: (hello.get_packed_pipeline(), n),
            db: settings.db(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Send the `n` commands `encode` writes (packed) and read their `n` replies, in order. An error
    /// reply comes back as a [`Value::ServerError`] in its place; `Err` means the connection failed
    /// (nothing is known of the commands' effect). Not bounded in time: the caller bounds it, and
    /// dropping the future drops the wire it took.
    pub(crate) async fn query(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
        n: usize,
    ) -> Result<Vec<Value>, RedisError> {
        let mut wire = match self.idle_wire() {
            Some(wire) => wire,
            None => self.connect().await?,
        };
        wire.out.clear();
        encode(&mut wire.out);
        let replies = wire.request(n).await?;
        if wire.buf.is_empty() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(wire);
            }
        }
        Ok(replies)
    }

    /// An idle wire that the server has not closed.
    fn idle_wire(&self) -> Option<Wire> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(wire) = idle.pop() {
            if !wire.stream.is_stale() {
                return Some(wire);
            }
        }
        None
    }

    /// Open a wire and send the hello commands.
    async fn connect(&self) -> Result<Wire, RedisError> {
        let stream = match &self.target {
            Target::Tcp(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                Stream::Tcp(tcp)
            }
            #[cfg(unix)]
            Target::Unix(path) => Stream::Unix(tokio::net::UnixStream::connect(path).await?),
        };
        let mut wire = Wire {
            stream,
            buf: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
        };
        let (packed, n) = &self.hello;
        if *n > 0 {
            wire.out.extend_from_slice(packed);
            for reply in wire.request(*n).await? {
                reply.extract_error()?;
            }
        }
        Ok(wire)
    }
}

impl Wire {
    /// Write the request in `out` and read `n` replies.
    async fn request(&mut self, n: usize) -> Result<Vec<Value>, RedisError> {
        self.stream.write_all(&self.out).await?;
        let mut replies = Vec::with_capacity(n);
        let mut at = 0;
        while replies.len() < n {
            match reply_len(&self.buf[at..])? {
                Some(len) => {
                    replies.push(parse(&self.buf[at..at + len])?);
                    at += len;
                }
                None => {
                    self.buf.reserve(4096);
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                    }
                }
            }
        }
        // Left-over bytes answer nothing this wire sent: the caller drops the wire.
        self.buf.drain(..at);
        Ok(replies)
    }
}

/// One whole reply (see [`reply_len`]) as a value: the replies a lock call gets most (`OK`, a nil, an
/// integer) directly, any other through redis-rs's parser.
fn parse(reply: &[u8]) -> Result<Value, RedisError> {
    match reply {
        b"+OK\r\n" => return Ok(Value::Okay),
        b"$-1\r\n" => return Ok(Value::Nil),
        [b':', digits @ .., b'\r', b'\n'] => {
            if let Some(n) = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
            {
                return Ok(Value::Int(n));
            }
        }
        _ => {}
    }
    redis::parse_redis_value(reply)
}

/// The length of the first whole RESP2 reply in `buf`, or `None` while it is incomplete.
fn reply_len(buf: &[u8]) -> Result<Option<usize>, RedisError> {
    let Some(line) = line_len(buf) else {
        return Ok(None);
    };
    match buf[0] {
        b'+' | b'-' | b':' => Ok(Some(line)),
        b'$' => {
            let len = header_number(&buf[1..line - 2])?;
            if len < 0 {
                return Ok(Some(line));
            }
            let end = line + len as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' => {
            let count = header_number(&buf[1..line - 2])?;
            let mut end = line;
            for _ in 0..count.max(0) {
                match reply_len(&buf[end..])? {
                    Some(len) => end += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(end))
        }
        other => Err(protocol_error(format!(
            "unexpected reply type byte {:?}",
            other as char
        ))),
    }
}

/// The length of the first line of `buf` with its `\r\n`, or `None` while it is incomplete.
fn line_len(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

/// The number in a `$` or `*` header.
fn header_number(digits: &[u8]) -> Result<i64, RedisError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            protocol_error(format!(
                "bad reply header {:?}",
                String::from_utf8_lossy(digits)
            ))
        })
}

fn protocol_error(msg: String) -> RedisError {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg).into()
}

/// The connection of the lock calls: wires of their own, or (TLS) redis-rs's connection manager.
/// Usable wherever redis-rs takes a connection.
#[derive(Clone)]
pub(crate) enum LockConn {
    /// Plain TCP or a Unix socket.
    Wires(std::sync::Arc<Wires>),
    /// TLS.
    Manager(redis::aio::ConnectionManager),
}

impl LockConn {
    /// Send `cmd` and read its reply (an error reply as a [`Value::ServerError`]); on wires, without
    /// the boxed future of [`ConnectionLike`](redis::aio::ConnectionLike).
    pub(crate) async fn request(&self, cmd: &redis::Cmd) -> Result<Value, RedisError> {
        match self {
            LockConn::Wires(w) => {
                let mut replies = w.query(|out| cmd.write_packed_command(out), 1).await?;
                Ok(replies.pop().unwrap_or(Value::Nil))
            }
            LockConn::Manager(m) => {
                use redis::aio::ConnectionLike as _;
                m.clone().req_packed_command(cmd).await
            }
        }
    }
}

impl redis::aio::ConnectionLike for LockConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(self.request(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            LockConn::Wires(w) => Box::pin(async move {
                let packed = pipeline.get_packed_pipeline();
                let mut replies = w
                    .query(|out| out.extend_from_slice(&packed), offset + count)
                    .await?;
                Ok(replies.split_off(offset))
            }),
            LockConn::Manager(m) => m.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            LockConn::Wires(w) => w.db,
            LockConn::Manager(m) => m.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies of every RESP2 shape, nested arrays and binary bulk strings among them.
    const REPLIES: &[&[u8]] = &[
        b"+OK\r\n",
        b"+PONG\r\n",
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        b":0\r\n",
        b":-1234\r\n",
        b":9007199254740991\r\n",
        b"$-1\r\n",
        b"$0\r\n\r\n",
        b"$5\r\nab\r\nc\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n:1\r\n$-1\r\n$9\r\nT:a value\r\n",
        b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n-ERR inner\r\n",
    ];

    #[test]
    fn every_reply_is_framed_whole_and_parsed_as_redis_rs_parses_it() {
        for reply in REPLIES {
            assert_eq!(reply_len(reply).unwrap(), Some(reply.len()), "{reply:?}");
            let mine = parse(reply).unwrap();
            let theirs = redis::parse_redis_value(reply).unwrap();
            assert_eq!(format!("{mine:?}"), format!("{theirs:?}"), "{reply:?}");
            // Any strict prefix is incomplete, never a shorter reply or an error.
            for cut in 0..reply.len() {
                assert_eq!(
                    reply_len(&reply[..cut]).unwrap(),
                    None,
                    "{reply:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn replies_back_to_back_are_framed_one_by_one() {
        let all: Vec<u8> = REPLIES.concat();
        let mut at = 0;
        for reply in REPLIES {
            let len = reply_len(&all[at..]).unwrap().expect("whole");
            assert_eq!(&all[at..at + len], *reply);
            at += len;
        }
        assert_eq!(at, all.len());
    }

    #[test]
    fn a_malformed_reply_is_an_error_not_a_wait() {
        for bad in [&b"?what\r\n"[..], b"$x\r\nab\r\n", b"*two\r\n"] {
            assert!(reply_len(bad).is_err(), "{bad:?}");
        }
        // An integer too large for i64 goes to redis-rs's parser, which reports it.
        assert!(parse(b":99999999999999999999999\r\n").is_err());
    }
}
