//! Seek marks: the offsets of the records whose ID is a multiple of [`STRIDE`], per
//! segment, so that a cursor that starts in the middle of a segment steps over at most
//! `STRIDE` records instead of every record from the segment's start.
//!
//! Marks are learned by whoever walks the records in order anyway (the flusher, and
//! the open-time scan of the tail), kept in memory with their segment, written to the
//! file `SEEK` by a clean close and read back at the next open. A mark is only a hint:
//! a cursor starts at one only after checking that the record there is committed and
//! holds that ID, and otherwise steps from the segment's first record as it would
//! without marks. So a stale, damaged or missing `SEEK` file costs time, never
//! correctness, and the file is neither fsynced nor part of recovery.
//!
//! # File `SEEK` (little endian)
//!
//! ```text
//! offset size  field
//!      0    8  magic  89 'L' 'Q' 'S' 0D 0A 1A 0A
//!      8    4  number of entries N
//!     12   24  N entries: segment base ID (8), segment salt (4), offset (4), ID (8)
//!   12+24N  4  CRC32C over everything before it
//! ```

use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::codec::{rd_u32, rd_u64, SEGMENT_HEADER_LEN};

/// A mark is kept for every record whose ID is a multiple of this.
pub(crate) const STRIDE: u64 = 1024;
/// Name of the seek-mark file in the queue directory.
pub const SEEK_FILE: &str = "SEEK";
const MAGIC: [u8; 8] = [0x89, b'L', b'Q', b'S', 0x0D, 0x0A, 0x1A, 0x0A];
const ENTRY_LEN: usize = 24;
/// The most entries a file holds (a 24 MiB file at most).
const MAX_ENTRIES: usize = 1 << 20;

/// The marks of one segment: `(id, offset)` in increasing order of both.
#[derive(Debug, Default)]
pub(crate) struct Marks(Mutex<Vec<(u64, u32)>>);

impl Marks {
    fn lock(&self) -> MutexGuard<'_, Vec<(u64, u32)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record with ID `id` starts at `off` (called for every record walked; keeps
    /// one per [`STRIDE`] IDs).
    #[inline]
    pub(crate) fn note(&self, id: u64, off: u32) {
        if id % STRIDE == 0 {
            self.insert(id, off);
        }
    }

    #[cold]
    fn insert(&self, id: u64, off: u32) {
        let mut v = self.lock();
        if let Err(i) = v.binary_search_by_key(&id, |m| m.0) {
            v.insert(i, (id, off));
        }
    }

    /// Gives a segment that has no marks yet the marks read from the file (`marks`
    /// in increasing order of both ID and offset, as `decode` checks), keeping those
    /// below `capacity`, in one step; a segment that already has marks (something
    /// walked it first) keeps them and takes the others one by one.
    pub(crate) fn load(&self, mut marks: Vec<(u64, u32)>, capacity: u32) {
        marks.truncate(marks.partition_point(|m| m.1 < capacity));
        marks.retain(|m| m.0 % STRIDE == 0);
        let mut v = self.lock();
        if v.is_empty() {
            *v = marks;
            return;
        }
        drop(v);
        for (id, off) in marks {
            self.note(id, off);
        }
    }

    /// The last mark at or below `id`.
    pub(crate) fn at_or_below(&self, id: u64) -> Option<(u64, u32)> {
        let v = self.lock();
        let i = v.partition_point(|m| m.0 <= id);
        i.checked_sub(1).map(|i| v[i])
    }

    /// Every mark, in order.
    pub(crate) fn all(&self) -> Vec<(u64, u32)> {
        self.lock().clone()
    }
}

/// One segment's identity and marks, as written to or read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMarks {
    pub base: u64,
    pub salt: u32,
    pub marks: Vec<(u64, u32)>,
}

impl SegmentMarks {
    /// A snapshot of `marks` for the segment `(base, salt)`.
    pub(crate) fn of(base: u64, salt: u32, marks: &Marks) -> SegmentMarks {
        SegmentMarks {
            base,
            salt,
            marks: marks.all(),
        }
    }
}

