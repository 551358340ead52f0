use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", wait)]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
