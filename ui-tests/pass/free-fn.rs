// A free fn: field paths and plain parameters in the key, `?` and early `return` in the body.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

#[derive(Debug)]
#[allow(dead_code)] // read through `Debug`
enum AppError {
    Lock(LockError),
    Parse(std::num::ParseIntError),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(e: std::num::ParseIntError) -> Self {
        AppError::Parse(e)
    }
}

struct Customer {
    id: u64,
}

struct Order {
    id: u64,
    customer: Customer,
    amount: String,
}

#[distributed_lock(
    key = "order:{order.id}:{order.customer.id}:{user_id}",
    ttl = "7s",
    auto_renew,
    wait = "2s"
)]
async fn settle(order: &Order, user_id: u64) -> Result<u64, AppError> {
    if user_id == 0 {
        return Ok(0);
    }
    let amount: u64 = order.amount.parse()?;
    Ok(amount + lockattr_runtime::current_fence().await?)
}

#[distributed_lock(key = "nightly-report")]
async fn constant_key() -> Result<(), AppError> {
    Ok(())
}

fn main() {
    let order = Order {
        id: 1,
        customer: Customer { id: 2 },
        amount: "3".to_owned(),
    };
    drop(settle(&order, 4));
    drop(constant_key());
}
