//! The queue's promises: exactly-once hand-off, per-producer order, ack/nack/lease
//! semantics, persistence across close and reopen, blocking consumers, typed errors.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ledgerq::{AckMode, Error, Options, Queue};

fn small() -> Options {
    Options::new().segment_size(1 << 20)
}

/// Runs `producers` x `per` messages through `consumers`, checks each message arrives
/// exactly once and each producer's messages arrive in order (per consumer).
fn exactly_once(mode: AckMode, producers: usize, per: usize, consumers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().ack_mode(mode)).unwrap();
    let done = AtomicBool::new(false);
    let results: Vec<Vec<(u64, usize, usize)>> = thread::scope(|s| {
        let cons: Vec<_> = (0..consumers)
            .map(|_| {
                let q = &q;
                let done = &done;
                s.spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let batch = q.dequeue_batch(64).unwrap();
                        if batch.is_empty() {
                            if done.load(Ordering::SeqCst) {
                                // One last look after the producers finished.
                                let rest = q.dequeue_batch(usize::MAX).unwrap();
                                if rest.is_empty() {
                                    break;
                                }
                                for m in rest {
                                    got.push(decode(&m));
                                    if mode == AckMode::Manual {
                                        q.ack(m.id()).unwrap();
                                    }
                                }
                                continue;
                            }
                            thread::yield_now();
                            continue;
                        }
                        for m in batch {
                            got.push(decode(&m));
                            if mode == AckMode::Manual {
                                q.ack(m.id()).unwrap();
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        let prods: Vec<_> = (0..producers)
            .map(|p| {
                let q = &q;
                s.spawn(move || {
                    for i in 0..per {
                        let mut payload = [0u8; 100];
                        payload[..8].copy_from_slice(&(p as u64).to_le_bytes());
                        payload[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                        q.enqueue(payload).unwrap();
                    }
                })
            })
            .collect();
        for p in prods {
            p.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        cons.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut ids = HashSet::new();
    let mut per_producer = vec![0usize; producers];
    for got in &results {
        let mut last = vec![None::<usize>; producers];
        let mut last_id = 0;
        for &(id, p, i) in got {
            assert!(ids.insert(id), "message {id} delivered twice");
            assert!(id > last_id, "a consumer saw IDs out of order");
            last_id = id;
            if let Some(prev) = last[p] {
                assert!(i > prev, "producer {p}: {i} after {prev}");
            }
            last[p] = Some(i);
            per_producer[p] += 1;
        }
    }
    assert_eq!(ids.len(), producers * per, "messages lost");
    assert!(per_producer.iter().all(|&n| n == per));
    let s = q.stats();
    assert_eq!(s.pending, 0);
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.total_enqueued, (producers * per) as u64);
}

fn decode(m: &ledgerq::Message) -> (u64, usize, usize) {
    let p = u64::from_le_bytes(m.payload()[..8].try_into().unwrap()) as usize;
    let i = u64::from_le_bytes(m.payload()[8..16].try_into().unwrap()) as usize;
    (m.id(), p, i)
}

#[test]
fn seed_scenario_auto() {
    exactly_once(AckMode::Auto, 3, 10, 2);
}

#[test]
fn seed_scenario_manual() {
    exactly_once(AckMode::Manual, 3, 10, 2);
}

#[test]
fn stress_4x250k_auto() {
    exactly_once(AckMode::Auto, 4, 250_000, 4);
}

#[test]
fn stress_4x250k_manual() {
    exactly_once(AckMode::Manual, 4, 250_000, 4);
}

#[test]
fn ids_increase_and_fifo_for_one_producer() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), small()).unwrap();
    let a = q.enqueue(b"a").unwrap();
    let r = q.enqueue_batch([b"b", b"c", b"d"]).unwrap();
    assert_eq!(r.start, a + 1);
    assert_eq!(r.end, a + 4);
    let e = q.enqueue(b"e").unwrap();
    assert_eq!(e, a + 4);
    let got: Vec<Vec<u8>> = q
        .dequeue_batch(10)
        .unwrap()
        .into_iter()
        .map(|m| m.into_payload())
        .collect();
    assert_eq!(
        got,
        vec![
            b"a".to_vec(),
            b"b".to_vec(),
            b"c".to_vec(),
            b"d".to_vec(),
            b"e".to_vec()
        ]
    );
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn consumed_stays_consumed_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_with(dir.path(), small()).unwrap();
        for i in 0..100u32 {
            q.enqueue(i.to_le_bytes()).unwrap();
        }
        for i in 0..40u32 {
            assert_eq!(q.dequeue().unwrap().unwrap().payload(), i.to_le_bytes());
        }
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), small()).unwrap();
    assert_eq!(q.stats().pending, 60);
    for i in 40..100u32 {
        assert_eq!(q.dequeue().unwrap().unwrap().payload(), i.to_le_bytes());
    }
    assert!(q.dequeue().unwrap().is_none());
    // New messages get new IDs.
    assert_eq!(q.enqueue(b"x").unwrap(), 101);
}

#[test]
fn messages_span_segments() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().segment_size(64 << 10).auto_compact(false),
    )
    .unwrap();
    let payload = vec![7u8; 1000];
    for _ in 0..500 {
        q.enqueue(&payload).unwrap();
    }
    assert!(q.stats().segments > 1);
    let mut n = 0;
    while let Some(m) = q.dequeue().unwrap() {
        assert_eq!(m.payload(), &payload[..]);
        n += 1;
    }
    assert_eq!(n, 500);
}

