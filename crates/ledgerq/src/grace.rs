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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

/// The read sections of consumers, by epoch parity.
pub(crate) struct Grace {
    epoch: CachePadded<AtomicUsize>,
    active: [CachePadded<AtomicUsize>; 2],
}

/// A consumer's read section; leaves it when dropped.
pub(crate) struct Section<'a> {
    grace: &'a Grace,
    parity: usize,
}

impl Grace {
    pub(crate) fn new() -> Grace {
        Grace {
            epoch: CachePadded::new(AtomicUsize::new(0)),
            active: [
                CachePadded::new(AtomicUsize::new(0)),
                CachePadded::new(AtomicUsize::new(0)),
            ],
        }
    }

    /// Enters a read section (before claiming a handle).
    pub(crate) fn enter(&self) -> Section<'_> {
        loop {
            // SeqCst (here, on the increment and on the re-check): pairs with the SeqCst
            // flip and load in `wait`. If the epoch flipped between our load and our
            // increment, the re-check sees it and we retry under the new parity, so no
            // section is ever counted under a parity `wait` has already seen drained.
            let parity = self.epoch.load(Ordering::SeqCst) & 1;
            self.active[parity].fetch_add(1, Ordering::SeqCst);
            if self.epoch.load(Ordering::SeqCst) & 1 == parity {
                return Section {
                    grace: self,
                    parity,
                };
            }
            self.active[parity].fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Flips the epoch and waits until every section entered before the flip has left,
    /// up to `limit`. Returns whether they all left.
    pub(crate) fn wait(&self, limit: Duration) -> bool {
        // SeqCst: pairs with the loads in `enter` (see there).
        let old = self.epoch.fetch_add(1, Ordering::SeqCst) & 1;
        let start = Instant::now();
        // SeqCst: the zero we see is after every decrement of the sections we wait for,
        // and those decrements follow the sections' reads (Release in `Drop`).
        while self.active[old].load(Ordering::SeqCst) != 0 {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        // Release: the section's reads happen before `wait` sees the count drop.
        self.grace.active[self.parity].fetch_sub(1, Ordering::Release);
    }
}
