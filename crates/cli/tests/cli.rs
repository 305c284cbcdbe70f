//! Runs the built `ledgerq` binary against real queues made by the library.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::{Mutex, MutexGuard};

use assert_cmd::Command;
use ledgerq::{AckMode, EnqueueOptions, Options, Priority, Queue};
use predicates::prelude::*;

/// Runs the tests one at a time. A test that holds a queue in this process has the
/// queue's LOCK file open; a child process that another test forks meanwhile shares that
/// open file (and so the lock) until it calls exec, so a command run right after the
/// queue is closed could find it still locked.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn ledgerq() -> Command {
    Command::cargo_bin("ledgerq").unwrap()
}

/// Small segments, so that a few hundred messages span several files.
fn small() -> Options {
    Options::new().segment_size(64 << 10).auto_compact(false)
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            m.extend(snapshot(&p));
        } else {
            let b = fs::read(&p).unwrap();
            m.insert(p, b);
        }
    }
    m
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// A closed queue: "a".."e", the first consumed.
fn queue_abcde() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path()).unwrap();
    q.enqueue_batch(["a", "b", "c", "d"]).unwrap();
    q.enqueue_with(
        "e",
        &EnqueueOptions::new()
            .header("trace", "x1")
            .priority(Priority::High),
    )
    .unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"a");
    q.close().unwrap();
    t
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

/// `ledgerq COMMAND DIR ARGS...`, which must succeed: its standard output.
fn run_ok(command: &str, dir: &Path, args: &[&str]) -> String {
    stdout_of(ledgerq().arg(command).arg(dir).args(args))
}

#[test]
fn version_and_help_document_exit_codes() {
    let _serial = serial();
    ledgerq()
        .arg("version")
        .assert()
        .success()
        .stdout(format!("ledgerq {}\n", env!("CARGO_PKG_VERSION")));
    ledgerq()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes:"));
    for sub in [
        "stats", "verify", "peek", "dump", "tail", "enqueue", "dequeue", "compact",
    ] {
        ledgerq()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Exit codes:").and(predicate::str::contains("DIR")));
    }
    for args in [
        &["dead-letter", "--help"][..],
        &["dead-letter", "list", "--help"],
        &["dead-letter", "requeue", "--help"],
        &["completions", "--help"],
        &["version", "--help"],
    ] {
        ledgerq()
            .args(args)
            .assert()
            .success()
            .stdout(predicate::str::contains("Exit codes:"));
    }
    ledgerq()
        .args(["dead-letter", "requeue", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("<ID> <DIR>"));
}

#[test]
fn completions_for_each_shell() {
    let _serial = serial();
    for shell in ["bash", "zsh", "fish"] {
        ledgerq()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("ledgerq").and(predicate::str::contains("dead-letter")),
            );
    }
}

#[test]
fn bad_arguments_exit_2() {
    let _serial = serial();
    let t = queue_abcde();
    let d = t.path().to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["stats"],
        vec!["peek", d, "-n", "many"],
        vec!["enqueue", d, "--priority", "urgent", "x"],
        vec!["enqueue", d, "--header", "novalue", "x"],
        vec!["enqueue", d, "--ttl", "soon", "x"],
        vec!["enqueue", d, "--ttl", "0s", "x"],
        vec!["dump", d, "--format", "xml"],
        vec!["dump", d, "--from", "1", "--since", "1h"],
        vec!["dump", d, "--since", "yesterday-ish"],
        vec!["dead-letter", "requeue", "notanid", d],
        vec!["completions", "powershell-classic"],
    ];
    let before = snapshot(t.path());
    for args in cases {
        let out = ledgerq().args(&args).assert().code(2).get_output().clone();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.is_empty(), "{args:?}");
        // One line saying what is wrong (without a command: the help).
        if !args.is_empty() {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("ledgerq: error: "), "{args:?}: {err}");
        }
    }
    assert!(snapshot(t.path()) == before, "a rejected command wrote");
}

#[test]
fn stats_table_and_json() {
    let _serial = serial();
    let t = queue_abcde();
    let text = stdout_of(ledgerq().arg("stats").arg(t.path()));
    assert!(text.contains("records         5"), "{text}");
    assert!(text.contains("pending         4"), "{text}");
    assert!(text.contains("consumed        1"), "{text}");
    assert!(
        text.contains("IDs             1..=5 retained, next ID 6"),
        "{text}"
    );
    let json = stdout_of(ledgerq().arg("stats").arg(t.path()).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["records"], 5);
    assert_eq!(v["pending"], 4);
    assert_eq!(v["consumed"], 1);
    assert_eq!(v["next_id"], 6);
    assert_eq!(v["watermark"], 2);
    assert_eq!(v["deliverable_by_priority"]["high"], 1);
}

