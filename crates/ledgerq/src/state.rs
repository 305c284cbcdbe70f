//! The consumer state file, `consumer.default.state`: the cursor and the per-message
//! delivery and acknowledgement state, memory-mapped so that dequeue and ack cost no
//! syscall. It is flushed with the data, and a write to it survives the process being
//! killed (the page cache keeps it).
//!
//! Byte map (little-endian):
//!
//! ```text
//!    0..8     magic b"LQSTATE\x01"
//!    8..12    format version (u32) = 1
//!   12..16    window bits (u32) = WINDOW_BITS
//!   16..24    watermark W (u64, atomic): every ID below W is consumed (auto mode)
//!             or acknowledged (manual mode)
//!   24..32    queue flags (u64): bit 0 = priority delivery (recorded at creation),
//!             bit 1 = the ack mode is recorded (files written before lack it),
//!             bit 2 = the last open was in manual-ack mode
//!   32..40    the longest dedup window used, in ns (u64, only ever raised): how far
//!             back the dedup table is rebuilt from the journal at open
//!   40..48    messages consumed over the queue's life (u64; priority auto-ack mode,
//!             for `Stats::pending`)
//!   48..72    per-level watermarks (3 x u64, Low, Medium, High; priority auto-ack
//!             mode): every message of level l below W[l] is consumed
//!   72..4096  reserved, zero
//! 4096..      entries, [u64; 1 << WINDOW_BITS]; the entry of message `id` is at index
//!             `id & (WINDOW - 1)`. 0 = nothing recorded; otherwise
//!             `(lap + 1) << 8 | state` with `lap = id >> WINDOW_BITS` and state
//!             `0xFF` = acknowledged (or consumed), `0xFE` = being moved to the
//!             dead-letter queue, `1..=253` = delivered that many times.
//! ```
//!
//! Entries are never cleared: an entry left by an earlier lap carries that lap's number
//! and so reads as "nothing recorded" for the message that now owns the index. This is
//! what makes the file crash-safe without any ordering between the watermark and the
//! entries: the watermark only ever moves over acknowledged entries, and a stale entry
//! can never be mistaken for a newer message. The window bounds how far delivery may run
//! ahead of the oldest unacknowledged message (see `Queue::dequeue`).
//!
//! The file is owned exclusively by the process holding the queue's LOCK file; nothing
//! else writes, truncates or resizes it while it is mapped, which is what keeps the
//! atomic views into the mapping sound.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

use crate::error::{io_err, Error, Result};

/// log2 of the number of entries: 131,072 messages of window, a 1 MiB file.
pub(crate) const WINDOW_BITS: u32 = 17;
/// The number of entries.
pub(crate) const WINDOW: u64 = 1 << WINDOW_BITS;
const HEADER: usize = 4096;
const MAGIC: [u8; 8] = *b"LQSTATE\x01";
const VERSION: u32 = 1;
const ACKED: u64 = 0xFF;
const DEAD_LETTERING: u64 = 0xFE;
/// The most deliveries an entry counts.
pub(crate) const MAX_COUNT: u32 = 253;
/// Flag bit: the queue delivers by priority.
pub(crate) const FLAG_PRIORITIES: u64 = 1;
/// Flag bit: the ack mode of the last open is recorded (in [`FLAG_MANUAL`]); files
/// written before it was recorded do not have it.
pub(crate) const FLAG_MODE_KNOWN: u64 = 1 << 1;
/// Flag bit: the last open was in manual-ack mode.
pub(crate) const FLAG_MANUAL: u64 = 1 << 2;
/// The largest plausible watermark: a queue assigning a billion IDs a second would take
/// 146 years to reach 2^62. A larger value is a damaged file, and accepting it would make
/// IDs wrap.
pub(crate) const MAX_WATERMARK: u64 = 1 << 62;
/// The name of the default consumer group's state file.
pub(crate) const FILE_NAME: &str = "consumer.default.state";

/// Reads the watermark of the state file in `dir` without mapping it (before the queue's
/// lock is taken); 0 if the file is missing or unreadable. The file stays open (for
/// reading and writing) for [`StateFile::open`] to map: one `open` at each queue open.
pub(crate) fn peek_watermark(dir: &Path) -> (u64, Option<File>) {
    use std::io::Read;
    let mut head = [0u8; 24];
    let Ok(mut f) = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(FILE_NAME))
    else {
        return (0, None);
    };
    match f.read_exact(&mut head) {
        Ok(()) if head[..8] == MAGIC => (
            u64::from_le_bytes(head[16..24].try_into().expect("8 bytes")),
            Some(f),
        ),
        _ => (0, Some(f)),
    }
}

