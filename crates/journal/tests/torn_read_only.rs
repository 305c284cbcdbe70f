#![cfg(not(ledgerq_loom))]
//! A read-only journal over a crashed directory: a torn tail at the end of the last
//! segment (which the next writable open cuts) is the end of what is committed, while
//! damage anywhere else is still reported, and nothing is written.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ledgerq_journal::proto::KIND_RECORD;
use ledgerq_journal::*;

const SEG: u64 = 64 * 1024;

fn opts() -> JournalOptions {
    JournalOptions::new().segment_size(SEG)
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i:04} ").repeat(6).into_bytes()
}

/// A closed journal holding `n` records with [`payload`]s.
fn journal_with(dir: &Path, n: u64) {
    let j = Journal::open(dir, opts()).unwrap();
    for i in 1..=n {
        assert_eq!(j.append(&RecordIn::new(&payload(i))).unwrap(), i);
    }
    j.close().unwrap();
}

/// One committed record found in a segment file.
#[derive(Debug, Clone, Copy)]
struct Rec {
    offset: u64,
    /// Aligned length.
    len: u64,
}

/// The committed records of a segment file, and the offset after the last.
fn records(path: &Path) -> (Vec<Rec>, u64) {
    let b = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as usize;
    while off + 16 <= b.len() {
        let commit = u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
        if commit != KIND_RECORD {
            break;
        }
        let len = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap());
        let len = u64::from((len + 7) & !7);
        out.push(Rec {
            offset: off as u64,
            len,
        });
        off += len as usize;
    }
    (out, off as u64)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    segment_files(dir).unwrap()
}

/// Overwrites bytes of a file in place (never truncating it: it may be mapped).
fn patch(path: &Path, off: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Half-written garbage, as a crash mid-write leaves: its first word is no commit kind.
fn garbage(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13) | 1).collect()
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// `(ID, payload)` of records read.
type Read = Vec<(u64, Vec<u8>)>;

