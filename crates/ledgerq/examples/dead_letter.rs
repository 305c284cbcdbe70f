//! Dead letters: a message that fails `max_deliveries` times moves to the dead-letter
//! queue with `dlq.*` headers; it can be inspected and requeued.
//!
//! Run with `cargo run -p ledgerq --example dead_letter`.

use std::time::Duration;

use ledgerq::{AckMode, Options, Queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .ack_mode(AckMode::Manual)
            .max_deliveries(3)
            .redelivery_backoff(Duration::from_millis(10), Duration::from_millis(100)),
    )?;
    q.enqueue(b"not json")?;
    // A consumer that can never process it.
    while let Some(m) = q.dequeue_timeout(Duration::from_millis(500))? {
        println!(
            "delivery {} of message {}: failing",
            m.delivery_count(),
            m.id()
        );
        q.nack(m.id(), "parse error: expected '{'")?;
    }
    println!("dead-lettered: {}", q.stats().dead_lettered);

    let dlq = q.dead_letters()?;
    let dead = dlq.dequeue()?.expect("a dead letter");
    println!("in {}:", dlq.dir().display());
    println!("  payload: {}", String::from_utf8_lossy(dead.payload()));
    for (k, v) in dead.headers() {
        println!("  {k}: {v}");
    }

    // After fixing the consumer, move it back.
    let id = q.requeue_dead_letter(dead.id())?;
    let m = q.dequeue()?.expect("the requeued message");
    println!(
        "requeued as message {id}: {}",
        String::from_utf8_lossy(m.payload())
    );
    q.ack(m.id())?;
    q.close()?;
    Ok(())
}
