// `on_lost`, `min_hold` (also longer than `ttl`), and every option at once.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "report:{day}", on_lost = "finish", min_hold = "10s")]
async fn report(day: u32) -> Result<u32, LockError> {
    Ok(day)
}

#[distributed_lock(key = "tick", ttl = "5s", min_hold = "1h")]
async fn tick() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(
    key = "all:{id}",
    ttl = "1h15m",
    auto_renew = false,
    wait = "0s",
    on_lost = "cancel",
    min_hold = "500ms",
    client = lockattr_runtime::LockClient::memory(),
)]
async fn all(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {
    drop(report(1));
    drop(tick());
    drop(all(2));
}
