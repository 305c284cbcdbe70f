//! Read-only inspection of a queue directory: statistics, the next deliverable
//! messages, every record, and the recovery report.
//!
//! An [`Inspector`] never owns the queue, never creates, writes or resizes a file, and
//! works while another process owns the queue: it maps the segments read-only and
//! reads a snapshot of the consumer state file (byte map at the top of `state.rs`).
//! What it reports is exact for a queue nobody owns and a snapshot of a moment
//! otherwise.
//!
//! After a crash, the last segment may end in a torn tail (a partly written record)
//! that the next [`Queue::open`](crate::Queue::open) cuts. An inspector sees the
//! records before it, and the torn tail as the end of the queue, when no process owns
//! the queue (it takes the `LOCK` file shared for a moment to make sure, never creating
//! it); [`verify`] reports it. Damage anywhere else is an [`Error::Corrupt`].
//!
//! # Examples
//!
//! ```
//! # fn main() -> Result<(), ledgerq::Error> {
//! use ledgerq::inspect::Inspector;
//! use ledgerq::Queue;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let q = Queue::open(dir.path())?;
//! q.enqueue_batch(["a", "b", "c"])?;
//! assert_eq!(q.dequeue()?.unwrap().payload(), b"a");
//!
//! // Works while `q` owns the directory, and changes nothing.
//! let i = Inspector::open(dir.path())?;
//! let next: Vec<Vec<u8>> = i.peek(5)?.into_iter().map(|m| m.into_payload()).collect();
//! assert_eq!(next, [b"b".to_vec(), b"c".to_vec()]);
//! let stats = i.stats()?;
//! assert_eq!((stats.records, stats.pending, stats.consumed), (3, 2, 1));
//! assert!(i.verify().unwrap().is_clean());
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ledgerq_journal::{Cursor, Journal, JournalOptions, RecordView};

pub use ledgerq_recovery::{
    verify, ConsumerState, Corruption, Error as VerifyError, HoleMarker, IdGap, Report,
    SegmentReport, TornTail,
};

use crate::enqueue::Priority;
use crate::error::{io_err, Error, Result};
use crate::message::Message;
use crate::options::AckMode;
use crate::queue::now_ns;
use crate::state::{FILE_NAME as STATE_FILE, FLAG_MANUAL, FLAG_MODE_KNOWN, FLAG_PRIORITIES};

/// The name of a queue's lock file, held by the process that owns the queue.
pub const LOCK_FILE: &str = ledgerq_journal::LOCK_FILE;

/// The directory of a queue's dead-letter queue, inside the queue's directory.
pub const DEAD_LETTER_DIR: &str = crate::dead_letter::DIR_NAME;

/// The largest payload decompressed: no record can be larger than a segment.
const MAX_DECOMPRESSED: usize = ledgerq_journal::MAX_SEGMENT_SIZE as usize;

const STATE_MAGIC: [u8; 8] = *b"LQSTATE\x01";
const STATE_HEADER: usize = 4096;

/// Where a message stands according to the consumer state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageState {
    /// Waiting for its first delivery.
    Pending,
    /// Delivered this many times and not acknowledged: leased by a consumer, or
    /// delivered again after a `nack`, an expired lease or a reopen.
    Delivered(u32),
    /// Consumed (auto-ack mode) or acknowledged (manual mode), or moved to the
    /// dead-letter queue.
    Consumed,
    /// Being moved to the dead-letter queue (a crash interrupted the move; the next
    /// delivery attempt finishes it).
    DeadLettering,
    /// Not consumed, and its TTL has passed: it will never be delivered.
    Expired,
}

impl MessageState {
    /// Whether a consumer can still receive the message ([`Pending`](Self::Pending) or
    /// [`Delivered`](Self::Delivered)).
    pub fn is_deliverable(self) -> bool {
        matches!(self, MessageState::Pending | MessageState::Delivered(_))
    }
}

/// One record of the queue, from [`Inspector::records`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The message as a delivery would return it now (payload decompressed; the
    /// delivery count is the one the next delivery would carry).
    pub message: Message,
    /// What the consumer state says about it.
    pub state: MessageState,
    /// The dedup key it was enqueued with, if any.
    pub dedup_key: Option<Vec<u8>>,
    /// The dedup window it was enqueued with (with a dedup key).
    pub dedup_window: Option<Duration>,
    /// The compression tag it is stored with (0 none, 1 LZ4, 2 Zstandard).
    pub compression: u8,
    /// The payload's size on disk (compressed size if compressed).
    pub stored_len: usize,
}

