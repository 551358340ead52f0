use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", tll = "7s")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
