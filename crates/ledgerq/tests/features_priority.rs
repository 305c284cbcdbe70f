//! Priority delivery: `High` before `Medium` before `Low`, FIFO within a level, the
//! starvation window, and the setting recorded at creation. Also the priority bugs of
//! the original implementation, as regression tests: priority across segments, after a
//! reopen with partial consumption, and `dequeue_batch` in priority mode.

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use ledgerq::{AckMode, EnqueueOptions, Message, Options, Priority, Queue};

fn prio_opts() -> Options {
    Options::new().priorities(true)
}

fn with(p: Priority) -> EnqueueOptions {
    EnqueueOptions::new().priority(p)
}

fn text(m: &Message) -> String {
    String::from_utf8(m.payload().to_vec()).unwrap()
}

fn drain(q: &Queue) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        out.push(text(&m));
    }
    out
}

fn level_of(i: u64) -> Priority {
    match i % 3 {
        0 => Priority::Low,
        1 => Priority::Medium,
        _ => Priority::High,
    }
}

#[test]
fn high_before_medium_before_low_fifo_within_a_level() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    assert!(q.priorities());
    for (name, p) in [
        ("L1", Priority::Low),
        ("H1", Priority::High),
        ("M1", Priority::Medium),
        ("L2", Priority::Low),
        ("H2", Priority::High),
        ("M2", Priority::Medium),
    ] {
        q.enqueue_with(name, &with(p)).unwrap();
    }
    assert_eq!(q.stats().pending, 6);
    let got: Vec<(String, Priority)> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| (text(&m), m.priority()))
        .collect();
    assert_eq!(
        got,
        [
            ("H1".to_string(), Priority::High),
            ("H2".to_string(), Priority::High),
            ("M1".to_string(), Priority::Medium),
            ("M2".to_string(), Priority::Medium),
            ("L1".to_string(), Priority::Low),
            ("L2".to_string(), Priority::Low),
        ]
    );
    assert_eq!(q.stats().pending, 0);
}

#[test]
fn without_priority_mode_delivery_is_fifo_and_priority_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    assert!(!q.priorities());
    q.enqueue_with("first", &with(Priority::Low)).unwrap();
    q.enqueue_with("second", &with(Priority::High)).unwrap();
    q.enqueue_with("third", &with(Priority::Medium)).unwrap();
    let got: Vec<(String, Priority)> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| (text(&m), m.priority()))
        .collect();
    assert_eq!(
        got,
        [
            ("first".to_string(), Priority::Low),
            ("second".to_string(), Priority::High),
            ("third".to_string(), Priority::Medium),
        ]
    );
}

#[test]
fn priority_setting_is_fixed_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
        q.enqueue_with("low", &with(Priority::Low)).unwrap();
        q.enqueue_with("high", &with(Priority::High)).unwrap();
        q.close().unwrap();
    }
    // Asking for FIFO on reopen does not change what was recorded.
    let q = Queue::open_with(dir.path(), Options::new().priorities(false)).unwrap();
    assert!(q.priorities());
    assert_eq!(drain(&q), ["high", "low"]);
    q.close().unwrap();

    let fifo = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(fifo.path()).unwrap();
        q.enqueue_with("low", &with(Priority::Low)).unwrap();
        q.enqueue_with("high", &with(Priority::High)).unwrap();
        q.close().unwrap();
    }
    let q = Queue::open_with(fifo.path(), prio_opts()).unwrap();
    assert!(!q.priorities());
    assert_eq!(drain(&q), ["low", "high"]);
}

#[test]
fn plain_batch_in_priority_mode_is_low_and_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    q.enqueue_batch(["batch1", "batch2", "batch3"]).unwrap();
    q.enqueue_with("urgent", &with(Priority::High)).unwrap();
    assert_eq!(drain(&q), ["urgent", "batch1", "batch2", "batch3"]);
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn batch_with_options_mixes_levels_headers_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    let res = q
        .enqueue_batch_with([
            (
                "low-with-headers",
                EnqueueOptions::new()
                    .priority(Priority::Low)
                    .header("key", "value1"),
            ),
            (
                "high-with-ttl",
                EnqueueOptions::new()
                    .priority(Priority::High)
                    .ttl(Duration::from_secs(3600)),
            ),
            (
                "medium-all",
                EnqueueOptions::new()
                    .priority(Priority::Medium)
                    .ttl(Duration::from_secs(3600))
                    .header("key", "value2"),
            ),
        ])
        .unwrap();
    assert_eq!(res.len(), 3);
    let h = q.dequeue().unwrap().unwrap();
    assert_eq!(
        (text(&h), h.priority(), h.expires_at().is_some()),
        ("high-with-ttl".into(), Priority::High, true)
    );
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&m), "medium-all");
    assert_eq!(m.header("key"), Some("value2"));
    assert!(m.expires_at().is_some());
    let l = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&l), "low-with-headers");
    assert_eq!(l.header("key"), Some("value1"));
    assert!(l.expires_at().is_none());
}

