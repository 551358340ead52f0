use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "report:{day}")]
async fn report() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
