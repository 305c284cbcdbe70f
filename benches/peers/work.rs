//! The workloads, each implemented for every system that supports it. Every function
//! runs one measurement and returns its figure; the caller takes the median of several.
//! Errors from a peer's API abort the harness with a message: a failed run has no figure.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, TryRecvError};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use futures_executor::block_on;
use hdrhistogram::Histogram;
use ledgerq::{Durability, Options, Queue};
use queue_file::QueueFile;

use crate::report::Sys;

/// How long to let a freshly opened queue's background setup finish before the clock
/// starts (set from `--settle-ms`; the same for every system).
pub static SETTLE_MS: AtomicU64 = AtomicU64::new(100);

/// Sleeps for the settle time.
pub fn settle() {
    thread::sleep(Duration::from_millis(SETTLE_MS.load(Ordering::Relaxed)));
}

/// Segment size in bytes given to LedgerQ and yaque alike (set from `--segment-mib`).
pub static SEGMENT_BYTES: AtomicU64 = AtomicU64::new(ledgerq::DEFAULT_SEGMENT_SIZE);

/// The segment size in bytes.
pub fn segment() -> u64 {
    SEGMENT_BYTES.load(Ordering::Relaxed)
}

/// Stops the harness with `what` and the error: a run that fails has no figure to report.
pub fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("peers: {what}: {e}");
    std::process::exit(1)
}

trait OrDie<T> {
    fn or_die(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrDie<T> for Result<T, E> {
    fn or_die(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => die(what, e),
        }
    }
}

/// A fresh scratch directory under `base` (removed when dropped).
pub fn scratch(base: &Path) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("peers-")
        .tempdir_in(base)
        .or_die("creating a scratch directory")
}

/// Opens LedgerQ in `dir` with the benches' settings.
/// Opens LedgerQ in `dir` with the benches' settings, then waits the settle time.
pub fn open_ledgerq(dir: &Path, durability: Durability) -> Queue {
    let q = open_ledgerq_now(dir, durability);
    settle();
    q
}

fn open_ledgerq_now(dir: &Path, durability: Durability) -> Queue {
    Queue::open_with(
        dir,
        Options::new()
            .segment_size(segment())
            .durability(durability),
    )
    .or_die("opening LedgerQ")
}

fn yaque_pair(dir: &Path) -> (yaque::Sender, yaque::Receiver) {
    let tx = yaque::SenderBuilder::new()
        .segment_size(segment())
        .open(dir)
        .or_die("opening the yaque sender");
    let rx = yaque::Receiver::open(dir).or_die("opening the yaque receiver");
    settle();
    (tx, rx)
}

/// Opens queue-file at `dir/queue`, with `fdatasync` after each write only if `sync`.
fn open_queue_file(dir: &Path, sync: bool) -> QueueFile {
    let mut q = QueueFile::open(dir.join("queue")).or_die("opening queue-file");
    q.set_sync_writes(sync);
    q.set_overwrite_on_remove(false);
    settle();
    q
}

fn fill_ledgerq(q: &Queue, n: u64, payload: &[u8]) {
    let batch = vec![payload; 1000];
    let mut left = n;
    while left > 0 {
        let k = left.min(1000) as usize;
        q.enqueue_batch(&batch[..k]).or_die("LedgerQ enqueue_batch");
        left -= k as u64;
    }
}

fn fill_yaque(tx: &mut yaque::Sender, n: u64, payload: &[u8]) {
    let batch = vec![payload; 1000];
    let mut left = n;
    while left > 0 {
        let k = left.min(1000) as usize;
        block_on(tx.send_batch(&batch[..k])).or_die("yaque send_batch");
        left -= k as u64;
    }
}

fn fill_queue_file(q: &mut QueueFile, n: u64, payload: &[u8]) {
    let batch = vec![payload; 1000];
    let mut left = n;
    while left > 0 {
        let k = left.min(1000) as usize;
        q.add_n(batch[..k].iter()).or_die("queue-file add_n");
        left -= k as u64;
    }
}

