//! The queue end to end, each workload next to `crossbeam_queue::ArrayQueue<Vec<u8>>`
//! moving the same 100-byte payloads in memory (freshly allocated per message, as a
//! producer handing owned buffers to consumers must) in the same run.
//!
//! Run with `cargo bench -p ledgerq-benches --bench queue`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use ledgerq::{Options, Queue};

const PAYLOAD: [u8; 100] = [0xAB; 100];

fn open(dir: &std::path::Path) -> Queue {
    Queue::open_with(dir, Options::new().segment_size(256 << 20)).unwrap()
}

/// `producers` threads enqueue `per` messages each while `consumers` threads drain them.
fn ledgerq_e2e(producers: usize, consumers: usize, per: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let total = per * producers as u64;
    let taken = AtomicU64::new(0);
    let barrier = Barrier::new(producers + consumers + 1);
    let mut start = Instant::now();
    thread::scope(|s| {
        for _ in 0..producers {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..per {
                    q.enqueue(PAYLOAD).unwrap();
                }
            });
        }
        for _ in 0..consumers {
            s.spawn(|| {
                barrier.wait();
                while taken.load(Ordering::Relaxed) < total {
                    match q.dequeue().unwrap() {
                        Some(m) => {
                            std::hint::black_box(m.payload());
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            });
        }
        barrier.wait();
        // The main thread blocks in the scope's joins rather than polling, so it takes
        // no core from the workers.
        start = Instant::now();
    });
    start.elapsed()
}

fn array_queue_e2e(producers: usize, consumers: usize, per: u64) -> Duration {
    let q = ArrayQueue::<Vec<u8>>::new(4096);
    let total = per * producers as u64;
    let taken = AtomicU64::new(0);
    let barrier = Barrier::new(producers + consumers + 1);
    let mut start = Instant::now();
    thread::scope(|s| {
        for _ in 0..producers {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..per {
                    let mut v = PAYLOAD.to_vec();
                    while let Err(back) = q.push(v) {
                        v = back;
                        std::hint::spin_loop();
                    }
                }
            });
        }
        for _ in 0..consumers {
            s.spawn(|| {
                barrier.wait();
                while taken.load(Ordering::Relaxed) < total {
                    match q.pop() {
                        Some(v) => {
                            std::hint::black_box(&v);
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            });
        }
        barrier.wait();
        // The main thread blocks in the scope's joins rather than polling, so it takes
        // no core from the workers.
        start = Instant::now();
    });
    start.elapsed()
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("end_to_end_100B");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (p, cons) in [(1usize, 1usize), (2, 2)] {
        let per = 200_000 / p as u64;
        g.throughput(Throughput::Elements(per * p as u64));
        let id = format!("{p}P{cons}C");
        g.bench_function(BenchmarkId::new("ledgerq", &id), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| ledgerq_e2e(p, cons, per)).sum())
        });
        g.bench_function(BenchmarkId::new("ArrayQueue<Vec<u8>>", &id), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| array_queue_e2e(p, cons, per)).sum())
        });
    }
    g.finish();
}

fn single_producer_enqueue(c: &mut Criterion) {
    let mut g = c.benchmark_group("enqueue_1P_100B");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    g.bench_function("ledgerq", |b| {
        b.iter(|| q.enqueue(PAYLOAD).unwrap());
        // Keep the backlog from filling the disk between samples.
        while !q.dequeue_batch(4096).unwrap().is_empty() {}
    });
    let aq = ArrayQueue::<Vec<u8>>::new(1 << 16);
    g.bench_function("ArrayQueue<Vec<u8>> push", |b| {
        b.iter(|| {
            if aq.push(PAYLOAD.to_vec()).is_err() {
                while aq.pop().is_some() {}
            }
        })
    });
    g.finish();
}

fn batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_100x100B");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(100));
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let batch: Vec<[u8; 100]> = vec![PAYLOAD; 100];
    g.bench_function("ledgerq enqueue_batch+dequeue_batch", |b| {
        b.iter(|| {
            q.enqueue_batch(&batch).unwrap();
            let got = q.dequeue_batch(100).unwrap();
            assert_eq!(got.len(), 100);
        })
    });
    let aq = ArrayQueue::<Vec<u8>>::new(128);
    g.bench_function("ArrayQueue<Vec<u8>> 100 push+pop", |b| {
        b.iter(|| {
            for p in &batch {
                aq.push(p.to_vec()).unwrap();
            }
            for _ in 0..100 {
                std::hint::black_box(aq.pop().unwrap());
            }
        })
    });
    g.finish();
}

/// Drain a backlog of `n` messages (built outside the timing) with one consumer.
fn drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("drain_backlog_100B");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in [100_000u64, 1_000_000] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::new("ledgerq", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let q = open(dir.path());
                    for _ in 0..n / 1000 {
                        q.enqueue_batch(std::iter::repeat_n(PAYLOAD, 1000)).unwrap();
                    }
                    let start = Instant::now();
                    let mut got = 0;
                    while got < n {
                        got += q.dequeue_batch(1024).unwrap().len() as u64;
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("ArrayQueue<Vec<u8>>", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let q = ArrayQueue::<Vec<u8>>::new(n as usize);
                    for _ in 0..n {
                        q.push(PAYLOAD.to_vec()).unwrap();
                    }
                    let start = Instant::now();
                    while let Some(v) = q.pop() {
                        std::hint::black_box(v);
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, end_to_end, single_producer_enqueue, batches, drain);
criterion_main!(benches);
