//! Checking functions shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus replay test (`tests/tests/fuzz_corpus.rs`), both of which include this file
//! with `#[path]`. Each takes the raw fuzz input; each panics only on a real failure
//! (a library panic is one too).
//!
//! Inputs are decoded with a small byte reader rather than `arbitrary`, so that the
//! replay test needs no extra dependency.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledgerq::{AckMode, Options, Queue};
use ledgerq_journal::proto::{KIND_HOLE, KIND_RECORD};
use ledgerq_journal::{
    Checkpoint, Durability, FileStorage, FlushRequest, Journal, JournalOptions, RecordIn, Storage,
    CHECKPOINT_FILE,
};

/// Segment size used by every target.
pub const SEGMENT_SIZE: usize = 64 << 10;
/// Base ID of the fuzzed segment.
const BASE: u64 = 1;
const SEGMENT_NAME: &str = "00000000000000000001.seg";
const STATE_NAME: &str = "consumer.default.state";
const SALT: u32 = 0x5eed_1234;

/// Reads fuzz input bytes; returns zeros when exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, i| acc | u64::from(self.u8()) << (8 * i))
    }
    fn rest(&mut self) -> &[u8] {
        std::mem::take(&mut self.0)
    }
}

/// A valid segment header for a segment of `SEGMENT_SIZE` bytes with base ID 1.
pub fn segment_header() -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&[0x89, b'L', b'Q', b'J', 0x0D, 0x0A, 0x1A, 0x0A]);
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    b[16..24].copy_from_slice(&BASE.to_le_bytes());
    b[24..32].copy_from_slice(&1_700_000_000_000_000_000u64.to_le_bytes());
    b[32..40].copy_from_slice(&(SEGMENT_SIZE as u64).to_le_bytes());
    b[40..44].copy_from_slice(&SALT.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A valid encoded record (for seed corpora): `(bytes, aligned length)`.
pub fn encode_record(id: u64, payload: &[u8]) -> Vec<u8> {
    let len = 56 + payload.len();
    let mut r = vec![0u8; (len + 7) & !7];
    r[0..4].copy_from_slice(&KIND_RECORD.to_le_bytes());
    r[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    r[16..24].copy_from_slice(&id.to_le_bytes());
    r[48..52].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    r[56..len].copy_from_slice(payload);
    let crc = crc32c::crc32c_append(SALT, &r[8..len]);
    r[4..8].copy_from_slice(&crc.to_le_bytes());
    r
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The records before the first invalid byte of a segment image (independent of the
/// journal's own scan): `(id, payload)` in order. A record whose ID skips IDs that the
/// hole markers passed since the previous record cannot explain (at least a record
/// header of hole bytes per missing ID) ends it too: the records that held those IDs
/// were lost, which readers report.
fn valid_prefix(s: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    if s.len() < 64 || s[..64] != segment_header() {
        return out;
    }
    let (mut off, mut next_id) = (64usize, BASE);
    let mut hole_bytes = 0u64;
    let max_records = (s.len() / 8) as u64;
    while off + 16 <= s.len() {
        let commit = rd_u32(s, off);
        if commit == KIND_HOLE {
            let len = rd_u32(s, off + 8) as usize;
            let crc = crc32c::crc32c_append(SALT, &s[off + 8..off + 16]);
            if crc != rd_u32(s, off + 4) || len < 16 || len % 8 != 0 || off + len > s.len() {
                break;
            }
            off += len;
            hole_bytes += len as u64;
            continue;
        }
        if commit != KIND_RECORD || off + 56 > s.len() {
            break;
        }
        let len = rd_u32(s, off + 8) as usize;
        let alen = (len + 7) & !7;
        if len < 56 || off.checked_add(alen).is_none_or(|e| e > s.len()) {
            break;
        }
        let (h, d, p) = (
            rd_u32(s, off + 40) as u64,
            rd_u32(s, off + 44) as u64,
            rd_u32(s, off + 48) as usize,
        );
        if 56 + h + d + p as u64 != len as u64 {
            break;
        }
        if crc32c::crc32c_append(SALT, &s[off + 8..off + len]) != rd_u32(s, off + 4) {
            break;
        }
        let id = rd_u64(s, off + 16);
        if id < next_id || id - BASE >= max_records || id - next_id > hole_bytes / 56 {
            break;
        }
        out.push((id, s[off + len - p..off + len].to_vec()));
        next_id = id + 1;
        hole_bytes = 0;
        off += alen;
    }
    out
}

/// A fresh directory for one input: in memory (`/dev/shm`) where there is one, so that
/// the syncs of an input cost nothing and a minute of fuzzing runs many more inputs;
/// the checks do not depend on the medium (a crash is `Queue::abandon`, a power loss is
/// the recording storage).
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

/// `decode_record`: arbitrary bytes as the body of a segment after a valid header,
/// read by a read-only journal's cursor (the record decoder of the read path).
/// Never panics; every record read has consistent lengths.
pub fn decode_record(data: &[u8]) {
    let t = scratch_dir();
    let mut img = vec![0u8; SEGMENT_SIZE];
    img[..64].copy_from_slice(&segment_header());
    let n = data.len().min(SEGMENT_SIZE - 64);
    img[64..64 + n].copy_from_slice(&data[..n]);
    fs::write(t.path().join(SEGMENT_NAME), &img).unwrap();
    let opts = JournalOptions::new().segment_size(SEGMENT_SIZE as u64);
    let j = match Journal::open_read_only(t.path(), opts) {
        Ok(j) => j,
        Err(_) => return,
    };
    let Ok(mut c) = j.cursor(j.first_id()) else {
        return;
    };
    for _ in 0..SEGMENT_SIZE / 16 {
        match c.next(&j, |r| {
            let _ = (r.id(), r.priority(), r.timestamp_ns(), r.expires_at_ns());
            let _ = r.dedup_key();
            let _ = r.headers().count();
            r.payload().len()
        }) {
            Ok(Some(len)) => assert!(len <= SEGMENT_SIZE),
            Ok(None) | Err(_) => break,
        }
    }
}

/// `recover_segment`: arbitrary bytes as a segment file (optionally behind a valid
/// header, optionally padded to full size), optionally with a consumer state file and
/// a checkpoint file (arbitrary bytes, or a valid checkpoint naming the segment with
/// arbitrary offsets, next ID and clean flag), then `Queue::open`: a typed error, or a
/// queue that delivers every record before the first invalid byte (above the consumer
/// watermark) and goes on.
pub fn recover_segment(data: &[u8]) {
    let mut b = Bytes(data);
    let flags = b.u8();
    let watermark = b.u64();
    let checkpoint: Vec<u8> = match flags >> 4 & 3 {
        1 => (0..ledgerq_journal::CHECKPOINT_LEN)
            .map(|_| b.u8())
            .collect(),
        2 => {
            let (offset, next_id, check_from) = (b.u64(), b.u64(), b.u64());
            ledgerq_journal::Checkpoint {
                segment_base: BASE,
                segment_salt: SALT,
                offset: offset as u32,
                next_id,
                extra: (flags & 0x80 != 0).then_some(watermark),
                written_ns: 1,
                clean: flags & 0x40 != 0,
                check_from: check_from as u32,
            }
            .encode()
            .to_vec()
        }
        _ => Vec::new(),
    };
    let body = b.rest();
    let mut img = Vec::new();
    if flags & 1 != 0 {
        img.extend_from_slice(&segment_header());
    }
    img.extend_from_slice(&body[..body.len().min(SEGMENT_SIZE)]);
    if flags & 2 != 0 && img.len() < SEGMENT_SIZE {
        img.resize(SEGMENT_SIZE, 0);
    }
    let t = scratch_dir();
    let dir = t.path();
    fs::write(dir.join(SEGMENT_NAME), &img).unwrap();
    if !checkpoint.is_empty() {
        fs::write(dir.join(ledgerq_journal::CHECKPOINT_FILE), &checkpoint).unwrap();
    }
    let mut w = 0;
    match flags >> 2 & 3 {
        1 => {
            // A valid state file with the given watermark.
            let mut s = vec![0u8; 4096 + 8 * (1 << 17)];
            s[..8].copy_from_slice(b"LQSTATE\x01");
            s[8..12].copy_from_slice(&1u32.to_le_bytes());
            s[12..16].copy_from_slice(&17u32.to_le_bytes());
            s[16..24].copy_from_slice(&watermark.to_le_bytes());
            fs::write(dir.join(STATE_NAME), &s).unwrap();
            w = watermark;
        }
        2 => {
            // A damaged one.
            fs::write(dir.join(STATE_NAME), watermark.to_le_bytes()).unwrap();
        }
        _ => {}
    }
    let want: Vec<(u64, Vec<u8>)> = valid_prefix(&img)
        .into_iter()
        .filter(|r| r.0 >= w)
        .collect();
    let opts = Options::new().segment_size(SEGMENT_SIZE as u64);
    let q = match Queue::open_with(dir, opts) {
        Ok(q) => q,
        Err(_) => return,
    };
    let mut got = Vec::new();
    let mut failed = false;
    for _ in 0..SEGMENT_SIZE {
        match q.dequeue() {
            Ok(Some(m)) => got.push((m.id(), m.payload().to_vec())),
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        got.len() >= want.len(),
        "delivered {} of the {} records before the first invalid byte",
        got.len(),
        want.len()
    );
    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.0, e.0, "record #{i}: wrong id");
        assert!(g.1 == e.1, "record #{i} (id {}): wrong payload", g.0);
    }
    if !failed {
        let id = q
            .enqueue(b"after recovery")
            .expect("enqueue after recovery");
        let m = q.dequeue().unwrap().expect("the new message is delivered");
        assert_eq!((m.id(), m.payload()), (id, &b"after recovery"[..]));
    }
    let _ = q.close();
}

fn open_manual(dir: &Path) -> Queue {
    // Each redelivery takes a dequeue and a nack or crash, so no message of a 256-op
    // input is delivered 250 times: the model needs no dead-letter queue.
    let opts = Options::new()
        .segment_size(SEGMENT_SIZE as u64)
        .ack_mode(AckMode::Manual)
        .max_deliveries(250)
        .ring_capacity(16);
    Queue::open_with(dir, opts).expect("reopen of a queue this process wrote")
}

/// `ops_with_crash`: the same operation bytes run twice against a model: on a small
/// manual-ack queue where a crash is a process kill ([`queue_ops_with_crash`]), and on the
/// journal under a storage double where a crash is a power loss that keeps only the
/// first N bytes written since the last flush ([`journal_ops_with_power_loss`]; the
/// storage seam is reachable only through the journal).
pub fn ops_with_crash(data: &[u8]) {
    queue_ops_with_crash(data);
    journal_ops_with_power_loss(data);
}

/// A sequence of operations on a small manual-ack queue checked against a model. A
/// crash drops the queue without `close` (in process, the mapped data is what a
/// `kill -9` leaves; the drop releases the lock).
pub fn queue_ops_with_crash(data: &[u8]) {
    let t = scratch_dir();
    let dir = t.path();
    let mut q = Some(open_manual(dir));
    // Unacknowledged messages: id -> payload. Leased: delivered since the last open.
    let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut leased: BTreeSet<u64> = BTreeSet::new();
    let mut b = Bytes(data);
    let mut n = 0u64;
    for _ in 0..data.len().min(256) {
        let op = b.u8();
        let arg = b.u8();
        let qq = q.as_ref().unwrap();
        match op % 8 {
            0 | 1 => {
                let mut p = n.to_le_bytes().to_vec();
                p.resize(8 + usize::from(arg) * 3, arg);
                n += 1;
                let id = qq.enqueue(&p).expect("enqueue");
                assert!(
                    pending.keys().next_back().is_none_or(|&l| id > l),
                    "IDs increase"
                );
                pending.insert(id, p);
            }
            2 | 3 => match qq.dequeue().expect("dequeue") {
                Some(m) => {
                    let want = pending
                        .get(&m.id())
                        .unwrap_or_else(|| panic!("delivered id {} is not pending", m.id()));
                    assert!(m.payload() == &want[..], "id {}: wrong payload", m.id());
                    assert!(leased.insert(m.id()), "id {} delivered twice", m.id());
                }
                None => {
                    let free: Vec<_> = pending.keys().filter(|k| !leased.contains(k)).collect();
                    assert!(
                        free.is_empty(),
                        "dequeue gave nothing, but {free:?} are ready"
                    );
                }
            },
            4 => {
                if leased.is_empty() {
                    assert!(qq.ack(1 << 40 | u64::from(arg)).is_err());
                } else {
                    let id = *leased.iter().nth(usize::from(arg) % leased.len()).unwrap();
                    qq.ack(id).expect("ack of a leased message");
                    leased.remove(&id);
                    pending.remove(&id);
                    assert!(qq.ack(id).is_err(), "second ack of {id}");
                }
            }
            5 => {
                if !leased.is_empty() {
                    let id = *leased.iter().nth(usize::from(arg) % leased.len()).unwrap();
                    qq.nack(id, "fuzz").expect("nack of a leased message");
                    leased.remove(&id);
                }
            }
            6 => {
                if arg & 1 == 0 {
                    qq.sync().expect("sync");
                } else {
                    qq.close().expect("close");
                    drop(q.take());
                    leased.clear();
                    q = Some(open_manual(dir));
                }
            }
            _ => {
                // Crash: the handle stops as a killed process does (no last sync, no
                // clean checkpoint); what it wrote to the mappings stays.
                if let Some(q) = q.take() {
                    q.abandon();
                }
                leased.clear();
                q = Some(open_manual(dir));
            }
        }
    }
    // Reopen: exactly the unacknowledged messages come back.
    drop(q.take());
    let q = open_manual(dir);
    let mut got = BTreeMap::new();
    while let Some(m) = q.dequeue().expect("final dequeue") {
        assert!(
            got.insert(m.id(), m.payload().to_vec()).is_none(),
            "id {} delivered twice after reopen",
            m.id()
        );
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        pending.keys().collect::<Vec<_>>(),
        "after reopen: delivered ids vs unacknowledged ids"
    );
    assert!(got == pending, "payloads differ after reopen");
    q.close().unwrap();
}

/// A disk that loses power: for each segment file, the bytes made durable by flushes;
/// the last checkpoint written. Checkpoint writes are accepted only while `accept` is
/// set, so that which checkpoint is on the disk does not depend on the timing of the
/// journal's background writer.
#[derive(Debug, Default)]
struct Disk {
    durable: Mutex<BTreeMap<String, Vec<u8>>>,
    checkpoint: Mutex<Option<Vec<u8>>>,
    accept: AtomicBool,
}

impl Storage for Disk {
    fn create_segment(&self, path: &Path, size: u64) -> io::Result<fs::File> {
        FileStorage.create_segment(path, size)
    }

    fn flush(&self, req: &FlushRequest<'_>) -> io::Result<()> {
        FileStorage.flush(req)?;
        let name = req.path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".seg") {
            let mut d = self.durable.lock().unwrap();
            let img = d.entry(name).or_insert_with(|| vec![0u8; SEGMENT_SIZE]);
            let at = req.offset as usize;
            img[at..at + req.bytes.len()].copy_from_slice(req.bytes);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FileStorage.sync_dir(dir)
    }

    fn replace_file(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        if !self.accept.load(Ordering::SeqCst) {
            return Err(io::Error::other("checkpoint refused"));
        }
        FileStorage.replace_file(dir, name, bytes)?;
        *self.checkpoint.lock().unwrap() = Some(bytes.to_vec());
        Ok(())
    }
}

fn open_journal(dir: &Path, disk: &Arc<Disk>, min_next_id: u64) -> Journal {
    let opts = JournalOptions::new()
        .segment_size(SEGMENT_SIZE as u64)
        .durability(Durability::Buffered)
        .flush_interval(Duration::from_secs(3600))
        .min_next_id(min_next_id)
        .storage(disk.clone());
    Journal::open(dir, opts).expect("open after a power loss")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    ledgerq_journal::segment_files(dir).unwrap()
}

/// Every record from the first retained ID: `id -> payload`.
fn journal_contents(j: &Journal) -> BTreeMap<u64, Vec<u8>> {
    let mut c = j.cursor(j.first_id()).unwrap();
    let mut out = BTreeMap::new();
    while let Some((id, p)) = c
        .next(j, |r| (r.id(), r.payload().to_vec()))
        .expect("read after a power loss")
    {
        assert!(out.insert(id, p).is_none(), "id {id} read twice");
    }
    out
}

/// The power loss: builds in `to` the directory the disk holds when, of the bytes
/// written to the segments of `from` since their last flush (`durable`, the flushed
/// images at the moment of the loss; in file order, then offset order), only the first
/// `n(total)` survive and the rest read back as they were (zeros, for a fresh file).
/// The disk's images become the new directory's.
fn lose_power(
    from: &Path,
    to: &Path,
    disk: &Disk,
    durable: BTreeMap<String, Vec<u8>>,
    n: impl FnOnce(usize) -> usize,
) {
    let mut images = Vec::new();
    let mut diffs = Vec::new();
    for (fi, path) in segment_files(from).iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let now = fs::read(path).unwrap();
        let mut img = durable
            .get(&name)
            .cloned()
            .unwrap_or_else(|| vec![0u8; now.len()]);
        img.resize(now.len(), 0);
        diffs.extend(
            (0..now.len())
                .filter(|&i| now[i] != img[i])
                .map(|i| (fi, i)),
        );
        images.push((name, now, img));
    }
    let keep = n(diffs.len()).min(diffs.len());
    for &(fi, i) in &diffs[..keep] {
        let (_, now, img) = &mut images[fi];
        img[i] = now[i];
    }
    fs::create_dir_all(to).unwrap();
    let mut d = disk.durable.lock().unwrap();
    d.clear();
    for (name, _, img) in images {
        fs::write(to.join(&name), &img).unwrap();
        d.insert(name, img);
    }
    if let Some(cp) = disk.checkpoint.lock().unwrap().as_ref() {
        fs::write(to.join(CHECKPOINT_FILE), cp).unwrap();
    }
}

/// The journal-level run of `ops_with_crash`: append (op 1 also syncs), read ("dequeue"
/// with one reader), ack (everything read so far; recorded as the checkpoint's owner
/// value), nack (read again from the acknowledged position), sync (or sync and write a
/// checkpoint), and crash-at-byte-N (a power loss; N from the argument). After each
/// power loss the journal reopens in Strict mode and holds every record that was
/// flushed (every Sync append that returned), with its payload; of the rest, what it
/// holds is a prefix in ID order with the right payloads; the checkpoint on the disk is
/// the one used; it accepts new appends.
pub fn journal_ops_with_power_loss(data: &[u8]) {
    let t = scratch_dir();
    let disk = Arc::new(Disk::default());
    let mut generation = 0;
    let mut dir = t.path().join("g0");
    let mut j = Some(open_journal(&dir, &disk, 0));
    // What the journal holds (as far as known), the acknowledged position (every ID
    // below it was read and acknowledged), the reader.
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut acked = 0u64;
    let mut read_pos = 0u64;
    let mut cursor = j.as_ref().unwrap().cursor(0).unwrap();
    let mut on_disk_checkpoint: Option<Checkpoint> = None;
    let mut b = Bytes(data);
    let mut n = 0u64;
    for _ in 0..data.len().min(256) {
        let op = b.u8();
        let arg = b.u8();
        let jj = j.as_ref().unwrap();
        match op % 8 {
            0 | 1 => {
                let mut p = n.to_le_bytes().to_vec();
                p.resize(8 + usize::from(arg) * 3, arg);
                n += 1;
                let id = jj.append(&RecordIn::new(&p)).expect("append");
                assert!(
                    model.keys().next_back().is_none_or(|&l| id > l),
                    "IDs increase"
                );
                model.insert(id, p);
                if op % 8 == 1 {
                    jj.sync().expect("sync");
                    assert!(jj.durable_id() > id);
                }
            }
            2 | 3 => {
                let want = model.range(read_pos..).next();
                match cursor
                    .next(jj, |r| (r.id(), r.payload().to_vec()))
                    .expect("read")
                {
                    Some((id, p)) => {
                        let (&wid, wp) =
                            want.unwrap_or_else(|| panic!("read id {id}: not in the model"));
                        assert_eq!(id, wid, "reader skipped or repeated");
                        assert!(p == *wp, "id {id}: wrong payload");
                        read_pos = id + 1;
                    }
                    None => assert!(want.is_none(), "reader missed {want:?}"),
                }
            }
            4 => {
                acked = read_pos;
                jj.set_checkpoint_extra(acked);
            }
            5 => {
                read_pos = acked;
                cursor = jj.cursor(acked).unwrap();
            }
            6 => {
                jj.sync().expect("sync");
                if arg & 1 == 1 {
                    disk.accept.store(true, Ordering::SeqCst);
                    // `false`: the checkpoint already records this position, and
                    // nothing is written. The journal's background writer may also
                    // write one while writes are accepted: the model takes whatever
                    // the disk holds now.
                    let wrote = jj.write_checkpoint().expect("checkpoint");
                    disk.accept.store(false, Ordering::SeqCst);
                    let bytes = disk.checkpoint.lock().unwrap().clone();
                    let cp = bytes.map(|b| Checkpoint::decode(&b).unwrap());
                    if wrote {
                        let cp = cp.as_ref().expect("a checkpoint written");
                        assert!(cp.next_id <= jj.durable_id());
                    }
                    on_disk_checkpoint = cp;
                }
            }
            _ => {
                // Crash at byte N: odd arguments keep a fraction of what was written
                // since the last flush, even ones an exact small count of bytes.
                let durable = jj.durable_id();
                generation += 1;
                let to = t.path().join(format!("g{generation}"));
                // What is on the disk at the moment of the loss; the old handle is then
                // dropped (its closing flush must not count: the power is off).
                let images = disk.durable.lock().unwrap().clone();
                drop(j.take());
                lose_power(&dir, &to, &disk, images, |total| {
                    if arg & 1 == 1 {
                        total * usize::from(arg >> 1) / 127
                    } else {
                        usize::from(arg >> 1) * 8 + 4
                    }
                });
                dir = to;
                let nj = open_journal(&dir, &disk, acked);
                // Files recovery removed (headers that never reached the disk) are gone:
                // a file made later under the same name starts from zeros.
                let names: BTreeSet<String> = segment_files(&dir)
                    .iter()
                    .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                    .collect();
                disk.durable
                    .lock()
                    .unwrap()
                    .retain(|k, _| names.contains(k));
                let info = nj.recovery_info().unwrap().clone();
                assert_eq!(
                    info.checkpoint, on_disk_checkpoint,
                    "the checkpoint used: {info:?}"
                );
                let got = journal_contents(&nj);
                for (id, p) in model.range(..durable) {
                    assert!(got.get(id) == Some(p), "flushed id {id} lost or changed");
                }
                for (id, p) in &got {
                    assert!(model.get(id) == Some(p), "id {id}: not appended so");
                }
                let lost_from = model.keys().find(|id| !got.contains_key(id));
                if let (Some(&lost), Some(&last)) = (lost_from, got.keys().next_back()) {
                    assert!(last < lost, "id {last} kept after the lost id {lost}");
                }
                model = got;
                // It goes on: a new append lands above everything kept and acknowledged.
                let p = b"after the power loss".to_vec();
                let id = nj
                    .append(&RecordIn::new(&p))
                    .expect("append after recovery");
                assert!(model.keys().next_back().is_none_or(|&l| id > l) && id >= acked);
                model.insert(id, p);
                read_pos = acked;
                cursor = nj.cursor(acked).unwrap();
                j = Some(nj);
            }
        }
    }
    // A clean close and reopen keeps everything.
    j.take().unwrap().close().expect("close");
    let nj = open_journal(&dir, &disk, acked);
    assert!(
        journal_contents(&nj) == model,
        "contents after a clean reopen"
    );
}
