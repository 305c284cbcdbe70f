//! A torn tail seen by a read-only journal.
//!
//! A crash can leave damaged bytes at the end of the last segment (a partial record, a
//! garbage commit word). The next writable open cuts them (`recover`), but until then a
//! read-only journal meets them. It must neither fail on them (an operator inspects a
//! crashed queue before restarting its program) nor hide real damage. So, on the first
//! damage a cursor meets in the last segment, the journal takes the `LOCK` file shared
//! and without waiting (`flock(LOCK_SH | LOCK_NB)`; it never creates the file):
//!
//! - **Granted**: no writer lives (every writer holds `LOCK` exclusively for its whole
//!   life, from before it maps or writes anything), so nothing writes the segment while
//!   the lock is held. The segment is classified with the walk recovery uses
//!   ([`recover::torn_tail`]), reading only. If recovery would cut a torn tail there,
//!   its offset is recorded and cursors stop at it: "nothing committed here yet".
//!   Damage before it, and damage in any other segment, is reported as before.
//! - **Refused**: a writer lives. It cut any torn tail at its open, so the damage is
//!   reported.
//! - **No `LOCK` file**: no writer ever opened the directory. The segment is classified
//!   from a copy read with `read(2)`, kept only if `LOCK` still does not exist
//!   afterwards (a writer creates it before it touches anything); otherwise the journal
//!   looks again, under the lock.
//!
//! A writer that opens later cuts the torn bytes, storing zero into the commit word at
//! the torn offset in one store first, and appends there. A cursor at the torn offset
//! first loads that word (atomically, as every commit word is read): while it holds
//! the value it held when the tail was classified, the cursor stops without reading
//! anything else; once it changed, a writer has repaired the tail, and the cursor reads
//! on as anywhere else. Writers store only the three commit kinds, so when the torn word
//! was none of them (the usual garbage) a change is seen at once. When it was a record
//! or hole kind, the same value can be a new record: the cursor then takes the lock
//! again, and reads the bytes only if it is granted. While a writer lives, such a record
//! is read once the writer has created a later segment (which it does only after its
//! open's repair), or once it closes.
//!
//! A writer's open that finds `LOCK` held shared by readers retries for a while instead
//! of failing with `Locked` (see `journal::lock_dir`).

use std::fs::File;
use std::path::Path;

use crossbeam_epoch as epoch;

use crate::error::Error;
use crate::journal::{Journal, LOCK_FILE};
use crate::proto::{Region, KIND_HOLE, KIND_RECORD};
use crate::recover::{self, Torn};
use crate::segment::Segment;
use crate::sync::Ordering;

/// The outcome of asking for `LOCK` shared.
pub(crate) enum Shared {
    /// Granted: no writer lives while this is held (released on drop).
    Held(#[allow(dead_code)] File),
    /// `LOCK` does not exist: no writer has opened the directory.
    Absent,
    /// A writer holds it (or, off Unix, nobody can tell).
    Writer,
}

/// Asks for `dir`'s `LOCK` file shared, without waiting and without creating it.
///
/// # Errors
/// [`Error::Io`] if the file cannot be opened or locked for another reason.
#[cfg(unix)]
pub(crate) fn lock_shared(dir: &Path) -> Result<Shared, Error> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Shared::Absent),
        Err(e) => return Err(Error::io("open lock file", &path, e)),
    };
    // SAFETY: the fd is open for the duration of the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Shared::Held(f));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(Shared::Writer);
    }
    Err(Error::io("lock shared", &path, e))
}

/// Off Unix there is no lock to ask: a writer may live, and damage is reported.
#[cfg(not(unix))]
pub(crate) fn lock_shared(_dir: &Path) -> Result<Shared, Error> {
    Ok(Shared::Writer)
}

