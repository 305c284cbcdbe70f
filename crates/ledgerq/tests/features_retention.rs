//! Retention and compaction: only segments whose messages are all consumed are removed
//! (never one holding a pending, leased or dead-letter-bound message); the retention
//! limits; automatic compaction; the disk budget with `Reject` and `DropOldest`.
//! Regression: the original's compaction deleted unread segments.

use std::thread;
use std::time::{Duration, Instant};

use ledgerq::{AckMode, Error, Options, OverflowPolicy, Queue, Retention};

const SEG: u64 = 64 << 10;

fn manual_compaction() -> Options {
    Options::new().segment_size(SEG).auto_compact(false)
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(200, (i % 251) as u8);
    p
}

fn index(p: &[u8]) -> u64 {
    u64::from_le_bytes(p[..8].try_into().unwrap())
}

fn fill(q: &Queue, from: u64, n: u64) {
    for i in from..from + n {
        q.enqueue(payload(i)).unwrap();
    }
}

/// Polls `cond` for up to 10 s (for the maintenance thread's work).
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Regression: the original's compaction removed segments whose messages were not read,
/// leaving the reader stuck.
#[test]
fn compaction_never_deletes_unread_messages() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual_compaction()).unwrap();
    fill(&q, 0, 3000);
    let segments = q.stats().segments;
    assert!(segments >= 8, "{segments}");
    // Nothing consumed: nothing removable.
    assert_eq!(q.compact().unwrap().segments_removed, 0);
    for i in 0..1000 {
        assert_eq!(index(q.dequeue().unwrap().unwrap().payload()), i);
    }
    let r = q.compact().unwrap();
    assert!(r.segments_removed > 0);
    assert!(r.segments_removed < segments);
    assert!(r.bytes_freed >= r.segments_removed * SEG);
    assert_eq!(q.stats().segments, segments - r.segments_removed);
    for i in 1000..3000 {
        assert_eq!(index(q.dequeue().unwrap().unwrap().payload()), i);
    }
    assert_eq!(
        q.compact().unwrap().segments_removed,
        segments - r.segments_removed - 1
    );
    assert_eq!(q.stats().segments, 1);
}

#[test]
fn compaction_removes_nothing_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual_compaction()).unwrap();
    q.close().unwrap();
    assert!(matches!(q.compact(), Err(Error::Closed)));
}

#[test]
fn a_leased_message_holds_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual_compaction().ack_mode(AckMode::Manual)).unwrap();
    fill(&q, 0, 2000);
    let first = q.dequeue().unwrap().unwrap();
    while let Some(m) = q.dequeue().unwrap() {
        q.ack(m.id()).unwrap();
    }
    assert_eq!(q.compact().unwrap().segments_removed, 0);
    q.ack(first.id()).unwrap();
    assert!(q.compact().unwrap().segments_removed > 0);
    assert_eq!(q.stats().segments, 1);
}

#[test]
fn nacked_and_dead_letter_bound_messages_hold_their_segment() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction()
            .ack_mode(AckMode::Manual)
            .max_deliveries(2)
            .redelivery_backoff(Duration::from_secs(3600), Duration::from_secs(3600)),
    )
    .unwrap();
    fill(&q, 0, 2000);
    let first = q.dequeue().unwrap().unwrap();
    // Failed once, waiting out a long backoff before its last delivery.
    q.nack(first.id(), "later").unwrap();
    while let Some(m) = q.dequeue().unwrap() {
        q.ack(m.id()).unwrap();
    }
    assert_eq!(q.compact().unwrap().segments_removed, 0);
    assert_eq!(q.stats().pending, 1);
    q.close().unwrap();
    drop(q);
    // After a reopen the message is still there (its delivery count too).
    let q = Queue::open_with(
        dir.path(),
        manual_compaction()
            .ack_mode(AckMode::Manual)
            .max_deliveries(2),
    )
    .unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), m.delivery_count()), (first.id(), 2));
    q.nack(m.id(), "dead").unwrap();
    assert!(q.compact().unwrap().segments_removed > 0);
    let d = q.dead_letters().unwrap().dequeue().unwrap().unwrap();
    assert_eq!(index(d.payload()), 0);
}

