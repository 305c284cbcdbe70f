//! Loom model of the append protocol (`ledgerq_journal::proto`): reserve, commit,
//! seal and roll with 2-3 appenders over tiny in-memory segments. Pins: records never
//! overlap, IDs are unique and dense, and an in-order reader sees every committed
//! record exactly once, in ID order (also while appends are in flight).
//!
//! Run: `RUSTFLAGS="--cfg ledgerq_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom
//! cargo test --release -p ledgerq-journal --test loom` (about a minute).
#![cfg(ledgerq_loom)]

use ledgerq_journal::proto::{self, Observed, Region, Reserve, KIND_RECORD};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};

const REC: u32 = 16; // two 8-byte slots: [id][id ^ MAGIC]
const MAGIC: u64 = 0x5A5A_5A5A;

struct Seg {
    base: AtomicU64,
    word: AtomicU64,
    cap: u32,
    commits: Vec<AtomicU32>,
    data: Vec<UnsafeCell<u64>>,
}

impl Seg {
    fn new(cap: u32) -> Seg {
        let slots = (cap / 8) as usize;
        Seg {
            base: AtomicU64::new(0),
            word: AtomicU64::new(proto::pack(0, 0)),
            cap,
            commits: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            data: (0..slots).map(|_| UnsafeCell::new(0)).collect(),
        }
    }
}

impl Region for Seg {
    fn capacity(&self) -> u32 {
        self.cap
    }
    fn commit_word(&self, offset: u32) -> &AtomicU32 {
        &self.commits[(offset / 8) as usize]
    }
}

/// The journal's segment chain, as `Journal::roll` drives it.
struct Chain {
    segs: Vec<Seg>,
    active: AtomicUsize,
    roll_lock: Mutex<()>,
}

impl Chain {
    fn new(n: usize, cap: u32) -> Chain {
        let c = Chain {
            segs: (0..n).map(|_| Seg::new(cap)).collect(),
            active: AtomicUsize::new(0),
            roll_lock: Mutex::new(()),
        };
        c.segs[0].base.store(1, Ordering::Relaxed);
        c
    }

    fn roll(&self, idx: usize) {
        let _g = self.roll_lock.lock().unwrap();
        if self.active.load(Ordering::Acquire) != idx {
            return;
        }
        let w = self.segs[idx].word.load(Ordering::Acquire);
        assert!(proto::is_sealed(w));
        let base = self.segs[idx].base.load(Ordering::Relaxed) + u64::from(proto::count_of(w));
        self.segs[idx + 1].base.store(base, Ordering::Relaxed);
        self.active.store(idx + 1, Ordering::Release);
    }

    /// Returns (id, segment, offset).
    fn append(&self) -> (u64, usize, u32) {
        loop {
            let idx = self.active.load(Ordering::Acquire);
            let seg = &self.segs[idx];
            match proto::reserve(&seg.word, REC, 1, seg.cap) {
                Reserve::Reserved { index, offset } => {
                    let id = seg.base.load(Ordering::Relaxed) + u64::from(index);
                    let s = (offset / 8) as usize;
                    seg.data[s].with_mut(|p| unsafe { *p = id });
                    seg.data[s + 1].with_mut(|p| unsafe { *p = id ^ MAGIC });
                    proto::commit(seg, offset, KIND_RECORD);
                    return (id, idx, offset);
                }
                Reserve::SealedByMe { offset, .. } => {
                    proto::mark_end(seg, offset);
                    self.roll(idx);
                }
                Reserve::Sealed => self.roll(idx),
            }
        }
    }
}

/// An in-order reader.
struct Reader {
    seg: usize,
    off: u32,
    next_id: u64,
    seen: Vec<u64>,
}

impl Reader {
    /// Reads everything committed so far, without waiting.
    fn drain(&mut self, c: &Chain) {
        loop {
            let seg = &c.segs[self.seg];
            match proto::observe(seg, Some(&seg.word), self.off) {
                Observed::Committed(k) => {
                    assert_eq!(k, KIND_RECORD);
                    let s = (self.off / 8) as usize;
                    let id = seg.data[s].with(|p| unsafe { *p });
                    let chk = seg.data[s + 1].with(|p| unsafe { *p });
                    assert_eq!(chk, id ^ MAGIC, "torn record");
                    assert_eq!(id, self.next_id, "in order, exactly once");
                    self.seen.push(id);
                    self.next_id += 1;
                    self.off += REC;
                }
                Observed::End => {
                    if c.active.load(Ordering::Acquire) > self.seg {
                        self.seg += 1;
                        self.off = 0;
                        assert_eq!(c.segs[self.seg].base.load(Ordering::Relaxed), self.next_id);
                    } else {
                        return;
                    }
                }
                Observed::Pending => return,
            }
        }
    }
}

fn check(threads: usize, per_thread: usize, cap: u32, segs: usize) {
    loom::model(move || {
        let chain = Arc::new(Chain::new(segs, cap));
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let c = chain.clone();
                loom::thread::spawn(move || (0..per_thread).map(|_| c.append()).collect::<Vec<_>>())
            })
            .collect();
        let mut reader = Reader {
            seg: 0,
            off: 0,
            next_id: 1,
            seen: Vec::new(),
        };
        reader.drain(&chain);
        let mut all = Vec::new();
        for h in hs {
            let got = h.join().unwrap();
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0),
                "ids increase per appender"
            );
            all.extend(got);
        }
        let total = threads * per_thread;
        // Unique IDs 1..=total, non-overlapping records holding their own IDs.
        let mut ids: Vec<u64> = all.iter().map(|r| r.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=total as u64).collect::<Vec<_>>());
        let mut places: Vec<(usize, u32)> = all.iter().map(|r| (r.1, r.2)).collect();
        places.sort_unstable();
        places.dedup();
        assert_eq!(places.len(), total);
        for (id, s, off) in &all {
            let v = chain.segs[*s].data[(off / 8) as usize].with(|p| unsafe { *p });
            assert_eq!(v, *id);
        }
        reader.drain(&chain);
        assert_eq!(reader.seen, (1..=total as u64).collect::<Vec<_>>());
    });
}

/// 2 appenders x 2 records, 2 records per segment plus an end marker: at least one
/// roll, with the end-marker path.
#[test]
fn two_appenders_roll_with_end_marker() {
    check(2, 2, 2 * REC + 8, 3);
}

/// 3 appenders x 1 record, segments that hold exactly one record (no room for an
/// end marker): every append after the first rolls.
#[test]
fn three_appenders_exact_fill() {
    check(3, 1, REC, 3);
}
