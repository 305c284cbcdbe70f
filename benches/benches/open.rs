//! Open time: a queue with 100,000 pending messages, against one with 10,000,000
//! messages already consumed before the same 100,000 pending (with the default automatic
//! compaction, and with compaction off so the consumed segments stay on disk). Open time
//! must not grow with what was consumed.
//!
//! Run with `cargo bench -p ledgerq-benches --bench open` (building the directories takes
//! about a minute; `LEDGERQ_BENCH_CONSUMED` changes the 10,000,000).

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ledgerq::{Options, Queue};

const PENDING: u64 = 100_000;
const PAYLOAD: [u8; 100] = [0x5A; 100];

fn opts(compact: bool) -> Options {
    Options::new().auto_compact(compact)
}

fn fill(q: &Queue, n: u64) {
    let batch = vec![PAYLOAD; 1000];
    let mut left = n;
    while left > 0 {
        let k = left.min(1000) as usize;
        q.enqueue_batch(&batch[..k]).unwrap();
        left -= k as u64;
    }
}

/// Builds a queue directory: `consumed` messages enqueued and consumed, then `PENDING`.
fn build(dir: &Path, consumed: u64, compact: bool) {
    let q = Queue::open_with(dir, opts(compact)).unwrap();
    let mut left = consumed;
    while left > 0 {
        let k = left.min(100_000);
        fill(&q, k);
        let mut got = 0;
        while got < k {
            got += q.dequeue_batch(4096).unwrap().len() as u64;
        }
        left -= k;
    }
    fill(&q, PENDING);
    if compact {
        // Let the maintenance thread remove the consumed segments.
        std::thread::sleep(Duration::from_millis(1500));
    }
    q.close().unwrap();
}

fn open_time(c: &mut Criterion) {
    let consumed: u64 = std::env::var("LEDGERQ_BENCH_CONSUMED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let mut g = c.benchmark_group("open");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let cases = [
        ("pending_only", 0, true),
        ("consumed_then_pending/compacted", consumed, true),
        ("consumed_then_pending/kept", consumed, false),
    ];
    for (name, consumed, compact) in cases {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), consumed, compact);
        g.bench_function(BenchmarkId::new(name, consumed), |b| {
            b.iter(|| {
                let q = Queue::open_with(dir.path(), opts(compact)).unwrap();
                assert_eq!(q.stats().pending, PENDING);
                q.close().unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, open_time);
criterion_main!(benches);
