use lockattr_runtime::{distributed_lock, LockError};

struct Order {
    id: u64,
}

#[distributed_lock(key = "order:{order.id}:{user}")]
async fn settle(order: &Order, user_id: u64) -> Result<u64, LockError> {
    Ok(order.id + user_id)
}

fn main() {}
