//! Headers: ordered key/value string pairs round-tripped exactly; limits (64 headers,
//! 256-byte keys, 64 KiB in all, and `max_message_size` with the payload) are typed
//! errors with nothing written. Regression for the original silently corrupting header
//! values over 65,535 bytes.

use std::time::Duration;

use ledgerq::{EnqueueOptions, Error, Message, Options, Priority, Queue};

fn pairs(m: &Message) -> Vec<(&str, &str)> {
    m.headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn with_headers(n: usize) -> EnqueueOptions {
    (0..n).fold(EnqueueOptions::new(), |o, i| {
        o.header(format!("key-{i}"), format!("value-{i}"))
    })
}

/// Nothing was written: no ID was used, nothing is pending.
fn assert_nothing_written(q: &Queue) {
    let s = q.stats();
    assert_eq!((s.next_id, s.pending), (1, 0), "{s:?}");
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn headers_round_trip_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let opts = EnqueueOptions::new()
        .header("content-type", "application/json")
        .header("trace-id", "abc-123")
        .header("b-before-a", "yes")
        .header("trace-id", "second value")
        .header("empty", "")
        .header("ünïcødé ключ", "値 🚀");
    q.enqueue_with("payload", &opts).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(
        pairs(&m),
        [
            ("content-type", "application/json"),
            ("trace-id", "abc-123"),
            ("b-before-a", "yes"),
            ("trace-id", "second value"),
            ("empty", ""),
            ("ünïcødé ключ", "値 🚀"),
        ]
    );
    assert_eq!(m.header("trace-id"), Some("abc-123"));
    assert_eq!(m.header("empty"), Some(""));
    assert_eq!(m.header("missing"), None);
    assert_eq!(m.payload(), b"payload");
}

#[test]
fn no_headers_means_none() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue("plain").unwrap();
    q.enqueue_with("options without headers", &EnqueueOptions::new())
        .unwrap();
    for _ in 0..2 {
        assert!(q.dequeue().unwrap().unwrap().headers().is_empty());
    }
}

#[test]
fn headers_with_ttl_and_priority() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue_with(
        "x",
        &EnqueueOptions::new()
            .ttl(Duration::from_secs(5))
            .priority(Priority::Medium)
            .header("a", "1")
            .header("b", "2"),
    )
    .unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(pairs(&m), [("a", "1"), ("b", "2")]);
    assert!(m.expires_at().is_some());
    assert_eq!(m.priority(), Priority::Medium);
}

#[test]
fn large_value_with_nul_bytes_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let big = "\0".repeat(1000);
    q.enqueue_with(
        "x",
        &EnqueueOptions::new()
            .header("big", big.clone())
            .header("k1", "v1")
            .header("k2", "v2"),
    )
    .unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.header("big"), Some(big.as_str()));
    assert_eq!(m.headers().len(), 3);
}

#[test]
fn fifty_and_sixty_four_headers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for n in [50, 64] {
        q.enqueue_with("x", &with_headers(n)).unwrap();
        let m = q.dequeue().unwrap().unwrap();
        assert_eq!(m.headers().len(), n);
        for (i, (k, v)) in m.headers().iter().enumerate() {
            assert_eq!(
                (k.as_str(), v.as_str()),
                (&*format!("key-{i}"), &*format!("value-{i}"))
            );
        }
    }
}

#[test]
fn headers_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(dir.path()).unwrap();
        q.enqueue_with("x", &EnqueueOptions::new().header("persist", "me"))
            .unwrap();
        q.close().unwrap();
    }
    let q = Queue::open(dir.path()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(pairs(&m), [("persist", "me")]);
}

#[test]
fn dequeue_batch_returns_each_messages_headers() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for i in 0..5 {
        q.enqueue_with(
            format!("m{i}"),
            &EnqueueOptions::new()
                .header("index", i.to_string())
                .header("common", "value"),
        )
        .unwrap();
    }
    let batch = q.dequeue_batch(10).unwrap();
    assert_eq!(batch.len(), 5);
    for (i, m) in batch.iter().enumerate() {
        assert_eq!(pairs(m), [("index", &*i.to_string()), ("common", "value")]);
    }
}

