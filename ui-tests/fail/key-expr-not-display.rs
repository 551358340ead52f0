use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key_expr = vec![id])]
async fn job(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
