//! Dynamic consumer scaling: a supervisor checks `stats().pending` on an interval and runs
//! one consumer per 100 pending messages (at least one, at most 8).
//!
//! Run with `cargo run --release -p ledgerq --example autoscale`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ledgerq::Queue;

struct Worker {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<()>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Arc::new(Queue::open(dir.path())?);
    let processed = Arc::new(AtomicUsize::new(0));
    let total = 2_000;
    q.enqueue_batch((0..total).map(|i| format!("job {i}")))?;

    let mut workers: Vec<Worker> = Vec::new();
    while processed.load(Ordering::SeqCst) < total {
        let pending = q.stats().pending as usize;
        let target = (pending / 100).clamp(1, 8);
        while workers.len() < target {
            let stop = Arc::new(AtomicBool::new(false));
            let (q, stop2, processed) = (q.clone(), stop.clone(), processed.clone());
            let handle = thread::spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    if let Ok(Some(m)) = q.dequeue_timeout(Duration::from_millis(10)) {
                        std::hint::black_box(m.payload());
                        thread::sleep(Duration::from_micros(200)); // simulated work
                        processed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            workers.push(Worker { stop, handle });
        }
        while workers.len() > target {
            let w = workers.pop().expect("non-empty");
            w.stop.store(true, Ordering::SeqCst);
            w.handle.join().expect("worker panicked");
        }
        println!("pending {pending:>5} -> {} consumers", workers.len());
        thread::sleep(Duration::from_millis(50));
    }
    for w in workers {
        w.stop.store(true, Ordering::SeqCst);
        w.handle.join().expect("worker panicked");
    }
    println!("processed {} of {total}", processed.load(Ordering::SeqCst));
    Ok(())
}
