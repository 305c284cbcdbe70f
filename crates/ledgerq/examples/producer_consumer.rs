//! Producer-consumer: 3 producers x 10 messages and 2 consumers share one queue.
//!
//! Every message is consumed exactly once; the program exits non-zero if any message is
//! lost or delivered twice.
//!
//! Run with `cargo run --release -p ledgerq --example producer_consumer`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use ledgerq::Queue;

const PRODUCERS: usize = 3;
const PER_PRODUCER: usize = 10;
const CONSUMERS: usize = 2;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    println!("LedgerQ Producer-Consumer Example");
    println!("==================================");
    println!();

    let dir =
        std::env::temp_dir().join(format!("ledgerq-producer-consumer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let q = Queue::open(&dir)?;
    println!("✓ Queue opened at: {}", dir.display());
    println!();

    let producers_done = AtomicUsize::new(0);
    let received: Vec<(u64, String)> = thread::scope(|s| -> Result<_, ledgerq::Error> {
        println!("Starting {PRODUCERS} producers (each will produce {PER_PRODUCER} messages)...");
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let q = &q;
            let producers_done = &producers_done;
            producers.push(s.spawn(move || -> Result<(), ledgerq::Error> {
                println!("  [Producer {p}] Starting...");
                for j in 0..PER_PRODUCER {
                    q.enqueue(format!("Message from Producer {p}: #{j}"))?;
                }
                println!("  [Producer {p}] Completed {PER_PRODUCER} messages");
                producers_done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }));
        }

        println!();
        println!("Starting {CONSUMERS} consumers...");
        let mut consumers = Vec::new();
        for c in 0..CONSUMERS {
            let q = &q;
            let producers_done = &producers_done;
            consumers.push(
                s.spawn(move || -> Result<Vec<(u64, String)>, ledgerq::Error> {
                    println!("  [Consumer {c}] Starting...");
                    let mut got = Vec::new();
                    loop {
                        // Park briefly for the next message; stop once the producers are done
                        // and the queue is drained.
                        match q.dequeue_timeout(Duration::from_millis(20))? {
                            Some(m) => {
                                let text = String::from_utf8_lossy(m.payload()).into_owned();
                                println!("  [Consumer {c}] Received [ID:{}]: {text}", m.id());
                                got.push((m.id(), text));
                            }
                            None if producers_done.load(Ordering::SeqCst) == PRODUCERS => break,
                            None => {}
                        }
                    }
                    println!(
                        "  [Consumer {c}] Completed. Consumed {} messages",
                        got.len()
                    );
                    Ok(got)
                }),
            );
        }
        for p in producers {
            p.join().expect("producer panicked")?;
        }
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.join().expect("consumer panicked")?);
        }
        Ok(all)
    })?;
    q.close()?;
    drop(q);
    let _ = std::fs::remove_dir_all(&dir);

    let expected = PRODUCERS * PER_PRODUCER;
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (id, _) in &received {
        *seen.entry(*id).or_default() += 1;
    }
    let duplicates = seen.values().filter(|&&n| n > 1).count();
    let mut texts: Vec<&str> = received.iter().map(|(_, t)| t.as_str()).collect();
    texts.sort_unstable();
    texts.dedup();

    println!();
    println!("=== Results ===");
    println!("Expected:  {expected} messages");
    println!("Consumed:  {} messages", received.len());
    println!();
    if received.len() == expected && duplicates == 0 && texts.len() == expected {
        println!("✓ All messages successfully processed!");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "✗ Mismatch: {} consumed, {} distinct, {duplicates} duplicated IDs",
            received.len(),
            texts.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
