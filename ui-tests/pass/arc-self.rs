// `self: Arc<Self>`: fields are reached through the `Arc`; the future is `Send`.
#![deny(warnings, unused_qualifications)]

use std::sync::Arc;

use lockattr_runtime::{distributed_lock, LockError};

struct Worker {
    shard: u16,
}

impl Worker {
    #[distributed_lock(key = "shard:{self.shard}", auto_renew = true)]
    async fn work(self: Arc<Self>, round: u32) -> Result<u32, LockError> {
        let me = Arc::clone(&self);
        Ok(u32::from(me.shard) + round)
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let w = Arc::new(Worker { shard: 3 });
    assert_send(w.work(1));
}
