//! The checkpoint: a small checksummed file that records the durable position of the
//! journal as of a completed flush, so that opening scans only the segments after it.
//!
//! # File `CHECKPOINT` (64 bytes, little endian)
//!
//! ```text
//! offset size  field
//!      0    8  magic  89 'L' 'Q' 'C' 0D 0A 1A 0A
//!      8    4  format version (1)
//!     12    4  flags: bit 0 = the owner's value at 40 is present;
//!                   bit 1 = written by a clean close (see below)
//!     16    8  base ID of the segment that holds the durable position
//!     24    4  that segment's salt (binds the checkpoint to that very file)
//!     28    4  durable byte offset in that segment (end of the flushed records)
//!     32    8  next ID after the flushed records
//!     40    8  the owner's value (the queue's consumed watermark), 0 if absent
//!     48    8  time the checkpoint was written, ns since the UNIX epoch
//!     56    4  clean close only (else zero): offset of a record at least 64 KiB
//!              before the end (or of the first record), from which the next open
//!              checks the records; zero if not recorded
//!     60    4  CRC32C over bytes 0..60
//! ```
//!
//! It is replaced atomically (`CHECKPOINT.tmp`, fsync, rename, fsync of the directory;
//! [`crate::Storage::replace_file`]) by a background thread after a flush completes,
//! at most once per `max(flush_interval, 100 ms)`, sooner when the flush reached a new
//! segment, and once more by `close`. Appends never wait for it.
//!
//! # At open
//!
//! Every segment before the checkpointed one was fully flushed when the checkpoint was
//! written: it is the durable region and is not scanned (a cursor still checks each
//! record's checksum as it reads). The checkpointed segment and every later one are
//! the tail and are scanned record by record (torn tails cut, holes marked), however
//! many segments were created after the checkpoint. The checkpointed segment is
//! scanned from its start, not from the checkpointed offset: one segment at most, and
//! a record below the offset that is damaged, zeroed or missing (which no power loss
//! produces, since it was flushed, but a damaged disk or an edited file can) is then
//! found at open and reported as corruption (`RecoveryMode::Skip`: dropped and
//! counted, and its ID is never given out again) instead of being cut as a torn tail or
//! leaving a reader waiting on a slot that will never be committed.
//!
//! Where the scan of a segment before the last ends below the next segment's base ID
//! (IDs lost in a crash before they were committed), open tags the segment's end
//! marker (`proto::END_GAP`) so that readers accept the gap; any other gap between
//! segments is reported by the reader that meets it.
//!
//! A checkpoint written by a clean close (every reservation committed and flushed,
//! appends stopped) records the exact end of the journal: its segment is the last one
//! and nothing follows the offset. It also names a record at least 64 KiB before the
//! end. A writable open that finds such a checkpoint naming the last segment checks
//! the records from that one on (every checksum) and takes the segment as is if they
//! end exactly at the recorded end and the 64 KiB after it are zeros: a torn, zeroed
//! or overwritten tail fails that check, and the whole segment is then scanned as
//! after a crash. The records before that window were flushed by a clean session, the
//! same as the segments before the checkpointed one: the durable region, whose damage a
//! reader reports when it reaches it. An open therefore reads about 128 KiB of the last
//! segment, not all of it. Before the first append it replaces the checkpoint with the
//! same position marked not clean, durably: a crash of that session can never leave a
//! "clean" checkpoint in front of newer records.
//!
//! A missing, torn or corrupt checkpoint, or one that names a segment file that does
//! not exist or was replaced, falls back to scanning the last two segments.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::codec::{rd_u32, rd_u64, SEGMENT_HEADER_LEN};
use crate::error::Error;
use crate::journal::{Inner, Journal};
use crate::options::MAX_SEGMENT_SIZE;
use crate::segment::Segment;
use crate::storage::Storage;

/// Name of the checkpoint file in the queue directory.
pub const CHECKPOINT_FILE: &str = "CHECKPOINT";
/// Size of the checkpoint file in bytes.
pub const CHECKPOINT_LEN: usize = 64;
/// Checkpoint magic number.
const MAGIC: [u8; 8] = [0x89, b'L', b'Q', b'C', 0x0D, 0x0A, 0x1A, 0x0A];
/// Checkpoint format version.
const VERSION: u32 = 1;
/// Flag bit: the owner's value is present.
const FLAG_EXTRA: u32 = 1;
/// Flag bit: written by a clean close; nothing follows the position.
const FLAG_CLEAN: u32 = 2;
/// Shortest time between two checkpoints written in the background (Sync mode; in
/// Buffered mode the flush interval, if longer).
pub(crate) const MIN_CHECKPOINT_GAP: Duration = Duration::from_millis(100);

/// The contents of a checkpoint file.
///
/// ```
/// use ledgerq_journal::Checkpoint;
/// let c = Checkpoint {
///     segment_base: 1,
///     segment_salt: 7,
///     offset: 4096,
///     next_id: 42,
///     extra: Some(10),
///     written_ns: 0,
///     clean: false,
///     check_from: 0,
/// };
/// assert_eq!(Checkpoint::decode(&c.encode()), Ok(c));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Base ID of the segment holding the durable position.
    pub segment_base: u64,
    /// Salt from that segment's header.
    pub segment_salt: u32,
    /// Byte offset in that segment up to which records were flushed.
    pub offset: u32,
    /// The ID after the last flushed record.
    pub next_id: u64,
    /// A value recorded for the journal's owner (the queue's consumed watermark), if
    /// it provided one ([`Journal::set_checkpoint_extra`]).
    pub extra: Option<u64>,
    /// When the checkpoint was written, ns since the UNIX epoch.
    pub written_ns: u64,
    /// Written by a clean close: the position is the end of the journal (its segment
    /// is the last, and nothing was reserved beyond the offset).
    pub clean: bool,
    /// With `clean`: the offset of a record at least 64 KiB before `offset` (or of the
    /// segment's first record), from which the next open checks the records up to the
    /// end; 0 when not recorded (the whole segment is checked). Always 0 without `clean`.
    pub check_from: u32,
}