/// What the state file records for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Never delivered (or delivered only in an earlier lap of the window).
    Fresh,
    /// Delivered this many times, not acknowledged.
    Delivered(u32),
    /// Acknowledged (or a hole that will never hold a message).
    Acked,
    /// Being moved to the dead-letter queue (a crash may have interrupted the move).
    DeadLettering,
}

/// A memory-mapped consumer state file.
pub(crate) struct StateFile {
    fresh: bool,
    path: PathBuf,
    map: MmapMut,
    _file: File,
}

impl StateFile {
    /// Opens the state file in `dir`, creating it (and fsyncing the directory) if missing;
    /// `opened` is the file if [`peek_watermark`] found and opened it.
    pub(crate) fn open(dir: &Path, opened: Option<File>) -> Result<StateFile> {
        let path = dir.join(FILE_NAME);
        let len = HEADER + 8 * (WINDOW as usize);
        let file = match opened {
            Some(f) => f,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_err("open consumer state file", &path, e))?,
        };
        let size = file
            .metadata()
            .map_err(|e| io_err("stat consumer state file", &path, e))?
            .len();
        // Created by this open, or created by one that stopped before sizing it.
        let fresh = size == 0;
        if fresh {
            let mut header = [0u8; 16];
            header[..8].copy_from_slice(&MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_le_bytes());
            header[12..16].copy_from_slice(&WINDOW_BITS.to_le_bytes());
            file.set_len(len as u64)
                .map_err(|e| io_err("size consumer state file", &path, e))?;
            use std::os::unix::fs::FileExt;
            file.write_all_at(&header, 0)
                .map_err(|e| io_err("write consumer state file", &path, e))?;
            file.sync_all()
                .map_err(|e| io_err("sync consumer state file", &path, e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("sync queue directory", dir, e))?;
        } else if size != len as u64 {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                reason: format!("consumer state file is {size} bytes, expected {len}"),
            });
        }
        // SAFETY: the file is owned exclusively by this queue (the caller holds the queue's
        // LOCK file), has the full length `len` (checked or set just above), and is never
        // truncated while mapped.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|e| io_err("map consumer state file", &path, e))?;
        let state = StateFile {
            fresh,
            path,
            map,
            _file: file,
        };
        if state.map[..8] != MAGIC {
            return Err(state.corrupt(0, "bad magic: not a LedgerQ consumer state file"));
        }
        let version = u32::from_le_bytes(state.map[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(state.corrupt(8, &format!("unsupported format version {version}")));
        }
        let bits = u32::from_le_bytes(state.map[12..16].try_into().expect("4 bytes"));
        if bits != WINDOW_BITS {
            return Err(state.corrupt(12, &format!("unsupported window of {bits} bits")));
        }
        Ok(state)
    }

    fn corrupt(&self, offset: u64, reason: &str) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            offset,
            reason: reason.to_string(),
        }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= self.map.len());
        // SAFETY: [1] the mapping is page-aligned and `offset` is a multiple of 8 within
        // it, so the pointer is aligned and in bounds for a u64; [2] the mapping lives as
        // long as `self`, which bounds the returned reference; [3] every access to these
        // bytes goes through atomics (no `&mut` to the mapping is ever formed after open).
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(offset) as *mut u64) }
    }

    /// The watermark: every ID below it is consumed or acknowledged.
    pub(crate) fn watermark(&self) -> &AtomicU64 {
        self.word(16)
    }

    fn entry_word(&self, id: u64) -> &AtomicU64 {
        let index = usize::try_from(id & (WINDOW - 1)).expect("index below WINDOW");
        self.word(HEADER + 8 * index)
    }

    fn tag(id: u64) -> u64 {
        ((id >> WINDOW_BITS) + 1) << 8
    }

    /// What is recorded for `id`.
    pub(crate) fn entry(&self, id: u64) -> Entry {
        // Acquire pairs with the SeqCst stores in `set_delivered` and `set_acked`.
        let v = self.entry_word(id).load(Ordering::Acquire);
        if v & !0xFF != Self::tag(id) {
            return Entry::Fresh;
        }
        match v & 0xFF {
            ACKED => Entry::Acked,
            DEAD_LETTERING => Entry::DeadLettering,
            0 => Entry::Fresh,
            n => Entry::Delivered(n as u32),
        }
    }

    /// Records that `id` has been delivered `n` times (saturating at [`MAX_COUNT`]).
    pub(crate) fn set_delivered(&self, id: u64, n: u32) {
        let n = u64::from(n.min(MAX_COUNT));
        // SeqCst so that an ack racing with the watermark's advance sees it (Dekker with
        // the SeqCst CAS in `advance`).
        self.entry_word(id)
            .store(Self::tag(id) | n, Ordering::SeqCst);
    }

    /// Records that `id` is acknowledged (or is a hole that never holds a message).
    pub(crate) fn set_acked(&self, id: u64) {
        // SeqCst: pairs with the SeqCst CAS and load in `advance` (Dekker: either this
        // thread's `advance` sees the moved watermark, or the mover sees this entry).
        self.entry_word(id)
            .store(Self::tag(id) | ACKED, Ordering::SeqCst);
    }

    /// Records that `id` is acknowledged; `false` if it already was (so a caller can
    /// count each ID once).
    pub(crate) fn mark_acked(&self, id: u64) -> bool {
        let acked = Self::tag(id) | ACKED;
        // SeqCst: as `set_acked`.
        self.entry_word(id).swap(acked, Ordering::SeqCst) != acked
    }

    /// Records that `id` is being moved to the dead-letter queue.
    pub(crate) fn set_dead_lettering(&self, id: u64) {
        // SeqCst: as `set_delivered`.
        self.entry_word(id)
            .store(Self::tag(id) | DEAD_LETTERING, Ordering::SeqCst);
    }

    /// Forgets what was recorded for `id` (a seek back makes it deliverable again).
    pub(crate) fn clear(&self, id: u64) {
        // SeqCst: as `set_delivered`.
        self.entry_word(id).store(0, Ordering::SeqCst);
    }

    /// Moves the watermark over acknowledged entries, stopping at `limit`; returns
    /// the new watermark and how many entries this call moved it over.
    pub(crate) fn advance_counted(&self, limit: u64) -> (u64, u64) {
        let w = self.watermark();
        let mut cur = w.load(Ordering::SeqCst);
        let mut moved = 0;
        while cur < limit && self.entry(cur) == Entry::Acked {
            // SeqCst: see `set_acked`.
            match w.compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    cur += 1;
                    moved += 1;
                }
                Err(actual) => cur = actual,
            }
        }
        (cur, moved)
    }

    /// The queue flags recorded at creation.
    pub(crate) fn flags(&self) -> u64 {
        self.word(24).load(Ordering::Acquire)
    }

    /// Records the queue flags (at creation).
    pub(crate) fn set_flags(&self, flags: u64) {
        // Release: pairs with the Acquire in `flags` (only ever read by the owner).
        self.word(24).store(flags, Ordering::Release);
    }

    /// The longest dedup window used, in ns.
    pub(crate) fn dedup_horizon_ns(&self) -> u64 {
        self.word(32).load(Ordering::Relaxed)
    }

    /// Raises the longest dedup window used to at least `ns`.
    pub(crate) fn raise_dedup_horizon(&self, ns: u64) {
        if self.word(32).load(Ordering::Relaxed) < ns {
            self.word(32).fetch_max(ns, Ordering::Relaxed);
        }
    }

    /// Messages consumed over the queue's life (priority auto-ack mode).
    pub(crate) fn consumed(&self) -> &AtomicU64 {
        self.word(40)
    }

    /// The per-level watermarks (priority auto-ack mode).
    pub(crate) fn level_marks(&self) -> [u64; 3] {
        [0, 1, 2].map(|l| self.word(48 + 8 * l).load(Ordering::Acquire))
    }

    /// Stores the per-level watermarks (priority auto-ack mode, under the scheduler's
    /// mutex).
    pub(crate) fn set_level_marks(&self, marks: [u64; 3]) {
        for (l, m) in marks.into_iter().enumerate() {
            // Release: pairs with the Acquire in `level_marks`.
            self.word(48 + 8 * l).store(m, Ordering::Release);
        }
    }

    /// Whether the file was created by this open.
    pub(crate) fn is_new(&self) -> bool {
        self.fresh
    }

    /// Raises the watermark to at least `to` (auto mode: a dequeue consumed `to - 1`).
    pub(crate) fn raise(&self, to: u64) {
        // Release: pairs with the Acquire load before compaction, which must see every
        // read section entered before the claims this raise covers (see grace.rs).
        self.watermark().fetch_max(to, Ordering::Release);
    }

    /// Sets the watermark (seek, or clamping at open).
    pub(crate) fn set_watermark(&self, to: u64) {
        // A swap rather than a store: it is ordered with the consumers' raises as their
        // read-modify-writes are with each other (the seek's loom model relies on it).
        self.watermark().swap(to, Ordering::SeqCst);
    }

    /// Writes the state to stable storage.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }
}
