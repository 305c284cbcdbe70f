//! Journal append throughput and `Durability::Sync` latency, each next to its
//! reference in the same group: a plain memcpy of the same bytes, an
//! `ArrayQueue<Vec<u8>>` hand-off of freshly allocated payloads, and a raw
//! `write` + `fdatasync` loop.
//!
//! `cargo bench -p ledgerq-benches --bench journal`

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use ledgerq_journal::{Durability, Journal, JournalOptions, RecordIn};

const SEGMENT: u64 = 64 * 1024 * 1024;

/// Throughput benches measure the append path in a steady state: a consumer (the
/// timing thread, waking every millisecond) removes segments as soon as they are
/// sealed, the way the queue does once consumers are past them; the background flush
/// interval is set beyond the run, so the page cache is not written back (which would
/// measure the disk). `journal` runs the default options (every segment a fresh file,
/// whose pages the kernel allocates and zeroes); `journal_recycling` turns on
/// `recycle_segments` (removed files reused, their pages already in the page cache).
/// The Sync group measures the durable path.
fn open(dir: &std::path::Path, d: Durability) -> Journal {
    open_with(dir, d, false)
}

/// `recycle`: `JournalOptions::recycle_segments` (off by default; see its docs).
fn open_with(dir: &std::path::Path, d: Durability, recycle: bool) -> Journal {
    Journal::open(
        dir,
        JournalOptions::new()
            .segment_size(SEGMENT)
            .durability(d)
            .recycle_segments(recycle)
            .flush_interval(Duration::from_secs(3600)),
    )
    .expect("open journal")
}

/// Appends `iters` records with `threads` threads; wall time from the start barrier to
/// the last append. The threads take appends from one shared count (not a fixed share
/// each), so the figure is the aggregate throughput: a thread that was scheduled less
/// does not leave the others idle while it finishes its share alone. With `consume`,
/// the timing thread wakes every millisecond and removes the sealed segments (the
/// throughput benches, which fill a segment in milliseconds); without, it only waits.
fn run_appends(j: &Journal, threads: usize, iters: u64, payload: &[u8], consume: bool) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let claimed = AtomicU64::new(0);
    let done = AtomicUsize::new(0);
    let ends = Mutex::new(Vec::with_capacity(threads));
    let mut start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let rec = RecordIn {
                    timestamp_ns: None,
                    ..RecordIn::new(payload)
                };
                barrier.wait();
                // Relaxed: a ticket counter; nothing is published through it.
                while claimed.fetch_add(1, Ordering::Relaxed) < iters {
                    black_box(j.append(&rec).expect("append"));
                }
                let end = Instant::now();
                ends.lock().expect("ends").push(end);
                // Release: pairs with the Acquire load of the timing thread below.
                done.fetch_add(1, Ordering::Release);
            });
        }
        barrier.wait();
        start = Instant::now();
        // The consumer: drop whatever is sealed.
        // Acquire: pairs with the Release increment of each finished thread.
        while consume && done.load(Ordering::Acquire) < threads {
            std::thread::sleep(Duration::from_millis(1));
            let _ = j.remove_segments_below(j.next_id());
        }
    });
    let _ = j.remove_segments_below(j.next_id());
    let end = ends
        .into_inner()
        .expect("ends")
        .into_iter()
        .max()
        .unwrap_or(start);
    end.duration_since(start)
}

fn memcpy_ref(buf: &mut [u8], iters: u64, payload: &[u8]) -> Duration {
    let rec = payload.len().next_multiple_of(8) + 56;
    let mut off = 0;
    let t = Instant::now();
    for _ in 0..iters {
        if off + rec > buf.len() {
            off = 0;
        }
        buf[off..off + payload.len()].copy_from_slice(payload);
        off += rec;
    }
    black_box(&buf[..8]);
    t.elapsed()
}

fn array_queue_ref(iters: u64, len: usize) -> Duration {
    let q = Arc::new(ArrayQueue::<Vec<u8>>::new(1024));
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let q2 = q.clone();
        let b = &barrier;
        s.spawn(move || {
            b.wait();
            for i in 0..iters {
                let mut v = vec![0u8; len];
                v[0] = i as u8;
                loop {
                    match q2.push(v) {
                        Ok(()) => break,
                        Err(back) => {
                            v = back;
                            std::hint::spin_loop();
                        }
                    }
                }
            }
        });
        barrier.wait();
        let t = Instant::now();
        let mut got = 0;
        while got < iters {
            if let Some(v) = q.pop() {
                black_box(v);
                got += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        t.elapsed()
    })
}

fn append_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    for &size in &[100usize, 4096] {
        let mut g = c.benchmark_group(format!("append_{size}B"));
        g.sample_size(10)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        if size == 100 {
            g.throughput(Throughput::Elements(1));
        } else {
            g.throughput(Throughput::Bytes(size as u64));
        }
        let payload = vec![0xA5u8; size];
        for threads in [1usize, 2] {
            let sub = dir.path().join(format!("buffered-{size}-{threads}"));
            let j = open(&sub, Durability::Buffered);
            g.bench_function(BenchmarkId::new("journal", format!("{threads}t")), |b| {
                b.iter_custom(|iters| run_appends(&j, threads, iters, &payload, true))
            });
            j.close().expect("close");
            let _ = std::fs::remove_dir_all(&sub);
        }
        let sub = dir.path().join(format!("recycling-{size}"));
        let j = open_with(&sub, Durability::Buffered, true);
        g.bench_function(BenchmarkId::new("journal_recycling", "1t"), |b| {
            b.iter_custom(|iters| run_appends(&j, 1, iters, &payload, true))
        });
        j.close().expect("close");
        let _ = std::fs::remove_dir_all(&sub);
        let mut buf = vec![1u8; 64 << 20];
        g.bench_function("memcpy_reference", |b| {
            b.iter_custom(|iters| memcpy_ref(&mut buf, iters, &payload))
        });
        if size == 100 {
            g.bench_function("arrayqueue_vec_reference", |b| {
                b.iter_custom(|iters| array_queue_ref(iters, size))
            });
        }
        g.finish();
    }
}

fn sync_latency(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    let mut g = c.benchmark_group("sync_append_100B");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    let payload = vec![0x5Au8; 100];
    for threads in [1usize, 32] {
        let sub = dir.path().join(format!("sync-{threads}"));
        let j = open(&sub, Durability::Sync);
        // No consumer: a Sync run fills no segment in the time it runs, and a thread
        // waking every millisecond would only take turns on the CPU with the syncers.
        g.bench_function(BenchmarkId::new("journal", format!("{threads}t")), |b| {
            b.iter_custom(|iters| run_appends(&j, threads, iters, &payload, false))
        });
        j.close().expect("close");
        let _ = std::fs::remove_dir_all(&sub);
    }
    let path = dir.path().join("raw.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("raw file");
    let rec = vec![0x5Au8; 160]; // 100 B payload + record header, as the journal writes
    g.bench_function("raw_write_fdatasync_reference", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                f.write_all(&rec).expect("write");
                f.sync_data().expect("fdatasync");
            }
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, append_throughput, sync_latency);
criterion_main!(benches);
