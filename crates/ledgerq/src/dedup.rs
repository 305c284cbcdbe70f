//! The deduplication table: key → (original ID, expiry), bounded, O(1) per call.
//!
//! Sharded by a hash of the key (16 mutexes), so producers with different keys rarely
//! meet. Each shard keeps, besides its map, one FIFO of (expiry, key) per distinct
//! window in use: entries of one window are inserted in time order, so each FIFO is in
//! expiry order and its front is its next to expire. Expired entries are purged from the
//! fronts on every insert (each entry is pushed and popped once: amortised O(1)), and
//! when a shard is over its bound the entry with the oldest expiry, the least of the
//! fronts, is evicted (O(number of distinct windows), in practice one or two). A key
//! inserted again leaves a stale FIFO item behind, recognised by its generation and
//! dropped when it reaches the front.
//!
//! The table is not persisted: the queue rebuilds it at open from the dedup fields of
//! the records in the window (see `Inner::rebuild_dedup`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// A FIFO item: (expiry ns, generation, key).
type Item = (u64, u64, Box<[u8]>);

#[derive(Default)]
struct Shard {
    /// key → (ID, expiry ns, generation).
    map: HashMap<Box<[u8]>, (u64, u64, u64)>,
    /// Per window (ns): (expiry, generation, key) in insertion order.
    fifos: Vec<(u64, VecDeque<Item>)>,
    next_gen: u64,
}

impl Shard {
    fn get(&mut self, key: &[u8], now: u64) -> Option<u64> {
        match self.map.get(key) {
            Some(&(id, exp, _)) if exp > now => Some(id),
            _ => None,
        }
    }

    /// Inserts and returns (entries added, entries evicted for the bound).
    fn insert(
        &mut self,
        key: &[u8],
        id: u64,
        expires: u64,
        window: u64,
        now: u64,
        bound: usize,
    ) -> (isize, u64) {
        let gen = self.next_gen;
        self.next_gen += 1;
        let k: Box<[u8]> = key.into();
        let mut added = isize::from(self.map.insert(k.clone(), (id, expires, gen)).is_none());
        let fifo = match self.fifos.iter().position(|(w, _)| *w == window) {
            Some(i) => &mut self.fifos[i].1,
            None => {
                self.fifos.push((window, VecDeque::new()));
                &mut self.fifos.last_mut().expect("just pushed").1
            }
        };
        fifo.push_back((expires, gen, k));
        added -= self.purge_expired(now) as isize;
        let mut evicted = 0;
        while self.map.len() > bound {
            if !self.evict_oldest() {
                break;
            }
            evicted += 1;
        }
        self.fifos.retain(|(_, f)| !f.is_empty());
        (added - evicted as isize, evicted)
    }

    /// Whether a FIFO item is the live entry of its key.
    fn live(map: &HashMap<Box<[u8]>, (u64, u64, u64)>, item: &Item) -> bool {
        map.get(&item.2).is_some_and(|e| e.2 == item.1)
    }

    /// Drops stale fronts and expired entries; returns how many entries it removed.
    fn purge_expired(&mut self, now: u64) -> usize {
        let mut removed = 0;
        for (_, fifo) in &mut self.fifos {
            while let Some(front) = fifo.front() {
                if !Self::live(&self.map, front) {
                    fifo.pop_front();
                } else if front.0 <= now {
                    let (_, _, k) = fifo.pop_front().expect("front exists");
                    self.map.remove(&k);
                    removed += 1;
                } else {
                    break;
                }
            }
        }
        removed
    }

    /// Evicts the live entry with the oldest expiry; `false` if there is none.
    fn evict_oldest(&mut self) -> bool {
        loop {
            // Drop stale fronts so every front is live.
            for (_, fifo) in &mut self.fifos {
                while fifo.front().is_some_and(|f| !Self::live(&self.map, f)) {
                    fifo.pop_front();
                }
            }
            let Some(i) = (0..self.fifos.len())
                .filter(|&i| !self.fifos[i].1.is_empty())
                .min_by_key(|&i| self.fifos[i].1.front().map(|f| f.0))
            else {
                return false;
            };
            if let Some((_, _, k)) = self.fifos[i].1.pop_front() {
                self.map.remove(&k);
                return true;
            }
        }
    }
}

/// The table.
pub(crate) struct DedupTable {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    len: AtomicUsize,
    evicted: AtomicU64,
}

fn shard_of(key: &[u8]) -> usize {
    // FNV-1a: keys are short, and the shard only needs a spread, not DoS resistance (the
    // maps inside use the standard hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 32) as usize % SHARDS
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One key's shard, locked: look up, then (after the append) insert, atomically for
/// that key.
pub(crate) struct DedupGuard<'a> {
    table: &'a DedupTable,
    shard: MutexGuard<'a, Shard>,
    key: &'a [u8],
}

impl DedupGuard<'_> {
    /// The original ID if the key is tracked and not expired at `now` (ns).
    pub(crate) fn get(&mut self, now: u64) -> Option<u64> {
        self.shard.get(self.key, now)
    }

    /// Tracks the key for message `id` until `now + window`.
    pub(crate) fn insert(&mut self, id: u64, now: u64, window: u64) {
        let t = self.table;
        t.account(self.shard.insert(
            self.key,
            id,
            now.saturating_add(window),
            window,
            now,
            t.per_shard,
        ));
    }
}

/// The shards of several keys, locked in shard order (a batch).
pub(crate) struct DedupMany<'a> {
    table: &'a DedupTable,
    shards: Vec<(usize, MutexGuard<'a, Shard>)>,
}

