// Attribute macros after `#[distributed_lock]` see the locked fn: here `#[tokio::main]` turns it
// into a blocking fn that runs the locked body on its own runtime.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "report:{day}", ttl = "1m")]
#[tokio::main(flavor = "current_thread")]
async fn blocking_report(day: u32) -> Result<u32, LockError> {
    tokio::task::yield_now().await;
    Ok(day)
}

fn main() {
    let _run: fn(u32) -> Result<u32, LockError> = blocking_report;
}
