// `client = ...`: a static, a field, a fn call; by value or behind `Arc`.
#![deny(warnings, unused_qualifications)]

use std::sync::{Arc, LazyLock};

use lockattr_runtime::{distributed_lock, LockClient, LockError};

static APP_LOCKS: LazyLock<LockClient> = LazyLock::new(LockClient::memory);

fn locks() -> Arc<LockClient> {
    Arc::new(LockClient::memory())
}

struct Service {
    locks: LockClient,
    shared: Arc<LockClient>,
}

#[distributed_lock(key = "static", client = APP_LOCKS)]
async fn with_static() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = "call", client = locks())]
async fn with_call() -> Result<(), LockError> {
    Ok(())
}

impl Service {
    #[distributed_lock(key = "field", client = self.locks)]
    async fn with_field(&self) -> Result<(), LockError> {
        Ok(())
    }

    #[distributed_lock(key = "arc", client = self.shared)]
    async fn with_arc(&self) -> Result<(), LockError> {
        Ok(())
    }

    #[distributed_lock(key = "param", client = other)]
    async fn with_param(&self, other: &LockClient) -> Result<(), LockError> {
        Ok(())
    }
}

fn main() {
    let s = Service {
        locks: LockClient::memory(),
        shared: locks(),
    };
    drop(with_static());
    drop(with_call());
    drop(s.with_field());
    drop(s.with_arc());
    drop(s.with_param(&APP_LOCKS));
}
