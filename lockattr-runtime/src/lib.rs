//! # lockattr
//!
//! Distributed locks for async Rust, as one attribute:
//!
//! ```no_run
//! use lockattr_runtime::{distributed_lock, LockError};
//! # struct Order { id: u64 }
//! # struct Receipt;
//! # struct Db;
//! # impl Db { async fn write_receipt(&self, _: &Order, _: u64) -> Result<Receipt, AppError> { Ok(Receipt) } }
//! # #[derive(Debug)] struct AppError;
//! # impl From<LockError> for AppError { fn from(_: LockError) -> Self { AppError } }
//!
//! #[distributed_lock(key = "order:{order.id}", ttl = "7s", auto_renew)]
//! async fn settle(order: &Order, db: &Db) -> Result<Receipt, AppError> {   // AppError: From<LockError>
//!     let fence = lockattr_runtime::current_fence().await?;
//!     db.write_receipt(order, fence).await
//! }
//! ```
//!
//! The attribute acquires a lock (Redis by default), keeps it alive with a renewal watchdog while the
//! body runs, cancels the body when the lock is lost, and releases it on every exit path: return, `?`,
//! panic, and a dropped future.
//!
//! The same runtime is usable directly:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lockattr_runtime::LockError> {
//! use std::time::Duration;
//! use lockattr_runtime::LockClient;
//!
//! let client = LockClient::memory(); // or LockClient::connect("redis://127.0.0.1:6379").await?
//! let total = client
//!     .lock("nightly-report")
//!     .ttl(Duration::from_secs(5))
//!     .auto_renew(true)
//!     .run(async {
//!         let fence = lockattr_runtime::current_fence().await.expect("inside a lock");
//!         assert!(fence > 0);
//!         42
//!     })
//!     .await?;
//! assert_eq!(total, 42);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees and their limits
//! A TTL lock cannot by itself guarantee mutual exclusion: a holder that stalls (a GC-like pause, a
//! stopped process, a partition) longer than its lease may resume believing it still holds the lock
//! while another holder has taken it. What lockattr guarantees is narrower and checkable:
//! - only the owner (a 128-bit random token per acquisition) can renew or release a lock;
//! - the holder learns that it lost the lock no later than its local deadline (last confirmed renewal's
//!   send time + ttl - safety margin, on the monotonic clock), and the guarded future is cancelled;
//! - every holder can get a **fencing token** ([`current_fence`], [`LockGuard::fence`]), strictly
//!   increasing per key (also across a Redis restart that lost all data, as long as the Redis host's
//!   clock does not run backwards), and only while it holds the lock: a resource that rejects writes
//!   with a token lower than the highest it has seen turns "usually exclusive" into "never a stale
//!   write". A lock that nobody fences costs no more than a plain `SET NX PX`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attribute;
pub mod backend;
mod client;
mod context;
pub mod error;
pub mod key;
mod lease;
mod watchdog;

#[cfg(feature = "test-util")]
pub mod testing;

#[doc(hidden)]
pub mod __private;

pub use client::{
    default_client, set_default_client, AsLockClient, ClientConfig, LockClient, LockClientBuilder,
    ENV_PREFIX, ENV_REDIS_URL, MAX_TTL, MAX_WAIT, MIN_TTL,
};
pub use context::{current_fence, current_lock, CurrentLock};
pub use error::{LockError, LostReason};
pub use lease::{LockGuard, LockRequest, OnLost};
pub use lockattr_macros::distributed_lock;