#[test]
fn peek_shows_next_messages_and_changes_nothing() {
    let _serial = serial();
    let t = queue_abcde();
    let before = snapshot(t.path());
    let text = stdout_of(ledgerq().arg("peek").arg(t.path()).args(["-n", "2"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("2  ") && lines[0].ends_with("  b"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("3  ") && lines[1].ends_with("  c"),
        "{text}"
    );
    let raw = run_ok("peek", t.path(), &["--format", "raw"]);
    assert_eq!(raw, "b\nc\nd\ne\n");
    assert!(snapshot(t.path()) == before, "peek wrote to the queue");
}

#[test]
fn peek_on_a_priority_queue_lists_high_first() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), Options::new().priorities(true)).unwrap();
    for (p, prio) in [
        ("low", Priority::Low),
        ("high", Priority::High),
        ("medium", Priority::Medium),
    ] {
        q.enqueue_with(p, &EnqueueOptions::new().priority(prio))
            .unwrap();
    }
    q.close().unwrap();
    let raw = run_ok("peek", t.path(), &["--format", "raw"]);
    assert_eq!(raw, "high\nmedium\nlow\n");
}

#[test]
fn dump_text_json_and_from() {
    let _serial = serial();
    let t = queue_abcde();
    let text = stdout_of(ledgerq().arg("dump").arg(t.path()));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].contains("  consumed  ") && lines[0].ends_with("  a"),
        "{text}"
    );
    assert!(lines[4].contains("  high  pending  trace=x1  e"), "{text}");
    let json = run_ok("dump", t.path(), &["--format", "json", "--from", "4"]);
    let v: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["id"], 4);
    assert_eq!(v[1]["payload"], "e");
    assert_eq!(v[1]["priority"], "high");
    assert_eq!(v[1]["headers"][0], serde_json::json!(["trace", "x1"]));
    // Everything was enqueued in the last hour, nothing in the future.
    let n = stdout_of(ledgerq().arg("dump").arg(t.path()).args(["--since", "1h"]))
        .lines()
        .count();
    assert_eq!(n, 5);
    let n = run_ok("dump", t.path(), &["--since", "2999-01-01T00:00:00Z"])
        .lines()
        .count();
    assert_eq!(n, 0);
}

#[test]
fn enqueue_from_stdin_round_trips_through_dump_raw() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let input: &[u8] = b"first line\nsecond \xff\x00 binary\n\nlast without newline";
    let ids = stdout_of(ledgerq().arg("enqueue").arg(t.path()).write_stdin(input));
    assert_eq!(ids, "1\n2\n3\n4\n");
    let out = ledgerq()
        .arg("dump")
        .arg(t.path())
        .args(["--format", "raw"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let mut expected = input.to_vec();
    expected.push(b'\n');
    assert_eq!(out, expected);
    // The text format escapes what is not printable.
    let text = stdout_of(ledgerq().arg("dump").arg(t.path()).args(["--from", "2"]));
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with(r#"b"second \xff\x00 binary""#),
        "{text}"
    );
}

#[test]
fn enqueue_from_stdin_strips_crlf_line_endings() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let input: &[u8] = b"one\r\ntwo\nlone \r inside\r\n\r\nlast\r";
    let ids = stdout_of(ledgerq().arg("enqueue").arg(t.path()).write_stdin(input));
    assert_eq!(ids, "1\n2\n3\n4\n5\n");
    let q = Queue::open(t.path()).unwrap();
    let mut got = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        got.push(m.into_payload());
    }
    let want: [&[u8]; 5] = [b"one", b"two", b"lone \r inside", b"", b"last\r"];
    assert_eq!(got, want);
}

#[test]
fn enqueue_with_options_and_dedup() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let args = [
        "--header",
        "k=v=w",
        "--priority",
        "medium",
        "--ttl",
        "1h",
        "--dedup-key",
        "order-1",
    ];
    let ids = stdout_of(ledgerq().arg("enqueue").arg(t.path()).args(args).arg("p1"));
    assert_eq!(ids, "1\n");
    let ids = stdout_of(ledgerq().arg("enqueue").arg(t.path()).args(args).arg("p2"));
    assert_eq!(ids, "1 duplicate\n");
    let q = Queue::open(t.path()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    assert_eq!(m.payload(), b"p1");
    assert_eq!(m.header("k"), Some("v=w"));
    assert_eq!(m.priority(), Priority::Medium);
    assert!(m.expires_at().is_some());
    assert!(q.dequeue().unwrap().is_none());
}

#[test]
fn dequeue_without_ack_leaves_messages_and_with_ack_removes_them() {
    let _serial = serial();
    let t = queue_abcde();
    let out = run_ok("dequeue", t.path(), &["--format", "raw"]);
    assert_eq!(out, "b\n");
    // Not acknowledged: still there.
    let raw = run_ok("peek", t.path(), &["--format", "raw"]);
    assert_eq!(raw, "b\nc\nd\ne\n");
    let out = run_ok(
        "dequeue",
        t.path(),
        &["-n", "2", "--ack", "--format", "raw"],
    );
    assert_eq!(out, "b\nc\n");
    let raw = run_ok("peek", t.path(), &["--format", "raw"]);
    assert_eq!(raw, "d\ne\n");
    // -n larger than what is left takes what is left.
    let out = run_ok(
        "dequeue",
        t.path(),
        &["-n", "10", "--ack", "--format", "raw"],
    );
    assert_eq!(out, "d\ne\n");
    let out = stdout_of(ledgerq().arg("dequeue").arg(t.path()).arg("--ack"));
    assert_eq!(out, "");
}