#[test]
fn manual_ack_nack_and_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), small().ack_mode(AckMode::Manual)).unwrap();
    let a = q.enqueue(b"a").unwrap();
    let b = q.enqueue(b"b").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), m.delivery_count()), (a, 1));
    assert_eq!(q.stats().in_flight, 1);
    q.nack(a, "retry").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), m.delivery_count()), (a, 2));
    q.ack(a).unwrap();
    assert!(matches!(q.ack(a), Err(Error::NotInFlight { id }) if id == a));
    assert!(matches!(
        q.nack(999, "x"),
        Err(Error::NotInFlight { id: 999 })
    ));
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.id(), b);
    q.ack(b).unwrap();
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn auto_mode_rejects_ack() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), small()).unwrap();
    let id = q.enqueue(b"a").unwrap();
    q.dequeue().unwrap().unwrap();
    assert!(matches!(q.ack(id), Err(Error::NotInFlight { .. })));
    assert!(matches!(q.nack(id, "no"), Err(Error::NotInFlight { .. })));
}

#[test]
fn expired_lease_delivers_again() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        small()
            .ack_mode(AckMode::Manual)
            .lease_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    let id = q.enqueue(b"a").unwrap();
    let leased = Instant::now();
    assert_eq!(q.dequeue().unwrap().unwrap().id(), id);
    // Not delivered again while leased (a descheduled thread may look after 50 ms).
    if let Some(m) = q.dequeue().unwrap() {
        assert!(
            leased.elapsed() >= Duration::from_millis(50),
            "redelivered early"
        );
        assert_eq!((m.id(), m.delivery_count()), (id, 2));
        return;
    }
    let m = q
        .dequeue_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("the lease expires and the message comes back");
    assert_eq!((m.id(), m.delivery_count()), (id, 2));
}

#[test]
fn unacked_messages_come_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || small().ack_mode(AckMode::Manual);
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        for i in 0..10u8 {
            q.enqueue([i]).unwrap();
        }
        for _ in 0..6 {
            let m = q.dequeue().unwrap().unwrap();
            if m.payload()[0] % 2 == 0 {
                q.ack(m.id()).unwrap();
            }
        }
        q.close().unwrap();
    }
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    let mut got = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        let redelivered = m.payload()[0] < 6;
        assert_eq!(m.delivery_count(), if redelivered { 2 } else { 1 });
        got.push(m.payload()[0]);
        q.ack(m.id()).unwrap();
    }
    assert_eq!(got, vec![1, 3, 5, 6, 7, 8, 9]);
    q.close().unwrap();
    drop(q);
    let q = Queue::open_with(dir.path(), opts()).unwrap();
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn dequeue_timeout_wakes_on_enqueue() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open_with(dir.path(), small()).unwrap());
    let q2 = q.clone();
    let t = thread::spawn(move || q2.dequeue_timeout(Duration::from_secs(10)).unwrap());
    thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    q.enqueue(b"wake").unwrap();
    let m = t.join().unwrap().expect("woken with the message");
    assert_eq!(m.payload(), b"wake");
    assert!(start.elapsed() < Duration::from_secs(5));
    // A timeout with nothing to take returns None.
    assert!(q
        .dequeue_timeout(Duration::from_millis(10))
        .unwrap()
        .is_none());
}

