// `#[async_trait]` impls: the lock is taken inside the boxed future; `{self..}`, pattern
// parameters, `key_expr` and `client` all see the method's own names.
#![deny(warnings, unused_qualifications)]

use async_trait::async_trait;
use lockattr_runtime::{distributed_lock, LockClient, LockError};

#[async_trait]
trait Job {
    async fn run(&self, attempt: u32, pair: (u8, u8)) -> Result<u32, LockError>;
    async fn rename(&mut self, to: String) -> Result<(), LockError>;
    async fn label(&self) -> Result<String, LockError>;
    async fn consume(self) -> Result<String, LockError>
    where
        Self: Sized;

    // A default method with a body, rewritten by `#[async_trait]` in the trait.
    #[distributed_lock(key = "default:{attempt}")]
    async fn retry(&self, attempt: u32) -> Result<u32, LockError> {
        self.run(attempt, (0, 0)).await
    }
}

struct Cleanup {
    bucket: String,
    locks: LockClient,
}

#[async_trait]
impl Job for Cleanup {
    #[distributed_lock(
        key = "cleanup:{self.bucket}:{attempt}:{a}:{b}",
        ttl = "1m",
        auto_renew
    )]
    async fn run(&self, attempt: u32, (a, b): (u8, u8)) -> Result<u32, LockError> {
        Ok(attempt + u32::from(a) + u32::from(b))
    }

    #[distributed_lock(key = "rename:{self.bucket}", client = self.locks)]
    async fn rename(&mut self, to: String) -> Result<(), LockError> {
        self.bucket = to;
        Ok(())
    }

    #[distributed_lock(key_expr = format!("label:{}", self.bucket))]
    async fn label(&self) -> Result<String, LockError> {
        if self.bucket.is_empty() {
            return Ok(String::new());
        }
        Ok(self.bucket.clone())
    }

    #[distributed_lock(key = "consume:{self.bucket}")]
    async fn consume(self) -> Result<String, LockError> {
        Ok(self.bucket)
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let mut c = Cleanup {
        bucket: "b".into(),
        locks: LockClient::memory(),
    };
    assert_send(c.run(1, (2, 3)));
    assert_send(c.label());
    assert_send(c.retry(2));
    assert_send(c.rename("x".into()));
    assert_send(c.consume());
}