/// Counters of a queue directory, from [`Inspector::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectStats {
    /// The lowest ID still retained (the first segment's base ID).
    pub first_id: u64,
    /// The ID the next enqueue will get.
    pub next_id: u64,
    /// Records retained in the segments.
    pub records: u64,
    /// Retained records waiting for their first delivery.
    pub pending: u64,
    /// Retained records delivered and not acknowledged.
    pub in_flight: u64,
    /// Retained records consumed or acknowledged.
    pub consumed: u64,
    /// Retained records expired before delivery.
    pub expired: u64,
    /// Retained records being moved to the dead-letter queue.
    pub dead_lettering: u64,
    /// Deliverable records (pending or in flight) per priority: Low, Medium, High.
    pub deliverable_by_priority: [u64; 3],
    /// The consumer watermark: every ID below it is consumed or acknowledged.
    pub watermark: u64,
    /// Whether the queue delivers by priority (recorded at creation).
    pub priorities: bool,
    /// Whether the consumer state file exists (a queue never opened by a consumer has
    /// none).
    pub has_consumer_state: bool,
    /// Segment files.
    pub segments: u64,
    /// Bytes of segment files on disk.
    pub disk_bytes: u64,
    /// When the oldest deliverable record (pending or in flight) was enqueued.
    pub oldest_deliverable: Option<SystemTime>,
    /// When the oldest pending record (one counted in [`pending`](Self::pending):
    /// waiting for its first delivery, in flight ones not included) was enqueued.
    pub oldest_pending: Option<SystemTime>,
    /// When the newest record was enqueued.
    pub newest: Option<SystemTime>,
    /// Deliverable messages in the dead-letter queue (0 if it does not exist).
    pub dead_letters: u64,
}

/// A snapshot of the consumer state file.
#[derive(Clone, Debug, Default)]
struct StateView {
    present: bool,
    watermark: u64,
    flags: u64,
    marks: [u64; 3],
    bits: u32,
    entries: Vec<u8>,
}

impl StateView {
    fn read(dir: &Path) -> Result<StateView> {
        let path = dir.join(STATE_FILE);
        let b = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StateView::default()),
            Err(e) => return Err(io_err("read consumer state file", path, e)),
        };
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        if b.len() < 72 || b[..8] != STATE_MAGIC {
            return Err(corrupt(
                0,
                "not a LedgerQ consumer state file (bad magic or too short)".into(),
            ));
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let bits = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        if bits >= 32 {
            return Err(corrupt(12, format!("window of {bits} bits is too large")));
        }
        Ok(StateView {
            present: true,
            watermark: u64_at(16),
            flags: u64_at(24),
            marks: [u64_at(48), u64_at(56), u64_at(64)],
            bits,
            entries: b.get(STATE_HEADER..).unwrap_or(&[]).to_vec(),
        })
    }

    fn priorities(&self) -> bool {
        self.flags & FLAG_PRIORITIES != 0
    }

    /// The state of record `id` of priority byte `prio`, expiring at `exp` (ns, 0 for
    /// none), at `now` (ns).
    fn state_of(&self, id: u64, prio: u8, exp: u64, now: u64) -> MessageState {
        if id < self.watermark {
            return MessageState::Consumed;
        }
        let level = usize::from(Priority::from_stored(prio).as_u8());
        if self.priorities() && id < self.marks[level] {
            return MessageState::Consumed;
        }
        let entry = self.entry(id);
        let state = match entry & 0xFF {
            0 => MessageState::Pending,
            0xFF => return MessageState::Consumed,
            0xFE => return MessageState::DeadLettering,
            // `1..=253` by the format; anything else counts as delivered.
            k => MessageState::Delivered(u32::try_from(k).unwrap_or(u32::MAX)),
        };
        if exp != 0 && exp <= now {
            return MessageState::Expired;
        }
        state
    }

    /// The entry word of `id` if it belongs to `id`'s lap, else 0.
    fn entry(&self, id: u64) -> u64 {
        let mask = (1u64 << self.bits) - 1;
        let Some(at) = usize::try_from(id & mask)
            .ok()
            .and_then(|i| i.checked_mul(8))
        else {
            return 0;
        };
        let Some(bytes) = self.entries.get(at..at + 8) else {
            return 0;
        };
        let word = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        let tag = ((id >> self.bits) + 1) << 8;
        if word == 0 || word & !0xFF != tag {
            0
        } else {
            word
        }
    }
}

