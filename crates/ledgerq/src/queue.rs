//! [`Queue`]: the journal, the dispatch ring and the consumer state joined together.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ledgerq_journal::{
    Cursor, Journal, JournalOptions, Position, RecordIn, RecordView, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};

use crate::dispatch::Dispatch;
use crate::enqueue::{EnqueueOptions, Enqueued, Priority};
use crate::error::{io_err, Error, Result};
use crate::grace::Grace;
use crate::message::Message;
use crate::observe;
use crate::options::{AckMode, Options, OverflowPolicy};
use crate::priority::{Sched, Sink};
use crate::state::{Entry, StateFile, FLAG_MANUAL, FLAG_MODE_KNOWN, FLAG_PRIORITIES, WINDOW};
use crate::stats::Stats;

/// Lease shards: manual-mode leases are spread over this many mutexes.
const SHARDS: usize = 16;
/// How long a blocking dequeue polls before it parks. Short: a consumer that spins
/// until the next message of a steady stream occupies a core the whole time, and on a
/// machine with few cores the producer and the queue's background threads then wait
/// for it. In the peer harness's latency workload (`cargo run --release -p
/// ledgerq-benches --bin peers -- --only latency`: 20,000 msg/s, one message every
/// 50 µs; two cores) a 50 µs spin gave a median of 1.3 µs but p99 from 0.4 to 2.3 ms
/// over three runs; 20 µs, which parks between those messages, a median of 24 µs (the
/// wake-up) and p99 from 74 to 95 µs.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(20);
/// How long a message whose interrupted move to the dead-letter queue cannot be
/// finished (the dead-letter queue cannot be opened) waits before the next attempt.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// An embedded, durable, multi-producer multi-consumer queue: a directory is a queue.
///
/// `Queue` is `Send + Sync`: share it between threads by `&Queue` or `Arc<Queue>`.
/// Producers append straight into the memory-mapped journal; consumers take messages in
/// ID order from a bounded ring that a feeder refills from the journal.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), ledgerq::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let q = ledgerq::Queue::open(dir.path())?;
/// let id = q.enqueue(b"hello")?;
/// let m = q.dequeue()?.expect("a message is ready");
/// assert_eq!((m.id(), m.payload()), (id, &b"hello"[..]));
/// q.close()?;
/// # Ok(())
/// # }
/// ```
pub struct Queue {
    pub(crate) inner: Arc<Inner>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    /// The `queue` label of this queue's metrics (the directory), made once: cloning it
    /// is a reference count, not an allocation.
    #[cfg(feature = "metrics")]
    pub(crate) metrics_label: metrics::SharedString,
    pub(crate) opts: Options,
    pub(crate) journal: Journal,
    dispatch: Dispatch<FeedSource, Position>,
    pub(crate) state: StateFile,
    /// Priority delivery (recorded in the state file at creation): the scheduler that
    /// replaces the ring.
    pub(crate) sched: Option<Mutex<Sched>>,
    /// Manual mode: messages delivered and not yet acknowledged.
    leases: Vec<Mutex<HashMap<u64, Lease>>>,
    in_flight: AtomicUsize,
    /// Manual mode: messages to deliver again (nacked or lease expired), before new ones.
    redeliver: Mutex<VecDeque<Position>>,
    redeliver_len: AtomicUsize,
    /// Manual mode: failed messages waiting out a redelivery backoff, by due time.
    delayed: Mutex<BinaryHeap<Reverse<Delayed>>>,
    delayed_len: AtomicUsize,
    /// The first ID the feeder has not yet moved into the ring.
    fed: AtomicU64,
    /// Manual mode: IDs at or above `fed` already acknowledged (found at open), which
    /// the feeder will skip; subtracted from `pending`.
    pub(crate) acked_ahead: AtomicU64,
    /// Priority mode: entries at or above the watermark marked consumed.
    acked_above: AtomicI64,
    /// After the oldest segment was dropped: below this ID, a delivered (leased or
    /// requeued) message is not fed again.
    refeed_until: AtomicU64,
    pub(crate) closed: AtomicBool,
    /// Read sections of consumers, waited for before compaction removes segments.
    pub(crate) grace: Grace,
    park: Park,
    /// The error of a failed consumer-state flush, latched for good: checked by every
    /// write with one atomic load.
    latched: OnceLock<Arc<io::Error>>,
    /// A batch dequeue that skipped an undecodable record but had messages to return
    /// keeps the record's error here for the next batch dequeue (flag: one load).
    deferred_failed: AtomicBool,
    deferred_failure: Mutex<Option<Error>>,
    /// The deduplication table.
    pub(crate) dedup: crate::dedup::DedupTable,
    /// The dead-letter queue, opened when first needed (or at open if it exists).
    pub(crate) dlq: OnceLock<Queue>,
    pub(crate) dlq_init: Mutex<()>,
    /// Held by `requeue_dead_letter` from its check of the dead letter to its removal,
    /// so two calls for one dead letter cannot both move it back.
    pub(crate) dlq_requeue: Mutex<()>,
    /// Counters since open.
    pub(crate) expired: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) dead_letter_failures: AtomicU64,
    /// Missing ranges at the front of the journal skipped at open (Skip mode): 0 or 1.
    front_skipped: u64,
    /// Serialises compaction passes (the maintenance thread, `compact`, overflow).
    pub(crate) compaction: Mutex<()>,
}

struct Lease {
    pos: Position,
    deadline: Instant,
}

/// A message waiting out its redelivery backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delayed {
    due: Instant,
    id: u64,
    segment: u64,
    offset: u32,
}

/// The feeder's own state: where it reads the journal.
pub(crate) struct FeedSource {
    cursor: Cursor,
    /// The ID after the last record fed (to mark holes in manual mode).
    next_expected: u64,
}

/// Parking for blocking consumers: an event count.
struct Park {
    /// Bumped (under `lock`) by every wake-up; a consumer sleeps only if it is unchanged.
    seq: AtomicU64,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    /// Wakes the maintenance thread at close.
    maintenance_cv: Condvar,
    /// Async consumers waiting for a commit.
    wakers: Mutex<Vec<std::task::Waker>>,
}

