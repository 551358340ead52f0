// Error types: `io::Result`, `Box<dyn Error + Send + Sync>`, a type alias ending in `Result`,
// a generic error, and `?` converting other errors.
#![deny(warnings, unused_qualifications)]

use std::error::Error;
use std::io;

use lockattr_runtime::{distributed_lock, LockError};

type AppResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[distributed_lock(key = "io:{path}")]
async fn read(path: &str) -> io::Result<usize> {
    Ok(path.len())
}

#[distributed_lock(key = "boxed:{n}")]
async fn boxed(n: &str) -> Result<u32, Box<dyn Error + Send + Sync>> {
    Ok(n.parse::<u32>()?)
}

#[distributed_lock(key = "alias:{n}")]
async fn alias(n: &str) -> AppResult<u32> {
    let v: u32 = n.parse()?;
    Ok(v)
}

#[distributed_lock(key = "generic")]
async fn generic<E: From<LockError>>() -> Result<(), E> {
    Ok(())
}

fn main() {
    drop(read("a"));
    drop(boxed("1"));
    drop(alias("2"));
    drop(generic::<LockError>());
}