#[test]
fn batch_with_options_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue_batch_with([
        ("plain", EnqueueOptions::new()),
        ("headers", EnqueueOptions::new().header("h", "1")),
        ("ttl", EnqueueOptions::new().ttl(Duration::from_secs(60))),
        (
            "both",
            EnqueueOptions::new()
                .header("h", "2")
                .ttl(Duration::from_secs(60)),
        ),
    ])
    .unwrap();
    type Seen = (Vec<u8>, Vec<(String, String)>, bool);
    let got: Vec<Seen> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| {
            (
                m.payload().to_vec(),
                m.headers().to_vec(),
                m.expires_at().is_some(),
            )
        })
        .collect();
    let h = |v: &str| vec![("h".to_string(), v.to_string())];
    assert_eq!(
        got,
        [
            (b"plain".to_vec(), vec![], false),
            (b"headers".to_vec(), h("1"), false),
            (b"ttl".to_vec(), vec![], true),
            (b"both".to_vec(), h("2"), true),
        ]
    );
}

#[test]
fn more_than_64_headers_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let err = q.enqueue_with("x", &with_headers(65)).unwrap_err();
    assert!(
        matches!(err, Error::TooManyHeaders { count: 65, max: 64 }),
        "{err:?}"
    );
    assert_nothing_written(&q);
}

#[test]
fn a_key_over_256_bytes_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let ok = "k".repeat(256);
    let long = "k".repeat(257);
    let err = q
        .enqueue_with("x", &EnqueueOptions::new().header(long, "v"))
        .unwrap_err();
    assert!(
        matches!(err, Error::HeaderKeyTooLarge { len: 257, max: 256 }),
        "{err:?}"
    );
    assert_nothing_written(&q);
    q.enqueue_with("x", &EnqueueOptions::new().header(ok.clone(), "v"))
        .unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().header(&ok), Some("v"));
}

/// Regression: the original stored header lengths as u16 without a check, so a
/// 70,000-byte value was silently corrupted.
#[test]
fn headers_over_64_kib_are_rejected_not_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let err = q
        .enqueue_with(
            "x",
            &EnqueueOptions::new().header("big", "v".repeat(70_000)),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::HeadersTooLarge {
                size: 70_003,
                max: 65_536
            }
        ),
        "{err:?}"
    );
    // The limit counts all keys and values together.
    let many = (0..8).fold(EnqueueOptions::new(), |o, i| {
        o.header(format!("k{i}"), "v".repeat(8191))
    });
    let err = q.enqueue_with("x", &many).unwrap_err();
    assert!(matches!(err, Error::HeadersTooLarge { .. }), "{err:?}");
    assert_nothing_written(&q);
    // Exactly at the limit is fine, and round-trips.
    let at_limit = "v".repeat(65_536 - 3);
    q.enqueue_with("x", &EnqueueOptions::new().header("big", at_limit.clone()))
        .unwrap();
    assert_eq!(
        q.dequeue().unwrap().unwrap().header("big"),
        Some(at_limit.as_str())
    );
}

#[test]
fn headers_count_toward_max_message_size() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().max_message_size(1000)).unwrap();
    let payload = vec![1u8; 900];
    let err = q
        .enqueue_with(
            &payload,
            &EnqueueOptions::new().header("h", "v".repeat(200)),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { max: 1000, .. }),
        "{err:?}"
    );
    assert_nothing_written(&q);
    q.enqueue_with(&payload, &EnqueueOptions::new().header("h", "v".repeat(50)))
        .unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), &payload[..]);
}

#[test]
fn a_bad_message_in_a_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let err = q
        .enqueue_batch_with([
            ("good", EnqueueOptions::new().header("a", "b")),
            ("bad", with_headers(65)),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::TooManyHeaders { .. }), "{err:?}");
    assert_nothing_written(&q);
}
