//! Retention and compaction: removing segments whose messages are all consumed, and
//! the disk budget's `DropOldest` policy.
//!
//! A segment is removable when every ID in it is below the consumed watermark: in
//! auto-ack mode every message below it was delivered, in manual-ack mode acknowledged
//! (a leased, nacked, delayed or dead-letter-bound message holds the watermark back).
//! Without a [`Retention`](crate::Retention) policy every removable segment goes; with
//! one, removable segments are kept for replay until a limit is exceeded, oldest first.
//! Once dedup keys have been used, a segment whose newest record is within the longest
//! dedup window stays too: the dedup table is rebuilt from those records at open.
//! Removal waits for a grace period of the consumers' read sections (see grace.rs).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::enqueue::Priority;
use crate::error::Result;
use crate::queue::{lock, Inner, Queue};
use crate::state::{Entry, WINDOW};

/// What a compaction removed, from [`Queue::compact`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Segment files removed.
    pub segments_removed: u64,
    /// Bytes of segment files removed.
    pub bytes_freed: u64,
}

/// How long compaction waits for consumers' read sections before giving up this pass.
const GRACE_WAIT: Duration = Duration::from_secs(1);

impl Queue {
    /// Removes the segments whose messages are all consumed, as the
    /// [`Retention`](crate::Retention) policy allows (all of them without one, except
    /// those whose newest record is within the longest dedup window used, from which
    /// the dedup table is rebuilt at open). Never removes a segment holding a pending,
    /// leased or dead-letter-bound message.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed), an I/O error removing a file,
    /// [`Error::Poisoned`](crate::Error::Poisoned) once a flush has failed (nothing is
    /// removed then: the consumed watermark may not be on disk).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), ledgerq::Error> {
    /// use ledgerq::{Options, Queue};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = Queue::open_with(dir.path(), Options::new().segment_size(64 << 10).auto_compact(false))?;
    /// for _ in 0..2000 {
    ///     q.enqueue([7u8; 100])?;
    /// }
    /// while q.dequeue()?.is_some() {}
    /// let report = q.compact()?;
    /// assert!(report.segments_removed > 0);
    /// assert_eq!(q.stats().segments, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn compact(&self) -> Result<crate::CompactionReport> {
        self.inner.check_writable()?;
        self.inner.compact_pass(true)
    }
}

