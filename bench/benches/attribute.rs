//! Scenario 5: an `#[distributed_lock]` fn against the same work written by hand against the runtime,
//! on the memory backend (`cargo bench -p lockattr-bench`).

// `criterion_group!` generates an undocumented public fn.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use lockattr_bench::s5;
use lockattr_runtime::LockClient;

/// Distinct keys cycled through (a bounded set, so the memory backend's fence map stays the same size
/// for both variants instead of growing, and rehashing, with every iteration).
const KEYS: u64 = 4096;

fn attribute_vs_hand(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = LockClient::memory();
    let mut group = c.benchmark_group("s5_attribute_overhead");
    let mut id = 0u64;
    group.bench_function("distributed_lock_attribute", |b| {
        b.to_async(&rt).iter(|| {
            id = (id + 1) % KEYS;
            s5::with_attribute(&client, id)
        })
    });
    let mut id = 0u64;
    group.bench_function("hand_written_run", |b| {
        b.to_async(&rt).iter(|| {
            id = (id + 1) % KEYS;
            s5::by_hand(&client, id)
        })
    });
    group.finish();
}

criterion_group!(benches, attribute_vs_hand);
criterion_main!(benches);
