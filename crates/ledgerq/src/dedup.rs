//! The deduplication table: key → (original ID, expiry), bounded; O(1) per call when
//! messages share a window, O(log n) at worst whatever the windows.
//!
//! One mutex guards a hash map (key → entry) and an expiry queue holding one item per
//! committed entry, (expiry, generation, key), with the next entry to expire at its
//! front. The queue is two parts ([`Expiries`]): a FIFO for items that arrive in expiry
//! order (at or after the FIFO's last expiry), and a min-heap for the rest. Messages that
//! share a window (the queue's `dedup_window`, the common case) commit in expiry order
//! but for races between producers, so their items go to the FIFO: O(1) per push and pop.
//! An item that would break the FIFO's order (a per-message window shorter than the
//! last one, or a producer that lost a race) goes to the heap at O(log n). The front is
//! the lesser of the two fronts. One FIFO per window would make every call scan all
//! windows, quadratic when each message brings its own; a single heap would make every
//! call O(log n). A key of up to [`INLINE`] bytes is stored inline in the map's bucket
//! and the queue's item (a lookup then touches no memory beyond the bucket); a longer
//! one is shared between map and queue (`Arc<[u8]>`).
//!
//! - Lookup: one map probe. An expired entry met on lookup is replaced (lazily purged).
//! - Purge: every reservation pops at most [`PURGE_BUDGET`] expired or stale items from
//!   the front, so a mass expiry never stalls one producer; each item is pushed once and
//!   popped once.
//! - Bound: over `max_entries` committed entries, the front goes: the entry with the
//!   oldest expiry. An expired one is a purge, a live one an eviction (counted).
//! - Stale items: an entry replaced or removed without popping its item leaves a stale
//!   item behind, recognised by its generation and dropped when it reaches the front; if
//!   stale items ever outnumber live ones (by more than a slack), both parts are rebuilt
//!   from the live entries (O(n), once per at least n inserts: amortised O(1)).
//!
//! The table is one lock, not shards: the bound is exact over the whole table (the key
//! expiring first anywhere is the one evicted), and the critical sections are a hash
//! probe and a FIFO or heap operation, short beside the append they guard.
//!
//! The lock is never held across an append: a producer *reserves* its key (an entry
//! without an ID yet, not in the expiry queue, so never purged nor evicted), appends,
//! then commits the ID. A producer that finds the key reserved by another waits for that
//! commit (and then reports a duplicate of it), or for the reservation's release if
//! that append failed. Only single enqueues wait while holding no reservation; a batch
//! that meets a reserved key releases its own reservations before waiting, so no cycle
//! of waits can form.
//!
//! The table is not persisted: the queue rebuilds it at open from the dedup fields of
//! the records in the window (see `Inner::rebuild_dedup`).

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Most expired or stale expiry items one reservation removes.
const PURGE_BUDGET: usize = 32;

/// Stale expiry items tolerated beyond the live ones before the expiry queue is rebuilt.
const STALE_SLACK: usize = 64;

/// The longest key stored inline (a `Key` is 24 bytes either way).
const INLINE: usize = 22;

/// A tracked key's bytes: inline up to [`INLINE`] bytes, else shared.
#[derive(Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

impl Key {
    fn new(key: &[u8]) -> Key {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..key.len()].copy_from_slice(key);
                Key::Inline { len, bytes }
            }
            _ => Key::Shared(key.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Shared(b) => b,
        }
    }
}

// `Hash` and `Eq` are those of the bytes, as `Borrow<[u8]>` requires, so the map can be
// probed with a `&[u8]`.
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

// Items in the heap order by (expiry, generation) first, and generations are unique, so
// the key's order only has to be a total order.
impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// An expiry item: (expiry ns, generation, key).
type Item = (u64, u64, Key);

/// The expiry queue: items in expiry order in `fifo`, the others in `heap`; the front
/// is the least of both fronts. Ties go to the FIFO, so equal expiries pop in insertion
/// order there.
#[derive(Default)]
struct Expiries {
    /// Non-decreasing expiries, front to back.
    fifo: VecDeque<Item>,
    /// Items that arrived with an expiry below the FIFO's last; least on top.
    heap: BinaryHeap<Reverse<Item>>,
}

