//! Simulated power loss through the journal's `Storage` seam.
//!
//! A storage double wraps [`FileStorage`] and, at each flush, keeps a copy of exactly the
//! bytes flushed. After a run of `Durability::Sync` appends from several threads, a
//! directory is rebuilt holding only what the first N flushes made durable (zeros
//! elsewhere, like a pre-allocated file whose other pages never reached the disk). It
//! must reopen, and hold every append that had returned before the N-th flush
//! completed, intact.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ledgerq_journal::{
    Durability, FileStorage, FlushRequest, Journal, JournalOptions, RecordIn, Storage,
};

const SEGMENT_SIZE: u64 = 64 << 10;

/// One flush, as made durable.
#[derive(Debug, Clone)]
struct Flushed {
    file: String,
    offset: u64,
    bytes: Vec<u8>,
}

/// Records every completed flush in completion order.
#[derive(Debug, Default)]
struct Recorder {
    log: Mutex<Vec<Flushed>>,
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