/// One producer enqueues `n` messages of `payload` (nobody consumes): messages per second.
pub fn enqueue_1p(sys: Sys, base: &Path, n: u64, payload: &[u8]) -> f64 {
    let dir = scratch(base);
    let elapsed = match sys {
        Sys::LedgerQ => {
            let q = open_ledgerq(dir.path(), Durability::Buffered);
            let t = Instant::now();
            for _ in 0..n {
                q.enqueue(payload).or_die("LedgerQ enqueue");
            }
            t.elapsed()
        }
        Sys::ArrayQ => {
            let q = ArrayQueue::<Vec<u8>>::new(n as usize);
            let t = Instant::now();
            for _ in 0..n {
                if q.push(payload.to_vec()).is_err() {
                    die("ArrayQueue push", "full");
                }
            }
            t.elapsed()
        }
        Sys::Mpsc => {
            let (tx, rx) = sync_channel::<Vec<u8>>(n as usize);
            let t = Instant::now();
            for _ in 0..n {
                tx.send(payload.to_vec()).or_die("sync_channel send");
            }
            let e = t.elapsed();
            drop(rx);
            e
        }
        Sys::Yaque => {
            let (mut tx, _rx) = yaque_pair(dir.path());
            let t = Instant::now();
            for _ in 0..n {
                block_on(tx.send(payload)).or_die("yaque send");
            }
            t.elapsed()
        }
        Sys::QueueFile => {
            let mut q = open_queue_file(dir.path(), false);
            let t = Instant::now();
            for _ in 0..n {
                q.add(payload).or_die("queue-file add");
            }
            t.elapsed()
        }
        Sys::Raw => die("enqueue_1p", "no raw variant"),
    };
    n as f64 / elapsed.as_secs_f64()
}

/// `p` producers enqueue `per` messages each while `c` consumers take them all: the time
/// from the start signal until every message was taken. Returns messages per second.
pub fn end_to_end(sys: Sys, base: &Path, p: usize, c: usize, per: u64, payload: &[u8]) -> f64 {
    let dir = scratch(base);
    // The clock stops when the work is done, before the queue is closed.
    let end: Instant;
    let total = per * p as u64;
    let taken = AtomicU64::new(0);
    let barrier = Barrier::new(p + c + 1);
    let mut start = Instant::now();
    match sys {
        Sys::LedgerQ => {
            let q = open_ledgerq(dir.path(), Durability::Buffered);
            thread::scope(|s| {
                for _ in 0..p {
                    s.spawn(|| {
                        barrier.wait();
                        for _ in 0..per {
                            q.enqueue(payload).or_die("LedgerQ enqueue");
                        }
                    });
                }
                for _ in 0..c {
                    s.spawn(|| {
                        barrier.wait();
                        while taken.load(Ordering::Relaxed) < total {
                            match q.dequeue().or_die("LedgerQ dequeue") {
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
                start = Instant::now();
            });
            end = Instant::now();
        }
        Sys::ArrayQ => {
            let q = ArrayQueue::<Vec<u8>>::new(4096);
            thread::scope(|s| {
                for _ in 0..p {
                    s.spawn(|| {
                        barrier.wait();
                        for _ in 0..per {
                            let mut v = payload.to_vec();
                            while let Err(back) = q.push(v) {
                                v = back;
                                std::hint::spin_loop();
                            }
                        }
                    });
                }
                for _ in 0..c {
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
                start = Instant::now();
            });
            end = Instant::now();
        }
        Sys::Mpsc => {
            assert_eq!(c, 1, "sync_channel has one consumer");
            let (tx, rx) = sync_channel::<Vec<u8>>(4096);
            thread::scope(|s| {
                for _ in 0..p {
                    let tx = tx.clone();
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..per {
                            tx.send(payload.to_vec()).or_die("sync_channel send");
                        }
                    });
                }
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for _ in 0..total {
                        std::hint::black_box(rx.recv().or_die("sync_channel recv"));
                    }
                });
                barrier.wait();
                start = Instant::now();
            });
            end = Instant::now();
        }
        Sys::Yaque => {
            assert_eq!(c, 1, "yaque has one receiver");
            let (tx, mut rx) = yaque_pair(dir.path());
            let tx = Mutex::new(tx);
            thread::scope(|s| {
                for _ in 0..p {
                    s.spawn(|| {
                        barrier.wait();
                        for _ in 0..per {
                            let mut g = tx.lock().unwrap_or_else(|e| e.into_inner());
                            block_on(g.send(payload)).or_die("yaque send");
                        }
                    });
                }
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..total {
                        let g = block_on(rx.recv()).or_die("yaque recv");
                        std::hint::black_box(&*g);
                        g.commit().or_die("yaque commit");
                    }
                });
                barrier.wait();
                start = Instant::now();
            });
            end = Instant::now();
        }
        Sys::QueueFile => {
            let q = Mutex::new(open_queue_file(dir.path(), false));
            thread::scope(|s| {
                for _ in 0..p {
                    s.spawn(|| {
                        barrier.wait();
                        for _ in 0..per {
                            let mut g = q.lock().unwrap_or_else(|e| e.into_inner());
                            g.add(payload).or_die("queue-file add");
                        }
                    });
                }
                for _ in 0..c {
                    s.spawn(|| {
                        barrier.wait();
                        while taken.load(Ordering::Relaxed) < total {
                            let got = {
                                let mut g = q.lock().unwrap_or_else(|e| e.into_inner());
                                match g.peek().or_die("queue-file peek") {
                                    Some(v) => {
                                        g.remove().or_die("queue-file remove");
                                        Some(v)
                                    }
                                    None => None,
                                }
                            };
                            match got {
                                Some(v) => {
                                    std::hint::black_box(&v);
                                    taken.fetch_add(1, Ordering::Relaxed);
                                }
                                None => thread::yield_now(),
                            }
                        }
                    });
                }
                barrier.wait();
                start = Instant::now();
            });
            end = Instant::now();
        }
        Sys::Raw => die("end_to_end", "no raw variant"),
    }
    total as f64 / end.duration_since(start).as_secs_f64()
}

