use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", ttl = "0s")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
