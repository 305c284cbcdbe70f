//! Grace periods for compaction: a segment may be removed only once no consumer can still
//! be about to read a record from it.
//!
//! The hazard: in auto-ack mode a consumer claims a handle from the ring and then reads
//! the record; meanwhile another consumer may claim a later handle and raise the consumed
//! watermark past the first one's ID. Removing segments below that watermark at once
//! would take the record from under the first consumer.
//!
//! The protocol is a two-counter read section (as in sleepable RCU): a consumer enters
//! before it claims a handle and leaves after it has read the record; compaction reads
//! the watermark, flips the epoch, and waits until the section count of the old epoch is
//! zero. Every consumer that claimed an ID below the watermark entered before the flip
//! (its claim precedes the claim that raised the watermark, which precedes the load of
//! the watermark, which precedes the flip), so it is counted in the old epoch; consumers
//! that enter after the flip claim handles with IDs at or above the watermark (the ring
//! hands them out in ID order), which compaction does not touch.
//!
//! A seek uses the same counts the other way: it stops new sections from starting
//! ([`Grace::pause`]) and waits until none is running, so no consumer is between its
//! claim of a handle from before the seek and the raise of the watermark that follows
//! it (which would move the consumed point back past the seek target).
//!
//! The epoch's parity, the pause and both counts live in one atomic word, so every step
//! of the protocol is a read-modify-write of that word (or a load of it) and their
//! order is the word's modification order: no reasoning across locations is needed.

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicU64, Ordering};

/// Lets the thread that holds things up run (a loom yield point under the models).
fn yield_now() {
    #[cfg(ledgerq_loom)]
    loom::thread::yield_now();
    #[cfg(not(ledgerq_loom))]
    std::thread::yield_now();
}

/// Bits of the section word: sections may not start (a seek is running).
const PAUSED: u64 = 1 << 63;
/// The epoch's parity.
const PARITY: u64 = 1 << 62;
/// Each parity's count of running sections: 31 bits, from bit `31 * parity`.
const COUNT_BITS: u32 = 31;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// One section counted under `parity`.
fn one(parity: u64) -> u64 {
    1 << (COUNT_BITS as u64 * parity)
}

/// Sections running under `parity` in section word `w`.
fn count(w: u64, parity: u64) -> u64 {
    (w >> (COUNT_BITS as u64 * parity)) & COUNT_MASK
}

/// The read sections of consumers, by epoch parity.
pub(crate) struct Grace {
    word: CachePadded<AtomicU64>,
}

/// A consumer's read section; leaves it when dropped.
pub(crate) struct Section<'a> {
    grace: &'a Grace,
    parity: u64,
}

impl Grace {
    pub(crate) fn new() -> Grace {
        Grace {
            word: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Enters a read section (before claiming a handle); waits while a seek has
    /// sections paused.
    pub(crate) fn enter(&self) -> Section<'_> {
        #[cfg(not(ledgerq_loom))]
        let backoff = crossbeam_utils::Backoff::new();
        // Relaxed: a guess; the compare-exchange below decides.
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if w & PAUSED != 0 {
                #[cfg(not(ledgerq_loom))]
                if backoff.is_completed() {
                    yield_now();
                } else {
                    backoff.snooze();
                }
                #[cfg(ledgerq_loom)]
                yield_now();
                // Relaxed: as above.
                w = self.word.load(Ordering::Relaxed);
                continue;
            }
            let parity = u64::from(w & PARITY != 0);
            debug_assert!(count(w, parity) < COUNT_MASK, "section count overflow");
            // Acquire on success: pairs with the Release of `Paused`'s drop, so a
            // section that starts after a seek sees what the seek did. SeqCst (a total
            // order with the other SeqCst operations on the word, which their modification
            // order gives anyway) keeps the reasoning plain. Relaxed on failure: retried.
            match self.word.compare_exchange_weak(
                w,
                w + one(parity),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Section {
                        grace: self,
                        parity,
                    }
                }
                Err(now) => w = now,
            }
        }
    }

    /// Flips the epoch and waits until every section entered before the flip has left,
    /// up to `limit`. Returns whether they all left.
    pub(crate) fn wait(&self, limit: Duration) -> bool {
        // SeqCst: the flip is ordered in the word with every enter and leave; a section
        // counted under the old parity entered before it.
        let old = u64::from(self.word.fetch_xor(PARITY, Ordering::SeqCst) & PARITY != 0);
        let start = Instant::now();
        // Acquire: pairs with the Release decrement in `Section::drop`: the sections'
        // reads happen before we see their count drop to zero.
        while count(self.word.load(Ordering::Acquire), old) != 0 {
            if start.elapsed() >= limit {
                return false;
            }
            #[cfg(not(ledgerq_loom))]
            std::thread::sleep(Duration::from_micros(100));
            #[cfg(ledgerq_loom)]
            yield_now();
        }
        true
    }

    /// Stops new sections from starting and waits until every running section has
    /// left; they may start again when the returned guard is dropped. One pause at a
    /// time (the caller holds the queue's compaction lock).
    pub(crate) fn pause(&self) -> Paused<'_> {
        // SeqCst: ordered in the word with every enter: an enter after this sees the
        // pause, one before it is counted below.
        self.word.fetch_or(PAUSED, Ordering::SeqCst);
        let paused = Paused { grace: self };
        // Acquire: pairs with the Release decrement in `Section::drop`, as in `wait`.
        loop {
            let w = self.word.load(Ordering::Acquire);
            if count(w, 0) == 0 && count(w, 1) == 0 {
                return paused;
            }
            yield_now();
        }
    }
}

