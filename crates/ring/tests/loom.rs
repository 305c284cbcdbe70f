//! loom models of the ring: exactly-once delivery, FIFO over laps, full and empty under
//! races, and the batch operations. Run with
//! `RUSTFLAGS="--cfg ledgerq_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p ledgerq-ring --test loom`.
#![cfg(ledgerq_loom)]

use ledgerq_ring::Ring;
use loom::sync::Arc;
use loom::thread;

/// 2 producers x 2 items, 2 consumers (one of them the main thread): the delivered
/// multiset equals the pushed one.
#[test]
fn two_producers_two_consumers_exactly_once() {
    loom::model(|| {
        let ring = Arc::new(Ring::with_capacity(4));
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                let ring = ring.clone();
                thread::spawn(move || {
                    for i in 0..2 {
                        ring.push(p * 10 + i).unwrap();
                    }
                })
            })
            .collect();
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    if let Some(v) = ring.pop() {
                        got.push(v);
                    }
                }
                got
            })
        };
        let mut all = Vec::new();
        for _ in 0..2 {
            if let Some(v) = ring.pop() {
                all.push(v);
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        all.extend(consumer.join().unwrap());
        while let Some(v) = ring.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 10, 11]);
    });
}

/// 1 producer, 1 consumer, 6 items through a capacity-2 ring (3 laps): FIFO.
#[test]
fn spsc_fifo_over_three_laps() {
    loom::model(|| {
        let ring = Arc::new(Ring::with_capacity(2));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for i in 0..6u32 {
                    while ring.push(i).is_err() {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 6 {
            match ring.pop() {
                Some(v) => got.push(v),
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(ring.pop(), None);
    });
}

/// A full ring refuses a push (handing the value back) and an empty ring pops None while
/// another thread races, and nothing is lost or made up.
#[test]
fn full_and_empty_under_races() {
    loom::model(|| {
        let ring = Arc::new(Ring::with_capacity(2));
        ring.push(1u32).unwrap();
        ring.push(2).unwrap();
        let pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(3))
        };
        let popper = {
            let ring = ring.clone();
            thread::spawn(move || ring.pop())
        };
        let pushed = pusher.join().unwrap();
        let popped = popper.join().unwrap();
        // The pop raced with a full ring holding 1, 2: it gets 1 (never None: the ring
        // was never empty).
        assert_eq!(popped, Some(1));
        let mut rest = Vec::new();
        while let Some(v) = ring.pop() {
            rest.push(v);
        }
        match pushed {
            Ok(()) => assert_eq!(rest, vec![2, 3]),
            Err(v) => {
                assert_eq!(v, 3);
                assert_eq!(rest, vec![2]);
            }
        }
        assert_eq!(ring.pop(), None);
    });
}

/// Empty ring: a pop racing with one push returns either None or the value, and the
/// value is delivered exactly once in total.
#[test]
fn pop_on_empty_races_with_push() {
    loom::model(|| {
        let ring = Arc::new(Ring::with_capacity(2));
        let popper = {
            let ring = ring.clone();
            thread::spawn(move || ring.pop())
        };
        ring.push(7u32).unwrap();
        let first = popper.join().unwrap();
        let second = ring.pop();
        let mut all: Vec<u32> = first.into_iter().chain(second).collect();
        all.sort_unstable();
        assert_eq!(all, vec![7]);
    });
}

/// Batches under contention: a batch pusher and a single pusher, a batch popper and a
/// single popper; every value delivered exactly once.
#[test]
fn batches_exactly_once() {
    loom::model(|| {
        let ring = Arc::new(Ring::with_capacity(4));
        let batch_pusher = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut it = vec![1u32, 2].into_iter();
                let n = ring.push_batch(&mut it);
                assert_eq!(n, 2, "4 slots hold 3 values");
            })
        };
        let single_pusher = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(3).unwrap())
        };
        let batch_popper = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut out = Vec::new();
                ring.pop_batch(&mut out, 2);
                out
            })
        };
        let mut all = ring.pop().into_iter().collect::<Vec<u32>>();
        batch_pusher.join().unwrap();
        single_pusher.join().unwrap();
        all.extend(batch_popper.join().unwrap());
        while let Some(v) = ring.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 3]);
    });
}

/// A batch pusher and a batch popper over three laps of a capacity-2 ring: every value
/// arrives once, in order, and full / empty batches return 0 without losing anything.
#[test]
fn batches_fifo_over_laps() {
    loom::model(|| {
        let ring = Arc::new(Ring::with_capacity(2));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut it = vec![1u32, 2, 3, 4, 5, 6].into_iter();
                while it.len() > 0 {
                    if ring.push_batch(&mut it) == 0 {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 6 {
            if ring.pop_batch(&mut got, 2) == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(ring.pop_batch(&mut got, 2), 0);
    });
}
