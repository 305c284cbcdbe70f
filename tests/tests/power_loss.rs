//! Simulated power loss through the journal's `Storage` seam.
//!
//! A storage double wraps [`FileStorage`] and, at each flush, keeps a copy of exactly the
//! bytes flushed. After a run of `Durability::Sync` appends from several threads, a
//! directory is rebuilt holding only what the first N flushes made durable (zeros
//! elsewhere, like a pre-allocated file whose other pages never reached the disk). It
//! must reopen, and hold every append that had returned before the N-th flush
//! completed, intact. The checkpoint file the journal writes in the background is
//! recorded the same way, so a snapshot holds the last checkpoint written before it.
//!
//! The last tests write several segments after the last checkpoint, flush some of them,
//! and let a power loss keep only part of the rest (torn records at the ends of several
//! segments, a segment whose header never reached the disk): open succeeds in Strict
//! mode and keeps every flushed record, where the rule without a checkpoint (scan the
//! last two segments) does not.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledgerq_journal::proto::KIND_RECORD;
use ledgerq_journal::{
    Durability, Error, FileStorage, FlushRequest, Journal, JournalOptions, RecordIn, RecoveryMode,
    Storage, CHECKPOINT_FILE,
};

const SEGMENT_SIZE: u64 = 64 << 10;

/// One flush, as made durable.
#[derive(Debug, Clone)]
struct Flushed {
    file: String,
    offset: u64,
    bytes: Vec<u8>,
}

/// Records every completed flush and checkpoint write in completion order. Checkpoint
/// writes can be refused (they then fail, as on a full disk).
#[derive(Debug, Default)]
struct Recorder {
    log: Mutex<Vec<Flushed>>,
    refuse_checkpoints: AtomicBool,
}

impl Storage for Recorder {
    fn create_segment(&self, path: &Path, size: u64) -> io::Result<fs::File> {
        FileStorage.create_segment(path, size)
    }

    fn flush(&self, req: &FlushRequest<'_>) -> io::Result<()> {
        FileStorage.flush(req)?;
        let rec = Flushed {
            file: req.path.file_name().unwrap().to_string_lossy().into_owned(),
            offset: req.offset,
            bytes: req.bytes.to_vec(),
        };
        // The flush is complete once it is in the log: appends that returned read the
        // log length afterwards.
        self.log.lock().unwrap().push(rec);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FileStorage.sync_dir(dir)
    }

