//! Async consumption (feature `async`): a producer thread enqueues while a task on a
//! single-threaded tokio runtime consumes `stream_async()`. The stream needs no
//! runtime of its own: it is woken by the producer's commits, and ends when the queue
//! is closed.
//!
//! Run with `cargo run -p ledgerq --example async_consumer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ledgerq::Queue;

const MESSAGES: u64 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let q = Arc::new(Queue::open(dir.path())?);
    let start = Instant::now();

    // The producer: a plain thread, in bursts with pauses, so the consumer catches up
    // and waits (without a thread) for the next commit.
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || -> Result<(), ledgerq::Error> {
            for burst in 0..10 {
                for i in 0..MESSAGES / 10 {
                    q.enqueue((burst * (MESSAGES / 10) + i).to_le_bytes())?;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let (received, in_order, last) = rt.block_on(async {
        let mut stream = q.stream_async();
        let (mut received, mut in_order, mut expected) = (0u64, true, 0u64);
        while received < MESSAGES {
            let m = match stream.next().await {
                Some(m) => m?,
                None => break,
            };
            let n = u64::from_le_bytes(m.payload().try_into()?);
            in_order &= n == expected;
            expected = n + 1;
            received += 1;
        }
        // One more, by a single future with a deadline: nothing comes.
        let last = tokio::time::timeout(Duration::from_millis(50), q.dequeue_async()).await;
        Ok::<_, Box<dyn std::error::Error>>((received, in_order, last.is_err()))
    })?;
    producer.join().expect("producer thread")?;

    // Closing the queue ends every stream.
    q.close()?;
    let ended = futures::executor::block_on(q.stream_async().next()).is_none();

    println!(
        "received {received} of {MESSAGES} messages in {:.0?}, in order: {in_order}",
        start.elapsed()
    );
    println!("dequeue_async on an empty queue timed out: {last}");
    println!("stream ended after close: {ended}");
    assert!(received == MESSAGES && in_order && last && ended);
    Ok(())
}
