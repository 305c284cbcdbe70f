//! Open-time tail recovery of a segment: find the end of valid data, truncate a torn
//! tail, mark holes left by producers killed mid-write, report other corruption.
//!
//! Runs only while the journal is being opened, with the lock held and no other
//! thread using the segment, so it may read the whole mapping as a slice and write.
//! (Readers in Skip mode also use `find_next_valid`, on a slice of bytes nobody
//! writes any more: see `Segment::resync_after`. A read-only journal runs the same
//! walk, without repairing, over its last segment while no writer lives: `torn_tail`.)

use crate::codec::{self, Shape, HOLE_MIN_LEN, SEGMENT_HEADER_LEN};
use crate::crc::{self, LANES};
use crate::error::Error;
use crate::options::RecoveryMode;
use crate::proto::{Region, KIND_END, KIND_HOLE, KIND_RECORD};
use crate::segment::Segment;
use crate::storage::{FlushRequest, Storage};
use crate::sync::Ordering;

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
    codec::all_zero(&s[from..upto])
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
        let flushed = off < durable_end;
        let found = match examine(s, off, next_id, seg, max_records, known_end) {
            // Below the flushed offset an end marker is damage too: the segment went
            // on past it.
            Found::Sealed if flushed => Found::Damage {
                commit: KIND_END,
                reason: "end marker",
                next: find_next_valid(s, off, seg.salt, next_id, seg.base_id, max_records),
            },
            found => found,
        };
        let durable_damage = |bad: &str| {
            Error::corrupt(
                &seg.path,
                u64::from(off),
                format!(
                    "{bad}, below offset {durable_end} up to which the checkpoint recorded \
                     the segment as flushed (flushed records are damaged or missing)"
                ),
            )
        };
        match found {
            Found::Sealed => {
                scan.sealed = true;
                break;
            }
            Found::KnownEnd => {
                scan.at_known_end = true;
                break;
            }
            Found::Record { len, id } => {
                scan.tail.note(off);
                seg.marks.note(id, off);
                off += codec::align8(len);
                next_id = id + 1;
            }
            Found::Hole { len } => off += len,
            Found::Damage {
                reason, next: None, ..
            } => {
                if flushed {
                    if mode == RecoveryMode::Strict {
                        return Err(durable_damage(reason));
                    }
                    scan.skipped += 1;
                }
                // Torn tail: nothing valid after `off`. Zero the rest.
                if let Some((lo, hi)) = nonzero_range(&s[off as usize..]) {
                    let (lo, hi) = (off + lo, off + hi);
                    writable(seg, off)?;
                    // The commit word first, in one store: a read-only reader in
                    // another process that recorded this torn tail looks at that word
                    // (atomically) to learn that it was repaired (see `torn`), and
                    // must never see a mix of the torn value and zeros.
                    seg.commit_word(off).store(0, Ordering::Relaxed);
                    let from = lo.max(off + 4);
                    if from < hi {
                        // SAFETY: exclusive access at open (module docs); `from..hi`
                        // is inside the mapping.
                        unsafe { std::ptr::write_bytes(seg.ptr(from), 0, (hi - from) as usize) };
                    }
                    dirty = Some(widen(dirty, lo, hi));
                    scan.truncated = true;
                }
                break;
            }
            Found::Damage {
                commit,
                reason,
                next: Some(next),
            } => {
                if mode == RecoveryMode::Strict {
                    if flushed {
                        return Err(durable_damage(reason));
                    }
                    if commit != 0 {
                        return Err(Error::corrupt(&seg.path, u64::from(off), reason));
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

/// What recovery makes of the bytes at `off`, where the run of valid records from the
/// segment's start stopped (`next_id` is the ID after the last of them). The one
/// classification the repairing scan and a read-only journal's look at its last
/// segment (`torn_tail`) share.
enum Found {
    /// An end marker: the segment was sealed here.
    Sealed,
    /// The end a clean close recorded, followed by zeros.
    KnownEnd,
    /// A valid record.
    Record { len: u32, id: u64 },
    /// A valid hole marker.
    Hole { len: u32 },
    /// Anything else (`commit` is the word at `off`, 0 for a reservation never
    /// committed). `next` is the first valid record after it; `None` means nothing
    /// valid follows: a torn tail, which recovery cuts.
    Damage {
        commit: u32,
        reason: &'static str,
        next: Option<u32>,
    },
}

fn examine(
    s: &[u8],
    off: u32,
    next_id: u64,
    seg: &Segment,
    max_records: u64,
    known_end: Option<KnownEnd>,
) -> Found {
    match look(s, off, next_id, seg, max_records, known_end) {
        Ok(found) => found,
        Err((commit, reason)) => Found::Damage {
            commit,
            reason,
            next: find_next_valid(s, off, seg.salt, next_id, seg.base_id, max_records),
        },
    }
}

/// [`examine`] without the search for what follows damage: the commit word and why
/// the bytes at `off` are not a valid record, hole, end marker or known end.
fn look(
    s: &[u8],
    off: u32,
    next_id: u64,
    seg: &Segment,
    max_records: u64,
    known_end: Option<KnownEnd>,
) -> Result<Found, (u32, &'static str)> {
    let commit = codec::rd_u32(s, off as usize);
    let reason = match commit {
        KIND_END => return Ok(Found::Sealed),
        KIND_RECORD => match codec::validate_record(s, off, seg.salt) {
            Ok((len, id)) if id >= next_id && id - seg.base_id < max_records => {
                return Ok(Found::Record { len, id })
            }
            Ok(_) => "record ID out of order",
            Err(reason) => reason,
        },
        KIND_HOLE => match codec::validate_hole(s, off, seg.salt) {
            Ok(len) => return Ok(Found::Hole { len }),
            Err(reason) => reason,
        },
        0 if known_end.is_some_and(|k| (k.offset, k.next_id) == (off, next_id))
            && zeros_after(s, off) =>
        {
            return Ok(Found::KnownEnd)
        }
        0 => "record reserved but never committed",
        _ => "unknown commit word",
    };
    Err((commit, reason))
}

/// A torn tail found by [`torn_tail`]: where a writable open would cut the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Torn {
    /// Where the torn bytes start (8-aligned, past the header).
    pub offset: u32,
    /// The commit word there when the tail was examined.
    pub word: u32,
    /// The ID after the last valid record before it.
    pub next_id: u64,
}

/// Where [`scan_and_repair`] would cut `s`, the bytes of `seg`, as a torn tail (the
/// same walk and the same classification, in `mode`, as a scan without a known end),
/// without writing anything; `None` if it would cut nothing: the records end in zeros
/// or an end marker, or (in `RecoveryMode::Strict`) damage followed by valid records
/// comes first, which the open would report. For a read-only journal's last segment,
/// while no writer lives (see `torn`).
pub(crate) fn torn_tail(s: &[u8], seg: &Segment, mode: RecoveryMode) -> Option<Torn> {
    let cap = u32::try_from(s.len()).ok()?.min(seg.capacity);
    let s = &s[..cap as usize];
    let max_records = codec::max_records(cap);
    let (mut off, mut next_id) = (SEGMENT_HEADER_LEN, seg.base_id);
    let mut tail = TailMarks::at(off);
    loop {
        if u64::from(off) + 8 > u64::from(cap) {
            return None;
        }
        (off, next_id) = valid_run(s, off, seg, next_id, max_records, &mut tail);
        if u64::from(off) + 8 > u64::from(cap) {
            return None;
        }
        match examine(s, off, next_id, seg, max_records, None) {
            Found::Sealed | Found::KnownEnd => return None,
            Found::Record { len, id } => {
                off += codec::align8(len);
                next_id = id + 1;
            }
            Found::Hole { len } => off += len,
            Found::Damage {
                commit, next: None, ..
            } => {
                return nonzero_range(&s[off as usize..]).map(|_| Torn {
                    offset: off,
                    word: commit,
                    next_id,
                })
            }
            Found::Damage {
                commit,
                next: Some(next),
                ..
            } => {
                if commit != 0 && mode == RecoveryMode::Strict {
                    return None;
                }
                off = next;
            }
        }
    }
}

/// Whether `s`, the bytes of `seg`, hold a valid record or hole marker with an ID of
/// at least `t.next_id` at `t.offset` (or an end marker): what a writer that repaired
/// the torn tail `t` put there.
pub(crate) fn repaired(s: &[u8], seg: &Segment, t: Torn) -> bool {
    u64::from(t.offset) + 8 <= s.len() as u64
        && look(
            s,
            t.offset,
            t.next_id,
            seg,
            codec::max_records(seg.capacity),
            None,
        )
        .is_ok()
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
