use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", ttl = "30s1m")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
