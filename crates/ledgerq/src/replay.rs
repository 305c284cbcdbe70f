//! Reading the journal from a point: seek, peek, and the dedup table's rebuild at open.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ledgerq_journal::Position;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::priority::{pick, Slot};
use crate::queue::{now_ns, Inner, Queue};
use crate::state::{Entry, WINDOW};

impl Queue {
    /// Moves the consumption point to message `id`: messages before it count as
    /// consumed, and every retained message from `id` on is delivered (again).
    ///
    /// Leases, redeliveries and backoffs are dropped (an `ack` of a message leased
    /// before the seek returns [`Error::NotInFlight`]); a dequeue running concurrently
    /// may still return a message it claimed before the seek.
    ///
    /// # Errors
    ///
    /// [`Error::SeekOutOfRange`] if `id` is older than the oldest retained message
    /// (removed by compaction or retention) or beyond the next ID;
    /// [`Error::Poisoned`] once a flush of the consumer state has failed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), ledgerq::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = ledgerq::Queue::open(dir.path())?;
    /// let ids = q.enqueue_batch(["a", "b", "c"])?;
    /// while q.dequeue()?.is_some() {}
    /// q.seek_to_id(ids.start + 1)?;
    /// assert_eq!(q.dequeue()?.unwrap().payload(), b"b");
    /// # Ok(())
    /// # }
    /// ```
    pub fn seek_to_id(&self, id: u64) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        // No compaction removes segments between the check below and the move of the
        // watermark: a watermark below the first segment would read as messages gone
        // missing at the next open.
        let _compaction = crate::queue::lock(&inner.compaction);
        let first = inner.journal.first_id();
        let next = inner.journal.next_id();
        if id < first || id > next {
            return Err(Error::SeekOutOfRange { id, first, next });
        }
        // No consumer is between a claim and its delivery while the consumption point
        // moves: one that claimed a handle from before the seek would otherwise raise
        // the watermark past `id` after the move, and the messages from `id` on would
        // count as consumed at the next open (and could be compacted away).
        let _paused = inner.grace.pause();
        match inner.reposition(id, true) {
            Err(Error::Journal(ledgerq_journal::Error::NotFound { .. })) => {
                Err(Error::SeekOutOfRange {
                    id,
                    first: inner.journal.first_id(),
                    next,
                })
            }
            r => r,
        }
    }

    /// Moves the consumption point to the first message enqueued at or after `t`
    /// (see [`seek_to_id`](Queue::seek_to_id)). A time after the newest message moves
    /// it to the end.
    ///
    /// # Errors
    ///
    /// [`Error::SeekOutOfRange`] if messages from `t` on were already removed;
    /// [`Error::Poisoned`] once a flush of the consumer state has failed.
    pub fn seek_to_time(&self, t: SystemTime) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let first_ts = inner.first_timestamp()?;
        if let Some(ts) = first_ts {
            let t_ns = t
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            let first = inner.journal.first_id();
            // Messages from `t` on would include some before the oldest retained one.
            if t_ns < ts && first > 1 {
                return Err(Error::SeekOutOfRange {
                    id: first.saturating_sub(1),
                    first,
                    next: inner.journal.next_id(),
                });
            }
        }
        let id = inner.journal.seek_time(t)?;
        self.seek_to_id(id)
    }

    /// The next `n` deliverable messages, in the order they would be delivered (by
    /// priority in a priority queue), changing nothing: no delivery is recorded and no
    /// lease taken. Expired, consumed, leased and backed-off messages are left out. A
    /// snapshot: concurrent consumers may take these messages meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), ledgerq::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = ledgerq::Queue::open(dir.path())?;
    /// q.enqueue_batch(["a", "b"])?;
    /// let seen: Vec<Vec<u8>> = q.peek(5)?.into_iter().map(|m| m.into_payload()).collect();
    /// assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()]);
    /// assert_eq!(q.dequeue()?.unwrap().payload(), b"a");
    /// # Ok(())
    /// # }
    /// ```
    pub fn peek(&self, n: usize) -> Result<Vec<Message>> {
        let inner = &self.inner;
        inner.check_open()?;
        let _section = inner.grace.enter();
        inner.peek(n)
    }
}

