// Generics, lifetimes, const generics and `where` clauses: the signature is kept verbatim.
#![deny(warnings, unused_qualifications)]

use std::fmt::Display;
use std::hash::Hash;

use lockattr_runtime::{distributed_lock, LockError};

struct Repo<'a, T> {
    name: &'a str,
    items: Vec<T>,
}

impl<'a, T: Clone + Send + Sync> Repo<'a, T> {
    #[distributed_lock(key = "repo:{self.name}:{id}")]
    async fn first<'b, K>(&'b self, id: &'b K) -> Result<Option<&'b T>, LockError>
    where
        K: Display + Hash + Sync + ?Sized,
        'a: 'b,
    {
        Ok(self.items.first())
    }
}

#[distributed_lock(key = "pick:{tenant}")]
async fn pick<'t, T, const N: usize>(tenant: &'t str, values: [T; N]) -> Result<&'t str, LockError>
where
    T: Copy + Send,
{
    let _ = values;
    Ok(tenant)
}

fn main() {
    let items = vec![1u8];
    let repo = Repo { name: "r", items };
    drop(repo.first("k"));
    drop(pick("t", [1u8, 2]));
}