#[test]
fn tail_prints_newest_records() {
    let _serial = serial();
    let t = queue_abcde();
    let raw = run_ok("tail", t.path(), &["-n", "2", "--format", "raw"]);
    assert_eq!(raw, "d\ne\n");
    let raw = run_ok("tail", t.path(), &["-n", "99", "--format", "raw"]);
    assert_eq!(raw, "a\nb\nc\nd\ne\n");
}

#[test]
fn tail_follow_prints_records_appended_later() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path()).unwrap();
    q.enqueue("old").unwrap();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("ledgerq"))
        .arg("tail")
        .arg(t.path())
        .args(["-f", "-n", "1", "--format", "raw"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "old");
    q.enqueue("new one").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "new one");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn compact_removes_consumed_segments() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), small()).unwrap();
    for _ in 0..1000 {
        q.enqueue([7u8; 200]).unwrap();
    }
    while q.dequeue().unwrap().is_some() {}
    q.close().unwrap();
    let before = segments(t.path()).len();
    assert!(before > 2);
    let out = stdout_of(ledgerq().arg("compact").arg(t.path()));
    assert!(out.starts_with("removed "), "{out}");
    assert!(!out.starts_with("removed 0 "), "{out}");
    assert!(segments(t.path()).len() < before);
}

#[test]
fn dead_letters_list_and_requeue() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        t.path(),
        Options::new().ack_mode(AckMode::Manual).max_deliveries(1),
    )
    .unwrap();
    q.enqueue("fine").unwrap();
    q.enqueue("poison").unwrap();
    let m = q.dequeue().unwrap().unwrap();
    q.ack(m.id()).unwrap();
    let m = q.dequeue().unwrap().unwrap();
    q.nack(m.id(), "cannot parse").unwrap();
    assert!(q.dequeue().unwrap().is_none());
    q.close().unwrap();
    drop(q);

    let json = stdout_of(
        ledgerq()
            .args(["dead-letter", "list"])
            .arg(t.path())
            .args(["--format", "json"]),
    );
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["payload"], "poison");
    let dead_id = v["id"].as_u64().unwrap().to_string();
    assert!(v["headers"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(["dlq.reason", "cannot parse"])));
    let stats = stdout_of(ledgerq().arg("stats").arg(t.path()));
    assert!(stats.contains("dead letters    1"), "{stats}");

    let new_id = stdout_of(
        ledgerq()
            .args(["dead-letter", "requeue", &dead_id])
            .arg(t.path()),
    );
    assert_eq!(new_id, "3\n");
    let list = stdout_of(ledgerq().args(["dead-letter", "list"]).arg(t.path()));
    assert_eq!(list, "");
    let raw = run_ok("peek", t.path(), &["--format", "raw"]);
    assert_eq!(raw, "poison\n");
    ledgerq()
        .args(["dead-letter", "requeue", &dead_id])
        .arg(t.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("holds no message"));
}

#[test]
fn verify_clean_queue_exits_0_quietly() {
    let _serial = serial();
    let t = queue_abcde();
    ledgerq()
        .arg("verify")
        .arg(t.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("5 record(s), IDs 1..=5")
                .and(predicate::str::ends_with("clean\n")),
        )
        // No progress bar when stderr is not a terminal.
        .stderr("");
    let json = stdout_of(ledgerq().arg("verify").arg(t.path()).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["clean"], true);
    assert_eq!(v["records"], 5);
}

#[test]
fn verify_reports_a_corrupted_byte_with_file_and_offset() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), small()).unwrap();
    for i in 0..1000u32 {
        q.enqueue([(i % 251) as u8; 200]).unwrap();
    }
    q.close().unwrap();
    let segs = segments(t.path());
    assert!(segs.len() >= 3);
    // A payload byte of the first record of the first segment (records start after
    // the 64-byte segment header).
    let mut b = fs::read(&segs[0]).unwrap();
    b[64 + 100] ^= 0x40;
    fs::write(&segs[0], &b).unwrap();
    let before = snapshot(t.path());
    let name = segs[0].file_name().unwrap().to_str().unwrap().to_string();
    ledgerq()
        .arg("verify")
        .arg(t.path())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("CORRUPT: ").and(predicate::str::contains(format!(
                "{name} at offset 64: record checksum mismatch"
            ))),
        )
        .stderr(
            predicate::str::contains("is damaged (1 corruption(s), 0 torn tail(s)")
                .and(predicate::str::contains(format!(
                    "save the readable ones with `ledgerq dump {} --from ID`",
                    t.path().display()
                )))
                .and(predicate::str::contains("restore the queue from a backup")),
        );
    let json = ledgerq()
        .arg("verify")
        .arg(t.path())
        .arg("--json")
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["corruption"][0]["offset"], 64);
    // The damaged record is not counted.
    assert_eq!(
        (v["records"].as_u64(), v["first_id"].as_u64()),
        (Some(999), Some(2))
    );
    // Reading the damaged record is an error that points at verify.
    ledgerq().arg("dump").arg(t.path()).assert().code(1).stderr(
        predicate::str::contains("corrupt data").and(predicate::str::contains("ledgerq verify")),
    );
    assert!(
        snapshot(t.path()) == before,
        "verify and dump wrote to the queue"
    );
}

