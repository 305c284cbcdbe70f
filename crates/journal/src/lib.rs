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
mod checkpoint;
#[cfg(not(ledgerq_loom))]
mod codec;
#[cfg(not(ledgerq_loom))]
mod crc;
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
mod seek;
#[cfg(not(ledgerq_loom))]
mod segment;
#[cfg(not(ledgerq_loom))]
mod storage;
#[cfg(all(test, not(ledgerq_loom)))]
mod testing;
#[cfg(not(ledgerq_loom))]
mod torn;

#[cfg(not(ledgerq_loom))]
pub use checkpoint::{Checkpoint, RecoveryInfo, CHECKPOINT_FILE, CHECKPOINT_LEN};
#[cfg(not(ledgerq_loom))]
pub use codec::{
    check_headers, Headers, Position, RecordIn, RecordView, MAX_HEADERS, MAX_HEADERS_BYTES,
    MAX_HEADER_KEY, MAX_RECORD_HEADERS, MAX_RECORD_HEADERS_BYTES, RECORD_HEADER_LEN,
    RESERVED_HEADERS, RESERVED_HEADERS_BYTES, SEGMENT_HEADER_LEN,
};
#[cfg(not(ledgerq_loom))]
pub use cursor::Cursor;
#[cfg(not(ledgerq_loom))]
pub use error::Error;
#[cfg(not(ledgerq_loom))]
pub use journal::{segment_files, Journal, SegmentInfo, LOCK_FILE};
#[cfg(not(ledgerq_loom))]
pub use options::{
    Durability, JournalOptions, RecoveryMode, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
};
#[cfg(not(ledgerq_loom))]
pub use seek::SEEK_FILE;
#[cfg(not(ledgerq_loom))]
pub use storage::{
    create_dir_durable, lower_background_priority, FileStorage, FlushRequest, Storage,
};

/// Read-only checks of the on-disk format, the same the journal applies at open and when
/// reading, for verification tools (`ledgerq-recovery`) that scan segment bytes
/// themselves and report damage instead of failing on it.
#[cfg(not(ledgerq_loom))]
pub mod format {
    use crate::codec;

    /// Decodes and checks a segment header: `(base_id, size, salt)`.
    ///
    /// # Errors
    /// What is wrong with the header.
    pub fn segment_header(bytes: &[u8]) -> Result<(u64, u64, u32), &'static str> {
        let h = codec::SegmentHeader::decode(bytes)?;
        Ok((h.base_id, h.size, h.salt))
    }

    /// Checks the committed record at `offset` of a segment's bytes (lengths, salted
    /// checksum): its padded length and its ID.
    ///
    /// # Errors
    /// What is wrong with the record.
    pub fn check_record(
        segment: &[u8],
        offset: usize,
        salt: u32,
    ) -> Result<(u64, u64), &'static str> {
        let off = u32::try_from(offset).map_err(|_| "offset beyond any segment")?;
        let (len, id) = codec::validate_record(segment, off, salt)?;
        Ok((u64::from(codec::align8(len.min(u32::MAX - 8))), id))
    }

    /// Decodes and checks a checkpoint file (`CHECKPOINT`).
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn checkpoint(bytes: &[u8]) -> Result<crate::Checkpoint, &'static str> {
        crate::Checkpoint::decode(bytes)
    }

    /// The index of the first segment open scans, given a valid checkpoint and the
    /// segments' base IDs in order; `salt_of(i)` is the salt in segment `i`'s header
    /// (`None` if damaged), asked only for the segment the checkpoint names. Or why the
    /// checkpoint does not match the segments (then open scans the last two).
    ///
    /// # Errors
    /// Why the checkpoint is not used.
    pub fn checkpoint_tail_start(
        cp: &crate::Checkpoint,
        bases: &[u64],
        salt_of: impl FnOnce(usize) -> Option<u32>,
    ) -> Result<usize, &'static str> {
        crate::checkpoint::tail_start(cp, bases, salt_of)
    }

    /// Checks the hole marker at `offset` of a segment's bytes: the length it skips.
    ///
    /// # Errors
    /// What is wrong with the marker.
    pub fn check_hole(segment: &[u8], offset: usize, salt: u32) -> Result<u64, &'static str> {
        let off = u32::try_from(offset).map_err(|_| "offset beyond any segment")?;
        codec::validate_hole(segment, off, salt).map(u64::from)
    }
}
