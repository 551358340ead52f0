use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", ttl = 7)]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
