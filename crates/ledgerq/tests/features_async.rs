//! Async consumption (feature `async`): `dequeue_async` and `stream_async` wait without a
//! thread and wake on the next commit; `close` ends them.
#![cfg(feature = "async")]

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use futures::StreamExt;
use ledgerq::{AckMode, Error, Options, Priority, Queue};

fn shared(opts: Options) -> (tempfile::TempDir, Arc<Queue>) {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open_with(dir.path(), opts).unwrap());
    (dir, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dequeue_async_waits_for_a_later_enqueue() {
    let (_dir, q) = shared(Options::new());
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move { q.dequeue_async().await })
    };
    let producer = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            q.enqueue(b"late").unwrap();
        })
    };
    let m = consumer.await.unwrap().unwrap();
    assert_eq!(m.payload(), b"late");
    producer.join().unwrap();
}

#[tokio::test]
async fn dequeue_async_returns_at_once_when_ready() {
    let (_dir, q) = shared(Options::new());
    q.enqueue(b"ready").unwrap();
    assert_eq!(q.dequeue_async().await.unwrap().payload(), b"ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_wakes_a_waiting_dequeue() {
    let (_dir, q) = shared(Options::new());
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move { q.dequeue_async().await.map(|m| m.id()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.close().unwrap();
    assert!(matches!(waiting.await.unwrap(), Err(Error::Closed)));
    assert!(matches!(q.dequeue_async().await, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_async_delivers_in_order_and_ends_on_close() {
    let (_dir, q) = shared(Options::new());
    let n = 500u64;
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            q.stream_async()
                .map(|m| m.unwrap().id())
                .collect::<Vec<u64>>()
                .await
        })
    };
    let producer = {
        let q = q.clone();
        thread::spawn(move || {
            for i in 0..n {
                q.enqueue(i.to_le_bytes()).unwrap();
                if i % 50 == 0 {
                    thread::sleep(Duration::from_millis(5));
                }
            }
            // Close once everything was taken.
            while q.stats().pending > 0 {
                thread::sleep(Duration::from_millis(5));
            }
            q.close().unwrap();
        })
    };
    let got = consumer.await.unwrap();
    producer.join().unwrap();
    assert_eq!(got, (1..=n).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_async_consumers_get_each_message_once() {
    let (_dir, q) = shared(Options::new().ack_mode(AckMode::Manual));
    let n = 1000usize;
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut s = q.stream_async();
                while let Some(m) = s.next().await {
                    let m = m.unwrap();
                    q.ack(m.id()).unwrap();
                    got.push(m.id());
                }
                got
            })
        })
        .collect();
    let producer = {
        let q = q.clone();
        thread::spawn(move || {
            for i in 0..n {
                q.enqueue(i.to_le_bytes()).unwrap();
            }
            while q.stats().pending > 0 || q.stats().in_flight > 0 {
                thread::sleep(Duration::from_millis(5));
            }
            q.close().unwrap();
        })
    };
    let mut seen = HashSet::new();
    for c in consumers {
        let got = c.await.unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        for id in got {
            assert!(seen.insert(id), "ID {id} delivered twice");
        }
    }
    producer.join().unwrap();
    assert_eq!(seen.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_dequeue_in_priority_mode() {
    let (_dir, q) = shared(Options::new().priorities(true));
    q.enqueue_with(
        "low",
        &ledgerq::EnqueueOptions::new().priority(Priority::Low),
    )
    .unwrap();
    q.enqueue_with(
        "high",
        &ledgerq::EnqueueOptions::new().priority(Priority::High),
    )
    .unwrap();
    assert_eq!(q.dequeue_async().await.unwrap().payload(), b"high");
    assert_eq!(q.dequeue_async().await.unwrap().payload(), b"low");
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move { q.dequeue_async().await.unwrap().into_payload() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.enqueue(b"later").unwrap();
    assert_eq!(waiting.await.unwrap(), b"later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_waits_out_a_redelivery_backoff() {
    let (_dir, q) = shared(
        Options::new()
            .ack_mode(AckMode::Manual)
            .redelivery_backoff(Duration::from_millis(100), Duration::from_millis(100)),
    );
    q.enqueue(b"retry").unwrap();
    let m = q.dequeue_async().await.unwrap();
    q.nack(m.id(), "later").unwrap();
    let again = tokio::time::timeout(Duration::from_secs(30), q.dequeue_async())
        .await
        .expect("the backoff ends and wakes the future")
        .unwrap();
    assert_eq!((again.id(), again.delivery_count()), (m.id(), 2));
}

#[test]
fn futures_executor_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(50));
            q.enqueue(b"x").unwrap();
        });
        let m = futures::executor::block_on(q.dequeue_async()).unwrap();
        assert_eq!(m.payload(), b"x");
    });
}
