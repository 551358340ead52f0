// `impl Trait` parameters, used in the key and in the body.
#![deny(warnings, unused_qualifications)]

use std::fmt::Display;

use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "render:{name}:{count}")]
async fn render(
    name: impl Display + Send,
    count: impl Into<u64> + Display + Copy,
) -> Result<String, LockError> {
    Ok(format!("{name}:{}", count.into()))
}

fn main() {
    drop(render("a", 3u32));
}
