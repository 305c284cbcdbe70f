#![cfg(not(ledgerq_loom))]
//! End-to-end behaviour of the journal: append/read, concurrency, segment rolls,
//! reopen, tail recovery, the lock, read-only opens and fault injection through the
//! storage seam.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

fn last_segment(dir: &Path) -> PathBuf {
    ledgerq_journal::segment_files(dir).unwrap().pop().unwrap()
}

#[test]
fn send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Journal>();
    is::<Error>();
    fn send<T: Send>() {}
    send::<Cursor>();
}

#[test]
fn append_read_reopen() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j.next_id(), 1);
    let hs = [("k1", "v1"), ("k2", "")];
    let rec = RecordIn {
        payload: b"hello",
        priority: 7,
        expires_at_ns: 99,
        headers: &hs,
        compression: 2,
        dedup_key: Some(b"dk"),
        timestamp_ns: Some(1234),
    };
    assert_eq!(j.append(&rec).unwrap(), 1);
    assert_eq!(j.append(&RecordIn::new(b"world")).unwrap(), 2);
    let r = j
        .append_batch(&[
            RecordIn::new(b"a"),
            RecordIn::new(b"b"),
            RecordIn::new(b"c"),
        ])
        .unwrap();
    assert_eq!(r, 3..6);
    assert_eq!(j.next_id(), 6);
    let mut c = j.cursor(1).unwrap();
    let pos = c
        .next(&j, |v| {
            assert_eq!(v.id(), 1);
            assert_eq!(v.payload(), b"hello");
            assert_eq!(v.priority(), 7);
            assert_eq!(v.expires_at_ns(), 99);
            assert_eq!(v.compression(), 2);
            assert_eq!(v.timestamp_ns(), 1234);
            assert_eq!(v.dedup_key(), Some(&b"dk"[..]));
            assert_eq!(v.headers().collect::<Vec<_>>(), hs.to_vec());
            v.position()
        })
        .unwrap()
        .unwrap();
    assert_eq!(j.read(pos, |v| v.payload().to_vec()).unwrap(), b"hello");
    assert!(matches!(
        j.read(Position::new(pos.segment(), pos.offset(), 77), |_| ()),
        Err(Error::NotFound { id: 77 })
    ));
    assert_eq!(c.position_id(), 2);
    j.sync().unwrap();
    assert!(j.durable_id() >= 6);
    j.close().unwrap();

    let j = Journal::open(d.path(), opts()).unwrap();
    let all = read_all(&j, 1);
    assert_eq!(
        all.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(all[4].1, b"c");
    assert_eq!(j.append(&RecordIn::new(b"x")).unwrap(), 6);
    assert_eq!(
        read_all(&j, 4).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    // unrelated files are ignored
    std::fs::write(d.path().join("consumer.state"), b"whatever").unwrap();
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j.next_id(), 7);
}

#[test]
fn limits_are_checked_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts().max_record_size(1000)).unwrap();
    let big = vec![0u8; 1001];
    assert!(matches!(
        j.append(&RecordIn::new(&big)),
        Err(Error::RecordTooLarge {
            size: 1001,
            max: 1000
        })
    ));
    let j2 = tempfile::tempdir().unwrap();
    let j2 = Journal::open(j2.path(), opts()).unwrap();
    let huge = vec![0u8; SEG as usize];
    assert!(matches!(
        j2.append(&RecordIn::new(&huge)),
        Err(Error::RecordTooLarge { .. })
    ));
    assert_eq!(j.next_id(), 1);
    assert!(matches!(
        JournalOptions::new().segment_size(1000).validate(),
        Err(Error::InvalidOptions(_))
    ));
    assert!(JournalOptions::new()
        .flush_interval(std::time::Duration::ZERO)
        .validate()
        .is_err());
}