impl Checkpoint {
    /// The 64-byte file image (layout in the module docs of the journal's checkpoint).
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let flags = if self.extra.is_some() { FLAG_EXTRA } else { 0 }
            | if self.clean { FLAG_CLEAN } else { 0 };
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_base.to_le_bytes());
        b[24..28].copy_from_slice(&self.segment_salt.to_le_bytes());
        b[28..32].copy_from_slice(&self.offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.next_id.to_le_bytes());
        b[40..48].copy_from_slice(&self.extra.unwrap_or(0).to_le_bytes());
        b[48..56].copy_from_slice(&self.written_ns.to_le_bytes());
        b[56..60].copy_from_slice(&self.check_from.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a checkpoint file image.
    ///
    /// # Errors
    /// What is wrong with it: length, checksum, magic, version, or a field out of range.
    pub fn decode(b: &[u8]) -> Result<Checkpoint, &'static str> {
        if b.len() != CHECKPOINT_LEN {
            return Err("checkpoint file has the wrong length");
        }
        if crc32c::crc32c(&b[..60]) != rd_u32(b, 60) {
            return Err("checkpoint checksum mismatch");
        }
        if b[0..8] != MAGIC {
            return Err("bad checkpoint magic");
        }
        if rd_u32(b, 8) != VERSION {
            return Err("unsupported checkpoint format version");
        }
        let flags = rd_u32(b, 12);
        if flags & !(FLAG_EXTRA | FLAG_CLEAN) != 0 {
            return Err("unknown checkpoint flags or nonzero reserved bytes");
        }
        let c = Checkpoint {
            segment_base: rd_u64(b, 16),
            segment_salt: rd_u32(b, 24),
            offset: rd_u32(b, 28),
            next_id: rd_u64(b, 32),
            extra: (flags & FLAG_EXTRA != 0).then(|| rd_u64(b, 40)),
            written_ns: rd_u64(b, 48),
            clean: flags & FLAG_CLEAN != 0,
            check_from: rd_u32(b, 56),
        };
        if c.extra.is_none() && rd_u64(b, 40) != 0 {
            return Err("unknown checkpoint flags or nonzero reserved bytes");
        }
        if c.check_from != 0
            && (!c.clean
                || c.check_from < SEGMENT_HEADER_LEN
                || c.check_from > c.offset
                || c.check_from % 8 != 0)
        {
            return Err("checkpoint check offset out of range");
        }
        if c.offset < SEGMENT_HEADER_LEN
            || c.offset % 8 != 0
            || u64::from(c.offset) > MAX_SEGMENT_SIZE
        {
            return Err("checkpoint offset out of range");
        }
        // The records below `offset` hold at most `max_records(offset)` IDs.
        if c.next_id < c.segment_base
            || c.next_id - c.segment_base > crate::codec::max_records(c.offset)
        {
            return Err("checkpoint next ID out of range");
        }
        Ok(c)
    }
}

/// What reading the checkpoint file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// No checkpoint file.
    Missing,
    /// A valid checkpoint.
    Valid(Checkpoint),
    /// A file that is not a valid checkpoint (torn, corrupt, unreadable).
    Damaged(String),
}

/// Reads `dir/CHECKPOINT`.
pub(crate) fn read(dir: &Path) -> Found {
    match crate::storage::read_small(&dir.join(CHECKPOINT_FILE), CHECKPOINT_LEN) {
        Ok(b) => match Checkpoint::decode(&b) {
            Ok(c) => Found::Valid(c),
            Err(reason) => Found::Damaged(reason.to_string()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Found::Missing,
        Err(e) => Found::Damaged(format!("checkpoint file could not be read: {e}")),
    }
}

/// Where the tail starts given a checkpoint and the base IDs of the segments found
/// (oldest first): the index of the first segment to scan at open, or why the
/// checkpoint does not match the segments (then the last two segments are scanned).
/// `salt_of(i)` gives the salt in the header of segment `i` (`None` if the header is
/// damaged); it is asked only for the segment the checkpoint names.
///
/// # Errors
/// Why the checkpoint cannot be used.
pub fn tail_start(
    cp: &Checkpoint,
    bases: &[u64],
    salt_of: impl FnOnce(usize) -> Option<u32>,
) -> Result<usize, &'static str> {
    let Some(&first) = bases.first() else {
        return Err("checkpoint names a segment that does not exist");
    };
    if cp.segment_base < first {
        // The checkpointed segment was removed (every ID in it was consumed): every
        // segment left was created after the checkpoint.
        return Ok(0);
    }
    match bases.binary_search(&cp.segment_base) {
        Ok(i) => match salt_of(i) {
            Some(salt) if salt == cp.segment_salt => Ok(i),
            Some(_) => Err("checkpoint names a segment file that was replaced (salt differs)"),
            None => Err("checkpoint names a segment whose header is damaged"),
        },
        Err(i) if i == bases.len() => {
            Err("checkpoint is ahead of the segments (the segment it names is missing)")
        }
        Err(_) => Err("checkpoint names a segment that is missing"),
    }
}

/// A durable position: the end of the flushed records of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durable {
    pub base: u64,
    pub salt: u32,
    pub offset: u32,
    pub next_id: u64,
}

/// What open-time recovery did, for tools and tests ([`Journal::recovery_info`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryInfo {
    /// The checkpoint found at open and used to choose the segments to scan.
    pub checkpoint: Option<Checkpoint>,
    /// A valid checkpoint naming a segment after every segment file (or with no
    /// segment file left): the records it recorded as flushed beyond the files are
    /// missing, reported ([`RecoveryMode::Strict`](crate::RecoveryMode::Strict)) or
    /// counted in `skipped`.
    pub checkpoint_ahead: Option<Checkpoint>,
    /// Why there was no usable checkpoint (missing, damaged, not matching the
    /// segments); then the last two segments were scanned.
    pub checkpoint_problem: Option<String>,
    /// Base ID of the first segment scanned (the tail), if any segment exists.
    pub tail_from: Option<u64>,
    /// Segments scanned.
    pub scanned_segments: usize,
    /// Segments whose torn tail was cut.
    pub truncated: usize,
    /// Holes marked (reservations never committed, followed by valid records).
    pub holes: usize,
    /// Damaged spans skipped ([`crate::RecoveryMode::Skip`]).
    pub skipped: usize,
    /// Segments after the checkpoint whose header never reached the disk, removed.
    pub removed_blank: usize,
    /// The checkpoint was written by a clean close and gave the end of the last
    /// segment, which was therefore not scanned.
    pub clean_close: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The newest durable position reported by a flush.
    latest: Option<Durable>,
    /// What the file holds now.
    written: Option<(Durable, Option<u64>)>,
    last_write: Option<Instant>,
    urgent: bool,
    /// The background thread waits without a timeout (nothing to write).
    idle: bool,
    stop: bool,
}