#[test]
fn an_expired_high_message_is_skipped_for_a_low_one() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    q.enqueue_with(
        "high-expiring",
        &with(Priority::High).ttl(Duration::from_millis(50)),
    )
    .unwrap();
    q.enqueue_with("low", &with(Priority::Low)).unwrap();
    thread::sleep(Duration::from_millis(150));
    assert_eq!(drain(&q), ["low"]);
    assert_eq!(q.stats().expired, 1);
}

#[test]
fn a_starving_low_message_goes_before_newer_high_ones() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        prio_opts().starvation_window(Duration::from_millis(50)),
    )
    .unwrap();
    q.enqueue_with("low", &with(Priority::Low)).unwrap();
    thread::sleep(Duration::from_millis(150));
    q.enqueue_with("high1", &with(Priority::High)).unwrap();
    q.enqueue_with("high2", &with(Priority::High)).unwrap();
    assert_eq!(drain(&q), ["low", "high1", "high2"]);
}

#[test]
fn a_starving_medium_message_is_promoted_too() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        prio_opts().starvation_window(Duration::from_millis(50)),
    )
    .unwrap();
    q.enqueue_with("medium", &with(Priority::Medium)).unwrap();
    thread::sleep(Duration::from_millis(150));
    q.enqueue_with("high", &with(Priority::High)).unwrap();
    assert_eq!(drain(&q), ["medium", "high"]);
}

#[test]
fn starving_messages_of_several_levels_go_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        prio_opts().starvation_window(Duration::from_millis(50)),
    )
    .unwrap();
    q.enqueue_with("old-medium", &with(Priority::Medium))
        .unwrap();
    q.enqueue_with("old-low", &with(Priority::Low)).unwrap();
    thread::sleep(Duration::from_millis(150));
    q.enqueue_with("new-high", &with(Priority::High)).unwrap();
    assert_eq!(drain(&q), ["old-medium", "old-low", "new-high"]);
}

#[test]
fn without_starvation_window_high_always_wins() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts().starvation_window(Duration::ZERO)).unwrap();
    q.enqueue_with("low", &with(Priority::Low)).unwrap();
    thread::sleep(Duration::from_millis(100));
    q.enqueue_with("high", &with(Priority::High)).unwrap();
    assert_eq!(drain(&q), ["high", "low"]);
}

#[test]
fn headers_survive_priority_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    q.enqueue_with("low", &with(Priority::Low)).unwrap();
    q.enqueue_with(
        "high",
        &with(Priority::High)
            .header("source", "server1")
            .header("type", "alert"),
    )
    .unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&m), "high");
    assert_eq!(
        m.headers(),
        [
            ("source".to_string(), "server1".to_string()),
            ("type".to_string(), "alert".to_string())
        ]
    );
}

/// Expected order of `n` messages enqueued with `level_of(i)`, all waiting: every High
/// (FIFO), then Medium, then Low.
fn expected_order(n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for p in [Priority::High, Priority::Medium, Priority::Low] {
        out.extend((0..n).filter(|&i| level_of(i) == p));
    }
    out
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(120, (i % 251) as u8);
    p
}

fn index_of(m: &Message) -> u64 {
    let i = u64::from_le_bytes(m.payload()[..8].try_into().unwrap());
    assert_eq!(m.payload(), &payload(i)[..], "payload of message {i}");
    assert_eq!(m.priority(), level_of(i), "priority of message {i}");
    i
}

/// Regression: the original indexed priority entries by segment-local offset, so with two
/// segments or more the same message came back for ever.
#[test]
fn priority_across_several_segments() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts().segment_size(64 << 10)).unwrap();
    let n = 3000u64;
    for i in 0..n {
        q.enqueue_with(payload(i), &with(level_of(i))).unwrap();
    }
    assert!(q.stats().segments >= 4, "{:?}", q.stats());
    let got: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| index_of(&m))
        .collect();
    assert_eq!(got, expected_order(n));
    assert_eq!(q.stats().pending, 0);
}

