//! Compile-time behaviour of `#[distributed_lock]`.
//!
//! The expected compiler output depends on the toolchain; it is reviewed against the pinned one
//! (see the workspace's `rust-version` and CI). Regenerate with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
