//! Benchmarks of lockattr side by side with the raw Redis floor and peer crates.
//!
//! The `lockbench` program (`cargo run --release -p lockattr-bench --bin lockbench [-- --quick]`) starts
//! its own `redis-server`, runs every scenario for every contender and prints tables; see BENCHMARKS.md
//! at the repository root. The criterion bench `attribute` (`cargo bench -p lockattr-bench`) measures
//! the attribute against the same work written by hand, on the memory backend.

pub mod contenders;
pub mod hold;
pub mod redis_info;
pub mod s5;
pub mod stats;
pub mod sys;
