//! Per-message TTL: an expired message is never delivered (by `dequeue`,
//! `dequeue_batch`, `stream` or `peek`, in either ack mode), is counted in
//! `stats().expired`, and its space is reclaimed with its segment.

use std::thread;
use std::time::{Duration, SystemTime};

use ledgerq::{AckMode, EnqueueOptions, Error, Message, Options, Queue};

const SHORT: Duration = Duration::from_millis(50);
/// Comfortably longer than `SHORT`.
const WAIT: Duration = Duration::from_millis(150);

fn ttl(d: Duration) -> EnqueueOptions {
    EnqueueOptions::new().ttl(d)
}

fn text(m: &Message) -> String {
    String::from_utf8(m.payload().to_vec()).unwrap()
}

#[test]
fn a_live_message_carries_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let before = SystemTime::now();
    q.enqueue_with("hour", &ttl(Duration::from_secs(3600)))
        .unwrap();
    let after = SystemTime::now();
    let m = q.dequeue().unwrap().unwrap();
    let exp = m.expires_at().expect("an expiry");
    assert!(exp >= before + Duration::from_secs(3600));
    assert!(exp <= after + Duration::from_secs(3600));
    assert!(exp > m.timestamp());
}

#[test]
fn expired_message_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue_with("expiring", &ttl(SHORT)).unwrap();
    q.enqueue("normal message").unwrap();
    thread::sleep(WAIT);
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&m), "normal message");
    assert_eq!(m.id(), 2);
    assert!(m.expires_at().is_none());
    assert!(q.dequeue().unwrap().is_none());
    let s = q.stats();
    assert_eq!((s.expired, s.pending), (1, 0));
}

#[test]
fn several_expired_before_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for _ in 0..3 {
        q.enqueue_with("gone", &ttl(SHORT)).unwrap();
    }
    q.enqueue("valid").unwrap();
    thread::sleep(WAIT);
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((text(&m), m.id()), ("valid".into(), 4));
    assert_eq!(q.stats().expired, 3);
}

#[test]
fn all_expired_means_empty_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for _ in 0..5 {
        q.enqueue_with("gone", &ttl(SHORT)).unwrap();
    }
    thread::sleep(WAIT);
    assert!(q.dequeue().unwrap().is_none());
    assert_eq!(q.stats().expired, 5);
    assert_eq!(q.stats().pending, 0);
    let id = q.enqueue("after").unwrap();
    assert_eq!(id, 6);
    assert_eq!(text(&q.dequeue().unwrap().unwrap()), "after");
}

#[test]
fn dequeue_batch_skips_expired() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue_with("expired1", &ttl(SHORT)).unwrap();
    q.enqueue("valid1").unwrap();
    q.enqueue_with("expired2", &ttl(SHORT)).unwrap();
    q.enqueue("valid2").unwrap();
    q.enqueue_with("expired3", &ttl(SHORT)).unwrap();
    thread::sleep(WAIT);
    let got: Vec<String> = q.dequeue_batch(10).unwrap().iter().map(text).collect();
    assert_eq!(got, ["valid1", "valid2"]);
    assert_eq!(q.stats().expired, 3);
    assert!(q.dequeue_batch(10).unwrap().is_empty());
}

#[test]
fn dequeue_batch_skips_expired_in_manual_and_priority_modes() {
    for opts in [
        Options::new().ack_mode(AckMode::Manual),
        Options::new().priorities(true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(dir.path(), opts).unwrap();
        q.enqueue_with("expired1", &ttl(SHORT)).unwrap();
        q.enqueue("valid1").unwrap();
        q.enqueue_with("expired2", &ttl(SHORT)).unwrap();
        q.enqueue("valid2").unwrap();
        thread::sleep(WAIT);
        let got: Vec<String> = q.dequeue_batch(10).unwrap().iter().map(text).collect();
        assert_eq!(got, ["valid1", "valid2"]);
        assert_eq!(q.stats().expired, 2);
    }
}

#[test]
fn peek_leaves_out_expired() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue_with("expiring", &ttl(SHORT)).unwrap();
    q.enqueue("kept").unwrap();
    q.enqueue_with("long", &ttl(Duration::from_secs(3600)))
        .unwrap();
    thread::sleep(WAIT);
    let seen: Vec<String> = q.peek(10).unwrap().iter().map(text).collect();
    assert_eq!(seen, ["kept", "long"]);
}

