//! One segment: its file, mapping, header fields and reservation word.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

use crate::codec::SEGMENT_HEADER_LEN;
use crate::codec::{self, Position, RecordView, RECORD_HEADER_LEN};
use crate::map::Map;
use crate::proto::{self, Observed, Region, KIND_HOLE, KIND_RECORD};
use crate::recover::Torn;
use crate::seek::Marks;
use crate::sync::{AtomicU32, AtomicU64};

/// A mapped segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// First ID the segment holds (from its header and file name).
    pub(crate) base_id: u64,
    /// Seeds the record checksums.
    pub(crate) salt: u32,
    /// Segment size in bytes (= mapping length, <= 1 GiB).
    pub(crate) capacity: u32,
    pub(crate) created_ns: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    map: Map,
    /// The reservation word (`proto` layout). Written by appenders (CAS) in the live
    /// segment; read by readers to tell "pending" from "end" after a seal.
    pub(crate) word: CachePadded<AtomicU64>,
    /// Whether this process appends (or appended) to this segment, so that `word`
    /// is meaningful. Segments found at open (other than the active one) and all
    /// segments of a read-only journal are not live.
    pub(crate) live: bool,
    /// End of the records found at open in the segment appends resume in (0 for
    /// others): every slot below it was committed by an earlier session, so an
    /// uncommitted one there is damage, not a producer still writing.
    pub(crate) opened_end: u32,
    /// Whether the directory entry (rename) of this segment is known durable.
    pub(crate) dir_synced: AtomicBool,
    /// The mapping is known to be populated writable (no appender faults) below this
    /// offset. Written by the preparer only; a hint (populating twice is harmless).
    /// (Plain std atomics, here and below: hints outside the model-checked protocol.)
    pub(crate) populated_to: std::sync::atomic::AtomicU32,
    /// An appender whose reservation ends beyond this offset asks the preparer to
    /// populate further (`u32::MAX`: asked already, or nothing left to populate).
    pub(crate) populate_mark: std::sync::atomic::AtomicU32,
    /// Where some of its records start (`seek`).
    pub(crate) marks: Marks,
    /// A read-only journal's last segment: the torn tail found in it while no writer
    /// lived, where in-order readers stop (see `torn`).
    torn: Mutex<Option<Torn>>,
    /// The offset of `torn`, 0 for none: looked at on every step, so that segments
    /// without a torn tail take no lock. Relaxed: `torn` holds the value.
    torn_at: std::sync::atomic::AtomicU32,
}

impl Region for Segment {
    #[inline]
    fn capacity(&self) -> u32 {
        self.capacity
    }

    #[inline]
    fn commit_word(&self, offset: u32) -> &AtomicU32 {
        debug_assert!(offset % 8 == 0 && offset as usize + 4 <= self.map.len());
        // SAFETY: [1] `offset + 4 <= len` keeps the word inside the mapping, which
        // lives as long as `self`; [2] the mapping is page aligned and `offset` is a
        // multiple of 8, so the pointer is aligned for AtomicU32; [3] commit words are
        // only ever accessed atomically once the segment is shared (mmap contract,
        // invariant 2 in `map`).
        unsafe { &*(self.map.ptr().add(offset as usize) as *const AtomicU32) }
    }
}