#[test]
fn stream_delivers_and_ends_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open_with(dir.path(), small()).unwrap());
    let q2 = q.clone();
    let t = thread::spawn(move || {
        let mut got = Vec::new();
        for m in q2.stream() {
            got.push(m.unwrap().into_payload());
        }
        got
    });
    for i in 0..5u8 {
        q.enqueue([i]).unwrap();
    }
    let start = Instant::now();
    while q.stats().pending > 0 && start.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(5));
    }
    q.close().unwrap();
    let got = t.join().unwrap();
    assert_eq!(got, (0..5u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert!(matches!(q.enqueue(b"late"), Err(Error::Closed)));
    assert!(matches!(q.dequeue(), Err(Error::Closed)));
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    match Queue::open(dir.path()) {
        Err(Error::Locked { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(q);
    let q = Queue::open(dir.path()).expect("the lock is released on drop");
    q.close().unwrap();
    let q2 = Queue::open(dir.path()).expect("the lock is released on close");
    assert!(matches!(q.enqueue(b"x"), Err(Error::Closed)));
    drop(q);
    q2.enqueue(b"still works").unwrap();
}

#[test]
fn typed_errors_and_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Queue::open(&file),
        Err(Error::NotADirectory { .. })
    ));
    let qdir = dir.path().join("q");
    assert!(matches!(
        Queue::open_with(&qdir, Options::new().segment_size(10)),
        Err(Error::InvalidOptions { .. })
    ));
    assert!(matches!(
        Queue::open_with(&qdir, Options::new().lease_timeout(Duration::ZERO)),
        Err(Error::InvalidOptions { .. })
    ));
    assert!(matches!(
        Queue::open_with(&qdir, Options::new().segment_size((64 << 10) + 1)),
        Err(Error::InvalidOptions { .. })
    ));
    // Invalid options create nothing.
    assert!(!qdir.exists());
    let q = Queue::open_with(&qdir, small().max_message_size(1000)).unwrap();
    q.enqueue(b"kept").unwrap();
    match q.enqueue(vec![0u8; 1001]) {
        Err(Error::MessageTooLarge { size, max }) => assert_eq!((size, max), (1001, 1000)),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(matches!(
        q.enqueue_batch([vec![1u8; 10], vec![0u8; 2000]]),
        Err(Error::MessageTooLarge { .. })
    ));
    let big: Vec<Vec<u8>> = (0..2000).map(|_| vec![1u8; 900]).collect();
    assert!(matches!(
        q.enqueue_batch(&big),
        Err(Error::BatchTooLarge { .. })
    ));
    let all = q.dequeue_batch(10).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].payload(), b"kept");
    let e = Error::MessageTooLarge { size: 2, max: 1 };
    assert!(!e.to_string().is_empty());
}

#[test]
fn sync_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), small()).unwrap();
    q.enqueue_batch((0..10u8).map(|i| [i])).unwrap();
    q.sync().unwrap();
    let s = q.stats();
    assert_eq!((s.pending, s.total_enqueued, s.next_id), (10, 10, 11));
    assert!(s.segments >= 1 && s.disk_bytes > 0);
    q.dequeue().unwrap();
    assert_eq!(q.stats().pending, 9);
}

#[test]
fn consumed_ids_are_not_reassigned_after_a_lost_journal_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_with(dir.path(), small()).unwrap();
        q.enqueue_batch((0..10u8).map(|i| [i])).unwrap();
        assert_eq!(q.dequeue_batch(10).unwrap().len(), 10);
        q.close().unwrap();
    }
    // A power loss that kept the consumer state but lost the journal's data and its
    // checkpoint (with the checkpoint kept, the missing records are reported instead).
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "seg") || p.ends_with("CHECKPOINT") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let q = Queue::open_with(dir.path(), small()).unwrap();
    let id = q.enqueue(b"new").unwrap();
    assert!(id > 10, "ID {id} was already consumed");
    let m = q.dequeue().unwrap().expect("the new message is delivered");
    assert_eq!((m.id(), m.payload()), (id, &b"new"[..]));
}

