use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", ttl = "8d")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