/// The fields of a record, copied out of the mapping.
struct Raw {
    id: u64,
    segment: u64,
    offset: u32,
    timestamp_ns: u64,
    priority: u8,
    compression: u8,
    expires_at_ns: u64,
    headers: Vec<(String, String)>,
    /// The stored dedup field: the window (u64 LE, ns) then the key.
    dedup_key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl Raw {
    fn of(v: RecordView<'_>) -> Raw {
        let pos = v.position();
        Raw {
            id: v.id(),
            segment: pos.segment(),
            offset: pos.offset(),
            timestamp_ns: v.timestamp_ns(),
            priority: v.priority(),
            compression: v.compression(),
            expires_at_ns: v.expires_at_ns(),
            headers: v
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            dedup_key: v.dedup_key().map(<[u8]>::to_vec),
            payload: v.payload().to_vec(),
        }
    }
}

/// A read-only view of a queue directory. See the [module documentation](self).
#[derive(Debug)]
pub struct Inspector {
    dir: PathBuf,
    journal: Journal,
}

impl Inspector {
    /// Opens the queue in `dir` for inspection. Creates nothing, and never holds the
    /// queue's lock beyond a moment (see the [module documentation](self)).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with an [`io::ErrorKind::NotFound`] source if `dir` does not exist;
    /// [`Error::NotAQueue`] if it holds no queue (no segment and no consumer state file);
    /// [`Error::NotADirectory`]; [`Error::PermissionDenied`]; [`Error::Corrupt`] for a
    /// damaged segment header.
    pub fn open(dir: impl AsRef<Path>) -> Result<Inspector> {
        let dir = dir.as_ref().to_path_buf();
        match fs::metadata(&dir) {
            Ok(m) if !m.is_dir() => return Err(Error::NotADirectory { path: dir }),
            Ok(_) => {}
            Err(e) => return Err(io_err("open queue directory", dir, e)),
        }
        if !is_queue_dir(&dir)? {
            return Err(Error::NotAQueue { path: dir });
        }
        let journal = Journal::open_read_only(&dir, JournalOptions::new())?;
        Ok(Inspector { dir, journal })
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lowest ID still retained.
    pub fn first_id(&self) -> u64 {
        self.journal.first_id()
    }

    /// The ID the next enqueue will get, as far as a scan of the last segment sees
    /// (the scan stops at a damaged record: use [`stats`](Self::stats) or
    /// [`verify`](Self::verify) to find damage).
    pub fn next_id(&self) -> u64 {
        self.journal.next_id()
    }

    /// The first retained ID enqueued at or after `t` (or [`next_id`](Self::next_id)).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a record scanned on the way is damaged.
    pub fn seek_time(&self, t: SystemTime) -> Result<u64> {
        Ok(self.journal.seek_time(t)?)
    }

    /// The recovery report of the directory (see [`verify`]).
    ///
    /// # Errors
    ///
    /// [`VerifyError`] if the directory or a file in it cannot be read.
    pub fn verify(&self) -> std::result::Result<Report, VerifyError> {
        verify(&self.dir)
    }

    /// The acknowledgement mode the queue was last opened in, as its consumer state
    /// file records it (see [`recorded_ack_mode`]).
    ///
    /// # Errors
    ///
    /// As [`recorded_ack_mode`].
    pub fn ack_mode(&self) -> Result<Option<AckMode>> {
        recorded_ack_mode(&self.dir)
    }

    /// Every retained record from ID `from` on, in ID order, whatever its state.
    ///
    /// The iterator returns `None` when it reaches the end of what is committed; called
    /// again later, it returns the records appended meanwhile (so it can follow a
    /// queue). After a damaged record (an `Err`), it stops.
    ///
    /// # Errors
    ///
    /// Reading the consumer state file ([`Error::Corrupt`], [`Error::Io`]).
    pub fn records(&self, from: u64) -> Result<Records<'_>> {
        Ok(Records {
            insp: self,
            cursor: self.journal.cursor(from.max(self.journal.first_id()))?,
            state: StateView::read(&self.dir)?,
            failed: false,
        })
    }

