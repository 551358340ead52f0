use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", auto_renew = "yes")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