#[test]
fn an_absurd_consumed_watermark_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_with(dir.path(), small()).unwrap();
        q.enqueue(b"a").unwrap();
        q.close().unwrap();
    }
    let state = dir.path().join("consumer.default.state");
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&state, bytes).unwrap();
    match Queue::open_with(dir.path(), small()) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!((path, offset), (state, 16));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Compaction removes segments below the consumed watermark while consumers run: a
/// consumer that claimed a handle and has not read it yet must never lose it, even when
/// another consumer's later claim has moved the watermark past it.
#[test]
fn compaction_never_removes_a_record_a_consumer_is_about_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .segment_size(64 << 10)
            .flush_interval(Duration::from_millis(2)),
    )
    .unwrap();
    let total = 200_000usize;
    let done = AtomicBool::new(false);
    let seen: usize = thread::scope(|s| {
        let cons: Vec<_> = (0..3)
            .map(|c| {
                let (q, done) = (&q, &done);
                s.spawn(move || {
                    let mut n = 0;
                    loop {
                        let got = if c == 0 {
                            q.dequeue().unwrap().map_or(0, |_| 1)
                        } else {
                            q.dequeue_batch(7 * c).unwrap().len()
                        };
                        if got == 0 {
                            if done.load(Ordering::SeqCst) && q.stats().pending == 0 {
                                break;
                            }
                            thread::yield_now();
                        }
                        n += got;
                    }
                    n
                })
            })
            .collect();
        for i in 0..total {
            q.enqueue((i as u64).to_le_bytes()).unwrap();
        }
        done.store(true, Ordering::SeqCst);
        cons.into_iter().map(|c| c.join().unwrap()).sum()
    });
    assert_eq!(seen, total);
}

/// Whether the directory's checkpoint file is a clean-close one.
fn clean_checkpoint(dir: &std::path::Path) -> bool {
    let report = ledgerq_recovery::verify(dir).unwrap();
    report
        .checkpoint
        .and_then(|c| c.checkpoint)
        .is_some_and(|c| c.clean)
}

#[test]
fn abandon_stops_like_a_kill_and_the_directory_reopens() {
    let d = tempfile::tempdir().unwrap();
    let opts = small().ack_mode(AckMode::Manual);
    for kill in [false, true] {
        let q = Queue::open_with(d.path(), opts.clone()).unwrap();
        q.enqueue(b"a").unwrap();
        q.enqueue(b"b").unwrap();
        let leased = q.dequeue().unwrap().unwrap();
        if kill {
            q.abandon();
            assert!(matches!(q.enqueue(b"c"), Err(Error::Closed)));
            // No last checkpoint: the next open recovers as after a crash.
            assert!(!clean_checkpoint(d.path()));
        } else {
            q.close().unwrap();
            assert!(clean_checkpoint(d.path()));
        }
        drop(q);
        // The lock is released: the same process opens the directory again, and the
        // leased message comes back with the rest.
        let q = Queue::open_with(d.path(), opts.clone()).unwrap();
        let mut got = Vec::new();
        while let Some(m) = q.dequeue().unwrap() {
            got.push(m.payload().to_vec());
            q.ack(m.id()).unwrap();
        }
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()], "kill {kill}");
        assert_eq!(leased.payload(), b"a");
        q.close().unwrap();
    }
}

#[test]
fn verify_reports_acknowledged_and_delivered_messages_above_the_watermark() {
    let d = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_with(d.path(), small().ack_mode(AckMode::Manual)).unwrap();
        q.enqueue_batch((0..5u8).map(|i| [i])).unwrap();
        // The first stays leased, the second is acknowledged, the third nacked and
        // delivered again.
        let _first = q.dequeue().unwrap().unwrap();
        let b = q.dequeue().unwrap().unwrap();
        let c = q.dequeue().unwrap().unwrap();
        q.ack(b.id()).unwrap();
        q.nack(c.id(), "again").unwrap();
        let c = q.dequeue().unwrap().unwrap();
        assert_eq!(c.delivery_count(), 2);
        q.close().unwrap();
    }
    let r = ledgerq_recovery::verify(d.path()).unwrap();
    let c = r.consumer.clone().unwrap();
    assert_eq!(c.watermark, Some(1), "{r}");
    assert_eq!(
        (
            c.acknowledged,
            c.delivered,
            c.max_deliveries,
            c.dead_lettering
        ),
        (1, 2, 2, 0),
        "{r}"
    );
    assert!(
        r.to_string()
            .contains("1 acknowledged, 2 delivered and not acknowledged (at most 2 time(s))"),
        "{r}"
    );
}