    /// The next `n` messages a consumer would receive, changing nothing: consumed,
    /// acknowledged, dead-lettered and expired messages are skipped; messages delivered
    /// and not acknowledged are included (with the delivery count their next delivery
    /// would carry). When the queue delivers by priority, `High` comes before `Medium`
    /// before `Low`, then ID order; otherwise ID order.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a damaged record or consumer state file, [`Error::Io`].
    pub fn peek(&self, n: usize) -> Result<Vec<Message>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let state = StateView::read(&self.dir)?;
        let levels = if state.priorities() { 3 } else { 1 };
        let now = now_ns();
        let from = state.watermark.max(self.journal.first_id());
        let mut cursor = self.journal.cursor(from)?;
        let mut cand: Vec<Vec<Raw>> = (0..levels).map(|_| Vec::new()).collect();
        loop {
            if cand.iter().all(|c| c.len() >= n) {
                break;
            }
            let item = cursor.next(&self.journal, |v| {
                let st = state.state_of(v.id(), v.priority(), v.expires_at_ns(), now);
                st.is_deliverable().then(|| Raw::of(v))
            })?;
            let Some(item) = item else { break };
            let Some(raw) = item else { continue };
            let level = if levels == 1 {
                0
            } else {
                usize::from(Priority::from_stored(raw.priority).as_u8())
            };
            if cand[level].len() < n {
                cand[level].push(raw);
            }
        }
        let mut out = Vec::with_capacity(n);
        for raw in cand.into_iter().rev().flatten().take(n) {
            let st = state.state_of(raw.id, raw.priority, raw.expires_at_ns, now);
            out.push(self.build(raw, st)?.message);
        }
        Ok(out)
    }

    /// Counters of the queue, from a scan of every retained record.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a damaged record or consumer state file, [`Error::Io`].
    pub fn stats(&self) -> Result<InspectStats> {
        let state = StateView::read(&self.dir)?;
        let segs = self.journal.segments();
        let mut s = InspectStats {
            first_id: self.journal.first_id(),
            watermark: state.watermark,
            priorities: state.priorities(),
            has_consumer_state: state.present,
            segments: segs.len() as u64,
            disk_bytes: segs.iter().map(|s| s.size).sum(),
            ..InspectStats::default()
        };
        let now = now_ns();
        let mut cursor = self.journal.cursor(s.first_id)?;
        let mut oldest: Option<u64> = None;
        let mut oldest_pending: Option<u64> = None;
        let mut newest: Option<u64> = None;
        while let Some((id, ts, prio, st)) = cursor.next(&self.journal, |v| {
            let st = state.state_of(v.id(), v.priority(), v.expires_at_ns(), now);
            (v.id(), v.timestamp_ns(), v.priority(), st)
        })? {
            s.records += 1;
            newest = Some(ts);
            match st {
                MessageState::Pending => s.pending += 1,
                MessageState::Delivered(_) => s.in_flight += 1,
                MessageState::Consumed => s.consumed += 1,
                MessageState::DeadLettering => s.dead_lettering += 1,
                MessageState::Expired => s.expired += 1,
            }
            if st.is_deliverable() {
                s.deliverable_by_priority[usize::from(Priority::from_stored(prio).as_u8())] += 1;
                oldest = Some(oldest.map_or(ts, |o| o.min(ts)));
            }
            if st == MessageState::Pending {
                oldest_pending = Some(oldest_pending.map_or(ts, |o| o.min(ts)));
            }
            s.next_id = id + 1;
        }
        s.next_id = cursor.position_id().max(s.next_id).max(s.first_id);
        s.oldest_deliverable = oldest.map(ns_to_time);
        s.oldest_pending = oldest_pending.map(ns_to_time);
        s.newest = newest.map(ns_to_time);
        let dlq = self.dir.join(DEAD_LETTER_DIR);
        if is_queue_dir(&dlq).unwrap_or(false) {
            let d = Inspector::open(&dlq)?.stats()?;
            s.dead_letters = d.pending + d.in_flight;
        }
        Ok(s)
    }

