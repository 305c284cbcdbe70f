//! Dead letters (manual-ack mode): after `max_deliveries` failed deliveries a message
//! moves to `<dir>/dead-letter` with its payload (decompressed), headers, priority and TTL
//! intact plus the `dlq.*` headers; `requeue_dead_letter` moves it back. Redelivery
//! backoff and `nack_with_delay`. A message is never both dead-lettered and deliverable.
//! Regressions of the original: nack of an undelivered message, compressed bytes copied
//! into the dead-letter queue, priority and TTL dropped.

use std::thread;
use std::time::{Duration, Instant, SystemTime};

use ledgerq::{AckMode, Compression, EnqueueOptions, Error, Message, Options, Priority, Queue};

fn manual() -> Options {
    Options::new().ack_mode(AckMode::Manual)
}

/// Dequeues, nacks with `reason`, `times` times; returns the last delivery.
fn fail_times(q: &Queue, times: u32, reason: impl Fn(u32) -> String) -> Message {
    let mut last = None;
    for i in 1..=times {
        let m = q.dequeue().unwrap().expect("a delivery");
        assert_eq!(m.delivery_count(), i);
        q.nack(m.id(), &reason(i)).unwrap();
        last = Some(m);
    }
    last.unwrap()
}

fn dlq_headers(m: &Message) -> Vec<(&str, &str)> {
    m.headers()
        .iter()
        .filter(|(k, _)| k.starts_with("dlq."))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn third_failure_moves_the_message_with_dlq_headers() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual()).unwrap();
    let id = q
        .enqueue_with(
            "poison",
            &EnqueueOptions::new()
                .header("trace-id", "12345")
                .header("app", "test"),
        )
        .unwrap()
        .id();
    q.enqueue("next").unwrap();
    let before = SystemTime::now() - Duration::from_secs(1);
    let last = fail_times(&q, 3, |i| format!("failure {i}"));
    assert_eq!(last.id(), id);
    // Gone from the main queue: the next message is the other one.
    let next = q.dequeue().unwrap().unwrap();
    assert_eq!(next.payload(), b"next");
    q.ack(next.id()).unwrap();
    assert!(q.dequeue().unwrap().is_none());
    let s = q.stats();
    assert_eq!((s.dead_lettered, s.pending, s.in_flight), (1, 0, 0));

    let dlq = q.dead_letters().unwrap();
    assert_eq!(dlq.dir(), dir.path().join("dead-letter"));
    assert!(dir.path().join("dead-letter").is_dir());
    let d = dlq.dequeue().unwrap().unwrap();
    assert_eq!(d.payload(), b"poison");
    assert_eq!(d.header("trace-id"), Some("12345"));
    assert_eq!(d.header("app"), Some("test"));
    let dh = dlq_headers(&d);
    let keys: Vec<&str> = dh.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "dlq.original_id",
            "dlq.delivery_count",
            "dlq.reason",
            "dlq.last_failure"
        ]
    );
    assert_eq!(d.header("dlq.original_id"), Some(&*id.to_string()));
    assert_eq!(d.header("dlq.delivery_count"), Some("3"));
    assert_eq!(d.header("dlq.reason"), Some("failure 3"));
    let when = humantime::parse_rfc3339(d.header("dlq.last_failure").unwrap()).unwrap();
    assert!(when >= before && when <= SystemTime::now(), "{when:?}");
    // The original message can no longer be acknowledged or nacked.
    assert!(matches!(q.ack(id), Err(Error::NotInFlight { .. })));
    assert!(matches!(q.nack(id, "x"), Err(Error::NotInFlight { .. })));
}

#[test]
fn fewer_failures_than_the_limit_redeliver() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(5)).unwrap();
    q.enqueue("flaky").unwrap();
    fail_times(&q, 4, |_| "not yet".into());
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.delivery_count(), 5);
    q.ack(m.id()).unwrap();
    assert_eq!(q.stats().dead_lettered, 0);
    assert!(q.dequeue().unwrap().is_none());
    assert!(q.dead_letters().unwrap().dequeue().unwrap().is_none());
}