/// Writes the checkpoint of a writer's journal (one per journal).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    min_gap: Duration,
    extra: AtomicU64,
    has_extra: AtomicBool,
    state: Mutex<State>,
    cv: Condvar,
    /// Serializes file writes (background thread, `write_checkpoint`, close).
    writing: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) info: RecoveryInfo,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Checkpointer {
    /// `loaded` is the checkpoint used at open (what the file holds), `recovered` the
    /// durable position recovery ended at.
    pub(crate) fn new(
        dir: &Path,
        storage: Arc<dyn Storage>,
        min_gap: Duration,
        loaded: Option<Checkpoint>,
        recovered: Option<Durable>,
        info: RecoveryInfo,
    ) -> Checkpointer {
        let written = loaded.map(|c| {
            (
                Durable {
                    base: c.segment_base,
                    salt: c.segment_salt,
                    offset: c.offset,
                    next_id: c.next_id,
                },
                c.extra,
            )
        });
        // A tail that was longer than one segment (or had no checkpoint) is recorded
        // at once, so that the next open does not scan it again; so is a durable end
        // that moved back (Skip mode dropped damaged records below it), so that the
        // next open does not report them again.
        let urgent = match (recovered, written) {
            (Some(r), Some((w, _))) => r.base != w.base || r.offset < w.offset,
            (Some(_), None) => true,
            (None, _) => false,
        };
        Checkpointer {
            dir: dir.to_path_buf(),
            storage,
            min_gap,
            extra: AtomicU64::new(loaded.and_then(|c| c.extra).unwrap_or(0)),
            has_extra: AtomicBool::new(loaded.is_some_and(|c| c.extra.is_some())),
            state: Mutex::new(State {
                latest: recovered,
                written,
                last_write: None,
                urgent,
                idle: false,
                stop: false,
            }),
            cv: Condvar::new(),
            writing: Mutex::new(()),
            thread: Mutex::new(None),
            info,
        }
    }

    /// Starts the background writer, unless it runs already or `finish` was called.
    pub(crate) fn start(self: &Arc<Self>) -> io::Result<()> {
        // `finish` sets `stop` before it takes `thread`: a writer started here is
        // either seen (and joined) by it, or not started at all.
        let mut t = lock(&self.thread);
        if t.is_some() || lock(&self.state).stop {
            return Ok(());
        }
        let me = self.clone();
        let h = std::thread::Builder::new()
            .name("ledgerq-checkpoint".into())
            .spawn(move || {
                crate::storage::lower_background_priority();
                me.run()
            })?;
        *t = Some(h);
        Ok(())
    }

    /// Whether the file lags the position recovery ended at (no clean close): the
    /// writer, which writes a first checkpoint at once, then starts at open rather
    /// than with the first append.
    pub(crate) fn due_now(&self) -> bool {
        self.pending(&lock(&self.state)).is_some()
    }

    fn extra(&self) -> Option<u64> {
        // Acquire: pairs with the Release store in `set_extra` (the value is stored
        // before the flag).
        self.has_extra
            .load(Ordering::Acquire)
            .then(|| self.extra.load(Ordering::Relaxed))
    }

    fn set_extra(&self, v: u64) {
        // Relaxed value, Release flag: see `extra`. Two racing setters may leave either
        // value, as two racing calls may.
        self.extra.store(v, Ordering::Relaxed);
        self.has_extra.store(true, Ordering::Release);
    }

    /// Called when a flush completed: records the new durable position and wakes the
    /// writer if a checkpoint is due. One uncontended lock, no I/O.
    pub(crate) fn note(&self, pos: Durable) {
        let mut st = lock(&self.state);
        st.latest = Some(pos);
        if self.pending(&st).is_none() {
            return;
        }
        if st.written.is_none_or(|(w, _)| w.base != pos.base) {
            st.urgent = true;
        }
        let due = st.urgent || st.last_write.is_none_or(|t| t.elapsed() >= self.min_gap);
        if st.idle || due {
            st.idle = false;
            drop(st);
            self.cv.notify_one();
        }
    }

    /// Whether the file lags what it would record now.
    fn pending(&self, st: &State) -> Option<(Durable, Option<u64>)> {
        let want = (st.latest?, self.extra());
        (st.written != Some(want)).then_some(want)
    }

    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return;
            }
            let wait = if self.pending(&st).is_some() {
                let since = st.last_write.map_or(self.min_gap, |t| t.elapsed());
                if st.urgent || since >= self.min_gap {
                    st.urgent = false;
                    drop(st);
                    // A failure is retried after the gap; the old checkpoint stays
                    // valid (it only makes the next open scan more).
                    let _ = self.write_now();
                    st = lock(&self.state);
                    continue;
                }
                Some(self.min_gap - since)
            } else {
                None
            };
            st = match wait {
                Some(d) => {
                    self.cv
                        .wait_timeout(st, d)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => {
                    st.idle = true;
                    self.cv.wait(st).unwrap_or_else(|e| e.into_inner())
                }
            };
        }
    }

    /// Writes the checkpoint for the latest durable position, if it changed. Returns
    /// whether a file was written.
    pub(crate) fn write_now(&self) -> io::Result<bool> {
        let _w = lock(&self.writing);
        let Some((pos, extra)) = self.pending(&lock(&self.state)) else {
            return Ok(false);
        };
        let c = Checkpoint {
            segment_base: pos.base,
            segment_salt: pos.salt,
            offset: pos.offset,
            next_id: pos.next_id,
            extra,
            written_ns: crate::journal::now_ns(),
            clean: false,
            check_from: 0,
        };
        let r = self
            .storage
            .replace_file(&self.dir, CHECKPOINT_FILE, &c.encode());
        let mut st = lock(&self.state);
        st.last_write = Some(Instant::now());
        r?;
        st.written = Some((pos, extra));
        Ok(true)
    }

    /// Stops the background writer and writes a last checkpoint (close). `end` is the
    /// end of the journal when every reservation was committed and flushed: the
    /// checkpoint is then a clean-close one if it records exactly that position.
    pub(crate) fn finish(&self, write: bool, end: Option<CleanEnd>) {
        lock(&self.state).stop = true;
        self.cv.notify_all();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
        if write {
            let _ = match end {
                Some(end) => self.write_clean(end),
                None => self.write_now().map(|_| ()),
            };
        }
    }

    /// Writes the newest durable position as a clean-close checkpoint if it is `end`;
    /// otherwise an ordinary one.
    fn write_clean(&self, end: CleanEnd) -> io::Result<()> {
        let _w = lock(&self.writing);
        let Some(pos) = lock(&self.state).latest else {
            return Ok(());
        };
        if (pos.base, pos.offset) != (end.base, end.offset) {
            drop(_w);
            return self.write_now().map(|_| ());
        }
        let c = Checkpoint {
            segment_base: pos.base,
            segment_salt: pos.salt,
            offset: pos.offset,
            next_id: pos.next_id,
            extra: self.extra(),
            written_ns: crate::journal::now_ns(),
            clean: true,
            check_from: end.check_from,
        };
        self.storage
            .replace_file(&self.dir, CHECKPOINT_FILE, &c.encode())?;
        self.storage.sync_dir(&self.dir)
    }

    /// Before the first append of a session that opened on a clean-close checkpoint
    /// `c`: replaces it with the same position (nothing was appended since) and the
    /// owner's current value, marked not clean, durably (file and directory).
    pub(crate) fn unmark_clean(&self, c: &Checkpoint) -> io::Result<()> {
        let _w = lock(&self.writing);
        let c = Checkpoint {
            clean: false,
            check_from: 0,
            extra: self.extra().or(c.extra),
            written_ns: crate::journal::now_ns(),
            ..*c
        };
        self.storage
            .replace_file(&self.dir, CHECKPOINT_FILE, &c.encode())?;
        self.storage.sync_dir(&self.dir)
    }
}