    fn build(&self, raw: Raw, state: MessageState) -> Result<Record> {
        let stored_len = raw.payload.len();
        let payload = if raw.compression == 0 {
            raw.payload
        } else {
            crate::compress::decompress(raw.compression, &raw.payload, MAX_DECOMPRESSED)
                .map_err(|e| Error::Corrupt {
                    path: self.dir.join(format!("{:020}.seg", raw.segment)),
                    offset: u64::from(raw.offset),
                    reason: format!("message {}: {e}", raw.id),
                })?
                .into_owned()
        };
        let delivery_count = match state {
            MessageState::Delivered(k) => k.saturating_add(1),
            _ => 1,
        };
        Ok(Record {
            message: Message {
                id: raw.id,
                payload,
                timestamp: ns_to_time(raw.timestamp_ns),
                delivery_count,
                priority: Priority::from_stored(raw.priority),
                expires_at: (raw.expires_at_ns != 0).then(|| ns_to_time(raw.expires_at_ns)),
                headers: raw.headers,
            },
            state,
            dedup_key: raw
                .dedup_key
                .as_deref()
                .map(|d| d.get(8..).unwrap_or(&[]).to_vec()),
            dedup_window: raw.dedup_key.as_deref().and_then(|d| {
                let w = d.get(..8)?;
                Some(Duration::from_nanos(u64::from_le_bytes(w.try_into().ok()?)))
            }),
            compression: raw.compression,
            stored_len,
        })
    }
}

/// The records of a queue in ID order, from [`Inspector::records`].
#[derive(Debug)]
pub struct Records<'a> {
    insp: &'a Inspector,
    cursor: Cursor,
    state: StateView,
    failed: bool,
}

impl Records<'_> {
    /// The ID of the next record this iterator can return (at least).
    pub fn position_id(&self) -> u64 {
        self.cursor.position_id()
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        let now = now_ns();
        let state = &self.state;
        match self.cursor.next(&self.insp.journal, |v| {
            let st = state.state_of(v.id(), v.priority(), v.expires_at_ns(), now);
            (Raw::of(v), st)
        }) {
            Ok(Some((raw, st))) => Some(self.insp.build(raw, st)),
            Ok(None) => {
                // At the end: the next call may find new records, with a newer state.
                match StateView::read(&self.insp.dir) {
                    Ok(s) => self.state = s,
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
                None
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e.into()))
            }
        }
    }
}

fn ns_to_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The acknowledgement mode the queue in `dir` was last opened in, as its consumer
/// state file records it; `None` if nothing is recorded (no consumer state file, one
/// not yet initialised, or one written before the mode was recorded).
///
/// A program that opens a queue it does not own the configuration of (a tool that
/// enqueues or compacts) can open it in this mode: a queue last opened with
/// [`AckMode::Manual`] may hold acknowledgements made out of order, and then refuses
/// an [`AckMode::Auto`] open (see [`Options::ack_mode`](crate::Options::ack_mode)).
///
/// Reads the first bytes of the state file only: no segment is opened, nothing is
/// created or written, and it works while another process owns the queue (the mode
/// that process opened it in). A missing `dir` is not an error (`None`).
///
/// # Errors
///
/// [`Error::Corrupt`] if the state file is not a LedgerQ consumer state file;
/// [`Error::Io`] if it cannot be read.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), ledgerq::Error> {
/// use ledgerq::inspect::recorded_ack_mode;
/// use ledgerq::{AckMode, Options, Queue};
///
/// let dir = tempfile::tempdir().unwrap();
/// assert_eq!(recorded_ack_mode(dir.path())?, None);
/// Queue::open_with(dir.path(), Options::new().ack_mode(AckMode::Manual))?.close()?;
/// assert_eq!(recorded_ack_mode(dir.path())?, Some(AckMode::Manual));
/// # Ok(())
/// # }
/// ```
pub fn recorded_ack_mode(dir: impl AsRef<Path>) -> Result<Option<AckMode>> {
    use std::io::Read;
    let path = dir.as_ref().join(STATE_FILE);
    let f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open consumer state file", path, e)),
    };
    let mut head = Vec::with_capacity(32);
    f.take(32)
        .read_to_end(&mut head)
        .map_err(|e| io_err("read consumer state file", &path, e))?;
    if head.is_empty() {
        // Created by an open that stopped before writing it: nothing recorded.
        return Ok(None);
    }
    if head.len() < 32 || head[..8] != STATE_MAGIC {
        return Err(Error::Corrupt {
            path,
            offset: 0,
            reason: "not a LedgerQ consumer state file (bad magic or too short)".into(),
        });
    }
    let flags = u64::from_le_bytes(head[24..32].try_into().expect("8 bytes"));
    if flags & FLAG_MODE_KNOWN == 0 {
        // Written before the mode was recorded.
        return Ok(None);
    }
    Ok(Some(if flags & FLAG_MANUAL != 0 {
        AckMode::Manual
    } else {
        AckMode::Auto
    }))
}

