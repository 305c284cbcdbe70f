//! Deduplication: a key seen within its window returns the original ID with
//! `is_duplicate() == true` and writes nothing; queue window and per-message override;
//! bounded by `max_dedup_entries` (the key expiring first is evicted, and counted);
//! rebuilt from the records at open.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use ledgerq::{EnqueueOptions, Error, Options, Priority, Queue};

fn key(k: &str) -> EnqueueOptions {
    EnqueueOptions::new().dedup_key(k)
}

#[test]
fn duplicate_returns_the_original_id_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().dedup_window(Duration::from_secs(300)),
    )
    .unwrap();
    let a = q.enqueue_with("order 123", &key("order-123")).unwrap();
    assert!(!a.is_duplicate());
    let before = q.stats();
    let dup = q
        .enqueue_with("order 123 again", &key("order-123"))
        .unwrap();
    assert!(dup.is_duplicate());
    assert_eq!(dup.id(), a.id());
    let after = q.stats();
    assert_eq!(after.next_id, before.next_id);
    assert_eq!(after.pending, before.pending);
    let b = q.enqueue_with("order 456", &key("order-456")).unwrap();
    assert!(!b.is_duplicate());
    assert_ne!(b.id(), a.id());
    assert_eq!(q.stats().dedup_tracked, 2);
    // Only the originals are delivered.
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"order 123");
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"order 456");
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn a_consumed_message_still_deduplicates_within_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let a = q.enqueue_with("x", &key("k")).unwrap();
    q.dequeue().unwrap().unwrap();
    let again = q.enqueue_with("x", &key("k")).unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (a.id(), true));
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn messages_without_a_key_are_never_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let a = q.enqueue_with("same", &EnqueueOptions::new()).unwrap();
    let b = q.enqueue_with("same", &EnqueueOptions::new()).unwrap();
    assert!(!a.is_duplicate() && !b.is_duplicate());
    assert_ne!(a.id(), b.id());
    assert_eq!(q.stats().dedup_tracked, 0);
}

#[test]
fn per_message_window_overrides_the_queue_window() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().dedup_window(Duration::from_secs(3600)),
    )
    .unwrap();
    let short = key("short").dedup_window(Duration::from_millis(50));
    let t = Instant::now();
    let a = q.enqueue_with("1", &short).unwrap();
    let dup = q.enqueue_with("2", &short).unwrap();
    // A duplicate within the window (unless this thread was descheduled past it).
    if t.elapsed() < Duration::from_millis(50) {
        assert_eq!((dup.id(), dup.is_duplicate()), (a.id(), true));
    }
    let long = q.enqueue_with("3", &key("long")).unwrap();
    thread::sleep(Duration::from_millis(150));
    let fresh = q.enqueue_with("4", &short).unwrap();
    assert!(!fresh.is_duplicate());
    assert!(fresh.id() > a.id());
    // The queue's one-hour window still holds for the other key.
    let dup_long = q.enqueue_with("5", &key("long")).unwrap();
    assert_eq!((dup_long.id(), dup_long.is_duplicate()), (long.id(), true));
}

#[test]
fn queue_window_expires() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().dedup_window(Duration::from_millis(50)),
    )
    .unwrap();
    let t = Instant::now();
    let a = q.enqueue_with("1", &key("k")).unwrap();
    let dup = q.enqueue_with("1", &key("k")).unwrap();
    // A duplicate within the window (unless this thread was descheduled past it).
    assert!(dup.is_duplicate() || t.elapsed() >= Duration::from_millis(50));
    thread::sleep(Duration::from_millis(150));
    let b = q.enqueue_with("1", &key("k")).unwrap();
    assert!(!b.is_duplicate());
    assert_ne!(a.id(), b.id());
}