/// The end of the journal after a clean close: everything reserved is committed and
/// flushed, and nothing more can be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanEnd {
    /// Base ID of the last segment.
    pub base: u64,
    /// Offset after its last record.
    pub offset: u32,
    /// A record start at least 64 KiB before `offset`, or its first record
    /// ([`crate::recover::TailMarks::check_from`]).
    pub check_from: u32,
}

impl Inner {
    /// The flush hook: `seg` is flushed up to `offset`, the ID after its last flushed
    /// record is `next_id`.
    pub(crate) fn flushed_to(&self, seg: &Segment, offset: u32, next_id: u64) {
        if let Some(c) = self.checkpointer() {
            c.note(Durable {
                base: seg.base_id,
                salt: seg.salt,
                offset,
                next_id,
            });
        }
    }
}

impl Journal {
    /// Records a value of the journal's owner in the checkpoint (the queue records its
    /// consumed watermark), written with the next checkpoint. Cheap: two atomic stores.
    pub fn set_checkpoint_extra(&self, value: u64) {
        if let Some(c) = self.inner().checkpointer() {
            c.set_extra(value);
        }
    }

    /// Writes the checkpoint now, for the durable position of the last completed flush
    /// (normally a background thread does this after flushes). Returns `false` if the
    /// file already records it.
    ///
    /// ```
    /// # fn main() -> Result<(), ledgerq_journal::Error> {
    /// use ledgerq_journal::{Journal, JournalOptions, RecordIn};
    /// let dir = tempfile::tempdir().unwrap();
    /// let j = Journal::open(dir.path(), JournalOptions::new())?;
    /// j.append(&RecordIn::new(b"a"))?;
    /// j.sync()?;
    /// j.write_checkpoint()?;
    /// assert!(dir.path().join(ledgerq_journal::CHECKPOINT_FILE).exists());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for a read-only journal, [`Error::Io`] if writing fails
    /// (the previous checkpoint stays in place).
    pub fn write_checkpoint(&self) -> Result<bool, Error> {
        let inner = self.inner();
        let c = inner.checkpointer().ok_or(Error::ReadOnly)?;
        let path = inner.dir_path().join(CHECKPOINT_FILE);
        c.write_now()
            .map_err(|e| Error::io("write checkpoint", path, e))
    }