#[test]
fn damage_in_the_middle_of_the_last_segment_fails_every_reader() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path()).unwrap();
    q.enqueue_batch(["order 1001", "order 1002", "order 1003"])
        .unwrap();
    q.close().unwrap();
    let seg = segments(t.path()).pop().unwrap();
    let mut b = fs::read(&seg).unwrap();
    let at = b.windows(10).position(|w| w == b"order 1002").unwrap();
    b[at + 6] ^= 1;
    fs::write(&seg, &b).unwrap();
    ledgerq()
        .arg("verify")
        .arg(t.path())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("CORRUPT: ")
                .and(predicate::str::contains("missing IDs: 2..3")),
        );
    for sub in ["dump", "tail", "peek", "stats"] {
        ledgerq()
            .arg(sub)
            .arg(t.path())
            .assert()
            .code(1)
            .stderr(predicate::str::contains("record checksum mismatch"));
    }
    // What verify advises: the records past the damage can be saved.
    assert_eq!(
        run_ok("dump", t.path(), &["--from", "3", "--format", "raw"]),
        "order 1003\n"
    );
}

/// Writes 40 bytes of half-written garbage after the last record of the closed queue in
/// `dir`, as a crash mid-write leaves; returns the offset where they start.
fn tear_after_the_last_record(dir: &Path) -> usize {
    let report = ledgerq::inspect::verify(dir).unwrap();
    let last = report.segments.last().unwrap();
    let at = last.bytes_used as usize;
    let mut b = fs::read(&last.path).unwrap();
    for (i, x) in b[at..at + 40].iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(13) | 1;
    }
    fs::write(&last.path, &b).unwrap();
    at
}

#[test]
fn verify_reports_a_torn_tail() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), small()).unwrap();
    for _ in 0..10 {
        q.enqueue([1u8; 100]).unwrap();
    }
    q.close().unwrap();
    let at = tear_after_the_last_record(t.path());
    ledgerq()
        .arg("verify")
        .arg(t.path())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("torn tail: ").and(predicate::str::contains(format!(
                "at offset {at}, 40 bytes"
            ))),
        )
        .stderr(
            predicate::str::contains("0 corruption(s), 1 torn tail(s)").and(
                predicate::str::contains(format!(
                    "run `ledgerq compact {}`: opening the queue to write cuts the torn \
                     tail off",
                    t.path().display()
                )),
            ),
        );
    // What it advises repairs it; then verify is clean and the records are intact.
    ledgerq().arg("compact").arg(t.path()).assert().success();
    ledgerq().arg("verify").arg(t.path()).assert().success();
    let n = stdout_of(ledgerq().arg("dump").arg(t.path()))
        .lines()
        .count();
    assert_eq!(n, 10);
}

#[test]
fn read_only_commands_show_the_records_before_a_torn_tail_and_change_nothing() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), small()).unwrap();
    for i in 0..10 {
        q.enqueue(format!("order {i}")).unwrap();
    }
    q.close().unwrap();
    // The queue has not been opened since (which would cut the torn tail).
    let at = tear_after_the_last_record(t.path());
    let before = snapshot(t.path());
    let d = t.path();
    let stats = run_ok("stats", d, &[]);
    assert!(stats.contains("records         10"), "{stats}");
    assert!(
        stats.contains("IDs             1..=10 retained, next ID 11"),
        "{stats}"
    );
    let v: serde_json::Value = serde_json::from_str(&run_ok("stats", d, &["--json"])).unwrap();
    assert_eq!(
        (v["records"].as_u64(), v["pending"].as_u64()),
        (Some(10), Some(10))
    );
    assert_eq!(
        run_ok("peek", d, &["-n", "3", "--format", "raw"]),
        "order 0\norder 1\norder 2\n"
    );
    let all: String = (0..10).map(|i| format!("order {i}\n")).collect();
    assert_eq!(run_ok("dump", d, &["--format", "raw"]), all);
    let text = run_ok("dump", d, &[]);
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(
        text.lines().last().unwrap().ends_with("  order 9"),
        "{text}"
    );
    assert_eq!(
        run_ok("tail", d, &["-n", "2", "--format", "raw"]),
        "order 8\norder 9\n"
    );
    // verify still reports the torn tail, which the next open of the queue cuts.
    ledgerq()
        .arg("verify")
        .arg(d)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "at offset {at}, 40 bytes"
        )))
        .stderr(predicate::str::contains("0 corruption(s), 1 torn tail(s)"));
    assert!(snapshot(d) == before, "a read-only command wrote");
}

