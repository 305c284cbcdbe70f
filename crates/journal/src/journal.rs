//! The journal: a directory of segments, appends, the roll, flushing and group commit.
//!
//! # Append (hot path, no lock, no syscall)
//! pin the epoch -> load the active segment (`Acquire`) -> one CAS on its reservation
//! word takes the bytes and the IDs -> encode the record in place -> `Release`-store
//! the commit word. See [`crate::proto`].
//!
//! # Roll (rare)
//! The appender whose CAS sealed the segment writes the end marker. Every appender
//! that finds the segment sealed takes `roll_lock`; the first one that still sees the
//! sealed segment active takes the file prepared (allocated, mapped, a window of it
//! pre-faulted) by the preparer thread (or creates one if it is not ready), writes its
//! header with `base_id = old.base_id + final count`, renames it to
//! `{base_id:020}.seg`, appends it to the segment table and publishes it as active
//! (`Release`). The directory is fsynced after the lock is released (and before any
//! flush of the segment).
//!
//! # Group commit
//! `durable` is the ID after the flushed committed prefix. A waiter whose ID is not
//! yet durable becomes the leader if no flush runs (a flag under `gc`), else waits on
//! the condvar. The leader flushes the whole committed prefix (every segment from the
//! flush position on), publishes `durable`, clears the flag and wakes everyone;
//! followers whose ID is now below `durable` return without flushing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};

use crate::checkpoint::{
    self, Checkpoint, Checkpointer, CleanEnd, Durable, RecoveryInfo, CHECKPOINT_FILE,
};
use crate::codec::{self, RecordIn, RecordView, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::cursor::Cursor;
use crate::error::Error;
use crate::map::Map;
use crate::options::{Durability, JournalOptions};
use crate::proto::{self, Reserve};
use crate::recover;
use crate::recover::{KnownEnd, TailMarks};
use crate::seek;
use crate::segment::{Segment, Step};
use crate::storage::FlushRequest;

/// Name of the lock file in the queue directory.
pub const LOCK_FILE: &str = "LOCK";
/// Longest a group-commit leader waits for the previous group to come back.
const MAX_GATHER: Duration = Duration::from_millis(2);
const TMP_PREFIX: &str = "prepared-";
const TMP_SUFFIX: &str = ".seg.tmp";
/// Most removed segment files kept for reuse.
const MAX_RECYCLED: usize = 2;
/// How far ahead of the appenders the preparer keeps the active segment pre-faulted
/// (and how much of a prepared segment it pre-faults before it becomes active), at
/// least. A window, not the whole segment: the work (the kernel zeroing page-cache
/// pages) then follows the rate of appends instead of arriving as 64 MiB at once at
/// open and at every roll, where it competed with the appenders and consumers for the
/// CPU; and fewer zero pages are left dirty for writeback ahead of the data. The window
/// doubles (up to the segment) whenever the appenders overtake the pre-faulted part or
/// append half a window while the preparer pre-faults, and halves back when they have
/// not asked for more for a second.
const POPULATE_AHEAD: u32 = 8 * 1024 * 1024;
/// How long without a request for more pre-faulting halves the window.
const POPULATE_IDLE: Duration = Duration::from_secs(1);
/// The preparer pre-faults in steps of this size, checking between steps where the
/// appenders are.
const POPULATE_CHUNK: u32 = 1024 * 1024;
/// How long after open the preparer starts on its own if nothing was appended.
const PREPARE_GRACE: Duration = Duration::from_millis(20);

/// Facts about one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First ID of the segment.
    pub base_id: u64,
    /// ID after the last one it can hold (the next segment's base), once known.
    pub end_id: Option<u64>,
    /// The file.
    pub path: PathBuf,
    /// Size on disk in bytes.
    pub size: u64,
    /// No more appends go to this segment.
    pub sealed: bool,
    /// Creation time from the header, ns since the UNIX epoch.
    pub created_ns: u64,
}

/// Immutable, sorted list of segments; replaced (copy on write) under `roll_lock`.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) segs: Vec<Arc<Segment>>,
}

impl Table {
    pub(crate) fn index_of(&self, base: u64) -> Option<usize> {
        self.segs.binary_search_by_key(&base, |s| s.base_id).ok()
    }
    /// Index of the segment that holds `id` (or would: the last with base <= id).
    pub(crate) fn index_for_id(&self, id: u64) -> Option<usize> {
        let n = self.segs.partition_point(|s| s.base_id <= id);
        n.checked_sub(1)
            .or(if self.segs.is_empty() { None } else { Some(0) })
    }
}

#[derive(Debug)]
struct Prepared {
    path: PathBuf,
    file: File,
    map: Map,
    /// The mapping is populated writable below this offset.
    populated_to: u32,
}

/// A removed segment kept (under a temporary name) to become a new segment.
#[derive(Debug)]
struct Recycled {
    path: PathBuf,
    seg: Arc<Segment>,
    /// Bytes `0..extent` may be nonzero; the rest of the file is zero.
    extent: u32,
}

#[derive(Debug, Default)]
struct PrepState {
    ready: Option<Prepared>,
    want: bool,
    /// The preparer is making a segment file (taken off `want`, not yet `ready`).
    making: bool,
    stop: bool,
}

#[derive(Debug)]
struct FlushProgress {
    seg_base: u64,
    scan_off: u32,
    flushed_off: u32,
    next_id: u64,
    /// Record starts behind `scan_off` (for a clean-close checkpoint).
    tail: TailMarks,
}

