use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job", on_lost = "panic")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
