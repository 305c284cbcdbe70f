//! Torn tails and damaged segment files: a real queue directory is built with the library,
//! then each damage case works on a fresh copy of it and checks that the queue opens,
//! keeps every record before the damage (same payloads, same order) and goes on.
//!
//! Cases that fail are collected and reported together, so one run names every damage
//! the library does not survive.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ledgerq::{Error, Options, Queue, RecoveryMode};
use ledgerq_journal::proto::{KIND_END, KIND_RECORD};
use ledgerq_journal::{Checkpoint, SEGMENT_HEADER_LEN};

const SEGMENT_SIZE: u64 = 64 << 10;
/// Records enqueued after the last roll, so the last segment is small and the
/// every-boundary cases stay fast.
const TAIL_RECORDS: usize = 24;

fn opts() -> Options {
    Options::new().segment_size(SEGMENT_SIZE)
}

fn payload(n: u64) -> Vec<u8> {
    let len = (n * 37 % 300) as usize + 8;
    let mut p = n.to_le_bytes().to_vec();
    p.extend((0..len).map(|i| (n as u8).wrapping_mul(13).wrapping_add(i as u8)));
    p
}

/// One record found in a segment file.
#[derive(Debug, Clone, Copy)]
struct Rec {
    offset: u64,
    /// Aligned length.
    len: u64,
    /// Length without the alignment padding: a cut in the padding damages nothing.
    data_len: u64,
    id: u64,
}

/// The pristine queue: its directory, the enqueued `(id, payload)` in order, and the
/// segment files in base order.
struct Built {
    _dir: tempfile::TempDir,
    path: PathBuf,
    expected: Vec<(u64, Vec<u8>)>,
    segments: Vec<PathBuf>,
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        let q = Queue::open_with(&path, opts()).unwrap();
        let mut expected = Vec::new();
        let mut n = 0u64;
        let mut after_roll = 0;
        while after_roll < TAIL_RECORDS {
            let p = payload(n);
            let id = q.enqueue(&p).unwrap();
            expected.push((id, p));
            n += 1;
            if q.stats().segments >= 4 {
                after_roll += 1;
            }
        }
        q.close().unwrap();
        drop(q);
        let segments = segment_files(&path);
        assert!(segments.len() >= 4, "expected several segments");
        Built {
            _dir: dir,
            path,
            expected,
            segments,
        }
    })
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    ledgerq_journal::segment_files(dir).unwrap()
}

/// Parses the committed records of a segment file.
fn records(path: &Path) -> Vec<Rec> {
    let b = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as usize;
    while off + 24 <= b.len() {
        let commit = u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
        if commit == 0 || commit == KIND_END {
            break;
        }
        assert_eq!(commit, KIND_RECORD, "pristine segment holds only records");
        let len = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap());
        let id = u64::from_le_bytes(b[off + 16..off + 24].try_into().unwrap());
        let data_len = u64::from(len);
        let len = u64::from((len + 7) & !7);
        out.push(Rec {
            offset: off as u64,
            len,
            data_len,
            id,
        });
        off += len as usize;
    }
    out
}

/// A fresh copy of the pristine queue directory.
fn fresh_copy() -> (tempfile::TempDir, PathBuf) {
    let b = built();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("q");
    fs::create_dir(&dst).unwrap();
    for e in fs::read_dir(&b.path).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    (dir, dst)
}

fn copy_of(dst: &Path, original: &Path) -> PathBuf {
    dst.join(original.file_name().unwrap())
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Bytes from the cut to the end of the file are zeroed.
    Zero,
    /// The file is cut with `set_len`.
    SetLen,
    /// Bytes from the cut to the end are random.
    Garbage(u64),
}

fn damage_tail(file: &Path, at: u64, how: Cut) {
    let len = fs::metadata(file).unwrap().len();
    let mut f = OpenOptions::new().write(true).open(file).unwrap();
    match how {
        Cut::Zero => {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&vec![0u8; (len - at) as usize]).unwrap();
        }
        Cut::SetLen => f.set_len(at).unwrap(),
        Cut::Garbage(seed) => {
            let mut rng = fastrand::Rng::with_seed(seed);
            let junk: Vec<u8> = (at..len).map(|_| rng.u8(..)).collect();
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&junk).unwrap();
        }
    }
    f.sync_all().unwrap();
}

