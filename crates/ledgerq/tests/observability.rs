//! Metrics through the `metrics` facade and events through `tracing`, with a recorder
//! and a subscriber installed (each test binary has its own global recorder).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledgerq::{AckMode, Options, Queue};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

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

#[test]
fn counters_gauges_histograms_and_events_are_emitted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
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
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .ack_mode(AckMode::Manual)
            .max_deliveries(1)
            .flush_interval(Duration::from_millis(10)),
    )
    .unwrap();
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
    let mut found = None;
    // A snapshot drains the histograms: count their samples over every snapshot.
    let mut seen = [0usize; 3];
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(10));
        let snap = snapshotter.snapshot().into_vec();
        let get = |name: &str| {
            snap.iter()
                .find(|(k, _, _, _)| k.key().name() == name)
                .map(|(_, _, _, v)| v)
        };
        let samples = |name: &str| match get(name) {
            Some(DebugValue::Histogram(v)) => v.len(),
            _ => 0,
        };
        for (n, name) in seen.iter_mut().zip([
            "ledgerq_enqueue_seconds",
            "ledgerq_ack_seconds",
            "ledgerq_flush_seconds",
        ]) {
            *n += samples(name);
        }
        if let (Some(DebugValue::Counter(200)), Some(DebugValue::Gauge(p))) =
            (get("ledgerq_enqueued_total"), get("ledgerq_pending"))
        {
            let dead = match get("ledgerq_dead_lettered_total") {
                Some(DebugValue::Counter(n)) => *n,
                _ => 0,
            };
            if p.into_inner() == 49.0 && dead == 1 {
                found = Some((dead, seen[0], seen[1], seen[2]));
                break;
            }
        }
    }
    let (dead, enq, ack, flush) = found.expect("counters published");
    assert_eq!(dead, 1);
    // One operation in 64 per thread is timed: 200 enqueues and 150 acks give samples.
    assert!(enq >= 1 && ack >= 1 && flush >= 1, "{enq} {ack} {flush}");
    q.close().unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("queue opened"), "{log}");
    assert!(
        log.contains("message moved to the dead-letter queue") && log.contains("poison"),
        "{log}"
    );
}