/// The ack mode may change between opens, except where the new mode cannot read what
/// the old one recorded: acknowledgements made out of order in manual-ack mode (auto-ack
/// mode would deliver those messages again). That open is refused with a typed error
/// and changes nothing; once the gap is acknowledged, the change is allowed.
#[test]
fn an_ack_mode_change_never_brings_back_acknowledged_messages() {
    let dir = tempfile::tempdir().unwrap();
    let manual = || Options::new().ack_mode(AckMode::Manual);
    let q = Queue::open_with(dir.path(), manual()).unwrap();
    q.enqueue_batch(["a", "b", "c"]).unwrap();
    let a = q.dequeue().unwrap().unwrap();
    let b = q.dequeue().unwrap().unwrap();
    q.ack(b.id()).unwrap(); // out of order: `a` is still leased
    q.close().unwrap();
    drop(q);
    let refused = |dir: &std::path::Path| matches!(Queue::open(dir), Err(Error::InvalidOptions { reason }) if reason.contains("AckMode::Manual"));
    assert!(refused(dir.path()));
    // The same for a state file from before the mode was recorded (flags cleared).
    let state = dir.path().join("consumer.default.state");
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[24..32].copy_from_slice(&0u64.to_le_bytes());
    std::fs::write(&state, &bytes).unwrap();
    assert!(refused(dir.path()));
    // Nothing changed: in manual mode `a` comes back, `b` does not.
    let q = Queue::open_with(dir.path(), manual()).unwrap();
    let again = q.dequeue().unwrap().unwrap();
    assert_eq!((again.id(), again.delivery_count()), (a.id(), 2));
    q.ack(a.id()).unwrap();
    q.close().unwrap();
    drop(q);
    // Acknowledged in order now: auto mode opens and delivers only `c`.
    let q = Queue::open(dir.path()).unwrap();
    let rest: Vec<Vec<u8>> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(ledgerq::Message::into_payload)
        .collect();
    assert_eq!(rest, vec![b"c".to_vec()]);
    q.close().unwrap();
    drop(q);
    // Auto back to manual is always allowed.
    let q = Queue::open_with(dir.path(), manual()).unwrap();
    q.enqueue("d").unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"d");
}

/// A message moved to the dead-letter queue out of order in manual-ack mode is not
/// delivered again by an auto-ack open (refused, as any out-of-order settlement).
#[test]
fn an_ack_mode_change_never_brings_back_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().ack_mode(AckMode::Manual).max_deliveries(1),
    )
    .unwrap();
    q.enqueue_batch(["keep", "poison"]).unwrap();
    let _keep = q.dequeue().unwrap().unwrap();
    let poison = q.dequeue().unwrap().unwrap();
    q.nack(poison.id(), "bad").unwrap();
    assert_eq!(q.dead_letters().unwrap().stats().pending, 1);
    q.close().unwrap();
    drop(q);
    assert!(matches!(
        Queue::open(dir.path()),
        Err(Error::InvalidOptions { .. })
    ));
}

/// Priority auto-ack mode records consumption per level; a manual-ack open rewrites it
/// as acknowledgements (which manual-ack mode reads), so a level consumed ahead of a
/// lower one stays consumed; beyond the per-ID entries' window it cannot, and refuses.
#[test]
fn an_ack_mode_change_never_brings_back_a_consumed_priority_level() {
    use ledgerq::{EnqueueOptions, Priority};
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().priorities(true)).unwrap();
    q.enqueue_with("low", &EnqueueOptions::new().priority(Priority::Low))
        .unwrap();
    q.enqueue_with("high", &EnqueueOptions::new().priority(Priority::High))
        .unwrap();
    q.enqueue_with("medium", &EnqueueOptions::new().priority(Priority::Medium))
        .unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"high");
    q.close().unwrap();
    drop(q);
    let manual = || Options::new().ack_mode(AckMode::Manual);
    let q = Queue::open_with(dir.path(), manual()).unwrap();
    assert_eq!(q.stats().pending, 2);
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.payload(), b"medium");
    q.ack(m.id()).unwrap();
    // Leased, not acknowledged: comes back after the reopen.
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"low");
    assert!(q.dequeue().unwrap().is_none());
    q.close().unwrap();
    drop(q);
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(q.stats().pending, 1);
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"low");
    assert!(q.dequeue().unwrap().is_none());
}

