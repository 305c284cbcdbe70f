//! Bounded memory (promise 7): with 1,000,000 pending messages the process's anonymous
//! memory (RssAnon: not counting the file mappings) is what it is with 1,000 pending,
//! within a small constant. Each size runs in a child process of its own (this test binary
//! re-run with `LEDGERQ_MEMORY_CHILD`), so other tests do not disturb the reading.

use std::process::Command;

use ledgerq::{AckMode, EnqueueOptions, Options, Priority, Queue};

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
    let mut parts = spec.split('|');
    let dir = parts.next().unwrap();
    let n: usize = parts.next().unwrap().parse().unwrap();
    let priorities = parts.next() == Some("priorities");
    let opts = || {
        let o = Options::new().segment_size(64 << 20);
        if priorities {
            // Manual mode: the leases and per-level FIFOs are what could grow.
            o.priorities(true).ack_mode(AckMode::Manual)
        } else {
            o
        }
    };
    {
        let q = Queue::open_with(dir, opts()).unwrap();
        let mut left = n;
        let mut i = 0usize;
        while left > 0 {
            let k = left.min(1000);
            if priorities {
                // Mostly Low, some Medium, a High now and then: the High cursor reads
                // far ahead of the others.
                q.enqueue_batch_with((0..k).map(|j| {
                    let p = match (i + j) % 100 {
                        0 => Priority::High,
                        1..=9 => Priority::Medium,
                        _ => Priority::Low,
                    };
                    ([7u8; 100], EnqueueOptions::new().priority(p))
                }))
                .unwrap();
            } else {
                q.enqueue_batch(vec![[7u8; 100]; k]).unwrap();
            }
            left -= k;
            i += k;
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
    measure_with(n, "fifo")
}

fn measure_with(n: usize, mode: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "memory_child", "--nocapture", "--test-threads=1"])
        .env(
            "LEDGERQ_MEMORY_CHILD",
            format!("{}|{n}|{mode}", dir.path().display()),
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

#[test]
fn anonymous_memory_does_not_grow_with_the_backlog_in_priority_mode() {
    let small = measure_with(1_000, "priorities");
    let large = measure_with(1_000_000, "priorities");
    println!("RssAnon (priorities): {small} KiB with 1,000 pending, {large} KiB with 1,000,000");
    // Three FIFOs of at most the ring's capacity, whatever the backlog.
    assert!(
        large <= small + 8 * 1024,
        "RssAnon {large} KiB with 1,000,000 pending vs {small} KiB with 1,000"
    );
}
