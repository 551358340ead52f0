// Native `async fn` in traits: a locked method in an impl, and a locked default method.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

trait Job {
    fn name(&self) -> &str;

    async fn run(&self, attempt: u32) -> Result<u32, LockError>;

    #[distributed_lock(key = "default:{attempt}")]
    async fn run_default(&self, attempt: u32) -> Result<usize, LockError> {
        Ok(self.name().len() + attempt as usize)
    }
}

struct Cleanup {
    bucket: String,
}

impl Job for Cleanup {
    fn name(&self) -> &str {
        &self.bucket
    }

    #[distributed_lock(key = "cleanup:{self.bucket}:{attempt}", ttl = "10m")]
    async fn run(&self, attempt: u32) -> Result<u32, LockError> {
        Ok(attempt)
    }
}

fn main() {
    let c = Cleanup { bucket: "b".into() };
    drop(c.run(1));
    drop(c.run_default(2));
}
