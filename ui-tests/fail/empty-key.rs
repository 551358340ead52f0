use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
