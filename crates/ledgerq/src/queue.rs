//! [`Queue`]: the journal, the dispatch ring and the consumer state joined together.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ledgerq_journal::{
    Cursor, Journal, JournalOptions, Position, RecordIn, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};

use crate::dispatch::Dispatch;
use crate::error::{io_err, Error, Result};
use crate::grace::Grace;
use crate::message::Message;
use crate::options::{AckMode, Options};
use crate::state::{Entry, StateFile, WINDOW};
use crate::stats::Stats;

/// Lease shards: manual-mode leases are spread over this many mutexes.
const SHARDS: usize = 16;

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
    inner: Arc<Inner>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: Options,
    journal: Journal,
    dispatch: Dispatch<FeedSource, Position>,
    state: StateFile,
    /// Manual mode: messages delivered and not yet acknowledged.
    leases: Vec<Mutex<HashMap<u64, Lease>>>,
    in_flight: AtomicUsize,
    /// Manual mode: messages to deliver again (nacked or lease expired), before new ones.
    redeliver: Mutex<VecDeque<Position>>,
    redeliver_len: AtomicUsize,
    /// The first ID the feeder has not yet moved into the ring.
    fed: AtomicU64,
    /// Manual mode: IDs at or above `fed` already acknowledged (found at open), which
    /// the feeder will skip; subtracted from `pending`.
    acked_ahead: AtomicU64,
    closed: AtomicBool,
    /// Read sections of consumers, waited for before compaction removes segments.
    grace: Grace,
    park: Park,
    /// The error of a failed consumer-state flush, latched for good: checked by every
    /// write with one atomic load.
    latched: OnceLock<Arc<io::Error>>,
}

