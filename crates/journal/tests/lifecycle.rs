#![cfg(not(ledgerq_loom))]
//! `Journal::shutdown` (close through `&self`) and `JournalOptions::min_next_id`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ledgerq_journal::*;

const SEG: u64 = 64 * 1024;

fn opts() -> JournalOptions {
    JournalOptions::new().segment_size(SEG)
}

fn read_all(j: &Journal, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut c = j.cursor(from).unwrap();
    let mut out = Vec::new();
    while let Some(r) = c.next(j, |v| (v.id(), v.payload().to_vec())).unwrap() {
        out.push(r);
    }
    out
}

#[test]
fn shutdown_releases_the_lock_while_the_handle_lives() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    let first = j.append(&RecordIn::new(b"one")).unwrap();
    let pos = j
        .cursor(first)
        .unwrap()
        .next(&j, |v| v.position())
        .unwrap()
        .unwrap();
    j.shutdown().unwrap();
    j.shutdown().unwrap(); // idempotent
    assert!(matches!(j.append(&RecordIn::new(b"x")), Err(Error::Closed)));
    assert!(matches!(
        j.append_batch(&[RecordIn::new(b"x")]),
        Err(Error::Closed)
    ));
    assert!(matches!(j.sync(), Err(Error::Closed)));
    assert!(matches!(
        j.remove_segments_below(u64::MAX),
        Err(Error::Closed)
    ));
    assert_eq!(Error::Closed.to_string(), "the journal is closed");
    // Reads of existing records still work on the old handle.
    assert_eq!(j.read(pos, |v| v.payload().to_vec()).unwrap(), b"one");
    // The same directory opens again while `j` is alive, and continues after it.
    let j2 = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j2.append(&RecordIn::new(b"two")).unwrap(), first + 1);
    assert_eq!(
        read_all(&j2, 1),
        vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
    );
    drop(j); // dropping the shut-down handle does not disturb the new owner
    assert_eq!(j2.append(&RecordIn::new(b"three")).unwrap(), 3);
    j2.close().unwrap();
    let j3 = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(read_all(&j3, 1).len(), 3);
}

#[test]
fn shutdown_during_concurrent_appends_loses_no_acknowledged_record() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let payload = [7u8; 300];
                while !stop.load(Ordering::Relaxed) {
                    match j.append(&RecordIn::new(&payload)) {
                        Ok(_) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Closed) => return,
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            });
        }
        // Some appends acknowledged (however slowly the appenders are scheduled), then
        // a shutdown while they go on.
        let t = std::time::Instant::now();
        while acked.load(Ordering::Relaxed) == 0 {
            assert!(t.elapsed().as_secs() < 30, "no append was acknowledged");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
        j.shutdown().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        stop.store(true, Ordering::Relaxed);
    });
    let n = acked.load(Ordering::Relaxed);
    assert!(n > 0);
    let j2 = Journal::open(d.path(), opts()).unwrap();
    let all = read_all(&j2, 1);
    assert_eq!(
        all.len() as u64,
        n,
        "every acknowledged append is there, nothing else"
    );
    for (i, (id, _)) in all.iter().enumerate() {
        assert_eq!(*id, i as u64 + 1);
    }
    drop(j);
    j2.close().unwrap();
}

#[test]
fn min_next_id_skips_ids_and_persists() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    for i in 0..5u8 {
        j.append(&RecordIn::new(&[i])).unwrap();
    }
    j.close().unwrap();
    // Smaller than the recovered next ID: no effect.
    let j = Journal::open(d.path(), opts().min_next_id(3)).unwrap();
    assert_eq!(j.next_id(), 6);
    j.close().unwrap();
    let j = Journal::open(d.path(), opts().min_next_id(100)).unwrap();
    assert_eq!(j.next_id(), 100);
    assert_eq!(j.append(&RecordIn::new(b"a")).unwrap(), 100);
    assert_eq!(j.append(&RecordIn::new(b"b")).unwrap(), 101);
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j.append(&RecordIn::new(b"c")).unwrap(), 102);
    let ids: Vec<u64> = read_all(&j, 1).into_iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 100, 101, 102]);
    // A cursor from an ID in the gap starts at the next existing record.
    let from_gap = read_all(&j, 50);
    assert_eq!(from_gap.first().map(|r| r.0), Some(100));
    assert_eq!(from_gap.len(), 3);
    assert_eq!(j.first_id(), 1);
    j.close().unwrap();
}

