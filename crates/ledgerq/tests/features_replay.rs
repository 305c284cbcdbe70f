//! Replay and peek: `seek_to_id` and `seek_to_time` move the consumption point back or
//! forward (messages before count as consumed, messages after are delivered again while
//! retained, a removed target is `Error::SeekOutOfRange`); `peek(n)` returns the next n
//! deliverable messages and changes nothing.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ledgerq::{AckMode, Error, Message, Options, Queue, Retention};

fn fill(q: &Queue, n: usize) {
    for i in 0..n {
        q.enqueue(format!("msg-{i}")).unwrap();
    }
}

fn text(m: &Message) -> String {
    String::from_utf8(m.payload().to_vec()).unwrap()
}

fn ids(q: &Queue) -> Vec<u64> {
    std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| m.id())
        .collect()
}

#[test]
fn seek_to_an_id_forward_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    fill(&q, 10);
    q.seek_to_id(5).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), text(&m)), (5, "msg-4".into()));
    assert_eq!(q.dequeue().unwrap().unwrap().id(), 6);
    // Forward: 1..=4 were skipped and count as consumed.
    assert_eq!(q.stats().pending, 4);
    for target in [5, 2, 8] {
        q.seek_to_id(target).unwrap();
        assert_eq!(q.dequeue().unwrap().unwrap().id(), target);
    }
    q.seek_to_id(1).unwrap();
    assert_eq!(ids(&q), (1..=10).collect::<Vec<_>>());
}

#[test]
fn seek_back_after_partial_consumption() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    fill(&q, 5);
    for _ in 0..3 {
        q.dequeue().unwrap().unwrap();
    }
    q.seek_to_id(1).unwrap();
    assert_eq!(q.stats().pending, 5);
    assert_eq!(ids(&q), [1, 2, 3, 4, 5]);
}

#[test]
fn seek_out_of_range_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    fill(&q, 5);
    assert!(matches!(
        q.seek_to_id(0),
        Err(Error::SeekOutOfRange { id: 0, next: 6, .. })
    ));
    assert!(matches!(
        q.seek_to_id(100),
        Err(Error::SeekOutOfRange {
            id: 100,
            next: 6,
            ..
        })
    ));
    // The error changed nothing.
    assert_eq!(q.dequeue().unwrap().unwrap().id(), 1);
    // Seeking to the next ID is allowed: nothing left to deliver until new messages.
    q.seek_to_id(6).unwrap();
    assert!(q.dequeue().unwrap().is_none());
    assert_eq!(q.enqueue("new").unwrap(), 6);
    assert_eq!(q.dequeue().unwrap().unwrap().id(), 6);
}

#[test]
fn seek_after_close_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    fill(&q, 3);
    q.close().unwrap();
    assert!(matches!(q.seek_to_id(1), Err(Error::Closed)));
    assert!(matches!(
        q.seek_to_time(SystemTime::now()),
        Err(Error::Closed)
    ));
    assert!(matches!(q.peek(1), Err(Error::Closed)));
}

#[test]
fn seek_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path()).unwrap();
        fill(&q, 10);
        q.close().unwrap();
    }
    let q = Queue::open(dir.path()).unwrap();
    q.seek_to_id(7).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), text(&m)), (7, "msg-6".into()));
}

#[test]
fn seek_then_dequeue_batch() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    fill(&q, 20);
    q.seek_to_id(10).unwrap();
    let got: Vec<u64> = q.dequeue_batch(5).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(got, [10, 11, 12, 13, 14]);
}

#[test]
fn seek_position_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path()).unwrap();
        fill(&q, 10);
        while q.dequeue().unwrap().is_some() {}
        q.seek_to_id(4).unwrap();
        q.close().unwrap();
    }
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(ids(&q), (4..=10).collect::<Vec<_>>());
}

