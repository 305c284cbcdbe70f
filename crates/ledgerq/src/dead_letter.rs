//! The dead-letter queue: a full queue in `<dir>/dead-letter` that receives messages
//! which failed `max_deliveries` times.
//!
//! A move is crash-safe in this order: the message's entry is marked "being moved"
//! (`DeadLettering`), the dead letter is appended to the dead-letter queue, then the
//! entry is marked consumed. A crash between the first two steps leaves the message
//! marked; the next open looks for it among the newest records of the dead-letter
//! queue (by its `dlq.original_id` header) and either finishes or redoes the move, so a
//! message is never both dead-lettered and deliverable. The open also moves a message
//! whose last allowed delivery ended with the crash (see `move_due_dead_letters`).
//!
//! Any message that was legal to enqueue can be moved: the journal lets a record carry
//! [`RESERVED_HEADERS`] headers and [`RESERVED_HEADERS_BYTES`] bytes of headers beyond
//! what a message may be given, which the `dlq.*` headers fit in (checked at compile
//! time below), and the segment room kept free of payload (`options::SEGMENT_SLACK`)
//! holds their encoding. A move that fails anyway leaves the message in its queue (see
//! [`Inner::dead_letter`]).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use ledgerq_journal::{
    Journal, JournalOptions, RecordIn, MAX_RECORD_HEADERS, RECORD_HEADER_LEN, RESERVED_HEADERS,
    RESERVED_HEADERS_BYTES, SEGMENT_HEADER_LEN,
};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::options::{AckMode, Durability, Options};
use crate::queue::{lock, Inner, Queue};
use crate::state::{
    Entry, StateFile, FILE_NAME as STATE_FILE, FLAG_MANUAL, FLAG_MODE_KNOWN, MAX_COUNT, WINDOW,
};

/// The dead-letter queue's directory, inside the queue's.
pub(crate) const DIR_NAME: &str = "dead-letter";

/// How many of the dead-letter queue's newest records a resumed move looks through.
const RESUME_LOOKBACK: u64 = 4096;

/// Header names added to a dead letter.
pub(crate) const H_ORIGINAL_ID: &str = "dlq.original_id";
const H_COUNT: &str = "dlq.delivery_count";
const H_REASON: &str = "dlq.reason";
const H_LAST_FAILURE: &str = "dlq.last_failure";

/// How many headers a move adds.
const DLQ_HEADERS: usize = 4;

/// Whether `key` is one of the headers a move adds (a message's own `dlq.`-prefixed
/// headers are kept like any other).
fn is_added_header(key: &str) -> bool {
    [H_ORIGINAL_ID, H_COUNT, H_REASON, H_LAST_FAILURE].contains(&key)
}
/// The longest `dlq.reason`, in characters.
const REASON_CHARS: usize = 256;
/// The most bytes of keys and values a move adds: the four keys, an ID (u64) and a
/// delivery count (u32) in decimal, a reason of [`REASON_CHARS`] characters of up to 4
/// bytes of UTF-8 each, and an RFC 3339 time with milliseconds (24 bytes; 32 allowed).
const DLQ_HEADERS_BYTES: usize = H_ORIGINAL_ID.len()
    + H_COUNT.len()
    + H_REASON.len()
    + H_LAST_FAILURE.len()
    + 20
    + 10
    + 4 * REASON_CHARS
    + 32;

// The `dlq.*` headers fit in what a record may carry beyond a message's limits...
const _: () = assert!(DLQ_HEADERS <= RESERVED_HEADERS);
const _: () = assert!(DLQ_HEADERS_BYTES <= RESERVED_HEADERS_BYTES);
// ...and a dead letter of a message whose payload and headers fill `max_message_size`
// still fits in a segment: the segment header, the record header, 6 bytes per header,
// the added keys and values, and padding fit in the room kept free of payload.
const _: () = assert!(
    SEGMENT_HEADER_LEN as usize
        + RECORD_HEADER_LEN as usize
        + 6 * MAX_RECORD_HEADERS
        + RESERVED_HEADERS_BYTES
        + 7
        <= crate::options::SEGMENT_SLACK as usize
);