/// Opens `dir`, dequeues everything and checks it is exactly `want` (in order), then
/// enqueues and dequeues a new message. Returns a description of what went wrong.
fn check_open_and_go_on(dir: &Path, opts: Options, want: &[(u64, Vec<u8>)]) -> Result<(), String> {
    let q = Queue::open_with(dir, opts).map_err(|e| format!("open failed: {e}"))?;
    let mut got = Vec::new();
    loop {
        match q.dequeue() {
            Ok(Some(m)) => got.push((m.id(), m.payload().to_vec())),
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "dequeue failed after {} of {} records: {e}",
                    got.len(),
                    want.len()
                ))
            }
        }
    }
    if got.len() < want.len() {
        return Err(format!(
            "lost records: delivered {} of {} (first missing id {})",
            got.len(),
            want.len(),
            want[got.len()].0
        ));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            return Err(format!(
                "record #{i}: got id {} ({} bytes), want id {} ({} bytes)",
                g.0,
                g.1.len(),
                w.0,
                w.1.len()
            ));
        }
    }
    if got.len() > want.len() {
        return Err(format!(
            "delivered {} records after the damage (first id {})",
            got.len() - want.len(),
            got[want.len()].0
        ));
    }
    let last = got.last().map_or(0, |r| r.0);
    let new = b"after recovery".to_vec();
    let id = q
        .enqueue(&new)
        .map_err(|e| format!("enqueue after recovery: {e}"))?;
    if id <= last {
        return Err(format!("new id {id} is not above the last kept id {last}"));
    }
    match q.dequeue() {
        Ok(Some(m)) if m.id() == id && m.payload() == &new[..] => {}
        other => return Err(format!("new message not delivered: {other:?}")),
    }
    q.close().map_err(|e| format!("close: {e}"))?;
    Ok(())
}

/// Records before `id` (exclusive), as enqueued.
fn before(id: u64) -> Vec<(u64, Vec<u8>)> {
    built()
        .expected
        .iter()
        .filter(|r| r.0 < id)
        .cloned()
        .collect()
}

/// Makes the copy look like a directory after a crash rather than a clean close: the
/// checkpoint names the start of the last segment (as the one written when the journal
/// rolled into it), so its records were not known to be flushed and damage among them
/// is a torn write. (Below a checkpointed offset, damage is corruption: see the
/// `*_is_corrupt_*` tests.)
fn checkpoint_before_the_tail(dir: &Path) {
    let path = dir.join(ledgerq_journal::CHECKPOINT_FILE);
    let cp = Checkpoint::decode(&fs::read(&path).unwrap()).unwrap();
    let early = Checkpoint {
        offset: SEGMENT_HEADER_LEN,
        next_id: cp.segment_base,
        clean: false,
        check_from: 0,
        ..cp
    };
    fs::write(&path, early.encode()).unwrap();
}

fn run_tail_case(at: u64, how: Cut, kept_below: u64, failures: &mut Vec<String>) {
    let b = built();
    let last = b.segments.last().unwrap();
    let (_t, dir) = fresh_copy();
    checkpoint_before_the_tail(&dir);
    damage_tail(&copy_of(&dir, last), at, how);
    if let Err(e) = check_open_and_go_on(&dir, opts(), &before(kept_below)) {
        failures.push(format!("last segment cut at {at} ({how:?}): {e}"));
    }
}

fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn tail_records() -> Vec<Rec> {
    let recs = records(built().segments.last().unwrap());
    assert!(recs.len() >= 4, "the last segment holds records");
    recs
}

#[test]
fn zeroed_from_every_record_boundary_of_the_last_segment() {
    let recs = tail_records();
    let mut failures = Vec::new();
    for r in &recs {
        run_tail_case(r.offset, Cut::Zero, r.id, &mut failures);
    }
    assert_no_failures("zeroed at record boundaries", &failures);
}

#[test]
fn set_len_at_every_record_boundary_of_the_last_segment() {
    let recs = tail_records();
    let end = recs.last().map(|r| r.offset + r.len).unwrap();
    let mut failures = Vec::new();
    for r in &recs {
        run_tail_case(r.offset, Cut::SetLen, r.id, &mut failures);
    }
    // After the last record: nothing is lost.
    let next = recs.last().unwrap().id + 1;
    run_tail_case(end, Cut::SetLen, next, &mut failures);
    assert_no_failures("set_len at record boundaries", &failures);
}

