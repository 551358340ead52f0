//! trybuild UI tests of `#[distributed_lock]` live in `tests/ui.rs`: `pass/*.rs` must compile (and
//! run), `fail/*.rs` must fail to compile with exactly the reviewed `fail/*.stderr`.
//!
//! After changing a message on purpose, regenerate the expectations with
//! `TRYBUILD=overwrite cargo test -p lockattr-ui-tests`, then read every changed `.stderr`: the
//! span must point at the offending token and the message must name the fix.