#[test]
fn segments_roll_exact_fill_and_misfit() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    // Record of 56 + payload bytes; choose payload so that records exactly fill a
    // segment: (SEG - 64) / 8 records of 8184 bytes? use 1024-byte records.
    let per = 1024usize;
    let payload = vec![7u8; per - RECORD_HEADER_LEN as usize];
    let fit = (SEG as usize - SEGMENT_HEADER_LEN as usize) / per; // 63 records, 960 bytes left
    for i in 0..fit {
        assert_eq!(j.append(&RecordIn::new(&payload)).unwrap(), i as u64 + 1);
    }
    assert_eq!(j.segments().len(), 1);
    // Exactly fill the remaining bytes.
    let left = SEG as usize - SEGMENT_HEADER_LEN as usize - fit * per;
    let tail = vec![9u8; left - RECORD_HEADER_LEN as usize];
    j.append(&RecordIn::new(&tail)).unwrap();
    assert_eq!(j.segments().len(), 1);
    // Next one does not fit: roll.
    let id = j.append(&RecordIn::new(b"next")).unwrap();
    let segs = j.segments();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[1].base_id, id);
    assert!(segs[0].sealed);
    assert_eq!(segs[0].end_id, Some(id));
    // A record that does not fit in the rest of segment 2 rolls again.
    let big = vec![1u8; SEG as usize - 150];
    let id2 = j.append(&RecordIn::new(&big)).unwrap();
    assert_eq!(j.segments().len(), 3, "{:?}", j.segments());
    assert_eq!(j.segments()[2].base_id, id2);
    let all = read_all(&j, 1);
    assert_eq!(all.len() as u64, id2);
    assert!(all.iter().enumerate().all(|(i, r)| r.0 == i as u64 + 1));
    assert_eq!(all[(id - 1) as usize].1, b"next");
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(read_all(&j, 1).len() as u64, id2);
    assert_eq!(j.next_id(), id2 + 1);
    // seek into the middle segment
    assert_eq!(read_all(&j, id)[0].0, id);
    // removal keeps the active segment
    assert_eq!(j.remove_segments_below(id2).unwrap(), 2);
    assert_eq!(j.first_id(), id2);
    assert_eq!(read_all(&j, 1)[0].0, id2);
}

#[test]
fn four_threads_many_appends() {
    let n: u64 = 100_000;
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), JournalOptions::new().segment_size(4 << 20)).unwrap();
    let ids: Vec<Vec<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let j = &j;
                s.spawn(move || {
                    let mut ids = Vec::with_capacity(n as usize);
                    for i in 0..n {
                        let mut p = [0u8; 24];
                        p[..8].copy_from_slice(&t.to_le_bytes());
                        p[8..16].copy_from_slice(&i.to_le_bytes());
                        ids.push(j.append(&RecordIn::new(&p)).unwrap());
                    }
                    ids
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in &ids {
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "ids increase per producer"
        );
    }
    let mut all: Vec<u64> = ids.concat();
    all.sort_unstable();
    assert_eq!(all, (1..=4 * n).collect::<Vec<_>>());
    let mut c = j.cursor(1).unwrap();
    let mut next = [0u64; 4];
    let mut expect = 1;
    while let Some((id, t, i)) = c
        .next(&j, |v| {
            let p = v.payload();
            (
                v.id(),
                u64::from_le_bytes(p[..8].try_into().unwrap()),
                u64::from_le_bytes(p[8..16].try_into().unwrap()),
            )
        })
        .unwrap()
    {
        assert_eq!(id, expect);
        expect += 1;
        assert_eq!(i, next[t as usize], "FIFO per producer");
        next[t as usize] += 1;
    }
    assert_eq!(expect, 4 * n + 1);
    assert!(j.segments().len() > 1);
}

#[test]
fn concurrent_reader_sees_each_record_once() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    let n = 20_000u64;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..n {
                    j.append(&RecordIn::new(&[5u8; 40])).unwrap();
                }
            });
        }
        let mut c = j.cursor(1).unwrap();
        let mut expect = 1;
        while expect <= 2 * n {
            if let Some(id) = c.next(&j, |v| v.id()).unwrap() {
                assert_eq!(id, expect);
                expect += 1;
            } else {
                std::thread::yield_now();
            }
        }
    });
}

#[test]
fn lock_and_read_only() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    match Journal::open(d.path(), opts()) {
        Err(Error::Locked { dir }) => assert_eq!(dir, d.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    for i in 0..100u32 {
        j.append(&RecordIn::new(&i.to_le_bytes())).unwrap();
    }
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    assert!(matches!(
        ro.append(&RecordIn::new(b"x")),
        Err(Error::ReadOnly)
    ));
    let mut c = ro.cursor(1).unwrap();
    let mut n = 0;
    while c.next(&ro, |_| ()).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 100);
    // new records and new segments appear
    let big = vec![0u8; 30_000];
    for _ in 0..5 {
        j.append(&RecordIn::new(&big)).unwrap();
    }
    while c.next(&ro, |_| ()).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 105);
    assert_eq!(ro.next_id(), j.next_id());
    drop(ro);
    j.close().unwrap();
    // lock released
    Journal::open(d.path(), opts()).unwrap().close().unwrap();
}