impl FlushProgress {
    /// Nothing of the segment `base` scanned or flushed yet.
    fn at_start(base: u64) -> FlushProgress {
        FlushProgress {
            seg_base: base,
            scan_off: SEGMENT_HEADER_LEN,
            flushed_off: 0,
            next_id: base,
            tail: TailMarks::at(SEGMENT_HEADER_LEN),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    dir: PathBuf,
    opts: JournalOptions,
    read_only: bool,
    /// The segment table; read lock-free under an epoch pin.
    table: Atomic<Table>,
    /// The segment appends go to; always an element of the current table (writer).
    active: AtomicPtr<Segment>,
    /// Serializes table changes (roll, removal, refresh).
    roll_lock: Mutex<()>,
    prep: Mutex<PrepState>,
    prep_cv: Condvar,
    /// Something to do before the first reservation of this session (writers): see
    /// `first_reservation`.
    first_pending: AtomicBool,
    /// The clean-close checkpoint found at open, until the first reservation
    /// replaces it with an unmarked one.
    clean_on_disk: Mutex<Option<Checkpoint>>,
    /// The preparer waits for the first reservation of this session or
    /// `PREPARE_GRACE` (writers): a short open that only reads costs no new segment
    /// file and no page faulting.
    prep_idle: AtomicBool,
    progress: Mutex<FlushProgress>,
    /// Group commit: "a leader is flushing".
    gc: Mutex<bool>,
    gc_cv: Condvar,
    /// Every committed ID below this is on stable storage.
    durable: AtomicU64,
    poison: OnceLock<Arc<io::Error>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    tmp_counter: AtomicU64,
    /// The pre-fault window (see [`POPULATE_AHEAD`]). Relaxed: a hint.
    populate_window: std::sync::atomic::AtomicU32,
    /// When the preparer last pre-faulted the active segment, ns since
    /// `gc_stats.base`. Relaxed: a hint.
    populate_last_ns: AtomicU64,
    /// Group-commit statistics for the leader's gathering rule (see `gather`).
    gc_stats: GroupStats,
    /// Largest aligned record that fits in a new segment.
    max_in_segment: u32,
    /// Removed segments kept for reuse (see [`JournalOptions::recycle_segments`]).
    recycled: Mutex<Vec<Recycled>>,
    /// Set by `shutdown`: appends, syncs and rolls fail with [`Error::Closed`].
    closed: AtomicBool,
    /// The directory lock (writer only); dropped (released) by `shutdown`.
    lock: Mutex<Option<File>>,
    /// Writes the checkpoint (writer only; set by `open`).
    ckpt: OnceLock<Arc<Checkpointer>>,
    /// This journal, for the background threads `start_background` spawns.
    me: std::sync::Weak<Inner>,
    /// When `open` created it: the preparer's grace after open runs from here.
    opened_at: std::time::Instant,
    /// The preparer and flusher threads (writers), started by the first reservation
    /// or [`Journal::start_background`], joined by `shutdown`.
    background: Mutex<Background>,
    /// Damage readers passed over in `RecoveryMode::Skip` (segment base, offset), each
    /// counted once however many cursors meet it.
    skipped: Mutex<std::collections::BTreeSet<(u64, u32)>>,
}

/// How far ahead of its own reservation an appender asks the CPU to bring the
/// segment's cache lines in for writing (about a dozen 100-byte records). Appends
/// write lines no core has touched since the file was zeroed; without the hint the
/// reservation's locked instruction waits for the previous record's stores to miss
/// to memory.
const PREFETCH_AHEAD: u32 = 2048;

/// Whether the part of a segment that appends write is cached in single pages
/// (`Map::advise_appends`): with [`Durability::Sync`], where every append is flushed
/// and a flush writes back whole folios (with large folios, up to 2 MiB for one
/// record). Otherwise the stretches the preparer pre-faults are mapped with huge
/// pages (`Map::advise_huge_range`):
/// [`Durability::Buffered`] flushes in the background, about once per interval, huge
/// pages make the page cache's allocation of fresh pages cheaper (in a run of the
/// append loop, single pages cost about an eighth of the 100-byte rate and half of
/// the 4 KiB rate), and a flush write-protects one page-table entry per 2 MiB
/// instead of one per 4 KiB page, each a TLB-shootdown interrupt to the queue's
/// other threads.
fn single_pages(opts: &JournalOptions) -> bool {
    opts.durability == Durability::Sync
}

/// Whether the preparer pre-faults the next stretch with huge pages
/// (`Map::advise_huge_range`): not with single pages (see [`single_pages`]), and only
/// while the pre-fault window is at its base size, that is while the appenders are not
/// outrunning the preparer. Faulting a 2 MiB folio zeroes all of it first: when the
/// appenders catch up with the preparer they would wait for each block it is making
/// (or make it themselves), where with the default readahead they fault smaller folios
/// beside the preparer. A burst of appends gets the default; at a steady rate the
/// preparer keeps ahead and the page cache holds the segment in huge pages, whose
/// flush costs one TLB shootdown per 2 MiB.
fn huge_ahead(opts: &JournalOptions, window: u32) -> bool {
    !single_pages(opts) && window <= POPULATE_AHEAD
}

/// The pre-fault window after a doubling: at most the segment (and never below
/// [`POPULATE_AHEAD`]).
fn doubled_window(window: u32, seg: &Segment) -> u32 {
    window
        .saturating_mul(2)
        .min(seg.capacity.max(POPULATE_AHEAD))
}

/// Group-commit statistics. All Relaxed: they steer a heuristic and order nothing.
#[derive(Debug)]
struct GroupStats {
    /// Threads inside `wait_durable` (their records are committed).
    inside: AtomicU64,
    /// How many were inside when the last group flush ended.
    last_batch: AtomicU64,
    /// Duration of the last group flush, ns.
    last_flush_ns: AtomicU64,
    /// When the last group flush ended, ns since `base`.
    last_end_ns: AtomicU64,
    base: std::time::Instant,
}

impl GroupStats {
    fn new() -> Self {
        GroupStats {
            inside: AtomicU64::new(0),
            last_batch: AtomicU64::new(0),
            last_flush_ns: AtomicU64::new(0),
            last_end_ns: AtomicU64::new(0),
            base: std::time::Instant::now(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What `Journal::shutdown` still has to do.
#[derive(Debug)]
struct ShutdownState {
    done: bool,
}

/// The background threads of a writer: none until the first reservation of the
/// session or [`Journal::start_background`] (an open that only reads starts none).
#[derive(Debug, Default)]
struct Background {
    preparer: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
    /// Set by `shutdown`: nothing is started after it.
    stopped: bool,
}

/// A segmented, memory-mapped append journal. `Send + Sync`; share it by reference.
#[derive(Debug)]
pub struct Journal {
    inner: Arc<Inner>,
    shutdown: Mutex<ShutdownState>,
}

/// Current time in ns since the UNIX epoch (a vDSO read, no syscall). The precise clock,
/// not the coarse one: a record must never carry a time before a `SystemTime::now()`
/// its producer read before enqueuing it (seek by time relies on it).
pub(crate) fn now_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } == 0 {
            return (ts.tv_sec as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(ts.tv_nsec as u64);
        }
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(crate) fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The segment files of the journal in `dir`, in ID order (the names a journal gives
/// them; temporary and other files are left out). For tools and tests that look at the
/// files themselves.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be read.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let j = ledgerq_journal::Journal::open(dir.path(), Default::default()).unwrap();
/// j.append_payloads(&[b"x"]).unwrap();
/// j.close().unwrap();
/// let files = ledgerq_journal::segment_files(dir.path()).unwrap();
/// assert_eq!(files.len(), 1);
/// assert!(files[0].ends_with("00000000000000000001.seg"));
/// ```
pub fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(list_segments(dir)?.0.into_iter().map(|(_, p)| p).collect())
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

type Listing = (Vec<(u64, PathBuf)>, Vec<PathBuf>);

pub(crate) fn list_segments(dir: &Path) -> Result<Listing, Error> {
    let mut segs = Vec::new();
    let mut tmps = Vec::new();
    let ckpt_tmp = crate::storage::temp_name(CHECKPOINT_FILE);
    let seek_tmp = crate::storage::temp_name(seek::SEEK_FILE);
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_segment_name(name) {
            segs.push((base, ent.path()));
        } else if (name.starts_with(TMP_PREFIX) && name.ends_with(TMP_SUFFIX))
            || name == ckpt_tmp
            || name == seek_tmp
        {
            // Prepared segments, and a checkpoint or seek file whose write was
            // interrupted before its rename.
            tmps.push(ent.path());
        }
    }
    segs.sort();
    Ok((segs, tmps))
}

#[cfg(unix)]
fn lock_dir(dir: &Path) -> Result<File, Error> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    let deadline = std::time::Instant::now() + READERS_LOCK_WAIT;
    loop {
        // SAFETY: the fd is open for the duration of the call.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(f);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io("lock", &path, e));
        }
        // Held by a writer, or shared by read-only journals looking at a torn tail
        // (`torn`): a shared lock is granted only if no writer holds it.
        // SAFETY: as above.
        let readers = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
        if readers {
            // SAFETY: as above.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
        if !readers || std::time::Instant::now() >= deadline {
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long a writer's open waits for read-only journals that hold the `LOCK` file
/// shared before it fails with [`Error::Locked`]. Each holds it only while it looks at
/// a torn tail (one scan of the last segment) or at the record after one, never across
/// calls.
#[cfg(unix)]
const READERS_LOCK_WAIT: Duration = Duration::from_secs(5);

#[cfg(not(unix))]
fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))
}

/// Opens and maps an existing segment file, checking its header.
///
/// With `grow_short` (the last segment of a writer), a file shorter than its header says
/// is a torn tail (the file system lost its end): it is grown back to full size with
/// zeros, and the tail scan then finds where the valid records end. `head`: the file
/// already opened with the access `writable` asks for and its first bytes read
/// ([`SegmentHead::open`]), so that it is not opened and read again.
fn open_segment(
    base: u64,
    path: &Path,
    writable: bool,
    populate: bool,
    grow_short: bool,
    head: Option<SegmentHead>,
) -> Result<(Segment, SegmentHeader), Error> {
    let head = match head {
        Some(h) => h,
        None => SegmentHead::open(path, writable)?,
    };
    let file = head.file;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat segment", path, e))?
        .len();
    if len < u64::from(SEGMENT_HEADER_LEN) || head.len < head.bytes.len() {
        return Err(Error::corrupt(
            path,
            0,
            "file is shorter than a segment header",
        ));
    }
    let hb = head.bytes;
    let h = SegmentHeader::decode(&hb).map_err(|r| Error::corrupt(path, 0, r))?;
    let len = if grow_short
        && writable
        && len < h.size
        && (crate::options::MIN_SEGMENT_SIZE..=crate::options::MAX_SEGMENT_SIZE).contains(&h.size)
    {
        file.set_len(h.size)
            .map_err(|e| Error::io("grow truncated segment", path, e))?;
        file.sync_all()
            .map_err(|e| Error::io("sync grown segment", path, e))?;
        h.size
    } else {
        len
    };
    if h.base_id != base {
        return Err(Error::corrupt(
            path,
            16,
            format!("header base ID {} does not match the file name", h.base_id),
        ));
    }
    if h.size != len
        || !(crate::options::MIN_SEGMENT_SIZE..=crate::options::MAX_SEGMENT_SIZE).contains(&len)
        || len % 8 != 0
    {
        return Err(Error::corrupt(
            path,
            32,
            format!("header size {} does not match file length {len}", h.size),
        ));
    }
    let map = if writable {
        Map::writable(&file, len as usize, populate)
    } else {
        Map::read_only(&file, len as usize)
    }
    .map_err(|e| Error::io("map segment", path, e))?;
    Ok((
        Segment::new(
            base,
            h.salt,
            h.created_ns,
            path.to_path_buf(),
            file,
            map,
            proto::SEALED,
            false,
        ),
        h,
    ))
}

/// Writes (and flushes) an end marker tagged [`proto::END_GAP`] at `end_off` of a
/// segment being opened (or tags the marker already there), so that the next segment
/// may start at any later base ID: readers accept the IDs missing in between.
fn seal_at_open(
    seg: &Segment,
    end_off: u32,
    storage: &dyn crate::storage::Storage,
) -> Result<(), Error> {
    if u64::from(end_off) + u64::from(proto::END_MARKER_LEN) > u64::from(seg.capacity) {
        return Ok(()); // no room for a marker: the segment ends here anyway
    }
    if !seg.is_writable() {
        return Err(Error::corrupt(
            &seg.path,
            u64::from(end_off),
            "cannot seal a segment mapped read-only",
        ));
    }
    // SAFETY: exclusive access at open; `end_off + 8 <= capacity` (checked above), so
    // bytes 4..8 of the marker are inside the mapping. The tag is written before the
    // marker's commit word is stored (Release).
    unsafe {
        std::ptr::write_unaligned(seg.ptr(end_off + 4).cast::<u32>(), proto::END_GAP.to_le())
    };
    proto::mark_end(seg, end_off);
    // SAFETY: exclusive access at open; `end_off + 8 <= capacity` (checked above).
    let bytes = unsafe { seg.slice(end_off, proto::END_MARKER_LEN) };
    let req = FlushRequest {
        path: &seg.path,
        base_id: seg.base_id,
        file: &seg.file,
        offset: u64::from(end_off),
        bytes,
    };
    storage
        .flush(&req)
        .map_err(|e| Error::io("flush segment", &seg.path, e))
}

fn header_is_blank(path: &Path) -> Result<bool, Error> {
    let h = SegmentHead::open(path, false)?;
    Ok(h.bytes[..h.len].iter().all(|&b| b == 0))
}

/// A segment file, opened, and its first bytes (up to a header's length): read once at
/// open for the blank check, the checkpoint's salt check and the mapping.
#[derive(Debug)]
struct SegmentHead {
    file: File,
    bytes: [u8; SEGMENT_HEADER_LEN as usize],
    /// How many bytes of `bytes` the file had (fewer only if it is shorter).
    len: usize,
}

impl SegmentHead {
    /// Opens `path` (for writing too if `writable`) and reads its first bytes.
    fn open(path: &Path, writable: bool) -> Result<SegmentHead, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io("open segment", path, e))?;
        let mut bytes = [0u8; SEGMENT_HEADER_LEN as usize];
        let len =
            read_up_to(&mut file, &mut bytes).map_err(|e| Error::io("read segment", path, e))?;
        Ok(SegmentHead { file, bytes, len })
    }

    /// The salt in the header, if the header is whole and valid.
    fn salt(&self) -> Option<u32> {
        if self.len < self.bytes.len() {
            return None;
        }
        SegmentHeader::decode(&self.bytes).ok().map(|h| h.salt)
    }

    /// Whether the segment is blank (see [`is_blank_segment`]); reads the rest of the
    /// file only if the header is neither whole and valid nor missing.
    fn is_blank(&mut self, path: &Path) -> Result<bool, Error> {
        use std::io::Read;
        if self.len < self.bytes.len() || self.bytes.iter().all(|&b| b == 0) {
            return Ok(true);
        }
        if SegmentHeader::decode(&self.bytes).is_ok() {
            return Ok(false); // a valid header (the usual case: nothing more is read)
        }
        let mut rest = Vec::new();
        (&self.file)
            .read_to_end(&mut rest)
            .map_err(|e| Error::io("read segment", path, e))?;
        Ok(codec::all_zero(&rest))
    }
}

/// A segment file created whose header never reached the disk whole: shorter than a
/// header, a header of zeros, or a header that is not valid (torn while being written)
/// followed by nothing but zeros. It holds no record.
pub(crate) fn is_blank_segment(path: &Path) -> Result<bool, Error> {
    SegmentHead::open(path, false)?.is_blank(path)
}

/// Reads into `buf` until it is full or the file ends; how many bytes were read.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The checkpoint to use at open and the index (in `found`) of the first segment at
/// or after it; `(None, None)` (and the reason in `info`) when there is none or it
/// does not match the segment files.
fn checkpointed_tail(
    dir: &Path,
    found: &[(u64, PathBuf)],
    last: Option<&SegmentHead>,
    info: &mut RecoveryInfo,
) -> (Option<checkpoint::Checkpoint>, Option<usize>) {
    let c = match checkpoint::read(dir) {
        checkpoint::Found::Valid(c) => c,
        checkpoint::Found::Missing => {
            info.checkpoint_problem = Some("no checkpoint file".into());
            return (None, None);
        }
        checkpoint::Found::Damaged(reason) => {
            info.checkpoint_problem = Some(reason);
            return (None, None);
        }
    };
    info.checkpoint_ahead = found
        .last()
        .is_none_or(|(last, _)| c.segment_base > *last)
        .then_some(c);
    let bases: Vec<u64> = found.iter().map(|(b, _)| *b).collect();
    // The named file must be the one the checkpoint was written for (same salt).
    // `last`: the last segment's head, already read.
    let r = checkpoint::tail_start(&c, &bases, |k| match last {
        Some(h) if k + 1 == found.len() => h.salt(),
        _ => read_salt(&found[k].1),
    });
    match r {
        Ok(k) => {
            info.checkpoint = Some(c);
            (Some(c), Some(k))
        }
        Err(reason) => {
            info.checkpoint_problem = Some(reason.into());
            (None, None)
        }
    }
}

/// Within `seg`: the ID of the last seek mark whose record is older than `t_ns` (a
/// binary search over the marks, by the timestamps of their records), if any.
fn last_mark_before(seg: &Segment, t_ns: u64) -> Option<u64> {
    let marks = seg.marks.all();
    let k = marks.partition_point(|&(id, off)| match seg.step(off, false) {
        Step::Record { view, .. } if view.id() == id => view.timestamp_ns() < t_ns,
        // Not the record it names (cannot happen for marks of this session; a stale
        // file's): start before it.
        _ => false,
    });
    k.checked_sub(1).map(|k| marks[k].0)
}

/// Gives each of `segs` its marks from the `SEEK` file of `dir` (those of the same
/// base ID and salt).
fn load_seek_marks<'a>(dir: &Path, segs: impl Iterator<Item = &'a Segment>) {
    let mut file = seek::read(dir);
    if file.is_empty() {
        return;
    }
    for seg in segs {
        if let Some(m) = file
            .iter_mut()
            .find(|m| (m.base, m.salt) == (seg.base_id, seg.salt))
        {
            seg.marks.load(std::mem::take(&mut m.marks), seg.capacity);
        }
    }
}

/// The salt in a segment's header, if the header can be read and is valid.
fn read_salt(path: &Path) -> Option<u32> {
    SegmentHead::open(path, false).ok()?.salt()
}

/// Creates the segment file `prepared-{n}.seg.tmp` in `dir` at its full size (through
/// the storage seam: a full disk is [`Error::NoSpace`] here) and maps it; with
/// `populate_window`, pre-faults that much of it.
fn create_prepared(
    dir: &Path,
    opts: &JournalOptions,
    n: u64,
    populate_window: Option<u32>,
) -> Result<Prepared, Error> {
    let path = dir.join(format!("{TMP_PREFIX}{n}{TMP_SUFFIX}"));
    let size = opts.segment_size;
    let file = opts
        .storage
        .create_segment(&path, size)
        .map_err(|e| Error::io("create segment", &path, e))?;
    let len = usize::try_from(size)
        .map_err(|_| Error::InvalidOptions("segment_size too large".into()))?;
    let mut populated_to = 0;
    let map = match Map::writable(&file, len, false) {
        Ok(m) => {
            let ahead =
                populate_window.map_or(0, |w| w.min(u32::try_from(m.len()).unwrap_or(u32::MAX)));
            // Before any page is cached, so before the header is written (best
            // effort). Huge pages for what is pre-faulted here, and at least the
            // first block (which holds the header: a page cached in it before the
            // advice would keep the whole block in single pages).
            let _ = if single_pages(opts) {
                m.advise_appends(0)
            } else if populate_window.is_some_and(|w| huge_ahead(opts, w)) {
                m.advise_huge_range(0, ahead as usize)
            } else {
                m.advise_huge_range(0, 1)
            };
            // Best effort: without it appenders just take page faults.
            if populate_window.is_some() && m.populate_write_range(0, ahead as usize).is_ok() {
                populated_to = ahead;
            }
            m
        }
        Err(e) => {
            let _ = fs::remove_file(&path);
            return Err(Error::io("map segment", &path, e));
        }
    };
    Ok(Prepared {
        path,
        file,
        map,
        populated_to,
    })
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` as its single writer: takes the
    /// lock file and recovers the tail. The background threads (preparer, flusher,
    /// checkpoint writer) start with the first append, or at
    /// [`Journal::start_background`] (the checkpoint writer at once if recovery left a
    /// checkpoint to write).
    ///
    /// When appends cannot go on in the last segment (it is full or sealed) and the
    /// disk has no room for a new one, the open still succeeds: the last segment stays
    /// the active one, sealed, every record reads as usual, and the first append makes
    /// the new segment, failing with [`Error::NoSpace`] while there is still no room
    /// (as when a roll fails later on).
    ///
    /// # Errors
    /// [`Error::Locked`] if another writer has it, [`Error::Corrupt`] for damage that
    /// recovery may not repair in the chosen mode, [`Error::InvalidOptions`],
    /// [`Error::NoSpace`] if the directory holds no segment and the first cannot be
    /// allocated, [`Error::Io`].
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<Journal, Error> {
        opts.validate()?;
        // One `stat` when the directory exists (the usual case).
        if !dir.is_dir() {
            crate::storage::create_dir_durable(dir, |d| opts.storage.sync_dir(d))
                .map_err(|e| Error::io("create directory", dir, e))?;
            if !dir.is_dir() {
                return Err(Error::io(
                    "open directory",
                    dir,
                    io::Error::other("not a directory"),
                ));
            }
        }
        let lock = lock_dir(dir)?;
        let storage = opts.storage.clone();
        let (mut found, tmps) = list_segments(dir)?;
        for t in tmps {
            let _ = fs::remove_file(&t);
        }
        // A tail segment whose header was never completely written is removed. The last
        // segment left stays open (for writing: it is part of the tail) with its header
        // read, for the checkpoint's check and the mapping below.
        let mut last_head = None;
        while let Some((_, path)) = found.last() {
            let mut head = SegmentHead::open(path, true)?;
            if head.is_blank(path)? {
                drop(head);
                fs::remove_file(path).map_err(|e| Error::io("remove blank segment", path, e))?;
                storage
                    .sync_dir(dir)
                    .map_err(|e| Error::io("sync directory", dir, e))?;
                found.pop();
            } else {
                last_head = Some(head);
                break;
            }
        }
        let mut info = RecoveryInfo::default();
        let (cp, tail) = checkpointed_tail(dir, &found, last_head.as_ref(), &mut info);
        if let (Some(c), Some(k)) = (cp, tail) {
            // Segments created after the checkpoint whose header never reached the disk
            // hold nothing that was flushed (a flush writes the header with the first
            // records): removed, wherever they are in the tail.
            let after = if found[k].0 == c.segment_base {
                k + 1
            } else {
                k
            };
            let mut i = found.len();
            while i > after {
                i -= 1;
                let path = found[i].1.clone();
                // The last segment was found not blank above (and stays the last).
                let known = i + 1 == found.len() && last_head.is_some();
                if !known && is_blank_segment(&path)? {
                    fs::remove_file(&path)
                        .map_err(|e| Error::io("remove blank segment", &path, e))?;
                    storage
                        .sync_dir(dir)
                        .map_err(|e| Error::io("sync directory", dir, e))?;
                    found.remove(i);
                    info.removed_blank += 1;
                }
            }
        }
        let n = found.len();
        // The tail: from the checkpointed segment on, or the last two segments.
        let tail_from = tail.map_or(n.saturating_sub(2), |k| k.min(n));
        let mut segs: Vec<Segment> = Vec::with_capacity(n + 1);
        for (i, (base, path)) in found.iter().enumerate() {
            let tail = i >= tail_from;
            // The last segment is always in the tail (`tail_from < n`): writable, as
            // its head was opened.
            let head = if i + 1 == n { last_head.take() } else { None };
            let (seg, _) = open_segment(*base, path, tail, false, tail, head)?;
            if let Some(prev) = segs.last() {
                if prev.base_id >= seg.base_id {
                    return Err(Error::corrupt(
                        path,
                        16,
                        "segment base IDs are not increasing",
                    ));
                }
            }
            segs.push(seg);
        }
        load_seek_marks(dir, segs.iter());
        // Recover the tail, segment by segment. A clean-close checkpoint naming the last
        // segment gives the scan of that segment its end (see the checkpoint module).
        let mut last_scan = None;
        for i in tail_from..n {
            let known_end = cp
                .filter(|c| {
                    c.clean
                        && i + 1 == n
                        && c.segment_base == segs[i].base_id
                        && c.segment_salt == segs[i].salt
                })
                .map(|c| KnownEnd {
                    offset: c.offset,
                    next_id: c.next_id,
                    check_from: c.check_from,
                });
            // The records below the checkpointed offset were flushed: damage there is
            // not a torn write.
            let durable_end = cp
                .filter(|c| c.segment_base == segs[i].base_id && c.segment_salt == segs[i].salt)
                .map_or(0, |c| c.offset);
            let scan = recover::scan_and_repair(
                &segs[i],
                opts.recovery_mode,
                &*storage,
                known_end,
                durable_end,
            )?;
            info.clean_close |= scan.at_known_end;
            if let Some(next) = segs.get(i + 1) {
                if scan.next_id > next.base_id {
                    return Err(Error::corrupt(
                        &segs[i].path,
                        u64::from(scan.end_off),
                        "segment overlaps the next one",
                    ));
                }
                // IDs reserved here but lost in the crash (a torn tail, or a removed
                // segment whose header never reached the disk): the end marker says so,
                // and readers accept the gap.
                if scan.next_id < next.base_id {
                    seal_at_open(&segs[i], scan.end_off, &*storage)?;
                }
                // Make the recovered segment durable before a checkpoint can name a
                // later one (after a kill its records may be in the page cache only).
                let seg = &segs[i];
                if seg.is_writable() {
                    let end = if scan.sealed {
                        scan.end_off.saturating_add(proto::END_MARKER_LEN)
                    } else {
                        scan.end_off
                    }
                    .min(seg.capacity);
                    // SAFETY: exclusive access at open; in bounds.
                    let bytes = unsafe { seg.slice(0, end) };
                    let req = FlushRequest {
                        path: &seg.path,
                        base_id: seg.base_id,
                        file: &seg.file,
                        offset: 0,
                        bytes,
                    };
                    storage
                        .flush(&req)
                        .map_err(|e| Error::io("flush segment", &seg.path, e))?;
                }
            }
            info.scanned_segments += 1;
            info.truncated += usize::from(scan.truncated);
            info.holes += scan.holes;
            info.skipped += scan.skipped;
            last_scan = Some(scan);
        }
        info.tail_from = segs.get(tail_from).map(|s| s.base_id);
        // A checkpoint naming a segment after every file: that segment, and maybe
        // others, are gone with records the checkpoint recorded as flushed.
        let have = last_scan.map_or(1, |s| s.next_id);
        let lost_to = info.checkpoint_ahead.map_or(0, |c| c.next_id);
        if lost_to > have {
            let c = info.checkpoint_ahead.expect("set when lost_to > 1");
            if opts.recovery_mode == crate::options::RecoveryMode::Strict {
                return Err(Error::corrupt(
                    dir.join(segment_name(c.segment_base)),
                    0,
                    format!(
                        "missing: the checkpoint records this segment as flushed up to ID \
                         {}, but the segment files end at ID {}: IDs {have}..{lost_to} are \
                         missing (segment files were removed)",
                        lost_to - 1,
                        have.saturating_sub(1)
                    ),
                ));
            }
            info.skipped += 1;
        }
        let recovered = match (segs.last(), last_scan) {
            (Some(l), Some(scan)) => Some(Durable {
                base: l.base_id,
                salt: l.salt,
                offset: scan.end_off,
                next_id: scan.next_id,
            }),
            _ => None,
        };
        let mut durable = 1;
        let mut progress = FlushProgress::at_start(1);
        let mut need_new = None;
        match (segs.last_mut(), last_scan) {
            (Some(last), Some(scan)) => {
                // Make the recovered tail durable (after a clean close it is).
                if last.is_writable() && !scan.at_known_end {
                    // SAFETY: exclusive access at open; in bounds.
                    let bytes = unsafe { last.slice(0, scan.end_off) };
                    let req = FlushRequest {
                        path: &last.path,
                        base_id: last.base_id,
                        file: &last.file,
                        offset: 0,
                        bytes,
                    };
                    storage
                        .flush(&req)
                        .map_err(|e| Error::io("flush segment", &last.path, e))?;
                }
                durable = scan.next_id;
                let room = u64::from(last.capacity) - u64::from(scan.end_off);
                // IDs never go back below one already flushed (the checkpoint's), even
                // if Skip mode dropped its record.
                let min_next = opts
                    .min_next_id
                    .max(cp.map_or(0, |c| c.next_id))
                    .max(lost_to);
                if scan.next_id < min_next {
                    // IDs must continue from `min_next`: seal the tail here (a tagged end
                    // marker, made durable before the next segment exists) and start the
                    // next segment at `min_next`.
                    seal_at_open(last, scan.end_off, &*storage)?;
                    need_new = Some(min_next);
                } else if scan.sealed || room < 64 {
                    need_new = Some(scan.next_id);
                } else {
                    let count = u32::try_from(scan.next_id - last.base_id)
                        .map_err(|_| Error::corrupt(&last.path, 16, "too many records"))?;
                    last.word
                        .store(proto::pack(count, scan.end_off), proto_ordering());
                    last.live = true;
                    last.opened_end = scan.end_off;
                    if single_pages(&opts) {
                        last.advise_appends(scan.end_off);
                    }
                    progress = FlushProgress {
                        seg_base: last.base_id,
                        scan_off: scan.end_off,
                        flushed_off: scan.end_off,
                        next_id: scan.next_id,
                        tail: scan.tail,
                    };
                }
            }
            _ => need_new = Some(opts.min_next_id.max(1).max(lost_to)),
        }
        // The new segment the tail needs is created before the segments are shared, so
        // that a disk with no room for it leaves the last segment to become the active
        // one instead of failing the open (the backlog must stay readable, and drainable
        // to free space). It stays sealed, as after a roll that failed with `NoSpace`:
        // the first append finds it sealed and makes the new segment itself, getting
        // `NoSpace` while there is still no room.
        let mut new_seg = None;
        if let Some(base) = need_new {
            match create_prepared(dir, &opts, 0, None) {
                Ok(p) => new_seg = Some((p, base)),
                Err(Error::NoSpace { path }) => {
                    let (Some(last), Some(scan)) = (segs.last_mut(), last_scan) else {
                        return Err(Error::NoSpace { path }); // nothing to open
                    };
                    // The roll makes the next segment at `base + count`. Where IDs
                    // continue above this segment's records (`min_next`, after the
                    // tagged end marker written above), the skipped IDs count as this
                    // segment's, so that the roll starts at `base` all the same.
                    let Some(count) = base
                        .checked_sub(last.base_id)
                        .and_then(|c| u32::try_from(c).ok())
                        .filter(|&c| c <= proto::MAX_COUNT)
                    else {
                        return Err(Error::NoSpace { path });
                    };
                    last.word.store(
                        proto::pack(count, scan.end_off) | proto::SEALED,
                        proto_ordering(),
                    );
                    last.live = true;
                    last.opened_end = scan.end_off;
                    // No append goes here: nothing for the preparer to pre-fault.
                    last.populated_to.store(last.capacity, Ordering::Relaxed);
                    // Flushing goes on from the recovered end (through the end marker,
                    // if any, as for a segment sealed in this session).
                    progress = FlushProgress {
                        seg_base: last.base_id,
                        scan_off: scan.end_off,
                        flushed_off: scan.end_off,
                        next_id: scan.next_id,
                        tail: scan.tail,
                    };
                    durable = base;
                }
                Err(e) => return Err(e),
            }
        }
        let min_gap = if opts.durability == Durability::Buffered {
            opts.flush_interval.max(checkpoint::MIN_CHECKPOINT_GAP)
        } else {
            checkpoint::MIN_CHECKPOINT_GAP
        };
        let ckpt = Arc::new(Checkpointer::new(
            dir,
            storage.clone(),
            min_gap,
            cp,
            recovered,
            info,
        ));
        let inner = Inner::new(
            dir,
            opts,
            Some(lock),
            segs,
            PrepState {
                ready: None,
                want: true,
                making: false,
                stop: false,
            },
            progress,
            durable,
        )?;
        // Whether or not it gave the end, a clean-close checkpoint must not outlive the
        // first append of this session: the first reservation unmarks it.
        *lock_ignore_poison(&inner.clean_on_disk) = cp.filter(|c| c.clean);
        let _ = inner.ckpt.set(ckpt.clone());
        if let Some((p, base)) = new_seg {
            let _g = lock_ignore_poison(&inner.roll_lock);
            let seg = inner.install(p, base)?;
            inner.sync_dir_for(&seg)?;
            let mut pr = lock_ignore_poison(&inner.progress);
            *pr = FlushProgress::at_start(base);
            inner.durable.store(base, Ordering::Release);
        } else {
            let guard = epoch::pin();
            let t = inner.table(&guard);
            let last = t.segs.last().expect("a live tail segment exists");
            inner
                .active
                .store(Arc::as_ptr(last).cast_mut(), Ordering::Release);
        }
        // The background threads start at the first reservation of this session (or
        // when the owner asks, `start_background`): an open that only reads starts
        // none. Only a checkpoint that is due at once (the tail recovered differs from
        // what the file records) starts its writer here.
        if ckpt.due_now() {
            ckpt.start()
                .map_err(|e| Error::io("spawn checkpoint writer", dir, e))?;
        }
        Ok(Journal {
            inner,
            shutdown: Mutex::new(ShutdownState { done: false }),
        })
    }

    /// Opens the journal in `dir` for reading only: creates and writes nothing, maps
    /// read-only, works beside a writer in another process. New segments of that
    /// writer are discovered by [`Journal::refresh`] (the cursor calls it at the end).
    ///
    /// A torn tail at the end of the last segment (damage a crash left, which the next
    /// writable open cuts) is, for its cursors, the end of what is committed, once the
    /// journal has made sure no writer lives: it then takes the `LOCK` file shared for
    /// a moment, never creating it (a writer's open waits for it). Damage anywhere else,
    /// or while a writer lives, is reported as [`Error::Corrupt`]. See [`Cursor`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a bad segment header, [`Error::Io`].
    pub fn open_read_only(dir: &Path, opts: JournalOptions) -> Result<Journal, Error> {
        opts.validate()?;
        let inner = Inner::new(
            dir,
            opts,
            None,
            Vec::new(),
            PrepState::default(),
            FlushProgress::at_start(0),
            0,
        )?;
        if !dir.is_dir() {
            return Err(Error::io(
                "open directory",
                dir,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        let j = Journal {
            inner,
            shutdown: Mutex::new(ShutdownState { done: false }),
        };
        j.refresh()?;
        {
            let guard = epoch::pin();
            load_seek_marks(dir, j.inner.table(&guard).segs.iter().map(|s| &**s));
        }
        Ok(j)
    }

    /// Read-only journals: maps segments created since the last look. Returns how
    /// many were added. A writer's journal returns `Ok(0)`.
    ///
    /// # Errors
    /// [`Error::Io`] reading the directory, [`Error::Corrupt`] for a bad header.
    pub fn refresh(&self) -> Result<usize, Error> {
        let inner = &*self.inner;
        if !inner.read_only {
            return Ok(0);
        }
        let _g = lock_ignore_poison(&inner.roll_lock);
        let (found, _) = list_segments(&inner.dir)?;
        let guard = epoch::pin();
        let old = inner.table(&guard);
        let last_base = old.segs.last().map(|s| s.base_id);
        let mut segs = old.segs.clone();
        let mut added = 0;
        for (base, path) in found {
            if last_base.is_some_and(|l| base <= l) {
                continue;
            }
            match open_segment(base, &path, false, false, false, None) {
                Ok((seg, _)) => {
                    segs.push(Arc::new(seg));
                    added += 1;
                }
                // A segment being created by the writer right now: look again later.
                Err(Error::Corrupt { .. }) if header_is_blank(&path).unwrap_or(false) => break,
                // Removed by the writer since the listing (compaction removes the
                // oldest segments, once consumed): not part of the journal any more. A
                // gap this leaves before the next segment is the cursors' to report.
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        if added > 0 {
            inner.publish_table(Table { segs }, &guard);
        }
        Ok(added)
    }

    /// Appends one record; returns its ID. The record is in the mapped file when this
    /// returns (and on stable storage with [`Durability::Sync`]).
    ///
    /// # Errors
    /// Limit errors ([`Error::RecordTooLarge`], [`Error::TooManyHeaders`], ...) before
    /// anything is written; [`Error::NoSpace`] when a new segment cannot be allocated;
    /// [`Error::Poisoned`] after a failed flush; [`Error::ReadOnly`].
    #[inline]
    pub fn append(&self, rec: &RecordIn<'_>) -> Result<u64, Error> {
        let inner = &*self.inner;
        inner.check_writable()?;
        let len = codec::encoded_len(rec, inner.opts.max_record_size)?;
        let alen = codec::align8(len);
        if alen > inner.max_in_segment {
            return Err(Error::RecordTooLarge {
                size: u64::from(alen),
                max: u64::from(inner.max_in_segment),
            });
        }
        let ts = match rec.timestamp_ns {
            Some(t) => t,
            None => now_ns(),
        };
        let id = inner.reserve_and_write(alen, 1, |seg, off, id| {
            // SAFETY: the reservation gives us `off..off + alen` exclusively; the
            // segment is mapped writable, zero there, and kept alive by the pin.
            unsafe { codec::write_record(seg.ptr(off), len, rec, id, ts, seg.salt) };
            proto::commit(seg, off, proto::KIND_RECORD);
        })?;
        if inner.opts.durability == Durability::Sync {
            inner.wait_durable(id)?;
        }
        Ok(id)
    }

    /// Appends records with contiguous IDs, reserved in one atomic step (in one
    /// segment). Returns the ID range.
    ///
    /// # Errors
    /// As [`Journal::append`]; [`Error::RecordTooLarge`] if the whole batch does not
    /// fit in one segment.
    pub fn append_batch(&self, recs: &[RecordIn<'_>]) -> Result<Range<u64>, Error> {
        self.append_batch_of(recs.len(), |i| recs[i])
    }

    /// As [`append_batch`](Journal::append_batch), for plain payloads (each as
    /// [`RecordIn::new`]): no slice of records to build first.
    ///
    /// # Errors
    /// As [`append_batch`](Journal::append_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let j = ledgerq_journal::Journal::open(dir.path(), Default::default()).unwrap();
    /// assert_eq!(j.append_payloads(&[&b"a"[..], b"b", b"c"]).unwrap(), 1..4);
    /// ```
    pub fn append_payloads<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Range<u64>, Error> {
        self.append_batch_of(payloads.len(), |i| RecordIn::new(payloads[i].as_ref()))
    }

    /// One reservation for the `n` records `rec(0..n)`.
    fn append_batch_of<'a>(
        &self,
        n: usize,
        rec: impl Fn(usize) -> RecordIn<'a>,
    ) -> Result<Range<u64>, Error> {
        let inner = &*self.inner;
        inner.check_writable()?;
        if n == 0 {
            let n = self.next_id();
            return Ok(n..n);
        }
        let mut lens = Vec::with_capacity(n);
        let mut total: u64 = 0;
        for i in 0..n {
            let len = codec::encoded_len(&rec(i), inner.opts.max_record_size)?;
            lens.push(len);
            total += u64::from(codec::align8(len));
        }
        if total > u64::from(inner.max_in_segment) {
            return Err(Error::RecordTooLarge {
                size: total,
                max: u64::from(inner.max_in_segment),
            });
        }
        let n = u32::try_from(n).map_err(|_| Error::RecordTooLarge {
            size: total,
            max: 0,
        })?;
        let now = now_ns();
        // `total <= max_in_segment`, a u32.
        let first = inner.reserve_and_write(total as u32, n, |seg, off, first| {
            let mut at = off;
            for (i, len) in lens.iter().enumerate() {
                let r = &rec(i);
                // SAFETY: the reservation covers every record of the batch back to back.
                unsafe {
                    codec::write_record(
                        seg.ptr(at),
                        *len,
                        r,
                        first + i as u64,
                        r.timestamp_ns.unwrap_or(now),
                        seg.salt,
                    )
                };
                at += codec::align8(*len);
            }
            // Commit in order so in-order readers never see a later record first.
            let mut at = off;
            for len in &lens {
                proto::commit(seg, at, proto::KIND_RECORD);
                at += codec::align8(*len);
            }
        })?;
        let end = first + u64::from(n);
        if inner.opts.durability == Durability::Sync {
            inner.wait_durable(end - 1)?;
        }
        Ok(first..end)
    }

    /// The ID the next append will get (racy under concurrent appends).
    pub fn next_id(&self) -> u64 {
        let inner = &*self.inner;
        let guard = epoch::pin();
        if inner.read_only {
            let t = inner.table(&guard);
            let mut c = match t.segs.last() {
                Some(s) => Cursor::at_segment(s.clone(), s.base_id),
                None => return 1,
            };
            while let Ok(Some(_)) = c.next(self, |_| ()) {}
            return c.position_id();
        }
        let seg = inner.active_seg(&guard);
        seg.base_id + u64::from(proto::count_of(seg.word.load(Ordering::Acquire)))
    }

    /// Damaged or missing spans passed over in [`RecoveryMode::Skip`] since open: those
    /// the open-time scan skipped ([`RecoveryInfo::skipped`]) and those readers met
    /// (records failing their checksum, records never committed and IDs missing in
    /// segments nobody appends to), each counted once.
    ///
    /// [`RecoveryMode::Skip`]: crate::RecoveryMode::Skip
    pub fn skipped_damage(&self) -> u64 {
        let at_open = self.recovery_info().map_or(0, |i| i.skipped);
        let by_readers = lock_ignore_poison(&self.inner.skipped).len();
        (at_open + by_readers) as u64
    }

    /// The lowest ID still retained (the first segment's base ID).
    pub fn first_id(&self) -> u64 {
        let guard = epoch::pin();
        self.inner
            .table(&guard)
            .segs
            .first()
            .map_or(1, |s| s.base_id)
    }

    /// Every committed ID below this is on stable storage.
    pub fn durable_id(&self) -> u64 {
        // Acquire: pairs with the Release `fetch_max` in `flush_committed`.
        self.inner.durable.load(Ordering::Acquire)
    }

    /// Makes every record committed so far durable.
    ///
    /// # Errors
    /// [`Error::Poisoned`] (a flush failed, now or before), [`Error::ReadOnly`].
    pub fn sync(&self) -> Result<(), Error> {
        self.inner.check_writable()?;
        let next = self.next_id();
        if next == 0 {
            return Ok(());
        }
        self.inner.wait_durable(next - 1)
    }

    /// A cursor that returns records in ID order starting at `from_id`.
    ///
    /// Positioning is O(log segments) plus a scan from the start of the segment that
    /// holds `from_id` (bounded by the segment size).
    ///
    /// # Errors
    /// None today; reserved for I/O on segment discovery.
    pub fn cursor(&self, from_id: u64) -> Result<Cursor, Error> {
        let guard = epoch::pin();
        let t = self.inner.table(&guard);
        Ok(match t.index_for_id(from_id) {
            Some(i) => Cursor::at_segment(t.segs[i].clone(), from_id),
            None => Cursor::empty(from_id),
        })
    }

    /// Reads the record at `pos` (from [`RecordView::position`]): an epoch-pinned
    /// lookup, no lock, no syscall.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the segment was removed or the position holds no
    /// committed record with that ID.
    pub fn read<R>(
        &self,
        pos: codec::Position,
        f: impl FnOnce(RecordView<'_>) -> R,
    ) -> Result<R, Error> {
        let guard = epoch::pin();
        let t = self.inner.table(&guard);
        let nf = Error::NotFound { id: pos.id };
        let Some(i) = t.index_of(pos.segment) else {
            return Err(nf);
        };
        let seg = &t.segs[i];
        if pos.offset < SEGMENT_HEADER_LEN || pos.offset % 8 != 0 || pos.offset >= seg.capacity {
            return Err(nf);
        }
        match seg.step(pos.offset, false) {
            Step::Record { view, .. } if view.id() == pos.id => Ok(f(view)),
            _ => Err(nf),
        }
    }

    /// The first ID whose timestamp is at or after `t` (or [`Journal::next_id`] if
    /// none). Binary search over segments by their first record's timestamp, then over
    /// the seek marks of that segment (every 1024th ID, where known), then a scan;
    /// assumes timestamps do not decrease in ID order.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if a scanned record is damaged.
    pub fn seek_time(&self, t: SystemTime) -> Result<u64, Error> {
        let t_ns = t
            .duration_since(UNIX_EPOCH)
            // Saturating: a time past what u64 nanoseconds hold is after every record.
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let start = {
            let guard = epoch::pin();
            let tb = self.inner.table(&guard);
            let n = tb
                .segs
                .partition_point(|s| first_timestamp(s).is_some_and(|ts| ts < t_ns));
            match tb.segs.get(n.saturating_sub(1)) {
                Some(s) => last_mark_before(s, t_ns).unwrap_or(s.base_id),
                None => return Ok(self.next_id()),
            }
        };
        let mut c = self.cursor(start)?;
        loop {
            match c.next(self, |v| (v.id(), v.timestamp_ns()))? {
                Some((id, ts)) if ts >= t_ns => return Ok(id),
                Some(_) => {}
                None => return Ok(c.position_id()),
            }
        }
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let guard = epoch::pin();
        let t = self.inner.table(&guard);
        let active = self.inner.active.load(Ordering::Acquire);
        t.segs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let next = t.segs.get(i + 1).map(|n| n.base_id);
                let w = s.word.load(Ordering::Acquire);
                let sealed = next.is_some()
                    || (s.live && proto::is_sealed(w) && !std::ptr::eq(active, &**s));
                let end_id = next.or_else(|| {
                    (s.live && proto::is_sealed(w))
                        .then(|| s.base_id + u64::from(proto::count_of(w)))
                });
                SegmentInfo {
                    base_id: s.base_id,
                    end_id,
                    path: s.path.clone(),
                    size: u64::from(s.capacity),
                    sealed,
                    created_ns: s.created_ns,
                }
            })
            .collect()
    }

