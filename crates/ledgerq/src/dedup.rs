//! The deduplication table: key → (original ID, expiry), bounded, O(1) per call.
//!
//! One mutex guards a map and, per distinct window in use, a FIFO of (expiry, key):
//! entries of one window are inserted in time order, so each FIFO is in expiry order
//! and its front is its next to expire. Expired entries are purged from the fronts on
//! every insert (each entry is pushed and popped once: amortised O(1)), and when the
//! table is over its bound the entry with the oldest expiry, the least of the fronts, is
//! evicted (O(number of distinct windows), in practice one or two). A key inserted again
//! leaves a stale FIFO item behind, recognised by its generation and dropped when it
//! reaches the front.
//!
//! The lock is never held across an append: a producer *reserves* its key (an entry
//! without an ID yet), appends, then commits the ID. A producer that finds the key
//! reserved by another waits for that commit (and then reports a duplicate of it), or
//! for the reservation's release if that append failed. Only single enqueues wait
//! while holding no reservation; a batch that meets a reserved key releases its own
//! reservations before waiting, so no cycle of waits can form.
//!
//! The table is not persisted: the queue rebuilds it at open from the dedup fields of
//! the records in the window (see `Inner::rebuild_dedup`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// A FIFO item: (expiry ns, generation, key).
type Item = (u64, u64, Box<[u8]>);

struct Entry {
    /// `None` while reserved by a producer whose append has not returned.
    id: Option<u64>,
    expires: u64,
    gen: u64,
}

#[derive(Default)]
struct Table {
    map: HashMap<Box<[u8]>, Entry>,
    /// Per window (ns): items in insertion order, hence expiry order.
    fifos: Vec<(u64, VecDeque<Item>)>,
    next_gen: u64,
    /// Committed entries (what `len` reports and the bound applies to).
    committed: usize,
}

impl Table {
    fn live(&self, item: &Item) -> bool {
        self.map.get(&item.2).is_some_and(|e| e.gen == item.1)
    }

    /// Adds an entry (reserved if `id` is `None`) and its FIFO item.
    fn put(&mut self, key: &[u8], id: Option<u64>, expires: u64, window: u64) -> u64 {
        let gen = self.next_gen;
        self.next_gen += 1;
        let k: Box<[u8]> = key.into();
        if let Some(old) = self.map.insert(k.clone(), Entry { id, expires, gen }) {
            if old.id.is_some() {
                self.committed -= 1;
            }
        }
        if id.is_some() {
            self.committed += 1;
        }
        let fifo = match self.fifos.iter().position(|(w, _)| *w == window) {
            Some(i) => &mut self.fifos[i].1,
            None => {
                self.fifos.push((window, VecDeque::new()));
                &mut self.fifos.last_mut().expect("just pushed").1
            }
        };
        fifo.push_back((expires, gen, k));
        gen
    }

    /// Drops stale fronts and expired committed entries (amortised O(1)).
    fn purge_expired(&mut self, now: u64) {
        for f in 0..self.fifos.len() {
            while let Some(front) = self.fifos[f].1.front() {
                if !self.live(front) {
                    self.fifos[f].1.pop_front();
                    continue;
                }
                let reserved = self.map.get(&front.2).is_some_and(|e| e.id.is_none());
                if front.0 <= now && !reserved {
                    let (_, _, k) = self.fifos[f].1.pop_front().expect("front exists");
                    self.map.remove(&k);
                    self.committed -= 1;
                } else {
                    break;
                }
            }
        }
        self.fifos.retain(|(_, f)| !f.is_empty());
    }

    /// Evicts the committed entry with the oldest expiry; `false` if there is none.
    fn evict_oldest(&mut self) -> bool {
        let mut best: Option<(u64, usize, usize)> = None;
        for (f, (_, fifo)) in self.fifos.iter().enumerate() {
            // The first live committed item of this FIFO (reserved ones are skipped:
            // at most one per producer in flight).
            let found = fifo.iter().enumerate().find(|(_, it)| {
                self.map
                    .get(&it.2)
                    .is_some_and(|e| e.gen == it.1 && e.id.is_some())
            });
            if let Some((i, it)) = found {
                if best.is_none_or(|(exp, _, _)| it.0 < exp) {
                    best = Some((it.0, f, i));
                }
            }
        }
        let Some((_, f, i)) = best else {
            return false;
        };
        if let Some((_, _, k)) = self.fifos[f].1.remove(i) {
            self.map.remove(&k);
            self.committed -= 1;
        }
        true
    }
}