/// What `Segment::step` found.
pub(crate) enum Step<'a> {
    Pending,
    End,
    Hole { len: u32 },
    Record { view: RecordView<'a>, len: u32 },
    Corrupt(&'static str),
}

impl Segment {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        base_id: u64,
        salt: u32,
        created_ns: u64,
        path: PathBuf,
        file: File,
        map: Map,
        word: u64,
        live: bool,
    ) -> Segment {
        let capacity = u32::try_from(map.len()).expect("segment size is at most 1 GiB");
        Segment {
            base_id,
            salt,
            capacity,
            created_ns,
            path,
            file,
            map,
            word: CachePadded::new(AtomicU64::new(word)),
            live,
            opened_end: 0,
            dir_synced: AtomicBool::new(true),
            populated_to: std::sync::atomic::AtomicU32::new(0),
            populate_mark: std::sync::atomic::AtomicU32::new(u32::MAX),
            marks: Marks::default(),
            torn: Mutex::new(None),
            torn_at: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The torn tail recorded for this segment if it starts at or below `offset`.
    #[inline]
    pub(crate) fn torn_at_or_below(&self, offset: u32) -> Option<Torn> {
        let at = self.torn_at.load(std::sync::atomic::Ordering::Relaxed);
        if at == 0 || offset < at {
            return None;
        }
        *crate::journal::lock_ignore_poison(&self.torn)
    }

    /// Records the torn tail found in this segment (`None`: none).
    pub(crate) fn set_torn(&self, torn: Option<Torn>) {
        let mut t = crate::journal::lock_ignore_poison(&self.torn);
        *t = torn;
        self.torn_at.store(
            torn.map_or(0, |t| t.offset),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Forgets the torn tail `torn` (a writer repaired it), unless another was
    /// recorded meanwhile.
    pub(crate) fn clear_torn(&self, torn: Torn) {
        let mut t = crate::journal::lock_ignore_poison(&self.torn);
        if *t == Some(torn) {
            *t = None;
            self.torn_at.store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The file and mapping, for reuse of the file as a new segment.
    pub(crate) fn into_parts(self) -> (File, Map) {
        (self.file, self.map)
    }

    /// Pre-faults `offset..offset + len` writable (best effort).
    pub(crate) fn populate_write_range(&self, offset: u32, len: u32) {
        if self.map.is_writable() {
            let _ = self.map.populate_write_range(offset as usize, len as usize);
        }
    }

    /// Transparent huge pages for `offset..offset + len`, widened to whole 2 MiB
    /// blocks (best effort; see `Map::advise_huge_range`). Returns the end of the
    /// advised range.
    pub(crate) fn advise_huge(&self, offset: u32, len: u32) -> u32 {
        if self.map.is_writable() {
            let _ = self.map.advise_huge_range(offset as usize, len as usize);
        }
        let end = crate::map::huge_block_end(offset.saturating_add(len) as usize);
        u32::try_from(end).map_or(self.capacity, |e| e.min(self.capacity))
    }

    /// Caches `offset..` in single pages from now on, for appends (best effort; see
    /// `Map::advise_appends`).
    pub(crate) fn advise_appends(&self, offset: u32) {
        if self.map.is_writable() {
            let _ = self.map.advise_appends(offset as usize);
        }
    }

    /// Back to default readahead once sealed (best effort; see `Map::advise_reads`).
    pub(crate) fn advise_reads(&self) {
        let _ = self.map.advise_reads();
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.map.is_writable()
    }

    /// Hints the CPU to fetch the cache lines of `offset..offset + len` (clamped to
    /// the segment) in a writable state. Only a hint: no memory is accessed.
    #[inline]
    pub(crate) fn prefetch_for_write(&self, offset: u32, len: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let end = offset.saturating_add(len).min(self.capacity);
            let mut at = offset & !63;
            while at < end {
                // SAFETY: `at < capacity`, so the pointer is inside the mapping; a
                // prefetch never faults and changes no memory.
                unsafe {
                    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
                    _mm_prefetch::<_MM_HINT_ET0>(self.ptr(at).cast::<i8>().cast_const());
                }
                at += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (offset, len);
    }

    /// Raw pointer to `offset` in the mapping.
    #[inline]
    pub(crate) fn ptr(&self, offset: u32) -> *mut u8 {
        debug_assert!(offset as usize <= self.map.len());
        // SAFETY: offset <= len, so the result is in (or one past) the mapping.
        unsafe { self.map.ptr().add(offset as usize) }
    }

    /// Borrows `offset..offset + len` of the mapping.
    ///
    /// # Safety
    /// The range must be in bounds and hold only committed bytes (or the immutable
    /// header), which nobody writes while the borrow lives; or the caller must have
    /// exclusive access to the segment (open-time recovery).
    #[inline]
    pub(crate) unsafe fn slice(&self, offset: u32, len: u32) -> &[u8] {
        debug_assert!(offset as usize + len as usize <= self.map.len());
        // SAFETY: in bounds and not concurrently written, per the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr(offset), len as usize) }
    }

    /// Reads the u32 at `offset` of a committed record or end marker (non-atomic; after
    /// Acquire).
    #[inline]
    fn read_u32(&self, offset: u32) -> u32 {
        debug_assert!(offset as usize + 4 <= self.map.len());
        // SAFETY: in bounds (checked by callers against capacity), and the bytes are
        // part of a committed record or end marker whose commit word was loaded with
        // Acquire; such bytes are never written again.
        unsafe { std::ptr::read_unaligned(self.ptr(offset) as *const u32) }.to_le()
    }

    /// The reservation word if this process appends here.
    #[inline]
    pub(crate) fn live_word(&self) -> Option<&AtomicU64> {
        self.live.then_some(&*self.word)
    }

    /// Looks at `offset` as an in-order reader. `has_next` says whether a later
    /// segment exists (a pending slot of a non-live segment is then its end).
    /// Where an in-order reader looking for `id` starts: the nearest seek mark at or
    /// below it if the record there is committed and holds that ID, else the first
    /// record.
    pub(crate) fn start_for(&self, id: u64) -> u32 {
        match self.marks.at_or_below(id) {
            Some((mark, off)) if off >= SEGMENT_HEADER_LEN && off % 8 == 0 => {
                match self.step(off, false) {
                    Step::Record { view, .. } if view.id() == mark => off,
                    _ => SEGMENT_HEADER_LEN,
                }
            }
            _ => SEGMENT_HEADER_LEN,
        }
    }

    /// `RecoveryMode::Skip`: where an in-order reader goes on after damage at `off`
    /// that `step` reports as `Corrupt`: the first valid record after it (salted
    /// checksum, ID above `prev_id`), or the end of the searched part if there is none.
    /// Only bytes no appender writes are searched: all of a segment this process does
    /// not append to once a later one exists (`has_next`), or the part of the segment
    /// appends resumed in that an earlier session wrote (below `opened_end`). `None`
    /// elsewhere: the damage is reported.
    pub(crate) fn resync_after(&self, off: u32, prev_id: u64, has_next: bool) -> Option<u32> {
        let limit = if self.live {
            self.opened_end
        } else if has_next {
            self.capacity
        } else {
            0
        };
        if off >= limit {
            return None;
        }
        // SAFETY: nothing writes `0..limit` while the segment is mapped: a segment no
        // appender of this process uses, with a later one published, is never written
        // again; in the live segment, the bytes below `opened_end` were written by an
        // earlier session and recovered before the segment was published, and appends
        // only go after them.
        let s = unsafe { self.slice(0, limit) };
        let max_records = codec::max_records(self.capacity);
        let next = crate::recover::find_next_valid(
            s,
            off,
            self.salt,
            prev_id.saturating_add(1).max(self.base_id),
            self.base_id,
            max_records,
        );
        Some(next.unwrap_or(limit))
    }

    /// Bytes 4..8 of the end marker at `offset` ([`proto::END_GAP`] or zero), or zero
    /// if there is no end marker there (the segment is full, or ends at a slot that was
    /// never committed).
    pub(crate) fn end_tag(&self, offset: u32) -> u32 {
        if u64::from(offset) + u64::from(proto::END_MARKER_LEN) > u64::from(self.capacity) {
            return 0;
        }
        // Acquire: pairs with the Release store of the marker (`proto::mark_end`), which
        // follows the write of its bytes 4..8.
        if self
            .commit_word(offset)
            .load(crate::sync::Ordering::Acquire)
            != proto::KIND_END
        {
            return 0;
        }
        self.read_u32(offset + 4)
    }

    /// Whether the committed record of `len` bytes at `offset` matches its salted
    /// checksum. The caller has seen the record committed and in bounds (from `step`).
    pub(crate) fn record_checksum_ok(&self, offset: u32, len: u32) -> bool {
        debug_assert!(len >= RECORD_HEADER_LEN);
        let stored = self.read_u32(offset + 4);
        // SAFETY: `step` returned this record: it is committed (Acquire on its commit
        // word) and `offset + len` is within the segment; committed bytes are never
        // written again.
        let body = unsafe { self.slice(offset + 8, len - 8) };
        crate::crc::crc32c_append(self.salt, body) == stored
    }

    pub(crate) fn step(&self, offset: u32, has_next: bool) -> Step<'_> {
        match proto::observe(self, self.live_word(), offset) {
            Observed::Pending if !self.live && has_next => Step::End,
            // A zeroed slot below the end of an earlier session (an edited file: the
            // open checked only the last stretch of a cleanly closed segment) must be
            // reported, not waited on.
            Observed::Pending if offset < self.opened_end => {
                Step::Corrupt("record reserved but never committed")
            }
            Observed::Pending => Step::Pending,
            Observed::End => Step::End,
            Observed::Committed(KIND_HOLE) => {
                if offset as u64 + 16 > u64::from(self.capacity) {
                    return Step::Corrupt("hole marker past the end of the segment");
                }
                let len = self.read_u32(offset + 8);
                if len < 16
                    || len % 8 != 0
                    || u64::from(offset) + u64::from(len) > u64::from(self.capacity)
                {
                    return Step::Corrupt("hole marker length out of bounds");
                }
                Step::Hole { len }
            }
            Observed::Committed(KIND_RECORD) => {
                if u64::from(offset) + u64::from(RECORD_HEADER_LEN) > u64::from(self.capacity) {
                    return Step::Corrupt("record header past the end of the segment");
                }
                let len = self.read_u32(offset + 8);
                if len < RECORD_HEADER_LEN
                    || u64::from(offset) + u64::from(codec::align8(len.min(u32::MAX - 8)))
                        > u64::from(self.capacity)
                {
                    return Step::Corrupt("record length out of bounds");
                }
                // SAFETY: the record is committed (Acquire above) and in bounds (checked);
                // committed bytes are never written again.
                let raw = unsafe { self.slice(offset + 8, len - 8) };
                let id = codec::rd_u64(raw, 8);
                let pos = Position {
                    segment: self.base_id,
                    offset,
                    id,
                };
                match RecordView::new(raw, pos) {
                    Some(view) => Step::Record {
                        view,
                        len: codec::align8(len),
                    },
                    None => Step::Corrupt("record field lengths do not add up"),
                }
            }
            Observed::Committed(_) => Step::Corrupt("unknown commit word"),
        }
    }
}