/// `rounds` times: enqueue a batch of 100 messages, then dequeue 100. Messages per second.
pub fn batch_100(sys: Sys, base: &Path, rounds: u64, payload: &[u8]) -> f64 {
    let dir = scratch(base);
    // The clock stops when the work is done, before the queue is closed.
    let end: Instant;
    let batch: Vec<&[u8]> = vec![payload; 100];
    let t;
    match sys {
        Sys::LedgerQ => {
            let q = open_ledgerq(dir.path(), Durability::Buffered);
            t = Instant::now();
            for _ in 0..rounds {
                q.enqueue_batch(&batch).or_die("LedgerQ enqueue_batch");
                let got = q.dequeue_batch(100).or_die("LedgerQ dequeue_batch");
                assert_eq!(got.len(), 100);
                std::hint::black_box(got);
            }
            end = Instant::now();
        }
        Sys::ArrayQ => {
            let q = ArrayQueue::<Vec<u8>>::new(128);
            t = Instant::now();
            for _ in 0..rounds {
                for p in &batch {
                    if q.push(p.to_vec()).is_err() {
                        die("ArrayQueue push", "full");
                    }
                }
                for _ in 0..100 {
                    std::hint::black_box(q.pop());
                }
            }
            end = Instant::now();
        }
        Sys::Mpsc => {
            let (tx, rx) = sync_channel::<Vec<u8>>(128);
            t = Instant::now();
            for _ in 0..rounds {
                for p in &batch {
                    tx.send(p.to_vec()).or_die("sync_channel send");
                }
                for _ in 0..100 {
                    std::hint::black_box(rx.recv().or_die("sync_channel recv"));
                }
            }
            end = Instant::now();
        }
        Sys::Yaque => {
            let (mut tx, mut rx) = yaque_pair(dir.path());
            t = Instant::now();
            for _ in 0..rounds {
                block_on(tx.send_batch(&batch)).or_die("yaque send_batch");
                let g = block_on(rx.recv_batch(100)).or_die("yaque recv_batch");
                assert_eq!(g.len(), 100);
                g.commit().or_die("yaque commit");
            }
            end = Instant::now();
        }
        Sys::QueueFile => {
            let mut q = open_queue_file(dir.path(), false);
            t = Instant::now();
            for _ in 0..rounds {
                q.add_n(batch.iter()).or_die("queue-file add_n");
                let got: Vec<Box<[u8]>> = q.iter().take(100).collect();
                assert_eq!(got.len(), 100);
                std::hint::black_box(got);
                q.remove_n(100).or_die("queue-file remove_n");
            }
            end = Instant::now();
        }
        Sys::Raw => die("batch_100", "no raw variant"),
    }
    (rounds * 100) as f64 / end.duration_since(t).as_secs_f64()
}

