//! Metrics through the `metrics` facade and events through `tracing`, with a recorder
//! and a subscriber installed (each test binary has its own global recorder).
//!
//! Tests run in parallel and share the recorder: every metric is read for one queue (its
//! `queue` label), and histogram samples, which a snapshot drains, are kept in one
//! place for all tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ledgerq::observe::SAMPLE_EVERY;
use ledgerq::{AckMode, Compression, EnqueueOptions, Options, Queue};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// A `tracing` writer that keeps everything written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the recorder has seen, by (metric name, queue label).
struct Seen {
    snapshotter: Snapshotter,
    /// Every histogram sample so far.
    samples: HashMap<(String, String), Vec<f64>>,
    /// The value of each counter and gauge (see `refresh`).
    values: HashMap<(String, String), DebugValue>,
}

impl Seen {
    fn refresh(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let queue = key
                .labels()
                .find(|l| l.key() == "queue")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let k = (key.name().to_owned(), queue);
            match value {
                DebugValue::Histogram(v) => self
                    .samples
                    .entry(k)
                    .or_default()
                    .extend(v.into_iter().map(|x| x.into_inner())),
                // A snapshot drains counters and gauges too (to 0). Counters are
                // published as absolute values: the largest seen is the value. A gauge
                // keeps its last value other than 0 (or 0).
                DebugValue::Counter(n) => {
                    let e = self.values.entry(k).or_insert(DebugValue::Counter(0));
                    if let DebugValue::Counter(m) = e {
                        *m = (*m).max(n);
                    }
                }
                DebugValue::Gauge(v) => {
                    let e = self.values.entry(k).or_insert(DebugValue::Gauge(v));
                    if v.into_inner() != 0.0 {
                        *e = DebugValue::Gauge(v);
                    }
                }
            }
        }
    }
}

/// The recorder's observations, the recorder installed on first use.
fn seen() -> MutexGuard<'static, Seen> {
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    let mut g = SEEN
        .get_or_init(|| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            recorder.install().unwrap();
            Mutex::new(Seen {
                snapshotter,
                samples: HashMap::new(),
                values: HashMap::new(),
            })
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    g.refresh();
    g
}

fn label(q: &Queue) -> String {
    q.dir().display().to_string()
}

/// The samples of histogram `name` for queue `q` so far.
fn samples(name: &str, q: &Queue) -> Vec<f64> {
    seen()
        .samples
        .get(&(name.to_owned(), label(q)))
        .cloned()
        .unwrap_or_default()
}

/// The counter `name` of queue `q` (0 if not published yet).
fn counter(name: &str, q: &Queue) -> u64 {
    match seen().values.get(&(name.to_owned(), label(q))) {
        Some(DebugValue::Counter(n)) => *n,
        _ => 0,
    }
}

/// The gauge `name` of queue `q`, if published.
fn gauge(name: &str, q: &Queue) -> Option<f64> {
    match seen().values.get(&(name.to_owned(), label(q))) {
        Some(DebugValue::Gauge(v)) => Some(v.into_inner()),
        _ => None,
    }
}

/// Waits (up to 5 s) for the maintenance thread to publish what `done` expects.
fn wait_published(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Opens a queue publishing every 10 ms, the recorder installed first.
fn open(dir: &tempfile::TempDir, opts: Options) -> Queue {
    drop(seen());
    Queue::open_with(dir.path(), opts.flush_interval(Duration::from_millis(10))).unwrap()
}

const N: usize = SAMPLE_EVERY as usize;

#[test]
fn counters_gauges_histograms_and_events_are_emitted() {
    drop(seen());
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let q = open(
        &dir,
        Options::new().ack_mode(AckMode::Manual).max_deliveries(1),
    );
    for _ in 0..200 {
        q.enqueue(b"m").unwrap();
    }
    for _ in 0..150 {
        let m = q.dequeue().unwrap().unwrap();
        q.ack(m.id()).unwrap();
    }
    let m = q.dequeue().unwrap().unwrap();
    q.nack(m.id(), "poison").unwrap();
    // The maintenance thread publishes the counters and gauges every flush interval.
    assert!(
        wait_published(|| counter("ledgerq_enqueued_total", &q) == 200
            && gauge("ledgerq_pending", &q) == Some(49.0)
            && counter("ledgerq_dead_lettered_total", &q) == 1
            && !samples("ledgerq_flush_seconds", &q).is_empty()),
        "counters published"
    );
    // One operation in 64 per thread is timed: 200 enqueues and 150 acks give samples.
    let enq = samples("ledgerq_enqueue_seconds", &q).len();
    let ack = samples("ledgerq_ack_seconds", &q).len();
    assert!(enq >= 1 && ack >= 1, "{enq} {ack}");
    q.close().unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("queue opened"), "{log}");
    assert!(
        log.contains("message moved to the dead-letter queue") && log.contains("poison"),
        "{log}"
    );
}

