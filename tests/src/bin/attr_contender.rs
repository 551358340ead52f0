//! A worker process for the attribute's cross-process test: calls an annotated fn `iterations` times
//! and prints `<start_us> <end_us> <fence>` per call.
//!
//! Usage: `attr_contender <redis-url> <iterations> <hold-ms>`

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockattr_runtime::{distributed_lock, LockClient, LockError};

static LOCKS: OnceLock<LockClient> = OnceLock::new();

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

#[distributed_lock(key = "attr-xproc", ttl = "5s", auto_renew, wait = "30s", client = LOCKS)]
async fn critical(hold: Duration) -> Result<String, LockError> {
    let start = now_us();
    tokio::time::sleep(hold).await;
    let fence = lockattr_runtime::current_fence().await?;
    Ok(format!("{start} {} {fence}", now_us()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: attr_contender <redis-url> <iterations> <hold-ms>".into());
    }
    let client = LockClient::builder()
        .url(args[1].as_str())
        .prefix("t")
        .connect()
        .await?;
    let _ = LOCKS.set(client);
    let iterations: u32 = args[2].parse()?;
    let hold = Duration::from_millis(args[3].parse()?);
    let mut lines = Vec::new();
    for _ in 0..iterations {
        lines.push(critical(hold).await?);
    }
    println!("{}", lines.join("\n"));
    Ok(())
}
