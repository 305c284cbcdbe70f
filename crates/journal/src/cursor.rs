//! In-order reading.

use std::sync::Arc;

use crossbeam_epoch as epoch;

use crate::codec::{RecordView, SEGMENT_HEADER_LEN};
use crate::error::Error;
use crate::journal::Journal;
use crate::options::RecoveryMode;
use crate::segment::{Segment, Step};

/// Reads committed records in ID order. A reserved but uncommitted record stops the
/// cursor (`next` returns `Ok(None)`) until it is committed; recovered holes are
/// skipped. In a read-only journal, a torn tail of the last segment that the next
/// writable open would cut stops it the same way, until a writer has repaired it
/// (`Journal::open_read_only`). Holds its current segment alive (an `Arc`), so a
/// removed segment stays readable until the cursor moves on.
#[derive(Debug)]
pub struct Cursor {
    seg: Option<Arc<Segment>>,
    off: u32,
    /// Smallest ID the cursor may return next.
    next_id: u64,
    /// The ID of the last record stepped over or returned (0 before the first).
    prev_id: u64,
}

impl Cursor {
    pub(crate) fn at_segment(seg: Arc<Segment>, from_id: u64) -> Cursor {
        Cursor {
            off: seg.start_for(from_id),
            seg: Some(seg),
            next_id: from_id,
            prev_id: 0,
        }
    }

    pub(crate) fn empty(from_id: u64) -> Cursor {
        Cursor {
            seg: None,
            off: SEGMENT_HEADER_LEN,
            next_id: from_id,
            prev_id: 0,
        }
    }

    /// The ID this cursor will return next (at least; IDs lost in holes are skipped).
    pub fn position_id(&self) -> u64 {
        self.next_id
    }

    /// Calls `f` with the next committed record and returns its result, or `Ok(None)`
    /// if nothing is committed at the cursor yet.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the bytes at the cursor are not a valid record (a torn
    /// tail in a read-only journal excepted: see [`Cursor`]); [`Error::Io`] if a
    /// read-only journal cannot look at its lock file or directory.
    pub fn next<R>(
        &mut self,
        journal: &Journal,
        f: impl FnOnce(RecordView<'_>) -> R,
    ) -> Result<Option<R>, Error> {
        let mut refreshed = false;
        loop {
            if self.seg.is_none() {
                let found = {
                    let guard = epoch::pin();
                    let t = journal.inner().table(&guard);
                    t.index_for_id(self.next_id).map(|i| t.segs[i].clone())
                };
                match found {
                    Some(s) => {
                        self.off = s.start_for(self.next_id);
                        self.seg = Some(s);
                    }
                    None => {
                        if journal.is_read_only() && !refreshed {
                            refreshed = true;
                            journal.refresh()?;
                            continue;
                        }
                        return Ok(None);
                    }
                }
            }
            let Some(seg) = self.seg.as_ref() else {
                return Ok(None);
            };
            // A read-only journal's last segment with a torn tail (`torn`): stop at
            // it until a writer has repaired it.
            if let Some(t) = seg.torn_at_or_below(self.off) {
                if crate::torn::still_torn(journal, seg, t)? {
                    self.off = t.offset;
                    return Ok(None);
                }
                seg.clear_torn(t);
            }
            let step = seg.step(self.off, false);
            let at_end = match step {
                Step::Record { view, len } => {
                    // Records below the cursor's ID (a seek into the middle of a
                    // segment) are stepped over without being checked, as long as
                    // their IDs increase: none of them is handed out. An ID out of
                    // order is checked (a damaged ID field must be reported, not
                    // taken as a record to skip).
                    let id = view.id();
                    seg.marks.note(id, self.off);
                    if id < self.next_id && id > self.prev_id {
                        self.prev_id = id;
                        self.off += len;
                        continue;
                    }
                    // Every record a cursor hands out is checked against its salted
                    // checksum: a segment that was not scanned at open (everything but
                    // the tail) may hold a flipped byte, which must be reported or skipped,
                    // never delivered.
                    let raw_len = view.raw_len();
                    if !seg.record_checksum_ok(self.off, raw_len) {
                        if let Some(t) = crate::torn::at_damage(journal, seg, self.off)? {
                            self.off = t.offset;
                            return Ok(None);
                        }
                        if journal.inner().recovery_mode() == RecoveryMode::Skip {
                            self.off += len;
                            continue;
                        }
                        return Err(Error::corrupt(
                            &seg.path,
                            u64::from(self.off),
                            "record checksum mismatch",
                        ));
                    }
                    self.off += len;
                    if id < self.next_id {
                        continue;
                    }
                    self.prev_id = id;
                    self.next_id = id + 1;
                    return Ok(Some(f(view)));
                }
                Step::Hole { len } => {
                    self.off += len;
                    continue;
                }
                Step::Corrupt(reason) => {
                    // A torn tail of the last segment that a writable open would cut:
                    // nothing committed here yet.
                    if let Some(t) = crate::torn::at_damage(journal, seg, self.off)? {
                        self.off = t.offset;
                        return Ok(None);
                    }
                    // Skip mode: go on at the next valid record after the damage, if it
                    // lies where no appender writes (see `Segment::resync_after`).
                    if journal.inner().recovery_mode() == RecoveryMode::Skip {
                        let has_next = segment_after(journal, seg.base_id).is_some();
                        if let Some(off) = seg.resync_after(self.off, self.prev_id, has_next) {
                            self.off = off;
                            continue;
                        }
                    }
                    return Err(Error::corrupt(&seg.path, u64::from(self.off), reason));
                }
                Step::End => true,
                // A slot nobody will ever fill: a segment this process does not append
                // to, once a later segment exists.
                Step::Pending => false,
            };
            let next = segment_after(journal, seg.base_id);
            match next {
                Some(n) if at_end || !seg.live => {
                    self.seg = Some(n);
                    self.off = SEGMENT_HEADER_LEN;
                }
                None if at_end && journal.is_read_only() && !refreshed => {
                    refreshed = true;
                    journal.refresh()?;
                }
                _ => return Ok(None),
            }
        }
    }
}

fn segment_after(journal: &Journal, base: u64) -> Option<Arc<Segment>> {
    let guard = epoch::pin();
    let t = journal.inner().table(&guard);
    let i = t.segs.partition_point(|s| s.base_id <= base);
    t.segs.get(i).cloned()
}
