use lockattr_runtime::{distributed_lock, LockError};

const TTL: &str = "7s";

#[distributed_lock(key = "job", ttl = TTL)]
async fn job() -> Result<(), LockError> {
    let _ = TTL;
    Ok(())
}

fn main() {}