/// Reads until the cursor returns `None` or an error: the records, and how it stopped.
fn read_from(j: &Journal, c: &mut Cursor) -> (Read, Result<(), Error>) {
    let mut out = Vec::new();
    loop {
        match c.next(j, |v| (v.id(), v.payload().to_vec())) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

fn expected(ids: std::ops::RangeInclusive<u64>) -> Read {
    ids.map(|i| (i, payload(i))).collect()
}

/// `n` records, then garbage after the last one in the (only) segment.
fn torn_journal(dir: &Path, n: u64) -> (PathBuf, u64) {
    journal_with(dir, n);
    let seg = segments(dir).pop().unwrap();
    let (_, end) = records(&seg);
    patch(&seg, end, &garbage(40));
    (seg, end)
}

fn expect_corrupt(r: Result<(), Error>, seg: &Path, offset: u64) {
    match r {
        Err(Error::Corrupt {
            path, offset: at, ..
        }) => assert_eq!((path.as_path(), at), (seg, offset)),
        other => panic!(
            "expected Corrupt at {offset} of {}, got {other:?}",
            seg.display()
        ),
    }
}

#[test]
fn a_torn_tail_is_the_end_for_a_read_only_journal_and_nothing_is_written() {
    for mode in [RecoveryMode::Strict, RecoveryMode::Skip] {
        let d = tempfile::tempdir().unwrap();
        torn_journal(d.path(), 5);
        let before = snapshot(d.path());
        let ro = Journal::open_read_only(d.path(), opts().recovery_mode(mode)).unwrap();
        let mut c = ro.cursor(1).unwrap();
        let (got, end) = read_from(&ro, &mut c);
        end.unwrap();
        assert_eq!(got, expected(1..=5), "{mode:?}");
        // Asked again, still nothing (not an error, not the torn bytes).
        assert!(c.next(&ro, |_| ()).unwrap().is_none());
        assert_eq!(ro.next_id(), 6);
        // A cursor positioned past the last record stops at the torn tail too.
        assert!(ro.cursor(6).unwrap().next(&ro, |_| ()).unwrap().is_none());
        drop(ro);
        assert!(snapshot(d.path()) == before, "a read-only open wrote");
    }
}

/// `n` records, the last of them torn in its body: its commit word reached the disk,
/// part of its body did not (a power loss before that record was flushed), so a valid
/// commit word sits over a checksum that does not match. The checkpoint goes too: it
/// would record the record as flushed, and damage there is corruption, not a torn tail.
fn torn_record_journal(dir: &Path, n: u64) {
    journal_with(dir, n);
    let seg = segments(dir).pop().unwrap();
    let (recs, _) = records(&seg);
    let last = *recs.last().unwrap();
    patch(&seg, last.offset + last.len - 16, &[0u8; 16]);
    std::fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
}

/// A read-only journal over [`torn_record_journal`] of 5 records, and a cursor that
/// has read the four before the torn one.
fn read_to_the_torn_record(dir: &Path) -> (Journal, Cursor) {
    torn_record_journal(dir, 5);
    let ro = Journal::open_read_only(dir, opts()).unwrap();
    let mut c = ro.cursor(1).unwrap();
    let (got, end) = read_from(&ro, &mut c);
    end.unwrap();
    assert_eq!(got, expected(1..=4));
    (ro, c)
}

#[test]
fn a_record_torn_in_its_body_is_the_end_until_a_writer_repaired_it() {
    let d = tempfile::tempdir().unwrap();
    let (ro, mut c) = read_to_the_torn_record(d.path());
    assert!(c.next(&ro, |_| ()).unwrap().is_none());
    // A writer cuts the torn record and appends where it was.
    let w = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(w.append(&RecordIn::new(&payload(5))).unwrap(), 5);
    assert_eq!(w.append(&RecordIn::new(&payload(6))).unwrap(), 6);
    // While it lives, the reader may not read the bytes there (the new record's commit
    // word is the torn one's): no error, and no torn bytes.
    let (got, end) = read_from(&ro, &mut c);
    end.unwrap();
    assert!(got.is_empty() || got == expected(5..=6), "{got:?}");
    // Once it is gone, they are read.
    w.close().unwrap();
    let (more, end) = read_from(&ro, &mut c);
    end.unwrap();
    let mut all = got;
    all.extend(more);
    assert_eq!(all, expected(5..=6));
}

#[test]
fn a_record_torn_in_its_body_is_read_past_once_the_writer_rolled() {
    let d = tempfile::tempdir().unwrap();
    let (ro, mut c) = read_to_the_torn_record(d.path());
    let w = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(w.append(&RecordIn::new(&payload(5))).unwrap(), 5);
    // A later segment exists only after the writer's open repaired the torn tail: the
    // reader reads on while the writer lives.
    let big = vec![9u8; 30_000];
    while w.segments().len() < 2 {
        w.append(&RecordIn::new(&big)).unwrap();
    }
    let (got, end) = read_from(&ro, &mut c);
    end.unwrap();
    assert_eq!(got[0], (5, payload(5)));
    assert_eq!(got.len() as u64, w.next_id() - 5);
    w.close().unwrap();
}

#[test]
fn a_writer_repairs_the_torn_tail_and_the_reader_sees_what_it_appends() {
    let d = tempfile::tempdir().unwrap();
    let (seg, end) = torn_journal(d.path(), 5);
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let mut c = ro.cursor(1).unwrap();
    let (got, r) = read_from(&ro, &mut c);
    r.unwrap();
    assert_eq!(got, expected(1..=5));
    let w = Journal::open(d.path(), opts()).unwrap();
    assert!(
        fs::read(&seg).unwrap()[end as usize..end as usize + 40]
            .iter()
            .all(|&b| b == 0),
        "the writer cut the torn tail"
    );
    for i in 6..=8 {
        assert_eq!(w.append(&RecordIn::new(&payload(i))).unwrap(), i);
    }
    // Seen while the writer lives, by the same cursor and by a new reader.
    let (got, r) = read_from(&ro, &mut c);
    r.unwrap();
    assert_eq!(got, expected(6..=8));
    let ro2 = Journal::open_read_only(d.path(), opts()).unwrap();
    let (got, r) = read_from(&ro2, &mut ro2.cursor(1).unwrap());
    r.unwrap();
    assert_eq!(got, expected(1..=8));
    // Enough to roll into new segments: the reader follows.
    let big = vec![7u8; 30_000];
    for _ in 0..4 {
        w.append(&RecordIn::new(&big)).unwrap();
    }
    let (got, r) = read_from(&ro, &mut c);
    r.unwrap();
    assert_eq!(got.len(), 4);
    assert!(segments(d.path()).len() > 1);
    w.close().unwrap();
}

#[test]
fn damage_outside_a_torn_tail_is_still_reported() {
    // The torn tail alone reads to its start.
    let d = tempfile::tempdir().unwrap();
    let (seg, _) = torn_journal(d.path(), 5);
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let (got, r) = read_from(&ro, &mut ro.cursor(1).unwrap());
    r.unwrap();
    assert_eq!(got.len(), 5);
    drop(ro);

    // A flipped byte in an earlier record of the same segment, valid records after it:
    // corruption a writable open reports too.
    let (recs, _) = records(&seg);
    patch(&seg, recs[1].offset + 70, &[0xAA]);
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let (got, r) = read_from(&ro, &mut ro.cursor(1).unwrap());
    assert_eq!(got, expected(1..=1));
    expect_corrupt(r, &seg, recs[1].offset);
    assert!(matches!(
        Journal::open(d.path(), opts()),
        Err(Error::Corrupt { .. })
    ));

    // The last record of a segment that is not the last one, damaged as a torn tail
    // would be: reported (a segment before the last is never a torn tail here).
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    let big = vec![3u8; 20_000];
    while j.segments().len() < 3 {
        j.append(&RecordIn::new(&big)).unwrap();
    }
    j.close().unwrap();
    let segs = segments(d.path());
    let first = &segs[0];
    let (recs, _) = records(first);
    let last = *recs.last().unwrap();
    patch(first, last.offset + last.len - 16, &[0u8; 16]);
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let (got, r) = read_from(&ro, &mut ro.cursor(1).unwrap());
    assert_eq!(got.len(), recs.len() - 1);
    expect_corrupt(r, first, last.offset);

    // Damage that appears while a writer lives is not a torn tail: that writer cut any
    // at its open.
    let d = tempfile::tempdir().unwrap();
    journal_with(d.path(), 3);
    let w = Journal::open(d.path(), opts()).unwrap();
    let seg = segments(d.path()).pop().unwrap();
    let (_, end) = records(&seg);
    patch(&seg, end, &garbage(40));
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let (got, r) = read_from(&ro, &mut ro.cursor(1).unwrap());
    assert_eq!(got, expected(1..=3));
    expect_corrupt(r, &seg, end);
    drop(w);
}

#[test]
fn without_a_lock_file_the_torn_tail_is_read_from_a_copy_and_none_is_created() {
    let d = tempfile::tempdir().unwrap();
    torn_journal(d.path(), 4);
    fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
    let before = snapshot(d.path());
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let mut c = ro.cursor(1).unwrap();
    let (got, r) = read_from(&ro, &mut c);
    r.unwrap();
    assert_eq!(got, expected(1..=4));
    assert!(c.next(&ro, |_| ()).unwrap().is_none());
    drop(ro);
    assert!(!d.path().join(LOCK_FILE).exists());
    assert!(snapshot(d.path()) == before, "a read-only open wrote");
}

#[test]
fn damage_below_the_checkpointed_offset_is_reported_not_taken_for_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    journal_with(d.path(), 5);
    // The last record, flushed and recorded by the checkpoint, loses bytes of its body.
    let seg = segments(d.path()).pop().unwrap();
    let (recs, _) = records(&seg);
    let last = *recs.last().unwrap();
    patch(&seg, last.offset + last.len - 16, &[0u8; 16]);
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let mut c = ro.cursor(1).unwrap();
    let (got, end) = read_from(&ro, &mut c);
    assert_eq!(got, expected(1..=4));
    assert!(
        matches!(end, Err(Error::Corrupt { offset, .. }) if offset == last.offset),
        "{end:?}"
    );
    // As a writable open says.
    drop(ro);
    assert!(matches!(
        Journal::open(d.path(), opts()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_slot_never_committed_in_an_older_segment_waits_while_a_writer_lives() {
    let d = tempfile::tempdir().unwrap();
    // Enough records for four segments: the first is outside what a writer's open
    // scans (it starts at the checkpointed segment).
    let n = 2_000;
    journal_with(d.path(), n);
    let first = segments(d.path()).remove(0);
    assert!(segments(d.path()).len() >= 4);
    let (recs, _) = records(&first);
    let victim = recs[recs.len() / 2];
    // Its commit word zeroed: as a reservation of a live writer that rolled before it
    // committed looks to a reader in another process.
    patch(&first, victim.offset, &[0u8; 4]);
    let w = Journal::open(d.path(), opts()).unwrap();
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    let mut c = ro.cursor(1).unwrap();
    let (got, end) = read_from(&ro, &mut c);
    end.unwrap();
    assert_eq!(got.len(), recs.len() / 2, "stops before the slot, no error");
    // No writer: the slot can never be committed, and the missing IDs are reported.
    w.close().unwrap();
    let (more, end) = read_from(&ro, &mut c);
    assert!(more.is_empty(), "{more:?}");
    assert!(matches!(end, Err(Error::Corrupt { .. })), "{end:?}");
}
