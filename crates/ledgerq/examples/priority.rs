//! Priority delivery: High before Medium before Low, FIFO within a level, and the
//! starvation window that lets an old Low message through.
//!
//! Run with `cargo run -p ledgerq --example priority`.

use std::thread;
use std::time::Duration;

use ledgerq::{EnqueueOptions, Options, Priority, Queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .priorities(true)
            .starvation_window(Duration::from_millis(200)),
    )?;
    for (text, p) in [
        ("low 1", Priority::Low),
        ("high 1", Priority::High),
        ("medium 1", Priority::Medium),
        ("low 2", Priority::Low),
        ("high 2", Priority::High),
    ] {
        q.enqueue_with(text, &EnqueueOptions::new().priority(p))?;
    }
    println!("delivered by priority:");
    while let Some(m) = q.dequeue()? {
        println!(
            "  {:?}: {}",
            m.priority(),
            String::from_utf8_lossy(m.payload())
        );
    }

    // A Low message that waited longer than the starvation window goes first.
    q.enqueue_with("old low", &EnqueueOptions::new().priority(Priority::Low))?;
    thread::sleep(Duration::from_millis(300));
    q.enqueue_with("new high", &EnqueueOptions::new().priority(Priority::High))?;
    println!("after the starvation window:");
    while let Some(m) = q.dequeue()? {
        println!(
            "  {:?}: {}",
            m.priority(),
            String::from_utf8_lossy(m.payload())
        );
    }
    q.close()?;
    Ok(())
}
