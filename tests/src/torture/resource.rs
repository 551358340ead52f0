//! The protected resource: a second `redis-server` whose Lua script accepts an operation on key `k`
//! only if its `(fence, seq)` is greater than the highest it has accepted for `k`, records every
//! accepted write and every rejection, and keeps a counter per key.
//!
//! A holder first does a fenced *read* (`seq` 0) of the counter, which also raises the key's high-water
//! mark, then fenced *writes* of `value + 1`, `value + 2` (`seq` 1, 2). Fenced reads make the
//! read-modify-write safe: a stale holder's write is rejected whether it comes before or after the new
//! holder's read, so accepted writes of a key carry consecutive values (no lost update).
//!
//! Keys on the resource server: `r:{k}` (hash: `mf`, `ms` = highest accepted fence and seq, `val`),
//! `r:{k}:log` (accepted writes: `fence seq writer value server_time_us`), `r:{k}:rej` (rejections:
//! `fence seq writer highest_fence server_time_us`).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The fenced operation (see the module docs). KEYS: state, log, rejections. ARGV: fence, seq, writer,
/// value (empty = read). Reply `{1, value}` accepted (the value read or written), `{0, highest}`.
pub const FENCED_OP_LUA: &str = r#"
local f = tonumber(ARGV[1])
local s = tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[1], 'mf', 'ms', 'val')
local mf = tonumber(st[1]) or 0
local ms = tonumber(st[2]) or -1
local val = st[3] or '0'
local t = redis.call('TIME')
local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
if f > mf or (f == mf and s > ms) then
  if ARGV[4] == '' then
    redis.call('HSET', KEYS[1], 'mf', ARGV[1], 'ms', ARGV[2])
    return {1, val}
  end
  redis.call('HSET', KEYS[1], 'mf', ARGV[1], 'ms', ARGV[2], 'val', ARGV[4])
  redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. stamp)
  return {1, ARGV[4]}
end
redis.call('RPUSH', KEYS[3], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. (st[1] or '0') .. ' ' .. stamp)
return {0, st[1] or '0'}
"#;

/// What the resource answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accepted; the value read or written.
    Accepted(u64),
    /// Rejected: a higher `(fence, seq)` was accepted before.
    Rejected,
}

/// A worker's connection to the resource server.
#[derive(Clone)]
pub struct Resource {
    conn: ConnectionManager,
    script: std::sync::Arc<redis::Script>,
}

impl Resource {
    /// Connect (lazily) to the resource at `url`. `timeout` bounds each operation; it must exceed any
    /// injected delay on the way to the resource.
    pub fn open(url: &str, timeout: Duration) -> redis::RedisResult<Resource> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Resource {
            conn,
            script: std::sync::Arc::new(redis::Script::new(FENCED_OP_LUA)),
        })
    }

    /// One fenced operation on key `key`: a read when `value` is `None`.
    pub async fn op(
        &self,
        key: &str,
        fence: u64,
        seq: u32,
        writer: &str,
        value: Option<u64>,
    ) -> redis::RedisResult<Answer> {
        let mut conn = self.conn.clone();
        let mut inv = self.script.prepare_invoke();
        inv.key(format!("r:{{{key}}}"))
            .key(format!("r:{{{key}}}:log"))
            .key(format!("r:{{{key}}}:rej"))
            .arg(fence)
            .arg(seq)
            .arg(writer)
            .arg(value.map(|v| v.to_string()).unwrap_or_default());
        let (ok, v): (i64, String) = inv.invoke_async(&mut conn).await?;
        if ok == 1 {
            Ok(Answer::Accepted(v.parse().unwrap_or(0)))
        } else {
            Ok(Answer::Rejected)
        }
    }

    /// Check that the server answers.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}

/// One accepted write, as recorded by the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Fence of the write.
    pub fence: u64,
    /// Sequence number within the hold.
    pub seq: u32,
    /// Writer id (`slot.gen.task`).
    pub writer: String,
    /// Value written.
    pub value: u64,
    /// Server time (µs).
    pub time_us: u64,
}

impl Accepted {
    /// Parse one `r:{k}:log` entry.
    pub fn parse(s: &str) -> Option<Accepted> {
        let f: Vec<&str> = s.split(' ').collect();
        if f.len() != 5 {
            return None;
        }
        Some(Accepted {
            fence: f[0].parse().ok()?,
            seq: f[1].parse().ok()?,
            writer: f[2].to_owned(),
            value: f[3].parse().ok()?,
            time_us: f[4].parse().ok()?,
        })
    }
}
