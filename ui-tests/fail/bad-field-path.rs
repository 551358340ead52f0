use lockattr_runtime::{distributed_lock, LockError};

struct Order {
    id: u64,
}

#[distributed_lock(key = "order:{order..id}")]
async fn settle(order: Order) -> Result<u64, LockError> {
    Ok(order.id)
}

fn main() {}
