// `crate = ...`: the runtime under another name, as a string or as a path.
#![deny(warnings, unused_qualifications)]

extern crate lockattr_runtime as my_locks;

mod inner {
    #[my_locks::distributed_lock(key = "a:{id}", crate = "my_locks", ttl = "3s")]
    pub async fn a(id: u32) -> Result<u32, my_locks::LockError> {
        Ok(id)
    }

    #[my_locks::distributed_lock(key = "b", crate = ::my_locks)]
    pub async fn b() -> Result<(), my_locks::LockError> {
        Ok(())
    }
}

fn main() {
    drop(inner::a(1));
    drop(inner::b());
}
