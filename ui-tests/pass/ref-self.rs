// `&self` receiver: `{self.field}` and `{self.nested.field}` placeholders.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

struct Config {
    region: &'static str,
}

struct Service {
    name: String,
    config: Config,
}

impl Service {
    #[distributed_lock(key = "svc:{self.name}:{self.config.region}:{id}", ttl = "1m30s")]
    async fn refresh(&self, id: u32) -> Result<usize, LockError> {
        Ok(self.name.len() + id as usize)
    }

    // An output borrowing from `self` through an elided lifetime.
    #[distributed_lock(key = "svc:{self.name}")]
    async fn name(&self) -> Result<&str, LockError> {
        Ok(&self.name)
    }
}

fn main() {
    let s = Service {
        name: "a".into(),
        config: Config { region: "eu" },
    };
    drop(s.refresh(1));
    drop(s.name());
}