impl Expiries {
    fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    fn push(&mut self, item: Item) {
        if self.fifo.back().is_none_or(|b| b.0 <= item.0) {
            self.fifo.push_back(item);
        } else {
            self.heap.push(Reverse(item));
        }
    }

    /// Whether the front is the FIFO's (else the heap's, or there is none).
    fn front_in_fifo(&self) -> bool {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(Reverse(h))) => f.0 <= h.0,
            (f, _) => f.is_some(),
        }
    }

    fn peek(&self) -> Option<&Item> {
        if self.front_in_fifo() {
            self.fifo.front()
        } else {
            self.heap.peek().map(|Reverse(i)| i)
        }
    }

    fn pop(&mut self) -> Option<Item> {
        if self.front_in_fifo() {
            self.fifo.pop_front()
        } else {
            self.heap.pop().map(|Reverse(i)| i)
        }
    }

    /// Keeps the items `keep` says to keep, in both parts (the FIFO stays in order).
    fn retain(&mut self, mut keep: impl FnMut(&Item) -> bool) {
        self.fifo.retain(&mut keep);
        self.heap.retain(|Reverse(i)| keep(i));
    }
}

struct Entry {
    /// `None` while reserved by a producer whose append has not returned.
    id: Option<u64>,
    expires: u64,
    gen: u64,
}

#[derive(Default)]
struct Table {
    map: HashMap<Key, Entry>,
    /// One item per committed entry, plus stale items not yet dropped.
    expiries: Expiries,
    next_gen: u64,
    /// Committed entries (what `len` reports and the bound applies to).
    committed: usize,
    /// Producers waiting on the condition variable for a reservation to end.
    waiters: usize,
    /// Expiry items examined (popped, peeked or kept by a rebuild): the work done.
    #[cfg(test)]
    visits: u64,
}

impl Table {
    fn is_live(map: &HashMap<Key, Entry>, gen: u64, key: &[u8]) -> bool {
        map.get(key).is_some_and(|e| e.gen == gen && e.id.is_some())
    }

    fn take_gen(&mut self) -> u64 {
        let gen = self.next_gen;
        self.next_gen += 1;
        gen
    }

    /// Sets `key`'s entry, replacing any; the shared key.
    fn set(&mut self, key: &[u8], entry: Entry) -> Key {
        let k = match self.map.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Key::new(key),
        };
        let committed = entry.id.is_some();
        if let Some(old) = self.map.insert(k.clone(), entry) {
            if old.id.is_some() {
                // Its expiry item is stale now.
                self.committed -= 1;
            }
        }
        if committed {
            self.committed += 1;
        }
        k
    }

    /// Tracks `key` for `id` until `expires`, replacing any entry.
    fn put_committed(&mut self, key: &[u8], id: u64, expires: u64) {
        let gen = self.take_gen();
        let k = self.set(
            key,
            Entry {
                id: Some(id),
                expires,
                gen,
            },
        );
        self.push(expires, gen, k);
    }

    fn push(&mut self, expires: u64, gen: u64, key: Key) {
        self.expiries.push((expires, gen, key));
        if self.expiries.len() > 2 * self.committed + STALE_SLACK {
            let map = &self.map;
            self.expiries
                .retain(|(_, g, k)| Self::is_live(map, *g, k.as_bytes()));
            #[cfg(test)]
            {
                self.visits += self.expiries.len() as u64;
            }
        }
    }

    /// Removes `key`'s committed entry if it has one (its expiry item goes stale).
    fn remove_committed(&mut self, key: &[u8]) {
        if self.map.get(key).is_some_and(|e| e.id.is_some()) {
            self.map.remove(key);
            self.committed -= 1;
        }
    }

    /// Drops up to `budget` stale or expired items from the front of the expiry queue.
    fn purge_expired(&mut self, now: u64, budget: usize) {
        for _ in 0..budget {
            #[cfg(test)]
            {
                self.visits += 1;
            }
            let Some((expires, gen, key)) = self.expiries.peek() else {
                return;
            };
            if Self::is_live(&self.map, *gen, key.as_bytes()) {
                if *expires > now {
                    return;
                }
                self.map.remove(key.as_bytes());
                self.committed -= 1;
            }
            self.expiries.pop();
        }
    }

    /// Removes the committed entry with the oldest expiry: `Some(true)` if it was still
    /// live at `now` (an eviction), `Some(false)` if expired, `None` if there is none.
    fn remove_oldest(&mut self, now: u64) -> Option<bool> {
        while let Some((expires, gen, key)) = self.expiries.pop() {
            #[cfg(test)]
            {
                self.visits += 1;
            }
            if Self::is_live(&self.map, gen, key.as_bytes()) {
                self.map.remove(key.as_bytes());
                self.committed -= 1;
                return Some(expires > now);
            }
        }
        None
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
    key: Key,
    gen: u64,
    /// When the reservation was made (ns).
    now: u64,
    expires: u64,
    done: bool,
}

