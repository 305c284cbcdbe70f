//! Process kills: a child process enqueues (or dequeues and acknowledges) as fast as it
//! can, reporting each call that returned on its stdout; the parent kills it with SIGKILL
//! at a random moment, reopens the queue, and checks that every reported message is
//! present with its exact payload, that nothing reported as consumed or acknowledged comes
//! back, and that the queue accepts and delivers new messages.
//!
//! The child is this same test binary, re-run with `LEDGERQ_CRASH_CHILD` set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use ledgerq::{AckMode, Durability, Options, Queue};

/// Kill points per test (at least 50; `LEDGERQ_KILLS` may raise it).
fn kills() -> usize {
    std::env::var("LEDGERQ_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn opts(durability: Durability, mode: AckMode) -> Options {
    Options::new()
        .segment_size(256 << 10)
        .durability(durability)
        .ack_mode(mode)
        .flush_interval(Duration::from_millis(20))
}

fn payload(n: u64) -> Vec<u8> {
    let len = (n % 97) as usize + 8;
    let mut p = n.to_le_bytes().to_vec();
    p.extend((0..len).map(|i| (n as u8).wrapping_mul(31).wrapping_add(i as u8)));
    p
}

fn parse_durability(s: &str) -> Durability {
    match s {
        "sync" => Durability::Sync,
        _ => Durability::Buffered,
    }
}

/// The child's body: runs only when the parent re-executes the binary.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var("LEDGERQ_CRASH_CHILD") else {
        return;
    };
    let mut parts = spec.split('|');
    let (dir, role, durability, start) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parse_durability(parts.next().unwrap()),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let mode = if role == "enqueue" || role == "consume" {
        AckMode::Auto
    } else {
        AckMode::Manual
    };
    let q = Queue::open_with(&dir, opts(durability, mode)).unwrap();
    println!("ready");
    let mut n = start;
    loop {
        match role.as_str() {
            "enqueue" => {
                let id = q.enqueue(payload(n)).unwrap();
                println!("E {id} {n}");
                n += 1;
            }
            "consume" => match q.dequeue().unwrap() {
                Some(m) => println!("C {}", m.id()),
                None => ledgerq_tests::idle(),
            },
            _ => match q.dequeue().unwrap() {
                Some(m) => {
                    if m.id() % 3 == 0 {
                        // Leave some unacknowledged: they must come back.
                        continue;
                    }
                    q.ack(m.id()).unwrap();
                    println!("A {}", m.id());
                }
                None => ledgerq_tests::idle(),
            },
        }
    }
}

/// Runs the child until killed at a random moment; returns the lines it reported.
fn run_child(dir: &Path, role: &str, durability: &str, start: u64) -> Vec<String> {
    let what = format!("{}|{role}|{durability}|{start}", dir.display());
    ledgerq_tests::run_killed_child("crash_child", "LEDGERQ_CRASH_CHILD", &what, 30_000)
}

fn parse(lines: &[String], tag: &str) -> Vec<Vec<u64>> {
    lines
        .iter()
        .filter(|l| l.starts_with(tag))
        .filter_map(|l| {
            let v: Result<Vec<u64>, _> =
                l[tag.len()..].split_whitespace().map(str::parse).collect();
            v.ok()
        })
        .collect()
}