/// Sections paused (see [`Grace::pause`]); they may start again when this is dropped.
pub(crate) struct Paused<'a> {
    grace: &'a Grace,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire of the compare-exchange in `enter`.
        self.grace.word.fetch_and(!PAUSED, Ordering::Release);
    }
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        // Release: the section's reads happen before `wait` or `pause` sees the count
        // drop.
        self.grace
            .word
            .fetch_sub(one(self.parity), Ordering::Release);
    }
}

#[cfg(all(test, ledgerq_loom))]
mod loom_models {
    //! The seek's pause under loom: a consumer claims positions (a counter standing for
    //! the ring) inside read sections and raises the consumed watermark after each
    //! claim; a seek pauses the sections, moves the claim point and the watermark back
    //! to 0, and resumes. No claim from before the seek may raise the watermark after
    //! it: the final watermark is 0, or one past the last claim made after the seek.
    use super::*;
    use crate::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// Positions from here on were claimed before the seek.
    const BEFORE: usize = 5;

    struct Model {
        grace: Grace,
        next: AtomicUsize,
        watermark: AtomicUsize,
    }

    /// Compaction's grace period: a consumer claims positions and raises the
    /// watermark after each claim, then reads the record it claimed; compaction loads
    /// the watermark, waits out the sections of the old epoch and removes what is below
    /// the watermark. No consumer reads a removed record.
    #[test]
    fn loom_models_grace_wait_never_removes_a_record_being_read() {
        loom::model(|| {
            let m = Arc::new(Model {
                grace: Grace::new(),
                next: AtomicUsize::new(0),
                watermark: AtomicUsize::new(0),
            });
            let removed_below = Arc::new(AtomicUsize::new(0));
            let consumer = {
                let (m, removed_below) = (m.clone(), removed_below.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        let _section = m.grace.enter();
                        let c = m.next.fetch_add(1, Ordering::SeqCst);
                        m.watermark.fetch_max(c + 1, Ordering::SeqCst);
                        // The read of record `c`.
                        assert!(
                            c >= removed_below.load(Ordering::SeqCst),
                            "read a removed record"
                        );
                    }
                })
            };
            let w = m.watermark.load(Ordering::SeqCst);
            assert!(m.grace.wait(Duration::from_secs(3600)));
            // A swap: see the other model.
            removed_below.swap(w, Ordering::SeqCst);
            consumer.join().unwrap();
        });
    }

    #[test]
    fn loom_models_grace_pause_keeps_pre_seek_claims_from_raising_the_watermark() {
        loom::model(|| {
            let m = Arc::new(Model {
                grace: Grace::new(),
                next: AtomicUsize::new(BEFORE),
                watermark: AtomicUsize::new(BEFORE),
            });
            let consumer = {
                let m = m.clone();
                thread::spawn(move || {
                    let mut claims = Vec::new();
                    for _ in 0..2 {
                        let _section = m.grace.enter();
                        let c = m.next.fetch_add(1, Ordering::SeqCst);
                        m.watermark.fetch_max(c + 1, Ordering::SeqCst);
                        claims.push(c);
                    }
                    claims
                })
            };
            {
                let _paused = m.grace.pause();
                // Swaps, as `StateFile::set_watermark` does: loom lets a plain store
                // fall between the read and the write of another thread's
                // read-modify-write (tokio-rs/loom#254), which no machine does.
                m.next.swap(0, Ordering::SeqCst);
                m.watermark.swap(0, Ordering::SeqCst);
            }
            let claims = consumer.join().unwrap();
            let after_seek = claims.iter().filter(|&&c| c < BEFORE).max();
            let want = after_seek.map_or(0, |&c| c + 1);
            assert_eq!(
                m.watermark.load(Ordering::SeqCst),
                want,
                "claims {claims:?}"
            );
        });
    }
}
