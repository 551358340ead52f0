use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "transfer:{from}-{to}")]
async fn transfer(from: &str, to: &str) -> Result<(), LockError> {
    let _ = (from, to);
    Ok(())
}

fn main() {}