impl DedupMany<'_> {
    fn shard(&mut self, key: &[u8]) -> &mut Shard {
        let s = shard_of(key);
        let i = self
            .shards
            .iter()
            .position(|(x, _)| *x == s)
            .expect("the batch locked every key's shard");
        &mut self.shards[i].1
    }

    /// As [`DedupGuard::get`] for `key`, one of the batch's keys.
    pub(crate) fn get(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.shard(key).get(key, now)
    }

    /// As [`DedupGuard::insert`] for `key`, one of the batch's keys.
    pub(crate) fn insert(&mut self, key: &[u8], id: u64, now: u64, window: u64) {
        let t = self.table;
        let per = t.per_shard;
        let r = self
            .shard(key)
            .insert(key, id, now.saturating_add(window), window, now, per);
        t.account(r);
    }
}

impl DedupTable {
    /// An empty table tracking at most about `max_entries` keys.
    pub(crate) fn new(max_entries: usize) -> Self {
        DedupTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            len: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    fn account(&self, (added, evicted): (isize, u64)) {
        if added >= 0 {
            self.len.fetch_add(added.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.len.fetch_sub(added.unsigned_abs(), Ordering::Relaxed);
        }
        if evicted > 0 {
            self.evicted.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Locks `key`'s shard.
    pub(crate) fn lock<'a>(&'a self, key: &'a [u8]) -> DedupGuard<'a> {
        DedupGuard {
            table: self,
            shard: lock(&self.shards[shard_of(key)]),
            key,
        }
    }

    /// Locks the shards of all `keys`, in shard order (so two batches never deadlock).
    pub(crate) fn lock_many(&self, keys: &[&[u8]]) -> DedupMany<'_> {
        let mut idx: Vec<usize> = keys.iter().map(|k| shard_of(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        DedupMany {
            table: self,
            shards: idx
                .into_iter()
                .map(|i| (i, lock(&self.shards[i])))
                .collect(),
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
        let r =
            lock(&self.shards[shard_of(key)]).insert(key, id, expires, window, now, self.per_shard);
        self.account(r);
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

    #[test]
    fn a_key_within_its_window_is_a_duplicate_until_it_expires() {
        let t = DedupTable::new(100);
        let mut g = t.lock(b"k");
        assert_eq!(g.get(0), None);
        g.insert(7, 0, 10 * S);
        assert_eq!(g.get(9 * S), Some(7));
        assert_eq!(g.get(10 * S), None);
        drop(g);
        assert_eq!(t.len(), 1);
        // An insert into the same shard after the expiry purges the expired entry.
        let other = (0u32..)
            .map(|i| i.to_le_bytes().to_vec())
            .find(|k| shard_of(k) == shard_of(b"k"))
            .unwrap();
        t.lock(&other).insert(8, 11 * S, S);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn windows_differ_per_key() {
        let t = DedupTable::new(100);
        t.lock(b"short").insert(1, 0, S);
        t.lock(b"long").insert(2, 0, 100 * S);
        assert_eq!(t.lock(b"short").get(2 * S), None);
        assert_eq!(t.lock(b"long").get(2 * S), Some(2));
    }

    #[test]
    fn the_bound_evicts_the_oldest_expiry_first_and_counts() {
        // One shard's worth: bound 16 over 16 shards = 1 per shard; use keys of one shard.
        let t = DedupTable::new(SHARDS * 2);
        let keys: Vec<Vec<u8>> = (0u32..10_000)
            .map(|i| i.to_le_bytes().to_vec())
            .filter(|k| shard_of(k) == 0)
            .take(3)
            .collect();
        // Expiries: key0 at 50 s (long window), key1 at 20 s, key2 at 30 s.
        t.lock(&keys[0]).insert(1, 0, 50 * S);
        t.lock(&keys[1]).insert(2, 0, 20 * S);
        t.lock(&keys[2]).insert(3, 0, 30 * S);
        assert_eq!(t.evicted(), 1);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.lock(&keys[1]).get(S),
            None,
            "the oldest expiry was evicted"
        );
        assert_eq!(t.lock(&keys[0]).get(S), Some(1));
        assert_eq!(t.lock(&keys[2]).get(S), Some(3));
    }

    #[test]
    fn reinserting_a_key_keeps_the_latest_and_counts_once() {
        let t = DedupTable::new(100);
        t.rebuild_insert(b"k", 1, 0, 10 * S, S);
        t.rebuild_insert(b"k", 5, 2 * S, 10 * S, S);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lock(b"k").get(3 * S), Some(5));
        // Already expired at rebuild time: ignored.
        t.rebuild_insert(b"old", 9, 0, S, 5 * S);
        assert_eq!(t.lock(b"old").get(5 * S), None);
        // The stale FIFO item of the first insert does not evict the live entry.
        t.lock(b"x").insert(6, 11 * S, S);
        assert_eq!(t.lock(b"k").get(11 * S), Some(5));
    }

    #[test]
    fn a_batch_locks_each_shard_once() {
        let t = DedupTable::new(100);
        let keys: Vec<&[u8]> = vec![b"a", b"b", b"a", b"c"];
        let mut m = t.lock_many(&keys);
        assert_eq!(m.get(b"a", 0), None);
        m.insert(b"a", 1, 0, S);
        assert_eq!(m.get(b"a", 0), Some(1));
        drop(m);
        assert_eq!(t.len(), 1);
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
                        let mut g = t.lock(b"same");
                        if g.get(0).is_none() {
                            g.insert(next.fetch_add(1, Ordering::Relaxed), 0, 100 * S);
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
