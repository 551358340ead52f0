use lockattr_runtime::{distributed_lock, LockError};

trait Job {
    #[distributed_lock(key = "job")]
    async fn run(&self) -> Result<(), LockError>;
}

fn main() {}
