//! Priority delivery: one journal cursor and one bounded FIFO of handles per level.
//!
//! Each level's cursor reads the journal in ID order and keeps the records of its own
//! level, so every record is read once per level: the cost per dequeue does not grow
//! with the backlog (amortised), and memory is three FIFOs of at most `ring_capacity`
//! handles each, whatever the backlog.
//!
//! What survives a restart depends on the ack mode:
//! - auto-ack: a per-level watermark `W[l]` in the state file ("every level-`l` message
//!   below `W[l]` is consumed"), set under the scheduler's mutex at each pop to the
//!   level's oldest queued handle (or its cursor when none is queued). The queue's
//!   watermark is the least of the three. No window limits how far a cursor reads.
//! - manual-ack: the state file's per-ID entries, as in FIFO mode, so the cursors never
//!   run more than the state file's window (131,072 IDs) past the oldest unacknowledged
//!   message: priority order holds within that window.
//!
//! Choice of the next message: the front of the highest non-empty level, unless the
//! front of some level has waited at least the starvation window: then the oldest such
//! front is served first. Before a level is served, every higher level's cursor has
//! read up to the end of what is committed, so no committed higher message is passed
//! over.
//!
//! The scheduler is one mutex: priority mode trades the lock-free ring for this.

use std::collections::VecDeque;
use std::time::Duration;

use ledgerq_journal::{Cursor, Journal, Position};

use crate::enqueue::Priority;
use crate::error::Result;
use crate::state::{Entry, StateFile, WINDOW};

/// A handle waiting in a level's FIFO.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) pos: Position,
    pub(crate) timestamp_ns: u64,
}

struct Level {
    cursor: Cursor,
    /// The ID after the last record this cursor read (holes between are marked).
    next_expected: u64,
    fifo: VecDeque<Slot>,
}

/// The scheduler's state, behind the queue's mutex.
pub(crate) struct Sched {
    levels: Vec<Level>,
    capacity: usize,
}

/// What the scheduler reports to the queue while it reads the journal.
pub(crate) trait Sink {
    /// `id` was never assigned a message (a recovered hole): mark it consumed.
    fn hole(&self, id: u64);
    /// Whether a record with this state entry is not to be queued (consumed, or already
    /// leased or requeued).
    fn skip(&self, id: u64, entry: Entry) -> bool;
    /// Whether delivery state is per ID (manual-ack mode), which bounds how far the
    /// cursors may read past the watermark.
    fn windowed(&self) -> bool;
}

impl Sched {
    /// A scheduler whose level `l` cursor starts at `from[l]`.
    pub(crate) fn new(journal: &Journal, from: [u64; 3], capacity: usize) -> Result<Sched> {
        let mut levels = Vec::with_capacity(Priority::LEVELS);
        for start in from {
            levels.push(Level {
                cursor: journal.cursor(start)?,
                next_expected: start,
                fifo: VecDeque::new(),
            });
        }
        Ok(Sched {
            levels,
            capacity: capacity.max(1),
        })
    }

    /// Moves level `l`'s cursor to `from[l]` and forgets the queued handles (seek).
    pub(crate) fn reset(&mut self, journal: &Journal, from: [u64; 3]) -> Result<()> {
        for (l, start) in self.levels.iter_mut().zip(from) {
            l.cursor = journal.cursor(start)?;
            l.next_expected = start;
            l.fifo.clear();
        }
        Ok(())
    }

    /// The lowest ID any level's cursor will read next: everything below it was
    /// queued (or skipped) already.
    pub(crate) fn min_position(&self) -> u64 {
        self.levels
            .iter()
            .map(|l| {
                l.fifo
                    .front()
                    .map_or(l.cursor.position_id(), |s| s.pos.id())
            })
            .min()
            .unwrap_or(0)
    }

    /// Where each level is consumed up to: its oldest queued handle, or its cursor
    /// when nothing is queued (auto-ack mode's per-level watermarks).
    pub(crate) fn level_marks(&self) -> [u64; 3] {
        let mut out = [0; 3];
        for (o, l) in out.iter_mut().zip(&self.levels) {
            *o = l
                .fifo
                .front()
                .map_or(l.cursor.position_id(), |s| s.pos.id());
        }
        out
    }

