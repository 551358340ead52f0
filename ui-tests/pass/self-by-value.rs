// `self` and `mut self` by value: the body consumes `self` after the key was rendered from it.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

struct Job {
    name: String,
    runs: u32,
}

impl Job {
    #[distributed_lock(key = "job:{self.name}")]
    async fn into_name(self) -> Result<String, LockError> {
        Ok(self.name)
    }

    #[distributed_lock(key = "job:{self.name}:{self.runs}")]
    async fn run_once(mut self) -> Result<Self, LockError> {
        self.runs += 1;
        Ok(self)
    }
}

fn main() {
    drop(
        Job {
            name: "a".into(),
            runs: 0,
        }
        .into_name(),
    );
    drop(
        Job {
            name: "b".into(),
            runs: 0,
        }
        .run_once(),
    );
}
