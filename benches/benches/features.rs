//! Costs of the queue's features that must not grow with the backlog: a priority
//! dequeue with 1,000 and 1,000,000 pending messages, a dedup check with 1,000 and
//! 1,000,000 keys tracked (the ratio of each pair should be near 1), and LZ4 / Zstd
//! enqueue throughput next to uncompressed enqueue of the same 4 KiB payloads.
//!
//! Run with `cargo bench -p ledgerq-benches --bench features`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledgerq::{Compression, EnqueueOptions, Options, Priority, Queue};

const PAYLOAD: [u8; 100] = [0xAB; 100];

fn backlog_sizes() -> [u64; 2] {
    [1_000, 1_000_000]
}

/// Steady state at a fixed backlog: each iteration enqueues one message (of a rotating
/// priority) and dequeues one.
fn priority_dequeue(c: &mut Criterion) {
    let mut g = c.benchmark_group("priority_dequeue_100B");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let levels = [Priority::Low, Priority::Medium, Priority::High];
    for pending in backlog_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .priorities(true)
                .segment_size(256 << 20)
                .starvation_window(Duration::ZERO),
        )
        .unwrap();
        let opts: Vec<EnqueueOptions> = levels
            .iter()
            .map(|&p| EnqueueOptions::new().priority(p))
            .collect();
        // Mostly Low, so that a High dequeue has a deep backlog of lower levels to pass.
        let backlog: Vec<_> = (0..pending)
            .map(|i| (PAYLOAD, opts[usize::from(i % 10 == 0)].clone()))
            .collect();
        for chunk in backlog.chunks(10_000) {
            q.enqueue_batch_with(chunk.iter().cloned()).unwrap();
        }
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("enqueue+dequeue", pending), |b| {
            b.iter(|| {
                i += 1;
                q.enqueue_with(PAYLOAD, &opts[i % 3]).unwrap();
                std::hint::black_box(q.dequeue().unwrap().expect("a message"));
            })
        });
    }
    g.finish();
}

/// A duplicate enqueue (a lookup that writes nothing) with the table holding N keys, and
/// an enqueue with a new key when the table is at its bound of N keys (the insert evicts
/// the entry expiring first).
fn dedup_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup_duplicate_check");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for tracked in backlog_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .segment_size(256 << 20)
                .max_dedup_entries(tracked as usize)
                .dedup_window(Duration::from_secs(3600)),
        )
        .unwrap();
        let keys: Vec<String> = (0..tracked).map(|i| format!("order-{i}")).collect();
        for chunk in keys.chunks(10_000) {
            q.enqueue_batch_with(
                chunk
                    .iter()
                    .map(|k| (PAYLOAD, EnqueueOptions::new().dedup_key(k.as_bytes()))),
            )
            .unwrap();
        }
        assert_eq!(q.stats().dedup_tracked, tracked);
        let opts: Vec<EnqueueOptions> = keys
            .iter()
            .step_by((tracked / 1000).max(1) as usize)
            .map(|k| EnqueueOptions::new().dedup_key(k.as_bytes()))
            .collect();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("duplicate", tracked), |b| {
            b.iter(|| {
                i = (i + 7919) % opts.len();
                let e = q.enqueue_with(PAYLOAD, &opts[i]).unwrap();
                assert!(e.is_duplicate());
            })
        });
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("new_key_at_bound", tracked), |b| {
            b.iter(|| {
                n += 1;
                let key = format!("new-{n}");
                let e = q
                    .enqueue_with(PAYLOAD, &EnqueueOptions::new().dedup_key(key.as_bytes()))
                    .unwrap();
                assert!(!e.is_duplicate());
            })
        });
        assert_eq!(q.stats().dedup_tracked, tracked);
    }
    g.finish();
}

/// 4 KiB of text-like bytes (compressible about 3x).
fn text_payload() -> Vec<u8> {
    let words = [
        "order", "status", "shipped", "customer", "amount", "42", "EUR", "\n",
    ];
    let mut out = Vec::with_capacity(4096);
    let mut x = 12345u32;
    while out.len() < 4096 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
        out.push(b' ');
    }
    out.truncate(4096);
    out
}

fn compression(c: &mut Criterion) {
    let mut g = c.benchmark_group("enqueue_4KiB_compression");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let payload = text_payload();
    g.throughput(Throughput::Bytes(payload.len() as u64));
    for (name, comp) in [
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zstd-3", Compression::Zstd { level: 3 }),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(dir.path(), Options::new().segment_size(256 << 20)).unwrap();
        let opts = EnqueueOptions::new().compression(comp);
        g.bench_function(name, |b| {
            b.iter(|| q.enqueue_with(&payload, &opts).unwrap());
            while !q.dequeue_batch(4096).unwrap().is_empty() {}
        });
    }
    g.finish();
}

criterion_group!(benches, priority_dequeue, dedup_check, compression);
criterion_main!(benches);