    /// Deletes whole sealed segments whose every ID is below `id` (never the active
    /// one), then fsyncs the directory. Returns how many were removed. Readers still
    /// holding them keep their mapping until they let go.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Io`].
    pub fn remove_segments_below(&self, id: u64) -> Result<usize, Error> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        let _g = lock_ignore_poison(&inner.roll_lock);
        // `shutdown` stores `closed` before it takes `roll_lock`; the lock orders it.
        if inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let guard = epoch::pin();
        let t = inner.table(&guard);
        let active = inner.active.load(Ordering::Acquire);
        let mut k = 0;
        while k + 1 < t.segs.len()
            && t.segs[k + 1].base_id <= id
            && !std::ptr::eq(active, &*t.segs[k])
        {
            k += 1;
        }
        if k == 0 {
            return Ok(0);
        }
        let keep: Vec<Arc<Segment>> = t.segs[k..].to_vec();
        let gone: Vec<Arc<Segment>> = t.segs[..k].to_vec();
        inner.publish_table(Table { segs: keep }, &guard);
        drop(guard);
        // Every file is tried and the directory synced even if one removal fails (the
        // first error is returned; a file left behind is a consumed segment the next
        // open finds below the watermark again).
        let mut first_err = None;
        for s in gone {
            if let Err(e) = inner.recycle_or_remove(&s) {
                first_err.get_or_insert(e);
            }
        }
        inner
            .opts
            .storage
            .sync_dir(&inner.dir)
            .map_err(|e| Error::io("sync directory", &inner.dir, e))?;
        first_err.map_or(Ok(k), Err)
    }

    /// Bytes of segment files on disk (including a prepared next segment and removed
    /// files kept for reuse).
    pub fn disk_bytes(&self) -> u64 {
        let guard = epoch::pin();
        let t = self.inner.table(&guard);
        let segs: u64 = t.segs.iter().map(|s| u64::from(s.capacity)).sum();
        let prep = lock_ignore_poison(&self.inner.prep)
            .ready
            .as_ref()
            .map_or(0, |p| p.map.len() as u64);
        let recycled: u64 = lock_ignore_poison(&self.inner.recycled)
            .iter()
            .map(|r| u64::from(r.seg.capacity))
            .sum();
        segs + prep + recycled
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether this journal was opened with [`Journal::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Flushes, stops the background threads and releases the lock. Same as
    /// [`Journal::shutdown`], consuming the handle.
    ///
    /// # Errors
    /// [`Error::Poisoned`] / [`Error::Io`] if the final flush fails.
    pub fn close(self) -> Result<(), Error> {
        self.shutdown()
    }

    /// Closes the journal through a shared reference: waits (briefly) for appends in
    /// flight, flushes the committed prefix, stops the background threads and
    /// releases the directory lock, so the directory can be opened again while this
    /// handle still exists. Afterwards [`Journal::append`], [`Journal::append_batch`],
    /// [`Journal::sync`] and [`Journal::remove_segments_below`] fail with
    /// [`Error::Closed`]; reads of existing records keep working until the handle is
    /// dropped. Idempotent: later calls return `Ok(())`.
    ///
    /// # Errors
    /// [`Error::Poisoned`] / [`Error::Io`] if the final flush fails (the lock is
    /// released anyway).
    pub fn shutdown(&self) -> Result<(), Error> {
        let mut st = lock_ignore_poison(&self.shutdown);
        if st.done {
            return Ok(());
        }
        self.stop_threads(&mut st);
        let inner = &*self.inner;
        inner.discard_prepared();
        if inner.read_only {
            return Ok(());
        }
        let r = inner.quiesce_and_flush();
        if r.is_ok() {
            // Best effort: the file is a hint (see `seek`).
            let _ = seek::write(&inner.dir, &inner.seek_marks());
        }
        if let Some(c) = inner.checkpointer() {
            // A last checkpoint, so the next open scans nothing.
            c.finish(r.is_ok(), r.as_ref().ok().copied().flatten());
        }
        let r = r.map(|_| ());
        // After `quiesce_and_flush` took `roll_lock`: no removal can add to the pool.
        inner.discard_recycled();
        // Release the directory lock last: nothing of this handle writes the
        // directory after this point.
        drop(lock_ignore_poison(&inner.lock).take());
        r
    }

    /// Marks the handle closed and stops its background threads (preparer, flusher),
    /// at a point between two of their steps.
    fn stop_threads(&self, st: &mut ShutdownState) {
        st.done = true;
        let inner = &*self.inner;
        // Release: pairs with the Acquire load in `check_writable` (and `roll` reads it
        // under `roll_lock`, which orders it by itself).
        inner.closed.store(true, Ordering::Release);
        *lock_ignore_poison(&inner.stop) = true;
        inner.stop_cv.notify_all();
        {
            let mut p = lock_ignore_poison(&inner.prep);
            p.stop = true;
        }
        inner.prep_cv.notify_all();
        let (preparer, flusher) = {
            let mut b = lock_ignore_poison(&inner.background);
            b.stopped = true;
            (b.preparer.take(), b.flusher.take())
        };
        for t in [preparer, flusher].into_iter().flatten() {
            let _ = t.join();
        }
    }

    /// Stops this handle as a killed process stops: no last flush, no seek-mark file,
    /// no last (clean) checkpoint, a prepared segment file left under its temporary
    /// name. Only the background threads are stopped (between two of their steps) and
    /// the directory lock is released, so that crash tests can open the directory
    /// again in the same process and check what a kill at this point leaves. The
    /// handle then behaves as closed. Not for applications: use [`Journal::close`].
    #[doc(hidden)]
    pub fn abandon(&self) {
        let mut st = lock_ignore_poison(&self.shutdown);
        if st.done {
            return;
        }
        self.stop_threads(&mut st);
        let inner = &*self.inner;
        if let Some(c) = inner.checkpointer() {
            c.finish(false, None);
        }
        drop(lock_ignore_poison(&inner.lock).take());
    }

    /// Starts the background threads (the preparer, the flusher with
    /// [`Durability::Buffered`], the checkpoint writer) now rather than at the first
    /// append of the session. An open that only reads needs none of them; an owner
    /// that expects appends soon calls this a little after open, off its open path,
    /// so that the next segment is ready when they come (the queue does, 20 ms after
    /// opening). The preparer still waits for the first append or 20 ms after open.
    /// Does nothing for a read-only journal or after [`Journal::shutdown`].
    ///
    /// # Errors
    /// [`Error::Io`] if a thread cannot be spawned (the next call, or the next
    /// append, tries again).
    pub fn start_background(&self) -> Result<(), Error> {
        self.inner.start_background()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = Journal::shutdown(self);
    }
}

fn first_timestamp(s: &Segment) -> Option<u64> {
    match s.step(SEGMENT_HEADER_LEN, true) {
        Step::Record { view, .. } => Some(view.timestamp_ns()),
        _ => None,
    }
}

pub(crate) fn lock_ignore_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[inline]
fn proto_ordering() -> Ordering {
    // Open-time initialisation happens before the segment is shared (the `Arc` and
    // the Release publication of the table order it); Relaxed suffices.
    Ordering::Relaxed
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: we are the last owner of `Inner`; no guard can observe the table.
        unsafe {
            let t = self.table.load(Ordering::Relaxed, epoch::unprotected());
            if !t.is_null() {
                drop(t.into_owned());
            }
        }
    }
}

impl Inner {
    /// The shared state of a journal: a writer (holding `lock`) or a read-only opener
    /// (`lock` is `None`), with its recovered segments and flush position.
    #[allow(clippy::too_many_arguments)]
    fn new(
        dir: &Path,
        opts: JournalOptions,
        lock: Option<File>,
        segs: Vec<Segment>,
        prep: PrepState,
        progress: FlushProgress,
        durable: u64,
    ) -> Result<Arc<Inner>, Error> {
        let max_in_segment = u32::try_from(opts.segment_size - u64::from(SEGMENT_HEADER_LEN))
            .map_err(|_| Error::InvalidOptions("segment_size too large".into()))?;
        Ok(Arc::new_cyclic(|me| Inner {
            dir: dir.to_path_buf(),
            read_only: lock.is_none(),
            table: Atomic::new(Table {
                segs: segs.into_iter().map(Arc::new).collect(),
            }),
            active: AtomicPtr::new(std::ptr::null_mut()),
            roll_lock: Mutex::new(()),
            prep: Mutex::new(prep),
            prep_cv: Condvar::new(),
            prep_idle: AtomicBool::new(lock.is_some()),
            first_pending: AtomicBool::new(lock.is_some()),
            clean_on_disk: Mutex::new(None),
            progress: Mutex::new(progress),
            gc: Mutex::new(false),
            gc_cv: Condvar::new(),
            durable: AtomicU64::new(durable),
            poison: OnceLock::new(),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            // 0 is the name of the segment `open` creates.
            tmp_counter: AtomicU64::new(1),
            populate_window: std::sync::atomic::AtomicU32::new(POPULATE_AHEAD),
            populate_last_ns: AtomicU64::new(0),
            gc_stats: GroupStats::new(),
            max_in_segment,
            opts,
            recycled: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            lock: Mutex::new(lock),
            ckpt: OnceLock::new(),
            me: me.clone(),
            opened_at: std::time::Instant::now(),
            background: Mutex::new(Background::default()),
            skipped: Mutex::new(std::collections::BTreeSet::new()),
        }))
    }

    /// The seek marks of every segment.
    fn seek_marks(&self) -> Vec<seek::SegmentMarks> {
        let guard = epoch::pin();
        self.table(&guard)
            .segs
            .iter()
            .map(|s| seek::SegmentMarks::of(s.base_id, s.salt, &s.marks))
            .filter(|m| !m.marks.is_empty())
            .collect()
    }

    /// The checkpoint writer (writers only).
    pub(crate) fn checkpointer(&self) -> Option<&Checkpointer> {
        self.ckpt.get().map(|c| &**c)
    }

    /// The queue directory.
    pub(crate) fn dir_path(&self) -> &Path {
        &self.dir
    }

    /// What to do with a damaged record met by a reader.
    pub(crate) fn recovery_mode(&self) -> crate::options::RecoveryMode {
        self.opts.recovery_mode
    }

    /// A reader passed over damage at `offset` of the segment `base` (Skip mode).
    pub(crate) fn note_skipped(&self, base: u64, offset: u32) {
        lock_ignore_poison(&self.skipped).insert((base, offset));
    }

    #[inline]
    pub(crate) fn table<'g>(&self, guard: &'g Guard) -> &'g Table {
        // Acquire: pairs with the Release swap in `publish_table`.
        let t = self.table.load(Ordering::Acquire, guard);
        // SAFETY: the table pointer is never null (created non-null and only swapped
        // for non-null tables) and old tables are destroyed only after every guard
        // pinned before their retirement is gone.
        unsafe { t.deref() }
    }

    #[inline]
    fn active_seg<'g>(&self, _guard: &'g Guard) -> &'g Segment {
        // Acquire: pairs with the Release store in `install` (the segment's header,
        // word and mapping are initialised before it is published).
        let p = self.active.load(Ordering::Acquire);
        debug_assert!(!p.is_null());
        // SAFETY: `active` always points into an `Arc<Segment>` held by the current
        // table (set in `open`/`install`; `remove_segments_below` never removes the
        // active segment). Tables are retired through the epoch, so the segment lives
        // at least until `_guard` is dropped.
        unsafe { &*p }
    }

    fn publish_table(&self, t: Table, guard: &Guard) {
        // Release: pairs with the Acquire load in `table`.
        let old = self.table.swap(Owned::new(t), Ordering::AcqRel, guard);
        // SAFETY: `old` is unreachable from now on; readers pinned before this swap
        // may still use it, which `defer_destroy` waits for.
        unsafe { guard.defer_destroy(old) };
        guard.flush();
    }

    #[inline]
    fn check_writable(&self) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // Acquire: pairs with the Release store in `Journal::shutdown`.
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(c) = self.poison.get() {
            return Err(Error::Poisoned { cause: c.clone() });
        }
        Ok(())
    }

    /// Reserves `len` bytes and `n` IDs in the active segment (rolling as needed) and
    /// runs `write(segment, offset, first_id)` on the reservation.
    #[inline]
    fn reserve_and_write(
        &self,
        len: u32,
        n: u32,
        write: impl FnOnce(&Segment, u32, u64),
    ) -> Result<u64, Error> {
        // Acquire: pairs with the Release store in `first_reservation`, after which
        // the clean checkpoint is unmarked on disk.
        if self.first_pending.load(Ordering::Acquire) {
            self.first_reservation()?;
        }
        let guard = epoch::pin();
        loop {
            let seg = self.active_seg(&guard);
            match proto::reserve(&seg.word, len, n, seg.capacity) {
                Reserve::Reserved { index, offset } => {
                    let id = seg.base_id + u64::from(index);
                    seg.prefetch_for_write(
                        offset.saturating_add(PREFETCH_AHEAD),
                        len.min(PREFETCH_AHEAD),
                    );
                    // Relaxed: a hint (see `arm_populate`).
                    if offset.saturating_add(len) > seg.populate_mark.load(Ordering::Relaxed) {
                        self.request_populate(seg);
                    }
                    write(seg, offset, id);
                    return Ok(id);
                }
                Reserve::SealedByMe { offset, .. } => {
                    proto::mark_end(seg, offset);
                    self.roll(seg)?;
                }
                Reserve::Sealed => self.roll(seg)?,
            }
        }
    }

    /// Before the first reservation of the session: a clean-close checkpoint found at
    /// open is replaced, durably, by one not marked clean (a crash of this session
    /// must be recovered by the full scan), and the preparer may start. Appenders that
    /// race here wait for the one doing it.
    #[cold]
    fn first_reservation(&self) -> Result<(), Error> {
        let mut clean = lock_ignore_poison(&self.clean_on_disk);
        // Relaxed: read under `clean_on_disk`, under which it is cleared.
        if !self.first_pending.load(Ordering::Relaxed) {
            return Ok(()); // another appender did it while this one waited
        }
        // A failure leaves `first_pending` set: the next append tries again, and no
        // append succeeds before the flusher runs.
        self.start_background()?;
        if let (Some(c), Some(ckpt)) = (*clean, self.checkpointer()) {
            ckpt.unmark_clean(&c)
                .map_err(|e| Error::io("write checkpoint", self.dir.join(CHECKPOINT_FILE), e))?;
        }
        *clean = None;
        // Release: pairs with the Acquire load in `reserve_and_write`.
        self.first_pending.store(false, Ordering::Release);
        drop(clean);
        self.wake_preparer();
        Ok(())
    }

    /// Starts the background threads that are not running yet (writers; nothing
    /// after `shutdown`): the preparer, the flusher (`Durability::Buffered`) and the
    /// checkpoint writer.
    fn start_background(&self) -> Result<(), Error> {
        if self.read_only {
            return Ok(());
        }
        let Some(me) = self.me.upgrade() else {
            return Ok(());
        };
        let dir = &self.dir;
        let mut b = lock_ignore_poison(&self.background);
        if b.stopped {
            return Ok(());
        }
        if b.preparer.is_none() {
            let i = me.clone();
            b.preparer = Some(
                std::thread::Builder::new()
                    .name("ledgerq-prepare".into())
                    // At normal priority: what it does (creating and pre-faulting
                    // segments) the appenders would otherwise do themselves, on their
                    // own time.
                    .spawn(move || i.preparer())
                    .map_err(|e| Error::io("spawn preparer", dir, e))?,
            );
        }
        if b.flusher.is_none() && self.opts.durability == Durability::Buffered {
            let i = me.clone();
            b.flusher = Some(
                std::thread::Builder::new()
                    .name("ledgerq-flush".into())
                    .spawn(move || {
                        crate::storage::lower_background_priority();
                        i.flusher()
                    })
                    .map_err(|e| Error::io("spawn flusher", dir, e))?,
            );
        }
        if let Some(c) = self.ckpt.get() {
            c.start()
                .map_err(|e| Error::io("spawn checkpoint writer", dir, e))?;
        }
        Ok(())
    }

    /// The first reservation of the session: the preparer may start.
    fn wake_preparer(&self) {
        if self.prep_idle.swap(false, Ordering::Relaxed) {
            // Taking the lock orders this after the preparer's check of `prep_idle`
            // (made under it) or before it: the notification cannot be lost.
            let _p = lock_ignore_poison(&self.prep);
            self.prep_cv.notify_all();
        }
    }

    #[cold]
    fn roll(&self, old: &Segment) -> Result<(), Error> {
        let seg = {
            let _g = lock_ignore_poison(&self.roll_lock);
            // `shutdown` sets `closed` before it seals the active segment under
            // `roll_lock`, so the lock orders this load after that store.
            if self.closed.load(Ordering::Relaxed) {
                return Err(Error::Closed);
            }
            if !std::ptr::eq(self.active.load(Ordering::Acquire), old) {
                return Ok(()); // someone else rolled
            }
            // Acquire: pairs with the sealing CAS; the final count is fixed once sealed.
            let w = old.word.load(Ordering::Acquire);
            debug_assert!(proto::is_sealed(w));
            let base = old.base_id + u64::from(proto::count_of(w));
            let live = {
                let guard = epoch::pin();
                self.table(&guard).segs.len()
            };
            if let Some(max) = self.opts.max_segments {
                if live >= max {
                    return Err(Error::Full { max_segments: max });
                }
            }
            // The spare the preparer makes next is only wanted within the budget.
            let want_spare = self.opts.max_segments.is_none_or(|max| live + 2 <= max);
            let taken = {
                let mut p = lock_ignore_poison(&self.prep);
                p.want = want_spare;
                p.ready.take()
            };
            self.prep_cv.notify_all();
            let prepared = match taken {
                Some(p) => p,
                None => match self.prepare(false) {
                    Ok(p) => p,
                    // The preparer may hold the room this creation needed (a nearly
                    // full disk): its file, once made, is as good.
                    Err(e) => self.wait_for_preparer().ok_or(e)?,
                },
            };
            self.install(prepared, base)?
        };
        // Sync journals advise the appended part random, Buffered ones their huge-page
        // blocks: readers of a sealed segment read ahead again.
        old.advise_reads();
        self.sync_dir_for(&seg)
    }

    /// A new segment file under a temporary name: a recycled one (zeroed) if one is
    /// free, else created, allocated, mapped and (if `populate`) populated.
    fn prepare(&self, populate: bool) -> Result<Prepared, Error> {
        if let Some(p) = self.take_recycled()? {
            return Ok(p);
        }
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let window =
            (populate && self.opts.prefault).then(|| self.populate_window.load(Ordering::Relaxed));
        create_prepared(&self.dir, &self.opts, n, window)
    }

    /// Takes a recycled segment file nobody references any more and zeroes it.
    fn take_recycled(&self) -> Result<Option<Prepared>, Error> {
        let mut r = None;
        for round in 0..4 {
            let mut pool = lock_ignore_poison(&self.recycled);
            if pool.is_empty() {
                return Ok(None);
            }
            // A count of one means only the pool holds it: no table, cursor or
            // epoch-deferred table can reach it, and no new reference can appear.
            if let Some(i) = pool.iter().position(|r| Arc::strong_count(&r.seg) == 1) {
                r = Some(pool.swap_remove(i));
                break;
            }
            drop(pool);
            if round < 3 {
                // Retired tables still hold the segment: help the epoch collect them.
                epoch::pin().flush();
            }
        }
        let Some(r) = r else { return Ok(None) };
        let Recycled { path, seg, extent } = r;
        let seg = match Arc::try_unwrap(seg) {
            Ok(seg) => seg,
            Err(seg) => {
                lock_ignore_poison(&self.recycled).push(Recycled { path, seg, extent });
                return Ok(None);
            }
        };
        let (file, map) = seg.into_parts();
        if single_pages(&self.opts) {
            // Pages evicted since its last use come back as single pages (best effort).
            let _ = map.advise_appends(0);
        }
        let len = u32::try_from(map.len())
            .map_err(|_| Error::InvalidOptions("segment_size too large".into()))?;
        let extent = extent.min(len);
        // SAFETY: we own the only reference to this mapping (unwrapped above) and
        // `0..extent` is inside it; nobody reads the file under its temporary name.
        unsafe { std::ptr::write_bytes(map.ptr(), 0, extent as usize) };
        // The blank header must be durable before the file is renamed to a segment
        // name: after a crash a blank tail is discarded, an old header would not be.
        // SAFETY: exclusively owned, in bounds (segments are at least 64 KiB).
        let head = unsafe { std::slice::from_raw_parts(map.ptr(), SEGMENT_HEADER_LEN as usize) };
        let req = FlushRequest {
            path: &path,
            base_id: 0,
            file: &file,
            offset: 0,
            bytes: head,
        };
        if let Err(e) = self.opts.storage.flush(&req) {
            drop(map);
            let _ = fs::remove_file(&path);
            return Err(Error::io("flush recycled segment", &path, e));
        }
        if extent < len && self.opts.prefault {
            let _ = map.populate_write_range(extent as usize, (len - extent) as usize);
        }
        // Zeroed by hand above: every page is in memory and writable.
        let populated_to = map.len() as u32;
        Ok(Some(Prepared {
            path,
            file,
            map,
            populated_to,
        }))
    }

    /// Keeps a removed segment for reuse (renamed to a temporary name), or deletes it.
    fn recycle_or_remove(&self, s: &Arc<Segment>) -> Result<(), Error> {
        let reusable = self.opts.recycle
            && s.live
            && s.is_writable()
            && u64::from(s.capacity) == self.opts.segment_size
            && !self.closed.load(Ordering::Relaxed);
        if reusable {
            let mut pool = lock_ignore_poison(&self.recycled);
            if pool.len() < MAX_RECYCLED {
                let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
                let tmp = self.dir.join(format!("{TMP_PREFIX}{n}{TMP_SUFFIX}"));
                if fs::rename(&s.path, &tmp).is_ok() {
                    // Acquire: pairs with the sealing CAS; the final offset is fixed.
                    let w = s.word.load(Ordering::Acquire);
                    let extent = proto::offset_of(w)
                        .saturating_add(proto::END_MARKER_LEN)
                        .min(s.capacity);
                    pool.push(Recycled {
                        path: tmp,
                        seg: s.clone(),
                        extent,
                    });
                    return Ok(());
                }
            }
        }
        fs::remove_file(&s.path).map_err(|e| Error::io("remove segment", &s.path, e))
    }

    /// Deletes every recycled file (shutdown).
    fn discard_recycled(&self) {
        for r in lock_ignore_poison(&self.recycled).drain(..) {
            let _ = fs::remove_file(&r.path);
        }
    }

    /// Writes the header, renames the prepared file and publishes it as active.
    /// Called with `roll_lock` held (or during open).
    fn install(&self, p: Prepared, base: u64) -> Result<Arc<Segment>, Error> {
        let salt = fastrand::u32(..);
        let created_ns = now_ns();
        let h = SegmentHeader {
            base_id: base,
            created_ns,
            size: p.map.len() as u64,
            salt,
        };
        let hb = h.encode();
        // SAFETY: the prepared mapping is private to this thread until published below
        // and at least 64 KiB long.
        unsafe { std::ptr::copy_nonoverlapping(hb.as_ptr(), p.map.ptr(), hb.len()) };
        let path = self.dir.join(segment_name(base));
        if let Err(e) = fs::rename(&p.path, &path) {
            let _ = fs::remove_file(&p.path);
            return Err(Error::io("rename segment", &path, e));
        }
        let seg = Segment::new(
            base,
            salt,
            created_ns,
            path,
            p.file,
            p.map,
            proto::pack(0, SEGMENT_HEADER_LEN),
            true,
        );
        seg.dir_synced.store(false, Ordering::Relaxed);
        seg.populated_to.store(p.populated_to, Ordering::Relaxed);
        self.arm_populate(&seg);
        let seg = Arc::new(seg);
        let guard = epoch::pin();
        let mut segs = self.table(&guard).segs.clone();
        segs.push(seg.clone());
        self.publish_table(Table { segs }, &guard);
        // Release: pairs with the Acquire load in `active_seg`.
        self.active
            .store(Arc::as_ptr(&seg).cast_mut(), Ordering::Release);
        Ok(seg)
    }

    /// Makes the segment's directory entry durable (once).
    fn sync_dir_for(&self, seg: &Segment) -> Result<(), Error> {
        // Acquire/Release: pairs with the store below from another thread, so that a
        // `true` means the fsync completed.
        if seg.dir_synced.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Err(e) = self.opts.storage.sync_dir(&self.dir) {
            return Err(self.latch(e));
        }
        seg.dir_synced.store(true, Ordering::Release);
        Ok(())
    }

    /// Drops (and deletes) a prepared segment file, if any.
    fn discard_prepared(&self) {
        if let Some(pr) = lock_ignore_poison(&self.prep).ready.take() {
            drop(pr.map);
            let _ = fs::remove_file(&pr.path);
        }
    }

    /// Shutdown of a writer: seals the active segment in memory (no end marker, so a
    /// reopen continues in it), so no new reservation succeeds and no roll happens;
    /// waits (bounded) until every reservation made before is committed; flushes.
    /// Seals the active segment, waits (at most 500 ms) for every reservation to be
    /// committed, and flushes. Returns the end of the journal (base ID of the active
    /// segment, offset after its last record) if everything reserved was committed and
    /// flushed.
    fn quiesce_and_flush(&self) -> Result<Option<CleanEnd>, Error> {
        let (base, end) = {
            let _g = lock_ignore_poison(&self.roll_lock);
            let guard = epoch::pin();
            let seg = self.active_seg(&guard);
            // AcqRel: pairs with the reservation CASes in `proto::reserve`; after it
            // no reservation in this segment can succeed.
            let w = seg.word.fetch_or(proto::SEALED, Ordering::AcqRel);
            (seg.base_id, proto::offset_of(w))
        };
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        loop {
            if let Some(c) = self.poison.get() {
                return Err(Error::Poisoned { cause: c.clone() });
            }
            self.flush_committed()?;
            let p = lock_ignore_poison(&self.progress);
            // Everything reserved is committed (and flushed) once the flush scan
            // reached the sealed offset of the active segment.
            if p.seg_base == base && p.scan_off >= end {
                return Ok(Some(CleanEnd {
                    base,
                    offset: end,
                    check_from: p.tail.check_from(),
                }));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            drop(p);
            std::thread::yield_now();
        }
    }

    /// Latches the journal into the poisoned state.
    fn latch(&self, e: io::Error) -> Error {
        let cause = self.poison.get_or_init(|| Arc::new(e)).clone();
        Error::Poisoned { cause }
    }

    /// The active segment (an owning reference, so no epoch pin is held long).
    fn active_arc(&self) -> Option<Arc<Segment>> {
        let guard = epoch::pin();
        let p = self.active.load(Ordering::Acquire);
        self.table(&guard)
            .segs
            .iter()
            .rev()
            .find(|s| std::ptr::eq(Arc::as_ptr(s), p))
            .cloned()
    }

    /// Sets where an appender next asks the preparer to populate `seg` further: half a
    /// window before the populated end (nothing, once all of it is populated).
    /// Relaxed here and in the readers: a hint; a request lost to a race is made again
    /// by the next reservation past the mark.
    fn arm_populate(&self, seg: &Segment) {
        let to = seg.populated_to.load(Ordering::Relaxed);
        let mark = if !self.opts.prefault || to >= seg.capacity {
            u32::MAX
        } else {
            to.saturating_sub(self.populate_window.load(Ordering::Relaxed) / 2)
        };
        seg.populate_mark.store(mark, Ordering::Relaxed);
    }

    /// An appender reserved past `seg`'s populate mark: the first to get here wakes
    /// the preparer.
    #[cold]
    fn request_populate(&self, seg: &Segment) {
        if seg.populate_mark.swap(u32::MAX, Ordering::Relaxed) != u32::MAX {
            // Under `prep`: the preparer checks for a request under it before it waits,
            // so the notification cannot fall between its check and its wait.
            let _p = lock_ignore_poison(&self.prep);
            self.prep_cv.notify_all();
        }
    }

    /// Whether the active segment's appenders asked for more pre-faulting (or it was
    /// installed with none), and there is some left to do.
    fn active_wants_populate(&self) -> bool {
        if !self.opts.prefault {
            return false;
        }
        let guard = epoch::pin();
        let seg = self.active_seg(&guard);
        // Relaxed: hints, see `arm_populate`.
        seg.populated_to.load(Ordering::Relaxed) < seg.capacity
            && seg.populate_mark.load(Ordering::Relaxed) == u32::MAX
    }

    /// The window for this round of pre-faulting `seg` (populated below `populated`):
    /// doubled if the appenders are already past the pre-faulted part, halved (to no
    /// less than [`POPULATE_AHEAD`]) if the last round was over [`POPULATE_IDLE`] ago.
    fn adapt_populate_window(&self, seg: &Segment, populated: u32) -> u32 {
        let now = self.gc_stats.now_ns();
        let last = self.populate_last_ns.swap(now, Ordering::Relaxed);
        let mut window = self.populate_window.load(Ordering::Relaxed);
        let tail = proto::offset_of(seg.word.load(Ordering::Relaxed));
        let idle = u64::try_from(POPULATE_IDLE.as_nanos()).unwrap_or(u64::MAX);
        if populated > 0 && tail >= populated {
            window = doubled_window(window, seg);
        } else if now.saturating_sub(last) > idle {
            window = (window / 2).max(POPULATE_AHEAD);
        }
        self.populate_window.store(window, Ordering::Relaxed);
        window
    }

    /// Pre-faults the active segment up to a window ahead of its tail, a chunk at a
    /// time, jumping ahead whenever the appenders overtake (so they fault as little
    /// as possible), then re-arms the appenders' request mark.
    fn populate_active_ahead(&self) {
        if !self.opts.prefault {
            return;
        }
        let Some(seg) = self.active_arc() else { return };
        // Relaxed loads of the word and flags below: progress hints only.
        let mut from = seg.populated_to.load(Ordering::Relaxed);
        let mut window = self.adapt_populate_window(&seg, from);
        let mut since = proto::offset_of(seg.word.load(Ordering::Relaxed));
        // Advised for huge pages below this offset in this round.
        let mut advised_to = 0;
        loop {
            if self.closed.load(Ordering::Relaxed)
                || !std::ptr::eq(self.active.load(Ordering::Relaxed), &*seg)
            {
                return;
            }
            let tail = proto::offset_of(seg.word.load(Ordering::Relaxed));
            if tail.saturating_sub(since) >= window / 2 {
                // Half a window appended while we pre-faulted: they are fast, go on.
                window = doubled_window(window, &seg);
                self.populate_window.store(window, Ordering::Relaxed);
                since = tail;
            }
            let target = tail.saturating_add(window).min(seg.capacity);
            from = from.max(tail);
            if from >= target {
                break;
            }
            let step = POPULATE_CHUNK.min(target - from);
            if from.saturating_add(step) > advised_to && huge_ahead(&self.opts, window) {
                // Once for the rest of this round's window, not per chunk: advice
                // changes the mapping's flags under a lock that page faults wait for.
                advised_to = seg.advise_huge(from, target - from);
            }
            seg.populate_write_range(from, step);
            from += step;
            seg.populated_to.store(from, Ordering::Relaxed);
        }
        self.arm_populate(&seg);
    }

    fn preparer(&self) {
        {
            // The first reservation, or a short grace after open (so that an open
            // followed by appends a little later finds the next segment ready).
            let until = self.opened_at + PREPARE_GRACE;
            let mut p = lock_ignore_poison(&self.prep);
            // Relaxed: read under `prep`, which `wake_preparer` takes before notifying.
            while self.prep_idle.load(Ordering::Relaxed) && !p.stop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                p = self
                    .prep_cv
                    .wait_timeout(p, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if p.stop {
                return;
            }
            self.prep_idle.store(false, Ordering::Relaxed);
        }
        loop {
            // The active segment comes first: appenders are writing into it (asked for
            // by them, or installed unpopulated at open or by a roll that found nothing
            // prepared).
            self.populate_active_ahead();
            {
                let mut p = lock_ignore_poison(&self.prep);
                loop {
                    if p.stop {
                        return;
                    }
                    if p.want && p.ready.is_none() {
                        break;
                    }
                    if self.active_wants_populate() {
                        break;
                    }
                    p = self.prep_cv.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if !(p.want && p.ready.is_none()) {
                    continue;
                }
                p.want = false;
                p.making = true;
            }
            // A failure (e.g. ENOSPC) is left for the roll to report: it retries
            // synchronously and returns the typed error to the appender.
            let made = self.prepare(true);
            let mut p = lock_ignore_poison(&self.prep);
            p.making = false;
            if let Ok(prep) = made {
                if p.ready.is_none() && !p.stop {
                    p.ready = Some(prep);
                } else {
                    drop(prep.map);
                    let _ = fs::remove_file(&prep.path);
                }
            }
            drop(p);
            // A roll whose own creation failed may be waiting for this one.
            self.prep_cv.notify_all();
        }
    }

    /// After a roll's own creation failed: waits for a segment file the preparer is
    /// making, and takes it (or one it made meanwhile). `None` if it is not making
    /// one or its creation failed too.
    fn wait_for_preparer(&self) -> Option<Prepared> {
        let mut p = lock_ignore_poison(&self.prep);
        while p.making && p.ready.is_none() && !p.stop {
            p = self.prep_cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        p.ready.take()
    }

    fn flusher(&self) {
        let every = self.opts.flush_interval;
        loop {
            {
                let stop = lock_ignore_poison(&self.stop);
                if *stop {
                    return;
                }
                let (stop, _) = self
                    .stop_cv
                    .wait_timeout(stop, every)
                    .unwrap_or_else(|e| e.into_inner());
                if *stop {
                    return;
                }
            }
            if self.poison.get().is_some() {
                continue;
            }
            let mut leader = lock_ignore_poison(&self.gc);
            if *leader {
                continue; // a group commit is flushing right now
            }
            *leader = true;
            drop(leader);
            let _ = self.flush_committed();
            *lock_ignore_poison(&self.gc) = false;
            self.gc_cv.notify_all();
        }
    }

    /// Group commit: returns once `id` is durable (leader/follower, see module docs).
    pub(crate) fn wait_durable(&self, id: u64) -> Result<(), Error> {
        // Relaxed (all `gc_stats`): statistics for the gathering rule, order nothing.
        self.gc_stats.inside.fetch_add(1, Ordering::Relaxed);
        let r = self.wait_durable_inner(id);
        self.gc_stats.inside.fetch_sub(1, Ordering::Relaxed);
        r
    }

    fn wait_durable_inner(&self, id: u64) -> Result<(), Error> {
        loop {
            if let Some(c) = self.poison.get() {
                return Err(Error::Poisoned { cause: c.clone() });
            }
            // Acquire: pairs with the Release `fetch_max` in `flush_committed`.
            if self.durable.load(Ordering::Acquire) > id {
                return Ok(());
            }
            let mut leader = lock_ignore_poison(&self.gc);
            if *leader {
                let _unused = self.gc_cv.wait(leader).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if self.durable.load(Ordering::Acquire) > id {
                return Ok(());
            }
            *leader = true;
            drop(leader);
            self.gather();
            let st = &self.gc_stats;
            let before = self.durable.load(Ordering::Acquire);
            let t0 = st.now_ns();
            let r = self.flush_committed();
            let t1 = st.now_ns();
            st.last_flush_ns
                .store(t1.saturating_sub(t0), Ordering::Relaxed);
            // Everyone inside now (covered by this flush or arrived during it) is on its
            // way to the next one: that is the group the next leader gathers.
            st.last_batch
                .store(st.inside.load(Ordering::Relaxed), Ordering::Relaxed);
            st.last_end_ns.store(t1, Ordering::Relaxed);
            *lock_ignore_poison(&self.gc) = false;
            self.gc_cv.notify_all();
            r?;
            let after = self.durable.load(Ordering::Acquire);
            if after <= id && after == before {
                // An earlier reservation is still being written; let it finish.
                std::thread::yield_now();
            }
        }
    }

    /// IDs reserved but not yet durable: what the next flush would cover once those
    /// records are committed.
    fn not_durable(&self) -> u64 {
        let guard = epoch::pin();
        let seg = self.active_seg(&guard);
        let reserved = seg.base_id + u64::from(proto::count_of(seg.word.load(Ordering::Acquire)));
        // Acquire: pairs with the Release `fetch_max` in `flush_committed`.
        reserved.saturating_sub(self.durable.load(Ordering::Acquire))
    }

    /// The leader's gathering rule. If several syncers were inside `wait_durable` when
    /// the last flush ended, less than a flush time ago, they are on their way back
    /// (woken, appending): wait, yielding the CPU to them, until that many records
    /// are reserved and not yet durable, for at most one flush time (capped at
    /// [`MAX_GATHER`]). Otherwise (a lone syncer, or an idle pipeline) flush at once.
    ///
    /// Counting records, not threads inside: when a flush ends, the syncers that
    /// arrived during it are still inside, so a count of threads would already be
    /// met and the next flush would leave behind every syncer just woken (two
    /// half-size groups taking turns).
    fn gather(&self) {
        let st = &self.gc_stats;
        let target = st.last_batch.load(Ordering::Relaxed);
        if target <= 1 {
            return;
        }
        let budget = st
            .last_flush_ns
            .load(Ordering::Relaxed)
            .min(MAX_GATHER.as_nanos() as u64);
        let start = st.now_ns();
        if start.saturating_sub(st.last_end_ns.load(Ordering::Relaxed)) > budget {
            return;
        }
        while self.not_durable() < target && st.now_ns().saturating_sub(start) < budget {
            std::thread::yield_now();
        }
    }

    /// Flushes the committed prefix of every segment from the flush position on and
    /// publishes `durable`. Only one caller at a time (the group-commit leader or the
    /// flusher; `progress` serializes them anyway).
    pub(crate) fn flush_committed(&self) -> Result<(), Error> {
        let mut p = lock_ignore_poison(&self.progress);
        let guard = epoch::pin();
        let t = self.table(&guard);
        loop {
            let idx = t.segs.partition_point(|s| s.base_id < p.seg_base);
            let Some(seg) = t.segs.get(idx) else { break };
            if seg.base_id != p.seg_base {
                *p = FlushProgress::at_start(seg.base_id);
            }
            let has_next = idx + 1 < t.segs.len();
            let (mut off, mut next_id, mut done) = (p.scan_off, p.next_id, false);
            loop {
                match seg.step(off, has_next) {
                    Step::Record { view, len } => {
                        p.tail.note(off);
                        seg.marks.note(view.id(), off);
                        next_id = view.id() + 1;
                        off += len;
                    }
                    Step::Hole { len } => off += len,
                    Step::End => {
                        done = true;
                        break;
                    }
                    Step::Pending | Step::Corrupt(_) => break,
                }
            }
            p.scan_off = off;
            p.next_id = next_id;
            // A sealed segment's end marker is flushed with the records before it: once
            // a later segment's records are durable, a checkpoint may name that segment,
            // and the open after a power loss then scans only from there, trusting this
            // one to be whole (a marker lost or torn in it would stop every reader).
            let end = if done {
                off.saturating_add(proto::END_MARKER_LEN).min(seg.capacity)
            } else {
                off
            };
            if end > p.flushed_off {
                self.sync_dir_for(seg)?;
                // SAFETY: `flushed_off..end` holds the header (immutable once published),
                // committed records and the end marker, none of which is ever written
                // again.
                let bytes = unsafe { seg.slice(p.flushed_off, end - p.flushed_off) };
                let req = FlushRequest {
                    path: &seg.path,
                    base_id: seg.base_id,
                    file: &seg.file,
                    offset: u64::from(p.flushed_off),
                    bytes,
                };
                if let Err(e) = self.opts.storage.flush(&req) {
                    return Err(self.latch(e));
                }
                p.flushed_off = end;
            }
            // Release: pairs with the Acquire loads in `durable_id` / `wait_durable`.
            self.durable.fetch_max(next_id, Ordering::Release);
            if p.flushed_off > 0 {
                // The durable position a checkpoint records is a record boundary: the
                // end marker's offset, not past it.
                self.flushed_to(seg, p.flushed_off.min(off), p.next_id); // checkpoint hook
            }
            match (done, t.segs.get(idx + 1)) {
                (true, Some(n)) => {
                    *p = FlushProgress::at_start(n.base_id);
                }
                _ => break,
            }
        }
        Ok(())
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Journal>();
    is::<Inner>();
    let _ = Duration::ZERO;
    let _ = AtomicBool::new(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Polls `f` for up to ten seconds (the preparer runs in the background).
    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        f()
    }

    fn open_without_prefault(dir: &Path, segment_size: u64) -> Journal {
        let opts = JournalOptions::new()
            .segment_size(segment_size)
            .prefault(false);
        Journal::open(dir, opts).unwrap()
    }

    #[test]
    fn prefaulting_keeps_a_window_ahead_of_the_appenders() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), JournalOptions::new().segment_size(64 << 20)).unwrap();
        let inner = &*j.inner;
        let seg = inner.active_arc().unwrap();
        let populated = || seg.populated_to.load(Ordering::Relaxed);
        j.append(&RecordIn::new(b"first")).unwrap();
        // The first append asks for a window; the spare gets one too. Neither is
        // populated whole.
        assert!(eventually(|| populated() >= POPULATE_AHEAD));
        assert!(eventually(|| lock_ignore_poison(&inner.prep)
            .ready
            .is_some()));
        assert!(populated() <= POPULATE_AHEAD + 4096, "{}", populated());
        let spare = lock_ignore_poison(&inner.prep)
            .ready
            .as_ref()
            .map(|p| p.populated_to);
        assert_eq!(spare, Some(POPULATE_AHEAD));
        // Appends past the mark move the window along.
        let payload = vec![7u8; 64 << 10];
        for _ in 0..100 {
            j.append(&RecordIn::new(&payload)).unwrap();
        }
        let tail = proto::offset_of(seg.word.load(Ordering::Relaxed));
        assert!(tail > POPULATE_AHEAD / 2);
        assert!(eventually(|| populated() >= tail + POPULATE_AHEAD / 2));
        assert!(populated() < seg.capacity);
        j.close().unwrap();
    }

    #[test]
    fn the_prefault_window_grows_for_fast_appenders_and_shrinks_when_idle() {
        // Without prefault the preparer never adapts the window itself: only the
        // calls below do.
        let dir = tempfile::tempdir().unwrap();
        let j = open_without_prefault(dir.path(), 64 << 20);
        let inner = &*j.inner;
        let seg = inner.active_arc().unwrap();
        j.append(&RecordIn::new(&[1u8; 4000])).unwrap();
        let tail = proto::offset_of(seg.word.load(Ordering::Relaxed));
        // Appenders past the pre-faulted part: doubled, up to the segment.
        assert_eq!(
            inner.adapt_populate_window(&seg, tail - 8),
            2 * POPULATE_AHEAD
        );
        assert_eq!(inner.adapt_populate_window(&seg, tail), 4 * POPULATE_AHEAD);
        for _ in 0..8 {
            inner.adapt_populate_window(&seg, tail);
        }
        assert_eq!(inner.populate_window.load(Ordering::Relaxed), seg.capacity);
        // Ahead of the appenders and asked again soon: unchanged.
        assert_eq!(inner.adapt_populate_window(&seg, tail + 4096), seg.capacity);
        // Not asked for over a second: halved.
        std::thread::sleep(POPULATE_IDLE + Duration::from_millis(50));
        assert_eq!(
            inner.adapt_populate_window(&seg, tail + 4096),
            seg.capacity / 2
        );
        j.close().unwrap();
    }

    #[test]
    fn without_prefault_nothing_is_populated_or_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let j = open_without_prefault(dir.path(), 16 << 20);
        let inner = &*j.inner;
        let seg = inner.active_arc().unwrap();
        let payload = vec![7u8; 64 << 10];
        for _ in 0..100 {
            j.append(&RecordIn::new(&payload)).unwrap();
        }
        assert!(eventually(|| lock_ignore_poison(&inner.prep)
            .ready
            .is_some()));
        assert_eq!(seg.populated_to.load(Ordering::Relaxed), 0);
        assert_eq!(seg.populate_mark.load(Ordering::Relaxed), u32::MAX);
        let spare = lock_ignore_poison(&inner.prep)
            .ready
            .as_ref()
            .map(|p| p.populated_to);
        assert_eq!(spare, Some(0));
        j.close().unwrap();
    }
}
