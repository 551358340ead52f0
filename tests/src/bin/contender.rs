//! A worker process for the cross-process tests: takes one lock `iterations` times and prints one line
//! per hold: `<start_us> <end_us> <fence>` (wall clock in µs; all processes run on one machine).
//!
//! Usage: `contender <redis-url> <key> <iterations> <hold-ms>`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockattr_runtime::LockClient;

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: contender <redis-url> <key> <iterations> <hold-ms>".into());
    }
    let (url, key) = (&args[1], &args[2]);
    let iterations: u32 = args[3].parse()?;
    let hold = Duration::from_millis(args[4].parse()?);
    let client = LockClient::builder().url(url).prefix("t").connect().await?;
    let mut lines = Vec::new();
    for _ in 0..iterations {
        let line = client
            .lock(key.as_str())
            .ttl(Duration::from_secs(5))
            .auto_renew(true)
            .wait(Duration::from_secs(30))
            .run(async {
                let start = now_us();
                tokio::time::sleep(hold).await;
                let fence = lockattr_runtime::current_fence().await?;
                Ok::<_, lockattr_runtime::LockError>(format!("{start} {} {fence}", now_us()))
            })
            .await??;
        lines.push(line);
    }
    println!("{}", lines.join("\n"));
    Ok(())
}