/// Drain a backlog of `n` messages (built before the clock starts) with one consumer,
/// taking up to 1024 at a time where the API has batches. Messages per second.
pub fn drain(sys: Sys, base: &Path, n: u64, payload: &[u8]) -> f64 {
    let dir = scratch(base);
    // The clock stops when the work is done, before the queue is closed.
    let end: Instant;
    let t;
    match sys {
        Sys::LedgerQ => {
            let q = open_ledgerq(dir.path(), Durability::Buffered);
            fill_ledgerq(&q, n, payload);
            settle();
            t = Instant::now();
            let mut got = 0;
            while got < n {
                got += q.dequeue_batch(1024).or_die("LedgerQ dequeue_batch").len() as u64;
            }
            end = Instant::now();
        }
        Sys::ArrayQ => {
            let q = ArrayQueue::<Vec<u8>>::new(n as usize);
            for _ in 0..n {
                if q.push(payload.to_vec()).is_err() {
                    die("ArrayQueue push", "full");
                }
            }
            t = Instant::now();
            while let Some(v) = q.pop() {
                std::hint::black_box(v);
            }
            end = Instant::now();
        }
        Sys::Mpsc => {
            let (tx, rx) = sync_channel::<Vec<u8>>(n as usize);
            for _ in 0..n {
                tx.send(payload.to_vec()).or_die("sync_channel send");
            }
            t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(rx.recv().or_die("sync_channel recv"));
            }
            end = Instant::now();
        }
        Sys::Yaque => {
            let (mut tx, mut rx) = yaque_pair(dir.path());
            fill_yaque(&mut tx, n, payload);
            settle();
            t = Instant::now();
            let mut got = 0;
            while got < n {
                let g = block_on(rx.recv_batch_up_to(1024)).or_die("yaque recv_batch_up_to");
                got += g.len() as u64;
                g.commit().or_die("yaque commit");
            }
            end = Instant::now();
        }
        Sys::QueueFile => {
            let mut q = open_queue_file(dir.path(), false);
            fill_queue_file(&mut q, n, payload);
            settle();
            t = Instant::now();
            let mut got = 0;
            while got < n {
                let v: Vec<Box<[u8]>> = q.iter().take(1024).collect();
                let k = v.len();
                std::hint::black_box(v);
                q.remove_n(k).or_die("queue-file remove_n");
                got += k as u64;
            }
            end = Instant::now();
        }
        Sys::Raw => die("drain", "no raw variant"),
    }
    n as f64 / end.duration_since(t).as_secs_f64()
}

/// `threads` producers enqueue durably (each call returns once the message is on stable
/// storage) for `secs` seconds. Enqueues per second, all threads together.
pub fn sync_producers(sys: Sys, base: &Path, threads: usize, secs: f64, payload: &[u8]) -> f64 {
    let dir = scratch(base);
    let count = AtomicU64::new(0);
    let barrier = Barrier::new(threads + 1);
    let run = Duration::from_secs_f64(secs);
    let drive = |op: &(dyn Fn() + Sync)| {
        // One durable write before the clock starts, so the first flush of the fresh
        // file (and whatever the OS had buffered for it) is not in the figure.
        op();
        let mut start = Instant::now();
        thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    let t = Instant::now();
                    let mut k = 0u64;
                    while t.elapsed() < run {
                        op();
                        k += 1;
                    }
                    count.fetch_add(k, Ordering::Relaxed);
                });
            }
            barrier.wait();
            start = Instant::now();
        });
        count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    };
    match sys {
        Sys::LedgerQ => {
            let q = open_ledgerq(dir.path(), Durability::Sync);
            drive(&|| {
                q.enqueue(payload).or_die("LedgerQ enqueue (Sync)");
            })
        }
        Sys::QueueFile => {
            let q = Mutex::new(open_queue_file(dir.path(), true));
            drive(&|| {
                let mut g = q.lock().unwrap_or_else(|e| e.into_inner());
                g.add(payload).or_die("queue-file add (sync_writes)");
            })
        }
        Sys::Raw => {
            let f: File = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("raw"))
                .or_die("opening the raw file");
            drive(&|| {
                (&f).write_all(payload).or_die("raw write");
                f.sync_data().or_die("fdatasync");
            })
        }
        _ => die("sync_producers", "no sync variant"),
    }
}

