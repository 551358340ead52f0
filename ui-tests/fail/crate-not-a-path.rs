use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", crate = 5)]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
