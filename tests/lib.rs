//! Shared helpers for the LedgerQ integration tests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs the test `child_test` of the current test binary in a child process, with
/// `env_value` in the environment variable `env_var` (which tells that test it is the
/// child and what to do), and kills it with SIGKILL a random time of up to `max_us`
/// microseconds after it printed a line ending in `ready` (every other time at random:
/// after the first line it printed after that: its first report of work done, or `idle`
/// from [`idle`]).
/// Returns every line the child printed (the IDs it reported, in the tests' own
/// formats).
///
/// Timed from the first report as well as from `ready`: on a loaded machine a child's
/// first operation after the open (a priority queue's first dequeue builds its index)
/// can take longer than `max_us`, and kills timed only from `ready` could all land
/// before any work, leaving nothing for the test to check.
///
/// # Panics
/// If the child cannot be started, or never reported `ready`.
pub fn run_killed_child(
    child_test: &str,
    env_var: &str,
    env_value: &str,
    max_us: u64,
) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
        .env(env_var, env_value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut lines = Vec::new();
        let mut ready = false;
        let mut reported = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.ends_with("ready") {
                ready = true;
                let _ = tx.send(());
            } else if ready && !reported {
                reported = true;
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    // Wait until the child has the queue open (and, every other time, until it
    // reported its first operation), then let it run a random while.
    let _ = rx.recv_timeout(Duration::from_secs(30));
    if fastrand::bool() {
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }
    thread::sleep(Duration::from_micros(fastrand::u64(0..max_us)));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    assert!(
        lines.iter().any(|l| l.ends_with("ready")),
        "the child did not open the queue: {lines:?}"
    );
    // Killed, or (if it finished its work first) exited cleanly: a child that failed
    // (an error or a panic) must not pass for a killed one.
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert!(
            status.signal() == Some(SIGKILL) || status.success(),
            "the child ended on its own with {status}: {lines:?}"
        );
    }
    #[cfg(not(unix))]
    let _ = status;
    lines
}

/// What a child does when it finds nothing to do: the first time, it reports `idle`
/// (a report of its own, which [`run_killed_child`] may time its kill from); then it
/// sleeps a millisecond.
pub fn idle() {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        println!("idle");
    }
    thread::sleep(Duration::from_millis(1));
}

/// SIGKILL's number (9 on every Unix).
#[cfg(unix)]
const SIGKILL: i32 = 9;
