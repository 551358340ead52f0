use lockattr_runtime::distributed_lock;

#[distributed_lock(key = "job:{id}")]
async fn job(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
