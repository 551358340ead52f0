//! Runs one variant of scenario 5 in a tight loop on a current-thread runtime, for instruction counts
//! that do not depend on machine noise:
//!
//! ```text
//! cargo build --release -p lockattr-bench --bin s5loop
//! valgrind --tool=callgrind target/release/s5loop attr 100000
//! valgrind --tool=callgrind target/release/s5loop hand 100000
//! ```
//!
//! The difference of the two totals divided by the number of calls is the attribute's cost per call.

use lockattr_bench::s5;
use lockattr_runtime::LockClient;

/// Distinct keys cycled through, as in the criterion bench.
const KEYS: u64 = 4096;

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let calls: u64 = match args.next().map(|n| n.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("s5loop: the number of calls must be a whole number ({e})");
            std::process::exit(2);
        }
    };
    let attr = match variant.as_str() {
        "attr" => true,
        "hand" => false,
        _ => {
            eprintln!("usage: s5loop attr|hand [calls]");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = LockClient::memory();
    let sum = rt.block_on(async {
        let mut sum = 0u64;
        for i in 0..calls {
            let id = i % KEYS;
            let r = if attr {
                s5::with_attribute(&client, id).await
            } else {
                s5::by_hand(&client, id).await
            };
            sum += r.expect("the lock is free");
        }
        sum
    });
    println!("{variant}: {calls} calls (checksum {sum})");
}