#[test]
fn min_next_id_on_an_empty_journal_and_with_sync() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(
        d.path(),
        opts().min_next_id(42).durability(Durability::Sync),
    )
    .unwrap();
    assert_eq!(j.next_id(), 42);
    assert_eq!(j.first_id(), 42);
    assert_eq!(j.append(&RecordIn::new(b"x")).unwrap(), 42);
    assert!(j.durable_id() > 42);
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(read_all(&j, 1), vec![(42, b"x".to_vec())]);
    assert_eq!(read_all(&j, 10), vec![(42, b"x".to_vec())]);
}

#[test]
fn concurrent_sync_appends_share_flushes() {
    use std::sync::{Arc, Mutex};
    #[derive(Debug, Default)]
    struct Counting(Mutex<u64>);
    impl Storage for Counting {
        fn create_segment(
            &self,
            path: &std::path::Path,
            size: u64,
        ) -> std::io::Result<std::fs::File> {
            FileStorage.create_segment(path, size)
        }
        fn flush(&self, req: &FlushRequest<'_>) -> std::io::Result<()> {
            *self.0.lock().unwrap() += 1;
            FileStorage.flush(req)
        }
        fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
            FileStorage.sync_dir(dir)
        }
    }
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Counting::default());
    let j = Journal::open(
        d.path(),
        opts().durability(Durability::Sync).storage(st.clone()),
    )
    .unwrap();
    let before = *st.0.lock().unwrap();
    let (threads, per) = (16u64, 40u64);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per {
                    let id = j.append(&RecordIn::new(&[1u8; 100])).unwrap();
                    assert!(j.durable_id() > id);
                }
            });
        }
    });
    let flushes = *st.0.lock().unwrap() - before;
    assert!(
        flushes * 2 <= threads * per,
        "{flushes} flushes for {} appends",
        threads * per
    );
    // A lone syncer afterwards is not held back by the gathering rule for long.
    let t = std::time::Instant::now();
    for _ in 0..20 {
        j.append(&RecordIn::new(b"x")).unwrap();
    }
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    j.close().unwrap();
}

#[test]
fn open_removes_the_temporary_files_an_interrupted_session_left() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    j.append_payloads(&[b"a", b"b"]).unwrap();
    j.close().unwrap();
    // What a kill leaves between a write and its rename: a checkpoint, a seek-mark
    // file, a prepared segment. None of them holds anything the next open needs.
    let left = ["CHECKPOINT.tmp", "SEEK.tmp", "prepared-7.seg.tmp"];
    for name in left {
        std::fs::write(dir.path().join(name), b"half written").unwrap();
    }
    // A file of the user's is not the journal's to remove.
    std::fs::write(dir.path().join("notes.tmp"), b"mine").unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    for name in left {
        assert!(!dir.path().join(name).exists(), "{name} left behind");
    }
    assert!(dir.path().join("notes.tmp").exists());
    let got: Vec<Vec<u8>> = read_all(&j, 1).into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(segment_files(dir.path()).unwrap().len(), 1);
    j.close().unwrap();
}

fn prepared_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("prepared-")
        })
        .count()
}

/// The background threads start with the first append (or `start_background`), not
/// at open: an open that only reads prepares no segment, and the first append's
/// record is still flushed by the flusher within the interval, and kept by a reopen.
#[test]
fn background_threads_start_with_the_first_append() {
    let d = tempfile::tempdir().unwrap();
    let o = opts().flush_interval(std::time::Duration::from_millis(10));
    Journal::open(d.path(), o.clone()).unwrap().close().unwrap();
    let j = Journal::open(d.path(), o.clone()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(80));
    assert_eq!(prepared_files(d.path()), 0, "no preparer before an append");
    let id = j.append(&RecordIn::new(b"first")).unwrap();
    let t = std::time::Instant::now();
    while j.durable_id() <= id {
        assert!(t.elapsed().as_secs() < 10, "the flusher never flushed");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The preparer runs too: it makes the spare segment.
    while prepared_files(d.path()) == 0 {
        assert!(t.elapsed().as_secs() < 10, "the preparer never prepared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    j.close().unwrap();
    let j = Journal::open(d.path(), o.clone()).unwrap();
    assert_eq!(read_all(&j, 1), vec![(id, b"first".to_vec())]);
    // Asked for by the owner, without an append: the spare is prepared as well.
    j.start_background().unwrap();
    j.start_background().unwrap(); // idempotent
    let t = std::time::Instant::now();
    while prepared_files(d.path()) == 0 {
        assert!(t.elapsed().as_secs() < 10, "the preparer never prepared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    j.shutdown().unwrap();
    j.start_background().unwrap(); // after shutdown: nothing is started
    j.close().unwrap();
    let j = Journal::open(d.path(), o).unwrap();
    assert_eq!(read_all(&j, 1), vec![(id, b"first".to_vec())]);
}
