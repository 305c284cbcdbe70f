//! Metrics (feature `metrics`, through the `metrics` facade) and events (feature
//! `tracing`).
//!
//! Nothing here costs the hot path a shared write: counters are the queue's own
//! atomics, published as absolute values by the maintenance thread; latency histograms
//! time one call in [`SAMPLE_EVERY`] of each kind (enqueue, dequeue, ack, nack) per
//! thread (a thread-local counter per kind decides, so that alternating calls, such
//! as a dequeue then an ack, are each sampled), so an uninstrumented program pays a
//! thread-local increment per operation.
//!
//! Metric names (label `queue` = the queue directory):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `ledgerq_enqueued_total` | counter | IDs assigned |
//! | `ledgerq_expired_total` | counter | messages expired before delivery |
//! | `ledgerq_dead_lettered_total` | counter | messages moved to the dead-letter queue |
//! | `ledgerq_dropped_total` | counter | pending messages dropped by `DropOldest` |
//! | `ledgerq_dead_letter_failures_total` | counter | failed moves to the dead-letter queue |
//! | `ledgerq_dedup_evicted_total` | counter | dedup keys forgotten early because the table was full |
//! | `ledgerq_pending` | gauge | messages waiting |
//! | `ledgerq_in_flight` | gauge | leased messages |
//! | `ledgerq_segments`, `ledgerq_disk_bytes` | gauge | segment files and their bytes |
//! | `ledgerq_dedup_tracked` | gauge | dedup keys tracked |
//! | `ledgerq_oldest_pending_seconds` | gauge | age of the oldest pending message (0 if none) |
//! | `ledgerq_enqueue_seconds`, `ledgerq_dequeue_seconds` | histogram | sampled latency |
//! | `ledgerq_ack_seconds`, `ledgerq_nack_seconds` | histogram | sampled latency |
//! | `ledgerq_flush_seconds` | histogram | latency of every flush of the consumer state and of `sync` |
//!
//! Counters count messages; latency histograms count calls. A call is one operation of
//! its kind for the sampling and gives at most one sample, whatever number of messages
//! it moves:
//!
//! - `ledgerq_enqueue_seconds`: every successful call of `enqueue` (compressed or not),
//!   `enqueue_with` (a duplicate included), `enqueue_batch` and `enqueue_batch_with`.
//!   A batch of 100 is one call, and adds 100 to `ledgerq_enqueued_total`.
//! - `ledgerq_dequeue_seconds`: every call of `dequeue` and `dequeue_batch` (also when
//!   it finds nothing). For the waiting paths (`dequeue_timeout`, each item of
//!   `stream`, `dequeue_async`, each item of `stream_async`) the sample is the attempt
//!   that returned the message or the error, not the wait for a message to arrive
//!   (that measures the producers, not the queue); a wait that ends with nothing
//!   (timeout, close) gives no sample.
//! - `ledgerq_ack_seconds`, `ledgerq_nack_seconds`: every successful `ack`, and every
//!   successful `nack` or `nack_with_delay` (a move to the dead-letter queue included).
//! - Failed calls (a typed error before anything is done) give no sample, except a
//!   dequeue's read error.

#[cfg(feature = "metrics")]
use std::cell::Cell;
use std::time::Instant;

use crate::queue::Inner;

/// One call in this many, of each kind and on each thread, is timed for the latency
/// histograms.
pub const SAMPLE_EVERY: u32 = 64;

/// Which operation a latency sample is for.
#[derive(Clone, Copy)]
pub(crate) enum Op {
    Enqueue,
    Dequeue,
    Ack,
    Nack,
    Flush,
}

#[cfg(feature = "metrics")]
impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Enqueue => "ledgerq_enqueue_seconds",
            Op::Dequeue => "ledgerq_dequeue_seconds",
            Op::Ack => "ledgerq_ack_seconds",
            Op::Nack => "ledgerq_nack_seconds",
            Op::Flush => "ledgerq_flush_seconds",
        }
    }
}

#[cfg(feature = "metrics")]
thread_local! {
    /// Calls so far on this thread, by [`Op`] (flushes are all timed).
    static TICKS: [Cell<u32>; 5] = const { [const { Cell::new(0) }; 5] };
}

/// Starts a latency sample if this call is one of the sampled ones of its kind.
#[inline]
pub(crate) fn sample(op: Op) -> Option<Instant> {
    #[cfg(feature = "metrics")]
    {
        let hit = TICKS.with(|t| {
            let t = &t[op as usize];
            let n = t.get().wrapping_add(1);
            t.set(n);
            n % SAMPLE_EVERY == 0
        });
        if hit {
            return Some(Instant::now());
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = op;
    None
}

/// Restarts a sample started by [`sample`] (nothing if this operation is not sampled):
/// a waiting dequeue times only the attempt that returns.
#[inline]
pub(crate) fn restart(start: Option<Instant>) -> Option<Instant> {
    start.map(|_| Instant::now())
}

/// Records a latency sample started by [`sample`] (or always, for flushes).
#[inline]
pub(crate) fn record(q: &Inner, op: Op, start: Option<Instant>) {
    #[cfg(feature = "metrics")]
    if let Some(s) = start {
        metrics::histogram!(op.name(), "queue" => q.label()).record(s.elapsed().as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (q, op, start);
}

impl Inner {
    #[cfg(feature = "metrics")]
    fn label(&self) -> metrics::SharedString {
        self.metrics_label.clone()
    }
}

/// Publishes the counters and gauges (called by the maintenance thread).
pub(crate) fn publish(q: &Inner) {
    #[cfg(feature = "metrics")]
    {
        let s = q.stats();
        let l = q.label();
        metrics::counter!("ledgerq_enqueued_total", "queue" => l.clone())
            .absolute(s.total_enqueued);
        metrics::counter!("ledgerq_expired_total", "queue" => l.clone()).absolute(s.expired);
        metrics::counter!("ledgerq_dead_lettered_total", "queue" => l.clone())
            .absolute(s.dead_lettered);
        metrics::counter!("ledgerq_dropped_total", "queue" => l.clone()).absolute(s.dropped);
        metrics::counter!("ledgerq_dead_letter_failures_total", "queue" => l.clone())
            .absolute(s.dead_letter_failures);
        metrics::gauge!("ledgerq_pending", "queue" => l.clone()).set(s.pending as f64);
        metrics::gauge!("ledgerq_in_flight", "queue" => l.clone()).set(s.in_flight as f64);
        metrics::gauge!("ledgerq_segments", "queue" => l.clone()).set(s.segments as f64);
        metrics::gauge!("ledgerq_disk_bytes", "queue" => l.clone()).set(s.disk_bytes as f64);
        metrics::counter!("ledgerq_dedup_evicted_total", "queue" => l.clone())
            .absolute(s.dedup_evicted);
        metrics::gauge!("ledgerq_dedup_tracked", "queue" => l.clone()).set(s.dedup_tracked as f64);
        metrics::gauge!("ledgerq_oldest_pending_seconds", "queue" => l)
            .set(s.oldest_pending_age.map_or(0.0, |a| a.as_secs_f64()));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = q;
}

/// Emits a `tracing` event at the given level (nothing without the `tracing` feature).
macro_rules! event {
    ($lvl:ident, $($arg:tt)*) => {{
        #[cfg(feature = "tracing")]
        tracing::$lvl!(target: "ledgerq", $($arg)*);
    }};
}
pub(crate) use event;
