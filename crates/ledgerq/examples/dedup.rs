//! Deduplication: an enqueue with a key seen within its window writes nothing and
//! returns the original message's ID.
//!
//! Run with `cargo run -p ledgerq --example dedup`.

use std::time::Duration;

use ledgerq::{EnqueueOptions, Options, Queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open_with(
        dir.path(),
        Options::new().dedup_window(Duration::from_secs(60)),
    )?;
    // A producer retrying after a timeout sends the same order twice.
    for attempt in 1..=3 {
        let e = q.enqueue_with(
            br#"{"order": 123}"#,
            &EnqueueOptions::new().dedup_key("order-123"),
        )?;
        println!(
            "attempt {attempt}: id {} duplicate {}",
            e.id(),
            e.is_duplicate()
        );
    }
    let e = q.enqueue_with(
        br#"{"order": 456}"#,
        &EnqueueOptions::new().dedup_key("order-456"),
    )?;
    println!("order-456: id {} duplicate {}", e.id(), e.is_duplicate());
    let s = q.stats();
    println!(
        "pending {}, dedup keys tracked {}",
        s.pending, s.dedup_tracked
    );
    q.close()?;
    Ok(())
}
