//! LedgerQ: an embedded, durable, lock-free message queue. A directory is a queue.
//!
//! Producers append straight into a memory-mapped, segmented journal (one atomic
//! reservation, one copy, a release store to commit); a feeder moves committed records in
//! ID order into a bounded lock-free ring; consumers pop the ring, which is the
//! exactly-once point. Consumer state lives in a small memory-mapped file, so dequeue and
//! ack cost no syscall.
//!
//! # Guarantees
//!
//! - Every enqueued message is dequeued by exactly one consumer (auto-ack mode), in ID
//!   order; IDs are unique and increase in enqueue order.
//! - An `enqueue` that returned `Ok` survives the process being killed at any instant;
//!   with [`Durability::Sync`] it also survives power loss.
//! - Opening after a crash succeeds: a torn tail is truncated, an unfinished record is
//!   skipped.
//! - In [`AckMode::Manual`], a message not acknowledged is delivered again after `nack`,
//!   an expired lease, or a reopen.
//! - In [`AckMode::Auto`], a message dequeued after the last flush of the consumer state
//!   may be delivered again after a power loss (never after a process crash: the state is
//!   in the page cache), and never one from before that flush.
//!
//! # Examples
//!
//! ```
//! # fn main() -> Result<(), ledgerq::Error> {
//! use ledgerq::{AckMode, Options, Queue};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let q = Queue::open_with(dir.path(), Options::new().ack_mode(AckMode::Manual))?;
//! q.enqueue_batch(["a", "b"])?;
//! let m = q.dequeue()?.unwrap();
//! q.nack(m.id(), "try again")?;
//! let again = q.dequeue()?.unwrap();
//! assert_eq!((again.id(), again.delivery_count()), (m.id(), 2));
//! q.ack(again.id())?;
//! # Ok(())
//! # }
//! ```

// Under `--cfg ledgerq_loom` only the modelled protocols (the dispatch and the read
// sections of `grace`) are built: the journal compiles its I/O out under that cfg.
#[cfg_attr(ledgerq_loom, allow(dead_code))]
mod dispatch;
mod park_model;
mod sync;

#[cfg(all(feature = "async", not(ledgerq_loom)))]
mod asynk;
#[cfg(not(ledgerq_loom))]
mod compact;
#[cfg(not(ledgerq_loom))]
mod compress;
#[cfg(not(ledgerq_loom))]
mod dead_letter;
#[cfg(not(ledgerq_loom))]
mod dedup;
#[cfg(not(ledgerq_loom))]
mod enqueue;
#[cfg(not(ledgerq_loom))]
mod error;
#[cfg_attr(ledgerq_loom, allow(dead_code))]
mod grace;
#[cfg(not(ledgerq_loom))]
pub mod inspect;
#[cfg(not(ledgerq_loom))]
mod message;
#[cfg(not(ledgerq_loom))]
pub mod observe;
#[cfg(not(ledgerq_loom))]
mod options;
#[cfg(not(ledgerq_loom))]
mod priority;
#[cfg(not(ledgerq_loom))]
mod queue;
#[cfg(not(ledgerq_loom))]
mod replay;
#[cfg(not(ledgerq_loom))]
mod state;
#[cfg(not(ledgerq_loom))]
mod stats;

#[cfg(all(feature = "async", not(ledgerq_loom)))]
pub use asynk::{Dequeue, MessageStream};
#[cfg(not(ledgerq_loom))]
pub use compact::CompactionReport;
#[cfg(not(ledgerq_loom))]
pub use compress::Compression;
#[cfg(not(ledgerq_loom))]
pub use enqueue::{EnqueueOptions, Enqueued, Priority};
#[cfg(not(ledgerq_loom))]
pub use error::{Error, Result};
#[cfg(not(ledgerq_loom))]
pub use message::Message;
#[cfg(not(ledgerq_loom))]
pub use options::{
    AckMode, Durability, Options, OverflowPolicy, RecoveryMode, Retention,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_RING_CAPACITY, DEFAULT_SEGMENT_SIZE,
};
#[cfg(not(ledgerq_loom))]
pub use queue::{Queue, Stream};
#[cfg(not(ledgerq_loom))]
pub use stats::Stats;

/// This library's version (`major.minor.patch`, from its package).
///
/// ```
/// assert_eq!(ledgerq::VERSION.split('.').count(), 3);
/// ```
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(all(test, not(ledgerq_loom)))]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn queue_is_send_and_sync() {
        assert_send_sync::<Queue>();
        assert_send_sync::<Error>();
    }
}
