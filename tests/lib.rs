//! Shared helpers for the LedgerQ integration tests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs the test `child_test` of the current test binary in a child process, with
/// `env_value` in the environment variable `env_var` (which tells that test it is the
/// child and what to do), and kills it with SIGKILL a random time of up to `max_us`
/// microseconds after it printed a line ending in `ready`. Returns every line the
/// child printed (the IDs it reported, in the tests' own formats).
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
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.ends_with("ready") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    // Wait until the child has the queue open, then let it run a random while.
    let _ = rx.recv_timeout(Duration::from_secs(30));
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

/// SIGKILL's number (9 on every Unix).
#[cfg(unix)]
const SIGKILL: i32 = 9;