impl Queue {
    /// The dead-letter queue, in `<dir>/dead-letter`: a full queue (manual-ack) whose
    /// messages are the ones that failed [`max_deliveries`](Options::max_deliveries)
    /// times, with their payload, headers (all of them, in order), priority and expiry,
    /// plus the headers `dlq.original_id`, `dlq.delivery_count`, `dlq.reason` and
    /// `dlq.last_failure` (RFC 3339). These four come beyond the header limits of a
    /// message, so a message at those limits, or as large as `max_message_size`, is
    /// moved too. It is created when first needed. It is
    /// [`Durability::Sync`](crate::Durability::Sync) whatever this queue's durability:
    /// a message leaves this queue only once its dead letter is on disk.
    ///
    /// # Errors
    ///
    /// An error opening the dead-letter queue.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), ledgerq::Error> {
    /// use ledgerq::{AckMode, Options, Queue};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = Queue::open_with(
    ///     dir.path(),
    ///     Options::new().ack_mode(AckMode::Manual).max_deliveries(1),
    /// )?;
    /// let id = q.enqueue(b"poison")?;
    /// let m = q.dequeue()?.unwrap();
    /// q.nack(m.id(), "cannot parse")?;
    /// assert!(q.dequeue()?.is_none());
    ///
    /// let dead = q.dead_letters()?.dequeue()?.unwrap();
    /// assert_eq!(dead.payload(), b"poison");
    /// assert_eq!(dead.header("dlq.original_id"), Some(id.to_string().as_str()));
    /// assert_eq!(dead.header("dlq.reason"), Some("cannot parse"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn dead_letters(&self) -> Result<&Queue> {
        self.inner.check_open()?;
        self.inner.dead_letter_queue()
    }

    /// Moves dead letter `id` back into this queue as a new message (same payload,
    /// priority, expiry and headers, without the four headers the move added) and removes it from
    /// the dead-letter queue. Returns the new ID.
    ///
    /// A crash between the two steps may leave the message in both queues (never in
    /// neither).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the dead-letter queue does not hold `id` (or it was
    /// already consumed there, or moved back by an earlier or concurrent call); the
    /// errors of an enqueue.
    pub fn requeue_dead_letter(&self, id: u64) -> Result<u64> {
        let inner = &self.inner;
        inner.check_writable()?;
        let dlq = inner.dead_letter_queue()?;
        let d = &dlq.inner;
        // One move back at a time: a second call for the same dead letter finds it
        // removed (`NotFound`) instead of appending it again.
        let _one = lock(&inner.dlq_requeue);
        let pos = d.position_of(id)?.ok_or(Error::NotFound { id })?;
        if d.state.entry(id) == crate::state::Entry::Acked {
            return Err(Error::NotFound { id });
        }
        let m = d.read_record(pos)?.ok_or(Error::NotFound { id })?;
        let headers: Vec<(&str, &str)> = m
            .headers
            .iter()
            .filter(|(k, _)| !is_added_header(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Without the `dlq.*` headers the message is back within a message's limits
        // (it was legal to enqueue); checked as an enqueue would, as this queue's
        // `max_message_size` may have changed since.
        let header_bytes = ledgerq_journal::check_headers(&headers)?;
        inner.check_size(m.payload.len().saturating_add(header_bytes))?;
        let rec = RecordIn {
            payload: &m.payload,
            priority: m.priority.as_u8(),
            expires_at_ns: expiry_ns(&m),
            headers: &headers,
            compression: 0,
            dedup_key: None,
            timestamp_ns: None,
        };
        let new_id = inner.append(&rec)?;
        inner.wake();
        // The message is on disk here before the dead-letter queue's state says it is
        // gone from there (as in a move the other way: see `dead_letter`).
        if inner.opts.durability == Durability::Buffered {
            inner.journal.sync()?;
        }
        d.discard(id);
        Ok(new_id)
    }
}

fn expiry_ns(m: &Message) -> u64 {
    m.expires_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The first line of `reason`, at most [`REASON_CHARS`] characters.
fn short_reason(reason: &str) -> String {
    reason
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(REASON_CHARS)
        .collect()
}

/// Whether one of the newest records of dead-letter queue `dlq` is message `id`'s.
fn holds_dead_letter(dlq: &Queue, id: u64) -> bool {
    dead_letters_of(&dlq.inner.journal, &[id]).contains(&id)
}

/// Which of `ids` have a dead letter among the newest [`RESUME_LOOKBACK`] records of the
/// dead-letter journal `j` (unreadable records end the search).
fn dead_letters_of(j: &Journal, ids: &[u64]) -> HashSet<u64> {
    let mut found = HashSet::new();
    let end = j.next_id();
    let from = end.saturating_sub(RESUME_LOOKBACK).max(j.first_id());
    if let Ok(mut c) = j.cursor(from) {
        while let Ok(Some(original)) = c.next(j, |v| {
            v.headers()
                .find(|(k, _)| *k == H_ORIGINAL_ID)
                .and_then(|(_, val)| val.parse::<u64>().ok())
        }) {
            if let Some(id) = original.filter(|id| ids.contains(id)) {
                found.insert(id);
            }
        }
    }
    found
}

/// At open, before anything reads the entries: settles the moves to the dead-letter
/// queue that a crash interrupted (entries still marked as being moved, from `w` to
/// `end` within the window). A message whose dead letter is in the dead-letter queue is
/// consumed, so that `pending` counts only what will be delivered. One whose dead
/// letter is not there stays marked in manual-ack mode (the open moves it again once
/// the queue is up: `move_due_dead_letters`); in auto-ack mode, which has no dead letters, it is delivered again. The
/// rewritten entries are flushed before the open goes on (a crash before redoes this).
/// Returns whether a message was consumed.
pub(crate) fn settle_interrupted_moves(
    state: &StateFile,
    dir: &Path,
    manual: bool,
    w: u64,
    end: u64,
) -> Result<bool> {
    // Only a manual-ack session moves messages, and every open settles what it finds:
    // after an auto-ack session (or with a new state file) there is nothing to look for,
    // and the open does not pay for a look at the whole window.
    let flags = state.flags();
    if state.is_new() || (flags & FLAG_MODE_KNOWN != 0 && flags & FLAG_MANUAL == 0) {
        return Ok(false);
    }
    let marked: Vec<u64> = (w..end.min(w.saturating_add(WINDOW)))
        .filter(|&id| state.entry(id) == Entry::DeadLettering)
        .collect();
    if marked.is_empty() {
        return Ok(false);
    }
    let dlq_dir = dir.join(DIR_NAME);
    let moved = if dlq_dir.is_dir() {
        let j = Journal::open_read_only(&dlq_dir, JournalOptions::new())?;
        dead_letters_of(&j, &marked)
    } else {
        HashSet::new()
    };
    for &id in &marked {
        if moved.contains(&id) {
            state.mark_acked(id);
        } else if !manual {
            state.set_delivered(id, MAX_COUNT);
        }
    }
    state
        .flush()
        .map_err(|e| crate::error::io_err("flush consumer state file", dir.join(STATE_FILE), e))?;
    Ok(!moved.is_empty())
}

impl Inner {
    /// The dead-letter queue, opening (and creating) it on first use.
    pub(crate) fn dead_letter_queue(&self) -> Result<&Queue> {
        if let Some(q) = self.dlq.get() {
            return Ok(q);
        }
        let _g = lock(&self.dlq_init);
        if let Some(q) = self.dlq.get() {
            return Ok(q);
        }
        let o = &self.opts;
        let opts = Options::new()
            .ack_mode(AckMode::Manual)
            // A move returns once its dead letter is on disk, before the source counts
            // the message consumed (see `dead_letter`). Sync journals write single
            // pages: a move costs one small flush, where a flush of a Buffered journal
            // (huge-page blocks) would write up to 2 MiB.
            .durability(Durability::Sync)
            .segment_size(o.segment_size)
            .flush_interval(o.flush_interval)
            .recovery_mode(o.recovery_mode)
            .max_deliveries(0)
            // The most a segment allows, at least this queue's limit (`validate`): the
            // journal checks a dead letter's payload against it. A dead letter's
            // headers are not counted against it, so the `dlq.*` headers never make a
            // message that was legal here too large there.
            .max_message_size(
                usize::try_from(o.segment_size.saturating_sub(crate::options::SEGMENT_SLACK))
                    .unwrap_or(usize::MAX),
            );
        let q = Queue::open_with(self.dir.join(DIR_NAME), opts)?;
        Ok(self.dlq.get_or_init(|| q))
    }

    /// Moves message `m` (delivered `count` times) to the dead-letter queue.
    ///
    /// # Errors
    ///
    /// The error of the move (opening or appending to the dead-letter queue). The
    /// message then stays in this queue, its entry back at `count` deliveries, and the
    /// failure is logged and counted ([`Stats::dead_letter_failures`]); the caller
    /// decides when it is delivered again.
    ///
    /// [`Stats::dead_letter_failures`]: crate::Stats::dead_letter_failures
    pub(crate) fn dead_letter(&self, m: &Message, count: u32, reason: &str) -> Result<()> {
        let id = m.id;
        self.state.set_dead_lettering(id);
        // The dead letter is on disk before this queue's state says the message is
        // gone (the dead-letter queue is `Durability::Sync`): the state file's pages
        // may be written back at any moment, and a power loss in between would leave
        // the message in neither queue.
        let moved = self.append_dead_letter(m, count, reason);
        if let Err(e) = moved {
            self.dead_letter_failed(id, &e);
            let written = self.dlq.get().is_some_and(|q| holds_dead_letter(q, id));
            if !written {
                self.state.set_delivered(id, count);
                return Err(e);
            }
            // Written, but perhaps not durable (a failed flush latched the dead-letter
            // queue): the entry stays marked as being moved, neither deliverable nor
            // consumed (it holds the watermark back), and the next open finishes or
            // redoes the move from what is on disk (see `resume_dead_letter`).
            return Ok(());
        }
        self.consume(id);
        crate::observe::event!(warn, dir = %self.dir.display(), id, deliveries = count,
            reason, "message moved to the dead-letter queue");
        Ok(())
    }

    /// Logs and counts a failed move of message `id`.
    pub(crate) fn dead_letter_failed(&self, id: u64, e: &Error) {
        self.dead_letter_failures.fetch_add(1, Ordering::Relaxed);
        crate::observe::event!(error, dir = %self.dir.display(), id, error = %e,
            "moving a message to the dead-letter queue failed; it stays in this queue");
        let _ = (id, e);
    }

    /// A move interrupted by a crash: finish it if the dead letter was written, else
    /// redo it.
    ///
    /// # Errors
    ///
    /// An error opening the dead-letter queue (the entry stays marked: whether the
    /// dead letter was written is unknown), or the error of a redone move (see
    /// [`dead_letter`](Inner::dead_letter): the entry is then back at
    /// [`MAX_COUNT`](crate::state::MAX_COUNT) deliveries).
    pub(crate) fn resume_dead_letter(&self, m: &Message) -> Result<()> {
        let dlq = self.dead_letter_queue()?;
        if holds_dead_letter(dlq, m.id) {
            self.consume(m.id);
            return Ok(());
        }
        // The entry held the mark, not the count: the move began at `max_deliveries`
        // failed deliveries (the limit of the session that began it, if it differed).
        let count = match self.opts.max_deliveries {
            0 => crate::state::MAX_COUNT,
            max => max,
        };
        self.dead_letter(m, count, "delivery interrupted")
    }

    /// At open (manual-ack mode): moves the messages whose move is due, `(id, None)`
    /// for a move a crash interrupted before its dead letter was written, `(id,
    /// Some(n))` for a message delivered `n >= max_deliveries` times whose last lease
    /// a crash ended. A move that fails, and an expired message, are left to the
    /// message's next delivery, which tries again (the failure is logged and counted).
    pub(crate) fn move_due_dead_letters(&self, due: &[(u64, Option<u32>)]) {
        for &(id, count) in due {
            let m = match self.position_of(id) {
                Ok(Some(pos)) => match self.read_record(pos) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue, // expired: its delivery counts it
                    Err(e) => {
                        self.dead_letter_failed(id, &e);
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) => {
                    self.dead_letter_failed(id, &e);
                    continue;
                }
            };
            let moved = match count {
                None => self.resume_dead_letter(&m),
                Some(n) => self.dead_letter(&m, n, "delivered without acknowledgement"),
            };
            if self.sched.is_none() && self.state.entry(id) == Entry::Acked {
                // Not yet fed (nothing is, at open): the feeder skips it, and `pending`
                // must not count it (as for a requeued dead letter: see `discard`).
                self.acked_ahead.fetch_add(1, Ordering::Relaxed);
            }
            if let (Err(e), None) = (moved, count) {
                // `dead_letter` logs and counts its own failures; an unopenable
                // dead-letter queue is logged here.
                if self.state.entry(id) == Entry::DeadLettering {
                    self.dead_letter_failed(id, &e);
                }
            }
        }
    }

    fn append_dead_letter(&self, m: &Message, count: u32, reason: &str) -> Result<()> {
        let dlq = self.dead_letter_queue()?;
        let original = m.id.to_string();
        let count = count.to_string();
        let reason = short_reason(reason);
        let when = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut headers: Vec<(&str, &str)> = m
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.retain(|(k, _)| !is_added_header(k));
        headers.extend([
            (H_ORIGINAL_ID, original.as_str()),
            (H_COUNT, count.as_str()),
            (H_REASON, reason.as_str()),
            (H_LAST_FAILURE, when.as_str()),
        ]);
        // Every header the message carries is kept: a record has room for these four
        // beyond a message's limits (see the checks at the top of this file).
        let rec = RecordIn {
            payload: &m.payload,
            priority: m.priority.as_u8(),
            expires_at_ns: expiry_ns(m),
            headers: &headers,
            compression: 0,
            dedup_key: None,
            timestamp_ns: None,
        };
        dlq.inner.append(&rec)?;
        dlq.inner.wake();
        Ok(())
    }
}

#[cfg(all(test, not(ledgerq_loom)))]
mod tests {
    //! A move to the dead-letter queue interrupted by a crash, made by hand: the entry
    //! marked as being moved, with or without the dead letter written.
    use super::*;
    use crate::Priority;

    /// A queue in manual-ack mode, crashed (abandoned) while message 1's move was under
    /// way, the dead letter written or not; messages 2 and 3 pending.
    fn crashed_mid_move(dir: &Path, written: bool, priorities: bool) {
        let opts = Options::new()
            .priorities(priorities)
            .ack_mode(AckMode::Manual)
            .max_deliveries(1);
        let q = Queue::open_with(dir, opts).unwrap();
        for p in [Priority::High, Priority::Low, Priority::Low] {
            q.enqueue_with(b"m", &crate::EnqueueOptions::new().priority(p))
                .unwrap();
        }
        let m = q.dequeue().unwrap().unwrap();
        assert_eq!(m.id(), 1);
        q.inner.state.set_dead_lettering(1);
        if written {
            q.inner.append_dead_letter(&m, 1, "failed").unwrap();
        }
        q.abandon();
    }

    /// Reopened in auto-ack mode, the interrupted move is settled from what the
    /// dead-letter queue holds: a written dead letter consumes the message (and the
    /// watermark moves past it); an unwritten one leaves it to be delivered. The open
    /// is not refused, and `pending` is exact. FIFO and priority queues.
    #[test]
    fn an_interrupted_move_is_settled_at_an_auto_ack_open() {
        for (written, priorities) in [(true, true), (false, true), (true, false), (false, false)] {
            let dir = tempfile::tempdir().unwrap();
            crashed_mid_move(dir.path(), written, priorities);
            let q = Queue::open(dir.path()).unwrap();
            let want = if written { 2 } else { 3 };
            assert_eq!(q.stats().pending, want, "written {written}, {priorities}");
            let ids: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
                .map(|m| m.id())
                .collect();
            assert_eq!(ids, if written { vec![2, 3] } else { vec![1, 2, 3] });
        }
    }

    /// Reopened in manual-ack mode, an interrupted move is finished at open: a message
    /// whose dead letter was written is consumed, one whose dead letter was not is
    /// moved; either way the dead letter is there before anything is dequeued, and
    /// the message is not pending.
    #[test]
    fn an_interrupted_move_is_settled_at_a_manual_ack_open() {
        for written in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            crashed_mid_move(dir.path(), written, true);
            let q = Queue::open_with(
                dir.path(),
                Options::new().ack_mode(AckMode::Manual).max_deliveries(1),
            )
            .unwrap();
            assert_eq!(q.stats().pending, 2, "written {written}");
            let dead = q.dead_letters().unwrap().peek(10).unwrap();
            assert_eq!(dead.len(), 1, "written {written}: moved at open");
            let ids: Vec<u64> = std::iter::from_fn(|| q.dequeue().unwrap())
                .map(|m| m.id())
                .collect();
            assert_eq!(ids, vec![2, 3], "written {written}");
            let dead: Vec<Message> = q.dead_letters().unwrap().peek(10).unwrap();
            assert_eq!(dead.len(), 1, "written {written}: one dead letter");
            assert_eq!(dead[0].header(H_ORIGINAL_ID), Some("1"));
            // The limit the move began at, not the entry's saturated mark.
            assert_eq!(dead[0].header(H_COUNT), Some("1"), "written {written}");
        }
    }

    /// A FIFO or priority queue whose manual-ack open moved its oldest message to the
    /// dead-letter queue, closed before anything was dequeued, opens in auto-ack mode
    /// and delivers the rest (the watermark moves over the moved message).
    #[test]
    fn a_queue_whose_open_moved_its_oldest_message_opens_in_auto_ack_mode() {
        for priorities in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let manual = Options::new()
                .priorities(priorities)
                .ack_mode(AckMode::Manual)
                .max_deliveries(1);
            let q = Queue::open_with(dir.path(), manual.clone()).unwrap();
            q.enqueue(b"a").unwrap();
            q.enqueue(b"b").unwrap();
            assert_eq!(q.dequeue().unwrap().unwrap().payload(), b"a");
            q.abandon();
            let q = Queue::open_with(dir.path(), manual).unwrap();
            assert_eq!(q.dead_letters().unwrap().peek(10).unwrap().len(), 1);
            q.close().unwrap();
            let q = Queue::open_with(dir.path(), Options::new().priorities(priorities))
                .unwrap_or_else(|e| panic!("priorities {priorities}: {e}"));
            assert_eq!(q.stats().pending, 1);
            let got: Vec<Vec<u8>> = std::iter::from_fn(|| q.dequeue().unwrap())
                .map(|m| m.payload().to_vec())
                .collect();
            assert_eq!(got, vec![b"b".to_vec()], "priorities {priorities}");
        }
    }

    /// A lease that a crash ended was a failed delivery: a message whose last allowed
    /// delivery it was is in the dead-letter queue once the queue is open again, before
    /// any dequeue, and is not pending; a message with deliveries left is delivered
    /// again. FIFO and priority queues.
    #[test]
    fn a_lease_lost_to_a_crash_on_the_last_delivery_is_dead_lettered_at_open() {
        for priorities in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let opts = Options::new()
                .priorities(priorities)
                .ack_mode(AckMode::Manual)
                .max_deliveries(2);
            let q = Queue::open_with(dir.path(), opts.clone()).unwrap();
            for p in [b"a", b"b", b"c"] {
                q.enqueue(p).unwrap();
            }
            // "a": nacked once, then leased again (its second and last delivery);
            // "b": leased once; both leases end with the crash.
            let a = q.dequeue().unwrap().unwrap();
            q.nack(a.id(), "failed").unwrap();
            let mut leased = Vec::new();
            while leased.len() < 2 {
                let m = q.dequeue().unwrap().unwrap();
                leased.push((m.payload().to_vec(), m.delivery_count()));
            }
            leased.sort();
            assert_eq!(leased, vec![(b"a".to_vec(), 2), (b"b".to_vec(), 1)]);
            q.abandon();

            let q = Queue::open_with(dir.path(), opts).unwrap();
            let dead = q.dead_letters().unwrap().peek(10).unwrap();
            assert_eq!(dead.len(), 1, "priorities {priorities}");
            assert_eq!(dead[0].payload(), b"a");
            assert_eq!(dead[0].header(H_COUNT), Some("2"));
            assert_eq!(q.stats().pending, 2, "priorities {priorities}");
            let got: Vec<(Vec<u8>, u32)> = std::iter::from_fn(|| q.dequeue().unwrap())
                .map(|m| (m.payload().to_vec(), m.delivery_count()))
                .collect();
            assert_eq!(got, vec![(b"b".to_vec(), 2), (b"c".to_vec(), 1)]);
        }
    }
}