/// The disk budget in whole segments, if there is one.
fn budget_segments(opts: &Options) -> Option<usize> {
    opts.max_disk_bytes
        .map(|max| usize::try_from(max / opts.segment_size).unwrap_or(usize::MAX))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Queue {
    /// Opens the queue in `dir` with default [`Options`], creating the directory if missing.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another live `Queue` owns the directory,
    /// [`Error::NotADirectory`] if `dir` is a file, [`Error::PermissionDenied`],
    /// [`Error::Corrupt`] if recovery finds damage it cannot pass in the chosen
    /// [`RecoveryMode`](crate::RecoveryMode).
    pub fn open(dir: impl AsRef<Path>) -> Result<Queue> {
        Self::open_with(dir, Options::new())
    }

    /// Opens the queue in `dir` with `opts`, creating the directory if missing.
    ///
    /// # Errors
    ///
    /// As [`open`](Queue::open), plus [`Error::InvalidOptions`].
    pub fn open_with(dir: impl AsRef<Path>, opts: Options) -> Result<Queue> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        match fs::metadata(&dir) {
            Ok(m) if !m.is_dir() => return Err(Error::NotADirectory { path: dir }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Its entry (and those of parents made with it) durable before anything
                // in it is.
                ledgerq_journal::create_dir_durable(&dir, |d| {
                    ledgerq_journal::Storage::sync_dir(&ledgerq_journal::FileStorage, d)
                })
                .map_err(|e| io_err("create queue directory", &dir, e))?;
            }
            Err(e) => return Err(io_err("read queue directory", &dir, e)),
        }
        // IDs the consumer state already counts as consumed must never be assigned again,
        // even if the journal's tail was lost (power loss in buffered mode).
        let (consumed_below, state_file) = crate::state::peek_watermark(&dir);
        if consumed_below > crate::state::MAX_WATERMARK {
            return Err(Error::Corrupt {
                path: dir.join(crate::state::FILE_NAME),
                offset: 16,
                reason: format!(
                    "consumed watermark {consumed_below} is beyond any ID a queue can have \
                     assigned"
                ),
            });
        }
        let mut jopts = JournalOptions::new()
            .min_next_id(consumed_below)
            .segment_size(opts.segment_size)
            .durability(opts.durability)
            .flush_interval(opts.flush_interval)
            .max_record_size(opts.get_max_message_size())
            .recovery_mode(opts.recovery_mode);
        if let Some(n) = budget_segments(&opts) {
            jopts = jopts.max_segments(n);
        }
        let journal = Journal::open(&dir, jopts)?;
        let state = StateFile::open(&dir, state_file)?;
        if state.is_new() {
            state.set_flags(if opts.priorities { FLAG_PRIORITIES } else { 0 });
        }
        // Fixed at creation: the recorded setting wins over the options.
        let priorities = state.flags() & FLAG_PRIORITIES != 0;
        let first = journal.first_id();
        let end = journal.next_id();
        // Every ID at or above the watermark is still to be consumed, and segments are
        // removed only once wholly below it (compaction, retention and `DropOldest` move
        // it first and make it durable before they remove anything). A first segment
        // that starts above it means segment files holding unconsumed messages are
        // missing. (A state file created by this open knows nothing.)
        let recorded = state.watermark().load(Ordering::SeqCst);
        let mut front_skipped = 0;
        if !state.is_new() && recorded.max(1) < first {
            let from = recorded.max(1);
            if opts.recovery_mode == crate::RecoveryMode::Strict {
                return Err(Error::Corrupt {
                    path: dir,
                    offset: 0,
                    reason: format!(
                        "IDs {from}..{first} are missing: they were not consumed (the consumed \
                         watermark is {recorded}), but the first segment file starts at ID \
                         {first} (the segment files that held them are missing)"
                    ),
                });
            }
            observe::event!(warn, dir = %dir.display(), from, to = first,
                "segment files holding unconsumed messages are missing; skipped");
            front_skipped = 1;
        }
        // `min_next_id` keeps `end` at or above the watermark; the clamp only matters if
        // the state file changed between the peek and the lock.
        let mut w = recorded.max(first).min(end);
        let flags = state.flags();
        if !state.is_new() && (flags & FLAG_MODE_KNOWN == 0 || flags & FLAG_MANUAL != 0) {
            // After a manual-ack session the watermark may stand on messages it settled
            // without feeding them (moved to the dead-letter queue by its open): nothing
            // is fed yet, so it moves over them now.
            state.set_watermark(w);
            w = state.advance_counted(end).0;
        }
        if crate::dead_letter::settle_interrupted_moves(
            &state,
            &dir,
            opts.ack_mode == AckMode::Manual,
            w,
            end,
        )? {
            // A move settled at the watermark lets it go on over what follows it
            // acknowledged.
            state.set_watermark(w);
            w = state.advance_counted(end).0;
        }
        let was_manual = if state.is_new() {
            None
        } else {
            check_ack_mode_change(&state, &journal, &opts, priorities, w, end, &dir)?
        };
        let mode = if opts.ack_mode == AckMode::Manual {
            FLAG_MODE_KNOWN | FLAG_MANUAL
        } else {
            FLAG_MODE_KNOWN
        };
        state.set_flags((state.flags() & !FLAG_MANUAL) | mode);
        state.set_watermark(w);
        // Manual-ack mode: messages whose move to the dead-letter queue is due (its
        // dead letter was not written before a crash, or a lease lost to a crash was
        // the last delivery allowed) are moved once the queue is up, so that at open
        // every message is either deliverable or in the dead-letter queue.
        let manual = opts.ack_mode == AckMode::Manual;
        let max = opts.max_deliveries;
        let mut due = Vec::new();
        let mut acked_in_window = 0u64;
        if manual || priorities {
            for id in w..end.min(w + WINDOW) {
                match state.entry(id) {
                    Entry::Acked => acked_in_window += 1,
                    Entry::DeadLettering if manual => due.push((id, None)),
                    Entry::Delivered(n) if manual && max > 0 && n >= max => {
                        due.push((id, Some(n)));
                    }
                    _ => {}
                }
            }
        }
        let acked_ahead = if priorities { 0 } else { acked_in_window };
        // Priority auto-ack mode counts consumption in a lifetime counter, which
        // manual-ack mode does not keep: after a manual-ack session it is what the
        // watermark and the acknowledgements above it say.
        if priorities && opts.ack_mode == AckMode::Auto && was_manual == Some(true) {
            state
                .consumed()
                .store(w.saturating_sub(1) + acked_in_window, Ordering::Relaxed);
        }
        let cursor = journal.cursor(w)?;
        let sched = if priorities {
            // After a manual-ack session every level starts at the watermark: what that
            // session consumed is in the per-ID entries (which the scheduler reads), and
            // the per-level watermarks are from before it (a seek in it did not move
            // them).
            let starts = if opts.ack_mode == AckMode::Manual || was_manual == Some(true) {
                [w; 3]
            } else {
                state.level_marks().map(|m| m.max(w).min(end))
            };
            Some(Mutex::new(Sched::new(
                &journal,
                starts,
                opts.ring_capacity,
            )?))
        } else {
            None
        };
        let dedup = crate::dedup::DedupTable::new(opts.max_dedup_entries);
        let inner = Arc::new(Inner {
            sched,
            delayed: Mutex::new(BinaryHeap::new()),
            delayed_len: AtomicUsize::new(0),
            refeed_until: AtomicU64::new(0),
            acked_above: AtomicI64::new(i64::try_from(acked_in_window).unwrap_or(i64::MAX)),
            dedup,
            dlq: OnceLock::new(),
            dlq_init: Mutex::new(()),
            dlq_requeue: Mutex::new(()),
            expired: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dead_letter_failures: AtomicU64::new(0),
            front_skipped,
            compaction: Mutex::new(()),
            dispatch: Dispatch::new(
                opts.ring_capacity,
                FeedSource {
                    cursor,
                    next_expected: w,
                },
            ),
            leases: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            in_flight: AtomicUsize::new(0),
            redeliver: Mutex::new(VecDeque::new()),
            redeliver_len: AtomicUsize::new(0),
            fed: AtomicU64::new(w),
            acked_ahead: AtomicU64::new(acked_ahead),
            closed: AtomicBool::new(false),
            grace: Grace::new(),
            park: Park {
                seq: AtomicU64::new(0),
                waiters: AtomicUsize::new(0),
                lock: Mutex::new(()),
                cv: Condvar::new(),
                maintenance_cv: Condvar::new(),
                wakers: Mutex::new(Vec::new()),
            },
            latched: OnceLock::new(),
            deferred_failed: AtomicBool::new(false),
            deferred_failure: Mutex::new(None),
            #[cfg(feature = "metrics")]
            metrics_label: std::sync::Arc::<str>::from(dir.display().to_string()).into(),
            dir,
            opts,
            journal,
            state,
        });
        inner.rebuild_dedup()?;
        observe::event!(info, dir = %inner.dir.display(), next_id = end, first_id = first,
            watermark = w, priorities, "queue opened");
        if inner.dir.join(crate::dead_letter::DIR_NAME).is_dir() {
            inner.dead_letter_queue()?;
        }
        inner.move_due_dead_letters(&due);
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("ledgerq-maintenance".into())
            .spawn(move || {
                ledgerq_journal::lower_background_priority();
                worker.maintenance()
            })
            .map_err(|e| io_err("start maintenance thread", &inner.dir, e))?;
        Ok(Queue {
            inner,
            maintenance: Mutex::new(Some(handle)),
        })
    }

    /// Appends one message and returns its ID.
    ///
    /// When this returns `Ok`, the message is in the memory-mapped journal and survives the
    /// process being killed; with [`Durability::Sync`](crate::Durability::Sync) it is also
    /// on stable storage. The queue's default [`Compression`](crate::Compression) applies.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`], [`Error::Closed`], [`Error::NoSpace`],
    /// [`Error::QueueFull`], [`Error::Poisoned`] after a failed flush.
    pub fn enqueue(&self, payload: impl AsRef<[u8]>) -> Result<u64> {
        let payload = payload.as_ref();
        let inner = &self.inner;
        if inner.opts.compression != crate::Compression::None {
            return self
                .enqueue_with(payload, &EnqueueOptions::new())
                .map(|e| e.id);
        }
        inner.check_writable()?;
        inner.check_size(payload.len())?;
        let t = observe::sample(observe::Op::Enqueue);
        let id = inner.append(&RecordIn::new(payload))?;
        inner.wake();
        observe::record(inner, observe::Op::Enqueue, t);
        Ok(id)
    }

    /// Appends one message with its own options (priority, TTL, headers, dedup key,
    /// compression).
    ///
    /// With a dedup key already seen within its window nothing is written and the
    /// original message's ID is returned with [`Enqueued::is_duplicate`] `true`.
    /// Compression runs in the calling thread, before anything shared is touched.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Queue::enqueue), plus [`Error::TooManyHeaders`],
    /// [`Error::HeaderKeyTooLarge`], [`Error::HeadersTooLarge`] and
    /// [`Error::InvalidMessage`]; nothing is written on any error.
    pub fn enqueue_with(
        &self,
        payload: impl AsRef<[u8]>,
        opts: &EnqueueOptions,
    ) -> Result<Enqueued> {
        let inner = &self.inner;
        inner.check_writable()?;
        let t = observe::sample(observe::Op::Enqueue);
        let payload = payload.as_ref();
        let now = now_ns();
        let prep = Prepared::new(inner, payload, opts, now)?;
        let rec = prep.record(payload, now);
        let enq = match &opts.dedup_key {
            Some(key) => match inner.dedup.begin(key, now, prep.window_ns) {
                crate::dedup::Begin::Duplicate(id) => {
                    observe::record(inner, observe::Op::Enqueue, t);
                    return Ok(Enqueued {
                        id,
                        duplicate: true,
                    });
                }
                crate::dedup::Begin::Reserved(r) => {
                    inner.state.raise_dedup_horizon(prep.window_ns);
                    // A failed append drops the reservation, releasing the key.
                    let id = inner.append(&rec)?;
                    r.commit(id);
                    Enqueued {
                        id,
                        duplicate: false,
                    }
                }
            },
            None => Enqueued {
                id: inner.append(&rec)?,
                duplicate: false,
            },
        };
        inner.wake();
        observe::record(inner, observe::Op::Enqueue, t);
        Ok(enq)
    }

    /// Appends several messages with one reservation; their IDs are contiguous.
    ///
    /// Either all are appended or none (every size is checked before anything is written).
    /// The queue's default compression applies.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Queue::enqueue), plus [`Error::BatchTooLarge`] if the batch does
    /// not fit in one segment.
    pub fn enqueue_batch<I>(&self, payloads: I) -> Result<Range<u64>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let inner = &self.inner;
        if inner.opts.compression != crate::Compression::None {
            let out =
                self.enqueue_batch_with(payloads.into_iter().map(|p| (p, EnqueueOptions::new())))?;
            return Ok(match (out.first(), out.last()) {
                (Some(a), Some(b)) => a.id..b.id + 1,
                _ => {
                    let next = inner.journal.next_id();
                    next..next
                }
            });
        }
        inner.check_writable()?;
        let t = observe::sample(observe::Op::Enqueue);
        let items: Vec<I::Item> = payloads.into_iter().collect();
        let mut size = 0u64;
        for p in &items {
            let len = p.as_ref().len();
            inner.check_size(len)?;
            size += u64::from(RECORD_HEADER_LEN) + len as u64 + 7;
        }
        inner.check_batch_size(size)?;
        if items.is_empty() {
            let next = inner.journal.next_id();
            observe::record(inner, observe::Op::Enqueue, t);
            return Ok(next..next);
        }
        let ids = match inner.journal.append_payloads(&items) {
            Err(ledgerq_journal::Error::Full { .. }) => {
                inner.on_full(|| inner.journal.append_payloads(&items))
            }
            r => r.map_err(Error::from),
        }?;
        inner.wake();
        observe::record(inner, observe::Op::Enqueue, t);
        Ok(ids)
    }

    /// Appends several messages, each with its own options, with one reservation.
    ///
    /// The result is in the order given. A message whose dedup key was seen within its
    /// window (before, or earlier in the same batch) is not written and gets the
    /// original's ID with [`Enqueued::is_duplicate`] `true`; the others get contiguous
    /// IDs. Either all are appended or none.
    ///
    /// # Errors
    ///
    /// As [`enqueue_with`](Queue::enqueue_with), plus [`Error::BatchTooLarge`].
    pub fn enqueue_batch_with<I, P>(&self, items: I) -> Result<Vec<Enqueued>>
    where
        I: IntoIterator<Item = (P, EnqueueOptions)>,
        P: AsRef<[u8]>,
    {
        use crate::dedup::Begin;
        let inner = &self.inner;
        inner.check_writable()?;
        let t = observe::sample(observe::Op::Enqueue);
        let now = now_ns();
        let items: Vec<(P, EnqueueOptions)> = items.into_iter().collect();
        let mut preps = Vec::with_capacity(items.len());
        for (p, o) in &items {
            preps.push(Prepared::new(inner, p.as_ref(), o, now)?);
        }
        // What each item becomes: written (its index among the written) or a duplicate.
        enum Fate {
            Write(usize),
            DupOf(u64),
            DupOfItem(usize),
        }
        'attempt: loop {
            let mut fates = Vec::with_capacity(items.len());
            let mut first_in_batch: HashMap<&[u8], usize> = HashMap::new();
            // Reservations of this batch's new keys, by item index; released (dropped)
            // if anything fails before the append returns.
            let mut reserved = Vec::new();
            let mut records = Vec::with_capacity(items.len());
            let mut size = 0u64;
            for (i, ((p, o), prep)) in items.iter().zip(&preps).enumerate() {
                if let Some(key) = o.dedup_key.as_deref() {
                    if let Some(&j) = first_in_batch.get(key) {
                        fates.push(Fate::DupOfItem(j));
                        continue;
                    }
                    match inner.dedup.try_begin(key, now, prep.window_ns) {
                        None => {
                            // Another producer's append holds the key: let go of ours
                            // before waiting, so that no cycle of waits can form.
                            drop(reserved);
                            inner.dedup.wait_unreserved(key);
                            continue 'attempt;
                        }
                        Some(Begin::Duplicate(id)) => {
                            fates.push(Fate::DupOf(id));
                            continue;
                        }
                        Some(Begin::Reserved(r)) => {
                            reserved.push((i, r));
                            first_in_batch.insert(key, i);
                        }
                    }
                }
                fates.push(Fate::Write(records.len()));
                size += prep.encoded_len(p.as_ref());
                records.push(prep.record(p.as_ref(), now));
            }
            inner.check_batch_size(size)?;
            let ids = if records.is_empty() {
                let next = inner.journal.next_id();
                next..next
            } else {
                for prep in &preps {
                    if prep.window_ns > 0 {
                        inner.state.raise_dedup_horizon(prep.window_ns);
                    }
                }
                inner.append_batch(&records)?
            };
            let mut out: Vec<Enqueued> = Vec::with_capacity(items.len());
            for fate in &fates {
                out.push(match *fate {
                    Fate::Write(k) => Enqueued {
                        id: ids.start + k as u64,
                        duplicate: false,
                    },
                    Fate::DupOf(id) => Enqueued {
                        id,
                        duplicate: true,
                    },
                    Fate::DupOfItem(j) => Enqueued {
                        id: out[j].id,
                        duplicate: true,
                    },
                });
            }
            for (i, r) in reserved {
                r.commit(out[i].id);
            }
            if !records.is_empty() {
                inner.wake();
            }
            observe::record(inner, observe::Op::Enqueue, t);
            return Ok(out);
        }
    }

    /// Takes the next message, never blocking: `Ok(None)` when nothing is ready.
    ///
    /// In [`AckMode::Auto`] the message is consumed; in [`AckMode::Manual`] it is leased
    /// until [`ack`](Queue::ack), [`nack`](Queue::nack) or the lease timeout. Expired
    /// messages are skipped (and counted in [`Stats::expired`]).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], or [`Error::Corrupt`] if the next record cannot be read; in
    /// manual-ack mode [`Error::Poisoned`] once a flush of the consumer state has failed
    /// (no message is leased that could not be acknowledged).
    pub fn dequeue(&self) -> Result<Option<Message>> {
        self.inner.check_open()?;
        let t = observe::sample(observe::Op::Dequeue);
        let m = self.inner.dequeue_one();
        observe::record(&self.inner, observe::Op::Dequeue, t);
        m
    }

    /// Takes the next message, parking up to `timeout` for one to arrive.
    ///
    /// The consumer first polls for about 20 µs (spinning), so a message that follows
    /// closely is taken without a sleep; then it parks. A parked
    /// consumer costs no CPU and is woken as soon as a message is committed.
    ///
    /// # Errors
    ///
    /// As [`dequeue`](Queue::dequeue); [`Error::Closed`] if the queue is closed while waiting.
    pub fn dequeue_timeout(&self, timeout: Duration) -> Result<Option<Message>> {
        let deadline = Instant::now().checked_add(timeout);
        self.inner.dequeue_wait(deadline)
    }

    /// Takes up to `max` messages that are ready, never blocking: in ID order, or in
    /// priority order when the queue delivers by priority.
    ///
    /// # Errors
    ///
    /// As [`dequeue`](Queue::dequeue).
    pub fn dequeue_batch(&self, max: usize) -> Result<Vec<Message>> {
        self.inner.check_open()?;
        let t = observe::sample(observe::Op::Dequeue);
        let m = self.inner.dequeue_many(max);
        observe::record(&self.inner, observe::Op::Dequeue, t);
        m
    }

    /// Acknowledges a message leased by a manual-mode dequeue: it is consumed.
    ///
    /// # Errors
    ///
    /// [`Error::NotInFlight`] if `id` is not leased (unknown, already acknowledged,
    /// or auto-ack mode); [`Error::Poisoned`] once a flush of the consumer state has
    /// failed (an acknowledgement could not be made durable).
    pub fn ack(&self, id: u64) -> Result<()> {
        self.inner.check_writable()?;
        let inner = &self.inner;
        let t = observe::sample(observe::Op::Ack);
        if lock(inner.shard(id)).remove(&id).is_none() {
            return Err(Error::NotInFlight { id });
        }
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        inner.consume(id);
        observe::record(inner, observe::Op::Ack, t);
        Ok(())
    }

    /// Gives a leased message back: it is delivered again (to any consumer) with its
    /// delivery count one higher, after the [`redelivery_backoff`](Options::redelivery_backoff)
    /// if one is set. After [`max_deliveries`](Options::max_deliveries) failed deliveries
    /// it moves to the dead-letter queue instead, with `reason` (its first line, at most
    /// 256 characters) in its `dlq.reason` header.
    ///
    /// A message that was legal to enqueue can always be moved: the dead-letter queue
    /// keeps all its headers and adds the four `dlq.*` ones beyond the header limits.
    /// If the move fails anyway (the dead-letter queue cannot be opened or written), the
    /// error is returned here and the message stays in this queue: it is delivered again
    /// like after any failure, its delivery count above `max_deliveries`, and each
    /// later failure tries the move again. It never blocks the delivery of other
    /// messages. The failure is logged and counted in [`Stats::dead_letter_failures`];
    /// an expired lease's failed move only there.
    ///
    /// # Errors
    ///
    /// [`Error::NotInFlight`] if `id` is not leased; an error of the dead-letter queue
    /// (the message is then delivered again, see above); [`Error::Poisoned`] once a
    /// flush of the consumer state has failed.
    pub fn nack(&self, id: u64, reason: &str) -> Result<()> {
        self.inner.fail(id, reason, None)
    }

    /// As [`nack`](Queue::nack), with the message delivered again only after `delay`.
    ///
    /// # Errors
    ///
    /// As [`nack`](Queue::nack).
    pub fn nack_with_delay(&self, id: u64, reason: &str, delay: Duration) -> Result<()> {
        self.inner.fail(id, reason, Some(delay))
    }

    /// A blocking iterator over messages: each `next` waits for the next message and the
    /// iterator ends when the queue is closed.
    pub fn stream(&self) -> Stream<'_> {
        Stream { queue: self }
    }

    /// A snapshot of the queue's counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Makes everything enqueued so far, and the consumer state, durable.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if a flush fails (and from then on).
    pub fn sync(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.sync()
    }

    /// Flushes and closes the queue (and its dead-letter queue): parked consumers and
    /// streams wake up, and every later call returns [`Error::Closed`]. `Drop` does the
    /// same, ignoring errors.
    ///
    /// # Errors
    ///
    /// The error of the final flush.
    pub fn close(&self) -> Result<()> {
        if !self.stop_background() {
            return Ok(());
        }
        let inner = &self.inner;
        let synced = inner.sync();
        // Releases the directory's lock: the queue can be opened again at once, even while
        // this handle exists.
        let shut = inner.journal.shutdown().map_err(Error::from);
        let dlq = inner.dlq.get().map_or(Ok(()), Queue::close);
        synced.and(shut).and(dlq)
    }

    /// Whether [`close`](Queue::close) was called on this queue:
    /// every later call then returns [`Error::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), ledgerq::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = ledgerq::Queue::open(dir.path())?;
    /// assert!(!q.is_closed());
    /// q.close()?;
    /// assert!(q.is_closed());
    /// assert!(matches!(q.enqueue(b"late"), Err(ledgerq::Error::Closed)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        // Relaxed: a snapshot; the calls that act on it check again.
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Stops this handle as a killed process stops: no last sync of the journal or
    /// the consumer state, no clean checkpoint; the background threads are stopped
    /// and the directory lock released, so that crash tests can reopen the directory
    /// in the same process and check what a kill at this point leaves (everything
    /// written to the mappings, as after `kill -9`). The handle then behaves as
    /// closed. Not for applications: use [`Queue::close`].
    #[doc(hidden)]
    pub fn abandon(&self) {
        if !self.stop_background() {
            return;
        }
        self.inner.journal.abandon();
        if let Some(dlq) = self.inner.dlq.get() {
            dlq.abandon();
        }
    }

    /// Marks the queue closed, wakes every waiting consumer and stops the maintenance
    /// thread. `false` if the queue was already closed.
    fn stop_background(&self) -> bool {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        {
            let _g = lock(&inner.park.lock);
            inner.park.seq.fetch_add(1, Ordering::SeqCst);
            inner.park.cv.notify_all();
            inner.park.maintenance_cv.notify_all();
        }
        inner.wake_async();
        if let Some(h) = lock(&self.maintenance).take() {
            let _ = h.join();
        }
        true
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether this queue delivers by priority (as recorded when it was created).
    pub fn priorities(&self) -> bool {
        self.inner.sched.is_some()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// A blocking iterator over a queue's messages, from [`Queue::stream`].
pub struct Stream<'a> {
    queue: &'a Queue,
}

impl Iterator for Stream<'_> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        match self.queue.inner.dequeue_wait(None) {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) | Err(Error::Closed) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Refuses to open in an ack mode other than the last open's when that would lose
/// consumption recorded above the watermark `w` (IDs up to `end`): acknowledgements made
/// out of order in manual-ack mode (and moves to the dead-letter queue), which FIFO
/// auto-ack mode does not read (the priority scheduler reads them in both modes), or
/// levels consumed ahead of others in priority auto-ack mode beyond the per-ID
/// entries' window (within it, they are rewritten as acknowledgements, which
/// manual-ack mode reads). Any other change is allowed: unacknowledged messages are
/// then delivered again, as after any reopen. Returns the last open's mode (`Some(true)`: manual),
/// `None` if the file is from before it was recorded.
fn check_ack_mode_change(
    state: &StateFile,
    journal: &Journal,
    opts: &Options,
    priorities: bool,
    w: u64,
    end: u64,
    dir: &Path,
) -> Result<Option<bool>> {
    let flags = state.flags();
    // `None`: written before the mode was recorded; either may have been used.
    let was_manual = (flags & FLAG_MODE_KNOWN != 0).then_some(flags & FLAG_MANUAL != 0);
    let manual = opts.ack_mode == AckMode::Manual;
    if !manual && was_manual != Some(false) {
        // The priority scheduler skips acknowledged entries in both modes; FIFO
        // auto-ack mode reads only the watermark. (Interrupted moves to the dead-letter
        // queue were settled above.)
        let settled = (w..end.min(w.saturating_add(WINDOW)))
            .find(|&id| !priorities && state.entry(id) == Entry::Acked);
        if let Some(id) = settled {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "queue {} holds messages acknowledged in manual-ack mode out of order \
                     (message {id} and maybe others, while message {w} is not acknowledged); \
                     auto-ack mode would deliver them again: open it with AckMode::Manual \
                     and acknowledge (or nack until dead-lettered) message {w} first",
                    dir.display()
                ),
            });
        }
    }
    if manual && priorities && was_manual != Some(true) {
        let marks = state.level_marks();
        let ahead = marks.into_iter().max().unwrap_or(0);
        // Within the per-ID entries' window, the levels' consumption is rewritten as
        // acknowledgements (made durable before the mode is recorded, so a crash
        // before that redoes it).
        if ahead > w && ahead - w <= WINDOW {
            let mut c = journal.cursor(w)?;
            while let Some((id, prio)) = c
                .next(journal, |v| (v.id(), v.priority()))?
                .filter(|r| r.0 < ahead)
            {
                let level = usize::from(crate::Priority::from_stored(prio).as_u8());
                if id < marks[level] {
                    state.mark_acked(id);
                }
            }
            state.flush().map_err(|e| {
                io_err(
                    "flush consumer state file",
                    dir.join(crate::state::FILE_NAME),
                    e,
                )
            })?;
        } else if ahead > w {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "queue {} has priority levels consumed in auto-ack mode up to message \
                     {ahead}, ahead of message {w} of a lower level; manual-ack mode would \
                     deliver them again: open it with AckMode::Auto and consume the lower \
                     levels first",
                    dir.display()
                ),
            });
        }
    }
    Ok(was_manual)
}