#[test]
fn seek_to_time() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for i in 0..5 {
        q.enqueue(format!("t{i}")).unwrap();
        // Longer than the timestamp clock's resolution.
        thread::sleep(Duration::from_millis(20));
    }
    let stamps: Vec<SystemTime> = q.peek(5).unwrap().iter().map(|m| m.timestamp()).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    q.seek_to_time(stamps[2]).unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().id(), 3);
    // Between two messages: the later one.
    q.seek_to_time(stamps[1] + Duration::from_millis(1))
        .unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().id(), 3);
    q.seek_to_time(UNIX_EPOCH + Duration::from_secs(1)).unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().id(), 1);
    // After the newest message: the end.
    q.seek_to_time(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    assert!(q.dequeue().unwrap().is_none());
    q.seek_to_time(stamps[4]).unwrap();
    assert_eq!(ids(&q), [5]);
}

/// The original's scenario: the time is taken by the application just before the
/// enqueue, so the message must be at or after it.
#[test]
fn seek_to_a_time_taken_before_the_enqueue() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(SystemTime::now());
        q.enqueue(format!("t{i}")).unwrap();
        thread::sleep(Duration::from_millis(10));
    }
    for (i, t) in before.iter().enumerate() {
        q.seek_to_time(*t).unwrap();
        assert_eq!(q.dequeue().unwrap().unwrap().id(), i as u64 + 1);
    }
}

#[test]
fn seek_in_manual_mode_drops_leases() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().ack_mode(AckMode::Manual)).unwrap();
    fill(&q, 5);
    let a = q.dequeue().unwrap().unwrap();
    let b = q.dequeue().unwrap().unwrap();
    q.ack(a.id()).unwrap();
    q.seek_to_id(1).unwrap();
    assert_eq!(q.stats().in_flight, 0);
    assert!(matches!(q.ack(b.id()), Err(Error::NotInFlight { .. })));
    let all: Vec<Message> = std::iter::from_fn(|| q.dequeue().unwrap()).collect();
    assert_eq!(
        all.iter().map(|m| m.id()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for m in &all {
        q.ack(m.id()).unwrap();
    }
    assert_eq!(q.stats().pending, 0);
}

/// A target whose segment was removed (no retention: consumed segments go) is out of
/// range, for an ID and for a time.
#[test]
fn seek_into_removed_segments_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().segment_size(64 << 10).auto_compact(false),
    )
    .unwrap();
    let t0 = SystemTime::now();
    for _ in 0..1000 {
        q.enqueue([1u8; 200]).unwrap();
    }
    while q.dequeue().unwrap().is_some() {}
    assert!(q.compact().unwrap().segments_removed > 0);
    match q.seek_to_id(1) {
        Err(Error::SeekOutOfRange { id: 1, first, next }) => {
            assert!(first > 1);
            assert_eq!(next, 1001);
            // The first retained ID is a valid target.
            q.seek_to_id(first).unwrap();
            assert_eq!(q.dequeue().unwrap().unwrap().id(), first);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        q.seek_to_time(t0 - Duration::from_secs(1)),
        Err(Error::SeekOutOfRange { .. })
    ));
}

/// With a retention policy, consumed segments stay and can be replayed.
#[test]
fn retained_segments_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .segment_size(64 << 10)
            .compaction_interval(Duration::from_millis(10))
            .retention(Retention {
                max_segments: Some(1000),
                ..Retention::default()
            }),
    )
    .unwrap();
    let t0 = SystemTime::now();
    for i in 0..1000u32 {
        q.enqueue(i.to_le_bytes().repeat(50)).unwrap();
    }
    let segments = q.stats().segments;
    assert!(segments > 1);
    while q.dequeue().unwrap().is_some() {}
    assert_eq!(q.compact().unwrap().segments_removed, 0);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(q.stats().segments, segments);
    q.seek_to_time(t0 - Duration::from_secs(1)).unwrap();
    assert_eq!(ids(&q), (1..=1000).collect::<Vec<_>>());
    q.seek_to_id(500).unwrap();
    assert_eq!(ids(&q), (500..=1000).collect::<Vec<_>>());
}

