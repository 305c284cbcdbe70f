//! Open-time tail recovery of a segment: find the end of valid data, truncate a torn
//! tail, mark holes left by producers killed mid-write, report other corruption.
//!
//! Runs only while the journal is being opened, with the lock held and no other
//! thread using the segment, so it may read the whole mapping as a slice and write.

use crate::codec::{self, HOLE_MIN_LEN, SEGMENT_HEADER_LEN};
use crate::error::Error;
use crate::options::RecoveryMode;
use crate::proto::{KIND_END, KIND_HOLE, KIND_RECORD};
use crate::segment::Segment;
use crate::storage::{FlushRequest, Storage};

/// What the scan of one segment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// First offset after the last valid record (or the end marker's offset).
    pub end_off: u32,
    /// ID after the last valid record (`base_id` if none).
    pub next_id: u64,
    /// An end marker was found (the segment was sealed).
    pub sealed: bool,
    /// Holes marked (never-committed reservations followed by valid records).
    pub holes: usize,
    /// Corrupt spans skipped in `RecoveryMode::Skip`.
    pub skipped: usize,
    /// Whether a torn tail was zeroed.
    pub truncated: bool,
    /// The scan stopped at the end it was told of (a clean close), without searching
    /// the rest of the segment.
    pub at_known_end: bool,
}

/// Bytes after a known end that must be zero for it to be taken as the end.
const KNOWN_END_ZERO_CHECK: usize = 64 * 1024;

/// Whether the `KNOWN_END_ZERO_CHECK` bytes from `off` (or up to the end) are zeros.
fn zeros_after(s: &[u8], off: u32) -> bool {
    let from = off as usize;
    let upto = from.saturating_add(KNOWN_END_ZERO_CHECK).min(s.len());
    s[from..upto].iter().all(|&b| b == 0)
}

