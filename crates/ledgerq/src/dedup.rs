//! The deduplication table (provisional).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

type Shard = HashMap<Vec<u8>, (u64, u64)>;

pub(crate) struct DedupTable {
    shards: Vec<Mutex<Shard>>,
    len: AtomicUsize,
    evicted: AtomicU64,
    per_shard: usize,
}

fn shard_of(key: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (h as usize) % SHARDS
}

pub(crate) struct DedupGuard<'a> {
    t: &'a DedupTable,
    g: MutexGuard<'a, HashMap<Vec<u8>, (u64, u64)>>,
    key: &'a [u8],
}

impl DedupGuard<'_> {
    pub(crate) fn get(&mut self, now: u64) -> Option<u64> {
        match self.g.get(self.key) {
            Some(&(id, exp)) if exp > now => Some(id),
            Some(_) => {
                self.g.remove(self.key);
                self.t.len.fetch_sub(1, Ordering::Relaxed);
                None
            }
            None => None,
        }
    }
    pub(crate) fn insert(&mut self, id: u64, expires: u64) {
        self.t.put(&mut self.g, self.key, id, expires);
    }
}

pub(crate) struct DedupMany<'a> {
    t: &'a DedupTable,
    gs: Vec<(usize, MutexGuard<'a, Shard>)>,
}

impl DedupMany<'_> {
    pub(crate) fn get(&mut self, key: &[u8], now: u64) -> Option<u64> {
        let s = shard_of(key);
        let i = self.gs.iter().position(|(x, _)| *x == s).expect("locked");
        match self.gs[i].1.get(key) {
            Some(&(id, exp)) if exp > now => Some(id),
            _ => None,
        }
    }
    pub(crate) fn insert(&mut self, key: &[u8], id: u64, expires: u64) {
        let t = self.t;
        let s = shard_of(key);
        let i = self.gs.iter().position(|(x, _)| *x == s).expect("locked");
        t.put(&mut self.gs[i].1, key, id, expires);
    }
}

impl DedupTable {
    pub(crate) fn new(max: usize) -> Self {
        DedupTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            per_shard: max.div_ceil(SHARDS).max(1),
        }
    }
    fn put(&self, m: &mut HashMap<Vec<u8>, (u64, u64)>, key: &[u8], id: u64, expires: u64) {
        if m.insert(key.to_vec(), (id, expires)).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        if m.len() > self.per_shard {
            if let Some(k) = m.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| k.clone()) {
                m.remove(&k);
                self.len.fetch_sub(1, Ordering::Relaxed);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    pub(crate) fn lock<'a>(&'a self, key: &'a [u8]) -> DedupGuard<'a> {
        DedupGuard {
            t: self,
            g: self.shards[shard_of(key)]
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            key,
        }
    }
    pub(crate) fn lock_many(&self, keys: &[&[u8]]) -> DedupMany<'_> {
        let mut idx: Vec<usize> = keys.iter().map(|k| shard_of(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        DedupMany {
            t: self,
            gs: idx
                .into_iter()
                .map(|i| (i, self.shards[i].lock().unwrap_or_else(|p| p.into_inner())))
                .collect(),
        }
    }
    pub(crate) fn rebuild_insert(&self, key: &[u8], id: u64, expires: u64, now: u64) {
        if expires <= now {
            return;
        }
        let mut g = self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.put(&mut g, key, id, expires);
    }
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}