#[test]
fn retention_max_segments_keeps_consumed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction().retention(Retention {
            max_segments: Some(3),
            ..Retention::default()
        }),
    )
    .unwrap();
    fill(&q, 0, 3000);
    assert!(q.stats().segments > 3);
    // Pending messages are never removed, whatever the limit.
    assert_eq!(q.compact().unwrap().segments_removed, 0);
    while q.dequeue().unwrap().is_some() {}
    let before = q.stats().segments;
    let r = q.compact().unwrap();
    assert_eq!(r.segments_removed, before - 3);
    assert_eq!(q.stats().segments, 3);
    // What is kept can be replayed.
    let first = {
        let e = q.seek_to_id(1).unwrap_err();
        match e {
            Error::SeekOutOfRange { first, .. } => first,
            other => panic!("{other:?}"),
        }
    };
    q.seek_to_id(first).unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().id(), first);
}

#[test]
fn retention_min_segments_wins_over_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction().retention(Retention {
            max_age: Some(Duration::from_nanos(1)),
            min_segments: 2,
            ..Retention::default()
        }),
    )
    .unwrap();
    fill(&q, 0, 3000);
    while q.dequeue().unwrap().is_some() {}
    thread::sleep(Duration::from_millis(10));
    assert!(q.compact().unwrap().segments_removed > 0);
    assert_eq!(q.stats().segments, 2);
}

#[test]
fn retention_max_age_keeps_young_segments() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction().retention(Retention {
            max_age: Some(Duration::from_millis(100)),
            ..Retention::default()
        }),
    )
    .unwrap();
    fill(&q, 0, 2000);
    while q.dequeue().unwrap().is_some() {}
    let segments = q.stats().segments;
    // Young (at most 100 ms old) unless this thread was descheduled that long: only
    // check that the old ones go after waiting.
    thread::sleep(Duration::from_millis(300));
    let r = q.compact().unwrap();
    assert_eq!(r.segments_removed, segments - 1);
}

#[test]
fn retention_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction().retention(Retention {
            max_bytes: Some(4 * SEG),
            ..Retention::default()
        }),
    )
    .unwrap();
    fill(&q, 0, 3000);
    while q.dequeue().unwrap().is_some() {}
    assert!(q.compact().unwrap().segments_removed > 0);
    assert!(q.stats().segments * SEG <= 4 * SEG);
    assert!(q.stats().segments >= 3);
}

#[test]
fn retention_without_limits_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction().retention(Retention::default()),
    )
    .unwrap();
    fill(&q, 0, 2000);
    while q.dequeue().unwrap().is_some() {}
    let segments = q.stats().segments;
    assert_eq!(q.compact().unwrap().segments_removed, 0);
    assert_eq!(q.stats().segments, segments);
    q.seek_to_id(1).unwrap();
    assert_eq!(index(q.dequeue().unwrap().unwrap().payload()), 0);
}

#[test]
fn automatic_compaction_runs_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .segment_size(SEG)
            .compaction_interval(Duration::from_millis(20)),
    )
    .unwrap();
    fill(&q, 0, 2000);
    assert!(q.stats().segments > 3);
    while q.dequeue().unwrap().is_some() {}
    assert!(eventually(|| q.stats().segments == 1), "{:?}", q.stats());
}

#[test]
fn auto_compact_off_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction().compaction_interval(Duration::from_millis(10)),
    )
    .unwrap();
    fill(&q, 0, 2000);
    while q.dequeue().unwrap().is_some() {}
    let segments = q.stats().segments;
    thread::sleep(Duration::from_millis(200));
    assert_eq!(q.stats().segments, segments);
}

