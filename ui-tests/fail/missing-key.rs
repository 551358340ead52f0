use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(ttl = "7s", auto_renew)]
async fn job(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
