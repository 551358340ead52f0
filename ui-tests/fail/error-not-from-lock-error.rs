use lockattr_runtime::distributed_lock;

#[derive(Debug)]
struct MyError;

#[distributed_lock(key = "job:{id}")]
async fn job(id: u64) -> Result<u64, MyError> {
    Ok(id)
}

fn main() {
    let _ = MyError;
}