/// `now + d`; if that is beyond what an `Instant` can hold, `d` is halved until it fits
/// (still centuries away): a lease or a delay that long never ends while the process
/// lives, and no duration the options or arguments accept can make the addition panic.
pub(crate) fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}

/// Nanoseconds since the UNIX epoch, now.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The longest dedup key.
pub(crate) const MAX_DEDUP_KEY: usize = 256;

/// A message's options checked and turned into what the record stores.
struct Prepared<'o> {
    tag: u8,
    compressed: Vec<u8>,
    headers: Vec<(&'o str, &'o str)>,
    header_bytes: usize,
    priority: u8,
    expires_ns: u64,
    /// The stored dedup field: the window (u64 LE) then the key.
    dedup: Vec<u8>,
    window_ns: u64,
}

impl<'o> Prepared<'o> {
    fn new(inner: &Inner, payload: &[u8], o: &'o EnqueueOptions, now: u64) -> Result<Self> {
        let headers: Vec<(&str, &str)> = o
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let header_bytes = ledgerq_journal::check_headers(&headers)?;
        inner.check_size(payload.len().saturating_add(header_bytes))?;
        let expires_ns = match o.ttl {
            Some(t) if t.is_zero() => {
                return Err(Error::InvalidMessage {
                    reason: "ttl must be greater than zero".into(),
                })
            }
            Some(t) => now.saturating_add(duration_ns(t)).max(1),
            None => 0,
        };
        let (dedup, window_ns) = match &o.dedup_key {
            Some(k) if k.is_empty() || k.len() > MAX_DEDUP_KEY => {
                return Err(Error::InvalidMessage {
                    reason: format!(
                        "a dedup key must be 1 to {MAX_DEDUP_KEY} bytes, not {}",
                        k.len()
                    ),
                })
            }
            Some(k) => {
                let window = o.dedup_window.unwrap_or(inner.opts.dedup_window);
                if window.is_zero() {
                    return Err(Error::InvalidMessage {
                        reason: "dedup_window must be greater than zero".into(),
                    });
                }
                let w = duration_ns(window);
                let mut field = Vec::with_capacity(8 + k.len());
                field.extend_from_slice(&w.to_le_bytes());
                field.extend_from_slice(k);
                (field, w)
            }
            None => (Vec::new(), 0),
        };
        let c = o.compression.unwrap_or(inner.opts.compression);
        let mut compressed = Vec::new();
        let tag = if c == crate::Compression::None {
            0
        } else {
            crate::compress::validate(c).map_err(|reason| Error::InvalidMessage { reason })?;
            crate::compress::compress(c, payload, inner.opts.min_compression_size, &mut compressed)
        };
        Ok(Prepared {
            tag,
            compressed,
            headers,
            header_bytes,
            priority: o.priority.as_u8(),
            expires_ns,
            dedup,
            window_ns,
        })
    }