#[test]
fn path_that_is_a_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    assert!(Journal::open(&f, opts()).is_err());
}

#[test]
fn seek_time_finds_first_at_or_after() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    for i in 0..2000u64 {
        j.append(&RecordIn {
            timestamp_ns: Some(1_000 + i * 10),
            ..RecordIn::new(&[0u8; 100])
        })
        .unwrap();
    }
    let t = |ns| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    assert_eq!(j.seek_time(t(0)).unwrap(), 1);
    assert_eq!(j.seek_time(t(1_000 + 500 * 10)).unwrap(), 501);
    assert_eq!(j.seek_time(t(1_000 + 500 * 10 - 3)).unwrap(), 501);
    assert_eq!(j.seek_time(t(u64::MAX / 2)).unwrap(), 2001);
}

// ---------- recovery ----------

fn write_records(dir: &Path, n: usize, size: usize) -> Vec<Position> {
    let j = Journal::open(dir, opts()).unwrap();
    let mut pos = Vec::new();
    for i in 0..n {
        let id = j.append(&RecordIn::new(&vec![i as u8 + 1; size])).unwrap();
        let mut c = j.cursor(id).unwrap();
        pos.push(c.next(&j, |v| v.position()).unwrap().unwrap());
    }
    j.close().unwrap();
    pos
}

fn patch(path: &Path, off: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Removes the checkpoint: the records are then in the tail an open scans, as after
/// a crash before any checkpoint recorded them as flushed.
fn forget_checkpoint(dir: &Path) {
    std::fs::remove_file(dir.join(ledgerq_journal::CHECKPOINT_FILE)).unwrap();
}

#[test]
fn torn_tail_is_truncated() {
    let d = tempfile::tempdir().unwrap();
    let pos = write_records(d.path(), 5, 100);
    let seg = last_segment(d.path());
    // Tear the last record: flip a payload byte (CRC mismatch, nothing after).
    patch(&seg, u64::from(pos[4].offset()) + 80, &[0xEE]);
    // And garbage far after the end, not a valid record.
    patch(&seg, 30_000, b"garbage garbage garbage");
    // As after a crash before a checkpoint covered these records (a record below the
    // checkpointed offset was flushed: damage there is corruption, not a torn write).
    forget_checkpoint(d.path());
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(read_all(&j, 1).len(), 4);
    assert_eq!(j.append(&RecordIn::new(b"again")).unwrap(), 5);
    j.close().unwrap();
    let raw = std::fs::read(&seg).unwrap();
    assert!(
        raw[30_000..30_100].iter().all(|&b| b == 0),
        "garbage zeroed"
    );
    let j = Journal::open(d.path(), opts()).unwrap();
    let all = read_all(&j, 1);
    assert_eq!(all.len(), 5);
    assert_eq!(all[4].1, b"again");
}

#[test]
fn uncommitted_record_followed_by_committed_is_a_hole() {
    let d = tempfile::tempdir().unwrap();
    let pos = write_records(d.path(), 5, 100);
    let seg = last_segment(d.path());
    // Record 3 was reserved but never committed: zero its commit word.
    patch(&seg, u64::from(pos[2].offset()), &[0, 0, 0, 0]);
    forget_checkpoint(d.path());
    let j = Journal::open(d.path(), opts()).unwrap();
    let ids: Vec<u64> = read_all(&j, 1).iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1, 2, 4, 5]);
    assert_eq!(j.append(&RecordIn::new(b"z")).unwrap(), 6);
    j.close().unwrap();
    // The hole marker is durable and readable on the next open.
    let j = Journal::open(d.path(), opts()).unwrap();
    let ids: Vec<u64> = read_all(&j, 1).iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1, 2, 4, 5, 6]);
    assert_eq!(read_all(&j, 3)[0].0, 4);
}

#[test]
fn corruption_in_the_middle_is_strict_error_or_skipped() {
    let d = tempfile::tempdir().unwrap();
    let pos = write_records(d.path(), 5, 100);
    let seg = last_segment(d.path());
    patch(&seg, u64::from(pos[1].offset()) + 70, &[0xAA, 0xBB]);
    match Journal::open(d.path(), opts()) {
        Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, u64::from(pos[1].offset()));
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let j = Journal::open(d.path(), opts().recovery_mode(RecoveryMode::Skip)).unwrap();
    let ids: Vec<u64> = read_all(&j, 1).iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1, 3, 4, 5]);
}