/// What [`DedupTable::begin`] found.
pub(crate) enum Begin<'a> {
    /// The key is tracked: the original message's ID.
    Duplicate(u64),
    /// The key is reserved for the caller: append, then commit the ID (dropping the
    /// reservation without a commit releases the key).
    Reserved(Reservation<'a>),
}

/// A key reserved for one producer's append.
pub(crate) struct Reservation<'a> {
    table: &'a DedupTable,
    key: Box<[u8]>,
    gen: u64,
    window: u64,
    expires: u64,
    done: bool,
}

impl Reservation<'_> {
    /// The append succeeded with `id`: the key now maps to it.
    pub(crate) fn commit(mut self, id: u64) {
        self.done = true;
        let t = self.table;
        let mut g = t.lock();
        let mine = match g.map.get_mut(&self.key) {
            Some(e) if e.gen == self.gen => {
                e.id = Some(id);
                true
            }
            _ => false,
        };
        if mine {
            g.committed += 1;
        } else {
            // Gone meanwhile (cannot happen while reserved): track it anew.
            g.put(&self.key, Some(id), self.expires, self.window);
        }
        t.enforce_bound(&mut g);
        t.publish(&g);
        drop(g);
        t.cv.notify_all();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let t = self.table;
        let mut g = t.lock();
        if g.map.get(&self.key).is_some_and(|e| e.gen == self.gen) {
            g.map.remove(&self.key);
        }
        drop(g);
        t.cv.notify_all();
    }
}

/// The table.
pub(crate) struct DedupTable {
    table: Mutex<Table>,
    /// Signalled when a reservation is committed or released.
    cv: Condvar,
    max: usize,
    len: AtomicUsize,
    evicted: AtomicU64,
}