#[test]
fn zero_max_deliveries_never_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(0)).unwrap();
    q.enqueue("forever").unwrap();
    fail_times(&q, 20, |_| "again".into());
    assert_eq!(q.dequeue().unwrap().unwrap().delivery_count(), 21);
    assert_eq!(q.stats().dead_lettered, 0);
}

#[test]
fn expired_leases_count_as_failures() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual()
            .max_deliveries(2)
            .lease_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    q.enqueue("slow").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.delivery_count(), 1);
    let again = q
        .dequeue_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("redelivered after the lease expired");
    assert_eq!((again.id(), again.delivery_count()), (m.id(), 2));
    // Let the second lease expire too: the message is dead-lettered.
    let dlq = q.dead_letters().unwrap();
    let d = dlq
        .dequeue_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("dead-lettered after the second expired lease");
    assert_eq!(d.payload(), b"slow");
    assert_eq!(d.header("dlq.delivery_count"), Some("2"));
    assert_eq!(d.header("dlq.reason"), Some("lease expired"));
    assert!(q.dequeue().unwrap().is_none());
    assert!(matches!(q.ack(m.id()), Err(Error::NotInFlight { .. })));
}

#[test]
fn reason_is_the_first_line_and_at_most_256_characters() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
    q.enqueue("a").unwrap();
    q.enqueue("b").unwrap();
    let a = q.dequeue().unwrap().unwrap();
    q.nack(a.id(), "first line\nsecond line\nthird").unwrap();
    let b = q.dequeue().unwrap().unwrap();
    let long = "é".repeat(300);
    q.nack(b.id(), &long).unwrap();
    let dlq = q.dead_letters().unwrap();
    let da = dlq.dequeue().unwrap().unwrap();
    assert_eq!(da.header("dlq.reason"), Some("first line"));
    let db = dlq.dequeue().unwrap().unwrap();
    let r = db.header("dlq.reason").unwrap();
    assert_eq!(r.chars().count(), 256);
    assert!(r.chars().all(|c| c == 'é'));
}

#[test]
fn priority_ttl_and_headers_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
    q.enqueue_with(
        "important",
        &EnqueueOptions::new()
            .priority(Priority::High)
            .ttl(Duration::from_secs(3600))
            .header("k", "v"),
    )
    .unwrap();
    let m = q.dequeue().unwrap().unwrap();
    q.nack(m.id(), "no").unwrap();
    let d = q.dead_letters().unwrap().dequeue().unwrap().unwrap();
    assert_eq!(d.priority(), Priority::High);
    assert_eq!(d.expires_at(), m.expires_at());
    assert!(d.expires_at().is_some());
    assert_eq!(d.headers()[0], ("k".to_string(), "v".to_string()));
}

/// Regression: the original copied the stored (compressed) bytes into the dead-letter
/// queue without the compression flag.
#[test]
fn dead_letters_keep_compressed_payloads_readable() {
    for c in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            manual()
                .max_deliveries(1)
                .compression(c)
                .min_compression_size(64),
        )
        .unwrap();
        let body: Vec<u8> = b"compressible text, ".repeat(300);
        q.enqueue(&body).unwrap();
        q.enqueue_with(
            &body,
            &EnqueueOptions::new().compression(c).header("h", "1"),
        )
        .unwrap();
        for _ in 0..2 {
            let m = q.dequeue().unwrap().unwrap();
            assert_eq!(m.payload(), &body[..]);
            q.nack(m.id(), "fail").unwrap();
        }
        let dlq = q.dead_letters().unwrap();
        for _ in 0..2 {
            let d = dlq.dequeue().unwrap().unwrap();
            assert_eq!(d.payload(), &body[..], "{c:?}");
        }
        // And it survives requeueing.
        let requeued = q.requeue_dead_letter(1).unwrap();
        let m = q.dequeue().unwrap().unwrap();
        assert_eq!((m.id(), m.payload()), (requeued, &body[..]));
    }
}