struct Lease {
    pos: Position,
    deadline: Instant,
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
                fs::create_dir_all(&dir).map_err(|e| io_err("create queue directory", &dir, e))?;
            }
            Err(e) => return Err(io_err("read queue directory", &dir, e)),
        }
        // IDs the consumer state already counts as consumed must never be assigned again,
        // even if the journal's tail was lost (power loss in buffered mode).
        let consumed_below = crate::state::peek_watermark(&dir);
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
        let jopts = JournalOptions::new()
            .min_next_id(consumed_below)
            .segment_size(opts.segment_size)
            .durability(opts.durability)
            .flush_interval(opts.flush_interval)
            .max_record_size(opts.get_max_message_size())
            .recovery_mode(opts.recovery_mode);
        let journal = Journal::open(&dir, jopts)?;
        let state = StateFile::open(&dir)?;
        let first = journal.first_id();
        let end = journal.next_id();
        // `min_next_id` keeps `end` at or above the watermark; the clamp only matters if
        // the state file changed between the peek and the lock.
        let w = state.watermark().load(Ordering::SeqCst).max(first).min(end);
        state.set_watermark(w);
        let acked_ahead = if opts.ack_mode == AckMode::Manual {
            (w..end.min(w + WINDOW))
                .filter(|&id| state.entry(id) == Entry::Acked)
                .count() as u64
        } else {
            0
        };
        let cursor = journal.cursor(w)?;
        let inner = Arc::new(Inner {
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
            },
            latched: OnceLock::new(),
            dir,
            opts,
            journal,
            state,
        });
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("ledgerq-maintenance".into())
            .spawn(move || worker.maintenance())
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
    /// on stable storage.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`], [`Error::Closed`], [`Error::NoSpace`],
    /// [`Error::Poisoned`] after a failed flush.
    pub fn enqueue(&self, payload: impl AsRef<[u8]>) -> Result<u64> {
        let payload = payload.as_ref();
        self.inner.check_writable()?;
        self.inner.check_size(payload.len())?;
        let id = self.inner.journal.append(&RecordIn::new(payload))?;
        self.inner.wake();
        Ok(id)
    }

    /// Appends several messages with one reservation; their IDs are contiguous.
    ///
    /// Either all are appended or none (every size is checked before anything is written).
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Queue::enqueue).
    pub fn enqueue_batch<I>(&self, payloads: I) -> Result<Range<u64>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.inner.check_writable()?;
        let items: Vec<I::Item> = payloads.into_iter().collect();
        let mut records = Vec::with_capacity(items.len());
        let mut size = 0u64;
        for p in &items {
            let p = p.as_ref();
            self.inner.check_size(p.len())?;
            size += u64::from(RECORD_HEADER_LEN) + p.len() as u64 + 7;
            records.push(RecordIn::new(p));
        }
        let max = self.inner.opts.segment_size - u64::from(SEGMENT_HEADER_LEN);
        if size > max {
            return Err(Error::BatchTooLarge { size, max });
        }
        if records.is_empty() {
            let next = self.inner.journal.next_id();
            return Ok(next..next);
        }
        let ids = self.inner.journal.append_batch(&records)?;
        self.inner.wake();
        Ok(ids)
    }

    /// Takes the next message, never blocking: `Ok(None)` when nothing is ready.
    ///
    /// In [`AckMode::Auto`] the message is consumed; in [`AckMode::Manual`] it is leased
    /// until [`ack`](Queue::ack), [`nack`](Queue::nack) or the lease timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], or [`Error::Corrupt`] if the next record cannot be read.
    pub fn dequeue(&self) -> Result<Option<Message>> {
        self.inner.check_open()?;
        self.inner.dequeue_one()
    }

    /// Takes the next message, parking up to `timeout` for one to arrive.
    ///
    /// A parked consumer costs no CPU and is woken as soon as a message is committed.
    ///
    /// # Errors
    ///
    /// As [`dequeue`](Queue::dequeue); [`Error::Closed`] if the queue is closed while waiting.
    pub fn dequeue_timeout(&self, timeout: Duration) -> Result<Option<Message>> {
        let deadline = Instant::now().checked_add(timeout);
        self.inner.dequeue_wait(deadline)
    }

    /// Takes up to `max` messages that are ready, in ID order, never blocking.
    ///
    /// # Errors
    ///
    /// As [`dequeue`](Queue::dequeue).
    pub fn dequeue_batch(&self, max: usize) -> Result<Vec<Message>> {
        self.inner.check_open()?;
        self.inner.dequeue_many(max)
    }

    /// Acknowledges a message leased by a manual-mode dequeue: it is consumed.
    ///
    /// # Errors
    ///
    /// [`Error::NotInFlight`] if `id` is not leased (unknown, already acknowledged,
    /// or auto-ack mode).
    pub fn ack(&self, id: u64) -> Result<()> {
        self.inner.check_open()?;
        let inner = &self.inner;
        if lock(inner.shard(id)).remove(&id).is_none() {
            return Err(Error::NotInFlight { id });
        }
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        inner.state.set_acked(id);
        inner.state.advance(inner.fed.load(Ordering::Acquire));
        Ok(())
    }

    /// Gives a leased message back: it is delivered again (to any consumer) with its
    /// delivery count one higher.
    ///
    /// `reason` is not stored yet: it is meant for the dead-letter record of a message
    /// that keeps failing, which this version does not have.
    ///
    /// # Errors
    ///
    /// [`Error::NotInFlight`] if `id` is not leased.
    pub fn nack(&self, id: u64, _reason: &str) -> Result<()> {
        self.inner.check_open()?;
        let inner = &self.inner;
        let lease = lock(inner.shard(id))
            .remove(&id)
            .ok_or(Error::NotInFlight { id })?;
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        inner.requeue(lease.pos);
        Ok(())
    }

    /// A blocking iterator over messages: each `next` waits for the next message and the
    /// iterator ends when the queue is closed.
    pub fn stream(&self) -> Stream<'_> {
        Stream { queue: self }
    }

    /// A snapshot of the queue's counters.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let next_id = inner.journal.next_id();
        let fed = inner.fed.load(Ordering::Acquire);
        let segments = inner.journal.segments();
        Stats {
            pending: next_id
                .saturating_sub(fed)
                .saturating_sub(inner.acked_ahead.load(Ordering::Relaxed))
                + inner.dispatch.len() as u64
                + inner.redeliver_len.load(Ordering::Relaxed) as u64,
            in_flight: inner.in_flight.load(Ordering::Relaxed) as u64,
            total_enqueued: next_id.saturating_sub(1),
            next_id,
            segments: segments.len() as u64,
            disk_bytes: inner.journal.disk_bytes(),
        }
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

    /// Flushes and closes the queue: parked consumers and streams wake up, and every later
    /// call returns [`Error::Closed`]. `Drop` does the same, ignoring errors.
    ///
    /// # Errors
    ///
    /// The error of the final flush.
    pub fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        {
            let _g = lock(&inner.park.lock);
            inner.park.seq.fetch_add(1, Ordering::SeqCst);
            inner.park.cv.notify_all();
            inner.park.maintenance_cv.notify_all();
        }
        if let Some(h) = lock(&self.maintenance).take() {
            let _ = h.join();
        }
        let synced = inner.sync();
        // Releases the directory's lock: the queue can be opened again at once, even while
        // this handle exists.
        let shut = inner.journal.shutdown().map_err(Error::from);
        synced.and(shut)
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
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

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if let Some(cause) = self.latched.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<()> {
        let max = self.opts.get_max_message_size();
        if size > max {
            return Err(Error::MessageTooLarge { size, max });
        }
        Ok(())
    }

    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Lease>> {
        &self.leases[(id as usize) % SHARDS]
    }

    fn manual(&self) -> bool {
        self.opts.ack_mode == AckMode::Manual
    }

    /// Wakes parked consumers, if any, after a commit.
    fn wake(&self) {
        // SeqCst fence: orders this thread's commit (a Release store in the journal)
        // before the load of `waiters`; pairs with the fence in `dequeue_wait` (Dekker:
        // either the consumer sees the commit, or we see the consumer parked).
        fence(Ordering::SeqCst);
        if self.park.waiters.load(Ordering::Relaxed) != 0 {
            let _g = lock(&self.park.lock);
            self.park.seq.fetch_add(1, Ordering::SeqCst);
            self.park.cv.notify_all();
        }
    }

    fn requeue(&self, pos: Position) {
        lock(&self.redeliver).push_back(pos);
        self.redeliver_len.fetch_add(1, Ordering::Relaxed);
        self.wake();
    }

    fn dequeue_wait(&self, deadline: Option<Instant>) -> Result<Option<Message>> {
        loop {
            self.check_open()?;
            let key = self.park.seq.load(Ordering::SeqCst);
            self.park.waiters.fetch_add(1, Ordering::SeqCst);
            // SeqCst fence: pairs with the one in `wake` (see there).
            fence(Ordering::SeqCst);
            let got = self.dequeue_one();
            if !matches!(got, Ok(None)) {
                self.park.waiters.fetch_sub(1, Ordering::SeqCst);
                return got;
            }
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
            if timed_out {
                return Ok(None);
            }
        }
    }

    fn dequeue_one(&self) -> Result<Option<Message>> {
        // From the claim to the end of the read: compaction waits for this section.
        let _section = self.grace.enter();
        if self.manual() && self.redeliver_len.load(Ordering::Relaxed) != 0 {
            let pos = lock(&self.redeliver).pop_front();
            if let Some(pos) = pos {
                self.redeliver_len.fetch_sub(1, Ordering::Relaxed);
                return self.deliver(pos).map(Some);
            }
        }
        let fill = |src: &mut FeedSource, room: usize, push: &mut dyn FnMut(Position) -> bool| {
            self.fill(src, room, push)
        };
        match self.dispatch.pop(&fill)? {
            Some(pos) => self.deliver(pos).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `max` ready messages: redeliveries first (manual mode), then handles popped
    /// from the ring in batches, with one watermark update for the batch (auto mode).
    fn dequeue_many(&self, max: usize) -> Result<Vec<Message>> {
        // From the first claim to the end of the last read: compaction waits for this.
        let _section = self.grace.enter();
        let mut out = Vec::with_capacity(max.min(1024));
        while out.len() < max && self.manual() && self.redeliver_len.load(Ordering::Relaxed) != 0 {
            let pos = lock(&self.redeliver).pop_front();
            let Some(pos) = pos else { break };
            self.redeliver_len.fetch_sub(1, Ordering::Relaxed);
            out.push(self.deliver(pos)?);
        }
        let fill = |src: &mut FeedSource, room: usize, push: &mut dyn FnMut(Position) -> bool| {
            self.fill(src, room, push)
        };
        let mut positions = Vec::new();
        while out.len() < max {
            positions.clear();
            let want = (max - out.len()).min(self.dispatch.capacity());
            let n = match self.dispatch.pop_batch(&fill, &mut positions, want) {
                Ok(n) => n,
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            };
            let manual = self.manual();
            let mut last_read = None;
            let mut failed = None;
            for &pos in &positions {
                let m = if manual {
                    self.deliver(pos)
                } else {
                    self.read_message(pos)
                };
                match m {
                    Ok(m) => {
                        last_read = Some(m.id);
                        out.push(m);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let (false, Some(last)) = (manual, last_read) {
                self.state.raise(last + 1);
            }
            if let Some(e) = failed {
                return if out.is_empty() { Err(e) } else { Ok(out) };
            }
            if n < want {
                break;
            }
        }
        Ok(out)
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
            if manual && self.state.entry(id) == Entry::Acked {
                let _ = self
                    .acked_ahead
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                continue;
            }
            pushed += 1;
            if !push(pos) {
                break;
            }
        }
        Ok(())
    }

    /// Reads a message's payload and timestamp; the delivery is recorded by `deliver` or
    /// `delivered`.
    fn read_message(&self, pos: Position) -> Result<Message> {
        let (payload, timestamp_ns) = self
            .journal
            .read(pos, |v| (v.payload().to_vec(), v.timestamp_ns()))?;
        Ok(Message {
            id: pos.id(),
            payload,
            timestamp: UNIX_EPOCH + Duration::from_nanos(timestamp_ns),
            delivery_count: 1,
        })
    }

    /// Reads a message and records its delivery: a lease (manual mode) or the watermark
    /// (auto mode).
    fn deliver(&self, pos: Position) -> Result<Message> {
        let id = pos.id();
        let mut m = self.read_message(pos)?;
        m.delivery_count = if self.manual() {
            let n = match self.state.entry(id) {
                Entry::Delivered(n) => n + 1,
                _ => 1,
            };
            self.state.set_delivered(id, n);
            let deadline = Instant::now() + self.opts.lease_timeout;
            lock(self.shard(id)).insert(id, Lease { pos, deadline });
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            n
        } else {
            self.state.raise(id + 1);
            1
        };
        Ok(m)
    }

    fn sync(&self) -> Result<()> {
        self.journal.sync()?;
        self.state.flush().map_err(|e| {
            let cause = Arc::new(e);
            let _ = self.latched.set(cause.clone());
            Error::Poisoned { cause }
        })
    }

    /// The maintenance thread: flushes the consumer state, expires leases, moves the
    /// watermark and removes consumed segments.
    fn maintenance(&self) {
        let tick = self.opts.flush_interval.min(Duration::from_millis(50));
        let mut last_flush = Instant::now();
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
            if self.manual() {
                self.expire_leases();
                self.state.advance(self.fed.load(Ordering::Acquire));
            }
            if last_flush.elapsed() >= self.opts.flush_interval {
                last_flush = Instant::now();
                if let Err(e) = self.state.flush() {
                    let _ = self.latched.set(Arc::new(e));
                }
                if self.opts.auto_compact {
                    // Acquire: pairs with the Release raise of the watermark, so every
                    // consumer that claimed an ID below `w` entered its read section
                    // before we flip the epoch in `grace.wait` (see grace.rs).
                    let w = self.state.watermark().load(Ordering::Acquire);
                    if self.grace.wait(Duration::from_secs(1)) {
                        let _ = self.journal.remove_segments_below(w);
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
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.requeue(pos);
            }
        }
    }
}