    fn stored<'a>(&'a self, payload: &'a [u8]) -> &'a [u8] {
        if self.tag == 0 {
            payload
        } else {
            &self.compressed
        }
    }

    fn record<'a>(&'a self, payload: &'a [u8], now: u64) -> RecordIn<'a> {
        RecordIn {
            payload: self.stored(payload),
            priority: self.priority,
            expires_at_ns: self.expires_ns,
            headers: &self.headers,
            compression: self.tag,
            dedup_key: (!self.dedup.is_empty()).then_some(&self.dedup[..]),
            timestamp_ns: Some(now),
        }
    }

    fn encoded_len(&self, payload: &[u8]) -> u64 {
        u64::from(RECORD_HEADER_LEN)
            + self.stored(payload).len() as u64
            + (self.header_bytes + 6 * self.headers.len()) as u64
            + self.dedup.len() as u64
            + 7
    }
}

impl Sink for Inner {
    fn hole(&self, id: u64) {
        self.mark_consumed(id);
    }

    fn windowed(&self) -> bool {
        self.manual()
    }

    fn skip(&self, id: u64, entry: Entry) -> bool {
        match entry {
            Entry::Acked => true,
            Entry::Delivered(_) => self.skip_refeed(id),
            _ => false,
        }
    }
}

/// How long after open the maintenance thread starts the journal's background threads
/// (the preparer's own grace after open is the same).
const JOURNAL_THREADS_AFTER: Duration = Duration::from_millis(20);

