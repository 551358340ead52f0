//! Fenced writes: why a TTL lock alone is not enough, and how fencing tokens close the gap.
//!
//! Worker A takes the lock and then stalls (think: a long GC pause, a stopped VM) for longer than its
//! TTL. Its lease expires; worker B takes the lock with a higher fencing token and writes. When A wakes
//! up it still tries to write — with its old token — and the storage rejects it.
//!
//! Run: `cargo run --example fenced_writes` (uses LOCKATTR_REDIS_URL, else a private redis-server, else
//! the in-memory backend).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockattr_examples::{say, Backing};
use lockattr_runtime::{distributed_lock, LockClient, LockError};

/// A store that remembers the highest fence it accepted per key and rejects anything lower.
#[derive(Default)]
struct FencedStore {
    rows: Mutex<HashMap<String, (u64, String)>>,
}

#[derive(Debug)]
enum StoreError {
    Stale { fence: u64, highest: u64 },
    Lock(LockError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Stale { fence, highest } => {
                write!(
                    f,
                    "stale write rejected: fence {fence} < highest accepted {highest}"
                )
            }
            StoreError::Lock(e) => write!(f, "{e}"),
        }
    }
}

impl From<LockError> for StoreError {
    fn from(e: LockError) -> Self {
        StoreError::Lock(e)
    }
}

impl FencedStore {
    fn write(&self, key: &str, fence: u64, value: &str) -> Result<(), StoreError> {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let highest = rows.get(key).map(|(f, _)| *f).unwrap_or(0);
        if fence <= highest {
            return Err(StoreError::Stale { fence, highest });
        }
        rows.insert(key.to_owned(), (fence, value.to_owned()));
        Ok(())
    }
}

struct Worker {
    name: &'static str,
    locks: LockClient,
    store: Arc<FencedStore>,
}

impl Worker {
    /// `on_lost = "finish"` lets the body run on after the lease ended, like a process that was paused
    /// and does not know yet — the dangerous case fencing exists for.
    #[distributed_lock(key = "balance:{account}", ttl = "300ms", on_lost = "finish", client = self.locks)]
    async fn update(&self, account: &str, stall: Duration, value: &str) -> Result<(), StoreError> {
        let fence = lockattr_runtime::current_fence().await?;
        say!("{}: holds balance:{account} with fence {fence}", self.name);
        if !stall.is_zero() {
            say!(
                "{}: stalls for {stall:?} (longer than the 300ms TTL)",
                self.name
            );
            tokio::time::sleep(stall).await;
        }
        let r = self.store.write(account, fence, value);
        match &r {
            Ok(()) => say!("{}: write \"{value}\" accepted (fence {fence})", self.name),
            Err(e) => say!("{}: {e}", self.name),
        }
        r
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    lockattr_examples::start_clock();
    let (backing, why) = Backing::choose()?;
    say!("backend: {}", backing.describe());
    if let Some(why) = why {
        say!("NOTE: {why}");
    }
    tokio::runtime::Runtime::new()?.block_on(run(backing))
}

async fn run(backing: Backing) -> Result<(), Box<dyn std::error::Error>> {
    let client = backing.client().await?;
    let store = Arc::new(FencedStore::default());
    let a = Worker {
        name: "worker A",
        locks: client.clone(),
        store: store.clone(),
    };
    let b = Worker {
        name: "worker B",
        locks: client.clone(),
        store: store.clone(),
    };

    let slow = tokio::spawn(async move {
        a.update("alice", Duration::from_millis(900), "A's stale balance")
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fast = b.update("alice", Duration::ZERO, "B's balance").await;
    let slow = slow.await?;

    println!();
    println!("worker B returned: {}", describe(&fast));
    println!("worker A returned: {}", describe(&slow));
    let rows = store.rows.lock().unwrap_or_else(|p| p.into_inner());
    let (fence, value) = rows.get("alice").cloned().unwrap_or_default();
    println!("store holds: \"{value}\" (fence {fence})");
    assert!(
        matches!(slow, Err(StoreError::Stale { .. })),
        "the stale write must be rejected"
    );
    assert_eq!(value, "B's balance");
    println!("\nThe TTL lock let two workers believe they held it; the fencing token kept the stale write out.");
    Ok(())
}

fn describe(r: &Result<(), StoreError>) -> String {
    match r {
        Ok(()) => "Ok".into(),
        Err(e) => format!("Err({e})"),
    }
}
