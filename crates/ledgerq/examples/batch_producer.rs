//! A batch producer: work is collected into a buffer and enqueued 100 at a time with one
//! reservation (contiguous IDs); a consumer takes batches too.
//!
//! Run with `cargo run --release -p ledgerq --example batch_producer`.

use ledgerq::Queue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open(dir.path())?;
    let mut buffer: Vec<Vec<u8>> = Vec::with_capacity(100);
    for i in 0..1_050u32 {
        buffer.push(format!("event {i}").into_bytes());
        if buffer.len() == 100 {
            let ids = q.enqueue_batch(buffer.drain(..))?;
            println!("enqueued IDs {}..{}", ids.start, ids.end);
        }
    }
    if !buffer.is_empty() {
        let ids = q.enqueue_batch(buffer.drain(..))?;
        println!(
            "enqueued the last {} as IDs {}..{}",
            ids.end - ids.start,
            ids.start,
            ids.end
        );
    }
    let mut consumed = 0;
    loop {
        let batch = q.dequeue_batch(256)?;
        if batch.is_empty() {
            break;
        }
        consumed += batch.len();
    }
    println!("consumed {consumed} messages in batches");
    assert_eq!(consumed, 1_050);
    Ok(())
}