#[test]
fn invalid_keys_and_windows_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for bad in [
        EnqueueOptions::new().dedup_key(Vec::new()),
        EnqueueOptions::new().dedup_key(vec![b'k'; 257]),
        key("k").dedup_window(Duration::ZERO),
    ] {
        let err = q.enqueue_with("x", &bad).unwrap_err();
        assert!(matches!(err, Error::InvalidMessage { .. }), "{err:?}");
    }
    assert_eq!(q.stats().next_id, 1);
    // 256 bytes is fine.
    q.enqueue_with("x", &EnqueueOptions::new().dedup_key(vec![b'k'; 256]))
        .unwrap();
    assert!(matches!(
        Queue::open_with(
            tempfile::tempdir().unwrap().path(),
            Options::new().dedup_window(Duration::ZERO)
        ),
        Err(Error::InvalidOptions { .. })
    ));
}

#[test]
fn dedup_works_with_other_options() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().priorities(true)).unwrap();
    let opts = key("all")
        .priority(Priority::High)
        .ttl(Duration::from_secs(60))
        .header("h", "v");
    let a = q.enqueue_with("first", &opts).unwrap();
    let b = q.enqueue_with("second", &opts).unwrap();
    assert_eq!((b.id(), b.is_duplicate()), (a.id(), true));
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(
        (m.payload(), m.priority(), m.header("h")),
        (&b"first"[..], Priority::High, Some("v"))
    );
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn batch_deduplicates_against_the_past_and_within_itself() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let old = q.enqueue_with("old", &key("old")).unwrap();
    let res = q
        .enqueue_batch_with([
            ("a", key("a")),
            ("old again", key("old")),
            ("plain", EnqueueOptions::new()),
            ("a again", key("a")),
            ("b", key("b")),
        ])
        .unwrap();
    let flags: Vec<bool> = res.iter().map(|e| e.is_duplicate()).collect();
    assert_eq!(flags, [false, true, false, true, false]);
    assert_eq!(res[1].id(), old.id());
    assert_eq!(res[3].id(), res[0].id());
    // The written ones have contiguous IDs.
    assert_eq!(res[2].id(), res[0].id() + 1);
    assert_eq!(res[4].id(), res[0].id() + 2);
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(|m| m.into_payload())
        .collect();
    assert_eq!(
        got,
        [
            b"old".to_vec(),
            b"a".to_vec(),
            b"plain".to_vec(),
            b"b".to_vec()
        ]
    );
    // A batch of duplicates only writes nothing.
    let next = q.stats().next_id;
    let res = q
        .enqueue_batch_with([("x", key("a")), ("y", key("b"))])
        .unwrap();
    assert!(res.iter().all(|e| e.is_duplicate()));
    assert_eq!(q.stats().next_id, next);
}

#[test]
fn dedup_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new().dedup_window(Duration::from_secs(3600));
    let a;
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        a = q.enqueue_with("x", &key("persisted")).unwrap();
        q.enqueue_with("y", &key("short").dedup_window(Duration::from_millis(50)))
            .unwrap();
        q.close().unwrap();
    }
    thread::sleep(Duration::from_millis(150));
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    let again = q.enqueue_with("x", &key("persisted")).unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (a.id(), true));
    // An expired key is not rebuilt.
    assert!(!q
        .enqueue_with("y", &key("short").dedup_window(Duration::from_millis(50)))
        .unwrap()
        .is_duplicate());
}

#[test]
fn dedup_survives_reopen_after_a_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let a;
    {
        let q = Queue::open(dir.path()).unwrap();
        a = q.enqueue_with("x", &key("k")).unwrap();
        // Leak the queue: no close, no drop (the process-kill case is in the crash tests).
        std::mem::forget(q);
    }
    // The leaked handle still holds the lock: open a copy of the directory instead.
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "LOCK" {
            // The live queue's background threads may rename or remove a temporary
            // file between the listing and the copy.
            match std::fs::copy(e.path(), copy.path().join(e.file_name())) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("copy {}: {err}", e.path().display()),
            }
        }
    }
    let q = Queue::open(copy.path()).unwrap();
    let again = q.enqueue_with("x", &key("k")).unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (a.id(), true));
}