/// Scans `seg` from its first record, repairing it in place (if writable).
///
/// `known_end` is the end a clean-close checkpoint recorded (offset, next ID): when the
/// records end exactly there and the 64 KiB after it are zeros, the scan stops without
/// searching the rest of the segment for records after a hole (which a clean close
/// cannot leave; that search reads the whole segment). Readers take a nonzero commit
/// word past the end for a record, hence the zeros; garbage there (an edited or damaged
/// file) sends the scan on, as without a known end, which zeroes it.
pub(crate) fn scan_and_repair(
    seg: &Segment,
    mode: RecoveryMode,
    storage: &dyn Storage,
    known_end: Option<(u32, u64)>,
) -> Result<Scan, Error> {
    let cap = seg.capacity;
    let mut off = SEGMENT_HEADER_LEN;
    let mut next_id = seg.base_id;
    let mut scan = Scan {
        end_off: off,
        next_id,
        sealed: false,
        holes: 0,
        skipped: 0,
        truncated: false,
        at_known_end: false,
    };
    let mut dirty: Option<(u32, u32)> = None;
    let max_records = u64::from(cap / 8);
    loop {
        if u64::from(off) + 8 > u64::from(cap) {
            break;
        }
        // SAFETY: exclusive access at open (module docs); in bounds by construction.
        let s = unsafe { seg.slice(0, cap) };
        let commit = codec::rd_u32(s, off as usize);
        let bad: &'static str = match commit {
            KIND_END => {
                scan.sealed = true;
                break;
            }
            KIND_RECORD => match codec::validate_record(s, off, seg.salt) {
                Ok((len, id)) if id >= next_id && id - seg.base_id < max_records => {
                    off += codec::align8(len);
                    next_id = id + 1;
                    continue;
                }
                Ok(_) => "record ID out of order",
                Err(reason) => reason,
            },
            KIND_HOLE => match codec::validate_hole(s, off, seg.salt) {
                Ok(len) => {
                    off += len;
                    continue;
                }
                Err(reason) => reason,
            },
            0 if known_end == Some((off, next_id)) && zeros_after(s, off) => {
                scan.at_known_end = true;
                break;
            }
            0 => "record reserved but never committed",
            _ => "unknown commit word",
        };
        match find_next_valid(s, off, seg.salt, next_id, seg.base_id, max_records) {
            None => {
                // Torn tail: nothing valid after `off`. Zero the rest.
                if let Some((lo, hi)) = nonzero_range(&s[off as usize..]) {
                    let (lo, hi) = (off + lo, off + hi);
                    writable(seg, off)?;
                    // SAFETY: exclusive access at open; `lo..hi` is inside the mapping.
                    unsafe { std::ptr::write_bytes(seg.ptr(lo), 0, (hi - lo) as usize) };
                    dirty = Some(widen(dirty, lo, hi));
                    scan.truncated = true;
                }
                break;
            }
            Some(next) => {
                if commit != 0 && mode == RecoveryMode::Strict {
                    return Err(Error::corrupt(&seg.path, u64::from(off), bad));
                }
                writable(seg, off)?;
                let marker = codec::hole_marker(next - off, seg.salt);
                // SAFETY: exclusive access at open; `off + 16 <= next <= cap`.
                unsafe {
                    std::ptr::copy_nonoverlapping(marker.as_ptr(), seg.ptr(off), marker.len())
                };
                dirty = Some(widen(dirty, off, off + HOLE_MIN_LEN));
                if commit == 0 {
                    scan.holes += 1;
                } else {
                    scan.skipped += 1;
                }
                off = next;
            }
        }
    }
    if let Some((lo, hi)) = dirty {
        // SAFETY: exclusive access at open; in bounds.
        let bytes = unsafe { seg.slice(lo, hi - lo) };
        let req = FlushRequest {
            path: &seg.path,
            base_id: seg.base_id,
            file: &seg.file,
            offset: u64::from(lo),
            bytes,
        };
        storage
            .flush(&req)
            .map_err(|e| Error::io("flush recovered segment", &seg.path, e))?;
    }
    scan.end_off = off.min(cap);
    scan.next_id = next_id;
    Ok(scan)
}

fn writable(seg: &Segment, off: u32) -> Result<(), Error> {
    if seg.is_writable() {
        Ok(())
    } else {
        Err(Error::corrupt(
            &seg.path,
            u64::from(off),
            "damaged tail in a segment mapped read-only",
        ))
    }
}

fn widen(d: Option<(u32, u32)>, lo: u32, hi: u32) -> (u32, u32) {
    match d {
        Some((a, b)) => (a.min(lo), b.max(hi)),
        None => (lo, hi),
    }
}

/// The first valid record after `off` (at 8-byte alignment, leaving room for a hole
/// marker) whose ID is at least `next_id`.
fn find_next_valid(
    s: &[u8],
    off: u32,
    salt: u32,
    next_id: u64,
    base: u64,
    max_records: u64,
) -> Option<u32> {
    let mut p = off as usize + HOLE_MIN_LEN as usize;
    while p + 8 <= s.len() {
        if codec::rd_u32(s, p) == KIND_RECORD {
            // `p < s.len() <= 1 GiB`, so it fits in u32.
            let p32 = u32::try_from(p).ok()?;
            if let Ok((_, id)) = codec::validate_record(s, p32, salt) {
                if id >= next_id && id - base < max_records {
                    return Some(p32);
                }
            }
        }
        p += 8;
    }
    None
}

/// The span of nonzero bytes, rounded out to 8 bytes (relative to `s`).
fn nonzero_range(s: &[u8]) -> Option<(u32, u32)> {
    let first = s.iter().position(|&b| b != 0)?;
    let last = s.iter().rposition(|&b| b != 0)?;
    let lo = first & !7;
    let hi = ((last + 8) & !7).min(s.len());
    Some((u32::try_from(lo).ok()?, u32::try_from(hi).ok()?))
}
