//! Retention and compaction: consumed segments are kept for replay within limits, then
//! removed; a disk budget refuses enqueues when full.
//!
//! Run with `cargo run -p ledgerq --example retention`.

use ledgerq::{Error, Options, Queue, Retention};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .segment_size(64 << 10)
            .auto_compact(false)
            .retention(Retention {
                max_segments: Some(3),
                ..Retention::default()
            }),
    )?;
    for i in 0..3000u32 {
        q.enqueue(i.to_le_bytes().repeat(50))?;
    }
    println!("segments after enqueueing: {}", q.stats().segments);
    println!("compact with nothing consumed: {:?}", q.compact()?);
    while q.dequeue()?.is_some() {}
    let report = q.compact()?;
    println!(
        "after consuming: removed {} segments ({} bytes), {} kept for replay",
        report.segments_removed,
        report.bytes_freed,
        q.stats().segments
    );
    q.close()?;

    // A disk budget with the default policy: backpressure, nothing lost.
    let dir = tempfile::tempdir()?;
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .segment_size(64 << 10)
            .max_disk_bytes(4 * (64 << 10)),
    )?;
    let mut accepted = 0;
    loop {
        match q.enqueue([0u8; 200]) {
            Ok(_) => accepted += 1,
            Err(Error::QueueFull { max_disk_bytes }) => {
                println!("queue full after {accepted} messages (budget {max_disk_bytes} bytes)");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    q.dequeue_batch(1000)?;
    q.enqueue([0u8; 200])?;
    println!("after consuming 1000, enqueues are accepted again");
    q.close()?;
    Ok(())
}