/// Small per-level FIFOs (the scheduler's memory bound) refill without losing order.
#[test]
fn small_ring_capacity_keeps_priority_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        prio_opts().segment_size(64 << 10).ring_capacity(4),
    )
    .unwrap();
    let n = 1500u64;
    for i in 0..n {
        q.enqueue_with(payload(i), &with(level_of(i))).unwrap();
    }
    let got: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| index_of(&m))
        .collect();
    assert_eq!(got, expected_order(n));
}

/// Regression: the original resumed priority mode past the highest delivered ID on
/// reopen, losing the lower-priority messages not yet delivered.
#[test]
fn priority_after_reopen_with_partial_consumption() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    let opts = || prio_opts().segment_size(64 << 10);
    let mut got = Vec::new();
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        for i in 0..n {
            q.enqueue_with(payload(i), &with(level_of(i))).unwrap();
        }
        // All the High messages and some Medium ones.
        for _ in 0..1500 {
            got.push(index_of(&q.dequeue().unwrap().unwrap()));
        }
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    assert!(q.priorities());
    assert_eq!(q.stats().pending, n - 1500);
    while let Some(m) = q.dequeue().unwrap() {
        got.push(index_of(&m));
    }
    assert_eq!(got, expected_order(n));
    q.close().unwrap();
    // And nothing comes back after a further reopen.
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    assert!(q.dequeue().unwrap().is_none());
    assert_eq!(q.stats().pending, 0);
}

#[test]
fn simple_reopen_keeps_priority_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
        q.enqueue_with("L", &with(Priority::Low)).unwrap();
        q.enqueue_with("H", &with(Priority::High)).unwrap();
        q.enqueue_with("M", &with(Priority::Medium)).unwrap();
        q.close().unwrap();
    }
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(drain(&q), ["H", "M", "L"]);
}

/// Regression: the original's `DequeueBatch` ignored priorities and the index, so the
/// same messages were delivered again by `Dequeue`.
#[test]
fn dequeue_batch_respects_priority_and_never_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts().segment_size(64 << 10)).unwrap();
    let n = 900u64;
    for i in 0..n {
        q.enqueue_with(payload(i), &with(level_of(i))).unwrap();
    }
    let mut got = Vec::new();
    loop {
        let batch = q.dequeue_batch(128).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 128);
        got.extend(batch.iter().map(index_of));
    }
    assert_eq!(got, expected_order(n));
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn dequeue_batch_and_dequeue_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    let n = 300u64;
    for i in 0..n {
        q.enqueue_with(payload(i), &with(level_of(i))).unwrap();
    }
    let mut got = Vec::new();
    loop {
        let b = q.dequeue_batch(7).unwrap();
        got.extend(b.iter().map(index_of));
        match q.dequeue().unwrap() {
            Some(m) => got.push(index_of(&m)),
            None if b.is_empty() => break,
            None => {}
        }
    }
    assert_eq!(got, expected_order(n));
}

#[test]
fn seek_replays_in_priority_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts().segment_size(64 << 10)).unwrap();
    let n = 600u64;
    let ids = (1..=n).collect::<Vec<_>>();
    for i in 0..n {
        let e = q.enqueue_with(payload(i), &with(level_of(i))).unwrap();
        assert_eq!(e.id(), ids[i as usize]);
    }
    let first: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| index_of(&m))
        .collect();
    assert_eq!(first, expected_order(n));
    q.seek_to_id(1).unwrap();
    let again: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| index_of(&m))
        .collect();
    assert_eq!(again, expected_order(n));
    // Seek to the middle: messages from index 300 on, in priority order.
    q.seek_to_id(301).unwrap();
    let tail: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| index_of(&m))
        .collect();
    let want: Vec<u64> = expected_order(n)
        .into_iter()
        .filter(|&i| i >= 300)
        .collect();
    assert_eq!(tail, want);
}

#[test]
fn peek_shows_priority_order_without_consuming() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    q.enqueue_with("L", &with(Priority::Low)).unwrap();
    q.enqueue_with("M", &with(Priority::Medium)).unwrap();
    q.enqueue_with("H", &with(Priority::High)).unwrap();
    let peeked: Vec<String> = q.peek(10).unwrap().iter().map(text).collect();
    assert_eq!(peeked, ["H", "M", "L"]);
    let two: Vec<String> = q.peek(2).unwrap().iter().map(text).collect();
    assert_eq!(two, ["H", "M"]);
    assert_eq!(q.stats().pending, 3);
    assert_eq!(drain(&q), ["H", "M", "L"]);
}

