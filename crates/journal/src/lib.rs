//! The segmented, memory-mapped append journal of LedgerQ.
//!
//! A directory is a journal: segment files `{base_id:020}.seg`, each created at its
//! full size and mapped `MAP_SHARED`, plus a `LOCK` file held by the single writer.
//! Appenders reserve space and an ID with one atomic step, write the record in
//! place and commit it with a release store ([`proto`]); readers see only committed
//! records, in ID order. Durability is [`Durability::Buffered`] (background flush)
//! or [`Durability::Sync`] (group commit). Opening recovers the tail: a torn record
//! is truncated, a never-committed one followed by valid records becomes a hole.
//!
//! This crate is not the queue: consumer state, acks and dispatch live in `ledgerq`.
//!
//! ```no_run
//! use ledgerq_journal::{Journal, JournalOptions, RecordIn};
//! # fn main() -> Result<(), ledgerq_journal::Error> {
//! let j = Journal::open(std::path::Path::new("/tmp/q"), JournalOptions::new())?;
//! let id = j.append(&RecordIn::new(b"hello"))?;
//! let mut c = j.cursor(id)?;
//! let got = c.next(&j, |r| r.payload().to_vec())?;
//! assert_eq!(got.as_deref(), Some(&b"hello"[..]));
//! j.close()?;
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[doc(hidden)]
pub mod proto;
#[doc(hidden)]
pub mod sync;

#[cfg(not(ledgerq_loom))]
mod codec;
#[cfg(not(ledgerq_loom))]
mod cursor;
#[cfg(not(ledgerq_loom))]
mod error;
#[cfg(not(ledgerq_loom))]
mod journal;
#[cfg(not(ledgerq_loom))]
mod map;
#[cfg(not(ledgerq_loom))]
mod options;
#[cfg(not(ledgerq_loom))]
mod recover;
#[cfg(not(ledgerq_loom))]
mod segment;
#[cfg(not(ledgerq_loom))]
mod storage;

#[cfg(not(ledgerq_loom))]
pub use codec::{
    Headers, Position, RecordIn, RecordView, MAX_HEADERS, MAX_HEADERS_BYTES, MAX_HEADER_KEY,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
#[cfg(not(ledgerq_loom))]
pub use cursor::Cursor;
#[cfg(not(ledgerq_loom))]
pub use error::Error;
#[cfg(not(ledgerq_loom))]
pub use journal::{Journal, SegmentInfo, LOCK_FILE};
#[cfg(not(ledgerq_loom))]
pub use options::{
    Durability, JournalOptions, RecoveryMode, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
};
#[cfg(not(ledgerq_loom))]
pub use storage::{FileStorage, FlushRequest, Storage};
