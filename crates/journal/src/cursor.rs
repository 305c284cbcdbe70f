//! In-order reading.

use std::sync::Arc;

use crossbeam_epoch as epoch;

use crate::codec::{RecordView, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::error::Error;
use crate::journal::Journal;
use crate::options::RecoveryMode;
use crate::proto::END_GAP;
use crate::segment::{Segment, Step};

/// Reads committed records in ID order. A reserved but uncommitted record stops the
/// cursor (`next` returns `Ok(None)`) until it is committed; recovered holes are
/// skipped. In a read-only journal, a torn tail of the last segment that the next
/// writable open would cut stops it the same way, until a writer has repaired it
/// (`Journal::open_read_only`). Holds its current segment alive (an `Arc`), so a
/// removed segment stays readable until the cursor moves on.
///
/// IDs missing between two records it reads (in one segment or across segments) must
/// be explained: by the hole markers and skipped damage between them (each missing ID
/// took at least a record header of those bytes), or by an end marker that recovery
/// tagged [`END_GAP`](crate::proto::END_GAP). Anything else (a segment file removed
/// from the middle, a record zeroed in a segment nobody appends to) is damage:
/// [`Error::Corrupt`] in [`RecoveryMode::Strict`], passed over and counted in
/// [`RecoveryMode::Skip`]. IDs below the first record read (a cursor created below
/// the first segment) are not checked.
#[derive(Debug)]
pub struct Cursor {
    seg: Option<Arc<Segment>>,
    off: u32,
    /// Smallest ID the cursor may return next.
    next_id: u64,
    /// The ID of the last record stepped over or returned (0 before the first).
    prev_id: u64,
    /// The ID the next record read should have, barring holes (0: not known, as when
    /// the cursor starts at a seek mark).
    expect: u64,
    /// Offset in the current segment after the last record read, or where reading the
    /// segment started. The bytes from here to `off` were holes or damage passed over.
    rec_end: u32,
}

impl Cursor {
    pub(crate) fn at_segment(seg: Arc<Segment>, from_id: u64) -> Cursor {
        let mut c = Cursor::empty(from_id);
        c.enter(seg);
        c
    }

    pub(crate) fn empty(from_id: u64) -> Cursor {
        Cursor {
            seg: None,
            off: SEGMENT_HEADER_LEN,
            next_id: from_id,
            prev_id: 0,
            expect: 0,
            rec_end: SEGMENT_HEADER_LEN,
        }
    }

    /// Starts reading `seg` where the record `next_id` is (or would be): from its first
    /// record, which must hold its base ID, or from a seek mark.
    fn enter(&mut self, seg: Arc<Segment>) {
        self.off = seg.start_for(self.next_id);
        self.rec_end = self.off;
        self.expect = if self.off == SEGMENT_HEADER_LEN {
            seg.base_id
        } else {
            0
        };
        self.seg = Some(seg);
    }

    /// IDs missing before the record `id` at the cursor that the bytes passed since
    /// the last record do not explain, as `from..to`.
    fn missing_before(&self, id: u64) -> Option<(u64, u64)> {
        if self.expect == 0 || id <= self.expect {
            return None;
        }
        let passed = u64::from(self.off - self.rec_end);
        (id - self.expect > passed / u64::from(RECORD_HEADER_LEN)).then_some((self.expect, id))
    }

    /// IDs missing between the end of `seg` at the cursor (an end marker if `at_end`,
    /// else a slot never committed) and the next segment, starting at `next_base`, that
    /// neither the bytes passed since the last record nor an [`END_GAP`] marker explain.
    /// IDs removed with `seg` by compaction (which removes whole segments, oldest
    /// first) are not missing either.
    fn missing_after(
        &self,
        journal: &Journal,
        seg: &Segment,
        at_end: bool,
        next_base: u64,
    ) -> Option<(u64, u64)> {
        if self.expect == 0 || next_base <= self.expect {
            return None;
        }
        if at_end && seg.end_tag(self.off) == END_GAP {
            return None;
        }
        let passed = u64::from(self.off - self.rec_end);
        if next_base - self.expect <= passed / u64::from(RECORD_HEADER_LEN) {
            return None;
        }
        (!was_removed(journal, seg)).then_some((self.expect, next_base))
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
        self.next_checked_if(journal, |_| true, f)
    }

    /// As [`next`](Cursor::next), but the record's checksum is checked only if `check`
    /// returns `true` for it: for a reader that only looks at the header fields of the
    /// records it does not want (their ID and, say, priority) and must not hand out
    /// their payloads unchecked. A record is passed to `check` only if its ID follows
    /// the records before it as it should (anything unexplained is checked as by
    /// `next`); a record whose header is damaged may then be returned unchecked, so the
    /// choice `check` makes must be made by one reader from the same header fields
    /// (the record's owner checks it).
    ///
    /// # Errors
    /// As [`next`](Cursor::next).
    pub fn next_checked_if<R>(
        &mut self,
        journal: &Journal,
        check: impl Fn(&RecordView<'_>) -> bool,
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
                    Some(s) => self.enter(s),
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
                    let missing = self.missing_before(id);
                    if missing.is_none() && id < self.next_id && id > self.prev_id {
                        self.prev_id = id;
                        self.off += len;
                        self.rec_end = self.off;
                        self.expect = self.expect.max(id + 1);
                        continue;
                    }
                    // Every record a cursor hands out is checked against its salted
                    // checksum: a segment that was not scanned at open (everything but
                    // the tail) may hold a flipped byte, which must be reported or skipped,
                    // never delivered.
                    let raw_len = view.raw_len();
                    let unchecked = missing.is_none()
                        && id >= self.next_id
                        && id > self.prev_id
                        && !check(&view);
                    if !unchecked && !seg.record_checksum_ok(self.off, raw_len) {
                        if let Some(t) = crate::torn::at_damage(journal, seg, self.off)? {
                            self.off = t.offset;
                            return Ok(None);
                        }
                        if journal.inner().recovery_mode() == RecoveryMode::Skip {
                            journal.inner().note_skipped(seg.base_id, self.off);
                            self.off += len;
                            continue;
                        }
                        return Err(Error::corrupt(
                            &seg.path,
                            u64::from(self.off),
                            "record checksum mismatch",
                        ));
                    }
                    // A valid record after IDs that nothing explains: the records that
                    // held them were zeroed or overwritten.
                    if let Some((from, to)) = missing {
                        if journal.inner().recovery_mode() != RecoveryMode::Skip {
                            return Err(Error::corrupt(
                                &seg.path,
                                u64::from(self.off),
                                format!(
                                    "IDs {from}..{to} are missing before this record \
                                     (a record was zeroed or overwritten)"
                                ),
                            ));
                        }
                        journal.inner().note_skipped(seg.base_id, self.off);
                    }
                    self.off += len;
                    self.rec_end = self.off;
                    self.expect = self.expect.max(id + 1);
                    if id < self.next_id {
                        self.prev_id = self.prev_id.max(id);
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
                    // The next segment must continue the IDs of this one.
                    if let Some((from, to)) = self.missing_after(journal, seg, at_end, n.base_id) {
                        // A read-only journal beside a live writer: a reservation the
                        // writer made here before it rolled is being committed; look
                        // again later (the writer's own open turned every slot a crash
                        // left into a hole).
                        if !at_end
                            && journal.is_read_only()
                            && matches!(
                                crate::torn::lock_shared(journal.dir())?,
                                crate::torn::Shared::Writer
                            )
                        {
                            return Ok(None);
                        }
                        if journal.inner().recovery_mode() != RecoveryMode::Skip {
                            return Err(if at_end {
                                Error::corrupt(
                                    &n.path,
                                    16,
                                    format!(
                                        "segment starts at ID {to}, but the IDs before it end \
                                         at {}: IDs {from}..{to} are missing (a segment file \
                                         is missing)",
                                        from - 1
                                    ),
                                )
                            } else {
                                Error::corrupt(
                                    &seg.path,
                                    u64::from(self.off),
                                    format!(
                                        "record never committed in a segment followed by \
                                         another: IDs {from}..{to} are missing (a record was \
                                         zeroed or the segment was cut)"
                                    ),
                                )
                            });
                        }
                        journal.inner().note_skipped(seg.base_id, self.off);
                        // A slot never committed: go on at the next valid record after
                        // it in this segment, if there is one.
                        if !at_end {
                            match seg.resync_after(self.off, self.prev_id, true) {
                                Some(off) if off < seg.capacity => {
                                    self.off = off;
                                    continue;
                                }
                                _ => {}
                            }
                        }
                    }
                    self.expect = if self.expect == 0 {
                        n.base_id
                    } else {
                        self.expect.max(n.base_id)
                    };
                    self.seg = Some(n);
                    self.off = SEGMENT_HEADER_LEN;
                    self.rec_end = SEGMENT_HEADER_LEN;
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

/// Whether `seg` was removed from the journal (with every segment before it) while the
/// cursor read it: gone from the writer's table, or (read-only journals, beside a
/// writer in another process) its file gone from the directory.
fn was_removed(journal: &Journal, seg: &Segment) -> bool {
    if journal.is_read_only() {
        return !seg.path.exists();
    }
    let guard = epoch::pin();
    journal
        .inner()
        .table(&guard)
        .index_of(seg.base_id)
        .is_none()
}

fn segment_after(journal: &Journal, base: u64) -> Option<Arc<Segment>> {
    let guard = epoch::pin();
    let t = journal.inner().table(&guard);
    let i = t.segs.partition_point(|s| s.base_id <= base);
    t.segs.get(i).cloned()
}
