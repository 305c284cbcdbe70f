//! The reservation / commit / seal protocol, independent of files and mappings.
//!
//! Every segment has one reservation word (an `AtomicU64`):
//!
//! ```text
//! bit 63        sealed: no further reservation may succeed in this segment
//! bits 32..=62  count:  records (IDs) reserved so far in this segment
//! bits 0..=31   offset: first unreserved byte offset in the segment
//! ```
//!
//! * **Reserve**: one successful compare-and-swap moves `(count, offset)` to
//!   `(count + n, offset + len)`. The winner owns bytes `offset..offset + len`
//!   exclusively and the IDs `base_id + count .. base_id + count + n`. Space and ID
//!   are taken in the same atomic step, so ID order is offset order.
//! * **Commit**: the owner writes its record bytes, then stores a nonzero kind into the
//!   record's first 4 bytes (the commit word) with `Release`. Readers load the commit
//!   word with `Acquire`: zero means "not (yet) committed", and a nonzero value makes
//!   the whole record visible.
//! * **Seal**: when a record does not fit, the CAS sets the sealed bit instead (keeping
//!   `count` and `offset`). Exactly one thread wins that CAS; it writes an end marker
//!   ([`KIND_END`]) at `offset` (when 8 bytes remain). The next segment's base ID is
//!   `base_id + count`; whoever holds the roll lock installs it.
//! * **Read**: an in-order reader at `off` sees a committed record, a pending one
//!   (commit word zero below the sealed offset, or in an unsealed segment: return
//!   "nothing yet"), or the end of the segment (end marker, sealed offset, or fewer
//!   than 8 bytes left), see [`observe`].
//!
//! This module only uses [`crate::sync`], so `tests/loom.rs` checks it under loom.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Commit-word value of a committed record.
pub const KIND_RECORD: u32 = 0x5243_4401; // "\x01DCR" little endian
/// Commit-word value of a hole marker written by recovery over bytes to skip.
pub const KIND_HOLE: u32 = 0x4C4F_4802;
/// Commit-word value of the end-of-segment marker written at seal time.
pub const KIND_END: u32 = 0x444E_4503;
/// Bytes an end marker needs.
pub const END_MARKER_LEN: u32 = 8;
/// Bytes 4..8 of an end marker written by recovery at open where the next segment
/// does not continue the IDs of this one: the IDs in between were lost before they
/// were committed (a crash cut this segment's tail, or removed a segment whose header
/// never reached the disk), or skipped so that IDs continue above the owner's
/// consumed watermark. Readers accept that gap. An end marker written by a roll has
/// zeros there: the next segment's base ID is then the ID after this segment's last
/// reservation, and a reader that finds IDs missing at that boundary reports them.
pub const END_GAP: u32 = 0x0450_4147; // "GAP\x04" little endian

/// The sealed bit of the reservation word.
pub const SEALED: u64 = 1 << 63;
/// The largest record count a reservation word holds (bits 32..=62).
pub const MAX_COUNT: u32 = 0x7FFF_FFFF;
const COUNT_MASK: u64 = MAX_COUNT as u64;

/// Packs `(count, offset)` into an unsealed reservation word.
#[inline]
pub fn pack(count: u32, offset: u32) -> u64 {
    debug_assert!(u64::from(count) <= COUNT_MASK);
    (u64::from(count) << 32) | u64::from(offset)
}

/// Records reserved so far (bits 32..=62).
#[inline]
pub fn count_of(word: u64) -> u32 {
    // The mask keeps 31 bits, so the value always fits in u32.
    ((word >> 32) & COUNT_MASK) as u32
}

/// First unreserved offset (bits 0..=31).
#[inline]
pub fn offset_of(word: u64) -> u32 {
    (word & 0xFFFF_FFFF) as u32
}

/// Whether the sealed bit is set.
#[inline]
pub fn is_sealed(word: u64) -> bool {
    word & SEALED != 0
}

/// Outcome of [`reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// The caller owns `offset..offset + len` and record indexes `index..index + n`.
    Reserved {
        /// Index of the first reserved record in the segment (ID = base + index).
        index: u32,
        /// Byte offset of the first reserved record.
        offset: u32,
    },
    /// The request did not fit and this caller sealed the segment: it must write the
    /// end marker at `offset`, then roll.
    SealedByMe {
        /// Final record count of the segment.
        count: u32,
        /// Final end offset (first unreserved byte).
        offset: u32,
    },
    /// The segment was already sealed by someone else: roll (or wait for the roll).
    Sealed,
}

