//! Bounded memory (promise 7): with 1,000,000 pending messages the process's anonymous
//! memory (RssAnon: not counting the file mappings) is what it is with 1,000 pending,
//! within a small constant. Each size runs in a child process of its own (this test binary
//! re-run with `LEDGERQ_MEMORY_CHILD`), so other tests do not disturb the reading.

use std::process::Command;

use ledgerq::{Options, Queue};

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/self/status")
}

/// The child: enqueue `n` messages, reopen, take one, report RssAnon.
#[test]
fn memory_child() {
    let Ok(spec) = std::env::var("LEDGERQ_MEMORY_CHILD") else {
        return;
    };
    let (dir, n) = spec.split_once('|').unwrap();
    let n: usize = n.parse().unwrap();
    let opts = || Options::new().segment_size(64 << 20);
    {
        let q = Queue::open_with(dir, opts()).unwrap();
        let batch: Vec<[u8; 100]> = vec![[7u8; 100]; 1000.min(n)];
        let mut left = n;
        while left > 0 {
            let k = left.min(batch.len());
            q.enqueue_batch(&batch[..k]).unwrap();
            left -= k;
        }
        q.close().unwrap();
    }
    let q = Queue::open_with(dir, opts()).unwrap();
    assert_eq!(q.stats().pending, n as u64);
    for _ in 0..10 {
        q.dequeue().unwrap().unwrap();
    }
    println!("RSSANON {}", rss_anon_kib());
}

fn measure(n: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "memory_child", "--nocapture", "--test-threads=1"])
        .env(
            "LEDGERQ_MEMORY_CHILD",
            format!("{}|{n}", dir.path().display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    stdout
        .split("RSSANON ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no reading in {stdout}"))
}

#[test]
fn anonymous_memory_does_not_grow_with_the_backlog() {
    let small = measure(1_000);
    let large = measure(1_000_000);
    println!("RssAnon: {small} KiB with 1,000 pending, {large} KiB with 1,000,000");
    // The ring (4096 handles) and the lease shards are the same in both; allow 8 MiB for
    // allocator noise. A structure per pending message would cost tens of MiB here.
    assert!(
        large <= small + 8 * 1024,
        "RssAnon {large} KiB with 1,000,000 pending vs {small} KiB with 1,000"
    );
}