/// Every enqueue path records in `ledgerq_enqueue_seconds`, one sample per sampled call
/// (64 consecutive calls on one thread hold exactly one sampled call), while
/// `ledgerq_enqueued_total` counts the messages.
#[test]
fn every_enqueue_path_is_timed_once_per_call() {
    let big = vec![b'a'; 4096];
    type Path = Box<dyn Fn(&Queue, usize)>;
    let paths: Vec<(&str, Options, usize, Path)> = vec![
        (
            "enqueue",
            Options::new(),
            1,
            Box::new(|q, _| {
                q.enqueue(b"m").unwrap();
            }),
        ),
        (
            "enqueue with compression",
            Options::new().compression(Compression::Lz4),
            1,
            Box::new(move |q, _| {
                q.enqueue(&big).unwrap();
            }),
        ),
        (
            "enqueue_with",
            Options::new(),
            1,
            Box::new(|q, i| {
                let o = EnqueueOptions::new()
                    .header("k", "v")
                    .dedup_key(i.to_string());
                q.enqueue_with(b"m", &o).unwrap();
            }),
        ),
        (
            "enqueue_batch",
            Options::new(),
            10,
            Box::new(|q, _| {
                q.enqueue_batch([b"m"; 10]).unwrap();
            }),
        ),
        (
            "enqueue_batch_with",
            Options::new(),
            10,
            Box::new(|q, _| {
                let items = (0..10).map(|_| (b"m", EnqueueOptions::new().header("k", "v")));
                q.enqueue_batch_with(items).unwrap();
            }),
        ),
    ];
    for (name, opts, per_call, call) in paths {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, opts);
        for i in 0..N {
            call(&q, i);
        }
        let n = samples("ledgerq_enqueue_seconds", &q).len();
        assert_eq!(n, 1, "{name}: samples of {N} calls");
        let total = (N * per_call) as u64;
        assert!(
            wait_published(|| counter("ledgerq_enqueued_total", &q) == total),
            "{name}: ledgerq_enqueued_total {} != {total}",
            counter("ledgerq_enqueued_total", &q)
        );
    }
}

/// A duplicate is an enqueue call too: it is timed.
#[test]
fn duplicate_enqueues_are_timed() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, Options::new());
    let o = EnqueueOptions::new().dedup_key("k");
    q.enqueue_with(b"m", &o).unwrap();
    let before = samples("ledgerq_enqueue_seconds", &q).len();
    for _ in 0..N {
        assert!(q.enqueue_with(b"m", &o).unwrap().is_duplicate());
    }
    assert_eq!(samples("ledgerq_enqueue_seconds", &q).len() - before, 1);
}

/// Every dequeue path records in `ledgerq_dequeue_seconds`, one sample per sampled
/// call (a stream item is a call).
#[test]
fn every_dequeue_path_is_timed_once_per_call() {
    type Path = Box<dyn Fn(&Queue)>;
    let paths: Vec<(&str, Path)> = vec![
        (
            "dequeue",
            Box::new(|q| {
                for _ in 0..N {
                    q.dequeue().unwrap().unwrap();
                }
            }),
        ),
        (
            "dequeue_timeout",
            Box::new(|q| {
                for _ in 0..N {
                    q.dequeue_timeout(Duration::from_secs(5)).unwrap().unwrap();
                }
            }),
        ),
        (
            "dequeue_batch",
            Box::new(|q| {
                for _ in 0..N {
                    assert_eq!(q.dequeue_batch(3).unwrap().len(), 3);
                }
            }),
        ),
        (
            "stream",
            Box::new(|q| {
                for m in q.stream().take(N) {
                    m.unwrap();
                }
            }),
        ),
        (
            "dequeue_async",
            Box::new(|q| {
                for _ in 0..N {
                    futures::executor::block_on(q.dequeue_async()).unwrap();
                }
            }),
        ),
        (
            "stream_async",
            Box::new(|q| {
                let got: Vec<_> = futures::executor::block_on(q.stream_async().take(N).collect());
                assert!(got.iter().all(Result::is_ok) && got.len() == N);
            }),
        ),
    ];
    for (name, consume) in paths {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, Options::new());
        q.enqueue_batch(vec![b"m"; 3 * N]).unwrap();
        let before = samples("ledgerq_dequeue_seconds", &q).len();
        consume(&q);
        let n = samples("ledgerq_dequeue_seconds", &q).len() - before;
        assert_eq!(n, 1, "{name}: samples of {N} calls");
    }
}