impl Inner {
    /// The enqueue time of the oldest retained message.
    fn first_timestamp(&self) -> Result<Option<u64>> {
        let mut c = self.journal.cursor(self.journal.first_id())?;
        Ok(c.next(&self.journal, |v| v.timestamp_ns())?)
    }

    fn peek(&self, n: usize) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        let now = now_ns();
        let per_id = self.manual();
        // Priority auto-ack mode: level `l` is consumed below `marks[l]`.
        let marks = if self.marks_mode() {
            self.state.level_marks()
        } else {
            [0; 3]
        };
        // Redeliveries go first.
        if self.manual() {
            for pos in self.redeliveries() {
                if out.len() == n {
                    return Ok(out);
                }
                if let Some(m) = self.peek_one(pos)? {
                    out.push(m);
                }
            }
        }
        let w = self
            .state
            .watermark()
            .load(std::sync::atomic::Ordering::Acquire);
        let mut c = self.journal.cursor(w)?;
        // Candidates per level (one level when FIFO), at most `n` each.
        let levels = if self.priorities_on() {
            crate::Priority::LEVELS
        } else {
            1
        };
        let mut cand: Vec<std::collections::VecDeque<Slot>> = vec![Default::default(); levels];
        let want = n - out.len();
        let mut scanned = 0u64;
        while scanned < WINDOW && cand.iter().any(|c| c.len() < want) {
            let Some((pos, prio, ts, exp)) = c.next(&self.journal, |v| {
                (
                    v.position(),
                    v.priority(),
                    v.timestamp_ns(),
                    v.expires_at_ns(),
                )
            })?
            else {
                break;
            };
            scanned += 1;
            let id = pos.id();
            if exp != 0 && exp <= now {
                continue;
            }
            // Requeued messages were listed first.
            if per_id && (self.settled_or_leased(id) || self.is_requeued(id)) {
                continue;
            }
            let level = if levels == 1 {
                0
            } else {
                usize::from(crate::Priority::from_stored(prio).as_u8())
            };
            if levels > 1 && id < marks[level] {
                continue;
            }
            if cand[level].len() < want {
                cand[level].push_back(Slot {
                    pos,
                    timestamp_ns: ts,
                });
            }
        }
        let window = self.opts.starvation_window;
        while out.len() < n {
            let fronts: Vec<Option<Slot>> = cand.iter().map(|c| c.front().copied()).collect();
            let Some(level) = pick(
                &fronts,
                now,
                if levels == 1 { Duration::ZERO } else { window },
            ) else {
                break;
            };
            let Some(slot) = cand[level].pop_front() else {
                break;
            };
            if let Some(m) = self.peek_one(slot.pos)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// A message as a delivery would return it, without recording anything.
    fn peek_one(&self, pos: Position) -> Result<Option<Message>> {
        let Some(mut m) = self.read_record(pos)? else {
            return Ok(None);
        };
        if self.manual() {
            if let Entry::Delivered(k) = self.state.entry(pos.id()) {
                m.delivery_count = k + 1;
            }
        }
        Ok(Some(m))
    }

    /// Rebuilds the dedup table from the keys stored in the records of the longest
    /// window used: the table can never disagree with the journal.
    pub(crate) fn rebuild_dedup(&self) -> Result<()> {
        let horizon = self.state.dedup_horizon_ns();
        if horizon == 0 {
            return Ok(());
        }
        let now = now_ns();
        let since = UNIX_EPOCH + Duration::from_nanos(now.saturating_sub(horizon));
        let from = self.journal.seek_time(since)?;
        let mut c = self.journal.cursor(from)?;
        while let Some(found) = c.next(&self.journal, |v| {
            v.dedup_key().and_then(|field| {
                let (w, key) = field.split_at_checked(8)?;
                let window = u64::from_le_bytes(w.try_into().ok()?);
                Some((key.to_vec(), v.id(), v.timestamp_ns(), window))
            })
        })? {
            if let Some((key, id, enqueued, window)) = found {
                self.dedup.rebuild_insert(&key, id, enqueued, window, now);
            }
        }
        Ok(())
    }
}
