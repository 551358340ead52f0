//! The fault-injection ("torture") suite: P worker processes × T tasks contend on K keys through
//! lockattr against a real `redis-server`, each critical section doing fenced reads and writes on a
//! second `redis-server` (the protected resource), while the coordinator injects faults one at a time:
//! worker `SIGSTOP`/`SIGKILL`, lock-server stalls (`SIGSTOP`, `DEBUG SLEEP`, `CLIENT PAUSE`), lock-server
//! restarts that lose every key, partitions, slow links, cut connections, delayed resource writes, and
//! random cancellation of guarded futures. A `MONITOR` connection on the lock server is an independent
//! witness of every command the server ran.
//!
//! After the run, [`check::analyze`] checks the invariants (see `RELIABILITY.md` at the repository root)
//! and [`report::Report::table`] prints the summary.
//!
//! Run the long version with `cargo run --release -p lockattr-tests --bin torture -- --duration 300`;
//! `tests/tests/torture.rs` runs [`config::Config::short`] in CI.

pub mod check;
pub mod config;
pub mod coordinator;
pub mod log;
pub mod monitor;
pub mod report;
pub mod resource;
pub mod worker;

pub use config::{Config, FaultKind};
pub use coordinator::run;
pub use report::Report;