#[test]
fn requeue_moves_a_dead_letter_back_without_dlq_headers() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual()).unwrap();
    let orig = q
        .enqueue_with(
            "retry me",
            &EnqueueOptions::new()
                .priority(Priority::Medium)
                .ttl(Duration::from_secs(3600))
                .header("trace-id", "12345")
                .header("app", "test"),
        )
        .unwrap()
        .id();
    let failed = fail_times(&q, 3, |i| format!("failure {i}"));
    let dlq = q.dead_letters().unwrap();
    let d = dlq.dequeue().unwrap().unwrap();
    let new_id = q.requeue_dead_letter(d.id()).unwrap();
    assert!(new_id > orig);
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.id(), new_id);
    assert_eq!(m.payload(), b"retry me");
    assert_eq!(m.delivery_count(), 1);
    assert_eq!(m.priority(), Priority::Medium);
    assert_eq!(m.expires_at(), failed.expires_at());
    assert_eq!(
        m.headers(),
        [
            ("trace-id".to_string(), "12345".to_string()),
            ("app".to_string(), "test".to_string()),
        ]
    );
    q.ack(m.id()).unwrap();
    // Removed from the dead-letter queue: not delivered, not requeueable twice.
    assert!(dlq.dequeue().unwrap().is_none());
    assert!(matches!(dlq.ack(d.id()), Err(Error::NotInFlight { .. })));
    assert!(matches!(
        q.requeue_dead_letter(d.id()),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        q.requeue_dead_letter(999),
        Err(Error::NotFound { id: 999 })
    ));
}

#[test]
fn requeue_of_a_dead_letter_not_yet_read() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
    q.enqueue("a").unwrap();
    q.enqueue("b").unwrap();
    for _ in 0..2 {
        let m = q.dequeue().unwrap().unwrap();
        q.nack(m.id(), "x").unwrap();
    }
    // Requeue the second dead letter without reading the dead-letter queue.
    q.requeue_dead_letter(2).unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"b");
    let dlq = q.dead_letters().unwrap();
    assert_eq!(dlq.stats().pending, 1);
    assert_eq!(dlq.dequeue().unwrap().unwrap().payload(), b"a");
    assert!(dlq.dequeue().unwrap().is_none());
}

/// Regression: the original accepted a nack of a message never delivered and moved it
/// to the dead-letter queue while it stayed deliverable.
#[test]
fn nack_of_an_undelivered_or_unknown_message_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
    let id = q.enqueue("never delivered").unwrap();
    for _ in 0..3 {
        assert!(matches!(
            q.nack(id, "x"),
            Err(Error::NotInFlight { id: i }) if i == id
        ));
    }
    assert!(matches!(q.nack(42, "x"), Err(Error::NotInFlight { .. })));
    assert_eq!(q.stats().dead_lettered, 0);
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), m.delivery_count()), (id, 1));
    q.ack(id).unwrap();
    assert!(q.dead_letters().unwrap().dequeue().unwrap().is_none());
}

#[test]
fn unacknowledged_deliveries_before_a_restart_count() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || manual().max_deliveries(2);
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        q.enqueue("crashy").unwrap();
        q.enqueue("fine").unwrap();
        assert_eq!(q.dequeue().unwrap().unwrap().delivery_count(), 1);
        q.close().unwrap();
    }
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        let m = q.dequeue().unwrap().unwrap();
        assert_eq!((m.payload(), m.delivery_count()), (&b"crashy"[..], 2));
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.payload(), b"fine");
    q.ack(m.id()).unwrap();
    assert!(q.dequeue().unwrap().is_none());
    let d = q.dead_letters().unwrap().dequeue().unwrap().unwrap();
    assert_eq!(d.payload(), b"crashy");
    assert_eq!(d.header("dlq.original_id"), Some("1"));
}