#[test]
fn missing_directory_is_never_created() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    for args in [
        vec!["stats"],
        vec!["verify"],
        vec!["peek"],
        vec!["dump"],
        vec!["tail"],
        vec!["enqueue", "--", "x"],
        vec!["dequeue"],
        vec!["compact"],
        vec!["dead-letter", "list"],
        vec!["dead-letter", "requeue", "1"],
    ] {
        let mut cmd = ledgerq();
        // DIR goes last for `dead-letter requeue ID DIR`, first otherwise.
        let (head, tail) = match args[0] {
            "dead-letter" => (args.clone(), vec![]),
            _ => (vec![args[0]], args[1..].to_vec()),
        };
        cmd.args(&head).arg(&missing).args(&tail);
        cmd.assert().code(1).stderr(
            predicate::str::contains("does not exist").and(predicate::str::contains("\n").count(1)),
        );
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    // A directory that holds no queue is not one, and stays empty.
    for sub in ["stats", "peek", "dequeue", "compact"] {
        ledgerq()
            .arg(sub)
            .arg(t.path())
            .assert()
            .code(1)
            .stderr(predicate::str::contains("is not a queue directory"));
    }
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
}

/// Not a test of its own: the child process of
/// `read_only_commands_work_while_another_process_owns_the_queue`. The test binary runs
/// itself with this test selected and `LEDGERQ_TEST_HOLD=DIR`; it opens the queue with
/// the library, prints "ready" and holds the queue until its standard input closes.
#[test]
#[ignore = "helper process, run by another test"]
fn hold_queue_until_stdin_closes() {
    let Ok(dir) = std::env::var("LEDGERQ_TEST_HOLD") else {
        return;
    };
    let q = Queue::open(&dir).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).unwrap() > 0 {}
    q.close().unwrap();
}

struct Holder(Child, BufReader<std::process::ChildStdout>);

impl Holder {
    fn spawn(dir: &Path) -> Holder {
        let mut child = StdCommand::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hold_queue_until_stdin_closes",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LEDGERQ_TEST_HOLD", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "holder exited early");
            if line.trim_end().ends_with("ready") {
                break;
            }
        }
        Holder(child, out)
    }

    fn release(mut self) {
        drop(self.0.stdin.take());
        // The rest of its output (the test harness's summary).
        std::io::copy(&mut self.1, &mut std::io::sink()).unwrap();
        assert!(self.0.wait().unwrap().success());
    }
}

#[test]
fn read_only_commands_work_while_another_process_owns_the_queue() {
    let _serial = serial();
    let t = queue_abcde();
    let holder = Holder::spawn(t.path());
    let d = t.path();
    assert!(stdout_of(ledgerq().arg("stats").arg(d)).contains("pending         4"));
    stdout_of(ledgerq().arg("stats").arg(d).arg("--json"));
    assert!(stdout_of(ledgerq().arg("verify").arg(d)).ends_with("clean\n"));
    assert_eq!(
        stdout_of(ledgerq().arg("peek").arg(d).args(["--format", "raw"])),
        "b\nc\nd\ne\n"
    );
    assert_eq!(stdout_of(ledgerq().arg("dump").arg(d)).lines().count(), 5);
    assert_eq!(
        stdout_of(
            ledgerq()
                .arg("tail")
                .arg(d)
                .args(["-n", "1", "--format", "raw"])
        ),
        "e\n"
    );
    stdout_of(ledgerq().args(["dead-letter", "list"]).arg(d));
    // Mutating commands fail with one line naming the lock file.
    let lock = d.join("LOCK");
    let want = format!(
        "queue {} is owned by another process (lock file {})",
        d.display(),
        lock.display()
    );
    for args in [vec!["enqueue", "x"], vec!["dequeue"], vec!["compact"]] {
        ledgerq()
            .arg(args[0])
            .arg(d)
            .args(&args[1..])
            .assert()
            .code(1)
            .stdout("")
            .stderr(
                predicate::str::contains(want.as_str())
                    .and(predicate::str::contains("\n").count(1)),
            );
    }
    ledgerq()
        .args(["dead-letter", "requeue", "1"])
        .arg(d)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(want.as_str()));
    holder.release();
    // Once released, a mutating command works and sees nothing added meanwhile.
    assert_eq!(stdout_of(ledgerq().arg("enqueue").arg(d).arg("f")), "6\n");
}

#[test]
fn read_only_commands_write_nothing() {
    let _serial = serial();
    let t = queue_abcde();
    let before = snapshot(t.path());
    for args in [
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["verify"],
        vec!["peek"],
        vec!["dump"],
        vec!["tail"],
        vec!["dead-letter", "list"],
    ] {
        let (head, tail) = match args[0] {
            "dead-letter" => (args.clone(), vec![]),
            _ => (vec![args[0]], args[1..].to_vec()),
        };
        ledgerq()
            .args(&head)
            .arg(t.path())
            .args(&tail)
            .assert()
            .success();
    }
    assert!(snapshot(t.path()) == before, "a read-only command wrote");
}

#[test]
fn writing_commands_keep_the_queue_segment_size() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), small()).unwrap();
    q.enqueue(b"first").unwrap();
    q.close().unwrap();
    drop(q);
    // Enough to fill several 64 KiB segments.
    let big = "x".repeat(20_000);
    let args: Vec<&str> = (0..10).map(|_| big.as_str()).collect();
    ledgerq()
        .arg("enqueue")
        .arg(t.path())
        .args(&args)
        .assert()
        .success();
    let segs = segments(t.path());
    assert!(segs.len() > 2, "{segs:?}");
    for s in segs {
        assert_eq!(fs::metadata(&s).unwrap().len(), 64 << 10, "{}", s.display());
    }
    let q = Queue::open_with(t.path(), small()).unwrap();
    assert_eq!(q.stats().pending, 11);
}