    /// What open-time recovery did: the checkpoint used (or why none), the segments
    /// scanned, the repairs. `None` for a read-only journal (it recovers nothing).
    pub fn recovery_info(&self) -> Option<&RecoveryInfo> {
        self.inner().checkpointer().map(|c| &c.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample() -> Checkpoint {
        Checkpoint {
            segment_base: 1_000_001,
            segment_salt: 0xdead_beef,
            offset: 65_536,
            next_id: 1_000_900,
            extra: Some(999_999),
            written_ns: 1_700_000_000_123_456_789,
            clean: false,
            check_from: 0,
        }
    }

    #[test]
    fn round_trip() {
        for c in [
            sample(),
            Checkpoint {
                extra: None,
                ..sample()
            },
            Checkpoint {
                clean: true,
                check_from: 4096,
                ..sample()
            },
            Checkpoint {
                segment_base: 1,
                segment_salt: 0,
                offset: SEGMENT_HEADER_LEN,
                next_id: 1,
                extra: Some(u64::MAX),
                written_ns: 0,
                clean: false,
                check_from: 0,
            },
        ] {
            let b = c.encode();
            assert_eq!(b.len(), CHECKPOINT_LEN);
            assert_eq!(Checkpoint::decode(&b), Ok(c));
        }
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let b = sample().encode();
        for i in 0..CHECKPOINT_LEN {
            for x in 1..=255u8 {
                let mut d = b;
                d[i] ^= x;
                assert!(
                    Checkpoint::decode(&d).is_err(),
                    "byte {i} xor {x:#04x} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn torn_or_resized_files_are_rejected() {
        let b = sample().encode();
        for n in 0..CHECKPOINT_LEN {
            assert!(Checkpoint::decode(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert!(Checkpoint::decode(&long).is_err());
        assert!(Checkpoint::decode(&[0u8; CHECKPOINT_LEN]).is_err());
    }

    #[test]
    fn out_of_range_fields_are_rejected_even_with_a_good_checksum() {
        let bad = [
            Checkpoint {
                offset: 8,
                ..sample()
            },
            Checkpoint {
                offset: 65_540,
                ..sample()
            },
            Checkpoint {
                next_id: 5,
                ..sample()
            },
            Checkpoint {
                next_id: u64::MAX,
                ..sample()
            },
            // A check offset without the clean flag, or outside the records.
            Checkpoint {
                check_from: 4096,
                ..sample()
            },
            Checkpoint {
                clean: true,
                check_from: 8,
                ..sample()
            },
            Checkpoint {
                clean: true,
                check_from: 65_544,
                ..sample()
            },
            Checkpoint {
                clean: true,
                check_from: 4097,
                ..sample()
            },
        ];
        for c in bad {
            assert!(Checkpoint::decode(&c.encode()).is_err(), "{c:?}");
        }
    }

    #[test]
    fn tail_start_matches_segments() {
        let cp = Checkpoint {
            segment_base: 100,
            segment_salt: 9,
            ..sample()
        };
        let bases = [1, 50, 100, 150];
        let mut asked = None;
        let r = tail_start(&cp, &bases, |i| {
            asked = Some(i);
            Some(9)
        });
        assert_eq!((r, asked), (Ok(2), Some(2)));
        // A replaced file, or one whose header is damaged.
        assert!(tail_start(&cp, &bases, |_| Some(8)).is_err());
        assert!(tail_start(&cp, &bases, |_| None).is_err());
        // The checkpointed segment was removed by compaction: all are after it.
        assert_eq!(tail_start(&cp, &[150, 200], |_| None), Ok(0));
        // Ahead of the files, missing in the middle, or no files at all.
        let never = |_| -> Option<u32> { panic!("no segment has the checkpointed base") };
        assert!(tail_start(&cp, &[1, 50], never).is_err());
        assert!(tail_start(&cp, &[1, 150], never).is_err());
        assert!(tail_start(&cp, &[], never).is_err());
    }

    // ---------- the checkpoint in a journal ----------

    use crate::testing::edit_file;
    use crate::{Durability, JournalOptions, RecordIn, RecoveryMode};

    const SEG: u64 = 64 << 10;

    fn opts() -> JournalOptions {
        JournalOptions::new().segment_size(SEG)
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        crate::segment_files(dir).unwrap()
    }

    fn read_file(dir: &Path) -> Checkpoint {
        Checkpoint::decode(&fs::read(dir.join(CHECKPOINT_FILE)).unwrap()).unwrap()
    }

    /// `n` records of 300 bytes (about 200 per segment), closed.
    fn journal(n: u64) -> tempfile::TempDir {
        crate::testing::closed_journal(&opts(), n, 300)
    }

    fn count(j: &Journal) -> Result<u64, Error> {
        let mut c = j.cursor(1)?;
        let mut n = 0;
        while c.next(j, |_| ())?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// A clean close marks its checkpoint; the next open takes the end of the last
    /// segment from it (no search of the rest of the segment) and the first append
    /// unmarks it before reserving anything. A session killed after a producer reserved the first slot past that
    /// end (never committed) while later records were committed must then be
    /// recovered by a full scan, hole and all: with the mark left in place, the open
    /// after the kill would stop at the hole and lose the records after it.
    #[test]
    fn a_clean_close_checkpoint_is_used_once_and_unmarked_before_appends() {
        let t = journal(100);
        let cp = read_file(t.path());
        assert!(cp.clean, "{cp:?}");
        let j = Journal::open(t.path(), opts()).unwrap();
        assert!(j.recovery_info().unwrap().clean_close);
        assert_eq!(count(&j).unwrap(), 100);
        // Opening and reading write nothing; the first append unmarks it first.
        assert_eq!(read_file(t.path()), cp);
        let mut unmarked = None;
        for i in 0..5u8 {
            j.append(&RecordIn::new(&[i; 300])).unwrap();
            if i == 0 {
                let u = read_file(t.path());
                assert!(!u.clean);
                assert_eq!((u.offset, u.next_id), (cp.offset, cp.next_id));
                unmarked = Some(u);
            }
        }
        j.sync().unwrap();
        // The kill: a copy of the directory as it is now, with the first record past
        // the clean end made a never-committed reservation (commit word zero).
        let copy = tempfile::tempdir().unwrap();
        for e in fs::read_dir(t.path()).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_owned();
            if name != crate::journal::LOCK_FILE {
                // The journal's background threads may rename or remove a temporary
                // file (a prepared segment) between the listing and the copy.
                match fs::copy(&p, copy.path().join(name)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("copy {}: {e}", p.display()),
                }
            }
        }
        // The checkpoint as the unmark left it: a kill before the writer's next one (a
        // checkpoint written after the sync above would record the hole as flushed,
        // which is damage, not a crash).
        fs::write(
            copy.path().join(CHECKPOINT_FILE),
            unmarked.expect("set by the first append").encode(),
        )
        .unwrap();
        let last = segment_files(copy.path()).pop().unwrap();
        edit_file(&last, |b| {
            b[cp.offset as usize..cp.offset as usize + 4].fill(0)
        });
        let k = Journal::open(copy.path(), opts()).unwrap();
        let info = k.recovery_info().unwrap();
        assert!(!info.clean_close);
        assert_eq!(info.holes, 1);
        assert_eq!(count(&k).unwrap(), 104);
        drop(j);
    }

    /// Garbage a little past a clean end (an edited or damaged file: no crash writes
    /// there after a clean close) is not taken as the zeros readers rely on: the
    /// segment is scanned in full, which zeroes it, and appends and reads go on.
    #[test]
    fn garbage_past_a_clean_end_sends_the_segment_to_the_full_scan() {
        let t = journal(100);
        let cp = read_file(t.path());
        assert!(cp.clean);
        let last = segment_files(t.path()).pop().unwrap();
        let at = cp.offset as usize + 4096;
        edit_file(&last, |b| {
            b[at..at + 16].copy_from_slice(b"garbage garbage!")
        });
        let j = Journal::open(t.path(), opts()).unwrap();
        let info = j.recovery_info().unwrap();
        assert!(!info.clean_close);
        assert_eq!(info.truncated, 1);
        assert_eq!(count(&j).unwrap(), 100);
        for i in 0..40u8 {
            j.append(&RecordIn::new(&[i; 300])).unwrap();
        }
        assert_eq!(count(&j).unwrap(), 140);
    }

    /// A segment of 1 MiB holding `n` records of 300 bytes (360 on disk), closed.
    fn big_journal(n: u64) -> (tempfile::TempDir, JournalOptions) {
        let o = JournalOptions::new().segment_size(1 << 20);
        (crate::testing::closed_journal(&o, n, 300), o)
    }

    fn flip(path: &Path, at: usize) {
        edit_file(path, |b| b[at] ^= 0x5a);
    }

    /// A clean close names a record 64 KiB to 128 KiB before the end; the next open
    /// checks the records from there on, and not the ones before (flushed by a clean
    /// session: a reader reports their damage, as in any segment before the tail).
    #[test]
    fn a_clean_open_checks_only_the_records_near_the_end() {
        let (t, o) = big_journal(2000);
        let cp = read_file(t.path());
        assert!(cp.clean);
        let window = cp.offset - cp.check_from;
        assert!((64 << 10..=(128 << 10) + 360).contains(&window), "{cp:?}");
        assert_eq!((cp.check_from - SEGMENT_HEADER_LEN) % 360, 0, "{cp:?}");
        // A payload byte of the 10th record, far before the window.
        let last = segment_files(t.path()).pop().unwrap();
        let tenth = SEGMENT_HEADER_LEN as usize + 9 * 360;
        flip(&last, tenth + 100);
        let j = Journal::open(t.path(), o.clone()).unwrap();
        assert!(j.recovery_info().unwrap().clean_close);
        match count(&j) {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert_eq!((path, offset), (last.clone(), tenth as u64));
            }
            other => panic!("expected Corrupt from the reader, got {other:?}"),
        }
        j.close().unwrap();
        // The session that reopened and closed again named its window from the open's
        // check (it appended nothing): the same record.
        assert_eq!(read_file(t.path()).check_from, cp.check_from);
    }

    /// Damage inside the checked window (here a byte of the last record) fails the
    /// check: the whole segment is scanned as after a crash. The damaged record lies
    /// below the offset the checkpoint recorded as flushed, so it is no torn write:
    /// Strict mode reports it; Skip mode drops it, counts it, and never gives its ID
    /// to a new record.
    #[test]
    fn damage_near_a_clean_end_is_corruption_not_a_torn_tail() {
        let (t, o) = big_journal(2000);
        let cp = read_file(t.path());
        let last = segment_files(t.path()).pop().unwrap();
        flip(&last, cp.offset as usize - 100);
        match Journal::open(t.path(), o.clone()) {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert_eq!((path, offset), (last.clone(), u64::from(cp.offset) - 360));
            }
            other => panic!("expected Corrupt at open, got {other:?}"),
        }
        let j = Journal::open(t.path(), o.clone().recovery_mode(RecoveryMode::Skip)).unwrap();
        let info = j.recovery_info().unwrap();
        assert!(!info.clean_close);
        assert_eq!((info.truncated, info.skipped), (1, 1));
        assert_eq!(j.skipped_damage(), 1);
        assert_eq!(count(&j).unwrap(), 1999);
        assert_eq!(j.append(&RecordIn::new(b"after")).unwrap(), 2001);
        j.close().unwrap();
        // Once skipped, the damage is gone: Strict mode opens.
        let j = Journal::open(t.path(), o).unwrap();
        assert_eq!(count(&j).unwrap(), 2000);
    }

    /// Records zeroed before the window of a clean end (an edited file) are reported
    /// by the reader that reaches them, not waited on as a producer still writing.
    #[test]
    fn a_zeroed_record_before_a_clean_window_is_reported_not_waited_on() {
        let (t, o) = big_journal(2000);
        let last = segment_files(t.path()).pop().unwrap();
        let tenth = SEGMENT_HEADER_LEN as usize + 9 * 360;
        edit_file(&last, |b| b[tenth..tenth + 360].fill(0));
        let j = Journal::open(t.path(), o).unwrap();
        assert!(j.recovery_info().unwrap().clean_close);
        match count(&j) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, tenth as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Appends go on.
        assert_eq!(j.append(&RecordIn::new(b"after")).unwrap(), 2001);
    }

    /// Gives the record at `at` a length below the header's (a reader cannot step over
    /// it: `Corrupt`).
    fn break_length(path: &Path, at: usize) {
        edit_file(path, |b| {
            b[at + 8..at + 12].copy_from_slice(&7u32.to_le_bytes())
        });
    }

    fn ids(j: &Journal) -> Result<Vec<u64>, Error> {
        let mut c = j.cursor(1)?;
        let mut v = Vec::new();
        while let Some(id) = c.next(j, |r| r.id())? {
            v.push(id);
        }
        Ok(v)
    }

    /// In Skip mode a reader that meets a record it cannot step over (in a segment
    /// before the last, or before the checked window of a clean end) goes on at the
    /// next valid record; in Strict mode the damage is reported.
    #[test]
    fn skip_mode_readers_go_on_after_a_record_they_cannot_step_over() {
        let skip = |o: JournalOptions| o.recovery_mode(RecoveryMode::Skip);
        // Before the window of the last segment of a cleanly closed journal.
        let (t, o) = big_journal(2000);
        let last = segment_files(t.path()).pop().unwrap();
        let tenth = SEGMENT_HEADER_LEN as usize + 9 * 360;
        break_length(&last, tenth);
        let j = Journal::open(t.path(), skip(o.clone())).unwrap();
        assert!(j.recovery_info().unwrap().clean_close);
        let got = ids(&j).unwrap();
        assert_eq!(got.len(), 1999);
        assert!(!got.contains(&10));
        drop(j);
        let j = Journal::open(t.path(), o).unwrap();
        match ids(&j) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, tenth as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        drop(j);
        // In the oldest segment (not scanned at open).
        let t = journal(1000);
        let first = segment_files(t.path()).remove(0);
        break_length(&first, SEGMENT_HEADER_LEN as usize + 360);
        let j = Journal::open(t.path(), skip(opts())).unwrap();
        let got = ids(&j).unwrap();
        assert_eq!(got.len(), 999);
        assert!(!got.contains(&2));
    }

    #[test]
    fn close_writes_a_checkpoint_and_the_next_open_scans_only_its_segment() {
        let t = journal(1000);
        let segs = segment_files(t.path());
        assert!(segs.len() >= 4);
        let cp = read_file(t.path());
        let last = segs.last().unwrap();
        assert!(last.ends_with(format!("{:020}.seg", cp.segment_base)));
        assert_eq!((cp.next_id, cp.extra), (1001, None));
        let j = Journal::open(t.path(), opts()).unwrap();
        let info = j.recovery_info().unwrap().clone();
        assert_eq!(info.checkpoint, Some(cp));
        assert_eq!(info.checkpoint_problem, None);
        assert_eq!(info.tail_from, Some(cp.segment_base));
        assert_eq!(info.scanned_segments, 1);
        assert_eq!(count(&j).unwrap(), 1000);
        assert_eq!(j.append(&RecordIn::new(b"more")).unwrap(), 1001);
        j.close().unwrap();
        assert_eq!(read_file(t.path()).next_id, 1002);
    }

    #[test]
    fn segments_before_the_checkpoint_are_not_scanned_at_open() {
        let t = journal(1000);
        let segs = segment_files(t.path());
        let n = segs.len();
        // A flipped payload byte in the second to last segment (the checkpoint names
        // the last): open does not look at it; the reader reports it.
        edit_file(&segs[n - 2], |b| b[64 + 100] ^= 0x40);
        let j = Journal::open(t.path(), opts()).unwrap();
        assert_eq!(j.recovery_info().unwrap().scanned_segments, 1);
        match count(&j) {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert_eq!((path, offset), (segs[n - 2].clone(), 64));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        drop(j);
        // Without the checkpoint, open scans the last two segments and reports it.
        fs::remove_file(t.path().join(CHECKPOINT_FILE)).unwrap();
        match Journal::open(t.path(), opts()) {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert_eq!((path, offset), (segs[n - 2].clone(), 64));
            }
            other => panic!("expected Corrupt at open, got {other:?}"),
        }
    }

    #[test]
    fn a_checkpoint_ahead_of_the_files_reports_the_missing_records() {
        let t = journal(1000);
        let good = read_file(t.path());
        let ahead = Checkpoint {
            segment_base: good.next_id + 500,
            next_id: good.next_id + 600,
            ..good
        };
        fs::write(t.path().join(CHECKPOINT_FILE), ahead.encode()).unwrap();
        match Journal::open(t.path(), opts()) {
            Err(Error::Corrupt { path, reason, .. }) => {
                assert_eq!(
                    path,
                    t.path()
                        .join(crate::journal::segment_name(ahead.segment_base))
                );
                let range = format!("IDs {}..{}", good.next_id, ahead.next_id);
                assert!(reason.contains(&range), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Skip mode: counted, and IDs go on after the missing ones.
        let j = Journal::open(t.path(), opts().recovery_mode(RecoveryMode::Skip)).unwrap();
        assert_eq!(j.skipped_damage(), 1);
        assert_eq!(count(&j).unwrap(), 1000);
        assert!(j.append(&RecordIn::new(b"x")).unwrap() >= ahead.next_id);
        j.close().unwrap();
    }

    #[test]
    fn damaged_or_mismatched_checkpoints_fall_back_to_the_last_two_segments() {
        let t = journal(1000);
        let good = read_file(t.path());
        let path = t.path().join(CHECKPOINT_FILE);
        let torn = good.encode()[..20].to_vec();
        let mut flipped = good.encode().to_vec();
        flipped[30] ^= 1;
        // Naming a segment after the files that held no flushed record (one with a
        // higher `next_id` records flushed records that are missing: see
        // `a_checkpoint_ahead_of_the_files_reports_the_missing_records`).
        let ahead = Checkpoint {
            segment_base: good.next_id,
            next_id: good.next_id,
            ..good
        }
        .encode()
        .to_vec();
        let replaced = Checkpoint {
            segment_salt: good.segment_salt ^ 1,
            ..good
        }
        .encode()
        .to_vec();
        let missing = Checkpoint {
            segment_base: good.segment_base - 1,
            next_id: good.segment_base - 1,
            ..good
        }
        .encode()
        .to_vec();
        let cases: [(&[u8], &str); 5] = [
            (&torn, "wrong length"),
            (&flipped, "checksum"),
            (&ahead, "ahead of the segments"),
            (&replaced, "replaced"),
            (&missing, "missing"),
        ];
        for (bytes, why) in cases {
            fs::write(&path, bytes).unwrap();
            let j = Journal::open(t.path(), opts()).unwrap();
            let info = j.recovery_info().unwrap().clone();
            let problem = info.checkpoint_problem.clone().unwrap_or_default();
            assert!(problem.contains(why), "{why}: {info:?}");
            assert_eq!((info.checkpoint, info.scanned_segments), (None, 2), "{why}");
            assert_eq!(count(&j).unwrap(), 1000, "{why}");
            j.close().unwrap();
            // Closing wrote a good one again.
            assert_eq!(read_file(t.path()).segment_base, good.segment_base, "{why}");
        }
        // No file at all.
        fs::remove_file(&path).unwrap();
        let j = Journal::open(t.path(), opts()).unwrap();
        assert_eq!(j.recovery_info().unwrap().scanned_segments, 2);
    }

    #[test]
    fn checkpointed_segment_removed_means_every_segment_is_the_tail() {
        let t = journal(1000);
        let first = segment_files(t.path())[0].clone();
        let base = |p: &Path| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
        // A checkpoint older than every segment left (its segment was compacted away).
        let old = Checkpoint {
            segment_base: base(&first) - 1,
            segment_salt: 1,
            offset: 64,
            next_id: base(&first) - 1,
            extra: None,
            written_ns: 0,
            clean: false,
            check_from: 0,
        };
        fs::write(t.path().join(CHECKPOINT_FILE), old.encode()).unwrap();
        let n = segment_files(t.path()).len();
        let j = Journal::open(t.path(), opts()).unwrap();
        let info = j.recovery_info().unwrap();
        assert_eq!(
            (info.scanned_segments, info.tail_from),
            (n, Some(base(&first)))
        );
        assert_eq!(count(&j).unwrap(), 1000);
    }

    #[test]
    fn records_zeroed_below_the_checkpointed_offset_are_corruption_not_waited_on() {
        let t = journal(100);
        let last = segment_files(t.path()).pop().unwrap();
        let cp = read_file(t.path());
        // Zero the last 3 records' bytes (below the checkpointed offset): no power loss
        // does that (they were flushed), an edited file can. Reported at open, never
        // cut silently nor waited on.
        let from = cp.offset as usize - 3 * 360;
        edit_file(&last, |b| b[from..cp.offset as usize].fill(0));
        match Journal::open(t.path(), opts()) {
            Err(Error::Corrupt {
                path,
                offset,
                reason,
            }) => {
                assert_eq!((path, offset), (last.clone(), from as u64));
                assert!(reason.contains("never committed"), "{reason}");
            }
            other => panic!("expected Corrupt at open, got {other:?}"),
        }
        let j = Journal::open(t.path(), opts().recovery_mode(RecoveryMode::Skip)).unwrap();
        assert_eq!(j.recovery_info().unwrap().skipped, 1);
        assert_eq!(count(&j).unwrap(), 97);
        // The lost IDs are not given out again.
        assert_eq!(j.append(&RecordIn::new(b"after")).unwrap(), 101);
        assert_eq!(count(&j).unwrap(), 98);
    }

    #[test]
    fn the_owner_value_is_recorded_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(t.path(), opts()).unwrap();
        j.append(&RecordIn::new(b"a")).unwrap();
        j.set_checkpoint_extra(42);
        j.sync().unwrap();
        j.write_checkpoint().unwrap();
        assert_eq!(read_file(t.path()).extra, Some(42));
        // Nothing new: nothing to write.
        assert!(!j.write_checkpoint().unwrap());
        // A new value alone is written (by this call, or by the background writer if
        // a flush came first).
        j.set_checkpoint_extra(43);
        j.write_checkpoint().unwrap();
        assert_eq!(read_file(t.path()).extra, Some(43));
        j.close().unwrap();
        let j = Journal::open(t.path(), opts()).unwrap();
        let info = j.recovery_info().unwrap();
        assert_eq!(info.checkpoint.unwrap().extra, Some(43));
        j.append(&RecordIn::new(b"b")).unwrap();
        j.close().unwrap();
        // Kept across an open that did not set it.
        let cp = read_file(t.path());
        assert_eq!((cp.next_id, cp.extra), (3, Some(43)));
        // Read-only journals write nothing.
        let r = Journal::open_read_only(t.path(), opts()).unwrap();
        assert!(matches!(r.write_checkpoint(), Err(Error::ReadOnly)));
        assert!(r.recovery_info().is_none());
    }

    #[test]
    fn sync_mode_writes_a_checkpoint_in_the_background_after_a_roll() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(t.path(), opts().durability(Durability::Sync)).unwrap();
        let mut last = 0;
        while segment_files(t.path()).len() < 3 {
            last = j.append(&RecordIn::new(&[7u8; 1000])).unwrap();
        }
        let newest = segment_files(t.path()).pop().unwrap();
        // Not a measurement: a liveness check with a generous bound.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(b) = fs::read(t.path().join(CHECKPOINT_FILE)) {
                let cp = Checkpoint::decode(&b).unwrap();
                if newest.ends_with(format!("{:020}.seg", cp.segment_base)) {
                    assert_eq!(cp.next_id, last + 1);
                    break;
                }
            }
            assert!(Instant::now() < deadline, "no checkpoint after the roll");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(j);
    }

    #[test]
    fn a_last_segment_with_a_torn_header_and_nothing_after_it_is_removed() {
        let t = journal(250);
        let segs = segment_files(t.path());
        let last = segs.last().unwrap();
        let b = fs::read(last).unwrap();
        // A next segment whose header write was torn after 20 bytes (power loss while
        // it was being created): nothing in it was ever flushed.
        let base: u64 = 1_000_000;
        let mut img = vec![0u8; SEG as usize];
        img[..20].copy_from_slice(&b[..20]);
        let torn = t.path().join(format!("{base:020}.seg"));
        fs::write(&torn, &img).unwrap();
        let j = Journal::open(t.path(), opts()).unwrap();
        assert!(!torn.exists());
        assert_eq!(count(&j).unwrap(), 250);
        drop(j);
        // With anything after the damaged header, it is corruption, not a torn creation.
        img[5000] = 1;
        fs::write(&torn, &img).unwrap();
        assert!(matches!(
            Journal::open(t.path(), opts()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn skip_mode_and_strict_agree_on_a_clean_tail() {
        let t = journal(500);
        let j = Journal::open(t.path(), opts().recovery_mode(RecoveryMode::Skip)).unwrap();
        assert_eq!(count(&j).unwrap(), 500);
        assert_eq!(j.recovery_info().unwrap().skipped, 0);
    }
}
