// `&mut self` receiver: the body mutates `self`; the key borrows it only before the body runs.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

struct Counter {
    name: String,
    hits: u64,
}

impl Counter {
    #[distributed_lock(key = "counter:{self.name}")]
    async fn bump(&mut self, by: u64) -> Result<u64, LockError> {
        self.hits += by;
        self.name.push('!');
        Ok(self.hits)
    }
}

fn main() {
    let mut c = Counter {
        name: "c".into(),
        hits: 0,
    };
    drop(c.bump(1));
}