#[test]
fn cut_inside_records_of_the_last_segment() {
    let recs = tail_records();
    let mut rng = fastrand::Rng::with_seed(0x70_52_4e);
    let mut failures = Vec::new();
    for r in &recs {
        let at = r.offset + rng.u64(1..r.data_len);
        run_tail_case(at, Cut::Zero, r.id, &mut failures);
        let at = r.offset + rng.u64(1..r.data_len);
        run_tail_case(at, Cut::SetLen, r.id, &mut failures);
    }
    assert_no_failures("cut inside records", &failures);
}

#[test]
fn garbage_tail_of_the_last_segment() {
    let recs = tail_records();
    let mut rng = fastrand::Rng::with_seed(0x6a_75_6e_6b);
    let mut failures = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        // At the boundary and at a random offset inside the record.
        run_tail_case(r.offset, Cut::Garbage(i as u64), r.id, &mut failures);
        let at = r.offset + rng.u64(1..r.data_len);
        run_tail_case(at, Cut::Garbage(1000 + i as u64), r.id, &mut failures);
    }
    // Garbage after the last record (in the zero-filled free space).
    let last = recs.last().unwrap();
    run_tail_case(
        last.offset + last.len,
        Cut::Garbage(7),
        last.id + 1,
        &mut failures,
    );
    assert_no_failures("garbage tails", &failures);
}

#[test]
fn zero_filled_tail_after_the_data_loses_nothing() {
    let recs = tail_records();
    let last = recs.last().unwrap();
    let mut failures = Vec::new();
    // Zeroing what is already zero, from just after the data and from the middle of
    // the free space.
    run_tail_case(
        last.offset + last.len,
        Cut::Zero,
        last.id + 1,
        &mut failures,
    );
    run_tail_case(SEGMENT_SIZE / 2 + 8, Cut::Zero, last.id + 1, &mut failures);
    assert_no_failures("zero-filled tails", &failures);
}

#[test]
fn last_segment_of_zero_bytes_or_a_partial_header() {
    let first_of_last = tail_records()[0].id;
    let mut failures = Vec::new();
    for at in [0, 1, 8, u64::from(SEGMENT_HEADER_LEN) - 1] {
        run_tail_case(at, Cut::SetLen, first_of_last, &mut failures);
    }
    // A header that is all zeros (the file was created but its header never written).
    run_tail_case(0, Cut::Zero, first_of_last, &mut failures);
    assert_no_failures("empty last segment", &failures);
}

/// Flips one payload byte of a record in the middle of `seg` (an index into the
/// segment list); returns the damaged record.
fn flip_in_segment(dir: &Path, seg: usize) -> (PathBuf, Rec) {
    let original = &built().segments[seg];
    let recs = records(original);
    let r = recs[recs.len() / 2];
    let path = copy_of(dir, original);
    let mut bytes = fs::read(&path).unwrap();
    // Byte 60 of the record is inside the payload (after the 56-byte header and the
    // 8-byte ID prefix of every payload: 56 + 4).
    let at = (r.offset + 60) as usize;
    bytes[at] ^= 0x5a;
    fs::write(&path, &bytes).unwrap();
    (path, r)
}

fn check_corrupt_error(e: &Error, path: &Path, r: Rec) -> Result<(), String> {
    match e {
        Error::Corrupt {
            path: p, offset, ..
        } => {
            let same = fs::canonicalize(p).ok() == fs::canonicalize(path).ok();
            if !same {
                return Err(format!(
                    "Corrupt names {} instead of {}",
                    p.display(),
                    path.display()
                ));
            }
            if !(r.offset..r.offset + r.len).contains(offset) {
                return Err(format!(
                    "Corrupt offset {offset} is outside the damaged record {}..{}",
                    r.offset,
                    r.offset + r.len
                ));
            }
            Ok(())
        }
        other => Err(format!("expected Error::Corrupt, got {other:?}")),
    }
}