#[test]
fn enqueue_does_not_make_a_queue_among_other_files() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("notes.txt"), b"mine").unwrap();
    let before = snapshot(t.path());
    let out = ledgerq()
        .arg("enqueue")
        .arg(t.path())
        .arg("x")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("holds other files and no queue"), "{err}");
    assert_eq!(snapshot(t.path()), before);
}

#[test]
fn dequeue_ack_acknowledges_only_what_was_written_out() {
    let _serial = serial();
    let full = Path::new("/dev/full");
    if !full.exists() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), small()).unwrap();
    q.enqueue(b"keep me").unwrap();
    q.close().unwrap();
    drop(q);
    let status = StdCommand::new(env!("CARGO_BIN_EXE_ledgerq"))
        .arg("dequeue")
        .arg(t.path())
        .arg("--ack")
        .stdout(fs::OpenOptions::new().write(true).open(full).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let q = Queue::open_with(t.path(), small()).unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"keep me");
}

#[test]
fn dequeue_ack_on_a_priority_queue_is_not_delivered_again_in_auto_mode() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open_with(t.path(), small().priorities(true)).unwrap();
    for (p, body) in [
        (Priority::Low, "l1"),
        (Priority::High, "h1"),
        (Priority::Medium, "m1"),
    ] {
        q.enqueue_with(body, &EnqueueOptions::new().priority(p))
            .unwrap();
    }
    q.close().unwrap();
    drop(q);
    let got = run_ok("dequeue", t.path(), &["--ack", "--format", "raw"]);
    assert_eq!(got, "h1\n");
    // The owner in auto-ack mode goes on with the rest.
    let q = Queue::open_with(t.path(), small()).unwrap();
    let mut rest = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        rest.push(String::from_utf8(m.into_payload()).unwrap());
    }
    assert_eq!(rest, ["m1", "l1"]);
    assert_eq!(
        stdout_of(
            ledgerq()
                .arg("peek")
                .arg(t.path())
                .args(["--format", "raw"])
        ),
        ""
    );
}

/// Runs `ledgerq ARGS...` with `input` on its standard input (written by another
/// thread), reads one line of its standard output and then closes that pipe, as
/// `ledgerq ... | head -1` does. Returns the line, the exit code and standard error.
fn run_closing_output_early(args: &[&std::ffi::OsStr], input: Vec<u8>) -> (String, i32, String) {
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_ledgerq"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Errors ignored: a command that stops reading early closes its end.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        line,
        out.status.code().unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn enqueue_takes_all_its_input_when_its_reader_stops_early() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    // 30000 IDs are about 170 KB of output: more than a pipe and the two ends' buffers
    // hold, so the command is still reading input when its output is closed.
    let input: String = (1..=30_000).map(|i| format!("line {i}\n")).collect();
    let (first, code, err) = run_closing_output_early(
        &["enqueue".as_ref(), t.path().as_os_str()],
        input.clone().into_bytes(),
    );
    assert_eq!(first, "1\n");
    assert_eq!((code, err.as_str()), (0, ""));
    let dumped = run_ok("dump", t.path(), &["--format", "raw"]);
    assert!(
        dumped == input,
        "{} of 30000 lines enqueued",
        dumped.lines().count()
    );
}

#[test]
fn dequeue_ack_stops_at_a_closed_output_and_keeps_the_unwritten_message() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path()).unwrap();
    let n = 20_000u64;
    q.enqueue_batch((1..=n).map(|i| format!("message {i:05}")))
        .unwrap();
    q.close().unwrap();
    drop(q);
    let d = t.path().as_os_str();
    // A read-only command piped into a reader that stops early succeeds.
    let (first, code, err) = run_closing_output_early(&["dump".as_ref(), d], vec![]);
    assert!(first.ends_with("  message 00001\n"), "{first}");
    assert_eq!((code, err.as_str()), (0, ""));
    // About 300 KB of output: the pipe fills long before the last message.
    let (first, code, err) = run_closing_output_early(
        &[
            "dequeue".as_ref(),
            d,
            "-n".as_ref(),
            "20000".as_ref(),
            "--ack".as_ref(),
            "--format".as_ref(),
            "raw".as_ref(),
        ],
        vec![],
    );
    assert_eq!(first, "message 00001\n");
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // "... cannot write message K to standard output: ...; stopped after K-1 message(s)
    // written and acknowledged, message K was not acknowledged ..."
    let k: u64 = err
        .split("cannot write message ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(k > 1 && k <= n, "{err}");
    assert!(
        err.contains(&format!(
            "stopped after {} message(s) written and acknowledged, message {k} was not \
             acknowledged",
            k - 1
        )),
        "{err}"
    );
    // Everything from message K on is still in the queue, K first.
    let q = Queue::open(t.path()).unwrap();
    let mut left = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        left.push(String::from_utf8(m.into_payload()).unwrap());
    }
    let want: Vec<String> = (k..=n).map(|i| format!("message {i:05}")).collect();
    assert!(left == want, "{} left, {} expected", left.len(), want.len());
}

