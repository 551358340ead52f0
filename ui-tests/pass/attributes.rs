// Doc comments, inner attributes and other attributes before and after the lock attribute are kept.
#![deny(warnings, unused_qualifications)]
#![deny(missing_docs)]
#![allow(clippy::mixed_attributes_style)]
//! A crate with documented, locked functions.

use lockattr_runtime::{distributed_lock, LockError};

/// Many arguments, all in the key.
#[allow(clippy::too_many_arguments)]
#[distributed_lock(key = "many:{a}:{b}:{c}:{d}:{e}:{f}:{g}:{h}")]
#[inline]
#[must_use = "the lock result must be checked"]
pub async fn many(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> Result<u8, LockError> {
    #![allow(unused_variables)]
    let unused = 1;
    Ok(a + b + c + d + e + f + g + h)
}

/// Inner doc and attributes on a method.
pub struct S;

impl S {
    /// Locked method.
    #[distributed_lock(key = "s")]
    #[doc(alias = "lock_s")]
    #[cfg_attr(test, allow(dead_code))]
    pub async fn run(&self) -> Result<(), LockError> {
        #![allow(clippy::let_unit_value)]
        let () = ();
        Ok(())
    }
}

fn main() {
    drop(many(1, 2, 3, 4, 5, 6, 7, 8));
    drop(S.run());
}