/// Latency percentiles of enqueue-to-dequeue, in microseconds: p50, p99, p99.9, max.
pub type Percentiles = [f64; 4];

/// How the consumer of the latency workload waits for the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// In the system's blocking call (LedgerQ `dequeue_timeout`, `recv`), off the CPU.
    Block,
    /// Polling the non-blocking call, yielding the CPU between empty polls.
    Poll,
}

/// One producer sends `rate` messages per second for `secs` seconds on a fixed schedule
/// while one consumer takes them. Each message carries its sequence number; its latency
/// is measured from its *scheduled* send time, so a stalled producer does not hide the
/// delay of the messages it should have sent (no coordinated omission). The consumer
/// waits as `wait` says; `ArrayQueue` and queue-file have no blocking call (callers
/// only ask for `Wait::Poll` from them).
pub fn latency(sys: Sys, base: &Path, rate: u64, secs: f64, wait: Wait) -> Percentiles {
    let dir = scratch(base);
    let n = (rate as f64 * secs) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let barrier = Barrier::new(2);
    let start_cell: Mutex<Option<Instant>> = Mutex::new(None);
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).or_die("creating the histogram");
    let payload_of = |i: u64| {
        let mut p = [0u8; 100];
        p[..8].copy_from_slice(&i.to_le_bytes());
        p
    };
    let seq_of = |p: &[u8]| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p[..8]);
        u64::from_le_bytes(b)
    };
    // The producer: waits for each message's scheduled time, then sends it.
    let produce = |send: &mut dyn FnMut(&[u8])| {
        barrier.wait();
        let start = Instant::now() + Duration::from_millis(1);
        *start_cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(start);
        barrier.wait();
        for i in 0..n {
            let due = start + interval * i as u32;
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                if due - now > Duration::from_micros(200) {
                    thread::sleep(due - now - Duration::from_micros(100));
                } else {
                    thread::yield_now();
                }
            }
            send(&payload_of(i));
        }
    };
    let record = |hist: &mut Histogram<u64>, start: Instant, p: &[u8]| {
        let due = start + interval * seq_of(p) as u32;
        let ns = Instant::now().saturating_duration_since(due).as_nanos() as u64;
        hist.saturating_record(ns.max(1));
    };
    let start_of = || {
        barrier.wait();
        barrier.wait();
        start_cell
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(Instant::now)
    };
    match sys {
        Sys::LedgerQ => {
            let q = open_ledgerq(dir.path(), Durability::Buffered);
            thread::scope(|s| {
                s.spawn(|| {
                    produce(&mut |p| {
                        q.enqueue(p).or_die("LedgerQ enqueue");
                    })
                });
                let start = start_of();
                let mut got = 0;
                // Blocking: parked until a message is committed (as yaque's and
                // sync_channel's `recv` wait). Polling: `dequeue`, yielding when empty.
                while got < n {
                    let m = match wait {
                        Wait::Block => q
                            .dequeue_timeout(Duration::from_millis(100))
                            .or_die("LedgerQ dequeue_timeout"),
                        Wait::Poll => q.dequeue().or_die("LedgerQ dequeue"),
                    };
                    match m {
                        Some(m) => {
                            record(&mut hist, start, m.payload());
                            got += 1;
                        }
                        None if wait == Wait::Poll => thread::yield_now(),
                        None => {}
                    }
                }
            });
        }
        Sys::ArrayQ => {
            let q = ArrayQueue::<Vec<u8>>::new(1 << 16);
            thread::scope(|s| {
                s.spawn(|| {
                    produce(&mut |p| {
                        let mut v = p.to_vec();
                        while let Err(back) = q.push(v) {
                            v = back;
                            thread::yield_now();
                        }
                    })
                });
                let start = start_of();
                let mut got = 0;
                while got < n {
                    match q.pop() {
                        Some(v) => {
                            record(&mut hist, start, &v);
                            got += 1;
                        }
                        None => thread::yield_now(),
                    }
                }
            });
        }
        Sys::Mpsc => {
            let (tx, rx) = sync_channel::<Vec<u8>>(1 << 16);
            thread::scope(|s| {
                s.spawn(|| produce(&mut |p| tx.send(p.to_vec()).or_die("sync_channel send")));
                let start = start_of();
                let mut got = 0;
                while got < n {
                    let v = match wait {
                        Wait::Block => Some(rx.recv().or_die("sync_channel recv")),
                        Wait::Poll => match rx.try_recv() {
                            Ok(v) => Some(v),
                            Err(TryRecvError::Empty) => None,
                            Err(e) => die("sync_channel try_recv", e),
                        },
                    };
                    match v {
                        Some(v) => {
                            record(&mut hist, start, &v);
                            got += 1;
                        }
                        None => thread::yield_now(),
                    }
                }
            });
        }
        Sys::Yaque => {
            let (mut tx, mut rx) = yaque_pair(dir.path());
            thread::scope(|s| {
                s.spawn(|| produce(&mut |p| block_on(tx.send(p)).or_die("yaque send")));
                let start = start_of();
                let mut got = 0;
                while got < n {
                    let g = match wait {
                        Wait::Block => Some(block_on(rx.recv()).or_die("yaque recv")),
                        Wait::Poll => match rx.try_recv() {
                            Ok(g) => Some(g),
                            Err(yaque::TryRecvError::QueueEmpty) => None,
                            Err(yaque::TryRecvError::Io(e)) => die("yaque try_recv", e),
                        },
                    };
                    match g {
                        Some(g) => {
                            record(&mut hist, start, &g);
                            g.commit().or_die("yaque commit");
                            got += 1;
                        }
                        None => thread::yield_now(),
                    }
                }
            });
        }
        Sys::QueueFile => {
            let q = Mutex::new(open_queue_file(dir.path(), false));
            thread::scope(|s| {
                s.spawn(|| {
                    produce(&mut |p| {
                        let mut g = q.lock().unwrap_or_else(|e| e.into_inner());
                        g.add(p).or_die("queue-file add");
                    })
                });
                let start = start_of();
                let mut got = 0;
                while got < n {
                    let v = {
                        let mut g = q.lock().unwrap_or_else(|e| e.into_inner());
                        let v = g.peek().or_die("queue-file peek");
                        if v.is_some() {
                            g.remove().or_die("queue-file remove");
                        }
                        v
                    };
                    match v {
                        Some(v) => {
                            record(&mut hist, start, &v);
                            got += 1;
                        }
                        None => thread::yield_now(),
                    }
                }
            });
        }
        Sys::Raw => die("latency", "no raw variant"),
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    [us(0.5), us(0.99), us(0.999), hist.max() as f64 / 1000.0]
}