impl Inner {
    /// One compaction pass under the retention policy. `blocking`: wait for the
    /// compaction lock (an explicit `compact`) rather than skip if another pass runs.
    pub(crate) fn compact_pass(&self, blocking: bool) -> Result<CompactionReport> {
        let _g = if blocking {
            lock(&self.compaction)
        } else {
            match self.compaction.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(CompactionReport::default()),
            }
        };
        // Acquire: pairs with the Release raise of the watermark, so every consumer that
        // claimed an ID below `w` entered its read section before `grace.wait` flips
        // the epoch (see grace.rs).
        let w = self.state.watermark().load(Ordering::Acquire);
        let segs = self.journal.segments();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // The dedup table is rebuilt at open from the records of the longest window used:
        // a segment whose newest record is within it stays.
        let horizon = self.state.dedup_horizon_ns();
        // Removable: a prefix of segments whose IDs are all below `w`, never the last.
        let removable = segs
            .iter()
            .zip(segs.iter().skip(1))
            .take_while(|(s, next)| {
                s.end_id.is_some_and(|e| e <= w)
                    && (horizon == 0 || now.saturating_sub(next.created_ns) > horizon)
            })
            .count();
        let k = match &self.opts.retention {
            None => removable,
            Some(r) => {
                let mut k = 0;
                let mut bytes: u64 = segs.iter().map(|s| s.size).sum();
                while k < removable && segs.len() - k > r.min_segments {
                    // The next segment's creation is when this one filled up: the age
                    // of its newest message, near enough.
                    let sealed_ns = segs[k + 1].created_ns;
                    let too_old = r.max_age.is_some_and(|a| {
                        // Saturating: a `max_age` past u64 nanoseconds is "never".
                        now.saturating_sub(sealed_ns)
                            > u64::try_from(a.as_nanos()).unwrap_or(u64::MAX)
                    });
                    let too_big = r.max_bytes.is_some_and(|b| bytes > b);
                    let too_many = r.max_segments.is_some_and(|m| segs.len() - k > m);
                    if !(too_old || too_big || too_many) {
                        break;
                    }
                    bytes -= segs[k].size;
                    k += 1;
                }
                k
            }
        };
        if k == 0 {
            return Ok(CompactionReport::default());
        }
        if !self.grace.wait(GRACE_WAIT) {
            return Ok(CompactionReport::default());
        }
        // The watermark that makes these segments removable reaches the disk before
        // they go: after a power loss, an older one below the first segment left would
        // read as unconsumed messages gone missing.
        self.flush_state()?;
        let n = self.journal.remove_segments_below(segs[k].base_id)?;
        Ok(CompactionReport {
            segments_removed: n as u64,
            bytes_freed: segs[..n].iter().map(|s| s.size).sum(),
        })
    }

    /// `DropOldest`: drops the oldest segment even though it holds pending messages,
    /// counting them in `dropped`. Returns whether there is room now (a segment was
    /// removed, or another thread made room first).
    pub(crate) fn drop_oldest(&self) -> Result<bool> {
        let _g = lock(&self.compaction);
        // Another producer's drop may have made room while this one waited for the lock:
        // one drop for one shortage.
        if self.below_budget() {
            return Ok(true);
        }
        let segs = self.journal.segments();
        if segs.len() < 2 {
            return Ok(false);
        }
        let below = segs[1].base_id;
        let w = self.state.watermark().load(Ordering::Acquire);
        if w < below {
            // Every message below `below` counts as consumed from now on.
            // As in a seek: no consumer between a claim and its raise of the watermark
            // while the consumption point moves (see `Grace::pause`).
            let paused = self.grace.pause();
            let lost = self.pending_in(w.max(segs[0].base_id), below)?;
            self.reposition(below, false)?;
            drop(paused);
            self.dropped.fetch_add(lost, Ordering::Relaxed);
            if self.marks_mode() {
                self.state.consumed().fetch_add(lost, Ordering::Relaxed);
            }
            crate::observe::event!(warn, dir = %self.dir.display(), dropped = lost,
                "disk budget reached: dropped the oldest segment of pending messages");
        }
        if !self.grace.wait(GRACE_WAIT) {
            // A consumer is still reading below the new consumption point: the segment
            // is removable, and a later round (this enqueue's retry, or compaction)
            // removes it. Not "no room": that would refuse the enqueue.
            return Ok(true);
        }
        // The raised watermark reaches the disk before the segment goes (see
        // `compact_pass`).
        self.flush_state()?;
        Ok(self.journal.remove_segments_below(below)? > 0)
    }

    /// How many messages with IDs in `lo..below` are pending: what dropping them loses.
    /// Above the watermark some may be consumed already: acknowledged (or leased, or on
    /// their way to the dead-letter queue) in manual-ack mode, delivered ahead of a lower
    /// level in priority auto-ack mode. Called with the read sections paused, so no
    /// consumer is between a claim and its bookkeeping.
    fn pending_in(&self, lo: u64, below: u64) -> Result<u64> {
        let span = below.saturating_sub(lo);
        if let (true, Some(sched)) = (self.marks_mode(), &self.sched) {
            // A level's messages below its mark are delivered; an acknowledgement from
            // a manual-ack session is consumed too (the scheduler skips it).
            let marks = lock(sched).level_marks();
            let mut pending = 0;
            let mut cursor = self.journal.cursor(lo)?;
            while let Some((id, prio)) = cursor.next_checked_if(
                &self.journal,
                |_| false,
                |v| (v.position().id(), v.priority()),
            )? {
                if id >= below {
                    break;
                }
                let level = usize::from(Priority::from_stored(prio).as_u8());
                if id >= marks[level] && self.state.entry(id) != Entry::Acked {
                    pending += 1;
                }
            }
            Ok(pending)
        } else if self.manual() {
            // Per-ID entries exist only within the window above the watermark.
            let end = below.min(lo.saturating_add(WINDOW));
            let settled = (lo..end).filter(|&id| self.settled_or_leased(id)).count();
            Ok(span - settled as u64)
        } else {
            Ok(span)
        }
    }
}