#[test]
fn blank_tail_segment_is_removed_and_bad_named_file_is_corrupt() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 3, 10);
    // A tail segment whose header never made it.
    File::create(d.path().join(format!("{:020}.seg", 100)))
        .unwrap()
        .set_len(SEG)
        .unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j.next_id(), 4);
    assert_eq!(j.segments().len(), 1);
    j.close().unwrap();
    // A non-tail file named like a segment with garbage.
    std::fs::write(d.path().join(format!("{:020}.seg", 0)), vec![1u8; 100]).unwrap();
    assert!(matches!(
        Journal::open(d.path(), opts()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn empty_segment_file_is_recreated() {
    let d = tempfile::tempdir().unwrap();
    File::create(d.path().join(format!("{:020}.seg", 1))).unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j.append(&RecordIn::new(b"a")).unwrap(), 1);
}

// ---------- fault injection ----------

#[derive(Debug, Default)]
struct Faulty {
    flushes: AtomicUsize,
    fail_flush_at: Option<usize>,
    no_space: std::sync::atomic::AtomicBool,
    log: Mutex<Vec<(u64, u64, usize)>>,
}

impl Storage for Faulty {
    fn create_segment(&self, path: &Path, size: u64) -> io::Result<File> {
        if self.no_space.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc_enospc()));
        }
        FileStorage.create_segment(path, size)
    }
    fn flush(&self, req: &FlushRequest<'_>) -> io::Result<()> {
        let n = self.flushes.fetch_add(1, Ordering::SeqCst) + 1;
        self.log
            .lock()
            .unwrap()
            .push((req.base_id, req.offset, req.bytes.len()));
        if self.fail_flush_at.is_some_and(|k| n >= k) {
            return Err(io::Error::other("injected EIO"));
        }
        FileStorage.flush(req)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FileStorage.sync_dir(dir)
    }
}

/// A `Durability::Sync` journal in `dir` flushing through `st`.
fn sync_journal(dir: &Path, st: &Arc<Faulty>) -> Journal {
    Journal::open(dir, opts().durability(Durability::Sync).storage(st.clone())).unwrap()
}

fn libc_enospc() -> i32 {
    28
}

#[test]
fn failed_flush_latches() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty {
        fail_flush_at: Some(3),
        ..Default::default()
    });
    let j = sync_journal(d.path(), &st);
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(j.append(&RecordIn::new(b"x")));
    }
    let first_err = results.iter().position(|r| r.is_err()).unwrap();
    assert!(first_err >= 1);
    for r in &results[first_err..] {
        assert!(matches!(r, Err(Error::Poisoned { .. })), "{r:?}");
    }
    match j.sync() {
        Err(e @ Error::Poisoned { .. }) => {
            assert!(e.to_string().contains("injected EIO"));
            assert!(std::error::Error::source(&e).is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        j.append(&RecordIn::new(b"y")),
        Err(Error::Poisoned { .. })
    ));
    assert!(j.close().is_err());
    // Records that were reported durable are there.
    let j = Journal::open(d.path(), opts()).unwrap();
    assert!(read_all(&j, 1).len() >= first_err);
}

#[test]
fn sync_flush_covers_the_record() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty::default());
    let j = sync_journal(d.path(), &st);
    for i in 0..10u64 {
        let id = j.append(&RecordIn::new(b"abc")).unwrap();
        assert_eq!(id, i + 1);
        assert!(j.durable_id() > id);
    }
    // flushes are contiguous ranges of segment 1
    let log = st.log.lock().unwrap().clone();
    let mut end = 0;
    for (base, off, len) in log.iter().filter(|l| l.0 == 1) {
        assert_eq!(*base, 1);
        assert!(*off <= end);
        end = end.max(off + *len as u64);
    }
    assert!(end >= 64 + 10 * 64);
}

