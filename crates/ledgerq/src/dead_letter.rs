//! The dead-letter queue: a full queue in `<dir>/dead-letter` that receives messages
//! which failed `max_deliveries` times.
//!
//! A move is crash-safe in this order: the message's entry is marked "being moved"
//! (`DeadLettering`), the dead letter is appended to the dead-letter queue, then the
//! entry is marked consumed. A crash between the first two steps leaves the message
//! marked; the next delivery attempt looks for it among the newest records of the
//! dead-letter queue (by its `dlq.original_id` header) and either finishes or redoes
//! the move, so a message is never both dead-lettered and deliverable.

use std::time::SystemTime;

use ledgerq_journal::RecordIn;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::options::{AckMode, Options};
use crate::queue::{lock, Inner, Queue};

/// The dead-letter queue's directory, inside the queue's.
pub(crate) const DIR_NAME: &str = "dead-letter";

/// How many of the dead-letter queue's newest records a resumed move looks through.
const RESUME_LOOKBACK: u64 = 4096;

/// Header names added to a dead letter.
pub(crate) const H_ORIGINAL_ID: &str = "dlq.original_id";
const H_COUNT: &str = "dlq.delivery_count";
const H_REASON: &str = "dlq.reason";
const H_LAST_FAILURE: &str = "dlq.last_failure";

impl Queue {
    /// The dead-letter queue, in `<dir>/dead-letter`: a full queue (manual-ack) whose
    /// messages are the ones that failed [`max_deliveries`](Options::max_deliveries)
    /// times, with their payload, headers, priority and expiry, plus the headers
    /// `dlq.original_id`, `dlq.delivery_count`, `dlq.reason` and `dlq.last_failure`
    /// (RFC 3339). It is created when first needed.
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
    /// priority, expiry and headers, without the `dlq.*` headers) and removes it from
    /// the dead-letter queue. Returns the new ID.
    ///
    /// A crash between the two steps may leave the message in both queues (never in
    /// neither).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the dead-letter queue does not hold `id` (or it was
    /// already consumed there); the errors of an enqueue.
    pub fn requeue_dead_letter(&self, id: u64) -> Result<u64> {
        let inner = &self.inner;
        inner.check_writable()?;
        let dlq = inner.dead_letter_queue()?;
        let d = &dlq.inner;
        let pos = d.position_of(id)?.ok_or(Error::NotFound { id })?;
        if d.state.entry(id) == crate::state::Entry::Acked {
            return Err(Error::NotFound { id });
        }
        let m = d.read_record(pos)?.ok_or(Error::NotFound { id })?;
        let headers: Vec<(&str, &str)> = m
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("dlq."))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
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
        d.discard(id);
        Ok(new_id)
    }
}

fn expiry_ns(m: &Message) -> u64 {
    m.expires_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The first line of `reason`, at most 256 characters.
fn short_reason(reason: &str) -> String {
    reason
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(256)
        .collect()
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
            .durability(o.durability)
            .segment_size(o.segment_size)
            .flush_interval(o.flush_interval)
            .recovery_mode(o.recovery_mode)
            .max_deliveries(0)
            .max_message_size(
                usize::try_from(o.segment_size.saturating_sub(4096)).unwrap_or(usize::MAX),
            );
        let q = Queue::open_with(self.dir.join(DIR_NAME), opts)?;
        Ok(self.dlq.get_or_init(|| q))
    }

    /// Moves message `m` (delivered `count` times) to the dead-letter queue.
    pub(crate) fn dead_letter(&self, m: Message, count: u32, reason: &str) -> Result<()> {
        let id = m.id;
        self.state.set_dead_lettering(id);
        self.append_dead_letter(&m, count, reason)?;
        self.consume(id);
        crate::observe::event!(warn, dir = %self.dir.display(), id, deliveries = count,
            reason, "message moved to the dead-letter queue");
        Ok(())
    }

    /// A move interrupted by a crash: finish it if the dead letter was written, else
    /// redo it.
    pub(crate) fn resume_dead_letter(&self, m: Message) -> Result<()> {
        let dlq = self.dead_letter_queue()?;
        let d = &dlq.inner;
        let end = d.journal.next_id();
        let from = end
            .saturating_sub(RESUME_LOOKBACK)
            .max(d.journal.first_id());
        let want = m.id.to_string();
        let mut found = false;
        if let Ok(mut c) = d.journal.cursor(from) {
            while let Ok(Some(hit)) = c.next(&d.journal, |v| {
                v.headers()
                    .any(|(k, val)| k == H_ORIGINAL_ID && val == want)
            }) {
                if hit {
                    found = true;
                    break;
                }
            }
        }
        if !found {
            self.append_dead_letter(&m, crate::state::MAX_COUNT, "delivery interrupted")?;
        }
        self.consume(m.id);
        Ok(())
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
        headers.retain(|(k, _)| !k.starts_with("dlq."));
        headers.extend([
            (H_ORIGINAL_ID, original.as_str()),
            (H_COUNT, count.as_str()),
            (H_REASON, reason.as_str()),
            (H_LAST_FAILURE, when.as_str()),
        ]);
        // A message may already carry 61+ headers: keep the dlq.* ones within the limit.
        let over = headers.len().saturating_sub(ledgerq_journal::MAX_HEADERS);
        if over > 0 {
            headers.drain(..over);
        }
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
