// Literal braces, raw strings, escapes and unicode in key templates.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

#[distributed_lock(key = "{{hash-tag}}:{id}:}}")]
async fn braces(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = r#"raw:"{id}":ключ"#)]
async fn raw(id: u64) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = "tab\t:{id}\u{2603}:{name}")]
async fn escaped(id: u64, name: &str) -> Result<(), LockError> {
    Ok(())
}

fn main() {
    drop(braces(1));
    drop(raw(2));
    drop(escaped(3, "n"));
}