#[test]
fn stream_skips_expired() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue_with("expiring", &ttl(SHORT)).unwrap();
    q.enqueue("a").unwrap();
    q.enqueue_with("expiring too", &ttl(SHORT)).unwrap();
    q.enqueue("b").unwrap();
    thread::sleep(WAIT);
    let got: Vec<String> = thread::scope(|s| {
        let q = &q;
        let h = s.spawn(move || {
            q.stream()
                .map(|m| text(&m.unwrap()))
                .take_while(|t| t != "stop")
                .collect::<Vec<_>>()
        });
        q.enqueue("stop").unwrap();
        h.join().unwrap()
    });
    assert_eq!(got, ["a", "b"]);
}

#[test]
fn a_leased_message_that_expires_is_not_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().ack_mode(AckMode::Manual)).unwrap();
    q.enqueue_with("short-lived", &ttl(Duration::from_millis(100)))
        .unwrap();
    let m = q.dequeue().unwrap().unwrap();
    thread::sleep(Duration::from_millis(250));
    q.nack(m.id(), "too slow").unwrap();
    assert!(q.dequeue().unwrap().is_none());
    assert_eq!(q.stats().expired, 1);
    assert_eq!(q.stats().in_flight, 0);
    // Expired is not dead-lettered.
    assert_eq!(q.stats().dead_lettered, 0);
}

#[test]
fn zero_ttl_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let err = q.enqueue_with("x", &ttl(Duration::ZERO)).unwrap_err();
    assert!(matches!(err, Error::InvalidMessage { .. }), "{err:?}");
    let err = q
        .enqueue_batch_with([("ok", EnqueueOptions::new()), ("bad", ttl(Duration::ZERO))])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidMessage { .. }), "{err:?}");
    let s = q.stats();
    assert_eq!((s.next_id, s.pending), (1, 0));
}

#[test]
fn ttl_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let exp;
    {
        let q = Queue::open(dir.path()).unwrap();
        q.enqueue_with("later", &ttl(Duration::from_secs(5)))
            .unwrap();
        exp = q.peek(1).unwrap()[0].expires_at().unwrap();
        q.close().unwrap();
    }
    let q = Queue::open(dir.path()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.expires_at(), Some(exp));
}

#[test]
fn expiry_happens_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path()).unwrap();
        q.enqueue_with("expiring", &ttl(SHORT)).unwrap();
        q.enqueue("kept").unwrap();
        q.close().unwrap();
    }
    thread::sleep(WAIT);
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(text(&q.dequeue().unwrap().unwrap()), "kept");
    assert_eq!(q.stats().expired, 1);
}

#[test]
fn mixed_ttl_and_plain_stay_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue("normal1").unwrap();
    q.enqueue_with("ttl1", &ttl(Duration::from_secs(5)))
        .unwrap();
    q.enqueue("normal2").unwrap();
    q.enqueue_with("ttl2", &ttl(Duration::from_secs(10)))
        .unwrap();
    q.enqueue("normal3").unwrap();
    let got: Vec<(String, bool)> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| (text(&m), m.expires_at().is_some()))
        .collect();
    assert_eq!(
        got,
        [
            ("normal1".into(), false),
            ("ttl1".into(), true),
            ("normal2".into(), false),
            ("ttl2".into(), true),
            ("normal3".into(), false),
        ]
    );
}

#[test]
fn expired_space_is_reclaimed_with_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().segment_size(64 << 10).auto_compact(false),
    )
    .unwrap();
    let body = vec![b'x'; 500];
    for _ in 0..600 {
        q.enqueue_with(&body, &ttl(SHORT)).unwrap();
    }
    q.enqueue("survivor").unwrap();
    let before = q.stats();
    assert!(before.segments >= 4, "{before:?}");
    thread::sleep(WAIT);
    assert_eq!(text(&q.dequeue().unwrap().unwrap()), "survivor");
    assert_eq!(q.stats().expired, 600);
    let report = q.compact().unwrap();
    assert_eq!(report.segments_removed, before.segments - 1);
    assert!(report.bytes_freed > 0);
    let after = q.stats();
    assert_eq!(after.segments, 1);
    assert!(after.disk_bytes < before.disk_bytes);
}