impl Inner {
    /// A snapshot of the queue's counters.
    pub(crate) fn stats(&self) -> Stats {
        let inner = self;
        // `in_flight` is read before and after `pending` and the larger value kept: a
        // message moving from pending to in flight (counted in flight first) or back
        // (requeued first) is then counted at least once.
        let in_flight_before = inner.in_flight.load(Ordering::SeqCst);
        let next_id = inner.journal.next_id();
        let segments = inner.journal.segments();
        let pending = if inner.marks_mode() {
            next_id
                .saturating_sub(1)
                .saturating_sub(inner.state.consumed().load(Ordering::Relaxed))
        } else if inner.sched.is_some() {
            let w = inner.state.watermark().load(Ordering::Acquire);
            let above = u64::try_from(inner.acked_above.load(Ordering::Relaxed)).unwrap_or(0);
            next_id
                .saturating_sub(w)
                .saturating_sub(above)
                .saturating_sub(in_flight_before as u64)
        } else {
            let fed = inner.fed.load(Ordering::Acquire);
            next_id
                .saturating_sub(fed)
                .saturating_sub(inner.acked_ahead.load(Ordering::Relaxed))
                + inner.dispatch.len() as u64
                + inner.redeliver_len.load(Ordering::Relaxed) as u64
                + inner.delayed_len.load(Ordering::Relaxed) as u64
        };
        let in_flight = in_flight_before.max(inner.in_flight.load(Ordering::SeqCst));
        Stats {
            pending,
            in_flight: in_flight as u64,
            total_enqueued: next_id.saturating_sub(1),
            next_id,
            segments: segments.len() as u64,
            disk_bytes: inner.journal.disk_bytes(),
            expired: inner.expired.load(Ordering::Relaxed),
            dead_lettered: inner.dlq.get().map_or(0, |d| d.inner.journal.next_id() - 1),
            dedup_tracked: inner.dedup.len() as u64,
            dedup_evicted: inner.dedup.evicted(),
            dropped: inner.dropped.load(Ordering::Relaxed),
            dead_letter_failures: inner.dead_letter_failures.load(Ordering::Relaxed),
            corrupt_skipped: inner.journal.skipped_damage() + inner.front_skipped,
            oldest_pending_age: if pending == 0 {
                None
            } else {
                inner.oldest_pending_age()
            },
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Manual-ack mode: once a flush of the consumer state has failed no message is
    /// leased any more (its acknowledgement could not be made durable, and would fail).
    fn check_leasable(&self) -> Result<()> {
        match self.latched.get() {
            Some(cause) if self.manual() => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if let Some(cause) = self.latched.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        Ok(())
    }

    pub(crate) fn check_size(&self, size: usize) -> Result<()> {
        let max = self.opts.get_max_message_size();
        if size > max {
            return Err(Error::MessageTooLarge { size, max });
        }
        Ok(())
    }

    fn check_batch_size(&self, size: u64) -> Result<()> {
        let max = self.opts.segment_size - u64::from(SEGMENT_HEADER_LEN);
        if size > max {
            return Err(Error::BatchTooLarge { size, max });
        }
        Ok(())
    }

    /// Appends one record, making room under the disk budget if the policy allows.
    pub(crate) fn append(&self, rec: &RecordIn<'_>) -> Result<u64> {
        match self.journal.append(rec) {
            Err(ledgerq_journal::Error::Full { .. }) => self.on_full(|| self.journal.append(rec)),
            r => r.map_err(Error::from),
        }
    }

    fn append_batch(&self, recs: &[RecordIn<'_>]) -> Result<Range<u64>> {
        match self.journal.append_batch(recs) {
            Err(ledgerq_journal::Error::Full { .. }) => {
                self.on_full(|| self.journal.append_batch(recs))
            }
            r => r.map_err(Error::from),
        }
    }

    /// The disk budget is used up: remove consumed segments, and with
    /// [`OverflowPolicy::DropOldest`] the oldest pending one, then retry.
    ///
    /// Producers racing for the room made compete: a retry may find the new segment
    /// filled by others already. Under `Reject` that is backpressure, and after a few
    /// rounds the enqueue fails; under `DropOldest` it goes on (every failed round is
    /// another producer's success) until no segment is left to drop.
    fn on_full<T>(
        &self,
        mut retry: impl FnMut() -> std::result::Result<T, ledgerq_journal::Error>,
    ) -> Result<T> {
        let full = Error::QueueFull {
            max_disk_bytes: self.opts.max_disk_bytes.unwrap_or(0),
        };
        let drop_oldest = self.opts.overflow_policy == OverflowPolicy::DropOldest;
        let mut rounds = 0;
        loop {
            // Another pass (the maintenance thread's, another producer's) may have made
            // room since the journal refused.
            let mut room = self.compact_pass(true)?.segments_removed > 0 || self.below_budget();
            if !room && drop_oldest {
                room = self.drop_oldest()?;
            }
            if !room {
                return Err(full);
            }
            match retry() {
                Err(ledgerq_journal::Error::Full { .. }) => {
                    rounds += 1;
                    if !drop_oldest && rounds == 8 {
                        return Err(full);
                    }
                }
                r => return r.map_err(Error::from),
            }
        }
    }

    /// Whether the journal holds fewer segments than the disk budget allows (a roll
    /// would succeed now).
    pub(crate) fn below_budget(&self) -> bool {
        budget_segments(&self.opts).is_none_or(|n| self.journal.segments().len() < n)
    }

    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Lease>> {
        &self.leases[(id as usize) % SHARDS]
    }

    /// Removes the lease of `id`, if it is leased; whether it was.
    pub(crate) fn drop_lease(&self, id: u64) -> bool {
        let had = lock(self.shard(id)).remove(&id).is_some();
        if had {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        had
    }

    /// Whether `id` is leased.
    pub(crate) fn is_leased(&self, id: u64) -> bool {
        lock(self.shard(id)).contains_key(&id)
    }

    /// Per-ID state: whether `id` is out of the pending messages for now, because it
    /// is acknowledged, being moved to the dead-letter queue, or leased to a consumer.
    /// (A requeued message is pending; `peek` lists those first, on their own.)
    pub(crate) fn settled_or_leased(&self, id: u64) -> bool {
        match self.state.entry(id) {
            Entry::Acked | Entry::DeadLettering => true,
            Entry::Delivered(_) => self.is_leased(id),
            _ => false,
        }
    }

    /// Whether `id` waits out a redelivery backoff or in the redelivery queue.
    pub(crate) fn is_requeued(&self, id: u64) -> bool {
        (self.delayed_len.load(Ordering::Relaxed) != 0
            && lock(&self.delayed).iter().any(|d| d.0.id == id))
            || (self.redeliver_len.load(Ordering::Relaxed) != 0
                && lock(&self.redeliver).iter().any(|p| p.id() == id))
    }

    /// The messages waiting for redelivery now, in order.
    pub(crate) fn redeliveries(&self) -> Vec<Position> {
        lock(&self.redeliver).iter().copied().collect()
    }

    /// Marks `id` consumed without delivering it (a requeued dead letter).
    pub(crate) fn discard(&self, id: u64) {
        if self.manual() && !self.drop_lease(id) && self.sched.is_none() {
            // Not yet fed: the feeder skips it, and `pending` must not count it.
            let fed = self.fed.load(Ordering::Acquire);
            if id >= fed && self.state.entry(id) != Entry::Acked {
                self.acked_ahead.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.consume(id);
    }

    /// Where record `id` is, if the journal retains it.
    pub(crate) fn position_of(&self, id: u64) -> Result<Option<Position>> {
        if id < self.journal.first_id() || id >= self.journal.next_id() {
            return Ok(None);
        }
        let mut c = match self.journal.cursor(id) {
            Ok(c) => c,
            Err(ledgerq_journal::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match c.next(&self.journal, |v| v.position())? {
            Some(p) if p.id() == id => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    pub(crate) fn manual(&self) -> bool {
        self.opts.ack_mode == AckMode::Manual
    }

    /// Whether the queue delivers by priority.
    pub(crate) fn priorities_on(&self) -> bool {
        self.sched.is_some()
    }

    /// Whether delivery state is kept per ID: manual-ack mode.
    fn per_id(&self) -> bool {
        self.manual()
    }

    /// Priority auto-ack mode: consumption is kept as per-level watermarks.
    pub(crate) fn marks_mode(&self) -> bool {
        self.sched.is_some() && !self.manual()
    }

    /// Stores the per-level watermarks and raises the queue's to their least.
    fn store_marks(&self, marks: [u64; 3]) {
        self.state.set_level_marks(marks);
        self.state.raise(marks.into_iter().min().unwrap_or(0));
    }

    /// Wakes parked consumers, if any, after a commit.
    pub(crate) fn wake(&self) {
        // SeqCst fence: orders this thread's commit (a Release store in the journal)
        // before the load of `waiters`; pairs with the fence in `dequeue_wait` (Dekker:
        // either the consumer sees the commit, or we see the consumer parked).
        fence(Ordering::SeqCst);
        if self.park.waiters.load(Ordering::Relaxed) != 0 {
            {
                let _g = lock(&self.park.lock);
                self.park.seq.fetch_add(1, Ordering::SeqCst);
                self.park.cv.notify_all();
            }
            self.wake_async();
        }
    }

    /// Wakes every registered async waiter.
    fn wake_async(&self) {
        let wakers = std::mem::take(&mut *lock(&self.park.wakers));
        for w in wakers {
            w.wake();
        }
    }

    /// Registers an async waiter's waker, woken (once) by the next commit or `close`.
    #[cfg(feature = "async")]
    pub(crate) fn register_waker(&self, waker: &std::task::Waker) {
        let mut g = lock(&self.park.wakers);
        if !g.iter().any(|w| w.will_wake(waker)) {
            g.push(waker.clone());
        }
    }

    /// Async waiters count as parked consumers for the producers' wake-up check: the
    /// SeqCst increment and fence pair with the fence in `wake`, so either the waiter's
    /// next attempt sees a commit, or the committer sees the waiter and wakes it.
    #[cfg(feature = "async")]
    pub(crate) fn async_waiting(&self, on: bool) {
        if on {
            self.park.waiters.fetch_add(1, Ordering::SeqCst);
        } else {
            self.park.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        // SeqCst fence: pairs with the one in `wake` (see there).
        fence(Ordering::SeqCst);
    }

    fn requeue(&self, pos: Position) {
        lock(&self.redeliver).push_back(pos);
        self.redeliver_len.fetch_add(1, Ordering::Relaxed);
        self.wake();
    }

    /// Puts a failed message back for delivery after `delay` (at once if zero).
    fn requeue_after(&self, pos: Position, delay: Duration) {
        if delay.is_zero() {
            return self.requeue(pos);
        }
        lock(&self.delayed).push(Reverse(Delayed {
            due: instant_after(delay),
            id: pos.id(),
            segment: pos.segment(),
            offset: pos.offset(),
        }));
        self.delayed_len.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves delayed messages whose time has come to the redelivery queue.
    fn promote_due(&self) {
        if self.delayed_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut h = lock(&self.delayed);
            while h.peek().is_some_and(|d| d.0.due <= now) {
                if let Some(Reverse(d)) = h.pop() {
                    due.push(Position::new(d.segment, d.offset, d.id));
                }
            }
        }
        if !due.is_empty() {
            self.delayed_len.fetch_sub(due.len(), Ordering::Relaxed);
            for pos in due {
                self.requeue(pos);
            }
        }
    }

    /// A nack (or `nack_with_delay`): requeue with backoff, or dead-letter.
    fn fail(&self, id: u64, reason: &str, delay: Option<Duration>) -> Result<()> {
        self.check_writable()?;
        let t = observe::sample(observe::Op::Nack);
        let lease = lock(self.shard(id))
            .remove(&id)
            .ok_or(Error::NotInFlight { id })?;
        let r = self.after_failure(lease.pos, reason, delay);
        // After the requeue: `stats` never sees the message as neither (see `stats`).
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if r.is_ok() {
            observe::record(self, observe::Op::Nack, t);
        }
        r
    }

    /// A leased message failed (nack or expired lease): dead-letter it if it has used
    /// up its deliveries, else deliver it again after its backoff.
    ///
    /// If the move to the dead-letter queue fails, the message is delivered again like
    /// after any failure (that delivery tries the move again, see `deliver`) and the
    /// error is returned.
    fn after_failure(&self, pos: Position, reason: &str, delay: Option<Duration>) -> Result<()> {
        let count = match self.state.entry(pos.id()) {
            Entry::Delivered(n) => n,
            _ => 1,
        };
        let delay = delay.unwrap_or_else(|| match self.opts.redelivery_backoff {
            Some((base, max)) => {
                let shift = count.saturating_sub(1).min(30);
                base.saturating_mul(1u32 << shift).min(max)
            }
            None => Duration::ZERO,
        });
        let max = self.opts.max_deliveries;
        if max > 0 && count >= max {
            return match self.read_record(pos)? {
                // On failure the message stays here with its entry at `count`
                // deliveries (logged and counted in `dead_letter`).
                Some(m) => self
                    .dead_letter(&m, count, reason)
                    .inspect_err(|_| self.requeue_after(pos, delay)),
                None => {
                    self.note_expired(pos.id());
                    Ok(())
                }
            };
        }
        self.requeue_after(pos, delay);
        Ok(())
    }

    fn dequeue_wait(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        // Spin briefly before parking: a message that arrives within
        // `SPIN_BEFORE_PARK` is taken without a sleep and a wake-up (tens of
        // microseconds each), and its producer skips the wake-up call. No yielding:
        // a thread that yields to a busy one can wait a whole scheduler tick, while
        // a parked one is run again as soon as it is woken.
        let spin_until = Instant::now() + SPIN_BEFORE_PARK;
        let backoff = crossbeam_utils::Backoff::new();
        // A sampled call times the attempt that returns, not the wait before it.
        let t = observe::sample(observe::Op::Dequeue);
        loop {
            self.check_open()?;
            let t = observe::restart(t);
            let got = self.dequeue_one();
            if !matches!(got, Ok(None)) {
                observe::record(self, observe::Op::Dequeue, t);
                return got;
            }
            let now = Instant::now();
            if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                break;
            }
            backoff.spin();
        }
        loop {
            self.check_open()?;
            let key = self.park.seq.load(Ordering::SeqCst);
            self.park.waiters.fetch_add(1, Ordering::SeqCst);
            // SeqCst fence: pairs with the one in `wake` (see there).
            fence(Ordering::SeqCst);
            let t = observe::restart(t);
            let got = self.dequeue_one();
            if !matches!(got, Ok(None)) {
                self.park.waiters.fetch_sub(1, Ordering::SeqCst);
                observe::record(self, observe::Op::Dequeue, t);
                return got;
            }
            // A redelivery backoff may end while we sleep: do not sleep past it.
            let deadline = match (deadline, self.next_due()) {
                (Some(d), Some(n)) => Some(d.min(n)),
                (d, n) => d.or(n),
            };
            let timed_out = {
                let g = lock(&self.park.lock);
                if self.park.seq.load(Ordering::SeqCst) != key || self.closed.load(Ordering::SeqCst)
                {
                    false
                } else {
                    match deadline {
                        None => {
                            let _g = self.park.cv.wait(g).unwrap_or_else(|p| p.into_inner());
                            false
                        }
                        Some(d) => {
                            let now = Instant::now();
                            if now >= d {
                                true
                            } else {
                                let (_g, _) = self
                                    .park
                                    .cv
                                    .wait_timeout(g, d - now)
                                    .unwrap_or_else(|p| p.into_inner());
                                false
                            }
                        }
                    }
                }
            };
            self.park.waiters.fetch_sub(1, Ordering::SeqCst);
            if timed_out && self.next_due().is_none_or(|n| n > Instant::now()) {
                return Ok(None);
            }
        }
    }

    /// When the next delayed redelivery is due, if any.
    fn next_due(&self) -> Option<Instant> {
        if self.delayed_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        lock(&self.delayed).peek().map(|d| d.0.due)
    }

    /// The next handle to try: a redelivery (manual mode), else the scheduler's or the
    /// ring's next.
    fn next_position(&self) -> Result<Option<Position>> {
        if self.manual() {
            self.promote_due();
            if self.redeliver_len.load(Ordering::Relaxed) != 0 {
                let pos = lock(&self.redeliver).pop_front();
                if let Some(pos) = pos {
                    self.redeliver_len.fetch_sub(1, Ordering::Relaxed);
                    return Ok(Some(pos));
                }
            }
        }
        if let Some(sched) = &self.sched {
            let mut s = lock(sched);
            let slot = s.pop(
                &self.journal,
                &self.state,
                self,
                now_ns(),
                self.opts.starvation_window,
            )?;
            if self.marks_mode() {
                // Consumed at the claim, under the scheduler's mutex (auto-ack).
                if slot.is_some() {
                    self.state.consumed().fetch_add(1, Ordering::Relaxed);
                }
                self.store_marks(s.level_marks());
            }
            return Ok(slot.map(|s| s.pos));
        }
        let fill = |src: &mut FeedSource, room: usize, push: &mut dyn FnMut(Position) -> bool| {
            self.fill(src, room, push)
        };
        self.dispatch.pop(&fill)
    }

    pub(crate) fn dequeue_one(&self) -> Result<Option<Message>> {
        self.check_leasable()?;
        // From the claim to the end of the read: compaction waits for this section.
        let _section = self.grace.enter();
        loop {
            match self.claim()? {
                None => return Ok(None),
                Some(Some(m)) => return Ok(Some(m)),
                Some(None) => {}
            }
        }
    }

    /// One claim and its delivery: `None` if nothing is ready, `Some(None)` if the
    /// claimed message was not to be delivered (expired, consumed, dead-lettered).
    ///
    /// In manual mode the message counts as in flight from before the claim, so that
    /// `stats` (which reads `pending` before `in_flight`) never sees a message being
    /// handed out as neither pending nor in flight: a program waiting for both to reach
    /// zero before it closes cannot close under a consumer about to ack.
    fn claim(&self) -> Result<Option<Option<Message>>> {
        let manual = self.manual();
        if manual {
            // SeqCst: ordered before the claim (a SeqCst CAS of the ring, or a mutex),
            // and with the SeqCst loads in `stats`.
            self.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let r = match self.next_position() {
            Ok(Some(pos)) => self.deliver(pos).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        if manual && !matches!(r, Ok(Some(Some(_)))) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        r
    }

    /// Up to `max` ready messages. In FIFO auto-ack mode, handles are popped from the
    /// ring in batches with one watermark update per batch; otherwise one by one.
    fn dequeue_many(&self, max: usize) -> Result<Vec<Message>> {
        self.check_leasable()?;
        // From the first claim to the end of the last read: compaction waits for this.
        let _section = self.grace.enter();
        let mut out = Vec::with_capacity(max.min(1024));
        if self.per_id() || self.sched.is_some() {
            while out.len() < max {
                match self.claim() {
                    Ok(None) => break,
                    Ok(Some(Some(m))) => out.push(m),
                    Ok(Some(None)) => {}
                    Err(_) if !out.is_empty() => break,
                    Err(e) => return Err(e),
                }
            }
            return Ok(out);
        }
        // A record whose payload cannot be decoded was reported by an earlier call
        // that had messages to return: report it now.
        if self.deferred_failed.load(Ordering::Relaxed) {
            if let Some(e) = lock(&self.deferred_failure).take() {
                self.deferred_failed.store(false, Ordering::Relaxed);
                return Err(e);
            }
        }
        let mut positions = Vec::new();
        let mut failure = None;
        while out.len() < max && failure.is_none() {
            positions.clear();
            let want = (max - out.len()).min(self.dispatch.capacity());
            // Handles already in the ring are older than anything the source still
            // holds: they go first. With the ring empty, the records are read straight
            // from the journal cursor (one pass, no hand-off through the ring).
            let direct = self.dispatch.pop_or_take(&mut positions, want, |src| {
                self.take_direct(src, want, &mut out)
            });
            match direct {
                Some(Ok(n)) if n < want => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    failure = Some(e);
                    break;
                }
                None => {}
            }
            let mut last_claimed = None;
            for &pos in &positions {
                // Every claimed handle is delivered or accounted for: a record that
                // fails to decode is skipped and its error reported.
                last_claimed = Some(pos.id());
                match self.read_record(pos) {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => {
                        self.expired.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(last) = last_claimed {
                self.state.raise(last + 1);
            }
        }
        match failure {
            None => Ok(out),
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                *lock(&self.deferred_failure) = Some(e);
                self.deferred_failed.store(true, Ordering::Relaxed);
                Ok(out)
            }
        }
    }

    /// The direct path of [`dequeue_many`](Self::dequeue_many) (FIFO auto-ack mode,
    /// holding the feeder role with the ring empty): reads up to `room` messages from
    /// the cursor into `out`, consuming them. Returns how many records were taken
    /// (expired ones included); fewer than `room` means nothing more is committed.
    fn take_direct(
        &self,
        src: &mut FeedSource,
        room: usize,
        out: &mut Vec<Message>,
    ) -> Result<usize> {
        let mut taken = 0;
        let mut failure = None;
        while taken < room {
            let next = match src
                .cursor
                .next(&self.journal, |v| (v.id(), self.message_from(&v)))
            {
                Ok(next) => next,
                // Deliver what was read before the damage first; the cursor stays at
                // the damaged record and reports it on the next call.
                Err(_) if taken > 0 => break,
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            };
            let Some((id, m)) = next else {
                break;
            };
            taken += 1;
            src.next_expected = id + 1;
            // Release: pairs with the Acquire loads in `stats`.
            self.fed.store(id + 1, Ordering::Release);
            match m {
                Ok(Some(m)) => out.push(m),
                Ok(None) => {
                    self.expired.fetch_add(1, Ordering::Relaxed);
                }
                // A record that cannot be decoded is consumed and reported.
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if taken > 0 {
            self.state.raise(src.next_expected);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// The feeder: moves up to `room` committed records from the journal into the ring.
    fn fill(
        &self,
        src: &mut FeedSource,
        room: usize,
        push: &mut dyn FnMut(Position) -> bool,
    ) -> Result<()> {
        let manual = self.manual();
        let limit = if manual {
            self.state.watermark().load(Ordering::Acquire) + WINDOW
        } else {
            u64::MAX
        };
        let mut pushed = 0;
        while pushed < room {
            if src.cursor.position_id() >= limit {
                break;
            }
            let next = match src.cursor.next(&self.journal, |v| v.position()) {
                Ok(next) => next,
                // Deliver what was fed before the damage first; the cursor stays at the
                // damaged record and reports it on the next fill.
                Err(_) if pushed > 0 => break,
                Err(e) => return Err(e.into()),
            };
            let Some(pos) = next else {
                break;
            };
            let id = pos.id();
            if manual {
                // IDs the journal skipped (recovered holes) never hold a message.
                for hole in src.next_expected..id {
                    self.state.set_acked(hole);
                }
            }
            src.next_expected = id + 1;
            // Release: pairs with the Acquire loads in `stats` and `ack`.
            self.fed.store(id + 1, Ordering::Release);
            if manual {
                match self.state.entry(id) {
                    Entry::Acked => {
                        let _ = self.acked_ahead.fetch_update(
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                            |n| n.checked_sub(1),
                        );
                        continue;
                    }
                    Entry::Delivered(_) if self.skip_refeed(id) => continue,
                    _ => {}
                }
            }
            pushed += 1;
            if !push(pos) {
                break;
            }
        }
        Ok(())
    }

    /// Reads the whole message at `pos` (payload decompressed, headers, priority,
    /// expiry), with a delivery count of 1; `None` if it has expired.
    pub(crate) fn read_record(&self, pos: Position) -> Result<Option<Message>> {
        self.journal.read(pos, |v| self.message_from(&v))?
    }

    /// The message a record holds, with a delivery count of 1; `None` if it has
    /// expired. The clock is read only for a message with a TTL.
    fn message_from(&self, v: &RecordView<'_>) -> Result<Option<Message>> {
        let exp = v.expires_at_ns();
        if exp != 0 && exp <= now_ns() {
            return Ok(None);
        }
        let tag = v.compression();
        let payload = if tag == 0 {
            v.payload().to_vec()
        } else {
            let pos = v.position();
            let max = self.opts.get_max_message_size();
            match crate::compress::decompress(tag, v.payload(), max) {
                // Written under a larger `max_message_size` (lowered since): still a
                // message. No writer could store one that decodes beyond its segment.
                Err(crate::compress::DecodeError::TooLarge { .. }) => {
                    let segment = self
                        .journal
                        .segments()
                        .into_iter()
                        .find(|s| s.base_id == pos.segment())
                        .map_or(0, |s| usize::try_from(s.size).unwrap_or(usize::MAX));
                    crate::compress::decompress(tag, v.payload(), segment.max(max))
                }
                r => r,
            }
            .map_err(|e| Error::Corrupt {
                path: self.dir.join(format!("{:020}.seg", pos.segment())),
                offset: u64::from(pos.offset()),
                reason: format!("message {}: {e}", pos.id()),
            })?
            .into_owned()
        };
        Ok(Some(Message {
            id: v.id(),
            payload,
            timestamp: UNIX_EPOCH + Duration::from_nanos(v.timestamp_ns()),
            delivery_count: 1,
            priority: Priority::from_stored(v.priority()),
            expires_at: (exp != 0).then(|| UNIX_EPOCH + Duration::from_nanos(exp)),
            headers: v
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }))
    }

    /// Whether a delivered message must not be fed again: below `refeed_until` it is
    /// leased or requeued already (see `reposition`).
    fn skip_refeed(&self, id: u64) -> bool {
        id < self.refeed_until.load(Ordering::Relaxed)
    }

    /// Marks `id` consumed in the per-ID entries and moves the watermark (manual or
    /// priority mode).
    pub(crate) fn mark_consumed(&self, id: u64) {
        if self.state.mark_acked(id) {
            self.acked_above.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Consumes `id`: an ack, an expiry, a move to the dead-letter queue.
    pub(crate) fn consume(&self, id: u64) {
        if self.per_id() {
            self.mark_consumed(id);
            self.advance();
        } else if !self.marks_mode() {
            self.state.raise(id + 1);
        }
        // Priority auto-ack mode: consumed when the scheduler handed it out.
    }

    /// Moves the watermark over consumed entries (manual or priority mode).
    pub(crate) fn advance(&self) {
        let limit = if self.sched.is_some() {
            self.journal.next_id()
        } else {
            self.fed.load(Ordering::Acquire)
        };
        let (_, moved) = self.state.advance_counted(limit);
        if moved > 0 {
            self.acked_above
                .fetch_sub(i64::try_from(moved).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
    }

    fn note_expired(&self, id: u64) {
        self.expired.fetch_add(1, Ordering::Relaxed);
        self.consume(id);
    }

    /// Reads the message at `pos` and records its delivery: a lease (manual mode), a
    /// consumed entry (priority mode) or the watermark (auto mode). `None` if it must
    /// not be delivered: consumed meanwhile (a seek), expired, or moved to the
    /// dead-letter queue.
    ///
    /// A failed move to the dead-letter queue is never this call's error (that would
    /// be every later dequeue's error, the message being served first): the message is
    /// delivered instead (its next failure tries the move again), or, if it may have
    /// been moved already (an interrupted move that cannot be checked), held back and
    /// tried again after [`DEAD_LETTER_RETRY`]. Either way other messages keep being
    /// delivered; the failure is logged and counted in `Stats::dead_letter_failures`.
    fn deliver(&self, pos: Position) -> Result<Option<Message>> {
        let id = pos.id();
        let prev = if self.per_id() {
            self.state.entry(id)
        } else {
            Entry::Fresh
        };
        if prev == Entry::Acked {
            return Ok(None);
        }
        let Some(mut m) = self.read_record(pos)? else {
            self.note_expired(id);
            return Ok(None);
        };
        if self.manual() {
            let max = self.opts.max_deliveries;
            let n = match prev {
                Entry::DeadLettering => match self.resume_dead_letter(&m) {
                    Ok(()) => return Ok(None),
                    Err(e) => match self.state.entry(id) {
                        // The redone move failed, known not to have happened (logged
                        // and counted in `dead_letter`): deliver.
                        Entry::Delivered(n) => n,
                        // The dead-letter queue cannot be opened: the message may be
                        // there already, so it is not deliverable until that is known.
                        _ => {
                            self.dead_letter_failed(id, &e);
                            self.requeue_after(pos, DEAD_LETTER_RETRY);
                            return Ok(None);
                        }
                    },
                },
                Entry::Delivered(n) => {
                    // Delivered that many times before (a restart, or a failed move),
                    // never acknowledged.
                    if max > 0
                        && n >= max
                        && self
                            .dead_letter(&m, n, "delivered without acknowledgement")
                            .is_ok()
                    {
                        return Ok(None);
                    }
                    n
                }
                _ => 0,
            };
            let n = n + 1;
            self.state.set_delivered(id, n);
            let deadline = instant_after(self.opts.lease_timeout);
            // Counted in `in_flight` since the claim (see `claim`).
            lock(self.shard(id)).insert(id, Lease { pos, deadline });
            m.delivery_count = n;
        } else {
            self.consume(id);
        }
        Ok(Some(m))
    }

    fn sync(&self) -> Result<()> {
        let t = Some(Instant::now());
        self.journal.sync()?;
        let r = self.flush_state();
        observe::record(self, observe::Op::Flush, t);
        r
    }

    /// Makes the consumer state durable (before segments below the watermark are
    /// removed: see `Queue::open_with`). A failure latches the queue.
    pub(crate) fn flush_state(&self) -> Result<()> {
        // Never again after a failure: the kernel may have dropped the dirty pages it
        // could not write, so a later flush that succeeds proves nothing about them.
        if let Some(cause) = self.latched.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        self.state.flush().map_err(|e| {
            let cause = Arc::new(e);
            self.latch(cause.clone());
            Error::Poisoned { cause }
        })
    }

    /// Latches a failed flush of the consumer state: every later write fails.
    fn latch(&self, cause: Arc<io::Error>) {
        if self.latched.set(cause.clone()).is_ok() {
            observe::event!(error, dir = %self.dir.display(), error = %cause,
                "consumer state flush failed; the queue refuses writes until reopened");
        }
    }

    /// The maintenance thread: flushes the consumer state, expires leases, moves the
    /// watermark and removes consumed segments.
    fn maintenance(&self) {
        let tick = self
            .opts
            .flush_interval
            .min(self.opts.compaction_interval)
            .min(Duration::from_millis(50));
        let mut last_flush = Instant::now();
        let mut last_compact = Instant::now();
        // The journal starts its background threads at the first append; a queue
        // expects appends, so it starts them a little after open (not on the open
        // path, and not competing with the caller's first reads), and the next
        // segment is ready when appends come a little later.
        {
            let g = lock(&self.park.lock);
            // SeqCst (this load and the ones below): pairs with the SeqCst swap in
            // `stop_background`, which then takes `park.lock` before it notifies
            // `maintenance_cv`; checked under that lock, a close cannot fall between
            // this check and the wait.
            if !self.closed.load(Ordering::SeqCst) {
                let _ = self
                    .park
                    .maintenance_cv
                    .wait_timeout(g, JOURNAL_THREADS_AFTER.min(tick));
            }
        }
        if !self.closed.load(Ordering::SeqCst) {
            if let Err(_e) = self.journal.start_background() {
                // The first append tries again and reports it.
                observe::event!(warn, dir = %self.dir.display(), error = %_e,
                    "starting the journal's background threads failed");
            }
        }
        loop {
            {
                let g = lock(&self.park.lock);
                if self.closed.load(Ordering::SeqCst) {
                    return;
                }
                let _ = self.park.maintenance_cv.wait_timeout(g, tick);
            }
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            if self.latched.get().is_some() {
                // Nothing is flushed, expired or removed until the queue is reopened
                // (see `flush_state`).
                continue;
            }
            if self.manual() {
                self.expire_leases();
                if self.next_due().is_some_and(|d| d <= Instant::now()) {
                    self.promote_due();
                }
            }
            if self.per_id() {
                self.advance();
            }
            if last_flush.elapsed() >= self.opts.flush_interval {
                last_flush = Instant::now();
                let t = Some(Instant::now());
                // A failure latches (see `flush_state`).
                let _ = self.flush_state();
                // The checkpoint records the consumed watermark next to the durable
                // position (`verify` prints it).
                self.journal
                    .set_checkpoint_extra(self.state.watermark().load(Ordering::Acquire));
                observe::record(self, observe::Op::Flush, t);
                observe::publish(self);
            }
            if self.opts.auto_compact && last_compact.elapsed() >= self.opts.compaction_interval {
                last_compact = Instant::now();
                match self.compact_pass(false) {
                    Ok(r) if r.segments_removed > 0 => {
                        observe::event!(debug, dir = %self.dir.display(),
                            segments = r.segments_removed, bytes = r.bytes_freed,
                            "compaction removed consumed segments");
                    }
                    Ok(_) => {}
                    Err(_e) => {
                        observe::event!(warn, dir = %self.dir.display(), error = %_e,
                            "compaction failed");
                    }
                }
            }
        }
    }

    fn expire_leases(&self) {
        let now = Instant::now();
        for shard in &self.leases {
            let expired: Vec<Position> = {
                let mut g = lock(shard);
                let ids: Vec<u64> = g
                    .iter()
                    .filter(|(_, l)| l.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                ids.into_iter()
                    .filter_map(|id| g.remove(&id).map(|l| l.pos))
                    .collect()
            };
            for pos in expired {
                // A failed move to the dead-letter queue is logged and counted in
                // `dead_letter`; the message is delivered again.
                let _ = self.after_failure(pos, "lease expired", None);
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// The age of the oldest message waiting (approximate under load).
    fn oldest_pending_age(&self) -> Option<Duration> {
        let w = self.state.watermark().load(Ordering::Acquire);
        let mut c = self.journal.cursor(w).ok()?;
        for _ in 0..WINDOW {
            let (id, ts) = c
                .next(&self.journal, |v| (v.id(), v.timestamp_ns()))
                .ok()??;
            if self.per_id() && self.settled_or_leased(id) {
                continue;
            }
            let t = UNIX_EPOCH + Duration::from_nanos(ts);
            return Some(SystemTime::now().duration_since(t).unwrap_or_default());
        }
        None
    }

    /// Positions delivery at `id`: IDs below count as consumed.
    ///
    /// `replay` (a seek): every lease, redelivery and delayed message is dropped and
    /// every ID from `id` on is delivered again. Otherwise (dropping the oldest segment)
    /// only what lies below `id` is dropped; acknowledgements and leases above it stay.
    pub(crate) fn reposition(&self, id: u64, replay: bool) -> Result<()> {
        let reset_state = |fed: u64| {
            let keep = |x: u64| !replay && x >= id;
            for shard in &self.leases {
                let mut g = lock(shard);
                let before = g.len();
                g.retain(|&x, _| keep(x));
                self.in_flight
                    .fetch_sub(before - g.len(), Ordering::Relaxed);
            }
            {
                let mut r = lock(&self.redeliver);
                r.retain(|p| keep(p.id()));
                self.redeliver_len.store(r.len(), Ordering::Relaxed);
            }
            {
                let mut d = lock(&self.delayed);
                d.retain(|x| keep(x.0.id));
                self.delayed_len.store(d.len(), Ordering::Relaxed);
            }
            let end = self.journal.next_id().min(id + WINDOW);
            if replay {
                for x in id..end {
                    self.state.clear(x);
                }
            } else {
                // Leased or requeued messages above `id` must not be fed twice.
                self.refeed_until.fetch_max(fed, Ordering::Relaxed);
            }
            self.state.set_watermark(id);
            let acked = if replay {
                0
            } else {
                (id..end)
                    .filter(|&x| self.state.entry(x) == Entry::Acked)
                    .count() as u64
            };
            self.acked_above
                .store(i64::try_from(acked).unwrap_or(i64::MAX), Ordering::Relaxed);
            self.acked_ahead.store(
                if self.manual() && self.sched.is_none() {
                    acked
                } else {
                    0
                },
                Ordering::Relaxed,
            );
        };
        if let Some(sched) = &self.sched {
            let mut s = lock(sched);
            let before = s.level_marks();
            reset_state(s.min_position());
            let starts = if replay {
                [id; 3]
            } else {
                before.map(|m| m.max(id))
            };
            s.reset(&self.journal, starts)?;
            if self.marks_mode() {
                if replay {
                    self.state
                        .consumed()
                        .store(id.saturating_sub(1), Ordering::Relaxed);
                }
                self.state.set_level_marks(starts);
                self.state
                    .set_watermark(starts.into_iter().min().unwrap_or(id));
            }
        } else {
            self.dispatch.reset(|src| -> Result<()> {
                reset_state(self.fed.load(Ordering::Acquire));
                src.cursor = self.journal.cursor(id)?;
                src.next_expected = id;
                // Release: pairs with the Acquire loads in `stats` and `ack`.
                self.fed.store(id, Ordering::Release);
                Ok(())
            })?;
        }
        self.wake();
        Ok(())
    }
}

#[cfg(all(test, not(ledgerq_loom)))]
mod durability_tests {
    //! What the public API cannot reach: a latched flush failure, and when the
    //! dead-letter queue's records become durable.
    use super::*;
    use crate::{AckMode, Durability};

    /// After a failed flush of the consumer state nothing claims durability again:
    /// `sync`, `compact`, `ack`, `seek_to_id`, `enqueue` and `close` fail, and
    /// `compact` removes no segment (the watermark that would allow it may not be on
    /// disk). A flush retried after a failure could succeed on pages the kernel had
    /// already dropped.
    #[test]
    fn a_latched_state_flush_failure_stops_every_later_flush_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .segment_size(64 << 10)
                .ack_mode(AckMode::Manual)
                .auto_compact(false),
        )
        .unwrap();
        for _ in 0..2000 {
            q.enqueue([5u8; 100]).unwrap();
        }
        // Every message acknowledged but the last, which stays leased.
        let mut last = None;
        while let Some(m) = q.dequeue().unwrap() {
            if let Some(prev) = last.replace(m.id()) {
                q.ack(prev).unwrap();
            }
        }
        let segments = q.stats().segments;
        assert!(segments > 2);
        q.inner
            .latch(Arc::new(io::Error::other("injected state flush failure")));
        let poisoned = |r: Result<()>| matches!(r, Err(Error::Poisoned { .. }));
        assert!(poisoned(q.ack(last.unwrap())));
        assert!(poisoned(q.sync()));
        assert!(poisoned(q.compact().map(|_| ())));
        assert!(poisoned(q.seek_to_id(1)));
        assert!(poisoned(q.enqueue(b"x").map(|_| ())));
        // Nothing is leased that could not be acknowledged.
        assert!(poisoned(q.dequeue().map(|_| ())));
        assert!(poisoned(q.dequeue_batch(5).map(|_| ())));
        assert_eq!(q.stats().segments, segments);
        assert!(poisoned(q.close()));
        // Without the latch the consumed segments go (the test's premise).
        drop(q);
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .segment_size(64 << 10)
                .auto_compact(false)
                .ack_mode(AckMode::Manual),
        )
        .unwrap();
        assert!(q.compact().unwrap().segments_removed > 0);
    }

    /// A message moved to the dead-letter queue of a Buffered queue is on disk there
    /// before this queue counts it consumed (a power loss between must not leave it in
    /// neither queue); and one moved back is on disk here before it leaves there.
    #[test]
    fn dead_letter_moves_are_durable_before_the_source_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .durability(Durability::Buffered)
                // No background flush during the test: only the moves flush.
                .flush_interval(Duration::from_secs(3600))
                .ack_mode(AckMode::Manual)
                .max_deliveries(1),
        )
        .unwrap();
        q.enqueue(b"poison").unwrap();
        let m = q.dequeue().unwrap().unwrap();
        q.nack(m.id(), "bad").unwrap();
        let dlq = q.dead_letters().unwrap();
        let dead = dlq.peek(1).unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dlq.inner.journal.durable_id() > dead[0].id(),
            "the dead letter is not durable"
        );
        let back = q.requeue_dead_letter(dead[0].id()).unwrap();
        assert!(
            q.inner.journal.durable_id() > back,
            "the requeued message is not durable"
        );
    }
}