/// The file image for `segs` (at most [`MAX_ENTRIES`] entries, the newest kept).
fn encode(segs: &[SegmentMarks]) -> Vec<u8> {
    let mut entries: Vec<(u64, u32, u32, u64)> = segs
        .iter()
        .flat_map(|s| s.marks.iter().map(|&(id, off)| (s.base, s.salt, off, id)))
        .collect();
    if entries.len() > MAX_ENTRIES {
        entries.drain(..entries.len() - MAX_ENTRIES);
    }
    let mut b = Vec::with_capacity(16 + entries.len() * ENTRY_LEN);
    b.extend_from_slice(&MAGIC);
    // At most MAX_ENTRIES (2^20): fits in u32.
    let n = u32::try_from(entries.len()).expect("at most 2^20 entries");
    b.extend_from_slice(&n.to_le_bytes());
    for (base, salt, off, id) in entries {
        b.extend_from_slice(&base.to_le_bytes());
        b.extend_from_slice(&salt.to_le_bytes());
        b.extend_from_slice(&off.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a file image; `None` if it is not a whole, valid one.
fn decode(b: &[u8]) -> Option<Vec<SegmentMarks>> {
    if b.len() < 16 || b[..8] != MAGIC {
        return None;
    }
    let body = b.len() - 4;
    if crc32c::crc32c(&b[..body]) != rd_u32(b, body) {
        return None;
    }
    let n = rd_u32(b, 8) as usize;
    if n > MAX_ENTRIES || 12 + n * ENTRY_LEN != body {
        return None;
    }
    let mut out: Vec<SegmentMarks> = Vec::new();
    let entries = &b[12..body];
    for (k, e) in entries.chunks_exact(ENTRY_LEN).enumerate() {
        let (base, salt) = (rd_u64(e, 0), rd_u32(e, 8));
        let (off, id) = (rd_u32(e, 12), rd_u64(e, 16));
        if off < SEGMENT_HEADER_LEN || off % 8 != 0 || id < base {
            return None;
        }
        match out.last_mut() {
            Some(s) if (s.base, s.salt) == (base, salt) => {
                if s.marks.last().is_some_and(|&(i, o)| i >= id || o >= off) {
                    return None;
                }
                s.marks.push((id, off));
            }
            _ => {
                // The segment's entries follow one another: sized once.
                let run = entries[k * ENTRY_LEN..]
                    .chunks_exact(ENTRY_LEN)
                    .take_while(|f| f[..12] == e[..12])
                    .count();
                let mut marks = Vec::with_capacity(run);
                marks.push((id, off));
                out.push(SegmentMarks { base, salt, marks });
            }
        }
    }
    Some(out)
}

/// Replaces `dir/SEEK` with the marks of `segs` (a temporary file renamed over it; no
/// fsync: the file is a hint).
pub(crate) fn write(dir: &Path, segs: &[SegmentMarks]) -> io::Result<()> {
    let tmp = dir.join(crate::storage::temp_name(SEEK_FILE));
    fs::write(&tmp, encode(segs))?;
    fs::rename(&tmp, dir.join(SEEK_FILE))
}

/// The marks in `dir/SEEK`; empty if the file is missing or not valid.
pub(crate) fn read(dir: &Path) -> Vec<SegmentMarks> {
    crate::storage::read_small(&dir.join(SEEK_FILE), 64 << 10)
        .ok()
        .and_then(|b| decode(&b))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SegmentMarks> {
        vec![
            SegmentMarks {
                base: 1,
                salt: 7,
                marks: vec![(1024, 4096), (2048, 8192)],
            },
            SegmentMarks {
                base: 3000,
                salt: 9,
                marks: vec![(3072, 640)],
            },
        ]
    }

    #[test]
    fn round_trip_and_every_damage_is_rejected() {
        let b = encode(&sample());
        assert_eq!(decode(&b), Some(sample()));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert_eq!(decode(&d), None, "byte {i}");
        }
        for n in 0..b.len() {
            assert_eq!(decode(&b[..n]), None, "prefix of {n} bytes");
        }
    }

    // ---------- marks in a journal ----------

    use crate::{Error, Journal, JournalOptions};

    /// One 1 MiB segment holding 5000 records of 100 bytes (160 on disk), closed.
    fn journal() -> (tempfile::TempDir, JournalOptions, std::path::PathBuf) {
        let o = JournalOptions::new().segment_size(1 << 20);
        let t = crate::testing::closed_journal(&o, 5000, 100);
        let seg = t.path().join(format!("{:020}.seg", 1));
        (t, o, seg)
    }

    fn first_id_from(j: &Journal, from: u64) -> Result<Option<u64>, Error> {
        j.cursor(from)?.next(j, |r| r.id())
    }

    /// Zeroes the commit word of the record with ID `id` (records are 160 bytes).
    fn unreadable(seg: &Path, id: u64) {
        let at = SEGMENT_HEADER_LEN as usize + (id as usize - 1) * 160;
        crate::testing::edit_file(seg, |b| b[at..at + 4].fill(0));
    }

    /// A close saves the marks the flusher learned; after reopening, a cursor starts
    /// at the mark below its ID and never steps over the records before it (here one
    /// of them is unreadable: a walk from the segment's start reports it).
    #[test]
    fn a_cursor_starts_at_the_mark_below_its_id() {
        let (t, o, seg) = journal();
        let saved = read(t.path());
        assert_eq!(saved.len(), 1);
        let ids: Vec<u64> = saved[0].marks.iter().map(|m| m.0).collect();
        assert_eq!(ids, [1024, 2048, 3072, 4096]);
        unreadable(&seg, 10);
        let j = Journal::open(t.path(), o).unwrap();
        assert_eq!(first_id_from(&j, 4500).unwrap(), Some(4500));
        assert_eq!(first_id_from(&j, 1024).unwrap(), Some(1024));
        assert!(matches!(first_id_from(&j, 500), Err(Error::Corrupt { .. })));
    }

    /// Marks are hints: a damaged file is ignored, and a mark that does not point at
    /// the record it names is not used (the cursor walks from the segment's start).
    #[test]
    fn wrong_or_damaged_marks_cost_time_not_records() {
        let (t, o, _seg) = journal();
        let good = read(t.path());
        let wrong = vec![SegmentMarks {
            marks: vec![(1024, 64 + 1000 * 160), (2048, 64 + 2050 * 160), (3072, 8)],
            ..good[0].clone()
        }];
        for image in [encode(&wrong), b"garbage".to_vec(), Vec::new()] {
            fs::write(t.path().join(SEEK_FILE), image).unwrap();
            let j = Journal::open(t.path(), o.clone()).unwrap();
            for from in [1, 1024, 2048, 2100, 3072, 3500, 5000] {
                assert_eq!(first_id_from(&j, from).unwrap(), Some(from));
            }
            j.close().unwrap();
        }
    }

    /// Seek by time searches the marks of the segment (by their records' timestamps)
    /// and steps over at most 1024 records: the unreadable record 10 is never reached
    /// for a time after the first mark's.
    #[test]
    fn seek_time_searches_the_marks_of_a_segment() {
        let (t, o, seg) = journal();
        let j = Journal::open(t.path(), o.clone()).unwrap();
        let mut all = Vec::new();
        let mut c = j.cursor(1).unwrap();
        while let Some(r) = c.next(&j, |r| (r.id(), r.timestamp_ns())).unwrap() {
            all.push(r);
        }
        j.close().unwrap();
        assert_eq!(all.len(), 5000);
        unreadable(&seg, 10);
        let j = Journal::open(t.path(), o).unwrap();
        let after_first_mark = all[1023].1 + 1;
        for i in [1100, 2047, 2048, 2049, 3500, 4096, 4999] {
            let t_ns = all[i].1.max(after_first_mark);
            let want = all.iter().find(|r| r.1 >= t_ns).unwrap().0;
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t_ns);
            assert_eq!(j.seek_time(at).unwrap(), want, "time of record {}", i + 1);
        }
        let end = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(all[4999].1 + 1);
        assert_eq!(j.seek_time(end).unwrap(), 5001);
    }

    #[test]
    fn load_keeps_the_marks_below_the_capacity_and_merges_with_known_ones() {
        let m = Marks::default();
        m.load(
            vec![(1024, 100), (1500, 150), (2048, 200), (3072, 300)],
            300,
        );
        assert_eq!(m.all(), vec![(1024, 100), (2048, 200)]);
        // Marks already learned are kept; the file's others are added in order.
        let m = Marks::default();
        m.note(2048, 208);
        m.load(vec![(1024, 100), (2048, 200), (3072, 300)], 1000);
        assert_eq!(m.all(), vec![(1024, 100), (2048, 208), (3072, 300)]);
    }

    #[test]
    fn marks_keep_one_per_stride_in_order() {
        let m = Marks::default();
        for id in 1..5000u64 {
            m.note(id, 64 + 8 * u32::try_from(id).unwrap());
        }
        m.note(2048, 1); // already known: kept as it was
        assert_eq!(m.all().len(), 4);
        assert_eq!(m.at_or_below(1023), None);
        assert_eq!(m.at_or_below(1024), Some((1024, 64 + 8 * 1024)));
        assert_eq!(m.at_or_below(3071), Some((2048, 64 + 8 * 2048)));
        assert_eq!(m.at_or_below(u64::MAX), Some((4096, 64 + 8 * 4096)));
    }
}