    fn replace_file(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        if self.refuse_checkpoints.load(Ordering::SeqCst) {
            return Err(io::Error::other("checkpoint writes refused by the test"));
        }
        FileStorage.replace_file(dir, name, bytes)?;
        self.log.lock().unwrap().push(Flushed {
            file: name.to_string(),
            offset: 0,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }
}

impl Recorder {
    fn completed(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

fn payload(thread: u64, n: u64) -> Vec<u8> {
    let len = ((thread * 131 + n * 29) % 700) as usize + 16;
    let mut p = thread.to_le_bytes().to_vec();
    p.extend_from_slice(&n.to_le_bytes());
    p.extend((0..len).map(|i| (n as u8) ^ (thread as u8).wrapping_mul(7) ^ (i as u8)));
    p
}

/// An append that returned: its ID, payload, and how many flushes had completed then.
struct Returned {
    id: u64,
    payload: Vec<u8>,
    flushes_done: usize,
}

/// Runs `threads` appenders of `per_thread` records each with `Durability::Sync`.
fn run(dir: &Path, threads: u64, per_thread: u64) -> (Arc<Recorder>, Vec<Returned>) {
    let rec = Arc::new(Recorder::default());
    let opts = JournalOptions::new()
        .segment_size(SEGMENT_SIZE)
        .durability(Durability::Sync)
        .storage(rec.clone());
    let j = Journal::open(dir, opts).unwrap();
    let returned = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (j, rec, returned) = (&j, &rec, &returned);
            s.spawn(move || {
                let mut mine = Vec::new();
                for n in 0..per_thread {
                    let p = payload(t, n);
                    let id = j.append(&RecordIn::new(&p)).unwrap();
                    mine.push(Returned {
                        id,
                        payload: p,
                        flushes_done: rec.completed(),
                    });
                }
                returned.lock().unwrap().extend(mine);
            });
        }
    });
    j.close().unwrap();
    (rec, returned.into_inner().unwrap())
}

/// Builds in `dst` the directory that the first `n` flushes left on stable storage.
fn rebuild(log: &[Flushed], n: usize, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    let mut files: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for f in &log[..n] {
        if f.file == CHECKPOINT_FILE {
            // Replaced whole, atomically.
            files.insert(&f.file, f.bytes.clone());
            continue;
        }
        // Flushes of temporary (recycled) files are not segments.
        if !f.file.ends_with(".seg") {
            continue;
        }
        let img = files
            .entry(&f.file)
            .or_insert_with(|| vec![0u8; SEGMENT_SIZE as usize]);
        let at = f.offset as usize;
        img[at..at + f.bytes.len()].copy_from_slice(&f.bytes);
    }
    for (name, img) in files {
        fs::write(dst.join(name), img).unwrap();
    }
}

/// Reopens `dir` and reads every record from `first_id()`.
fn read_all(dir: &Path) -> Result<BTreeMap<u64, Vec<u8>>, String> {
    let j = Journal::open(dir, JournalOptions::new().segment_size(SEGMENT_SIZE))
        .map_err(|e| format!("open failed: {e}"))?;
    let mut c = j.cursor(j.first_id()).map_err(|e| format!("cursor: {e}"))?;
    let mut out = BTreeMap::new();
    loop {
        match c.next(&j, |r| (r.id(), r.payload().to_vec())) {
            Ok(Some((id, p))) => {
                out.insert(id, p);
            }
            Ok(None) => break,
            Err(e) => return Err(format!("read failed after {} records: {e}", out.len())),
        }
    }
    // It goes on: a new append succeeds after the recovered records.
    let id = j
        .append(&RecordIn::new(b"after power loss"))
        .map_err(|e| format!("append after recovery: {e}"))?;
    if out.keys().next_back().is_some_and(|&last| id <= last) {
        return Err(format!("new id {id} is not above the recovered records"));
    }
    j.close().map_err(|e| format!("close: {e}"))?;
    Ok(out)
}

/// Checks the snapshot after `n` flushes; returns a failure description.
fn check_snapshot(log: &[Flushed], returned: &[Returned], n: usize) -> Result<usize, String> {
    let t = tempfile::tempdir().unwrap();
    let dst: PathBuf = t.path().join("q");
    rebuild(log, n, &dst);
    let got = read_all(&dst).map_err(|e| format!("after {n} flushes: {e}"))?;
    let mut checked = 0;
    for r in returned.iter().filter(|r| r.flushes_done <= n) {
        match got.get(&r.id) {
            Some(p) if *p == r.payload => checked += 1,
            Some(_) => {
                return Err(format!(
                    "after {n} flushes: id {} has a different payload",
                    r.id
                ))
            }
            None => return Err(format!("after {n} flushes: id {} is lost", r.id)),
        }
    }
    // Nothing that was never appended appears.
    let known: BTreeMap<u64, &Vec<u8>> = returned.iter().map(|r| (r.id, &r.payload)).collect();
    for (id, p) in &got {
        if known.get(id).is_some_and(|k| *k != p) {
            return Err(format!(
                "after {n} flushes: id {id} holds a payload never appended"
            ));
        }
    }
    Ok(checked)
}

fn power_loss(threads: u64, per_thread: u64) {
    let t = tempfile::tempdir().unwrap();
    let (rec, returned) = run(&t.path().join("q"), threads, per_thread);
    let log = rec.log.lock().unwrap().clone();
    assert!(log.len() >= 3, "a Sync run flushes at least a few times");
    let segs = log
        .iter()
        .map(|f| f.file.as_str())
        .filter(|f| f.ends_with(".seg"))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(segs >= 2, "the run spans several segments ({segs})");
    assert!(
        log.iter().any(|f| f.file == CHECKPOINT_FILE),
        "checkpoints are written (and kept in the snapshots that follow them)"
    );
    // Several N: the first flushes, a spread through the run, and the last.
    let mut ns: Vec<usize> = vec![1, 2, 3, log.len() / 3, log.len() / 2, log.len() - 1];
    let mut rng = fastrand::Rng::with_seed(threads * 1000 + per_thread);
    ns.extend((0..6).map(|_| rng.usize(1..=log.len())));
    ns.push(log.len());
    ns.sort_unstable();
    ns.dedup();
    let mut failures = Vec::new();
    let mut checked_last = 0;
    for n in ns {
        match check_snapshot(&log, &returned, n) {
            Ok(c) => checked_last = c,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{threads} thread(s): {} snapshot(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // With every flush applied, every append that returned is there.
    assert_eq!(checked_last, returned.len());
}

#[test]
fn power_loss_one_thread() {
    power_loss(1, 400);
}

#[test]
fn power_loss_two_threads() {
    power_loss(2, 250);
}

#[test]
fn power_loss_four_threads() {
    power_loss(4, 150);
}

#[test]
fn nothing_flushed_opens_empty() {
    // N = 0: nothing reached the disk; the directory holds no segment and opens empty.
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("q");
    rebuild(&[], 0, &dst);
    let got = read_all(&dst).unwrap();
    assert!(got.is_empty());
}

// ---------- several segments after the checkpoint ----------

/// Records of a segment image: `(offset, aligned length, id)`, up to the first slot that
/// is not a committed record.
fn records_of(img: &[u8]) -> Vec<(usize, usize, u64)> {
    let rd32 = |at: usize| u32::from_le_bytes(img[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut off = 64;
    while off + 56 <= img.len() && rd32(off) == KIND_RECORD {
        let len = (rd32(off + 8) as usize + 7) & !7;
        let id = u64::from_le_bytes(img[off + 16..off + 24].try_into().unwrap());
        out.push((off, len, id));
        off += len;
    }
    out
}

/// How much of a segment written after the last flush survives the power loss.
#[derive(Debug, Clone, Copy)]
enum Survives {
    /// Its bytes up to the middle of its last-but-`k` record (a torn record).
    TornAt(usize),
    /// Nothing (its header never reached the disk either).
    Nothing,
}

/// A journal whose checkpoint names an early segment, followed by `flushed_segments`
/// segments that were flushed (but not checkpointed) and then `lost_segments` more that
/// never were. The directory image after a power loss keeps the flushed bytes and, of
/// the rest, what `survives` says per unflushed segment (oldest first). Returns the
/// image directory, the records that were flushed, and every record appended.
struct Scenario {
    _tmp: tempfile::TempDir,
    image: PathBuf,
    flushed: BTreeMap<u64, Vec<u8>>,
    appended: BTreeMap<u64, Vec<u8>>,
    /// Records of the unflushed segments kept whole by the power loss.
    kept_unflushed: BTreeMap<u64, Vec<u8>>,
    unflushed_segments: usize,
}

fn scenario(flushed_segments: usize, survives: &[Survives]) -> Scenario {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let rec = Arc::new(Recorder::default());
    let opts = JournalOptions::new()
        .segment_size(SEGMENT_SIZE)
        .durability(Durability::Buffered)
        .flush_interval(Duration::from_secs(3600))
        .storage(rec.clone());
    let j = Journal::open(&dir, opts).unwrap();
    let segments = || {
        fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    };
    let mut appended = BTreeMap::new();
    let mut n = 0u64;
    let mut append_until = |segs: usize, appended: &mut BTreeMap<u64, Vec<u8>>| {
        while segments() < segs {
            let p = payload(n % 7, n);
            n += 1;
            let id = j.append(&RecordIn::new(&p)).unwrap();
            appended.insert(id, p);
        }
    };
    // The checkpoint names the second segment.
    append_until(2, &mut appended);
    j.sync().unwrap();
    // (The background writer may have written this one already, after the roll.)
    j.write_checkpoint().unwrap();
    rec.refuse_checkpoints.store(true, Ordering::SeqCst);
    // Flushed after the checkpoint.
    append_until(2 + flushed_segments, &mut appended);
    j.sync().unwrap();
    let durable = j.durable_id();
    let flushed_log = rec.log.lock().unwrap().len();
    // Never flushed: a roll into each of the lost segments, and some records in the last.
    append_until(2 + flushed_segments + survives.len(), &mut appended);
    for _ in 0..20 {
        let p = payload(9, n);
        n += 1;
        appended.insert(j.append(&RecordIn::new(&p)).unwrap(), p);
    }
    // The power loss: flushed bytes, plus what survives of the unflushed segments.
    let image = tmp.path().join("image");
    let log = rec.log.lock().unwrap().clone();
    rebuild(&log, flushed_log, &image);
    let mut seg_files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    seg_files.sort();
    let unflushed: Vec<&PathBuf> = seg_files
        .iter()
        .filter(|p| !image.join(p.file_name().unwrap()).exists())
        .collect();
    // The segment the last flush ended in may hold unflushed records too; they are lost.
    assert_eq!(unflushed.len(), survives.len(), "unflushed segments");
    let mut kept_unflushed = BTreeMap::new();
    for (path, how) in unflushed.iter().zip(survives) {
        let now = fs::read(path).unwrap();
        let mut img = vec![0u8; now.len()];
        if let Survives::TornAt(k) = *how {
            let recs = records_of(&now);
            assert!(recs.len() > k + 1, "{} has records", path.display());
            let (off, _, _) = recs[recs.len() - 1 - k];
            let cut = off + 30; // inside the record: its commit word survives
            img[..cut].copy_from_slice(&now[..cut]);
            for &(_, _, id) in &recs[..recs.len() - 1 - k] {
                kept_unflushed.insert(id, appended[&id].clone());
            }
        }
        fs::write(image.join(path.file_name().unwrap()), img).unwrap();
    }
    drop(j);
    let flushed = appended
        .iter()
        .filter(|(id, _)| **id < durable)
        .map(|(id, p)| (*id, p.clone()))
        .collect();
    Scenario {
        _tmp: tmp,
        image,
        flushed,
        appended,
        kept_unflushed,
        unflushed_segments: survives.len(),
    }
}

fn strict() -> JournalOptions {
    JournalOptions::new()
        .segment_size(SEGMENT_SIZE)
        .recovery_mode(RecoveryMode::Strict)
}

/// Opens in Strict mode and reads everything.
fn open_and_read(dir: &Path) -> Result<(Journal, BTreeMap<u64, Vec<u8>>), Error> {
    let j = Journal::open(dir, strict())?;
    let mut c = j.cursor(j.first_id())?;
    let mut out = BTreeMap::new();
    while let Some((id, p)) = c.next(&j, |r| (r.id(), r.payload().to_vec()))? {
        out.insert(id, p);
    }
    Ok((j, out))
}

fn check_recovered(s: &Scenario) -> Journal {
    let (j, got) = open_and_read(&s.image).unwrap_or_else(|e| panic!("strict open: {e}"));
    for (id, p) in &s.flushed {
        assert_eq!(got.get(id), Some(p), "flushed id {id}");
    }
    for (id, p) in &s.kept_unflushed {
        assert_eq!(got.get(id), Some(p), "id {id}, whole on disk");
    }
    for (id, p) in &got {
        assert_eq!(s.appended.get(id), Some(p), "id {id} was never appended so");
    }
    assert_eq!(
        got.len(),
        s.flushed.len() + s.kept_unflushed.len(),
        "exactly the flushed records and the whole unflushed ones"
    );
    let last = *got.keys().next_back().unwrap();
    let id = j.append(&RecordIn::new(b"after the power loss")).unwrap();
    assert!(id > last);
    j
}

#[test]
fn four_segments_after_the_checkpoint_with_torn_ends_open_in_strict_mode() {
    let s = scenario(
        2,
        &[
            Survives::TornAt(3),
            Survives::TornAt(0),
            Survives::TornAt(5),
            Survives::TornAt(0),
        ],
    );
    assert!(s.unflushed_segments >= 4);
    let j = check_recovered(&s);
    let info = j.recovery_info().unwrap().clone();
    assert!(info.checkpoint.is_some(), "{info:?}");
    // From the checkpointed segment: it, the two flushed after it, the four lost.
    assert_eq!(info.scanned_segments, 7, "{info:?}");
    assert_eq!(info.truncated, 4, "{info:?}");
    j.close().unwrap();
    // Opens again, clean, and the new checkpoint names the last segment.
    let (j, got) = open_and_read(&s.image).unwrap();
    assert_eq!(got.len(), s.flushed.len() + s.kept_unflushed.len() + 1);
    assert_eq!(j.recovery_info().unwrap().scanned_segments, 1);
}

#[test]
fn without_the_checkpoint_the_same_loss_is_reported_as_corruption() {
    // The control: the rule without a checkpoint scans the last two segments only, so
    // the torn record at the end of an earlier unflushed segment is met by the reader.
    let s = scenario(
        1,
        &[
            Survives::TornAt(2),
            Survives::TornAt(1),
            Survives::TornAt(0),
            Survives::TornAt(0),
        ],
    );
    let copy = s.image.with_file_name("no-checkpoint");
    fs::create_dir(&copy).unwrap();
    for e in fs::read_dir(&s.image).unwrap() {
        let e = e.unwrap();
        if e.file_name() != CHECKPOINT_FILE {
            fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    match open_and_read(&copy) {
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a torn record outside the last two segments went unnoticed"),
    }
    check_recovered(&s).close().unwrap();
}

#[test]
fn a_segment_after_the_checkpoint_whose_header_never_reached_the_disk_is_removed() {
    let s = scenario(
        1,
        &[
            Survives::TornAt(1),
            Survives::Nothing,
            Survives::TornAt(2),
            Survives::TornAt(0),
        ],
    );
    let j = check_recovered(&s);
    assert_eq!(j.recovery_info().unwrap().removed_blank, 1);
    j.close().unwrap();
}