/// A sealed segment's end marker is flushed with its records, before any record of
/// the next segment is reported durable: a checkpoint may then name the next segment,
/// and the open after a power loss scans only from there, trusting the sealed one to be
/// whole (a marker lost or torn there would stop every reader).
#[test]
fn a_sealed_segments_end_marker_is_flushed_before_the_next_segment_is_durable() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty::default());
    let j = sync_journal(d.path(), &st);
    // 1,064-byte records: the 62nd does not fit in a 64 KiB segment, which is sealed
    // with room for its marker.
    let id = loop {
        let id = j.append(&RecordIn::new(&[7u8; 1001])).unwrap();
        if j.segments().len() == 2 {
            break id;
        }
    };
    assert!(j.durable_id() > id);
    let flushed_end = st
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.0 == 1)
        .map(|&(_, off, len)| off + len as u64)
        .max()
        .unwrap() as usize;
    let first = std::fs::read(d.path().join(format!("{:020}.seg", 1))).unwrap();
    let marker = flushed_end - proto::END_MARKER_LEN as usize;
    let word = u32::from_le_bytes(first[marker..marker + 4].try_into().unwrap());
    assert_eq!(
        word,
        proto::KIND_END,
        "segment 1 was flushed up to {flushed_end}, not through its end marker"
    );
}

/// Group commit under contention (the leader gathers the syncers woken by the last
/// flush before it flushes): every append returns durable, and every record is there
/// after a reopen, exactly once.
#[test]
fn concurrent_sync_appends_are_durable_on_return() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty::default());
    let j = sync_journal(d.path(), &st);
    let threads = 8u64;
    let per = 40u64;
    std::thread::scope(|s| {
        for t in 0..threads {
            let j = &j;
            s.spawn(move || {
                for i in 0..per {
                    let payload = (t * per + i).to_le_bytes();
                    let id = j.append(&RecordIn::new(&payload)).unwrap();
                    assert!(
                        j.durable_id() > id,
                        "id {id} returned before it was durable"
                    );
                }
            });
        }
    });
    let flushes = st.flushes.load(Ordering::SeqCst);
    assert!(flushes >= 1);
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    let all = read_all(&j, 1);
    assert_eq!(all.len() as u64, threads * per);
    let mut seen: Vec<u64> = all
        .iter()
        .map(|(_, p)| u64::from_le_bytes(p[..8].try_into().unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..threads * per).collect::<Vec<_>>());
}

#[test]
fn enospc_at_segment_creation_is_typed_and_harmless() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty::default());
    let j = Journal::open(d.path(), opts().storage(st.clone())).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50)); // let the preparer finish
    st.no_space.store(true, Ordering::SeqCst);
    let payload = vec![3u8; 4000];
    let mut ok = 0u64;
    let err = loop {
        match j.append(&RecordIn::new(&payload)) {
            Ok(id) => {
                ok += 1;
                assert_eq!(id, ok);
            }
            Err(e) => break e,
        }
        assert!(ok < 1000);
    };
    assert!(matches!(err, Error::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("no space left"));
    // ok covers the first segment plus the prepared one
    assert!(ok > 15);
    assert!(matches!(
        j.append(&RecordIn::new(&payload)),
        Err(Error::NoSpace { .. })
    ));
    assert_eq!(read_all(&j, 1).len() as u64, ok);
    st.no_space.store(false, Ordering::SeqCst);
    assert_eq!(j.append(&RecordIn::new(&payload)).unwrap(), ok + 1);
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(read_all(&j, 1).len() as u64, ok + 1);
}

// ---------- open with no room for a new segment ----------

/// The payload of the `i`-th record (`i` from 1) of `len` bytes: its number, then a
/// byte pattern.
fn numbered(i: u64, len: usize) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; len];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

/// Appends numbered records of `len` bytes to `j` until an append fails; asserts it
/// failed with `NoSpace` and returns how many were appended.
fn append_until_no_space(j: &Journal, len: usize) -> u64 {
    let mut n = 0u64;
    loop {
        match j.append(&RecordIn::new(&numbered(n + 1, len))) {
            Ok(id) => {
                n += 1;
                assert_eq!(id, n);
            }
            Err(Error::NoSpace { .. }) => return n,
            Err(e) => panic!("expected NoSpace, got {e:?}"),
        }
        assert!(n < 10_000);
    }
}

/// Asserts that `j` holds exactly the numbered records `1..=n` of `len` bytes.
fn assert_numbered(j: &Journal, n: u64, len: usize) {
    let all = read_all(j, 1);
    assert_eq!(all.len() as u64, n);
    for (i, (id, p)) in (1..).zip(&all) {
        assert_eq!(*id, i);
        assert_eq!(*p, numbered(i, len), "record {i}");
    }
}