/// A durable queue directory with `consumed` messages enqueued and consumed, then
/// `backlog` pending: built once, opened many times.
pub struct OpenFixture {
    dir: tempfile::TempDir,
    sys: Sys,
}

impl OpenFixture {
    /// Builds the directory for `sys`.
    pub fn build(sys: Sys, base: &Path, consumed: u64, backlog: u64, payload: &[u8]) -> Self {
        let dir = scratch(base);
        match sys {
            Sys::LedgerQ => {
                let q = open_ledgerq(dir.path(), Durability::Buffered);
                let mut left = consumed;
                while left > 0 {
                    let k = left.min(100_000);
                    fill_ledgerq(&q, k, payload);
                    let mut got = 0;
                    while got < k {
                        got += q.dequeue_batch(4096).or_die("LedgerQ dequeue_batch").len() as u64;
                    }
                    left -= k;
                }
                fill_ledgerq(&q, backlog, payload);
                q.close().or_die("LedgerQ close");
            }
            Sys::Yaque => {
                let (mut tx, mut rx) = yaque_pair(dir.path());
                let mut left = consumed;
                while left > 0 {
                    let k = left.min(100_000);
                    fill_yaque(&mut tx, k, payload);
                    let mut got = 0;
                    while got < k {
                        let g = block_on(rx.recv_batch_up_to(4096)).or_die("yaque recv_batch");
                        got += g.len() as u64;
                        g.commit().or_die("yaque commit");
                    }
                    left -= k;
                }
                fill_yaque(&mut tx, backlog, payload);
                rx.save().or_die("yaque save");
                drop(tx);
            }
            Sys::QueueFile => {
                let mut q = open_queue_file(dir.path(), false);
                let mut left = consumed;
                while left > 0 {
                    let k = left.min(100_000);
                    fill_queue_file(&mut q, k, payload);
                    q.remove_n(k as usize).or_die("queue-file remove_n");
                    left -= k;
                }
                fill_queue_file(&mut q, backlog, payload);
                q.sync_all().or_die("queue-file sync_all");
            }
            _ => die("OpenFixture", "not a durable queue"),
        }
        OpenFixture { dir, sys }
    }

