use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", ttl = "7s", ttl = "10s")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