#[test]
fn disk_budget_reject_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual_compaction().max_disk_bytes(4 * SEG)).unwrap();
    let mut accepted = 0u64;
    let full = loop {
        match q.enqueue(payload(accepted)) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100_000, "the budget is never reached");
    };
    assert!(
        matches!(full, Error::QueueFull { max_disk_bytes } if max_disk_bytes == 4 * SEG),
        "{full:?}"
    );
    assert!(accepted > 0);
    // Still full: nothing consumed.
    assert!(matches!(q.enqueue(b"x"), Err(Error::QueueFull { .. })));
    assert_eq!(q.stats().dropped, 0);
    // Everything accepted is there, in order.
    for i in 0..accepted / 2 {
        assert_eq!(index(q.dequeue().unwrap().unwrap().payload()), i);
    }
    // Consuming makes room (the enqueue compacts what is consumed).
    q.enqueue(payload(accepted)).unwrap();
    for i in accepted / 2..=accepted {
        assert_eq!(index(q.dequeue().unwrap().unwrap().payload()), i);
    }
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn disk_budget_drop_oldest_drops_whole_oldest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction()
            .max_disk_bytes(4 * SEG)
            .overflow_policy(OverflowPolicy::DropOldest),
    )
    .unwrap();
    let n = 5000u64;
    fill(&q, 0, n);
    let s = q.stats();
    assert!(s.dropped > 0, "{s:?}");
    assert!(s.segments <= 4);
    let got: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| index(m.payload()))
        .collect();
    // The newest messages survive, in order; what is missing is exactly what was dropped.
    assert_eq!(got.len() as u64 + s.dropped, n);
    assert_eq!(*got.last().unwrap(), n - 1);
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn drop_oldest_keeps_consumption_consistent_in_manual_mode() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction()
            .ack_mode(AckMode::Manual)
            .max_disk_bytes(4 * SEG)
            .overflow_policy(OverflowPolicy::DropOldest),
    )
    .unwrap();
    let n = 5000u64;
    let mut got = Vec::new();
    for i in 0..n {
        q.enqueue(payload(i)).unwrap();
        if i % 3 == 0 {
            if let Some(m) = q.dequeue().unwrap() {
                q.ack(m.id()).unwrap();
                got.push(index(m.payload()));
            }
        }
    }
    while let Some(m) = q.dequeue().unwrap() {
        q.ack(m.id()).unwrap();
        got.push(index(m.payload()));
    }
    let dropped = q.stats().dropped;
    assert!(dropped > 0);
    assert_eq!(got.len() as u64 + dropped, n);
    let mut sorted = got.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "a message was delivered twice");
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

/// `DropOldest` counts only the pending messages it drops: not those consumed ahead of
/// the watermark (a `High` message delivered before older `Low` ones, a message
/// acknowledged or leased before an older one is settled). Every message is delivered
/// or counted dropped, never both, and `pending` stays exact.
#[test]
fn drop_oldest_counts_only_pending_messages_in_every_mode() {
    use ledgerq::{EnqueueOptions, Priority};
    for (priorities, mode) in [
        (false, AckMode::Auto),
        (false, AckMode::Manual),
        (true, AckMode::Auto),
        (true, AckMode::Manual),
    ] {
        let case = format!("priorities {priorities}, {mode:?}");
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            manual_compaction()
                .priorities(priorities)
                .ack_mode(mode)
                .max_disk_bytes(4 * SEG)
                .overflow_policy(OverflowPolicy::DropOldest),
        )
        .unwrap();
        let enqueue = |i: u64| {
            let p = if i % 2 == 0 {
                Priority::Low
            } else {
                Priority::High
            };
            q.enqueue_with(payload(i), &EnqueueOptions::new().priority(p))
                .unwrap();
        };
        // Two segments' worth, then consume some of it out of ID order.
        let first = 500u64;
        (0..first).for_each(enqueue);
        let mut delivered = Vec::new();
        let mut leased = None;
        for k in 0..200 {
            let m = q.dequeue().unwrap().unwrap();
            delivered.push(index(m.payload()));
            if mode == AckMode::Manual {
                // The first stays leased: it holds the watermark while later ones are
                // acknowledged.
                if k == 0 {
                    leased = Some(m.id());
                } else {
                    q.ack(m.id()).unwrap();
                }
            }
        }
        assert!(leased.is_some() == (mode == AckMode::Manual));
        if !priorities && mode == AckMode::Auto {
            assert_eq!(q.stats().pending, first - 200, "{case}");
        }
        // Enough more to drop the oldest segments several times.
        let total = 3000u64;
        (first..total).for_each(enqueue);
        let s = q.stats();
        assert!(s.dropped > 0, "{case}: {s:?}");
        let mut drained = 0;
        while let Some(m) = q.dequeue().unwrap() {
            if mode == AckMode::Manual {
                q.ack(m.id()).unwrap();
            }
            delivered.push(index(m.payload()));
            drained += 1;
        }
        assert_eq!(s.pending, drained, "{case}: {s:?}");
        let mut unique = delivered.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), delivered.len(), "{case}: delivered twice");
        assert_eq!(delivered.len() as u64 + s.dropped, total, "{case}: {s:?}");
        assert_eq!(q.stats().pending, 0, "{case}");
    }
}