/// Whether `dir` holds a segment file or a consumer state file.
fn is_queue_dir(dir: &Path) -> Result<bool> {
    if dir.join(STATE_FILE).is_file() {
        return Ok(true);
    }
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("read queue directory", dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| io_err("read queue directory", dir, e))?;
        if ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.len() == 24 && n.ends_with(".seg"))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AckMode, EnqueueOptions, Options, Queue};

    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn missing_or_foreign_directory_is_an_error_and_creates_nothing() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("missing");
        let e = Inspector::open(&missing).unwrap_err();
        assert!(matches!(&e, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound));
        assert!(!missing.exists());
        let e = Inspector::open(t.path()).unwrap_err();
        assert!(matches!(e, Error::NotAQueue { .. }), "{e}");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
        let f = t.path().join("file");
        fs::write(&f, b"x").unwrap();
        assert!(matches!(
            Inspector::open(&f),
            Err(Error::NotADirectory { .. })
        ));
    }

    #[test]
    fn manual_mode_states_and_peek_skip_acked() {
        let t = tempfile::tempdir().unwrap();
        let q = Queue::open_with(t.path(), Options::new().ack_mode(AckMode::Manual)).unwrap();
        q.enqueue_batch(["a", "b", "c", "d"]).unwrap();
        q.enqueue_with("gone", &EnqueueOptions::new().ttl(Duration::from_millis(1)))
            .unwrap();
        q.enqueue_with(
            "e",
            &EnqueueOptions::new()
                .header("k", "v")
                .dedup_key("key-e")
                .compression(crate::Compression::Lz4),
        )
        .unwrap();
        let a = q.dequeue().unwrap().unwrap();
        let b = q.dequeue().unwrap().unwrap();
        q.ack(b.id()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Read while owned, then again after the owner closed: nothing is written.
        let owned = Inspector::open(t.path()).unwrap().peek(10).unwrap();
        q.close().unwrap();
        drop(q);
        let before = snapshot(t.path());
        let i = Inspector::open(t.path()).unwrap();
        assert_eq!(i.peek(10).unwrap(), owned);
        let peeked: Vec<(u64, Vec<u8>, u32)> = i
            .peek(10)
            .unwrap()
            .into_iter()
            .map(|m| (m.id(), m.payload().to_vec(), m.delivery_count()))
            .collect();
        assert_eq!(
            peeked,
            [
                (1, b"a".to_vec(), 2),
                (3, b"c".to_vec(), 1),
                (4, b"d".to_vec(), 1),
                (6, b"e".to_vec(), 1)
            ]
        );
        assert_eq!(i.peek(2).unwrap().len(), 2);
        let recs: Vec<Record> = i.records(1).unwrap().map(|r| r.unwrap()).collect();
        let states: Vec<MessageState> = recs.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            [
                MessageState::Delivered(1),
                MessageState::Consumed,
                MessageState::Pending,
                MessageState::Pending,
                MessageState::Expired,
                MessageState::Pending
            ]
        );
        let e = &recs[5];
        assert_eq!(e.message.header("k"), Some("v"));
        assert_eq!(e.dedup_key.as_deref(), Some(&b"key-e"[..]));
        let s = i.stats().unwrap();
        assert_eq!(
            (s.records, s.pending, s.in_flight, s.consumed, s.expired),
            (6, 3, 1, 1, 1)
        );
        assert_eq!((s.first_id, s.next_id, s.watermark), (1, 7, 1));
        assert!(snapshot(t.path()) == before, "inspection writes nothing");
        assert_eq!(a.id(), 1);
    }

    #[test]
    fn priority_queue_peek_orders_by_level_then_id() {
        let t = tempfile::tempdir().unwrap();
        let q = Queue::open_with(t.path(), Options::new().priorities(true)).unwrap();
        let p = |p| EnqueueOptions::new().priority(p);
        q.enqueue_with("low1", &p(Priority::Low)).unwrap();
        q.enqueue_with("high1", &p(Priority::High)).unwrap();
        q.enqueue_with("med1", &p(Priority::Medium)).unwrap();
        q.enqueue_with("high2", &p(Priority::High)).unwrap();
        q.enqueue_with("low2", &p(Priority::Low)).unwrap();
        let expected: Vec<Vec<u8>> = q
            .peek(5)
            .unwrap()
            .into_iter()
            .map(Message::into_payload)
            .collect();
        let i = Inspector::open(t.path()).unwrap();
        let got: Vec<Vec<u8>> = i
            .peek(5)
            .unwrap()
            .into_iter()
            .map(Message::into_payload)
            .collect();
        assert_eq!(got, expected);
        assert_eq!(got[0], b"high1");
        assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"high1");
        let got: Vec<Vec<u8>> = i
            .peek(2)
            .unwrap()
            .into_iter()
            .map(Message::into_payload)
            .collect();
        assert_eq!(got, [b"high2".to_vec(), b"med1".to_vec()]);
        let s = i.stats().unwrap();
        assert!(s.priorities);
        assert_eq!(s.deliverable_by_priority, [2, 1, 1]);
    }

    #[test]
    fn recorded_ack_mode_is_the_last_opens() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert_eq!(recorded_ack_mode(d.join("missing")).unwrap(), None);
        assert_eq!(recorded_ack_mode(d).unwrap(), None);
        let manual = || Options::new().ack_mode(AckMode::Manual);
        let q = Queue::open_with(d, manual()).unwrap();
        q.enqueue_batch(["a", "b"]).unwrap();
        // Read while the owner runs, and after it closed; nothing is written.
        assert_eq!(recorded_ack_mode(d).unwrap(), Some(AckMode::Manual));
        q.close().unwrap();
        drop(q);
        let before = snapshot(d);
        let i = Inspector::open(d).unwrap();
        assert_eq!(i.ack_mode().unwrap(), Some(AckMode::Manual));
        assert!(snapshot(d) == before, "reading the mode writes nothing");
        Queue::open(d).unwrap().close().unwrap();
        assert_eq!(i.ack_mode().unwrap(), Some(AckMode::Auto));
        // A state file from before the mode was recorded.
        let path = d.join(STATE_FILE);
        let mut b = fs::read(&path).unwrap();
        b[24..32].copy_from_slice(&0u64.to_le_bytes());
        fs::write(&path, &b).unwrap();
        assert_eq!(i.ack_mode().unwrap(), None);
        // One an open created and never initialised, and one that is not a state file.
        fs::write(&path, b"").unwrap();
        assert_eq!(i.ack_mode().unwrap(), None);
        fs::write(&path, b"not a state file at all, not at all").unwrap();
        assert!(matches!(i.ack_mode(), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn oldest_pending_leaves_out_messages_in_flight() {
        let t = tempfile::tempdir().unwrap();
        let q = Queue::open_with(t.path(), Options::new().ack_mode(AckMode::Manual)).unwrap();
        q.enqueue("first").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        q.enqueue("second").unwrap();
        let first = q.dequeue().unwrap().unwrap();
        q.close().unwrap();
        drop(q);
        let i = Inspector::open(t.path()).unwrap();
        let s = i.stats().unwrap();
        assert_eq!((s.pending, s.in_flight), (1, 1));
        let second = i.peek(2).unwrap()[1].timestamp();
        assert_eq!(s.oldest_deliverable, Some(first.timestamp()));
        assert_eq!(s.oldest_pending, Some(second));
        assert!(s.oldest_pending > s.oldest_deliverable);
    }

    #[test]
    fn records_follow_appends() {
        let t = tempfile::tempdir().unwrap();
        let q = Queue::open(t.path()).unwrap();
        q.enqueue("one").unwrap();
        let i = Inspector::open(t.path()).unwrap();
        let mut r = i.records(0).unwrap();
        assert_eq!(r.next().unwrap().unwrap().message.payload(), b"one");
        assert!(r.next().is_none());
        q.enqueue("two").unwrap();
        assert_eq!(r.next().unwrap().unwrap().message.payload(), b"two");
        assert_eq!(r.position_id(), 3);
    }
}
