use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job:{self.name}")]
async fn job(name: &str) -> Result<usize, LockError> {
    Ok(name.len())
}

fn main() {}
