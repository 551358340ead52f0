use lockattr_runtime::distributed_lock;

#[distributed_lock(key = "job")]
struct Job {
    id: u64,
}

fn main() {
    let _ = Job { id: 1 }.id;
}
