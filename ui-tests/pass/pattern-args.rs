// Pattern parameters: tuples, structs, `mut` and `ref` bindings are all usable in the key.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

struct Point {
    x: i32,
    y: i32,
}

#[distributed_lock(key = "pair:{a}:{b}")]
async fn pair((a, b): (u32, u32)) -> Result<u32, LockError> {
    Ok(a + b)
}

#[distributed_lock(key = "point:{x}:{y}:{label}")]
async fn point(Point { x, y }: Point, mut label: String) -> Result<String, LockError> {
    label.push_str(&format!("{x},{y}"));
    Ok(label)
}

#[allow(clippy::toplevel_ref_arg)] // a `ref` binding is what this case checks
#[distributed_lock(key = "nested:{first}:{rest.0}:{total}")]
async fn nested(
    (first, rest): (u8, (u8, u8)),
    ref total: u64,
    _unused: (),
) -> Result<u64, LockError> {
    Ok(u64::from(first) + u64::from(rest.1) + *total)
}

#[distributed_lock(key = "count:{n}")]
async fn count(mut n: u32) -> Result<u32, LockError> {
    while n > 10 {
        n /= 2;
    }
    Ok(n)
}

fn main() {
    drop(pair((1, 2)));
    drop(point(Point { x: 1, y: 2 }, String::new()));
    drop(nested((1, (2, 3)), 4, ()));
    drop(count(5));
}
