use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job:{id}")]
fn job(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
