//! The segment mapping: the one place that maps files.
//!
//! # The mmap contract
//!
//! A [`Map`] is a `MAP_SHARED` mapping of a whole segment file. Mapped memory can be
//! changed behind the program's back by anything that writes the file, which would
//! break Rust's aliasing rules for the `&[u8]` slices handed to readers. The safe API
//! stays sound because of these invariants:
//!
//! 1. **Exclusive ownership.** A writer holds the directory's `LOCK` file
//!    (`flock(LOCK_EX)`) for its whole life, so exactly one process writes segment
//!    files; the journal never writes a segment through `write(2)`.
//! 2. **Write once.** Within the writer, a byte range is written only by the thread
//!    that reserved it (see `proto`), before the record's commit word is stored with
//!    `Release`. Slices are only formed over committed records (after an `Acquire`
//!    load of the commit word), which are never written again; commit words are only
//!    accessed atomically. Recovery rewrites bytes only at open, before any reader.
//! 3. **No external truncation or modification.** Files are never `set_len`'d while
//!    mapped; segments are removed (unlinked) only after the table no longer refers to
//!    them, and unmapped only after every epoch-pinned reader is done (crossbeam-epoch
//!    plus `Arc`). Another program truncating or editing a segment file of a live
//!    queue is outside the contract (it could raise `SIGBUS` or show torn bytes), as
//!    for every mmap-based store.
//! 4. **Read-only opens** map read-only and read only committed records of a writer in
//!    another process: the same physical pages, and the writer's store order (body,
//!    then `Release` commit word) is what the reader's `Acquire` load observes. The
//!    one exception is a torn tail of the last segment (`torn`): a read-only open reads
//!    the whole segment, or the bytes at the torn offset, only while it holds `LOCK`
//!    shared, which no writer can hold at the same time; without a `LOCK` file (no
//!    writer ever opened the directory) it reads a copy. Otherwise it loads only the
//!    commit word there, atomically.

use std::fs::File;
use std::io;

use memmap2::{MmapOptions, MmapRaw};

/// The size of a transparent huge page on the platforms that have them (x86-64 and
/// 4 KiB-page arm64): the unit [`Map::advise_huge_range`] advises in.
pub(crate) const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Where the huge-page block holding byte `end - 1` ends: the end of what
/// [`Map::advise_huge_range`] advises for a range ending at `end`, before clamping to
/// the mapping.
pub(crate) fn huge_block_end(end: usize) -> usize {
    end.next_multiple_of(HUGE_PAGE)
}

/// A shared mapping of a whole segment file (see the module docs for the contract).
#[derive(Debug)]
pub(crate) struct Map {
    raw: MmapRaw,
    writable: bool,
}

impl Map {
    /// Maps `len` bytes of `file` read-write (`MAP_SHARED`), populating the page tables
    /// if `populate` (so writers do not take a page fault per 4 KiB).
    pub(crate) fn writable(file: &File, len: usize, populate: bool) -> io::Result<Map> {
        let mut o = MmapOptions::new();
        o.len(len);
        if populate {
            o.populate();
        }
        Ok(Map {
            raw: o.map_raw(file)?,
            writable: true,
        })
    }

    /// Maps `len` bytes of `file` read-only.
    pub(crate) fn read_only(file: &File, len: usize) -> io::Result<Map> {
        Ok(Map {
            raw: MmapOptions::new().len(len).map_raw_read_only(file)?,
            writable: false,
        })
    }

    /// Faults the pages of `offset..offset + len` in writable (`MADV_POPULATE_WRITE`;
    /// clamped to the mapping, `offset` rounded down to a page), so appenders take no
    /// page fault there (a read-populated shared mapping still faults on the first
    /// write to each page). Safe to call while others write: the kernel does not
    /// change data.
    pub(crate) fn populate_write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let start = offset & !(crate::storage::page_size() - 1);
            self.advise_span(
                memmap2::Advice::PopulateWrite,
                start,
                offset.saturating_add(len),
            )
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (offset, len);
            Ok(())
        }
    }

    /// Asks the kernel to cache `offset..` (rounded down to a page) in single pages
    /// from now on: `MADV_RANDOM`, which turns off fault-time readahead. The part of a
    /// segment that appends will write. Readahead on a file mapping caches pages in
    /// folios that grow with each fault, up to 2 MiB on recent kernels, and a flush
    /// writes back every dirty folio whole: a durable append of 160 bytes into a
    /// 2 MiB folio writes 2 MiB (on the ext4 of the machine the benchmarks run on,
    /// each `msync` past the first 32 MiB of a segment wrote 1 to 2 MiB and took three
    /// to four times as long). Best effort: pages already cached keep their folios.
    pub(crate) fn advise_appends(&self, offset: usize) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let len = self.len().saturating_sub(offset);
            if len == 0 {
                return Ok(());
            }
            self.raw.advise_range(memmap2::Advice::Random, offset, len)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = offset;
            Ok(())
        }
    }

    /// Asks for transparent huge pages (`MADV_HUGEPAGE`) on `offset..offset + len`,
    /// widened to whole 2 MiB blocks, for a journal whose flushes run in the background
    /// (`Durability::Buffered`): the first block of a new segment, and the rest of the
    /// preparer's window before it pre-faults it. The page cache then holds those blocks in 2 MiB folios mapped by
    /// one page-table entry each, and the flush's write-back write-protects one entry
    /// per 2 MiB instead of one per 4 KiB page. Each write-protected entry costs a TLB
    /// shootdown: an interrupt, and a wait for it, on every other CPU running one of the
    /// process's threads. At 20,000 appends a second that was about 750 interrupts per
    /// flush, and the stall they add up to showed as the 99th percentile of end-to-end
    /// latency. Which stretches are advised is the journal's choice (`huge_ahead`:
    /// not while appenders outrun the preparer). A flush writes back whole folios, so
    /// an explicit flush writes up to 2 MiB however little was appended since the last
    /// one (journals that flush per append advise [`Map::advise_appends`] instead).
    /// Best effort: kernels or file systems without large folios for files ignore it.
    pub(crate) fn advise_huge_range(&self, offset: usize, len: usize) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let start = offset & !(HUGE_PAGE - 1);
            let end = huge_block_end(offset.saturating_add(len));
            self.advise_span(memmap2::Advice::HugePage, start, end)?;
            // And no readahead there: a huge-page fault then makes exactly its own 2 MiB
            // folio, where with readahead it makes the next one too and marks it to
            // read further ahead, at huge-page size, from whichever thread touches it
            // next (an appender outrunning the preparer zeroed 2 MiB folios itself).
            self.advise_span(memmap2::Advice::Random, start, end)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (offset, len);
            Ok(())
        }
    }

    /// `advice` for `start..end`, clamped to the mapping (nothing if that is empty).
    #[cfg(target_os = "linux")]
    fn advise_span(&self, advice: memmap2::Advice, start: usize, end: usize) -> io::Result<()> {
        let end = end.min(self.len());
        if start >= end {
            return Ok(());
        }
        self.raw.advise_range(advice, start, end - start)
    }

    /// Restores the default readahead (`MADV_NORMAL`) once nothing more will be
    /// appended: a consumer faulting in pages of the segment after they were evicted
    /// reads ahead again.
    pub(crate) fn advise_reads(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            self.raw.advise(memmap2::Advice::Normal)
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(())
        }
    }

    #[inline]
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.raw.as_mut_ptr()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }
}