/// The dedup window outlives the message: a key of a consumed message whose segment was
/// removed must still be a duplicate after a reopen.
#[test]
fn dedup_survives_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new().segment_size(64 << 10).auto_compact(false);
    let a;
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        a = q.enqueue_with("x", &key("k")).unwrap();
        for _ in 0..1000 {
            q.enqueue([0u8; 200]).unwrap();
        }
        while q.dequeue().unwrap().is_some() {}
        // Everything is consumed, but the segments holding keys still within their
        // window are kept: the table is rebuilt from them at open.
        q.compact().unwrap();
        assert!(q.stats().segments > 1);
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    let again = q.enqueue_with("x", &key("k")).unwrap();
    assert_eq!((again.id(), again.is_duplicate()), (a.id(), true));
}

#[test]
fn table_is_bounded_and_evicts_the_key_expiring_first() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().max_dedup_entries(5)).unwrap();
    let hour = Duration::from_secs(3600);
    let first = q
        .enqueue_with("0", &key("k0").dedup_window(Duration::from_secs(600)))
        .unwrap();
    let mut ids = vec![first.id()];
    for i in 1..5 {
        ids.push(
            q.enqueue_with(i.to_string(), &key(&format!("k{i}")).dedup_window(hour))
                .unwrap()
                .id(),
        );
    }
    let s = q.stats();
    assert_eq!((s.dedup_tracked, s.dedup_evicted), (5, 0));
    // The sixth key evicts k0, whose window ends first.
    q.enqueue_with("5", &key("k5").dedup_window(hour)).unwrap();
    let s = q.stats();
    assert_eq!((s.dedup_tracked, s.dedup_evicted), (5, 1));
    for (i, id) in ids.iter().enumerate().skip(1) {
        let e = q
            .enqueue_with("again", &key(&format!("k{i}")).dedup_window(hour))
            .unwrap();
        assert_eq!((e.id(), e.is_duplicate()), (*id, true), "k{i}");
    }
    assert!(!q.enqueue_with("0", &key("k0")).unwrap().is_duplicate());
}

#[test]
fn table_never_exceeds_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().max_dedup_entries(100)).unwrap();
    for i in 0..1000 {
        q.enqueue_with("x", &key(&format!("key-{i}"))).unwrap();
        assert!(q.stats().dedup_tracked <= 100);
    }
    let s = q.stats();
    assert_eq!(s.dedup_tracked + s.dedup_evicted, 1000, "{s:?}");
    // The newest key is always tracked.
    assert!(q.enqueue_with("x", &key("key-999")).unwrap().is_duplicate());
}

/// Keys that differ only in their last characters (sequential order numbers) spread over
/// the table: well below the bound, none is evicted.
#[test]
fn similar_keys_below_the_bound_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().max_dedup_entries(4000)).unwrap();
    let mut ids = Vec::new();
    for i in 0..1000 {
        ids.push(
            q.enqueue_with("x", &key(&format!("order-{i}")))
                .unwrap()
                .id(),
        );
    }
    let s = q.stats();
    assert_eq!((s.dedup_tracked, s.dedup_evicted), (1000, 0), "{s:?}");
    for (i, id) in ids.iter().enumerate() {
        let e = q.enqueue_with("x", &key(&format!("order-{i}"))).unwrap();
        assert_eq!((e.id(), e.is_duplicate()), (*id, true), "order-{i}");
    }
}

#[test]
fn concurrent_producers_write_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let results: Vec<Vec<(u64, u64, bool)>> = thread::scope(|s| {
        let q = &q;
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    (0..200u64)
                        .map(|k| {
                            let e = q
                                .enqueue_with(k.to_le_bytes(), &key(&format!("key-{k}")))
                                .unwrap();
                            (k, e.id(), e.is_duplicate())
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut id_of: HashMap<u64, u64> = HashMap::new();
    let mut originals = 0;
    for (k, id, dup) in results.into_iter().flatten() {
        assert_eq!(*id_of.entry(k).or_insert(id), id, "key {k} got two IDs");
        if !dup {
            originals += 1;
        }
    }
    assert_eq!(originals, 200);
    assert_eq!(q.stats().pending, 200);
    let mut seen = 0;
    while let Some(m) = q.dequeue().unwrap() {
        let k = u64::from_le_bytes(m.payload().try_into().unwrap());
        assert_eq!(id_of[&k], m.id());
        seen += 1;
    }
    assert_eq!(seen, 200);
}