#[test]
fn verify_of_a_damaged_queue_fails_even_when_its_output_is_closed() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path()).unwrap();
    q.enqueue_batch(["order 1001", "order 1002"]).unwrap();
    q.close().unwrap();
    let seg = segments(t.path()).pop().unwrap();
    let mut b = fs::read(&seg).unwrap();
    let at = b.windows(10).position(|w| w == b"order 1002").unwrap();
    b[at] ^= 1;
    fs::write(&seg, &b).unwrap();
    // The reading end is closed before the command writes its report.
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_ledgerq"))
        .arg("verify")
        .arg(t.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is damaged ("), "{err}");
}

/// Runs the shell command `cmd` with its standard output and error on a new terminal
/// (`script` from util-linux): what the terminal received, or `None` when `script` is
/// not installed.
fn on_a_terminal(cmd: &str) -> Option<String> {
    let out = StdCommand::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    assert!(out.status.success(), "{cmd}: {out:?}");
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn dump_draws_no_progress_bar_among_records_on_a_terminal() {
    let _serial = serial();
    let t = queue_abcde();
    let records = run_ok("dump", t.path(), &[]);
    let bin = env!("CARGO_BIN_EXE_ledgerq");
    let dir = t.path().display();
    // Records and stderr on the same terminal: the records and nothing else (the
    // terminal turns each "\n" into "\r\n").
    let Some(seen) = on_a_terminal(&format!("'{bin}' dump '{dir}'")) else {
        return;
    };
    assert_eq!(seen.replace("\r\n", "\n"), records);
    // Records to a file, stderr on the terminal: the bar is shown there.
    let file = t.path().join("out.txt");
    let seen = on_a_terminal(&format!("'{bin}' dump '{dir}' > '{}'", file.display())).unwrap();
    assert!(seen.contains("dumping"), "{seen:?}");
    assert_eq!(fs::read_to_string(&file).unwrap(), records);
}

#[test]
fn dequeue_help_says_runs_without_ack_dead_letter_a_message() {
    let _serial = serial();
    let help = stdout_of(ledgerq().args(["dequeue", "--help"]));
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason = "delivered without acknowledgement";
    assert!(
        flat.contains("taken three times without --ack")
            && flat.contains("moves it to the dead-letter queue")
            && flat.contains(reason),
        "{help}"
    );
    // What the help says: three runs without --ack, and the fourth moves it.
    let t = tempfile::tempdir().unwrap();
    stdout_of(ledgerq().arg("enqueue").arg(t.path()).args(["a", "b"]));
    for _ in 0..3 {
        assert_eq!(run_ok("dequeue", t.path(), &["--format", "raw"]), "a\n");
    }
    assert_eq!(run_ok("dequeue", t.path(), &["--format", "raw"]), "b\n");
    let dead = stdout_of(ledgerq().args(["dead-letter", "list"]).arg(t.path()));
    assert!(
        dead.contains(&format!("dlq.reason={reason}")) && dead.ends_with("  a\n"),
        "{dead}"
    );
}

#[test]
fn verify_advice_on_a_bad_consumer_state_works() {
    let _serial = serial();
    let t = queue_abcde();
    let state = t.path().join("consumer.default.state");
    let mut b = fs::read(&state).unwrap();
    b[0] ^= 0xff;
    fs::write(&state, &b).unwrap();
    ledgerq()
        .arg("verify")
        .arg(t.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "bad consumer state); restore {} from a backup, or move it aside (every retained \
             message is then delivered again)",
            state.display()
        )));
    fs::rename(&state, t.path().join("consumer.state.bad")).unwrap();
    ledgerq().arg("verify").arg(t.path()).assert().success();
    assert_eq!(
        run_ok("peek", t.path(), &["--format", "raw"]),
        "a\nb\nc\nd\ne\n"
    );
}

/// A manual-ack application's queue with acknowledgements out of order: "slow" (1)
/// delivered and not acknowledged, "poison" (2) moved to the dead-letter queue, "done"
/// (3) acknowledged. An auto-ack open refuses it. Returns the dead letter's ID.
fn manual_queue_acked_out_of_order(dir: &Path) -> u64 {
    let q = Queue::open_with(
        dir,
        Options::new().ack_mode(AckMode::Manual).max_deliveries(1),
    )
    .unwrap();
    q.enqueue_batch(["slow", "poison", "done"]).unwrap();
    assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"slow");
    let poison = q.dequeue().unwrap().unwrap();
    q.nack(poison.id(), "cannot parse").unwrap();
    let done = q.dequeue().unwrap().unwrap();
    assert_eq!(done.payload(), b"done");
    q.ack(done.id()).unwrap();
    q.close().unwrap();
    drop(q);
    let e = Queue::open(dir).unwrap_err();
    assert!(matches!(e, ledgerq::Error::InvalidOptions { .. }), "{e}");
    let dlq = ledgerq::inspect::Inspector::open(dir.join("dead-letter")).unwrap();
    let dead = dlq.peek(1).unwrap();
    assert_eq!(dead[0].payload(), b"poison");
    dead[0].id()
}