impl DedupTable {
    /// An empty table tracking at most `max_entries` keys.
    pub(crate) fn new(max_entries: usize) -> Self {
        DedupTable {
            table: Mutex::new(Table::default()),
            cv: Condvar::new(),
            max: max_entries.max(1),
            len: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enforce_bound(&self, g: &mut Table) {
        while g.committed > self.max {
            if !g.evict_oldest() {
                break;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn publish(&self, g: &Table) {
        self.len.store(g.committed, Ordering::Relaxed);
    }

    /// Looks `key` up at `now` (ns): a duplicate of a tracked key, or a reservation for
    /// `window` ns. Waits while another producer holds the key's reservation.
    pub(crate) fn begin(&self, key: &[u8], now: u64, window: u64) -> Begin<'_> {
        let mut g = self.lock();
        loop {
            match g.map.get(key) {
                Some(e) if e.id.is_none() => {
                    g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                Some(e) if e.expires > now => return Begin::Duplicate(e.id.unwrap_or(0)),
                _ => return Begin::Reserved(self.reserve(&mut g, key, now, window)),
            }
        }
    }

    /// As [`begin`](Self::begin), but `None` instead of waiting for another producer's
    /// reservation (a batch, which must release its own reservations before waiting).
    pub(crate) fn try_begin(&self, key: &[u8], now: u64, window: u64) -> Option<Begin<'_>> {
        let mut g = self.lock();
        match g.map.get(key) {
            Some(e) if e.id.is_none() => None,
            Some(e) if e.expires > now => Some(Begin::Duplicate(e.id.unwrap_or(0))),
            _ => Some(Begin::Reserved(self.reserve(&mut g, key, now, window))),
        }
    }

    /// Waits until `key` is not reserved by anyone.
    pub(crate) fn wait_unreserved(&self, key: &[u8]) {
        let mut g = self.lock();
        while g.map.get(key).is_some_and(|e| e.id.is_none()) {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn reserve(&self, g: &mut Table, key: &[u8], now: u64, window: u64) -> Reservation<'_> {
        g.purge_expired(now);
        let expires = now.saturating_add(window);
        let gen = g.put(key, None, expires, window);
        self.publish(g);
        Reservation {
            table: self,
            key: key.into(),
            gen,
            window,
            expires,
            done: false,
        }
    }

    /// Rebuild at open: tracks `key` for message `id` (enqueued at `enqueued`, ns) for
    /// `window` ns, unless already expired at `now`. Records come in ID order, so a key
    /// seen twice keeps its latest ID.
    pub(crate) fn rebuild_insert(&self, key: &[u8], id: u64, enqueued: u64, window: u64, now: u64) {
        let expires = enqueued.saturating_add(window);
        if expires <= now {
            return;
        }
        let mut g = self.lock();
        g.put(key, Some(id), expires, window);
        g.purge_expired(now);
        self.enforce_bound(&mut g);
        self.publish(&g);
    }

    /// Keys tracked.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Keys evicted for the bound since the table was made.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn add(t: &DedupTable, key: &[u8], id: u64, now: u64, window: u64) {
        match t.begin(key, now, window) {
            Begin::Reserved(r) => r.commit(id),
            Begin::Duplicate(d) => panic!("{key:?} is a duplicate of {d}"),
        }
    }

    fn dup(t: &DedupTable, key: &[u8], now: u64) -> Option<u64> {
        match t.begin(key, now, S) {
            Begin::Duplicate(id) => Some(id),
            Begin::Reserved(_) => None, // dropped: released
        }
    }

    #[test]
    fn a_key_within_its_window_is_a_duplicate_until_it_expires() {
        let t = DedupTable::new(100);
        add(&t, b"k", 7, 0, 10 * S);
        assert_eq!(dup(&t, b"k", 9 * S), Some(7));
        assert_eq!(dup(&t, b"k", 10 * S), None);
        // The expired entry is purged by the next reservation.
        add(&t, b"other", 8, 11 * S, S);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn windows_differ_per_key() {
        let t = DedupTable::new(100);
        add(&t, b"short", 1, 0, S);
        add(&t, b"long", 2, 0, 100 * S);
        assert_eq!(dup(&t, b"short", 2 * S), None);
        assert_eq!(dup(&t, b"long", 2 * S), Some(2));
    }

    #[test]
    fn the_bound_evicts_the_oldest_expiry_first_and_counts() {
        let t = DedupTable::new(2);
        add(&t, b"a", 1, 0, 50 * S);
        add(&t, b"b", 2, 0, 20 * S);
        add(&t, b"c", 3, 0, 30 * S);
        assert_eq!((t.len(), t.evicted()), (2, 1));
        assert_eq!(dup(&t, b"b", S), None, "the oldest expiry was evicted");
        assert_eq!(dup(&t, b"a", S), Some(1));
        assert_eq!(dup(&t, b"c", S), Some(3));
    }

    #[test]
    fn a_released_reservation_frees_the_key() {
        let t = DedupTable::new(10);
        match t.begin(b"k", 0, S) {
            Begin::Reserved(r) => drop(r), // the append failed
            Begin::Duplicate(_) => unreachable!(),
        }
        assert_eq!(t.len(), 0);
        add(&t, b"k", 4, 0, S);
        assert_eq!(dup(&t, b"k", 0), Some(4));
    }

    #[test]
    fn a_reserved_key_blocks_batches_without_waiting() {
        let t = DedupTable::new(10);
        let r = match t.begin(b"k", 0, S) {
            Begin::Reserved(r) => r,
            Begin::Duplicate(_) => unreachable!(),
        };
        assert!(t.try_begin(b"k", 0, S).is_none());
        r.commit(9);
        assert!(matches!(t.try_begin(b"k", 0, S), Some(Begin::Duplicate(9))));
    }

    #[test]
    fn rebuild_keeps_the_latest_and_ignores_expired() {
        let t = DedupTable::new(100);
        t.rebuild_insert(b"k", 1, 0, 10 * S, S);
        t.rebuild_insert(b"k", 5, 2 * S, 10 * S, S);
        assert_eq!(t.len(), 1);
        assert_eq!(dup(&t, b"k", 3 * S), Some(5));
        t.rebuild_insert(b"old", 9, 0, S, 5 * S);
        assert_eq!(dup(&t, b"old", 5 * S), None);
    }

    #[test]
    fn concurrent_producers_with_one_key_write_once() {
        let t = DedupTable::new(100);
        let next = AtomicU64::new(1);
        let winners = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Begin::Reserved(r) = t.begin(b"same", 0, 100 * S) {
                            // The append happens here, outside the table's lock.
                            std::thread::yield_now();
                            r.commit(next.fetch_add(1, Ordering::Relaxed));
                            winners.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(winners.load(Ordering::Relaxed), 1);
        assert_eq!(t.len(), 1);
    }
}