#[test]
fn dead_letters_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
        q.enqueue("dead").unwrap();
        let m = q.dequeue().unwrap().unwrap();
        q.nack(m.id(), "bad").unwrap();
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
    assert!(q.dequeue().unwrap().is_none());
    assert_eq!(q.stats().dead_lettered, 1);
    let dlq = q.dead_letters().unwrap();
    let d = dlq.dequeue().unwrap().unwrap();
    assert_eq!(d.payload(), b"dead");
    // The dead-letter queue is a full queue: seek back and read again.
    dlq.ack(d.id()).unwrap();
    dlq.seek_to_id(d.id()).unwrap();
    assert_eq!(dlq.dequeue().unwrap().unwrap().payload(), b"dead");
}

/// Regression: a message with more than 60 headers lost its oldest ones to make room
/// for the `dlq.*` headers.
#[test]
fn a_message_with_64_headers_keeps_them_all_and_gets_the_dlq_headers() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
    let opts = (0..64).fold(EnqueueOptions::new(), |o, i| o.header(format!("k{i}"), "v"));
    q.enqueue_with("full", &opts).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    q.nack(m.id(), "why").unwrap();
    let d = q.dead_letters().unwrap().dequeue().unwrap().unwrap();
    assert_eq!(d.payload(), b"full");
    assert_eq!(d.headers().len(), 68);
    assert_eq!(d.headers()[..64], *m.headers());
    assert_eq!(dlq_headers(&d).len(), 4);
    assert_eq!(d.header("dlq.reason"), Some("why"));
}

/// 64 headers of exactly 64 KiB in all, one key of 256 bytes: a message at every header
/// limit.
fn headers_at_the_limits() -> Vec<(String, String)> {
    let mut hs: Vec<(String, String)> = (0..64)
        .map(|i| (format!("h{i:02}"), String::new()))
        .collect();
    hs[0].0 = "k".repeat(256);
    let keys: usize = hs.iter().map(|(k, _)| k.len()).sum();
    let each = (64 * 1024 - keys) / 64;
    for (i, (_, v)) in hs.iter_mut().enumerate() {
        *v = char::from(b'a' + (i % 26) as u8).to_string().repeat(each);
    }
    // The rest on the last one, two bytes at a time (`ß` is 2 bytes of UTF-8) and one.
    let rest = 64 * 1024 - keys - 64 * each;
    hs[63].1.push_str(&"ß".repeat(rest / 2));
    hs[63].1.push_str(&"z".repeat(rest % 2));
    assert_eq!(
        hs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        64 * 1024
    );
    hs
}

fn with_headers(hs: &[(String, String)]) -> EnqueueOptions {
    hs.iter().fold(EnqueueOptions::new(), |o, (k, v)| {
        o.header(k.clone(), v.clone())
    })
}

/// A reason of 256 characters of 4 bytes each, then a second line that is dropped.
fn longest_reason() -> String {
    format!("{}\nsecond line", "\u{1F4A5}".repeat(300))
}

fn assert_dead_letter_of(d: &Message, payload: &[u8], user: &[(String, String)], id: u64) {
    assert_eq!(d.payload(), payload);
    assert_eq!(d.headers().len(), user.len() + 4);
    assert_eq!(
        d.headers()[..user.len()],
        *user,
        "user headers intact, in order"
    );
    let keys: Vec<&str> = dlq_headers(d).iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "dlq.original_id",
            "dlq.delivery_count",
            "dlq.reason",
            "dlq.last_failure"
        ]
    );
    assert_eq!(d.header("dlq.original_id"), Some(&*id.to_string()));
    assert_eq!(d.header("dlq.reason"), Some(&*"\u{1F4A5}".repeat(256)));
}