/// Strict mode: the damage is reported as `Corrupt` naming the file and the damaged
/// record, at open or, at the latest, when the reader reaches it; every record before
/// it is delivered intact and the damaged payload never is.
fn strict_flip(seg: usize) -> Result<(), String> {
    let (_t, dir) = fresh_copy();
    let (path, r) = flip_in_segment(&dir, seg);
    let q = match Queue::open_with(&dir, opts()) {
        Err(e) => return check_corrupt_error(&e, &path, r),
        Ok(q) => q,
    };
    let want = before(r.id);
    let mut got = 0usize;
    loop {
        match q.dequeue() {
            Ok(Some(m)) => {
                if got >= want.len() {
                    return Err(format!(
                        "delivered id {} (damaged record is {}) instead of reporting corruption",
                        m.id(),
                        r.id
                    ));
                }
                if (m.id(), m.payload()) != (want[got].0, &want[got].1[..]) {
                    return Err(format!("record #{got} differs (id {})", m.id()));
                }
                got += 1;
            }
            Ok(None) => return Err("reached the end without reporting corruption".into()),
            Err(e) => {
                if got != want.len() {
                    return Err(format!(
                        "error after {got} of {} records before the damage: {e}",
                        want.len()
                    ));
                }
                return check_corrupt_error(&e, &path, r);
            }
        }
    }
}

/// Skip mode: opens, delivers every undamaged record (and not the damaged one).
fn skip_flip(seg: usize) -> Result<(), String> {
    let (_t, dir) = fresh_copy();
    let (_path, r) = flip_in_segment(&dir, seg);
    let want: Vec<(u64, Vec<u8>)> = built()
        .expected
        .iter()
        .filter(|x| x.0 != r.id)
        .cloned()
        .collect();
    check_open_and_go_on(&dir, opts().recovery_mode(RecoveryMode::Skip), &want)
}

#[test]
fn flipped_byte_in_an_old_segment_is_corrupt_in_strict_mode() {
    let n = built().segments.len();
    let mut failures = Vec::new();
    // The oldest segment and the one before the last.
    for seg in [0, n - 2] {
        if let Err(e) = strict_flip(seg) {
            failures.push(format!("segment #{seg} of {n}: {e}"));
        }
    }
    assert_no_failures("strict mode, flipped byte", &failures);
}

#[test]
fn flipped_byte_in_an_old_segment_is_skipped_in_skip_mode() {
    let n = built().segments.len();
    let mut failures = Vec::new();
    for seg in [0, n - 2] {
        if let Err(e) = skip_flip(seg) {
            failures.push(format!("segment #{seg} of {n}: {e}"));
        }
    }
    assert_no_failures("skip mode, flipped byte", &failures);
}

#[test]
fn foreign_file_named_like_a_segment_is_a_typed_error() {
    let junk: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
    // Beside a real queue.
    let (_t, dir) = fresh_copy();
    fs::write(dir.join("00000000000000000099.seg"), &junk).unwrap();
    let r = Queue::open_with(&dir, opts());
    assert!(
        r.is_err(),
        "a junk segment file among real ones must not open silently"
    );
    // In an otherwise empty directory, and a junk file of a full segment's size.
    for len in [junk.len(), SEGMENT_SIZE as usize] {
        let t = tempfile::tempdir().unwrap();
        let mut j = junk.clone();
        j.resize(len, 0xa5);
        fs::write(t.path().join("00000000000000000099.seg"), &j).unwrap();
        let r = Queue::open_with(t.path(), opts());
        assert!(
            r.is_err(),
            "a junk segment file of {len} bytes must be an error"
        );
    }
}

#[test]
fn pristine_copy_opens_with_every_record() {
    // The harness itself: an undamaged copy delivers everything.
    let (_t, dir) = fresh_copy();
    check_open_and_go_on(&dir, opts(), &built().expected).unwrap();
}

// ---------- damage that loses messages: reported, never silent ----------