#[test]
fn peek_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    assert!(q.peek(3).unwrap().is_empty());
    fill(&q, 5);
    let stats = q.stats();
    let p: Vec<String> = q.peek(3).unwrap().iter().map(text).collect();
    assert_eq!(p, ["msg-0", "msg-1", "msg-2"]);
    assert_eq!(q.peek(3).unwrap().len(), 3);
    assert!(q.peek(0).unwrap().is_empty());
    assert_eq!(q.peek(100).unwrap().len(), 5);
    assert_eq!(q.stats().pending, stats.pending);
    assert_eq!(q.dequeue().unwrap().unwrap().id(), 1);
    let p: Vec<u64> = q.peek(10).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(p, [2, 3, 4, 5]);
}

#[test]
fn peek_in_manual_mode_takes_no_lease_and_skips_leased() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().ack_mode(AckMode::Manual)).unwrap();
    fill(&q, 4);
    let p = q.peek(2).unwrap();
    assert_eq!(p.iter().map(|m| m.id()).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(p[0].delivery_count(), 1);
    assert_eq!(q.stats().in_flight, 0);
    assert!(matches!(q.ack(1), Err(Error::NotInFlight { .. })));
    let a = q.dequeue().unwrap().unwrap();
    // Leased: not shown.
    let p: Vec<u64> = q.peek(10).unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(p, [2, 3, 4]);
    // Nacked: shown first, with the count its next delivery will have.
    q.nack(a.id(), "again").unwrap();
    let p = q.peek(10).unwrap();
    assert_eq!(p.iter().map(|m| m.id()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(p[0].delivery_count(), 2);
    let again = q.dequeue().unwrap().unwrap();
    assert_eq!((again.id(), again.delivery_count()), (1, 2));
}

/// A seek to the start while a consumer dequeues, then `after` (reopen, or compact)
/// and a drain: every message from the seek point on is still to be delivered, except
/// those the consumer took in dequeues that returned after the seek began (a dequeue that claimed a message
/// before the seek must not move the consumed point back past it).
fn seek_under_a_running_consumer(after: impl Fn(Queue, &std::path::Path) -> Queue) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    const N: u64 = 10_000;
    for round in 0..25 {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            Options::new().auto_compact(false).segment_size(64 << 10),
        )
        .unwrap();
        for _ in 0..N / 500 {
            q.enqueue_batch((0..500).map(|i| format!("m{i}"))).unwrap();
        }
        let (stop, seeking, taken_since) = (
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicU64::new(0),
        );
        thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(SeqCst) {
                    // Counted if the dequeue returned after the seek began (it
                    // may have taken a message from after the seek).
                    if q.dequeue().unwrap().is_some() && seeking.load(SeqCst) {
                        taken_since.fetch_add(1, SeqCst);
                    }
                }
            });
            thread::sleep(Duration::from_millis(2));
            seeking.store(true, SeqCst);
            q.seek_to_id(1).unwrap();
            stop.store(true, SeqCst);
        });
        let taken = taken_since.load(SeqCst);
        let q = after(q, dir.path());
        let mut left = 0u64;
        while let Some(m) = q.dequeue().unwrap() {
            assert!(m.id() >= 1);
            left += 1;
        }
        assert!(
            left + taken >= N,
            "round {round}: {taken} taken after the seek began, {left} left after it"
        );
    }
}

#[test]
fn a_seek_under_a_running_consumer_survives_a_reopen() {
    seek_under_a_running_consumer(|q, dir| {
        q.close().unwrap();
        drop(q);
        Queue::open_with(
            dir,
            Options::new().auto_compact(false).segment_size(64 << 10),
        )
        .unwrap()
    });
}

#[test]
fn a_seek_under_a_running_consumer_survives_a_compaction() {
    seek_under_a_running_consumer(|q, _| {
        q.compact().unwrap();
        q
    });
}