/// Regression: a message at the header limits could never be moved (the `dlq.*`
/// headers took its record over them): its nack failed, and every later dequeue
/// returned that error, before and after a reopen, so no other message was delivered.
#[test]
fn a_message_at_the_header_limits_is_dead_lettered_and_requeued_whole() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || manual().max_deliveries(2);
    let user = headers_at_the_limits();
    let poison_id;
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        // Exactly at the limits: one byte more is refused.
        let mut over = user.clone();
        over[1].1.push('x');
        assert!(matches!(
            q.enqueue_with("p", &with_headers(&over)),
            Err(Error::HeadersTooLarge { .. })
        ));
        poison_id = q.enqueue_with("poison", &with_headers(&user)).unwrap().id();
        q.enqueue("a").unwrap();
        q.enqueue("b").unwrap();
        q.enqueue("c").unwrap();
        for i in 1..=2 {
            let m = q.dequeue().unwrap().unwrap();
            assert_eq!((m.id(), m.delivery_count()), (poison_id, i));
            assert_eq!(m.headers(), &user[..]);
            q.nack(m.id(), &longest_reason()).unwrap();
        }
        let a = q.dequeue().unwrap().unwrap();
        assert_eq!(a.payload(), b"a");
        q.ack(a.id()).unwrap();
        let s = q.stats();
        assert_eq!((s.dead_lettered, s.dead_letter_failures), (1, 0));
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    for want in [&b"b"[..], b"c"] {
        let m = q.dequeue().unwrap().unwrap();
        assert_eq!(m.payload(), want);
        q.ack(m.id()).unwrap();
    }
    assert!(q.dequeue().unwrap().is_none());
    let dlq = q.dead_letters().unwrap();
    let d = dlq.dequeue().unwrap().unwrap();
    assert_dead_letter_of(&d, b"poison", &user, poison_id);
    assert_eq!(d.header("dlq.delivery_count"), Some("2"));
    // Back in the queue with exactly the user's headers, within the limits again.
    let new_id = q.requeue_dead_letter(d.id()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), m.payload()), (new_id, &b"poison"[..]));
    assert_eq!(m.headers(), &user[..]);
    assert!(dlq.dequeue().unwrap().is_none());
    // And it can be dead-lettered again.
    q.nack(m.id(), "again").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    q.nack(m.id(), &longest_reason()).unwrap();
    let d = dlq.dequeue().unwrap().unwrap();
    assert_dead_letter_of(&d, b"poison", &user, new_id);
}

/// A message whose payload and headers are exactly `max_message_size` (here all a
/// 64 KiB segment allows), with 64 headers and the longest dedup key, moves to the
/// dead-letter queue and back whole.
#[test]
fn a_message_of_max_message_size_is_dead_lettered_and_requeued_whole() {
    let dir = tempfile::tempdir().unwrap();
    let opts = manual().max_deliveries(1).segment_size(64 << 10);
    let max = opts.get_max_message_size();
    let q = Queue::open_with(dir.path(), opts).unwrap();
    let user: Vec<(String, String)> = (0..64)
        .map(|i| (format!("key-{i:02}"), "v".repeat(100)))
        .collect();
    let hbytes: usize = user.iter().map(|(k, v)| k.len() + v.len()).sum();
    let payload: Vec<u8> = (0..max - hbytes).map(|i| (i % 251) as u8).collect();
    assert!(matches!(
        q.enqueue_with([&payload[..], b"x"].concat(), &with_headers(&user)),
        Err(Error::MessageTooLarge { .. })
    ));
    let eo = with_headers(&user).dedup_key(vec![b'd'; 256]);
    let id = q.enqueue_with(&payload, &eo).unwrap().id();
    q.enqueue("next").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.id(), id);
    q.nack(m.id(), &longest_reason()).unwrap();
    let next = q.dequeue().unwrap().unwrap();
    assert_eq!(next.payload(), b"next");
    q.ack(next.id()).unwrap();
    let d = q.dead_letters().unwrap().dequeue().unwrap().unwrap();
    assert_dead_letter_of(&d, &payload, &user, id);
    let new_id = q.requeue_dead_letter(d.id()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), m.payload()), (new_id, &payload[..]));
    assert_eq!(m.headers(), &user[..]);
    assert_eq!(q.stats().dead_letter_failures, 0);
}