    /// Reads level `level`'s cursor forward until its FIFO is full, the journal has
    /// nothing more committed, or (manual-ack mode) the state file's window ends.
    fn fill(
        &mut self,
        level: usize,
        journal: &Journal,
        state: &StateFile,
        sink: &dyn Sink,
    ) -> Result<()> {
        let cap = self.capacity;
        let l = &mut self.levels[level];
        let limit = if sink.windowed() {
            state.watermark().load(std::sync::atomic::Ordering::Acquire) + WINDOW
        } else {
            u64::MAX
        };
        while l.fifo.len() < cap && l.cursor.position_id() < limit {
            // Only this level's records are checked here (each record belongs to one
            // level, decided by the same header byte in every cursor); the others are
            // only looked at for their ID and priority.
            let next = l.cursor.next_checked_if(
                journal,
                |v| usize::from(Priority::from_stored(v.priority()).as_u8()) == level,
                |v| (v.position(), v.priority(), v.timestamp_ns()),
            )?;
            let Some((pos, prio, ts)) = next else { break };
            let id = pos.id();
            for hole in l.next_expected..id {
                sink.hole(hole);
            }
            l.next_expected = id + 1;
            if usize::from(Priority::from_stored(prio).as_u8()) != level {
                continue;
            }
            if sink.skip(id, state.entry(id)) {
                continue;
            }
            l.fifo.push_back(Slot {
                pos,
                timestamp_ns: ts,
            });
        }
        Ok(())
    }

    /// Takes the next handle by priority and starvation window.
    pub(crate) fn pop(
        &mut self,
        journal: &Journal,
        state: &StateFile,
        sink: &dyn Sink,
        now_ns: u64,
        starvation: Duration,
    ) -> Result<Option<Slot>> {
        // Highest level first: a lower level is only served once every higher cursor
        // has read all that is committed (or its FIFO holds something).
        for level in (0..Priority::LEVELS).rev() {
            if self.levels[level].fifo.len() <= self.capacity / 2 {
                self.fill(level, journal, state, sink)?;
            }
        }
        let fronts: Vec<Option<Slot>> = self
            .levels
            .iter()
            .map(|l| l.fifo.front().copied())
            .collect();
        let Some(level) = pick(&fronts, now_ns, starvation) else {
            return Ok(None);
        };
        Ok(self.levels[level].fifo.pop_front())
    }
}

/// Which level's front to serve: the oldest front that has waited at least
/// `starvation` (if the window is on), else the highest non-empty level.
pub(crate) fn pick(fronts: &[Option<Slot>], now_ns: u64, starvation: Duration) -> Option<usize> {
    if !starvation.is_zero() {
        let window = u64::try_from(starvation.as_nanos()).unwrap_or(u64::MAX);
        let starving = fronts
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|s| (i, s)))
            .filter(|(_, s)| now_ns.saturating_sub(s.timestamp_ns) >= window)
            .min_by_key(|(_, s)| s.pos.id());
        if let Some((i, _)) = starving {
            return Some(i);
        }
    }
    (0..fronts.len()).rev().find(|&i| fronts[i].is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: u64, ts: u64) -> Option<Slot> {
        Some(Slot {
            pos: Position::new(0, 0, id),
            timestamp_ns: ts,
        })
    }

    #[test]
    fn highest_level_first_without_starvation() {
        let fronts = [slot(1, 100), slot(2, 100), slot(3, 100)];
        assert_eq!(pick(&fronts, 150, Duration::from_nanos(1000)), Some(2));
        assert_eq!(pick(&[slot(1, 0), None, None], 0, Duration::ZERO), Some(0));
        assert_eq!(pick(&[None, None, None], 0, Duration::ZERO), None);
    }

    #[test]
    fn starving_front_is_served_first_oldest_of_them() {
        // Low (id 1) and Medium (id 2) both starve; the older one goes first.
        let fronts = [slot(1, 0), slot(2, 10), slot(3, 990)];
        assert_eq!(pick(&fronts, 1000, Duration::from_nanos(500)), Some(0));
        // Only Medium starves.
        let fronts = [slot(5, 900), slot(2, 10), slot(3, 990)];
        assert_eq!(pick(&fronts, 1000, Duration::from_nanos(500)), Some(1));
        // Window off: pure priority.
        assert_eq!(pick(&fronts, 1000, Duration::ZERO), Some(2));
    }
}
