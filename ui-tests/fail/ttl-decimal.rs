use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", ttl = "1.5s")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