/// An expired lease is a failed delivery that reaches the same move: a message at the
/// header limits is dead-lettered whole.
#[test]
fn an_expired_lease_dead_letters_a_message_at_the_header_limits() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        manual()
            .max_deliveries(1)
            .lease_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    let user = headers_at_the_limits();
    let id = q.enqueue_with("slow", &with_headers(&user)).unwrap().id();
    q.enqueue("next").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.id(), id);
    let d = q
        .dead_letters()
        .unwrap()
        .dequeue_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("dead-lettered after the lease expired");
    assert_eq!(d.payload(), b"slow");
    assert_eq!(d.headers()[..64], *user);
    assert_eq!(d.header("dlq.reason"), Some("lease expired"));
    let next = q.dequeue().unwrap().unwrap();
    assert_eq!(next.payload(), b"next");
    assert_eq!(q.stats().dead_letter_failures, 0);
}

/// A move that fails anyway (here: the dead-letter queue's directory cannot be
/// created) is the nack's error only: the message stays deliverable and every other
/// message keeps being delivered, before and after a reopen. Once the dead-letter queue
/// can be written, the next failure moves it.
#[test]
fn a_failed_move_never_blocks_other_messages() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("dead-letter");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let opts = || manual().max_deliveries(1);
    let poison;
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        poison = q.enqueue("poison").unwrap();
        q.enqueue("a").unwrap();
        q.enqueue("b").unwrap();
        let m = q.dequeue().unwrap().unwrap();
        assert_eq!(m.id(), poison);
        assert!(q.nack(poison, "bad").is_err());
        assert_eq!(q.stats().dead_letter_failures, 1);
        // Delivered again (the move is tried again and fails: counted, not returned),
        // and so is everything else.
        let again = q.dequeue().unwrap().unwrap();
        assert_eq!((again.id(), again.delivery_count()), (poison, 2));
        assert_eq!(q.stats().dead_letter_failures, 2);
        let a = q.dequeue().unwrap().unwrap();
        assert_eq!(a.payload(), b"a");
        q.ack(a.id()).unwrap();
        assert!(q.nack(poison, "bad").is_err());
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    let mut got = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        got.push((m.payload().to_vec(), m.delivery_count()));
        if m.id() != poison {
            q.ack(m.id()).unwrap();
        }
    }
    got.sort();
    // Delivered twice before the reopen.
    assert_eq!(got, [(b"b".to_vec(), 1), (b"poison".to_vec(), 3)]);
    // The dead-letter queue can be created now: the next failure moves the message.
    std::fs::remove_file(&blocker).unwrap();
    q.nack(poison, "bad").unwrap();
    assert!(q.dequeue().unwrap().is_none());
    let d = q.dead_letters().unwrap().dequeue().unwrap().unwrap();
    assert_eq!(d.payload(), b"poison");
    assert_eq!(d.header("dlq.delivery_count"), Some("3"));
    let s = q.stats();
    assert_eq!((s.pending, s.in_flight, s.dead_lettered), (0, 0, 1));
}

#[test]
fn redelivery_backoff_delays_each_failure_exponentially() {
    let dir = tempfile::tempdir().unwrap();
    let base = Duration::from_millis(100);
    let q = Queue::open_with(
        dir.path(),
        manual()
            .max_deliveries(0)
            .redelivery_backoff(base, Duration::from_secs(10)),
    )
    .unwrap();
    q.enqueue("backoff").unwrap();
    let mut m = q.dequeue().unwrap().unwrap();
    for failure in 0..3u32 {
        let nacked = Instant::now();
        q.nack(m.id(), "later").unwrap();
        let deliverable = !q.peek(1).unwrap().is_empty();
        // (Unless this thread was descheduled for the whole backoff.)
        assert!(
            !deliverable || nacked.elapsed() >= base * (1 << failure),
            "not deliverable during backoff"
        );
        m = q
            .dequeue_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("delivered after the backoff");
        // Never before its backoff: base, then 2 x base, then 4 x base.
        assert!(nacked.elapsed() >= base * (1 << failure));
        assert_eq!(m.delivery_count(), failure + 2);
    }
    q.ack(m.id()).unwrap();
}