/// Opens `dir` in Strict mode and dequeues until the end or an error: the messages
/// delivered, and the error (of the open or of a dequeue) if any.
fn strict_read(dir: &Path) -> (Vec<(u64, Vec<u8>)>, Option<Error>) {
    let q = match Queue::open_with(dir, opts()) {
        Ok(q) => q,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut got = Vec::new();
    loop {
        match q.dequeue() {
            Ok(Some(m)) => got.push((m.id(), m.payload().to_vec())),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

/// The enqueued messages whose IDs are not in `lost`.
fn all_but(lost: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    built()
        .expected
        .iter()
        .filter(|r| !lost.contains(&r.0))
        .cloned()
        .collect()
}

/// The base ID of a segment file, from its name.
fn base_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Strict mode: every message before `lost` is delivered, then `Corrupt` naming `path`
/// at `offset` and the missing range.
fn expect_strict_corrupt(dir: &Path, lost: std::ops::Range<u64>, path: &Path, offset: u64) {
    let (got, err) = strict_read(dir);
    assert_eq!(
        got,
        before(lost.start),
        "messages before the damage, in order"
    );
    match err {
        Some(Error::Corrupt {
            path: p,
            offset: o,
            reason,
        }) => {
            assert_eq!(
                fs::canonicalize(&p).ok(),
                fs::canonicalize(path).ok(),
                "{reason}"
            );
            assert_eq!(o, offset, "{reason}");
            let range = format!("IDs {}..{}", lost.start, lost.end);
            assert!(reason.contains(&range), "{reason} does not name {range}");
        }
        other => panic!("expected Corrupt naming IDs {lost:?}, got {other:?}"),
    }
}

/// Skip mode: every other message is delivered and the damage is counted.
fn expect_skipped(dir: &Path, lost: std::ops::Range<u64>) {
    let q = Queue::open_with(dir, opts().recovery_mode(RecoveryMode::Skip)).unwrap();
    let mut got = Vec::new();
    while let Some(m) = q.dequeue().unwrap() {
        got.push((m.id(), m.payload().to_vec()));
    }
    assert_eq!(got, all_but(lost.clone()), "every message outside {lost:?}");
    assert!(q.stats().corrupt_skipped >= 1, "{:?}", q.stats());
    let id = q.enqueue(b"after the damage").unwrap();
    assert!(
        id > built().expected.last().unwrap().0,
        "new ID {id} reused an old one"
    );
    assert_eq!(q.dequeue().unwrap().unwrap().id(), id);
}

/// Strict mode: the open itself fails with `Corrupt` at `path`, naming the IDs `lost`.
fn expect_corrupt_at_open(dir: &Path, path: &Path, lost: std::ops::Range<u64>) {
    match Queue::open_with(dir, opts()) {
        Err(Error::Corrupt {
            path: p, reason, ..
        }) => {
            assert_eq!(p, path);
            let range = format!("IDs {}..{}", lost.start, lost.end);
            assert!(reason.contains(&range), "{reason}");
        }
        other => panic!("expected Corrupt at open, got {:?}", other.map(|_| ())),
    }
}

/// `verify` reports the damage as corruption at `path`/`offset`.
fn expect_verify_corrupt(dir: &Path, path: &Path, offset: u64) {
    let r = ledgerq_recovery::verify(dir).unwrap();
    assert!(!r.is_clean(), "{r}");
    assert!(
        r.corruption.iter().any(|c| {
            fs::canonicalize(&c.path).ok() == fs::canonicalize(path).ok() && c.offset == offset
        }),
        "no corruption at {}:{offset} in\n{r}",
        path.display()
    );
}

#[test]
fn missing_middle_segment_is_reported_not_skipped_silently() {
    let b = built();
    let (gone, after) = (&b.segments[1], &b.segments[2]);
    let lost = base_of(gone)..base_of(after);
    for mode in [RecoveryMode::Strict, RecoveryMode::Skip] {
        let (_t, dir) = fresh_copy();
        fs::remove_file(copy_of(&dir, gone)).unwrap();
        expect_verify_corrupt(&dir, &copy_of(&dir, after), 16);
        match mode {
            RecoveryMode::Strict => {
                expect_strict_corrupt(&dir, lost.clone(), &copy_of(&dir, after), 16)
            }
            _ => expect_skipped(&dir, lost.clone()),
        }
    }
}

#[test]
fn missing_first_segment_with_unconsumed_messages_is_reported() {
    let b = built();
    let lost = 1..base_of(&b.segments[1]);
    for mode in [RecoveryMode::Strict, RecoveryMode::Skip] {
        let (_t, dir) = fresh_copy();
        fs::remove_file(copy_of(&dir, &b.segments[0])).unwrap();
        expect_verify_corrupt(&dir, &dir.join("consumer.default.state"), 16);
        match mode {
            RecoveryMode::Strict => expect_corrupt_at_open(&dir, &dir, lost.clone()),
            _ => expect_skipped(&dir, lost.clone()),
        }
    }
}

#[test]
fn zeroed_commit_word_in_an_old_segment_is_reported_not_taken_as_its_end() {
    let b = built();
    let n = b.segments.len();
    // The oldest segment and the one before the last (neither is scanned at open).
    for seg in [0, n - 2] {
        let recs = records(&b.segments[seg]);
        let r = recs[recs.len() / 2];
        let next_base = base_of(&b.segments[seg + 1]);
        for mode in [RecoveryMode::Strict, RecoveryMode::Skip] {
            let (_t, dir) = fresh_copy();
            let path = copy_of(&dir, &b.segments[seg]);
            let mut bytes = fs::read(&path).unwrap();
            bytes[r.offset as usize..r.offset as usize + 4].fill(0);
            fs::write(&path, &bytes).unwrap();
            expect_verify_corrupt(&dir, &path, r.offset);
            match mode {
                // The rest of the segment is not read past the slot in Strict mode.
                RecoveryMode::Strict => {
                    expect_strict_corrupt(&dir, r.id..next_base, &path, r.offset)
                }
                // Skip mode loses only the zeroed record.
                _ => expect_skipped(&dir, r.id..r.id + 1),
            }
        }
    }
}

#[test]
fn flipped_byte_in_the_last_record_of_a_cleanly_closed_queue_is_corruption() {
    let b = built();
    let last = b.segments.last().unwrap();
    let r = *records(last).last().unwrap();
    for mode in [RecoveryMode::Strict, RecoveryMode::Skip] {
        let (_t, dir) = fresh_copy();
        let path = copy_of(&dir, last);
        let mut bytes = fs::read(&path).unwrap();
        // A payload byte (see `flip_in_segment`).
        bytes[(r.offset + 60) as usize] ^= 0x5a;
        fs::write(&path, &bytes).unwrap();
        let report = ledgerq_recovery::verify(&dir).unwrap();
        assert!(report.torn.is_empty(), "not a torn tail:\n{report}");
        expect_verify_corrupt(&dir, &path, r.offset);
        match mode {
            RecoveryMode::Strict => match Queue::open_with(&dir, opts()) {
                Err(e) => check_corrupt_error(&e, &path, r).unwrap(),
                Ok(_) => panic!("the damaged record was cut as a torn tail"),
            },
            _ => {
                expect_skipped(&dir, r.id..r.id + 1);
                // Its ID is not given to a new message either (expect_skipped enqueued
                // one; it was the next after the last enqueued before the damage).
                let q = Queue::open_with(&dir, opts()).unwrap();
                assert!(q.stats().next_id > r.id + 1, "{:?}", q.stats());
            }
        }
    }
}

#[test]
fn missing_last_segment_is_reported_not_skipped_silently() {
    let b = built();
    let gone = b.segments.last().unwrap();
    let lost = base_of(gone)..b.expected.last().unwrap().0 + 1;
    for mode in [RecoveryMode::Strict, RecoveryMode::Skip] {
        let (_t, dir) = fresh_copy();
        let gone = copy_of(&dir, gone);
        fs::remove_file(&gone).unwrap();
        let range = format!("IDs {}..{}", lost.start, lost.end);
        let r = ledgerq_recovery::verify(&dir).unwrap();
        assert!(
            !r.is_clean()
                && r.corruption
                    .iter()
                    .any(|c| c.path == gone && c.reason.contains(&range)),
            "{r}"
        );
        match mode {
            RecoveryMode::Strict => expect_corrupt_at_open(&dir, &gone, lost.clone()),
            _ => expect_skipped(&dir, lost.clone()),
        }
    }
}

#[test]
fn every_segment_file_missing_is_reported() {
    let b = built();
    let (_t, dir) = fresh_copy();
    for s in &b.segments {
        fs::remove_file(copy_of(&dir, s)).unwrap();
    }
    match Queue::open_with(&dir, opts()) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("expected Corrupt at open, got {:?}", other.map(|_| ())),
    }
    assert!(!ledgerq_recovery::verify(&dir).unwrap().is_clean());
}
