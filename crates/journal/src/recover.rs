//! Open-time tail recovery of a segment: find the end of valid data, truncate a torn
//! tail, mark holes left by producers killed mid-write, report other corruption.
//!
//! Runs only while the journal is being opened, with the lock held and no other
//! thread using the segment, so it may read the whole mapping as a slice and write.
//! (Readers in Skip mode also use `find_next_valid`, on a slice of bytes nobody
//! writes any more: see `Segment::resync_after`.)

use crate::codec::{self, Shape, HOLE_MIN_LEN, SEGMENT_HEADER_LEN};
use crate::crc::{self, LANES};
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
    /// Record starts behind the end (for the next clean close).
    pub tail: TailMarks,
}

/// The end of the last segment as a clean close recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownEnd {
    /// Offset after the last record.
    pub offset: u32,
    /// ID after the last record.
    pub next_id: u64,
    /// A record start at least [`CLEAN_CHECK_WINDOW`] bytes before the end (or the
    /// first record); 0 if not recorded.
    pub check_from: u32,
}

/// How many bytes of records before a clean end the next open checks, at least.
pub(crate) const CLEAN_CHECK_WINDOW: u32 = 64 * 1024;

/// Two record starts kept behind a moving end, at least [`CLEAN_CHECK_WINDOW`] bytes
/// apart, so that a clean close can name a record at least that far before its end
/// (see [`KnownEnd::check_from`]). Fed by whoever walks the records in order: the
/// flusher, and the open-time scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TailMarks {
    older: u32,
    newer: u32,
}

impl TailMarks {
    /// Marks for a walk that starts at the record at `off`.
    pub(crate) const fn at(off: u32) -> TailMarks {
        TailMarks {
            older: off,
            newer: off,
        }
    }

    /// A record starts at `off` (not below the last one noted).
    #[inline]
    pub(crate) fn note(&mut self, off: u32) {
        if off.saturating_sub(self.newer) >= CLEAN_CHECK_WINDOW {
            self.older = self.newer;
            self.newer = off;
        }
    }

