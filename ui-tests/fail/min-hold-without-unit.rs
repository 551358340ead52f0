use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", min_hold = "10")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
