use lockattr_runtime::distributed_lock;

#[distributed_lock(key = "job:{nope}{id}", ttl = "0s", wait = "1 s", bogus = 1)]
fn job(id: u64) -> u64 {
    id
}

fn main() {}