#[test]
fn nack_with_delay_waits_before_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual()).unwrap();
    q.enqueue("delayed").unwrap();
    q.enqueue("other").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    let delay = Duration::from_millis(200);
    let nacked = Instant::now();
    q.nack_with_delay(m.id(), "wait", delay).unwrap();
    // Meanwhile the other message is delivered (the delayed one only if this thread
    // was descheduled for the whole delay).
    let o = q.dequeue().unwrap().unwrap();
    if o.payload() != b"other" {
        assert!(nacked.elapsed() >= delay, "redelivered before its delay");
        return;
    }
    q.ack(o.id()).unwrap();
    let again = q.dequeue_timeout(Duration::from_secs(30)).unwrap().unwrap();
    assert!(nacked.elapsed() >= delay);
    assert_eq!((again.id(), again.delivery_count()), (m.id(), 2));
    q.ack(again.id()).unwrap();
    assert_eq!(q.stats().pending, 0);
}

#[test]
fn dead_letter_moves_in_priority_mode() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().priorities(true).max_deliveries(2)).unwrap();
    q.enqueue_with("low", &EnqueueOptions::new().priority(Priority::Low))
        .unwrap();
    q.enqueue_with("high", &EnqueueOptions::new().priority(Priority::High))
        .unwrap();
    let h = fail_times(&q, 2, |_| "no".into());
    assert_eq!(h.payload(), b"high");
    let l = q.dequeue().unwrap().unwrap();
    assert_eq!(l.payload(), b"low");
    q.ack(l.id()).unwrap();
    let d = q.dead_letters().unwrap().dequeue().unwrap().unwrap();
    assert_eq!((d.payload(), d.priority()), (&b"high"[..], Priority::High));
}

