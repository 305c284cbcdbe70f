//! Metrics and events (features `metrics` and `tracing`): a recorder of the `metrics`
//! facade and a `tracing` subscriber are installed, some traffic runs, and the
//! counters, gauges and a latency summary are printed.
//!
//! The recorder here is a minimal one that keeps everything in memory; a program would
//! install an exporter (Prometheus, StatsD, ...) instead. The metric names are listed
//! in `ledgerq::observe`. Latency histograms hold one call in 64 of each kind per
//! thread.
//!
//! Run with `cargo run -p ledgerq --example metrics`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledgerq::{AckMode, EnqueueOptions, Options, Queue};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

/// The samples of one histogram.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A recorder keeping every metric in memory, by name (and queue, for the dead-letter
/// queue's own metrics).
struct Memory {
    /// The queue directory: metrics labelled with it are the queue's, others are named
    /// with their directory's path below it (`dead-letter`).
    root: PathBuf,
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

impl Memory {
    fn name(&self, key: &Key) -> String {
        let queue = key.labels().find(|l| l.key() == "queue");
        match queue.map(|l| PathBuf::from(l.value())) {
            Some(dir) if dir != self.root => {
                let rel = dir.strip_prefix(&self.root).unwrap_or(&dir);
                format!("{}{{{}}}", key.name(), rel.display())
            }
            _ => key.name().to_owned(),
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl metrics::Recorder for Memory {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut m = self.counters.lock().unwrap();
        Counter::from_arc(m.entry(self.name(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut m = self.gauges.lock().unwrap();
        Gauge::from_arc(m.entry(self.name(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut m = self.histograms.lock().unwrap();
        Histogram::from_arc(m.entry(self.name(key)).or_default().clone())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let recorder = Arc::new(Memory {
        root: dir.path().to_path_buf(),
        counters: Mutex::default(),
        gauges: Mutex::default(),
        histograms: Mutex::default(),
    });
    metrics::set_global_recorder(recorder.clone()).map_err(|_| "a recorder is installed")?;
    // Events (queue opened, dead letters, compaction) on standard output.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_target(false)
        .init();

    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .ack_mode(AckMode::Manual)
            .max_deliveries(1)
            .max_dedup_entries(1_000)
            // Counters and gauges are published at each flush of the consumer state.
            .flush_interval(Duration::from_millis(20)),
    )?;

    // Traffic: single enqueues, batches, keyed enqueues (some keys forgotten early:
    // the dedup table holds 1,000), then everything consumed, 3 messages rejected.
    for i in 0..10_000u32 {
        q.enqueue(i.to_le_bytes())?;
    }
    for _ in 0..100 {
        q.enqueue_batch((0..100u32).map(|i| i.to_le_bytes()))?;
    }
    for i in 0..2_000 {
        q.enqueue_with(
            b"order",
            &EnqueueOptions::new().dedup_key(format!("order-{i}")),
        )?;
    }
    let mut rejected = 0;
    loop {
        let batch = q.dequeue_batch(64)?;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            if rejected < 3 && m.id() % 1_000 == 0 {
                q.nack(m.id(), "could not parse")?;
                rejected += 1;
            } else {
                q.ack(m.id())?;
            }
        }
    }
    // Some single dequeues too (messages from a second producer burst).
    q.enqueue_batch((0..1_000u32).map(|i| i.to_le_bytes()))?;
    while let Some(m) = q.dequeue()? {
        q.ack(m.id())?;
    }
    q.sync()?;

    // The maintenance thread publishes the counters and gauges: wait for the last
    // state to be published.
    let expected = q.stats();
    let deadline = Instant::now() + Duration::from_secs(2);
    while recorder.counter("ledgerq_enqueued_total") != expected.total_enqueued
        || recorder.counter("ledgerq_dead_lettered_total") != expected.dead_lettered
    {
        assert!(Instant::now() < deadline, "metrics not published");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));

    println!("counters:");
    for (name, c) in recorder.counters.lock().unwrap().iter() {
        println!("  {name:44} {}", c.load(Ordering::Relaxed));
    }
    println!("gauges:");
    for (name, g) in recorder.gauges.lock().unwrap().iter() {
        println!("  {name:44} {}", f64::from_bits(g.load(Ordering::Relaxed)));
    }
    println!("latency (sampled calls):");
    for (name, h) in recorder.histograms.lock().unwrap().iter() {
        let mut v = h.0.lock().unwrap().clone();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] * 1e6;
        println!(
            "  {name:44} {:5} samples  p50 {:8.1} µs  p99 {:8.1} µs  max {:8.1} µs",
            v.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    q.close()?;
    Ok(())
}