#[test]
fn writing_commands_work_on_a_manual_ack_queue_and_keep_its_acknowledgements() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let dead = manual_queue_acked_out_of_order(d);
    assert_eq!(run_ok("enqueue", d, &["added"]), "4\n");
    ledgerq()
        .arg("compact")
        .arg(d)
        .assert()
        .success()
        .stdout(predicate::str::starts_with("removed "));
    let requeued = stdout_of(
        ledgerq()
            .args(["dead-letter", "requeue", &dead.to_string()])
            .arg(d),
    );
    assert_eq!(requeued, "5\n");
    assert_eq!(
        ledgerq::inspect::recorded_ack_mode(d).unwrap(),
        Some(AckMode::Manual)
    );
    // The application reopens as before: exactly the unacknowledged messages, the one
    // it had taken with its delivery count one higher, then the new ones; "done" stays
    // acknowledged.
    let q = Queue::open_with(d, Options::new().ack_mode(AckMode::Manual)).unwrap();
    let mut got = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        got.push((
            m.id(),
            String::from_utf8(m.payload().to_vec()).unwrap(),
            m.delivery_count(),
        ));
        q.ack(m.id()).unwrap();
    }
    q.close().unwrap();
    assert_eq!(
        got,
        [
            (1, "slow".to_string(), 2),
            (4, "added".to_string(), 1),
            (5, "poison".to_string(), 1)
        ]
    );
}

#[test]
fn writing_commands_keep_an_auto_ack_queue_in_auto_ack_mode() {
    let _serial = serial();
    let t = queue_abcde();
    run_ok("enqueue", t.path(), &["f"]);
    run_ok("compact", t.path(), &[]);
    assert_eq!(
        ledgerq::inspect::recorded_ack_mode(t.path()).unwrap(),
        Some(AckMode::Auto)
    );
}

#[test]
fn enqueue_leaves_the_consumed_segments_an_application_retains() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // An application that keeps consumed segments for an hour for replay.
    let retain = ledgerq::Retention {
        max_age: Some(std::time::Duration::from_secs(3600)),
        ..ledgerq::Retention::default()
    };
    let q = Queue::open_with(d, Options::new().segment_size(64 << 10).retention(retain)).unwrap();
    for _ in 0..1000 {
        q.enqueue([7u8; 200]).unwrap();
    }
    while q.dequeue().unwrap().is_some() {}
    q.close().unwrap();
    drop(q);
    let before = segments(d);
    assert!(before.len() > 2);
    // An enqueue that stays open on its standard input for longer than the queue's
    // compaction interval (1 s).
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("ledgerq"))
        .arg("enqueue")
        .arg(d)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one more\n").unwrap();
    stdin.flush().unwrap();
    // Its IDs are printed at the end; the record shows once it is enqueued.
    let i = ledgerq::inspect::Inspector::open(d).unwrap();
    let start = std::time::Instant::now();
    while i.records(1001).unwrap().next().is_none() {
        assert!(start.elapsed().as_secs() < 60, "the enqueue never came");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"1001\n");
    let after = segments(d);
    assert!(
        before.iter().all(|s| after.contains(s)),
        "consumed segments removed: {before:?} -> {after:?}"
    );
}

#[test]
fn stats_oldest_pending_leaves_out_messages_in_flight() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let q = Queue::open(d).unwrap();
    q.enqueue("taken").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(10));
    q.enqueue("waiting").unwrap();
    q.close().unwrap();
    drop(q);
    // Delivered and not acknowledged: in flight, no longer pending.
    assert_eq!(run_ok("dequeue", d, &["--format", "raw"]), "taken\n");
    let json = stdout_of(ledgerq().arg("stats").arg(d).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["pending"].as_u64(), v["in_flight"].as_u64()),
        (Some(1), Some(1))
    );
    let dumped = run_ok("dump", d, &["--from", "2", "--format", "json"]);
    let waiting: serde_json::Value = serde_json::from_str(dumped.trim()).unwrap();
    assert_eq!(waiting["payload"], "waiting");
    assert_eq!(v["oldest_pending"], waiting["time"]);
    let text = stdout_of(ledgerq().arg("stats").arg(d));
    let time = waiting["time"].as_str().unwrap();
    assert!(
        text.contains(&format!("oldest pending  {time} (")),
        "{text}"
    );
    // Nothing pending, one in flight.
    assert_eq!(
        run_ok("dequeue", d, &["--ack", "--format", "raw"]),
        "taken\n"
    );
    assert_eq!(run_ok("dequeue", d, &["--format", "raw"]), "waiting\n");
    let json = stdout_of(ledgerq().arg("stats").arg(d).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["pending"].as_u64(), v["in_flight"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(v["oldest_pending"].is_null(), "{json}");
    assert!(stdout_of(ledgerq().arg("stats").arg(d)).contains("oldest pending  -\n"));
}