fn temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// A queue filled until a roll failed with `NoSpace` (its last segment sealed, with
/// its end marker) opens again while segments still cannot be created: the full last
/// segment stays the active one, every record reads back (writer and read-only
/// journal), an append gets `NoSpace`, and once segments can be created again the
/// append makes the next segment and a cursor that had read everything goes on into it.
#[test]
fn an_open_with_no_room_for_a_new_segment_keeps_the_full_last_one_active() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty::default());
    let o = opts().storage(st.clone());
    let j = Journal::open(d.path(), o.clone()).unwrap();
    st.no_space.store(true, Ordering::SeqCst);
    let len = 4000;
    let n = append_until_no_space(&j, len);
    assert!(n > 10);
    let segments = j.segments().len();
    j.close().unwrap();

    let j = Journal::open(d.path(), o.clone()).unwrap();
    assert_eq!(j.segments().len(), segments);
    assert_eq!(j.next_id(), n + 1);
    assert_eq!(j.durable_id(), n + 1);
    assert_numbered(&j, n, len);
    let ro = Journal::open_read_only(d.path(), opts()).unwrap();
    assert_numbered(&ro, n, len);
    let mut c = j.cursor(1).unwrap();
    for i in 1..=n {
        assert_eq!(c.next(&j, |v| v.id()).unwrap(), Some(i));
    }
    assert_eq!(c.next(&j, |v| v.id()).unwrap(), None);
    assert!(temporary_files(d.path()).is_empty());
    assert!(matches!(
        j.append(&RecordIn::new(&numbered(n + 1, len))),
        Err(Error::NoSpace { .. })
    ));
    assert!(matches!(
        j.append_payloads(&[numbered(n + 1, len)]),
        Err(Error::NoSpace { .. })
    ));
    assert_numbered(&j, n, len);
    j.sync().unwrap();

    st.no_space.store(false, Ordering::SeqCst);
    assert_eq!(
        j.append(&RecordIn::new(&numbered(n + 1, len))).unwrap(),
        n + 1
    );
    assert_eq!(j.segments().len(), segments + 1);
    assert_eq!(j.segments()[segments].base_id, n + 1);
    assert_eq!(c.next(&j, |v| v.id()).unwrap(), Some(n + 1));
    assert_numbered(&j, n + 1, len);
    assert_numbered(&ro, n + 1, len);
    drop(ro);
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_numbered(&j, n + 1, len);
}

/// As above with a last segment filled to its last byte (no room for an end marker)
/// and crashes instead of closes: a kill after the failed roll, and a kill of the
/// session that opened without room (having only read), both open again while
/// segments still cannot be created.
#[test]
fn an_open_with_no_room_for_a_new_segment_after_a_crash_with_the_last_segment_full() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty::default());
    let o = opts().storage(st.clone());
    let j = Journal::open(d.path(), o.clone()).unwrap();
    st.no_space.store(true, Ordering::SeqCst);
    // Eight records of 8,184 bytes fill the segment's 65,472 bytes after its header.
    let len = 8184 - RECORD_HEADER_LEN as usize;
    let n = append_until_no_space(&j, len);
    assert_eq!(n % 8, 0);
    j.abandon();
    drop(j);

    let j = Journal::open(d.path(), o.clone()).unwrap();
    assert_eq!(j.next_id(), n + 1);
    assert_numbered(&j, n, len);
    assert!(matches!(
        j.append(&RecordIn::new(&numbered(n + 1, len))),
        Err(Error::NoSpace { .. })
    ));
    j.abandon();
    drop(j);

    let j = Journal::open(d.path(), o.clone()).unwrap();
    assert_numbered(&j, n, len);
    st.no_space.store(false, Ordering::SeqCst);
    assert_eq!(
        j.append(&RecordIn::new(&numbered(n + 1, len))).unwrap(),
        n + 1
    );
    j.abandon();
    drop(j);
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_numbered(&j, n + 1, len);
}

