// `Result<impl Trait, E>` returns: the hidden type is inferred from the body, including
// through `?` and an early `return`.
#![deny(warnings, unused_qualifications)]

use std::fmt::Display;

use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "show:{n}")]
async fn show(n: u32) -> Result<impl Display, LockError> {
    if n == 0 {
        return Ok(String::from("zero"));
    }
    let parsed: Result<u32, LockError> = Ok(n);
    Ok(format!("{}", parsed?))
}

#[distributed_lock(key = "iter:{n}")]
async fn numbers(n: u32) -> Result<impl Iterator<Item = u32> + Send, LockError> {
    Ok(0..n)
}

fn main() {
    drop(show(1));
    drop(numbers(2));
}
