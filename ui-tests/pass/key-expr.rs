// `key_expr`: any expression implementing `Display`, including ones that borrow `self`.
#![deny(warnings, unused_qualifications)]

use lockattr_runtime::{distributed_lock, LockError};

struct Tenant {
    name: String,
    id: u32,
}

impl Tenant {
    fn lock_name(&self) -> String {
        format!("tenant-{}", self.id)
    }

    #[distributed_lock(key_expr = format!("job:{}:{}", self.name, day))]
    async fn nightly(&self, day: u32) -> Result<u32, LockError> {
        Ok(day)
    }

    #[distributed_lock(key_expr = self.lock_name(), ttl = "5s")]
    async fn by_method(&self) -> Result<(), LockError> {
        Ok(())
    }

    // A field by reference: the key is not moved out of `self`.
    #[distributed_lock(key_expr = self.name)]
    async fn by_field(self) -> Result<String, LockError> {
        Ok(self.name)
    }
}

const KEY: &str = "global";

#[distributed_lock(key_expr = KEY)]
async fn global() -> Result<(), LockError> {
    Ok(())
}

fn main() {
    let t = Tenant {
        name: "t".into(),
        id: 1,
    };
    drop(t.nightly(3));
    drop(t.by_method());
    drop(t.by_field());
    drop(global());
}