/// A cursor of read-only `journal` met damage at `offset` of `seg`: the torn tail it
/// belongs to, if `seg` is the last segment and a writable open would cut a torn tail
/// starting at or below `offset` (it is then recorded in `seg`). `None`: the damage is
/// to be reported.
///
/// # Errors
/// [`Error::Io`] reading the directory, the lock file or (without a lock file) the
/// segment.
pub(crate) fn at_damage(
    journal: &Journal,
    seg: &Segment,
    offset: u32,
) -> Result<Option<Torn>, Error> {
    if !journal.is_read_only() || has_later(journal, seg) {
        return Ok(None);
    }
    let dir = journal.inner().dir_path();
    let mode = journal.inner().recovery_mode();
    // Twice at most: a lock file that appears while the copy is read sends the second
    // look under the lock.
    for _ in 0..2 {
        let torn = match lock_shared(dir)? {
            Shared::Writer => return Ok(None),
            Shared::Held(_lock) => {
                if !is_last(dir, seg)? {
                    return Ok(None);
                }
                // SAFETY: no writer lives while the shared lock is held (module docs),
                // so nothing writes the segment; the mapping covers `0..capacity`.
                let s = unsafe { seg.slice(0, seg.capacity) };
                recover::torn_tail(s, seg, mode)
            }
            Shared::Absent => {
                if !is_last(dir, seg)? {
                    return Ok(None);
                }
                let bytes = std::fs::read(&seg.path)
                    .map_err(|e| Error::io("read segment", &seg.path, e))?;
                let torn = recover::torn_tail(&bytes, seg, mode);
                match dir.join(LOCK_FILE).try_exists() {
                    Ok(false) => torn,
                    Ok(true) => continue,
                    Err(e) => return Err(Error::io("look for lock file", dir, e)),
                }
            }
        };
        // Below the offset the checkpoint records as flushed, damage is not a torn
        // write: a writable open reports it, and so does this reader.
        let durable_end = match crate::checkpoint::read(dir) {
            crate::checkpoint::Found::Valid(c)
                if c.segment_base == seg.base_id && c.segment_salt == seg.salt =>
            {
                c.offset
            }
            _ => 0,
        };
        let torn = torn.filter(|t| t.offset >= durable_end);
        seg.set_torn(torn);
        return Ok(torn.filter(|t| t.offset <= offset));
    }
    Ok(None)
}

/// Whether the torn tail `t` recorded in `seg` is still there, so that a cursor at its
/// offset stops; `false` once a writer repaired it (module docs).
///
/// # Errors
/// [`Error::Io`] asking for the lock or reading the directory.
pub(crate) fn still_torn(journal: &Journal, seg: &Segment, t: Torn) -> Result<bool, Error> {
    // Acquire: pairs with the Release store of a writer's commit (`proto::commit`),
    // which comes after its open cut the torn bytes.
    let w = seg.commit_word(t.offset).load(Ordering::Acquire);
    if w != t.word {
        return Ok(false);
    }
    if w != KIND_RECORD && w != KIND_HOLE {
        // No writer stores this value: still the torn bytes.
        return Ok(true);
    }
    let dir = journal.inner().dir_path();
    match lock_shared(dir)? {
        // No writer has opened the directory since: nothing changed.
        Shared::Absent => Ok(true),
        Shared::Writer => {
            // A writer that created a later segment cut the torn bytes at its open,
            // before: the word is a commit of its own.
            journal.refresh()?;
            Ok(!has_later(journal, seg))
        }
        Shared::Held(_lock) => {
            // SAFETY: no writer lives while the shared lock is held (module docs); the
            // mapping covers `0..capacity`.
            let s = unsafe { seg.slice(0, seg.capacity) };
            Ok(!recover::repaired(s, seg, t))
        }
    }
}

/// Whether the journal's table holds a segment after `seg`.
fn has_later(journal: &Journal, seg: &Segment) -> bool {
    let guard = epoch::pin();
    let t = journal.inner().table(&guard);
    t.segs.last().is_some_and(|l| l.base_id > seg.base_id)
}

/// Whether `seg` is the last segment of `dir` as a writable open would see it: no
/// segment file after it but ones whose header never reached the disk (which the open
/// removes).
fn is_last(dir: &Path, seg: &Segment) -> Result<bool, Error> {
    let (found, _) = crate::journal::list_segments(dir)?;
    for (base, path) in found.iter().rev() {
        if *base <= seg.base_id {
            return Ok(*base == seg.base_id);
        }
        if !crate::journal::is_blank_segment(path)? {
            return Ok(false);
        }
    }
    Ok(false)
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::options::JournalOptions;

    fn opts() -> JournalOptions {
        JournalOptions::new().segment_size(64 << 10)
    }

    #[test]
    fn a_writer_waits_for_readers_holding_the_lock_but_not_for_a_writer() {
        let d = tempfile::tempdir().unwrap();
        Journal::open(d.path(), opts()).unwrap().close().unwrap();
        let Shared::Held(lock) = lock_shared(d.path()).unwrap() else {
            panic!("no writer lives: the shared lock is granted");
        };
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(lock);
        });
        let start = Instant::now();
        let w = Journal::open(d.path(), opts()).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
        reader.join().unwrap();
        // While a writer lives, readers are refused and another writer fails at once.
        assert!(matches!(lock_shared(d.path()).unwrap(), Shared::Writer));
        let start = Instant::now();
        assert!(matches!(
            Journal::open(d.path(), opts()),
            Err(Error::Locked { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(1));
        w.close().unwrap();
        assert!(matches!(lock_shared(d.path()).unwrap(), Shared::Held(_)));
        // Never created.
        std::fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(lock_shared(d.path()).unwrap(), Shared::Absent));
        assert!(!d.path().join(LOCK_FILE).exists());
    }
}
