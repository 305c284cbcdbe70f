//! Graceful shutdown: consumers run until SIGINT or SIGTERM, then the program stops taking
//! new work, drains what is pending, and closes the queue (flushing it).
//!
//! Run with `cargo run --release -p ledgerq --example graceful_shutdown` and press Ctrl-C.
//! With `--self-signal` it sends itself SIGTERM after enqueuing, so it ends on its own.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ledgerq::Queue;
use signal_hook::consts::{SIGINT, SIGTERM};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open(dir.path())?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGINT, stop.clone())?;
    signal_hook::flag::register(SIGTERM, stop.clone())?;
    let processed = AtomicUsize::new(0);

    thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
        let consumers: Vec<_> = (0..4)
            .map(|id| {
                let (q, stop, processed) = (&q, &stop, &processed);
                s.spawn(move || -> Result<(), ledgerq::Error> {
                    while !stop.load(Ordering::SeqCst) {
                        if let Some(m) = q.dequeue_timeout(Duration::from_millis(100))? {
                            std::hint::black_box(m.payload());
                            thread::sleep(Duration::from_millis(1)); // simulated work
                            processed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    println!("[Consumer {id}] shutting down gracefully");
                    Ok(())
                })
            })
            .collect();
        q.enqueue_batch((0..500).map(|i| format!("task {i}")))?;
        if std::env::args().any(|a| a == "--self-signal") {
            thread::sleep(Duration::from_millis(100));
            signal_hook::low_level::raise(SIGTERM)?;
        }
        for c in consumers {
            c.join().expect("consumer panicked")?;
        }
        Ok(())
    })?;
    println!("shutdown signal received, draining the queue...");
    let mut drained = 0;
    while let Some(m) = q.dequeue()? {
        std::hint::black_box(m.payload());
        drained += 1;
    }
    q.close()?;
    println!(
        "processed {} before the signal, drained {drained} after; queue closed",
        processed.load(Ordering::SeqCst)
    );
    Ok(())
}
