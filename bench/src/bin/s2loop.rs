//! Runs scenario 2's work (concurrent callers, each taking and giving back its own key) for a fixed
//! number of operations on a current-thread runtime, against a `redis-server` of its own, so that
//! callgrind can count the client's instructions per acquire + release free of machine noise:
//!
//! ```text
//! cargo build --release -p lockattr-bench --bin s2loop
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='s2loop::measured*' \
//!     target/release/s2loop guard 64 100
//! ```
//!
//! The collected total divided by the operations (callers × rounds, printed) is the client's cost per
//! acquire + release: lockattr's runtime, redis-rs, tokio and the system-call entry, not the server.
//! On one thread under valgrind, the coalesced calls are larger than on a real run, so compare
//! contenders and binaries with each other, not with a live run.

use std::sync::Arc;

use lockattr_bench::contenders::{Contender, Kind, TTL};
use lockattr_runtime::testing::RedisServer;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: s2loop floor|floor-wire|guard|run|attr|rslock|dlock [callers] [rounds]";
    let kind = match args.next().as_deref().and_then(Kind::from_id) {
        Some(k) => k,
        None => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let mut number = |default: usize| match args.next().map(|n| n.parse::<usize>()) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("s2loop: callers and rounds must be whole numbers above 0\n{usage}");
            std::process::exit(2);
        }
    };
    let (callers, rounds) = (number(64), number(100));
    let server = match RedisServer::try_spawn_with(&[]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("s2loop: cannot start redis-server: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let contender = rt.block_on(async {
        let c = Contender::connect(kind, &server.url(), TTL).await;
        let c = Arc::new(c.unwrap_or_else(|e| {
            eprintln!("s2loop: cannot connect {}: {e}", kind.name());
            std::process::exit(1);
        }));
        // Warm up: the connection, the scripts, every caller's key.
        for i in 0..callers {
            if let Err(e) = c.acquire_release(&format!("s2loop:{i}")).await {
                eprintln!("s2loop: warm-up failed: {e}");
                std::process::exit(1);
            }
        }
        c
    });
    let done = measured(&rt, &contender, callers, rounds);
    println!(
        "{}: {callers} callers × {rounds} rounds = {done} acquire + release",
        kind.name()
    );
}

/// The measured part: `callers` tasks, each `rounds` acquire + release of its own key.
#[inline(never)]
fn measured(
    rt: &tokio::runtime::Runtime,
    c: &Arc<Contender>,
    callers: usize,
    rounds: usize,
) -> usize {
    rt.block_on(async {
        let tasks: Vec<_> = (0..callers)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let key = format!("s2loop:{i}");
                    for _ in 0..rounds {
                        c.acquire_release(&key).await?;
                    }
                    Ok::<_, String>(rounds)
                })
            })
            .collect();
        let mut done = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(n)) => done += n,
                Ok(Err(e)) => {
                    eprintln!("s2loop: {e}");
                    std::process::exit(1);
                }
                Err(e) => {
                    eprintln!("s2loop: a caller panicked: {e}");
                    std::process::exit(1);
                }
            }
        }
        done
    })
}
