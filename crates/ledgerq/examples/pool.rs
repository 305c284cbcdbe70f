//! A fixed pool: 5 producers and 10 consumers sharing one queue, consumers parking while
//! the queue is empty instead of sleeping in a loop.
//!
//! Run with `cargo run --release -p ledgerq --example pool`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use ledgerq::Queue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open(dir.path())?;
    let (producers, consumers, per) = (5, 10, 100);
    let processed = AtomicUsize::new(0);
    let producing = AtomicBool::new(true);
    thread::scope(|s| {
        let workers: Vec<_> = (0..consumers)
            .map(|_| {
                s.spawn(|| -> Result<(), ledgerq::Error> {
                    loop {
                        match q.dequeue_timeout(Duration::from_millis(20))? {
                            Some(m) => {
                                std::hint::black_box(m.payload());
                                processed.fetch_add(1, Ordering::Relaxed);
                            }
                            None if !producing.load(Ordering::SeqCst) => return Ok(()),
                            None => {}
                        }
                    }
                })
            })
            .collect();
        let feeders: Vec<_> = (0..producers)
            .map(|p| {
                let q = &q;
                s.spawn(move || -> Result<(), ledgerq::Error> {
                    for j in 0..per {
                        q.enqueue(format!("work item {j} from producer {p}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for f in feeders {
            f.join().expect("producer panicked")?;
        }
        producing.store(false, Ordering::SeqCst);
        for w in workers {
            w.join().expect("consumer panicked")?;
        }
        Ok::<(), ledgerq::Error>(())
    })?;
    println!(
        "{} producers x {per} items, {consumers} consumers: processed {}",
        producers,
        processed.load(Ordering::Relaxed)
    );
    assert_eq!(processed.load(Ordering::Relaxed), producers * per);
    Ok(())
}