impl Reservation<'_> {
    /// The append succeeded with `id`: the key now maps to it.
    pub(crate) fn commit(mut self, id: u64) {
        self.done = true;
        let t = self.table;
        let mut g = t.lock();
        let mine = match g.map.get_mut(self.key.as_bytes()) {
            Some(e) if e.gen == self.gen && e.id.is_none() => {
                e.id = Some(id);
                true
            }
            _ => false,
        };
        if mine {
            g.committed += 1;
            let key = self.key.clone();
            g.push(self.expires, self.gen, key);
        } else {
            // Gone meanwhile (cannot happen while reserved): track it anew.
            g.put_committed(self.key.as_bytes(), id, self.expires);
        }
        t.enforce_bound(&mut g, self.now);
        t.publish(&g);
        t.wake(g);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let t = self.table;
        let mut g = t.lock();
        if g.map
            .get(self.key.as_bytes())
            .is_some_and(|e| e.gen == self.gen)
        {
            // Reserved entries have no expiry item: nothing else to undo.
            g.map.remove(self.key.as_bytes());
        }
        t.wake(g);
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

    /// Removes oldest-expiry entries until the bound holds; live ones count as evicted.
    fn enforce_bound(&self, g: &mut Table, now: u64) {
        while g.committed > self.max {
            match g.remove_oldest(now) {
                Some(true) => {
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                Some(false) => {}
                None => break,
            }
        }
    }

    fn publish(&self, g: &Table) {
        self.len.store(g.committed, Ordering::Relaxed);
    }

    /// Releases the lock and wakes the producers waiting for a reservation, if any. A
    /// waiter counts itself in `waiters` under the lock before it waits, after checking
    /// its key under the same lock, so one that is not counted yet will see this change
    /// when it checks: skipping the notification then loses nothing (and saves the
    /// `futex` call a notification makes even with nobody waiting).
    fn wake(&self, g: MutexGuard<'_, Table>) {
        let waiting = g.waiters > 0;
        drop(g);
        if waiting {
            self.cv.notify_all();
        }
    }

    /// Waits on the condition variable, counted in `waiters`.
    fn wait<'a>(&self, mut g: MutexGuard<'a, Table>) -> MutexGuard<'a, Table> {
        g.waiters += 1;
        let mut g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        g.waiters -= 1;
        g
    }

    /// Looks `key` up at `now` (ns): a duplicate of a tracked key, or a reservation for
    /// `window` ns. Waits while another producer holds the key's reservation.
    pub(crate) fn begin(&self, key: &[u8], now: u64, window: u64) -> Begin<'_> {
        let mut g = self.lock();
        loop {
            match g.map.get(key) {
                Some(e) if e.id.is_none() => g = self.wait(g),
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
            g = self.wait(g);
        }
    }

    /// Reserves `key` (untracked or expired at `now`) for `window` ns.
    fn reserve(&self, g: &mut Table, key: &[u8], now: u64, window: u64) -> Reservation<'_> {
        g.purge_expired(now, PURGE_BUDGET);
        let expires = now.saturating_add(window);
        let gen = g.take_gen();
        let key = g.set(
            key,
            Entry {
                id: None,
                expires,
                gen,
            },
        );
        self.publish(g);
        Reservation {
            table: self,
            key,
            gen,
            now,
            expires,
            done: false,
        }
    }

    /// Rebuild at open: tracks `key` for message `id` (enqueued at `enqueued`, ns) for
    /// `window` ns, unless already expired at `now`. Records come in ID order, so a key
    /// seen twice keeps its latest ID, and an expired record of a key also ends the
    /// tracking of an earlier one (which it superseded when it was written).
    pub(crate) fn rebuild_insert(&self, key: &[u8], id: u64, enqueued: u64, window: u64, now: u64) {
        let expires = enqueued.saturating_add(window);
        let mut g = self.lock();
        if expires <= now {
            g.remove_committed(key);
        } else {
            g.put_committed(key, id, expires);
        }
        g.purge_expired(now, PURGE_BUDGET);
        self.enforce_bound(&mut g, now);
        self.publish(&g);
    }

    /// Keys tracked (expired ones not yet purged included).
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
    fn inline_and_shared_keys_are_told_apart_by_their_bytes() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        let t = DedupTable::new(100);
        let long = [7u8; INLINE + 1];
        let edge = [7u8; INLINE];
        let keys: [&[u8]; 6] = [b"", b"a", b"a\0", &edge, &long, b"order-123"];
        for (i, k) in keys.iter().enumerate() {
            add(&t, k, i as u64, 0, S);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(dup(&t, k, 1), Some(i as u64), "{k:?}");
        }
        assert!(matches!(Key::new(&edge), Key::Inline { .. }));
        assert!(matches!(Key::new(&long), Key::Shared(_)));
        assert_eq!(dup(&t, b"a\0\0", 1), None);
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
    fn rebuild_lets_an_expired_later_record_end_an_earlier_one() {
        // k was evicted live, then enqueued again with a short window that has ended:
        // the earlier record's longer window no longer applies.
        let t = DedupTable::new(100);
        t.rebuild_insert(b"k", 1, 0, 100 * S, 20 * S);
        assert_eq!(t.len(), 1);
        t.rebuild_insert(b"k", 2, 10 * S, S, 20 * S);
        assert_eq!(t.len(), 0);
        assert_eq!(dup(&t, b"k", 20 * S), None);
    }

    #[test]
    fn expired_entries_make_room_without_counting_as_evicted() {
        let t = DedupTable::new(3);
        for (i, k) in [b"a", b"b", b"c"].iter().enumerate() {
            add(&t, *k, i as u64, 0, S);
        }
        // All three have expired: the next keys replace them, evicting none.
        add(&t, b"d", 3, 2 * S, 10 * S);
        add(&t, b"e", 4, 2 * S, 10 * S);
        assert_eq!((t.len(), t.evicted()), (2, 0));
        assert_eq!(dup(&t, b"d", 3 * S), Some(3));
    }

    #[test]
    fn a_mass_expiry_is_purged_a_bounded_amount_per_call() {
        let t = DedupTable::new(100_000);
        for i in 0..1000u64 {
            add(&t, &i.to_le_bytes(), i, 0, S);
        }
        assert_eq!(t.len(), 1000);
        // One reservation after all have expired does bounded work...
        let before = t.lock().visits;
        add(&t, b"late", 1000, 2 * S, S);
        let visits = t.lock().visits - before;
        assert!(
            visits <= PURGE_BUDGET as u64,
            "{visits} expiry items visited"
        );
        assert_eq!(t.len(), 1001 - PURGE_BUDGET);
        // ...and the following ones finish the purge.
        for i in 0..1000u64 {
            add(&t, &(10_000 + i).to_le_bytes(), i, 2 * S, S);
        }
        assert_eq!(t.len(), 1001);
        assert!(t.lock().expiries.len() <= 1001 + PURGE_BUDGET);
    }

    /// Every message with its own window: the work per insert stays constant (a table
    /// scanning one list per window would visit O(n) items per insert here).
    #[test]
    fn distinct_windows_cost_constant_work_per_insert() {
        let n = 20_000u64;
        let t = DedupTable::new(1000);
        for i in 0..n {
            // One insert per ms, each with its own window (1 s plus i µs): entries
            // expire and are evicted along the way.
            add(&t, &i.to_le_bytes(), i, i * S / 1000, S + i * 1000);
        }
        let g = t.lock();
        assert!(g.visits <= 3 * n, "{} expiry items visited", g.visits);
        assert!(g.committed <= 1000);
        assert!(g.expiries.len() <= 2 * g.committed + STALE_SLACK);
    }

    #[test]
    fn stale_expiry_items_stay_bounded() {
        // Replacing the same keys again and again at rebuild leaves a stale expiry item
        // each time; the queue is rebuilt before they outnumber the live ones.
        let t = DedupTable::new(100);
        for round in 0..1000u64 {
            for k in 0..10u64 {
                t.rebuild_insert(&k.to_le_bytes(), round, round, 1 << 40, 1);
            }
        }
        let g = t.lock();
        assert_eq!(g.committed, 10);
        assert!(
            g.expiries.len() <= 2 * 10 + STALE_SLACK,
            "{}",
            g.expiries.len()
        );
        drop(g);
        assert_eq!(dup(&t, &3u64.to_le_bytes(), 2), Some(999));
    }

    /// One window for every message (the common case): every item goes through the
    /// FIFO, none through the heap, so each insert, purge and eviction is O(1).
    #[test]
    fn a_shared_window_never_uses_the_heap() {
        let t = DedupTable::new(1000);
        for i in 0..20_000u64 {
            add(&t, &i.to_le_bytes(), i, i * S / 1000, S);
        }
        let g = t.lock();
        assert!(
            g.expiries.heap.is_empty(),
            "{} in the heap",
            g.expiries.heap.len()
        );
        assert!(g.committed <= 1000);
        drop(g);
        // Entries still expire and are evicted in expiry order.
        assert_eq!(dup(&t, &19_999u64.to_le_bytes(), 20 * S), Some(19_999));
        assert_eq!(dup(&t, &18_000u64.to_le_bytes(), 20 * S), None);
    }

    /// Windows that go up and down: evictions still take the oldest expiry, whichever
    /// part of the expiry queue holds it (checked against a brute-force model).
    #[test]
    fn mixed_windows_evict_the_oldest_expiry_first() {
        let max = 64;
        let t = DedupTable::new(max);
        let mut model: Vec<(u64, u64)> = Vec::new(); // (expiry, key)
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..5_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let window = S + (x % 1000) * (S / 100);
            let now = i * 1000; // far below every window: nothing expires
            add(&t, &i.to_le_bytes(), i, now, window);
            model.push((now + window, i));
            if model.len() > max {
                let oldest = (0..model.len()).min_by_key(|&j| model[j]).unwrap_or(0);
                model.swap_remove(oldest);
            }
        }
        let mut live: Vec<u64> = (0..5_000u64)
            .filter(|i| dup(&t, &i.to_le_bytes(), 0).is_some())
            .collect();
        live.sort_unstable();
        let mut want: Vec<u64> = model.iter().map(|&(_, k)| k).collect();
        want.sort_unstable();
        assert_eq!(live, want);
        let g = t.lock();
        assert!(!g.expiries.heap.is_empty() && !g.expiries.fifo.is_empty());
    }

    #[test]
    fn a_released_reservation_wakes_a_producer_waiting_for_the_key() {
        let t = DedupTable::new(10);
        let r = match t.begin(b"k", 0, S) {
            Begin::Reserved(r) => r,
            Begin::Duplicate(_) => unreachable!(),
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| matches!(t.begin(b"k", 0, S), Begin::Reserved(_)));
            while t.lock().waiters == 0 {
                std::thread::yield_now();
            }
            drop(r); // the append failed: the waiter must get the key
            assert!(waiter.join().unwrap_or(false));
        });
        assert_eq!(t.lock().waiters, 0);
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