/// An enqueue that finds the budget used up makes room (compaction, then `DropOldest`)
/// while consumers run and the maintenance thread compacts: it must not fail with
/// `QueueFull` because another pass made the room first.
#[test]
fn drop_oldest_never_refuses_an_enqueue_beside_running_consumers() {
    for mode in [AckMode::Auto, AckMode::Manual] {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .segment_size(SEG)
                .ack_mode(mode)
                .compaction_interval(Duration::from_millis(1))
                .max_disk_bytes(4 * SEG)
                .overflow_policy(OverflowPolicy::DropOldest),
        )
        .unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for m in q.dequeue_batch(3).unwrap() {
                            if mode == AckMode::Manual {
                                // A drop of the message's segment ends its lease.
                                match q.ack(m.id()) {
                                    Ok(()) | Err(Error::NotInFlight { .. }) => {}
                                    Err(e) => panic!("ack {}: {e}", m.id()),
                                }
                            }
                        }
                        thread::yield_now();
                    }
                });
            }
            let start = Instant::now();
            let big = vec![7u8; 1000];
            let mut i = 0u64;
            while start.elapsed() < Duration::from_millis(1500) {
                if let Err(e) = q.enqueue(&big) {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("{mode:?}: enqueue {i} failed: {e}");
                }
                i += 1;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// Producers racing for the room `DropOldest` makes: a retry may find the new segment
/// filled by the others, and the enqueue goes on dropping rather than fail.
#[test]
fn drop_oldest_never_refuses_racing_producers() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction()
            .max_disk_bytes(4 * SEG)
            .overflow_policy(OverflowPolicy::DropOldest),
    )
    .unwrap();
    let (producers, per) = (4u64, 10_000u64);
    thread::scope(|s| {
        for _ in 0..producers {
            s.spawn(|| {
                for i in 0..per {
                    if let Err(e) = q.enqueue([1u8; 900]) {
                        panic!("enqueue {i} failed: {e}");
                    }
                }
            });
        }
    });
    let s = q.stats();
    assert_eq!(s.total_enqueued, producers * per);
    assert_eq!(s.dropped + s.pending, producers * per, "{s:?}");
    assert!(s.segments <= 4, "{s:?}");
    let drained = std::iter::from_fn(|| q.dequeue().unwrap()).count() as u64;
    assert_eq!(drained, s.pending);
}

/// A `max_age` past what u64 nanoseconds hold (about 584 years) keeps every segment: it
/// is not wrapped to a short age.
#[test]
fn retention_max_age_beyond_u64_nanoseconds_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual_compaction().retention(Retention {
            // 2^64 ns + 0.29 s: wrapped to u64 nanoseconds it would be 0.29 s.
            max_age: Some(Duration::from_secs(18_446_744_074)),
            ..Retention::default()
        }),
    )
    .unwrap();
    fill(&q, 0, 2000);
    while q.dequeue().unwrap().is_some() {}
    assert!(q.stats().segments > 2);
    thread::sleep(Duration::from_millis(400));
    assert_eq!(q.compact().unwrap().segments_removed, 0);
}
