//! The short torture run for CI: 3 worker processes × 3 tasks contend on 3 keys through lockattr
//! against a real `redis-server` while every kind of fault is injected at least once (worker
//! SIGSTOP/SIGKILL, lock-server SIGSTOP / DEBUG SLEEP / CLIENT PAUSE / restart with data loss,
//! partitions, slow links, cut connections, executor stalls, delayed resource writes, random
//! cancellation). Fails on any violated invariant and prints the summary table.
//!
//! The long version: `cargo run --release -p lockattr-tests --bin torture -- --duration 300`
//! (results in RELIABILITY.md).

use lockattr_tests::torture::{run, Config, FaultKind};

#[test]
fn torture_short() {
    let mut cfg = Config::short(env!("CARGO_BIN_EXE_torture_worker"));
    if let Ok(seed) = std::env::var("LOCKATTR_TORTURE_SEED") {
        cfg.seed = seed
            .parse()
            .expect("LOCKATTR_TORTURE_SEED must be a number");
    }
    let report = run(cfg).expect("the torture run could not be carried out");
    println!("{}", report.table());
    // Every fault kind was injected at least once.
    for kind in FaultKind::ALL {
        assert!(
            report.faults.get(&kind).is_some_and(|(n, _)| *n > 0),
            "fault {kind} was never injected (raise the duration)\n{}",
            report.table()
        );
    }
    assert!(
        report.entered > 100,
        "too little work to mean anything\n{}",
        report.table()
    );
    assert_eq!(
        report.violations(),
        0,
        "invariants violated (seed {}; rerun with LOCKATTR_TORTURE_SEED={})\n{}",
        report.cfg.seed,
        report.cfg.seed,
        report.table()
    );
}
