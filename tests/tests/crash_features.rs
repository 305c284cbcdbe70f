//! Process kills during the queue features: a child process works on a queue as fast as
//! it can, reporting each call that returned on its stdout; the parent kills it with
//! SIGKILL at a random moment, again and again, then reopens the queue and checks it.
//!
//! - Priorities (manual ack): in every run, each level is delivered in FIFO order, High
//!   before Medium before Low; nothing acknowledged is delivered again; nothing is lost.
//! - Dedup: a key enqueued before a kill is still a duplicate (with the same ID) after
//!   the reopen.
//! - Dead letters: after kills during nack storms every message is acknowledged,
//!   still deliverable, or in the dead-letter queue: exactly one of these, never lost.
//!
//! The child is this same test binary, re-run with `LEDGERQ_FEATURE_CHILD` set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use ledgerq::{AckMode, EnqueueOptions, Options, Priority, Queue};

/// Kill points per test (`LEDGERQ_KILLS` may change it).
fn kills() -> usize {
    std::env::var("LEDGERQ_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn level_of(i: u64) -> Priority {
    match i % 3 {
        0 => Priority::Low,
        1 => Priority::Medium,
        _ => Priority::High,
    }
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(64 + (i % 50) as usize, (i % 251) as u8);
    p
}

fn index(p: &[u8]) -> u64 {
    let i = u64::from_le_bytes(p[..8].try_into().unwrap());
    assert_eq!(p, &payload(i)[..], "payload of message {i}");
    i
}

fn priority_opts() -> Options {
    Options::new()
        .segment_size(64 << 10)
        .priorities(true)
        .ack_mode(AckMode::Manual)
        // Unacknowledged messages come back after every kill, never dead-lettered.
        .max_deliveries(0)
        // No promotion: the order checked is the pure priority order.
        .starvation_window(Duration::ZERO)
        .flush_interval(Duration::from_millis(20))
}

fn priority_auto_opts() -> Options {
    priority_opts().ack_mode(AckMode::Auto)
}

fn dedup_opts() -> Options {
    Options::new()
        .segment_size(64 << 10)
        .dedup_window(Duration::from_secs(3600))
        // Far more than the keys the children enqueue: nothing is evicted.
        .max_dedup_entries(1 << 20)
        .flush_interval(Duration::from_millis(20))
}

fn dead_letter_opts() -> Options {
    Options::new()
        .segment_size(64 << 10)
        .ack_mode(AckMode::Manual)
        .max_deliveries(3)
        .flush_interval(Duration::from_millis(20))
}

/// The child's body: runs only when the parent re-executes the binary.
#[test]
fn crash_features_child() {
    let Ok(spec) = std::env::var("LEDGERQ_FEATURE_CHILD") else {
        return;
    };
    let mut parts = spec.split('|');
    let dir = parts.next().unwrap().to_string();
    let role = parts.next().unwrap().to_string();
    let start: u64 = parts.next().unwrap().parse().unwrap();
    match role.as_str() {
        "priority" => {
            let q = Queue::open_with(&dir, priority_opts()).unwrap();
            println!("ready");
            loop {
                let Some(m) = q.dequeue().unwrap() else {
                    ledgerq_tests::idle();
                    continue;
                };
                let i = index(m.payload());
                println!("D {} {i}", m.id());
                // Leave some unacknowledged: they come back after the kill.
                if i % 7 != 0 {
                    q.ack(m.id()).unwrap();
                    println!("A {}", m.id());
                }
            }
        }
        "priority_auto" => {
            let q = Queue::open_with(&dir, priority_auto_opts()).unwrap();
            println!("ready");
            loop {
                let Some(m) = q.dequeue().unwrap() else {
                    ledgerq_tests::idle();
                    continue;
                };
                println!("C {} {}", m.id(), index(m.payload()));
            }
        }
        "dedup" => {
            let q = Queue::open_with(&dir, dedup_opts()).unwrap();
            println!("ready");
            // Enqueue the last keys of the previous run again: duplicates.
            let mut n = start.saturating_sub(20);
            loop {
                let e = q
                    .enqueue_with(
                        payload(n),
                        &EnqueueOptions::new().dedup_key(format!("key-{n}")),
                    )
                    .unwrap();
                println!("E {n} {} {}", e.id(), u8::from(e.is_duplicate()));
                n += 1;
            }
        }
        _ => {
            let q = Queue::open_with(&dir, dead_letter_opts()).unwrap();
            println!("ready");
            loop {
                let Some(m) = q.dequeue().unwrap() else {
                    ledgerq_tests::idle();
                    continue;
                };
                let i = index(m.payload());
                // Every fourth message always fails; the others succeed on their
                // third delivery.
                if i % 4 == 0 || m.delivery_count() < 3 {
                    q.nack(m.id(), "nack storm\nsecond line").unwrap();
                } else {
                    q.ack(m.id()).unwrap();
                    println!("A {i}");
                }
            }
        }
    }
}

/// Runs the child until killed at a random moment; returns the lines it reported.
fn run_child(dir: &Path, role: &str, start: u64) -> Vec<String> {
    let what = format!("{}|{role}|{start}", dir.display());
    ledgerq_tests::run_killed_child(
        "crash_features_child",
        "LEDGERQ_FEATURE_CHILD",
        &what,
        40_000,
    )
}

fn fields(line: &str, tag: &str) -> Option<Vec<u64>> {
    let rest = line.strip_prefix(tag)?;
    rest.split_whitespace().map(|f| f.parse().ok()).collect()
}

fn fill(dir: &Path, opts: Options, n: u64, with_levels: bool) {
    let q = Queue::open_with(dir, opts).unwrap();
    for i in 0..n {
        let o = if with_levels {
            EnqueueOptions::new().priority(level_of(i))
        } else {
            EnqueueOptions::new()
        };
        q.enqueue_with(payload(i), &o).unwrap();
    }
    q.close().unwrap();
}

#[test]
fn kill_while_consuming_by_priority() {
    let dir = tempfile::tempdir().unwrap();
    let n = 6000u64;
    fill(dir.path(), priority_opts(), n, true);
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut index_of: BTreeMap<u64, u64> = BTreeMap::new();
    for _ in 0..kills() {
        let lines = run_child(dir.path(), "priority", 0);
        // Per run: each level FIFO, and levels in priority order.
        let mut last_of_level: [Option<u64>; 3] = [None; 3];
        let mut lowest_level_seen = Priority::High;
        for line in &lines {
            if let Some(v) = fields(line, "D ") {
                let (id, i) = (v[0], v[1]);
                assert!(!acked.contains(&id), "acknowledged ID {id} delivered again");
                assert_eq!(*index_of.entry(id).or_insert(i), i, "ID {id} changed");
                let p = level_of(i);
                let l = usize::from(p.as_u8());
                if let Some(prev) = last_of_level[l] {
                    assert!(prev < id, "level {p:?}: {id} after {prev}");
                }
                last_of_level[l] = Some(id);
                assert!(
                    p <= lowest_level_seen,
                    "{p:?} message {id} after a {lowest_level_seen:?} one"
                );
                lowest_level_seen = p;
            } else if let Some(v) = fields(line, "A ") {
                assert!(acked.insert(v[0]), "ID {} acknowledged twice", v[0]);
            }
        }
    }
    assert!(!acked.is_empty(), "the children acknowledged nothing");
    let q = Queue::open_with(dir.path(), priority_opts()).unwrap();
    let mut rest = BTreeSet::new();
    let mut lowest = Priority::High;
    while let Some(m) = q.dequeue().unwrap() {
        assert!(
            !acked.contains(&m.id()),
            "acknowledged ID {} came back",
            m.id()
        );
        let i = index(m.payload());
        assert_eq!(i + 1, m.id());
        assert!(m.priority() <= lowest);
        lowest = m.priority();
        q.ack(m.id()).unwrap();
        assert!(rest.insert(m.id()));
    }
    // Nothing lost: at most one acknowledgement per kill was not reported.
    let missing = n as usize - acked.len() - rest.len();
    let lost: Vec<u64> = (1..=n)
        .filter(|id| !acked.contains(id) && !rest.contains(id))
        .collect();
    assert!(
        missing <= kills(),
        "{missing} messages lost ({} acknowledged, {} left): {:?}",
        acked.len(),
        rest.len(),
        &lost[..lost.len().min(40)]
    );
}

/// Auto-ack priority mode keeps per-level watermarks: after each kill, nothing consumed
/// comes back, each level goes on in FIFO order, and nothing is lost beyond the one
/// message per kill that the child had taken but not reported.
#[test]
fn kill_while_consuming_by_priority_auto_ack() {
    let dir = tempfile::tempdir().unwrap();
    let n = 6000u64;
    fill(dir.path(), priority_auto_opts(), n, true);
    let mut consumed: BTreeSet<u64> = BTreeSet::new();
    let mut last_of_level: [u64; 3] = [0; 3];
    for _ in 0..kills() {
        let lines = run_child(dir.path(), "priority_auto", 0);
        let mut lowest_level_seen = Priority::High;
        for line in &lines {
            let Some(v) = fields(line, "C ") else {
                continue;
            };
            let (id, i) = (v[0], v[1]);
            assert_eq!(i + 1, id);
            assert!(consumed.insert(id), "ID {id} consumed twice");
            let p = level_of(i);
            let l = usize::from(p.as_u8());
            // FIFO within a level, across kills too.
            assert!(
                last_of_level[l] < id,
                "level {p:?}: {id} after {}",
                last_of_level[l]
            );
            last_of_level[l] = id;
            assert!(
                p <= lowest_level_seen,
                "{p:?} message {id} after a lower one"
            );
            lowest_level_seen = p;
        }
    }
    assert!(!consumed.is_empty(), "the children consumed nothing");
    let q = Queue::open_with(dir.path(), priority_auto_opts()).unwrap();
    let mut rest = BTreeSet::new();
    while let Some(m) = q.dequeue().unwrap() {
        assert!(
            !consumed.contains(&m.id()),
            "consumed ID {} came back",
            m.id()
        );
        assert!(rest.insert(m.id()));
    }
    let missing = n as usize - consumed.len() - rest.len();
    assert!(missing <= kills(), "{missing} messages lost");
    assert_eq!(q.stats().pending, 0);
}

#[test]
fn kill_while_enqueuing_with_dedup_keys() {
    let dir = tempfile::tempdir().unwrap();
    // key n -> ID, from every reported enqueue.
    let mut id_of: BTreeMap<u64, u64> = BTreeMap::new();
    let mut next = 0u64;
    let mut duplicates_checked = 0;
    for _ in 0..kills() {
        let lines = run_child(dir.path(), "dedup", next);
        for line in &lines {
            let Some(v) = fields(line, "E ") else {
                continue;
            };
            let (n, id, dup) = (v[0], v[1], v[2] == 1);
            match id_of.get(&n) {
                Some(&first) => {
                    assert!(
                        dup,
                        "key-{n} was reported before the kill, yet not a duplicate"
                    );
                    assert_eq!(id, first, "key-{n}");
                    duplicates_checked += 1;
                }
                None => {
                    id_of.insert(n, id);
                }
            }
            next = next.max(n + 1);
        }
    }
    assert!(
        duplicates_checked > 0,
        "no duplicate was tried after a kill"
    );
    // After the last kill, every reported key is a duplicate of its first ID.
    let q = Queue::open_with(dir.path(), dedup_opts()).unwrap();
    for (&n, &id) in &id_of {
        let e = q
            .enqueue_with(
                payload(n),
                &EnqueueOptions::new().dedup_key(format!("key-{n}")),
            )
            .unwrap();
        assert_eq!((e.id(), e.is_duplicate()), (id, true), "key-{n}");
    }
    // And each key was written once: the messages are the reported ones.
    let mut seen = BTreeSet::new();
    while let Some(m) = q.dequeue().unwrap() {
        let n = index(m.payload());
        assert!(seen.insert(n), "key-{n} written twice");
        if let Some(&id) = id_of.get(&n) {
            assert_eq!(m.id(), id);
        }
    }
    assert!(id_of.keys().all(|n| seen.contains(n)));
}

#[test]
fn kill_during_nack_storms() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    fill(dir.path(), dead_letter_opts(), n, false);
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    for _ in 0..kills() {
        let lines = run_child(dir.path(), "dead-letter", 0);
        for line in &lines {
            if let Some(v) = fields(line, "A ") {
                assert!(acked.insert(v[0]), "message {} acknowledged twice", v[0]);
            }
        }
    }
    assert!(!acked.is_empty(), "the children acknowledged nothing");
    let q = Queue::open_with(dir.path(), dead_letter_opts()).unwrap();
    // Dead letters first, so a still-deliverable message is told apart.
    let dlq = q.dead_letters().unwrap();
    let mut dead = BTreeSet::new();
    while let Some(d) = dlq.dequeue().unwrap() {
        let i = index(d.payload());
        assert!(dead.insert(i), "message {i} dead-lettered twice");
        assert_eq!(d.header("dlq.original_id"), Some(&*(i + 1).to_string()));
        assert!(d.header("dlq.reason").is_some());
        dlq.ack(d.id()).unwrap();
    }
    let mut rest = BTreeSet::new();
    while let Some(m) = q.dequeue().unwrap() {
        let i = index(m.payload());
        assert!(!acked.contains(&i), "acknowledged message {i} came back");
        assert!(
            !dead.contains(&i),
            "message {i} is dead-lettered and deliverable"
        );
        q.ack(m.id()).unwrap();
        assert!(rest.insert(i), "message {i} delivered twice");
    }
    for i in &dead {
        assert!(
            !acked.contains(i),
            "message {i} acknowledged and dead-lettered"
        );
    }
    // A message that succeeds is dead-lettered only if a kill hit its last delivery (a
    // lease lost to a restart is a failed delivery): at most one per kill.
    let unlucky = dead.iter().filter(|&&i| i % 4 != 0).count();
    assert!(unlucky <= kills(), "{unlucky} good messages dead-lettered");
    let missing: Vec<u64> = (0..n)
        .filter(|i| !acked.contains(i) && !dead.contains(i) && !rest.contains(i))
        .collect();
    // Only an acknowledgement not yet reported at a kill may be missing.
    assert!(missing.len() <= kills(), "lost: {missing:?}");
    assert!(missing.iter().all(|i| i % 4 != 0), "lost: {missing:?}");
    assert!(!dead.is_empty(), "nothing was dead-lettered");
}