    /// A record start at least [`CLEAN_CHECK_WINDOW`] bytes before any end after the
    /// records noted, or the start of the walk.
    pub(crate) fn check_from(&self) -> u32 {
        self.older
    }
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
/// `known_end` is the end a clean-close checkpoint recorded. When it names a record
/// [`CLEAN_CHECK_WINDOW`] bytes or more before the end, only the records from there are
/// checked (every checksum); the segment is taken as is if they end exactly at the
/// recorded end and the 64 KiB after it are zeros. Otherwise the scan starts at the
/// first record and, if the records end exactly at the known end and the 64 KiB after
/// it are zeros, stops there without searching the rest of the segment for records
/// after a hole (which a clean close cannot leave; that search reads the whole
/// segment). Readers take a nonzero commit word past the end for a record, hence the
/// zeros; garbage there (an edited or damaged file) sends the scan on, as without a
/// known end, which zeroes it.
///
/// `durable_end` is the offset up to which the checkpoint recorded the segment as
/// flushed (0 if it names another segment). Below it no write can have been torn nor a
/// reservation left uncommitted: a record there that is damaged, zeroed or missing is
/// corruption, reported in [`RecoveryMode::Strict`] and skipped (and counted in
/// [`Scan::skipped`]) in [`RecoveryMode::Skip`], never cut as a torn tail or marked as
/// a hole without a word.
pub(crate) fn scan_and_repair(
    seg: &Segment,
    mode: RecoveryMode,
    storage: &dyn Storage,
    known_end: Option<KnownEnd>,
    durable_end: u32,
) -> Result<Scan, Error> {
    if let Some(scan) = known_end.and_then(|k| clean_window(seg, k)) {
        return Ok(scan);
    }
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
        tail: TailMarks::at(off),
    };
    let mut dirty: Option<(u32, u32)> = None;
    let max_records = codec::max_records(cap);
    loop {
        if u64::from(off) + 8 > u64::from(cap) {
            break;
        }
        // SAFETY: exclusive access at open (module docs); in bounds by construction.
        let s = unsafe { seg.slice(0, cap) };
        (off, next_id) = valid_run(s, off, seg, next_id, max_records, &mut scan.tail);
        if u64::from(off) + 8 > u64::from(cap) {
            break;
        }
        let commit = codec::rd_u32(s, off as usize);
        let flushed = off < durable_end;
        let bad: &'static str = match commit {
            KIND_END if flushed => "end marker",
            KIND_END => {
                scan.sealed = true;
                break;
            }
            KIND_RECORD => match codec::validate_record(s, off, seg.salt) {
                Ok((len, id)) if id >= next_id && id - seg.base_id < max_records => {
                    scan.tail.note(off);
                    seg.marks.note(id, off);
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
            0 if known_end.is_some_and(|k| (k.offset, k.next_id) == (off, next_id))
                && zeros_after(s, off) =>
            {
                scan.at_known_end = true;
                break;
            }
            0 => "record reserved but never committed",
            _ => "unknown commit word",
        };
        let durable_damage = || {
            Error::corrupt(
                &seg.path,
                u64::from(off),
                format!(
                    "{bad}, below offset {durable_end} up to which the checkpoint recorded \
                     the segment as flushed (flushed records are damaged or missing)"
                ),
            )
        };
        match find_next_valid(s, off, seg.salt, next_id, seg.base_id, max_records) {
            None => {
                if flushed {
                    if mode == RecoveryMode::Strict {
                        return Err(durable_damage());
                    }
                    scan.skipped += 1;
                }
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
                if mode == RecoveryMode::Strict {
                    if flushed {
                        return Err(durable_damage());
                    }
                    if commit != 0 {
                        return Err(Error::corrupt(&seg.path, u64::from(off), bad));
                    }
                }
                writable(seg, off)?;
                let marker = codec::hole_marker(next - off, seg.salt);
                // SAFETY: exclusive access at open; `off + 16 <= next <= cap`.
                unsafe {
                    std::ptr::copy_nonoverlapping(marker.as_ptr(), seg.ptr(off), marker.len())
                };
                dirty = Some(widen(dirty, off, off + HOLE_MIN_LEN));
                if commit == 0 && !flushed {
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

/// Steps over the valid records from `off` on (the checksums of up to `crc::LANES`
/// records computed together) and returns the offset and next ID after the last one.
/// Stops before anything else (not a record, damaged, out of order), which the caller
/// then examines on its own.
fn valid_run(
    s: &[u8],
    mut off: u32,
    seg: &Segment,
    mut next_id: u64,
    max_records: u64,
    tail: &mut TailMarks,
) -> (u32, u64) {
    let mut at = [0u32; LANES];
    let mut shapes = [Shape::default(); LANES];
    let mut bufs: [&[u8]; LANES] = [&[]; LANES];
    let mut crcs = [0u32; LANES];
    loop {
        let (mut n, mut p, mut floor) = (0, off, next_id);
        while n < LANES && p as usize + 8 <= s.len() && codec::rd_u32(s, p as usize) == KIND_RECORD
        {
            let Ok(shape) = codec::record_shape(s, p) else {
                break;
            };
            if shape.id < floor || shape.id - seg.base_id >= max_records {
                break;
            }
            (at[n], shapes[n], bufs[n]) = (p, shape, codec::checksummed(s, p, shape));
            n += 1;
            floor = shape.id + 1;
            // In bounds (`record_shape`), so below the segment size, a u32.
            p += codec::align8(shape.len);
        }
        if n == 0 {
            return (off, next_id);
        }
        crc::crc32c_many(seg.salt, &bufs[..n], &mut crcs);
        for i in 0..n {
            if crcs[i] != shapes[i].crc {
                return (off, next_id);
            }
            tail.note(at[i]);
            seg.marks.note(shapes[i].id, at[i]);
            off = at[i] + codec::align8(shapes[i].len);
            next_id = shapes[i].id + 1;
        }
    }
}

/// The check of a clean end from its window (see [`scan_and_repair`]): the scan
/// result if the records from `k.check_from` are valid and end exactly at the known
/// end, followed by zeros; `None` to scan the whole segment.
fn clean_window(seg: &Segment, k: KnownEnd) -> Option<Scan> {
    if k.check_from < SEGMENT_HEADER_LEN || k.check_from > k.offset {
        return None;
    }
    // SAFETY: exclusive access at open (module docs); in bounds by construction.
    let s = unsafe { seg.slice(0, seg.capacity) };
    let mut tail = TailMarks::at(k.check_from);
    let max_records = codec::max_records(seg.capacity);
    let (end, next_id) = valid_run(s, k.check_from, seg, seg.base_id, max_records, &mut tail);
    // `zeros_after` covers the commit word at `end`: no record follows.
    let clean = (end, next_id) == (k.offset, k.next_id) && zeros_after(s, end);
    clean.then_some(Scan {
        end_off: end,
        next_id,
        sealed: false,
        holes: 0,
        skipped: 0,
        truncated: false,
        at_known_end: true,
        tail,
    })
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
pub(crate) fn find_next_valid(
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
