use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", client = "redis://127.0.0.1:6379")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