/// An open that must continue the IDs above the records (`min_next_id`, the owner's
/// consumed watermark) seals the last segment with a gap; without room for the next
/// segment the IDs still continue from there once it can be made, and readers accept
/// the gap.
#[test]
fn an_open_with_no_room_for_a_new_segment_continues_ids_from_min_next_id() {
    let d = tempfile::tempdir().unwrap();
    let st = Arc::new(Faulty::default());
    let o = opts().storage(st.clone());
    let j = Journal::open(d.path(), o.clone()).unwrap();
    st.no_space.store(true, Ordering::SeqCst);
    let len = 4000;
    let n = append_until_no_space(&j, len);
    j.close().unwrap();

    let next = n + 10;
    let j = Journal::open(d.path(), o.clone().min_next_id(next)).unwrap();
    assert_eq!(j.next_id(), next);
    assert_numbered(&j, n, len);
    assert!(matches!(
        j.append(&RecordIn::new(b"x")),
        Err(Error::NoSpace { .. })
    ));
    st.no_space.store(false, Ordering::SeqCst);
    assert_eq!(j.append(&RecordIn::new(b"x")).unwrap(), next);
    let all = read_all(&j, 1);
    assert_eq!(all.len() as u64, n + 1);
    assert_eq!(all[n as usize], (next, b"x".to_vec()));
    j.close().unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(read_all(&j, 1).len() as u64, n + 1);
    assert_eq!(j.next_id(), next + 1);
}

/// A disk with room for `files` segment files (temporary ones included).
#[derive(Debug)]
struct SmallDisk {
    files: usize,
    /// How long a creation takes (holding `creating`).
    slow: std::time::Duration,
    /// Serializes creations (the preparer's and a roll's), so that they count each
    /// other's files.
    creating: Mutex<()>,
}

impl Storage for SmallDisk {
    fn create_segment(&self, path: &Path, size: u64) -> io::Result<File> {
        let _one = self.creating.lock().unwrap();
        let used = std::fs::read_dir(path.parent().unwrap())?
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.ends_with(".seg") || name.ends_with(".seg.tmp")
            })
            .count();
        if used >= self.files {
            return Err(io::Error::from_raw_os_error(libc_enospc()));
        }
        let f = FileStorage.create_segment(path, size);
        std::thread::sleep(self.slow);
        f
    }
    fn flush(&self, req: &FlushRequest<'_>) -> io::Result<()> {
        FileStorage.flush(req)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FileStorage.sync_dir(dir)
    }
}

/// The whole story on a disk with room for three segments: filled until `NoSpace`,
/// closed, opened again (the backlog is there), drained, consumed segments removed:
/// the next append makes its segment in the room they left.
#[test]
fn a_full_disk_opens_drains_and_takes_appends_again_once_consumed_segments_are_removed() {
    let d = tempfile::tempdir().unwrap();
    let o = opts().storage(Arc::new(SmallDisk {
        files: 3,
        slow: std::time::Duration::ZERO,
        creating: Mutex::new(()),
    }));
    let j = Journal::open(d.path(), o.clone()).unwrap();
    let len = 4000;
    let n = append_until_no_space(&j, len);
    j.close().unwrap();
    assert_eq!(segment_files(d.path()).unwrap().len(), 3);

    let j = Journal::open(d.path(), o).unwrap();
    assert_numbered(&j, n, len);
    assert!(matches!(
        j.append(&RecordIn::new(&numbered(n + 1, len))),
        Err(Error::NoSpace { .. })
    ));
    // Everything consumed: all segments but the active (last) one go.
    assert_eq!(j.remove_segments_below(n + 1).unwrap(), 2);
    assert_eq!(
        j.append(&RecordIn::new(&numbered(n + 1, len))).unwrap(),
        n + 1
    );
    assert_eq!(j.segments().len(), 2);
    let first = j.first_id();
    let got = read_all(&j, first);
    assert_eq!(got.last().unwrap(), &(n + 1, numbered(n + 1, len)));
    assert_eq!(got.len() as u64, n + 2 - first);
}

