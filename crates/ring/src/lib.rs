//! A bounded, lock-free multi-producer multi-consumer ring: the dispatch structure of
//! LedgerQ, usable on its own.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>), as in
//! `crossbeam_queue::ArrayQueue`: every slot carries a sequence number (its *stamp*) that
//! says whether the slot is ready to be written or read at a given position, and producers
//! and consumers claim positions by moving `tail` and `head` forward with a
//! compare-and-swap. The claim is the exactly-once point (one thread wins each position),
//! and the stamp hands the slot over (Release/Acquire). Batch operations claim a run of
//! positions with one compare-and-swap.
//!
//! It is not: unbounded, blocking (no parking; callers decide how to wait), or durable
//! (the journal is).
//!
//! Under `--cfg ledgerq_loom`, the atomics and cells come from loom (see `sync`), so the
//! same code is model-checked by `tests/loom.rs`. Capacities are chosen by the caller, so
//! the loom models use capacity-2 and capacity-4 rings directly to reach wrap-around.
//!
//! ```
//! use ledgerq_ring::Ring;
//!
//! let ring = Ring::with_capacity(4);
//! ring.push(1).unwrap();
//! ring.push(2).unwrap();
//! assert_eq!(ring.pop(), Some(1));
//! assert_eq!(ring.pop(), Some(2));
//! assert_eq!(ring.pop(), None);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod ring;
mod sync;

pub use crate::ring::Ring;
