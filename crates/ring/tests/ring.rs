//! The ring's contract: FIFO, full and empty, batches, drops, and exactly-once delivery
//! under contention (a stress test with per-producer order).
#![cfg(not(ledgerq_loom))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use ledgerq_ring::Ring;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn ring_is_send_and_sync() {
    assert_send_sync::<Ring<u64>>();
    assert_send_sync::<Ring<Vec<u8>>>();
}

#[test]
fn capacity_rounds_up_to_a_power_of_two() {
    assert_eq!(Ring::<u8>::with_capacity(1).capacity(), 1);
    assert_eq!(Ring::<u8>::with_capacity(2).capacity(), 2);
    assert_eq!(Ring::<u8>::with_capacity(3).capacity(), 4);
    assert_eq!(Ring::<u8>::with_capacity(1000).capacity(), 1024);
}

#[test]
#[should_panic(expected = "capacity must be non-zero")]
fn zero_capacity_panics() {
    let _ = Ring::<u8>::with_capacity(0);
}

#[test]
#[should_panic(expected = "capacity overflow")]
fn overflowing_capacity_panics() {
    let _ = Ring::<u8>::with_capacity(usize::MAX);
}

#[test]
fn capacity_one_alternates_full_and_empty() {
    let r = Ring::with_capacity(1);
    for i in 0..10u32 {
        assert_eq!(r.pop(), None);
        r.push(i).unwrap();
        assert!(r.is_full());
        assert_eq!(r.push(i + 100), Err(i + 100));
        assert_eq!(r.pop(), Some(i));
    }
    let mut out = Vec::new();
    assert_eq!(r.push_batch([1, 2, 3]), 1);
    assert_eq!(r.pop_batch(&mut out, 8), 1);
    assert_eq!(out, [1]);
}

#[test]
fn full_hands_the_value_back_and_empty_is_none() {
    let r = Ring::with_capacity(2);
    assert!(r.is_empty());
    r.push(1).unwrap();
    r.push(2).unwrap();
    assert!(r.is_full());
    assert_eq!(r.len(), 2);
    assert_eq!(r.push(3), Err(3));
    assert_eq!(r.pop(), Some(1));
    r.push(3).unwrap();
    assert_eq!(r.pop(), Some(2));
    assert_eq!(r.pop(), Some(3));
    assert_eq!(r.pop(), None);
}

#[test]
fn fifo_over_many_laps() {
    let r = Ring::with_capacity(4);
    for i in 0..1000u32 {
        r.push(i).unwrap();
        if i % 3 == 0 {
            r.push(u32::MAX).unwrap();
            assert_eq!(r.pop(), Some(i));
            assert_eq!(r.pop(), Some(u32::MAX));
        } else {
            assert_eq!(r.pop(), Some(i));
        }
    }
}

#[test]
fn batches_are_partial_and_ordered() {
    let r = Ring::with_capacity(8);
    let mut it = (0..10).collect::<Vec<u32>>().into_iter();
    assert_eq!(r.push_batch(&mut it), 8);
    assert_eq!(it.len(), 2);
    let mut out = Vec::new();
    assert_eq!(r.pop_batch(&mut out, 5), 5);
    assert_eq!(r.push_batch(&mut it), 2);
    assert_eq!(r.pop_batch(&mut out, 100), 5);
    assert_eq!(out, (0..10).collect::<Vec<_>>());
    assert_eq!(r.pop_batch(&mut out, 3), 0);
}

#[test]
fn zero_sized_and_heap_values() {
    let r = Ring::with_capacity(4);
    r.push(()).unwrap();
    assert_eq!(r.pop(), Some(()));
    assert_eq!(r.push_batch(vec![(); 6]), 4);
    assert_eq!(r.push(()), Err(()));
    let mut units = Vec::new();
    assert_eq!(r.pop_batch(&mut units, 8), 4);
    assert_eq!(units.len(), 4);
    let r = Ring::with_capacity(4);
    r.push(vec![1u8; 100]).unwrap();
    assert_eq!(r.pop().unwrap().len(), 100);
    assert_eq!(r.push_batch((0..3u8).map(|i| vec![i; 100])), 3);
    let mut out = Vec::new();
    assert_eq!(r.pop_batch(&mut out, 8), 3);
    assert_eq!(out, [vec![0u8; 100], vec![1; 100], vec![2; 100]]);
}

struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn every_value_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let r = Ring::with_capacity(16);
    for _ in 0..10 {
        r.push(DropCounter(drops.clone())).map_err(|_| ()).unwrap();
    }
    for _ in 0..4 {
        drop(r.pop().unwrap());
    }
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    let mut out = Vec::new();
    r.pop_batch(&mut out, 2);
    drop(out);
    assert_eq!(drops.load(Ordering::SeqCst), 6);
    // A refused value comes back and is dropped by its owner, not by the ring.
    let full = Ring::with_capacity(2);
    full.push(DropCounter(drops.clone()))
        .map_err(|_| ())
        .unwrap();
    full.push(DropCounter(drops.clone()))
        .map_err(|_| ())
        .unwrap();
    let back = full.push(DropCounter(drops.clone()));
    assert!(back.is_err());
    drop(back);
    assert_eq!(drops.load(Ordering::SeqCst), 7);
    // Values left in a dropped ring are dropped with it, once.
    drop(r);
    drop(full);
    assert_eq!(drops.load(Ordering::SeqCst), 13);
}

/// An `ExactSizeIterator` that reports `len` items but yields only `real`, then panics if
/// `panic` is set, else ends.
struct Liar {
    len: usize,
    real: usize,
    panic: bool,
    drops: Arc<AtomicUsize>,
}

impl Iterator for Liar {
    type Item = DropCounter;
    fn next(&mut self) -> Option<DropCounter> {
        if self.real == 0 {
            assert!(!self.panic, "iterator panicked");
            return None;
        }
        self.real -= 1;
        self.len -= 1;
        Some(DropCounter(self.drops.clone()))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl ExactSizeIterator for Liar {}

#[test]
fn push_batch_survives_a_panicking_or_short_iterator() {
    for panic in [false, true] {
        let drops = Arc::new(AtomicUsize::new(0));
        let r = Ring::with_capacity(8);
        r.push(DropCounter(drops.clone())).map_err(|_| ()).unwrap();
        let liar = Liar {
            len: 5,
            real: 2,
            panic,
            drops: drops.clone(),
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.push_batch(liar)));
        assert_eq!(result.is_err(), panic);
        if !panic {
            assert_eq!(result.unwrap(), 2);
        }
        // The claimed but unwritten positions are skipped; the ring keeps working.
        r.push(DropCounter(drops.clone())).map_err(|_| ()).unwrap();
        let mut out = Vec::new();
        assert_eq!(r.pop_batch(&mut out, 2), 2);
        assert!(r.pop().is_some());
        assert!(r.pop().is_some());
        assert!(r.pop().is_none());
        assert!(r.is_empty());
        drop(out);
        assert_eq!(drops.load(Ordering::SeqCst), 4);
        // And a dropped ring with skipped positions drops only real values.
        let liar = Liar {
            len: 4,
            real: 1,
            panic,
            drops: drops.clone(),
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.push_batch(liar)));
        r.push(DropCounter(drops.clone())).map_err(|_| ()).unwrap();
        drop(r);
        assert_eq!(drops.load(Ordering::SeqCst), 6);
    }
}

#[test]
fn stress_4x250k_exactly_once_and_in_order() {
    const PRODUCERS: u64 = 4;
    const PER: u64 = 250_000;
    let r = Ring::with_capacity(1024);
    let taken = AtomicUsize::new(0);
    let total = (PRODUCERS * PER) as usize;
    let results: Vec<Vec<u64>> = thread::scope(|s| {
        for p in 0..PRODUCERS {
            let r = &r;
            s.spawn(move || {
                if p % 2 == 0 {
                    let mut i = 0;
                    while i < PER {
                        if r.push((p << 32) | i).is_ok() {
                            i += 1;
                        } else {
                            thread::yield_now();
                        }
                    }
                } else {
                    // Half the producers push in batches of up to 16.
                    let mut values = (0..PER as usize).map(|i| (p << 32) | i as u64);
                    while values.len() > 0 {
                        if r.push_batch(values.by_ref().take(16)) == 0 {
                            thread::yield_now();
                        }
                    }
                }
            });
        }
        let consumers: Vec<_> = (0..4)
            .map(|c| {
                let (r, taken) = (&r, &taken);
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = Vec::new();
                    while taken.load(Ordering::Relaxed) < total {
                        // Half the consumers use batches, half single pops.
                        let n = if c % 2 == 0 {
                            buf.clear();
                            let n = r.pop_batch(&mut buf, 16);
                            got.extend_from_slice(&buf);
                            n
                        } else {
                            r.pop().map(|v| got.push(v)).map_or(0, |_| 1)
                        };
                        if n == 0 {
                            thread::yield_now();
                        } else {
                            taken.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    got
                })
            })
            .collect();
        consumers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut seen = vec![vec![false; PER as usize]; PRODUCERS as usize];
    for got in &results {
        let mut last = vec![None; PRODUCERS as usize];
        for &v in got {
            let (p, i) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
            assert!(!seen[p][i as usize], "value {p}/{i} received twice");
            seen[p][i as usize] = true;
            if let Some(prev) = last[p] {
                assert!(i > prev, "producer {p}: {i} after {prev}");
            }
            last[p] = Some(i);
        }
    }
    assert!(seen.iter().all(|v| v.iter().all(|&b| b)), "values lost");
}
