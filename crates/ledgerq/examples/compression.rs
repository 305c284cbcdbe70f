//! Compression: a queue default and a per-message override; reads are transparent.
//!
//! Run with `cargo run -p ledgerq --example compression`.

use ledgerq::{Compression, EnqueueOptions, Options, Queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .compression(Compression::Lz4)
            .min_compression_size(1024),
    )?;
    let log = "2024-01-01T00:00:00Z INFO request served in 3 ms\n".repeat(200);
    q.enqueue(&log)?; // LZ4, the queue default
    q.enqueue_with(
        &log,
        &EnqueueOptions::new().compression(Compression::Zstd { level: 9 }),
    )?;
    q.enqueue(b"short")?; // below min_compression_size: stored as is
    while let Some(m) = q.dequeue()? {
        println!(
            "message {}: {} bytes, intact: {}",
            m.id(),
            m.payload().len(),
            m.payload() == log.as_bytes() || m.payload() == b"short"
        );
    }
    q.close()?;
    Ok(())
}
