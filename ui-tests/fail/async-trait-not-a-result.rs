use async_trait::async_trait;
use lockattr_runtime::distributed_lock;

#[async_trait]
trait Job {
    async fn run(&self) -> u32;
}

struct Cleanup;

#[async_trait]
impl Job for Cleanup {
    #[distributed_lock(key = "cleanup")]
    async fn run(&self) -> u32 {
        1
    }
}

fn main() {}
