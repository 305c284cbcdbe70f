//! The feature counters of `Queue::stats`: expired, dead_lettered, dedup_tracked,
//! dedup_evicted, dropped, oldest_pending_age, disk_bytes.

use std::thread;
use std::time::Duration;

use ledgerq::{AckMode, EnqueueOptions, Options, OverflowPolicy, Queue};

#[test]
fn a_new_queue_has_zero_counters() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let s = q.stats();
    assert_eq!(
        (
            s.expired,
            s.dead_lettered,
            s.dedup_tracked,
            s.dedup_evicted,
            s.dropped
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(s.oldest_pending_age, None);
    assert!(s.disk_bytes > 0);
}

#[test]
fn expired_counts_each_skipped_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let short = EnqueueOptions::new().ttl(Duration::from_millis(50));
    for _ in 0..4 {
        q.enqueue_with("x", &short).unwrap();
    }
    q.enqueue_with("y", &EnqueueOptions::new().ttl(Duration::from_secs(3600)))
        .unwrap();
    thread::sleep(Duration::from_millis(150));
    assert_eq!(q.stats().expired, 0, "counted when skipped, not before");
    // Peeking does not count.
    assert_eq!(q.peek(10).unwrap().len(), 1);
    assert_eq!(q.stats().expired, 0);
    assert!(q.dequeue().unwrap().is_some());
    assert!(q.dequeue().unwrap().is_none());
    assert_eq!(q.stats().expired, 4);
}

#[test]
fn dead_lettered_counts_moves_over_the_queue_life() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new().ack_mode(AckMode::Manual).max_deliveries(1);
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        for _ in 0..3 {
            q.enqueue("x").unwrap();
        }
        for _ in 0..3 {
            let m = q.dequeue().unwrap().unwrap();
            q.nack(m.id(), "no").unwrap();
        }
        assert_eq!(q.stats().dead_lettered, 3);
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    assert_eq!(q.stats().dead_lettered, 3);
    // Requeueing does not undo the count.
    q.requeue_dead_letter(1).unwrap();
    assert_eq!(q.stats().dead_lettered, 3);
}

#[test]
fn dedup_tracked_follows_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for i in 0..10 {
        q.enqueue_with("x", &EnqueueOptions::new().dedup_key(format!("k{i}")))
            .unwrap();
    }
    q.enqueue_with("x", &EnqueueOptions::new().dedup_key("k0"))
        .unwrap();
    let s = q.stats();
    assert_eq!((s.dedup_tracked, s.dedup_evicted), (10, 0));
}

#[test]
fn dropped_counts_messages_dropped_by_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .segment_size(64 << 10)
            .auto_compact(false)
            .max_disk_bytes(2 * (64 << 10))
            .overflow_policy(OverflowPolicy::DropOldest),
    )
    .unwrap();
    let n = 2000u64;
    for _ in 0..n {
        q.enqueue([0u8; 200]).unwrap();
    }
    let s = q.stats();
    assert!(s.dropped > 0);
    assert_eq!(s.pending + s.dropped, n, "{s:?}");
}

#[test]
fn oldest_pending_age() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(q.stats().oldest_pending_age, None);
    q.enqueue("old").unwrap();
    thread::sleep(Duration::from_millis(100));
    q.enqueue("new").unwrap();
    let age = q.stats().oldest_pending_age.expect("a pending message");
    assert!(age >= Duration::from_millis(90), "{age:?}");
    q.dequeue().unwrap();
    q.dequeue().unwrap();
    assert_eq!(q.stats().oldest_pending_age, None);
}

#[test]
fn oldest_pending_age_in_manual_mode_ignores_leased() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().ack_mode(AckMode::Manual)).unwrap();
    q.enqueue("a").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(q.stats().oldest_pending_age, None);
    q.nack(m.id(), "back").unwrap();
    let s = q.stats();
    assert_eq!(s.pending, 1);
    assert!(s.oldest_pending_age.is_some(), "{s:?}");
}

#[test]
fn disk_bytes_follow_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().segment_size(64 << 10).auto_compact(false),
    )
    .unwrap();
    let empty = q.stats().disk_bytes;
    for _ in 0..2000 {
        q.enqueue([0u8; 200]).unwrap();
    }
    let full = q.stats();
    assert!(full.disk_bytes > empty);
    assert!(full.disk_bytes >= full.segments * (64 << 10));
    while q.dequeue().unwrap().is_some() {}
    let r = q.compact().unwrap();
    let after = q.stats().disk_bytes;
    assert!(after < full.disk_bytes);
    assert!(full.disk_bytes - after <= r.bytes_freed);
}