    /// Opens the queue and reads its first pending message without consuming it; the
    /// time that takes, in milliseconds.
    pub fn open_ms(&self) -> f64 {
        let path: PathBuf = self.dir.path().to_path_buf();
        let t = Instant::now();
        match self.sys {
            Sys::LedgerQ => {
                let q = open_ledgerq_now(&path, Durability::Buffered);
                let first = q.peek(1).or_die("LedgerQ peek");
                assert_eq!(first.len(), 1);
                let e = t.elapsed();
                q.close().or_die("LedgerQ close");
                e.as_secs_f64() * 1e3
            }
            Sys::Yaque => {
                let mut rx = yaque::Receiver::open(&path).or_die("opening the yaque receiver");
                let g = block_on(rx.recv()).or_die("yaque recv");
                std::hint::black_box(&*g);
                let e = t.elapsed();
                g.rollback().or_die("yaque rollback");
                e.as_secs_f64() * 1e3
            }
            Sys::QueueFile => {
                let mut q = QueueFile::open(path.join("queue")).or_die("opening queue-file");
                let first = q.peek().or_die("queue-file peek");
                assert!(first.is_some());
                t.elapsed().as_secs_f64() * 1e3
            }
            _ => die("OpenFixture", "not a durable queue"),
        }
    }
}

/// Anonymous resident memory of this process, in KiB, from /proc/self/status.
pub fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// In the child process: build a backlog of `n` messages in `sys` (in `base`) and print
/// `RssAnon <kib>` with the backlog held.
pub fn rss_child(sys: Sys, base: &Path, n: u64) {
    let payload = [0xABu8; 100];
    let dir = scratch(base);
    let kib;
    match sys {
        Sys::LedgerQ => {
            let q = open_ledgerq(dir.path(), Durability::Buffered);
            fill_ledgerq(&q, n, &payload);
            kib = rss_anon_kib();
            std::hint::black_box(&q);
        }
        Sys::ArrayQ => {
            let q = ArrayQueue::<Vec<u8>>::new(n as usize);
            for _ in 0..n {
                if q.push(payload.to_vec()).is_err() {
                    die("ArrayQueue push", "full");
                }
            }
            kib = rss_anon_kib();
            std::hint::black_box(&q);
        }
        Sys::Mpsc => {
            let (tx, rx) = sync_channel::<Vec<u8>>(n as usize);
            for _ in 0..n {
                tx.send(payload.to_vec()).or_die("sync_channel send");
            }
            kib = rss_anon_kib();
            std::hint::black_box(&rx);
        }
        Sys::Yaque => {
            let (mut tx, rx) = yaque_pair(dir.path());
            fill_yaque(&mut tx, n, &payload);
            kib = rss_anon_kib();
            std::hint::black_box(&rx);
        }
        Sys::QueueFile => {
            let mut q = open_queue_file(dir.path(), false);
            fill_queue_file(&mut q, n, &payload);
            kib = rss_anon_kib();
            std::hint::black_box(&q);
        }
        Sys::Raw => die("rss_child", "no raw variant"),
    }
    println!("RssAnon {kib}");
}