#[test]
fn manual_mode_priorities_and_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        prio_opts().ack_mode(AckMode::Manual).max_deliveries(0),
    )
    .unwrap();
    q.enqueue_with("L", &with(Priority::Low)).unwrap();
    q.enqueue_with("H", &with(Priority::High)).unwrap();
    q.enqueue_with("M", &with(Priority::Medium)).unwrap();
    let h = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&h), "H");
    q.nack(h.id(), "retry").unwrap();
    // A nacked message is redelivered first, with its count raised.
    let h2 = q.dequeue().unwrap().unwrap();
    assert_eq!((text(&h2), h2.delivery_count()), ("H".into(), 2));
    q.ack(h2.id()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&m), "M");
    // Leave M unacknowledged across a reopen: it comes back, before L.
    q.close().unwrap();
    drop(q);
    let q = Queue::open_with(dir.path(), prio_opts().ack_mode(AckMode::Manual)).unwrap();
    let again = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&again), "M");
    assert_eq!(again.delivery_count(), 2);
    q.ack(again.id()).unwrap();
    let l = q.dequeue().unwrap().unwrap();
    assert_eq!(text(&l), "L");
    q.ack(l.id()).unwrap();
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn concurrent_consumers_get_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), prio_opts().segment_size(64 << 10)).unwrap();
    let n = 4000u64;
    let total = std::sync::atomic::AtomicU64::new(0);
    let all: Vec<Vec<u64>> = thread::scope(|s| {
        let q = &q;
        let total = &total;
        s.spawn(move || {
            for i in 0..n {
                q.enqueue_with(payload(i), &with(level_of(i))).unwrap();
            }
        });
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(move || {
                    let mut got = Vec::new();
                    while total.load(std::sync::atomic::Ordering::SeqCst) < n {
                        if let Some(m) = q.dequeue_timeout(Duration::from_millis(20)).unwrap() {
                            got.push(index_of(&m));
                            total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    got
                })
            })
            .collect();
        consumers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut seen = HashSet::new();
    for got in &all {
        // Each consumer sees each level in FIFO order.
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            let lv: Vec<u64> = got.iter().copied().filter(|&i| level_of(i) == p).collect();
            assert!(
                lv.windows(2).all(|w| w[0] < w[1]),
                "level {p:?} out of order"
            );
        }
        for &i in got {
            assert!(seen.insert(i), "message {i} delivered twice");
        }
    }
    assert_eq!(seen.len() as u64, n);
}

/// A queue whose first record (a `Low` message) has a flipped payload byte, followed
/// by `High` messages over several segments; closed cleanly, so the damaged segment
/// is not scanned at open.
fn damaged_low_before_highs(dir: &std::path::Path) -> u64 {
    let q = Queue::open_with(dir, prio_opts().segment_size(64 << 10)).unwrap();
    q.enqueue_with(b"the-damaged-low-message".as_slice(), &with(Priority::Low))
        .unwrap();
    let highs = 2000u64;
    for i in 0..highs {
        q.enqueue_with(payload(i), &with(Priority::High)).unwrap();
    }
    assert!(q.stats().segments >= 3, "{:?}", q.stats());
    q.close().unwrap();
    let first = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes
        .windows(23)
        .position(|w| w == b"the-damaged-low-message")
        .unwrap();
    bytes[at + 4] ^= 0x20;
    std::fs::write(&first, bytes).unwrap();
    highs
}

/// Each record's checksum is checked by the level it belongs to only (the cursors of
/// the other levels look at its ID and priority): a damaged `Low` record is still
/// reported in Strict mode (the `Low` cursor reads it when it fills), and skipped and
/// counted in Skip mode, with every `High` message delivered.
#[test]
fn a_damaged_message_is_reported_when_only_its_own_level_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    damaged_low_before_highs(dir.path());
    let q = Queue::open_with(dir.path(), prio_opts()).unwrap();
    match q.dequeue() {
        Err(ledgerq::Error::Corrupt { reason, offset, .. }) => {
            assert!(reason.contains("checksum"), "{reason}");
            assert_eq!(offset, 64, "the first record");
        }
        other => panic!("expected the damage to be reported, got {other:?}"),
    }
    drop(q);

    let dir = tempfile::tempdir().unwrap();
    let highs = damaged_low_before_highs(dir.path());
    let q = Queue::open_with(
        dir.path(),
        prio_opts().recovery_mode(ledgerq::RecoveryMode::Skip),
    )
    .unwrap();
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(Message::into_payload)
        .collect();
    assert_eq!(got, (0..highs).map(payload).collect::<Vec<_>>());
    assert_eq!(q.stats().corrupt_skipped, 1);
}
