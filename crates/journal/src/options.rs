//! Journal options, durability and recovery modes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::storage::{FileStorage, Storage};

/// When an append is on stable storage.
///
/// In every mode an append that returned `Ok` is already in the memory-mapped file,
/// so it survives the process being killed (`kill -9`, panic, abort).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Page cache only; a background flusher syncs the committed prefix every
    /// `flush_interval`. Power loss can lose up to one interval of appends.
    ///
    /// Segments are mapped with transparent huge pages where the kernel offers them
    /// for files (a flush then write-protects one page-table entry per 2 MiB, not one
    /// per 4 KiB page; not where appenders outrun the pre-faulting), so the write-back
    /// works in 2 MiB units: an explicit
    /// [`Journal::sync`](crate::Journal::sync) writes up to 2 MiB however little was
    /// appended since the last one. A program that needs each append durable should
    /// choose [`Durability::Sync`], which caches the appended part in single pages.
    #[default]
    Buffered,
    /// Each append returns after a flush that covers it (group commit: concurrent
    /// appenders share one flush). Survives power loss.
    Sync,
}

/// What opening, and readers, do about corruption that is not a torn tail or a hole
/// (including IDs missing where nothing explains them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Fail with [`Error::Corrupt`] naming the file and offset.
    #[default]
    Strict,
    /// Mark the damaged bytes as a hole, skip them and count them
    /// ([`Journal::skipped_damage`](crate::Journal::skipped_damage)). Damaged records,
    /// and records whose IDs are found missing, are lost.
    Skip,
}

/// Smallest allowed segment size (64 KiB).
pub const MIN_SEGMENT_SIZE: u64 = 64 * 1024;
/// Largest allowed segment size (1 GiB).
pub const MAX_SEGMENT_SIZE: u64 = 1024 * 1024 * 1024;
/// Default segment size (64 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// Default maximum payload size (16 MiB).
pub const DEFAULT_MAX_RECORD_SIZE: usize = 16 * 1024 * 1024;

/// Options for [`crate::Journal::open`]; a builder.
#[derive(Clone)]
pub struct JournalOptions {
    pub(crate) segment_size: u64,
    pub(crate) durability: Durability,
    pub(crate) flush_interval: Duration,
    pub(crate) max_record_size: usize,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) prefault: bool,
    pub(crate) min_next_id: u64,
    pub(crate) recycle: bool,
    pub(crate) max_segments: Option<usize>,
}

impl fmt::Debug for JournalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalOptions")
            .field("segment_size", &self.segment_size)
            .field("durability", &self.durability)
            .field("flush_interval", &self.flush_interval)
            .field("max_record_size", &self.max_record_size)
            .field("recovery_mode", &self.recovery_mode)
            .field("prefault", &self.prefault)
            .field("min_next_id", &self.min_next_id)
            .field("recycle_segments", &self.recycle)
            .finish_non_exhaustive()
    }
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            durability: Durability::Buffered,
            flush_interval: Duration::from_secs(1),
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            recovery_mode: RecoveryMode::Strict,
            storage: Arc::new(FileStorage),
            prefault: true,
            min_next_id: 0,
            recycle: false,
            max_segments: None,
        }
    }
}

impl JournalOptions {
    /// Default options: 64 MiB segments, buffered durability flushed every second,
    /// 16 MiB max payload, strict recovery, real files.
    pub fn new() -> Self {
        Self::default()
    }
    /// Size of each segment file (64 KiB ..= 1 GiB, a multiple of 4096).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }
    /// Durability mode.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    /// Interval of the background flusher in [`Durability::Buffered`].
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every;
        self
    }
    /// Largest payload accepted (the encoded record must also fit in a segment).
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = bytes;
        self
    }
    /// What opening does about corruption.
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }
    /// The storage backend (tests pass a fault-injecting double).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }
    /// Whether segment mappings are populated (pre-faulted writable) ahead of the
    /// writers, by the background preparer: a window of 8 MiB ahead of the active
    /// segment's tail, moved along as appends reach it, and the first 8 MiB of the
    /// segment prepared next. Without it appenders take the page faults themselves.
    /// Default `true`.
    pub fn prefault(mut self, on: bool) -> Self {
        self.prefault = on;
        self
    }
    /// Lowest ID the next append of a writer may get. If the journal recovered at open
    /// would continue below it (e.g. a power loss lost the tail), the tail segment is
    /// sealed and IDs continue from `id` in a new segment; the IDs in between are
    /// never assigned (a cursor skips the gap). Default 0 (no constraint). Ignored by
    /// [`crate::Journal::open_read_only`].
    pub fn min_next_id(mut self, id: u64) -> Self {
        self.min_next_id = id;
        self
    }

    /// Whether [`crate::Journal::remove_segments_below`] keeps (up to two) removed
    /// segment files to reuse as new segments instead of deleting them: their pages
    /// are already in the page cache, so a new segment costs a `memset` on the
    /// preparer thread instead of the kernel allocating and zeroing fresh pages.
    /// Default `false`, because of the two costs below: turn it on for throughput
    /// only where neither matters. Read-only openers in *other processes* may still be
    /// reading segments after the writer removed them (a recycled file is rewritten in
    /// place, where a deleted one would stay intact for them).
    ///
    /// Power loss: the zeroing of a recycled file is not made durable (only its
    /// header is), so a page of the new life that never reached the disk reads back
    /// as bytes of the old life instead of zeros. Recovery never accepts them (the
    /// records' CRCs are seeded with the new segment's salt and their IDs are lower),
    /// and a lost tail is truncated as before; but if such a page is followed by a
    /// page that did reach the disk, [`RecoveryMode::Strict`] reports it as
    /// corruption where a fresh file would show a hole ([`RecoveryMode::Skip`] turns
    /// it into a hole).
    pub fn recycle_segments(mut self, on: bool) -> Self {
        self.recycle = on;
        self
    }

    /// A budget of live segment files: an append that needs a new segment beyond it
    /// fails with [`Error::Full`] and writes nothing (the spare segment the preparer
    /// keeps ready is not made while the budget is reached). At least 2. Default: none.
    pub fn max_segments(mut self, n: usize) -> Self {
        self.max_segments = Some(n);
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] naming the offending option.
    pub fn validate(&self) -> Result<(), Error> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(Error::InvalidOptions(format!(
                "segment_size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        if self.segment_size % 4096 != 0 {
            return Err(Error::InvalidOptions(format!(
                "segment_size {} is not a multiple of 4096",
                self.segment_size
            )));
        }
        if self.flush_interval.is_zero() {
            return Err(Error::InvalidOptions(
                "flush_interval must be greater than zero".into(),
            ));
        }
        if self.max_record_size == 0 || self.max_record_size as u64 > MAX_SEGMENT_SIZE {
            return Err(Error::InvalidOptions(format!(
                "max_record_size {} is outside 1..={MAX_SEGMENT_SIZE}",
                self.max_record_size
            )));
        }
        if self.max_segments.is_some_and(|n| n < 2) {
            return Err(Error::InvalidOptions(
                "max_segments must be at least 2".into(),
            ));
        }
        Ok(())
    }
}
