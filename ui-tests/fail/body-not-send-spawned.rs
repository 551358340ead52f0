use std::rc::Rc;

use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "job:{id}")]
async fn job(id: u64) -> Result<u64, LockError> {
    let local = Rc::new(id);
    tokio::task::yield_now().await;
    Ok(*local)
}

fn main() {
    drop(tokio::spawn(job(1)));
}
