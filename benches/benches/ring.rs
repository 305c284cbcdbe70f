//! `Ring<T>` against `crossbeam_queue::ArrayQueue<T>` in the same groups: 1P1C, 2P2C and
//! 4P4C throughput for `u64` and for `Vec<u8>` carrying 100-byte payloads, with batch sizes
//! 1, 16 and 64 (for `ArrayQueue`, a batch is the same loop of single operations).
//!
//! Run with `cargo bench -p ledgerq-benches --bench ring`. On a shared machine the two
//! queues' figures can be minutes apart; `cargo run --release -p ledgerq-benches --bin
//! ring-ab` alternates them run by run and reports the ratio.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use ledgerq_benches::ring::{run, CAPACITY, PER_RUN};
use ledgerq_ring::Ring;

fn group<T: Send + 'static, F: Fn() -> T + Sync + Copy>(c: &mut Criterion, name: &str, make: F) {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(PER_RUN));
    for (p, cons) in [(1usize, 1usize), (2, 2), (4, 4)] {
        for batch in [1usize, 16, 64] {
            let id = format!("{p}P{cons}C/batch{batch}");
            g.bench_function(BenchmarkId::new("Ring", &id), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run(&Ring::<T>::with_capacity(CAPACITY), p, cons, batch, make))
                        .sum()
                })
            });
            g.bench_function(BenchmarkId::new("ArrayQueue", &id), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run(&ArrayQueue::<T>::new(CAPACITY), p, cons, batch, make))
                        .sum()
                })
            });
        }
    }
    g.finish();
}

fn ring_u64(c: &mut Criterion) {
    group(c, "ring_u64", || 42u64);
}

fn ring_vec100(c: &mut Criterion) {
    group(c, "ring_vec_100B", || vec![0xABu8; 100]);
}

criterion_group!(benches, ring_u64, ring_vec100);
criterion_main!(benches);