/// Beyond the per-ID entries' window (131,072 IDs) a level consumed ahead cannot be
/// rewritten as acknowledgements: the manual-ack open is refused and changes nothing.
#[test]
fn an_ack_mode_change_beyond_the_window_is_refused() {
    use ledgerq::{EnqueueOptions, Priority};
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), Options::new().priorities(true)).unwrap();
    q.enqueue_with("low", &EnqueueOptions::new().priority(Priority::Low))
        .unwrap();
    let high = EnqueueOptions::new().priority(Priority::High);
    let n = 140_000;
    for _ in 0..n / 1000 {
        q.enqueue_batch_with((0..1000).map(|_| ("h", high.clone())))
            .unwrap();
    }
    let taken = q.dequeue_batch(n).unwrap();
    assert_eq!(taken.len(), n);
    q.close().unwrap();
    drop(q);
    assert!(matches!(
        Queue::open_with(dir.path(), Options::new().ack_mode(AckMode::Manual)),
        Err(Error::InvalidOptions { .. })
    ));
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(q.stats().pending, 1);
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"low");
}

/// Priority queues read per-ID acknowledgements in both modes: a manual-ack session
/// that acknowledged a `High` message ahead of a `Low` one reopens in auto-ack mode
/// with only the `Low` one pending (and counted so).
#[test]
fn a_priority_queue_acknowledged_out_of_order_reopens_in_auto_mode() {
    use ledgerq::{EnqueueOptions, Priority};
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new().priorities(true).ack_mode(AckMode::Manual),
    )
    .unwrap();
    q.enqueue_with("low", &EnqueueOptions::new().priority(Priority::Low))
        .unwrap();
    q.enqueue_with("high", &EnqueueOptions::new().priority(Priority::High))
        .unwrap();
    let high = q.dequeue().unwrap().unwrap();
    assert_eq!(high.payload(), b"high");
    q.ack(high.id()).unwrap();
    q.close().unwrap();
    drop(q);
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(q.stats().pending, 1);
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"low");
    assert!(q.dequeue().unwrap().is_none());
    assert_eq!(q.stats().pending, 0);
}

/// A seek in a manual-ack session of a priority queue holds at the next auto-ack open:
/// the levels start from the watermark, not from per-level marks of an earlier auto-ack
/// session (found by a review: the replayed `High` message was never delivered again).
#[test]
fn a_seek_in_a_manual_session_holds_when_a_priority_queue_reopens_in_auto_mode() {
    use ledgerq::{EnqueueOptions, Priority};
    let dir = tempfile::tempdir().unwrap();
    let opts = |manual: bool| {
        Options::new().priorities(true).ack_mode(if manual {
            AckMode::Manual
        } else {
            AckMode::Auto
        })
    };
    let q = Queue::open_with(dir.path(), opts(false)).unwrap();
    let low = q
        .enqueue_with("low", &EnqueueOptions::new().priority(Priority::Low))
        .unwrap()
        .id();
    q.enqueue_with("high", &EnqueueOptions::new().priority(Priority::High))
        .unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"high");
    q.close().unwrap();
    drop(q);
    let q = Queue::open_with(dir.path(), opts(true)).unwrap();
    assert_eq!(q.stats().pending, 1);
    q.seek_to_id(low).unwrap();
    assert_eq!(q.stats().pending, 2);
    q.close().unwrap();
    drop(q);
    let q = Queue::open_with(dir.path(), opts(false)).unwrap();
    assert_eq!(q.stats().pending, 2);
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| q.dequeue().unwrap())
        .map(ledgerq::Message::into_payload)
        .collect();
    assert_eq!(got, vec![b"high".to_vec(), b"low".to_vec()]);
    assert_eq!(q.stats().pending, 0);
}
