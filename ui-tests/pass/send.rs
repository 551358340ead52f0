// A locked fn's future is `Send` when its body's is, so it can be `tokio::spawn`ed.
#![deny(warnings, unused_qualifications)]

use std::sync::Arc;

use lockattr_runtime::{distributed_lock, LockError};

struct Db {
    rows: tokio::sync::Mutex<Vec<u64>>,
}

#[distributed_lock(key = "insert:{row}", auto_renew, wait = "1s")]
async fn insert(db: Arc<Db>, row: u64) -> Result<usize, LockError> {
    let mut rows = db.rows.lock().await;
    rows.push(row);
    tokio::task::yield_now().await;
    Ok(rows.len())
}

struct Service {
    db: Arc<Db>,
}

impl Service {
    #[distributed_lock(key = "svc:{id}")]
    async fn touch(&self, id: u64) -> Result<(), LockError> {
        self.db.rows.lock().await.retain(|r| *r != id);
        Ok(())
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let db = Arc::new(Db {
        rows: tokio::sync::Mutex::new(Vec::new()),
    });
    assert_send(insert(Arc::clone(&db), 1));
    let service = Service { db };
    assert_send(service.touch(2));
    // Spawning needs a runtime; building the task is enough to type-check `Send + 'static`.
    let _spawn = |db: Arc<Db>| tokio::spawn(insert(db, 3));
}
