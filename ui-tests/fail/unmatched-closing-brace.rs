use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "order}:{id}")]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