/// Many consumers nacking concurrently: every message ends acknowledged or dead-lettered,
/// exactly once.
#[test]
fn concurrent_nacks_account_for_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(3)).unwrap();
    let n = 600u64;
    for i in 0..n {
        q.enqueue(i.to_le_bytes()).unwrap();
    }
    let done = std::sync::atomic::AtomicU64::new(0);
    let acked: Vec<Vec<u64>> = thread::scope(|s| {
        let q = &q;
        let done = &done;
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(move || {
                    let mut acked = Vec::new();
                    loop {
                        let Some(m) = q.dequeue().unwrap() else {
                            // Others may still hold leases that they will nack.
                            let finished = done.load(std::sync::atomic::Ordering::SeqCst)
                                + q.stats().dead_lettered;
                            if finished == n {
                                break;
                            }
                            thread::yield_now();
                            continue;
                        };
                        let i = u64::from_le_bytes(m.payload().try_into().unwrap());
                        // Every third message always fails; the others succeed on their
                        // second delivery.
                        if i % 3 == 0 || m.delivery_count() == 1 {
                            q.nack(m.id(), "fail").unwrap();
                        } else {
                            q.ack(m.id()).unwrap();
                            acked.push(i);
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    acked
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut acked: Vec<u64> = acked.into_iter().flatten().collect();
    acked.sort_unstable();
    let want_acked: Vec<u64> = (0..n).filter(|i| i % 3 != 0).collect();
    assert_eq!(acked, want_acked);
    let dlq = q.dead_letters().unwrap();
    let mut dead = Vec::new();
    while let Some(d) = dlq.dequeue().unwrap() {
        dead.push(u64::from_le_bytes(d.payload().try_into().unwrap()));
        dlq.ack(d.id()).unwrap();
    }
    dead.sort_unstable();
    let want_dead: Vec<u64> = (0..n).filter(|i| i % 3 == 0).collect();
    assert_eq!(dead, want_dead);
    assert_eq!(q.stats().dead_lettered, want_dead.len() as u64);
    assert_eq!(q.stats().pending, 0);
}

/// Several threads moving the same dead letter back at once: one succeeds, the others
/// get `NotFound`, and the message is in the queue once.
#[test]
fn concurrent_requeues_of_one_dead_letter_move_it_back_once() {
    const THREADS: usize = 4;
    for round in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
        q.enqueue("poison").unwrap();
        let m = q.dequeue().unwrap().unwrap();
        q.nack(m.id(), "bad").unwrap();
        let dead = q.dead_letters().unwrap().peek(1).unwrap()[0].id();
        let start = std::sync::Barrier::new(THREADS);
        let results: Vec<Result<u64, Error>> = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        q.requeue_dead_letter(dead)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let moved = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(moved, 1, "round {round}: {results:?}");
        for r in &results {
            assert!(
                matches!(r, Ok(_) | Err(Error::NotFound { .. })),
                "round {round}: {results:?}"
            );
        }
        let delivered: Vec<Vec<u8>> = std::iter::from_fn(|| q.dequeue().unwrap())
            .map(Message::into_payload)
            .collect();
        assert_eq!(delivered, vec![b"poison".to_vec()], "round {round}");
        assert!(q.dead_letters().unwrap().peek(1).unwrap().is_empty());
    }
}

/// Durations as long as `Duration::MAX` (a lease timeout, a backoff, a nack delay)
/// mean "not within this process's life": accepted, never a panic, the message still
/// tracked (leased, or waiting), and delivered again after a reopen.
#[test]
fn the_longest_durations_mean_never_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        manual()
            .lease_timeout(Duration::MAX)
            .redelivery_backoff(Duration::MAX, Duration::MAX)
    };
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    let ids = q.enqueue_batch(["a", "b", "c"]).unwrap();
    let a = q.dequeue().unwrap().unwrap();
    let b = q.dequeue().unwrap().unwrap();
    let c = q.dequeue().unwrap().unwrap();
    assert_eq!(q.stats().in_flight, 3);
    q.ack(a.id()).unwrap();
    q.nack(b.id(), "backoff of Duration::MAX").unwrap();
    q.nack_with_delay(c.id(), "delay of Duration::MAX", Duration::MAX)
        .unwrap();
    assert!(q.dequeue().unwrap().is_none());
    let s = q.stats();
    assert_eq!((s.pending, s.in_flight), (2, 0), "{s:?}");
    q.close().unwrap();
    drop(q);
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    let again: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| m.id())
        .collect();
    assert_eq!(again, vec![ids.start + 1, ids.start + 2]);
}

/// A message's own headers named `dlq.`-something are kept by the move and by the
/// requeue, like any other header; only the four the move adds are replaced (a stale
/// `dlq.reason` given by the producer does not survive as a second one).
#[test]
fn a_messages_own_dlq_prefixed_headers_survive_the_move_and_the_requeue() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), manual().max_deliveries(1)).unwrap();
    q.enqueue_with(
        "m",
        &EnqueueOptions::new()
            .header("dlq.custom", "mine")
            .header("dlq.reason", "set by the producer"),
    )
    .unwrap();
    fail_times(&q, 1, |_| "failed".into());
    let dlq = q.dead_letters().unwrap();
    let d = dlq.peek(1).unwrap().pop().unwrap();
    assert_eq!(d.header("dlq.custom"), Some("mine"));
    let reasons: Vec<&str> = d
        .headers()
        .iter()
        .filter(|(k, _)| k == "dlq.reason")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(reasons, ["failed"]);
    q.requeue_dead_letter(d.id()).unwrap();
    let back = q.dequeue().unwrap().unwrap();
    let keys: Vec<&str> = back.headers().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["dlq.custom"]);
    assert_eq!(back.header("dlq.custom"), Some("mine"));
}