fn enqueue_kills(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut reported: BTreeMap<u64, u64> = BTreeMap::new();
    let mut next_n = 0;
    for _ in 0..kills() {
        let lines = run_child(dir.path(), "enqueue", durability, next_n);
        for v in parse(&lines, "E ") {
            if let [id, n] = v[..] {
                assert!(reported.insert(id, n).is_none(), "ID {id} returned twice");
                next_n = next_n.max(n + 1);
            }
        }
    }
    assert!(!reported.is_empty(), "the children enqueued nothing");
    let q = Queue::open_with(
        dir.path(),
        opts(parse_durability(durability), AckMode::Auto),
    )
    .unwrap();
    let mut found: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    while let Some(m) = q.dequeue().unwrap() {
        assert!(found.insert(m.id(), m.into_payload()).is_none());
    }
    for (id, n) in &reported {
        let got = found
            .get(id)
            .unwrap_or_else(|| panic!("reported ID {id} is lost"));
        assert_eq!(got, &payload(*n), "payload of ID {id}");
    }
    // The queue goes on.
    let id = q.enqueue(b"after the crashes").unwrap();
    assert!(id > *reported.keys().last().unwrap());
    assert_eq!(
        q.dequeue().unwrap().unwrap().payload(),
        b"after the crashes"
    );
}

fn consume_kills(durability: &str, role: &str) {
    let mode = if role == "consume" {
        AckMode::Auto
    } else {
        AckMode::Manual
    };
    let dir = tempfile::tempdir().unwrap();
    let total = 20_000u64;
    {
        let q = Queue::open_with(dir.path(), opts(parse_durability(durability), mode)).unwrap();
        for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
            q.enqueue_batch(chunk.iter().map(|&n| payload(n))).unwrap();
        }
        q.close().unwrap();
    }
    let mut done: BTreeSet<u64> = BTreeSet::new();
    for _ in 0..kills() {
        let tag = if role == "consume" { "C " } else { "A " };
        let lines = run_child(dir.path(), role, durability, 0);
        for v in parse(&lines, tag) {
            assert!(done.insert(v[0]), "ID {} consumed twice", v[0]);
        }
    }
    assert!(!done.is_empty(), "the children consumed nothing");
    let q = Queue::open_with(dir.path(), opts(parse_durability(durability), mode)).unwrap();
    let mut rest = BTreeSet::new();
    while let Some(m) = q.dequeue().unwrap() {
        assert!(
            !done.contains(&m.id()),
            "ID {} was consumed and came back",
            m.id()
        );
        assert_eq!(m.payload(), &payload(m.id() - 1)[..]);
        rest.insert(m.id());
        if mode == AckMode::Manual {
            q.ack(m.id()).unwrap();
        }
    }
    // Messages delivered `max_deliveries` times across the kills without an ack moved to
    // the dead-letter queue: they are not lost either, and never also deliverable.
    if mode == AckMode::Manual {
        let dlq = q.dead_letters().unwrap();
        while let Some(m) = dlq.dequeue().unwrap() {
            let original: u64 = m.header("dlq.original_id").unwrap().parse().unwrap();
            assert!(
                !done.contains(&original),
                "ID {original} acked and dead-lettered"
            );
            assert!(
                rest.insert(original),
                "ID {original} deliverable and dead-lettered"
            );
            assert_eq!(m.payload(), &payload(original - 1)[..]);
            dlq.ack(m.id()).unwrap();
        }
    }
    // Nothing lost: every message is consumed or still there, except at most one per
    // kill: the one the child had taken (or acknowledged) but not yet reported.
    let missing = total as usize - done.len() - rest.len();
    assert!(missing <= kills(), "{missing} messages lost");
    // The queue goes on.
    let id = q.enqueue(b"after the crashes").unwrap();
    assert!(id > total, "new ID {id}");
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!((m.id(), m.payload()), (id, &b"after the crashes"[..]));
    if mode == AckMode::Manual {
        q.ack(m.id()).unwrap();
    }
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn kill_while_enqueuing_buffered() {
    enqueue_kills("buffered");
}

#[test]
fn kill_while_enqueuing_sync() {
    enqueue_kills("sync");
}

#[test]
fn kill_while_consuming_auto_buffered() {
    consume_kills("buffered", "consume");
}

#[test]
fn kill_while_acking_manual_buffered() {
    consume_kills("buffered", "ack");
}

#[test]
fn kill_while_acking_manual_sync() {
    consume_kills("sync", "ack");
}