/// A waiting dequeue's sample is the attempt that returned the message, not the wait
/// for a producer: a call that waited 300 ms records far less.
#[test]
fn waiting_dequeues_time_the_attempt_not_the_wait() {
    const WAIT: Duration = Duration::from_millis(300);
    type Take = Box<dyn Fn(&Queue)>;
    let takes: Vec<(&str, Take)> = vec![
        (
            "dequeue_timeout",
            Box::new(|q| {
                q.dequeue_timeout(Duration::from_secs(10)).unwrap().unwrap();
            }),
        ),
        (
            "dequeue_async",
            Box::new(|q| {
                futures::executor::block_on(q.dequeue_async()).unwrap();
            }),
        ),
    ];
    for (name, take) in takes {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, Options::new());
        let count = || samples("ledgerq_dequeue_seconds", &q).len();
        q.enqueue_batch(vec![b"m"; 2 * N]).unwrap();
        // Find the sampled call, then take 63 more: the next call is sampled.
        let mut calls = 0;
        while count() == 0 {
            take(&q);
            calls += 1;
            assert!(calls <= N, "{name}: no sample in {N} calls");
        }
        for _ in 1..N {
            take(&q);
        }
        assert_eq!(count(), 1, "{name}");
        // Emptied by another thread (whose own calls are sampled on their own): the
        // next call here, the sampled one, waits for the producer below.
        std::thread::scope(|s| {
            s.spawn(|| while q.dequeue().unwrap().is_some() {});
        });
        let before = count();
        std::thread::scope(|s| {
            let q = &q;
            s.spawn(move || {
                std::thread::sleep(WAIT);
                q.enqueue(b"late").unwrap();
            });
            let start = Instant::now();
            take(q);
            assert!(start.elapsed() >= WAIT, "{name}: did not wait");
        });
        let all = samples("ledgerq_dequeue_seconds", &q);
        assert_eq!(all.len(), before + 1, "{name}");
        let sample = all[all.len() - 1];
        assert!(sample < 0.1, "{name}: sample {sample} s includes the wait");
    }
}

/// `nack` and `nack_with_delay` record in `ledgerq_nack_seconds`, a nack that moves the
/// message to the dead-letter queue included.
#[test]
fn nacks_are_timed_once_per_call() {
    type Nack = Box<dyn Fn(&Queue, u64)>;
    let paths: Vec<(&str, u32, Nack)> = vec![
        ("nack", 3, Box::new(|q, id| q.nack(id, "retry").unwrap())),
        (
            "nack_with_delay",
            3,
            Box::new(|q, id| {
                q.nack_with_delay(id, "later", Duration::from_secs(60))
                    .unwrap();
            }),
        ),
        (
            "nack to the dead-letter queue",
            1,
            Box::new(|q, id| q.nack(id, "poison").unwrap()),
        ),
    ];
    for (name, max_deliveries, nack) in paths {
        let dir = tempfile::tempdir().unwrap();
        let q = open(
            &dir,
            Options::new()
                .ack_mode(AckMode::Manual)
                .max_deliveries(max_deliveries),
        );
        q.enqueue_batch(vec![b"m"; N]).unwrap();
        let leased = q.dequeue_batch(N).unwrap();
        assert_eq!(leased.len(), N);
        for m in &leased {
            nack(&q, m.id());
        }
        let n = samples("ledgerq_nack_seconds", &q).len();
        assert_eq!(n, 1, "{name}: samples of {N} calls");
        // A nack of a message not in flight is an error, not a sample.
        for _ in 0..N {
            assert!(q.nack(leased[0].id(), "again").is_err());
        }
        assert_eq!(samples("ledgerq_nack_seconds", &q).len(), 1, "{name}");
    }
}

/// Every `Stats` counter has a metric: dedup evictions and expiries are published, and
/// the oldest pending message's age is a gauge.
#[test]
fn dedup_evictions_expiries_and_oldest_pending_age_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, Options::new().max_dedup_entries(10));
    for i in 0..30 {
        let o = EnqueueOptions::new().dedup_key(format!("key-{i}"));
        assert!(!q.enqueue_with(b"m", &o).unwrap().is_duplicate());
    }
    let short = EnqueueOptions::new().ttl(Duration::from_millis(1));
    q.enqueue_with(b"short-lived", &short).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // The 30 keyed messages go first, then the expired one is skipped.
    assert_eq!(q.dequeue_batch(31).unwrap().len(), 30);
    q.enqueue(b"waiting").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let stats = q.stats();
    assert_eq!((stats.dedup_evicted, stats.expired), (20, 1));
    assert!(
        wait_published(|| counter("ledgerq_dedup_evicted_total", &q) == 20
            && counter("ledgerq_expired_total", &q) == 1
            && gauge("ledgerq_oldest_pending_seconds", &q).is_some_and(|a| a >= 0.02)),
        "published: evicted {}, expired {}, oldest pending {:?}; {:?}",
        counter("ledgerq_dedup_evicted_total", &q),
        counter("ledgerq_expired_total", &q),
        gauge("ledgerq_oldest_pending_seconds", &q),
        q.stats()
    );
}

/// Each kind of call is sampled on its own: in the usual consumer loop, where a dequeue
/// and an ack alternate, both histograms get one sample in 64 calls of their kind.
#[test]
fn alternating_calls_are_each_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir, Options::new().ack_mode(AckMode::Manual));
    std::thread::scope(|s| {
        s.spawn(|| q.enqueue_batch(vec![b"m"; 2 * N]).unwrap());
    });
    for _ in 0..2 * N {
        let m = q.dequeue().unwrap().unwrap();
        q.ack(m.id()).unwrap();
    }
    let count = |name| samples(name, &q).len();
    assert_eq!(
        [
            count("ledgerq_dequeue_seconds"),
            count("ledgerq_ack_seconds")
        ],
        [2, 2]
    );
}
