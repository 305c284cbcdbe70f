//! Replay and peek: look at what comes next without consuming it, and move the
//! consumption point back by ID or by time.
//!
//! Run with `cargo run -p ledgerq --example replay`.

use std::thread;
use std::time::Duration;

use ledgerq::Queue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open(dir.path())?;
    for i in 1..=5 {
        q.enqueue(format!("event {i}"))?;
        thread::sleep(Duration::from_millis(20));
    }
    let next: Vec<String> = q
        .peek(2)?
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
        .collect();
    println!("peek(2): {next:?} (pending still {})", q.stats().pending);

    let mut stamps = Vec::new();
    while let Some(m) = q.dequeue()? {
        println!("consumed {}", String::from_utf8_lossy(m.payload()));
        stamps.push(m.timestamp());
    }

    q.seek_to_id(4)?;
    println!("after seek_to_id(4):");
    while let Some(m) = q.dequeue()? {
        println!("  {}", String::from_utf8_lossy(m.payload()));
    }

    q.seek_to_time(stamps[1])?;
    println!("after seek_to_time(time of event 2):");
    while let Some(m) = q.dequeue()? {
        println!("  {}", String::from_utf8_lossy(m.payload()));
    }
    q.close()?;
    Ok(())
}
