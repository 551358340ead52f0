//! # `#[distributed_lock]` by example
//!
//! The full reference (every option, default and error) is on [`macro@crate::distributed_lock`]. The
//! examples here run as doctests against the in-process memory backend; with Redis, build the client
//! with [`LockClient::connect`](crate::LockClient::connect) instead.
//!
//! ## A locked fn
//!
//! ```
//! use std::sync::LazyLock;
//! use lockattr_runtime::{distributed_lock, LockClient, LockError};
//!
//! static LOCKS: LazyLock<LockClient> = LazyLock::new(LockClient::memory);
//!
//! struct Order { id: u64 }
//!
//! #[distributed_lock(key = "order:{order.id}", ttl = "7s", auto_renew, client = LOCKS)]
//! async fn settle(order: &Order) -> Result<u64, LockError> {
//!     // The fencing token of this grant: strictly increasing per key.
//!     Ok(lockattr_runtime::current_fence().await.expect("inside the lock"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let first = settle(&Order { id: 42 }).await.unwrap();
//! let second = settle(&Order { id: 42 }).await.unwrap();
//! assert!(second > first);
//! # }
//! ```
//!
//! ## Busy, wait and timeout
//!
//! Without `wait`, a busy lock is reported at once; with `wait`, the call waits (woken by the release)
//! and reports `Timeout` when the wait runs out.
//!
//! ```
//! use std::sync::LazyLock;
//! use std::time::Duration;
//! use lockattr_runtime::{distributed_lock, LockClient, LockError};
//!
//! static LOCKS: LazyLock<LockClient> = LazyLock::new(LockClient::memory);
//!
//! #[distributed_lock(key = "report", ttl = "5s", client = LOCKS)]
//! async fn no_wait() -> Result<(), LockError> { Ok(()) }
//!
//! #[distributed_lock(key = "report", ttl = "5s", wait = "100ms", client = LOCKS)]
//! async fn short_wait() -> Result<(), LockError> { Ok(()) }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let held = LOCKS.lock("report").ttl(Duration::from_secs(5)).acquire().await.unwrap();
//! assert!(matches!(no_wait().await, Err(LockError::Busy { .. })));
//! assert!(matches!(short_wait().await, Err(LockError::Timeout { .. })));
//! held.release().await.unwrap();
//! no_wait().await.unwrap();
//! # }
//! ```
//!
//! ## Keys are escaped
//!
//! Each rendered value has `%` and `:` escaped, and placeholders must be separated by `:`, so different
//! arguments never share a lock by accident:
//!
//! ```
//! use std::sync::LazyLock;
//! use lockattr_runtime::{distributed_lock, LockClient, LockError};
//!
//! static LOCKS: LazyLock<LockClient> = LazyLock::new(LockClient::memory);
//!
//! #[distributed_lock(key = "transfer:{from}:{to}", client = LOCKS)]
//! async fn transfer(from: &str, to: &str) -> Result<String, LockError> {
//!     Ok(lockattr_runtime::current_lock().unwrap().key().to_owned())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! assert_eq!(transfer("a:b", "c").await.unwrap(), "transfer:a%3Ab:c");
//! assert_eq!(transfer("a", "b:c").await.unwrap(), "transfer:a:b%3Ac");
//! # }
//! ```
//!
//! ## Methods, `self` fields, the client in a field, `min_hold`
//!
//! ```
//! use std::time::Duration;
//! use lockattr_runtime::{distributed_lock, LockClient, LockError};
//!
//! struct Scheduler { locks: LockClient, name: String }
//!
//! impl Scheduler {
//!     // ShedLock-style: run at most once per 10 minutes across all nodes, even if the job is quick.
//!     #[distributed_lock(key = "job:{self.name}", ttl = "10m", min_hold = "10m", client = self.locks)]
//!     async fn tick(&self) -> Result<(), LockError> { Ok(()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let s = Scheduler { locks: LockClient::memory(), name: "cleanup".into() };
//! s.tick().await.unwrap();
//! // Still held for the rest of the 10 minutes: a second node's tick is skipped.
//! assert!(s.tick().await.unwrap_err().is_contention());
//! # }
//! ```
//!
//! ## A lost lock cancels the body
//!
//! ```
//! use std::sync::LazyLock;
//! use std::time::Duration;
//! use lockattr_runtime::{distributed_lock, LockClient, LockError, LostReason};
//!
//! static LOCKS: LazyLock<LockClient> = LazyLock::new(LockClient::memory);
//!
//! // No auto_renew: the 200ms lease ends while the body still runs.
//! #[distributed_lock(key = "too-slow", ttl = "200ms", client = LOCKS)]
//! async fn too_slow() -> Result<(), LockError> {
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//!     unreachable!("cancelled before this");
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! match too_slow().await {
//!     Err(LockError::Lost { reason: LostReason::TtlElapsed, cancelled: true, .. }) => {}
//!     other => panic!("{other:?}"),
//! }
//! # }
//! ```
//!
//! ## Mistakes are compile errors
//!
//! A placeholder that names no parameter:
//!
//! ```compile_fail
//! # use lockattr_runtime::{distributed_lock, LockError};
//! #[distributed_lock(key = "order:{order_id}")]
//! async fn settle(id: u64) -> Result<(), LockError> { Ok(()) }
//! # fn main() {}
//! ```
//!
//! A TTL without a unit, a fn that is not `async`, and a return type that cannot report lock failures:
//!
//! ```compile_fail
//! # use lockattr_runtime::{distributed_lock, LockError};
//! #[distributed_lock(key = "k", ttl = 7)]
//! async fn a() -> Result<(), LockError> { Ok(()) }
//! # fn main() {}
//! ```
//!
//! ```compile_fail
//! # use lockattr_runtime::{distributed_lock, LockError};
//! #[distributed_lock(key = "k")]
//! fn b() -> Result<(), LockError> { Ok(()) }
//! # fn main() {}
//! ```
//!
//! ```compile_fail
//! # use lockattr_runtime::distributed_lock;
//! #[distributed_lock(key = "k")]
//! async fn c() -> Result<(), String> { Ok(()) }
//! # fn main() {}
//! ```
