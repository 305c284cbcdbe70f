//! Per-message TTL: an expired message is never delivered, and is counted.
//!
//! Run with `cargo run -p ledgerq --example ttl`.

use std::thread;
use std::time::Duration;

use ledgerq::{EnqueueOptions, Queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open(dir.path())?;
    let short = EnqueueOptions::new().ttl(Duration::from_millis(100));
    q.enqueue_with("price quote (valid 100 ms)", &short)?;
    q.enqueue_with(
        "order (valid 1 h)",
        &EnqueueOptions::new().ttl(Duration::from_secs(3600)),
    )?;
    q.enqueue("audit record (no TTL)")?;

    thread::sleep(Duration::from_millis(200));
    while let Some(m) = q.dequeue()? {
        let expires = match m.expires_at() {
            Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
            None => "never".into(),
        };
        println!(
            "delivered: {} (expires: {expires})",
            String::from_utf8_lossy(m.payload())
        );
    }
    println!("expired without delivery: {}", q.stats().expired);
    q.close()?;
    Ok(())
}