/// Reserves `len` bytes and `n` IDs in one successful CAS, or seals the segment when
/// `offset + len > capacity`.
#[inline]
pub fn reserve(word: &AtomicU64, len: u32, n: u32, capacity: u32) -> Reserve {
    // Relaxed is enough for the initial read: the CAS below validates it.
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        if is_sealed(cur) {
            return Reserve::Sealed;
        }
        let off = offset_of(cur);
        let count = count_of(cur);
        let end = u64::from(off) + u64::from(len);
        let fits = end <= u64::from(capacity);
        let new = if fits {
            // `end <= capacity <= u32::MAX`, and count stays below 2^31 because every
            // record takes at least 8 bytes of a segment of at most 2^31 bytes.
            pack(count + n, end as u32)
        } else {
            cur | SEALED
        };
        // AcqRel: the word carries no data (ownership of a byte range is exclusive
        // and the range was never written before), but acquiring keeps the roll's
        // read of the final count ordered after the seal; free on x86.
        match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) if fits => {
                return Reserve::Reserved {
                    index: count,
                    offset: off,
                }
            }
            Ok(_) => return Reserve::SealedByMe { count, offset: off },
            Err(actual) => cur = actual,
        }
    }
}

/// A byte region holding one segment: a mapping in production, a vector under loom.
pub trait Region {
    /// Size of the region in bytes.
    fn capacity(&self) -> u32;
    /// The commit word at `offset` (8-aligned, `offset + 4 <= capacity`).
    fn commit_word(&self, offset: u32) -> &AtomicU32;
}

/// Publishes a record: stores `kind` into its commit word, after all its bytes.
#[inline]
pub fn commit<R: Region + ?Sized>(region: &R, offset: u32, kind: u32) {
    debug_assert!(kind != 0);
    // Release: pairs with the Acquire load in `observe`; every byte of the record
    // written before this store is visible to a reader that sees `kind`.
    region.commit_word(offset).store(kind, Ordering::Release);
}

/// Writes the end marker at the sealed offset (if 8 bytes remain there).
#[inline]
pub fn mark_end<R: Region + ?Sized>(region: &R, offset: u32) {
    if u64::from(offset) + u64::from(END_MARKER_LEN) <= u64::from(region.capacity()) {
        commit(region, offset, KIND_END);
    }
}

/// What an in-order reader finds at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Nothing committed here yet (reserved-but-uncommitted, or unreserved).
    Pending,
    /// The segment ends here: continue with the next segment once it exists.
    End,
    /// A committed record or hole; its commit word is given.
    Committed(u32),
}

/// Looks at `offset` in `region`. `word` is the segment's live reservation word, or
/// `None` for a segment this process does not append to (then zero means pending,
/// and the caller decides whether a later segment makes it the end).
#[inline]
pub fn observe<R: Region + ?Sized>(region: &R, word: Option<&AtomicU64>, offset: u32) -> Observed {
    if u64::from(offset) + u64::from(END_MARKER_LEN) > u64::from(region.capacity()) {
        return Observed::End;
    }
    // Acquire: pairs with the Release store in `commit` / `mark_end`.
    match region.commit_word(offset).load(Ordering::Acquire) {
        0 => {
            if let Some(word) = word {
                // Acquire: pairs with the sealing CAS in `reserve`. A sealed word whose
                // offset is <= ours means nobody owns this offset nor ever will.
                let w = word.load(Ordering::Acquire);
                if is_sealed(w) && offset >= offset_of(w) {
                    return Observed::End;
                }
            }
            Observed::Pending
        }
        KIND_END => Observed::End,
        kind => Observed::Committed(kind),
    }
}

#[cfg(all(test, not(ledgerq_loom)))]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrip() {
        let w = pack(12345, 678_910);
        assert_eq!(count_of(w), 12345);
        assert_eq!(offset_of(w), 678_910);
        assert!(!is_sealed(w));
        assert!(is_sealed(w | SEALED));
        assert_eq!(count_of(w | SEALED), 12345);
    }

    #[test]
    fn reserve_fills_then_seals() {
        let w = AtomicU64::new(pack(0, 64));
        assert_eq!(
            reserve(&w, 32, 1, 128),
            Reserve::Reserved {
                index: 0,
                offset: 64
            }
        );
        assert_eq!(
            reserve(&w, 32, 2, 128),
            Reserve::Reserved {
                index: 1,
                offset: 96
            }
        );
        assert_eq!(
            reserve(&w, 8, 1, 128),
            Reserve::SealedByMe {
                count: 3,
                offset: 128
            }
        );
        assert_eq!(reserve(&w, 8, 1, 128), Reserve::Sealed);
    }
}
