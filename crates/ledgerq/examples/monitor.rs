//! A monitor thread printing stats on an interval while producers and a consumer run,
//! warning when the queue depth passes a threshold.
//!
//! Run with `cargo run --release -p ledgerq --example monitor`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use ledgerq::Queue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Queue::open(dir.path())?;
    let running = AtomicBool::new(true);
    thread::scope(|s| -> Result<(), ledgerq::Error> {
        let monitor = s.spawn(|| {
            while running.load(Ordering::SeqCst) {
                let st = q.stats();
                println!(
                    "pending={} in_flight={} total={} segments={} disk={} B",
                    st.pending, st.in_flight, st.total_enqueued, st.segments, st.disk_bytes
                );
                if st.pending > 10_000 {
                    println!("WARNING: queue depth high ({})", st.pending);
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let consumer = s.spawn(|| -> Result<usize, ledgerq::Error> {
            let mut n = 0;
            while n < 50_000 {
                n += q.dequeue_batch(100)?.len();
                thread::sleep(Duration::from_micros(50));
            }
            Ok(n)
        });
        for chunk in 0..50 {
            q.enqueue_batch((0..1_000).map(|i| format!("reading {chunk}-{i}")))?;
            thread::sleep(Duration::from_millis(5));
        }
        let n = consumer.join().expect("consumer panicked")?;
        running.store(false, Ordering::SeqCst);
        monitor.join().expect("monitor panicked");
        println!("consumed {n}");
        Ok(())
    })?;
    Ok(())
}