/// A roll that finds nothing prepared while the preparer is making the file that
/// takes the last room on the disk (so the roll's own creation fails) waits for it
/// and takes it: no `NoSpace` while there is a segment file ready.
#[test]
fn a_roll_takes_the_segment_the_preparer_made_in_the_last_room() {
    let d = tempfile::tempdir().unwrap();
    let o = opts().storage(Arc::new(SmallDisk {
        files: 3,
        slow: std::time::Duration::from_millis(300),
        creating: Mutex::new(()),
    }));
    let j = Journal::open(d.path(), o).unwrap();
    let len = 4000;
    j.append(&RecordIn::new(&numbered(1, len))).unwrap();
    // The second segment is prepared before the first fills: the roll into it takes
    // it, and the preparer starts on the third (300 ms) while the second fills.
    let t = std::time::Instant::now();
    while temporary_files(d.path()).is_empty()
        || t.elapsed() < std::time::Duration::from_millis(400)
    {
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut n = 1;
    loop {
        match j.append(&RecordIn::new(&numbered(n + 1, len))) {
            Ok(id) => n = id,
            Err(Error::NoSpace { .. }) => break,
            Err(e) => panic!("expected NoSpace, got {e:?}"),
        }
    }
    assert_eq!(j.segments().len(), 3);
    assert_numbered(&j, n, len);
    j.close().unwrap();
    assert_eq!(segment_files(d.path()).unwrap().len(), 3);
}

/// 200 records of 1,000 bytes (over several segments), closed; then records 3 and 15
/// of the first segment (which an open does not scan) damaged: a payload byte of 3, and
/// the ID field of 15 made 2 (out of order). Returns the journal reopened.
fn damaged_first_segment(dir: &Path) -> Journal {
    let j = Journal::open(dir, opts()).unwrap();
    let mut pos = Vec::new();
    for i in 0..200u32 {
        let id = j.append(&RecordIn::new(&[i as u8; 1000])).unwrap();
        let mut c = j.cursor(id).unwrap();
        pos.push(c.next(&j, |v| v.position()).unwrap().unwrap());
    }
    j.close().unwrap();
    let first = pos[0].segment();
    assert_eq!(pos[15].segment(), first);
    assert_ne!(pos[199].segment(), first);
    let seg = dir.join(format!("{first:020}.seg"));
    patch(&seg, u64::from(pos[2].offset()) + 500, &[0x5A]);
    patch(&seg, u64::from(pos[14].offset()) + 16, &2u64.to_le_bytes());
    Journal::open(dir, opts()).unwrap()
}

/// A seek into the middle of a segment steps over the records before the target
/// without checking them (none is handed out): a damaged record that was already
/// consumed does not stop a reader that starts after it. A reader that reaches it
/// gets the error, and an ID field damaged out of order is checked, not stepped over.
#[test]
fn a_seek_steps_over_damage_before_its_target_and_reports_damage_it_reaches() {
    let d = tempfile::tempdir().unwrap();
    let j = damaged_first_segment(d.path());
    let mut c = j.cursor(10).unwrap();
    assert_eq!(c.next(&j, |v| v.id()).unwrap(), Some(10));
    let mut c = j.cursor(1).unwrap();
    assert_eq!(c.next(&j, |v| v.id()).unwrap(), Some(1));
    assert_eq!(c.next(&j, |v| v.id()).unwrap(), Some(2));
    assert!(matches!(c.next(&j, |v| v.id()), Err(Error::Corrupt { .. })));
    let mut c = j.cursor(14).unwrap();
    assert_eq!(c.next(&j, |v| v.id()).unwrap(), Some(14));
    assert!(matches!(c.next(&j, |v| v.id()), Err(Error::Corrupt { .. })));
    // A seek past the damaged ID field meets it out of order: reported too.
    assert!(matches!(
        j.cursor(20).unwrap().next(&j, |v| v.id()),
        Err(Error::Corrupt { .. })
    ));
}

/// `next_checked_if` checks the checksum of a record only when asked: a record with a
/// damaged payload is returned unchecked to a reader that does not want it, and
/// reported to one that does; a damaged ID field (out of order) is checked whatever
/// the reader says.
#[test]
fn next_checked_if_checks_only_the_records_asked_for_and_every_id_out_of_order() {
    let d = tempfile::tempdir().unwrap();
    let j = damaged_first_segment(d.path());
    let odd = |v: &RecordView<'_>| v.id() % 2 == 1;
    let mut c = j.cursor(1).unwrap();
    for id in 1..=14 {
        // Record 3 is damaged and odd: reported.
        if id == 3 {
            assert!(matches!(
                c.next_checked_if(&j, odd, |v| v.id()),
                Err(Error::Corrupt { .. })
            ));
            break;
        }
        assert_eq!(c.next_checked_if(&j, odd, |v| v.id()).unwrap(), Some(id));
    }
    // The same damage passed by a reader that checks only even IDs.
    let even = |v: &RecordView<'_>| v.id() % 2 == 0;
    let mut c = j.cursor(1).unwrap();
    for id in 1..=14 {
        assert_eq!(c.next_checked_if(&j, even, |v| v.id()).unwrap(), Some(id));
    }
    // Record 15's ID field reads 2: out of order, so checked although not asked for.
    assert!(matches!(
        c.next_checked_if(&j, |_| false, |v| v.id()),
        Err(Error::Corrupt { .. })
    ));
}
