//! [`Ring`]: the slots, their stamps, and the claim protocol.

use std::fmt;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{fence, AtomicUsize, Ordering};
use crate::sync::{Backoff, UnsafeCell};

/// Stamp state: the slot is empty, ready to be written at the stamp's position.
const FREE: usize = 0b00;
/// Stamp state: the slot holds the value written at the stamp's position.
const FULL: usize = 0b01;
/// Stamp state: the position was claimed by a `push_batch` whose iterator panicked or ended
/// early; the slot holds no value, and the consumer of the position skips it.
const SKIPPED: usize = 0b11;
/// The bit that tells `SKIPPED` from `FULL`; both are "ready for the consumer".
const NO_VALUE: usize = 0b10;
/// Stamps keep the position in their upper bits and the state in the lowest two.
const STATE_BITS: u32 = 2;
/// The state bits of a stamp.
const STATE_MASK: usize = 0b11;
/// The largest capacity: positions are compared modulo `2^(usize::BITS - 2)` inside stamps,
/// and `pos + capacity` must stay distinct from `pos` there, with room to spare.
const MAX_CAPACITY: usize = 1 << (usize::BITS - STATE_BITS - 2);

/// The stamp of position `pos` in `state`. The position's top two bits are shifted out:
/// stamps identify positions modulo `2^(usize::BITS - 2)`, which only a thread stalled for
/// `2^62` operations (on 64-bit) could confuse.
#[inline(always)]
fn stamp(pos: usize, state: usize) -> usize {
    (pos << STATE_BITS) | state
}

/// A slot of the ring.
struct Slot<T> {
    /// The slot's stamp, `stamp(p, state)` for the position `p` it is at (`p & mask` is the
    /// slot's index). Its life over one lap, starting at `stamp(p, FREE)`:
    /// - the producer that claimed `p` (by moving `tail` past it) writes the value and
    ///   stores `stamp(p, FULL)` (or `stamp(p, SKIPPED)` if it had no value to write);
    /// - the consumer that claimed `p` (by moving `head` past it) reads the value and stores
    ///   `stamp(p + capacity, FREE)`, handing the slot to the next lap.
    ///
    /// Only the thread holding the claim of `p` changes the stamp away from a state of `p`.
    stamp: AtomicUsize,
    /// The value: initialized exactly while the stamp is `stamp(p, FULL)` for the slot's
    /// current `p` (and between the producer's write and that store, or between the
    /// consumer's claim and its read).
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded, lock-free multi-producer multi-consumer ring of `T`.
///
/// Values come out in the order their pushes claimed positions (FIFO); each pushed value
/// is popped exactly once; values left in the ring when it is dropped are dropped with it.
/// Share it by reference (`std::thread::scope`) or in an `Arc`.
///
/// # Progress
///
/// Producers and consumers never take a lock; they claim positions with one
/// compare-and-swap, and a failed CAS means another thread made progress. As in
/// `crossbeam_queue::ArrayQueue`, a thread that finds the next position claimed but not yet
/// handed over (a producer between its claim and its write, or a consumer between its claim
/// and its read: a few instructions) waits for it with [`crossbeam_utils::Backoff`] rather
/// than report a full or empty ring that is neither. So [`push`](Ring::push) fails only if
/// the ring was full, and [`pop`](Ring::pop) returns `None` only if it was empty.
///
/// # Examples
///
/// ```
/// use std::thread;
/// use ledgerq_ring::Ring;
///
/// let ring = Ring::with_capacity(64);
/// thread::scope(|s| {
///     s.spawn(|| {
///         for i in 0..1000u32 {
///             let mut v = i;
///             while let Err(back) = ring.push(v) {
///                 v = back;
///                 thread::yield_now();
///             }
///         }
///     });
///     let mut next = 0;
///     while next < 1000 {
///         match ring.pop() {
///             Some(v) => {
///                 assert_eq!(v, next);
///                 next += 1;
///             }
///             None => thread::yield_now(),
///         }
///     }
/// });
/// ```
pub struct Ring<T> {
    /// The next position to read. Moved forward (by CAS) by consumers only; read by all.
    head: CachePadded<AtomicUsize>,
    /// The next position to write. Moved forward (by CAS) by producers only; read by all.
    tail: CachePadded<AtomicUsize>,
    /// The slots; `buffer.len() == capacity`, a power of two.
    buffer: Box<[Slot<T>]>,
    /// `capacity - 1`: `pos & mask` is the index of position `pos`'s slot.
    mask: usize,
}

// SAFETY: the ring owns the values in its slots and nothing else that is tied to a thread;
// sending the ring sends those values, so `T: Send` suffices.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: through `&Ring<T>` values only move in and out by value (no `&T` is ever shared),
// and each slot's value is accessed by one thread at a time: the one holding the claim of
// its position, handed over by the stamp's Release/Acquire. So sharing the ring only moves
// `T`s between threads: `T: Send` suffices, `T: Sync` is not needed.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    /// A ring holding up to `capacity` values, rounded up to a power of two.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or if rounding it up to a power of two overflows `usize` or
    /// exceeds `2^(usize::BITS - 4)` (the stamps need the top bits).
    ///
    /// # Examples
    ///
    /// ```
    /// use ledgerq_ring::Ring;
    ///
    /// assert_eq!(Ring::<u64>::with_capacity(1).capacity(), 1);
    /// assert_eq!(Ring::<u64>::with_capacity(100).capacity(), 128);
    /// ```
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Ring<T> {
        assert!(capacity > 0, "capacity must be non-zero");
        let capacity = capacity
            .checked_next_power_of_two()
            .filter(|&c| c <= MAX_CAPACITY)
            .expect("capacity overflow");
        let buffer = (0..capacity)
            .map(|i| Slot {
                stamp: AtomicUsize::new(stamp(i, FREE)),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            buffer,
            mask: capacity - 1,
        }
    }

    /// How many values the ring holds when full (a power of two).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::<String>::with_capacity(5);
    /// assert_eq!(ring.capacity(), 8);
    /// ```
    #[inline]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    #[inline(always)]
    fn slot(&self, pos: usize) -> &Slot<T> {
        let index = pos & self.mask;
        debug_assert!(index < self.buffer.len());
        // SAFETY: `index <= mask == buffer.len() - 1`.
        unsafe { self.buffer.get_unchecked(index) }
    }

    /// Whether the ring is full at `tail`, given that `tail`'s slot was just seen still
    /// holding (or handing over) the previous lap's position.
    #[inline]
    fn full_at(&self, tail: usize) -> bool {
        // SeqCst fence: pairs with the SeqCst head CAS of consumers: if a consumer's claim
        // precedes this fence in the single total order, the Relaxed load below sees it.
        // So `Err` is reported only if the ring was full at an instant after our stamp
        // load (crossbeam's ArrayQueue reasons the same way).
        fence(Ordering::SeqCst);
        // Relaxed: the fence above orders this load; the value is only compared.
        let head = self.head.load(Ordering::Relaxed);
        head.wrapping_add(self.capacity()) == tail
    }

    /// Whether the ring is empty at `head`, given that `head`'s slot was just seen free for
    /// `head` (nothing written there yet).
    #[inline]
    fn empty_at(&self, head: usize) -> bool {
        // SeqCst fence: pairs with the SeqCst tail CAS of producers, as in `full_at`.
        fence(Ordering::SeqCst);
        // Relaxed: the fence above orders this load; the value is only compared.
        let tail = self.tail.load(Ordering::Relaxed);
        tail == head
    }

    /// Pushes `value`, or hands it back in `Err` if the ring is full.
    ///
    /// `Err` means the ring was full at some instant during the call.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(2);
    /// assert_eq!(ring.push('a'), Ok(()));
    /// assert_eq!(ring.push('b'), Ok(()));
    /// assert_eq!(ring.push('c'), Err('c'));
    /// ```
    #[inline]
    pub fn push(&self, value: T) -> Result<(), T> {
        let backoff = Backoff::new();
        // Relaxed: the tail is only a guess of which position to try; the slot's stamp
        // (Acquire, below) and the CAS decide.
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(tail);
            // Acquire: pairs with the Release stamp store of the consumer that emptied this
            // slot in the previous lap, so its read of the old value happens before our
            // write of the new one.
            let s = slot.stamp.load(Ordering::Acquire);
            if s == stamp(tail, FREE) {
                // SeqCst on success: puts the claim in the total order that the fence in
                // `empty_at` reads from. Relaxed on failure: we only retry with the value.
                match self.tail.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: we hold the claim of `tail` (the CAS moved the tail past
                        // it) and its slot was seen free for `tail`: only the claimant of
                        // `tail` touches the value until the stamp below hands it over.
                        slot.value.with_mut(|v| unsafe { (*v).write(value) });
                        // Release: publishes the value; pairs with the Acquire stamp loads
                        // in `pop` and `pop_batch`.
                        slot.stamp.store(stamp(tail, FULL), Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => {
                        tail = current;
                        backoff.spin();
                    }
                }
            } else if s & !STATE_MASK == stamp(tail.wrapping_sub(self.capacity()), FREE) {
                // The slot still belongs to the previous lap: either the ring is full or a
                // consumer has claimed that position and is reading it.
                if self.full_at(tail) {
                    return Err(value);
                }
                backoff.spin();
                // Relaxed: a guess, as above.
                tail = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer claimed `tail` first: try the current tail.
                backoff.snooze();
                // Relaxed: a guess, as above.
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the oldest value, or `None` if the ring is empty.
    ///
    /// `None` means the ring was empty at some instant during the call.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(2);
    /// assert_eq!(ring.pop(), None::<u8>);
    /// ring.push(7).unwrap();
    /// assert_eq!(ring.pop(), Some(7));
    /// ```
    #[inline]
    pub fn pop(&self) -> Option<T> {
        let backoff = Backoff::new();
        // Relaxed: a guess, as in `push`; the stamp and the CAS decide.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the Release stamp store of the producer of `head`, so its
            // write of the value happens before our read.
            let s = slot.stamp.load(Ordering::Acquire);
            if s & !NO_VALUE == stamp(head, FULL) {
                // SeqCst on success: puts the claim in the total order that the fence in
                // `full_at` reads from. Relaxed on failure: we only retry with the value.
                match self.head.compare_exchange_weak(
                    head,
                    head.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let value = (s == stamp(head, FULL)).then(|| {
                            // SAFETY: we hold the claim of `head` (the CAS moved the head
                            // past it) and its stamp said FULL: the slot holds the value
                            // written at `head`, which nobody else reads, and the stamp
                            // below marks it moved out.
                            slot.value.with(|v| unsafe { (*v).assume_init_read() })
                        });
                        // Release: our read of the value happens before the next lap's
                        // write; pairs with the Acquire stamp loads in `push`/`push_batch`.
                        slot.stamp.store(
                            stamp(head.wrapping_add(self.capacity()), FREE),
                            Ordering::Release,
                        );
                        match value {
                            Some(value) => return Some(value),
                            // A skipped position: go on with the next one.
                            None => head = head.wrapping_add(1),
                        }
                    }
                    Err(current) => {
                        head = current;
                        backoff.spin();
                    }
                }
            } else if s == stamp(head, FREE) {
                // Nothing written at `head` yet: empty, or a producer is writing it.
                if self.empty_at(head) {
                    return None;
                }
                backoff.spin();
                // Relaxed: a guess, as above.
                head = self.head.load(Ordering::Relaxed);
            } else {
                // Another consumer claimed `head` first: try the current head.
                backoff.snooze();
                // Relaxed: a guess, as above.
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Pushes values taken from `values`, in order, until the ring is full or `values` is
    /// exhausted; returns how many were pushed.
    ///
    /// Partial, not all-or-nothing: each round claims the run of consecutive free
    /// positions at the tail (up to the number of values left) with a single
    /// compare-and-swap, once every slot of the run was seen free, then writes the run.
    /// Values of one batch are consecutive in the ring unless other producers win a
    /// round in between. Returns less than `values.len()` only if the ring was full at some
    /// instant during the call. A value is taken from the iterator only when it has a slot,
    /// so passing `&mut iter` keeps the values that did not fit in `iter`; passing an
    /// iterator by value drops them with it.
    ///
    /// If the iterator panics, or yields fewer items than its `len()` said, the positions
    /// claimed for the missing values are marked skipped (consumers pass over them), so the
    /// ring stays consistent; the panic then propagates. A skipped position takes its slot
    /// until a pop passes over it: until then it counts in [`len`](Ring::len) and
    /// [`is_full`](Ring::is_full), and a push that finds the ring full of values and
    /// skipped positions fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(4);
    /// let mut items = vec![1, 2, 3, 4, 5, 6].into_iter();
    /// assert_eq!(ring.push_batch(&mut items), 4);
    /// assert_eq!(items.next(), Some(5));
    /// assert_eq!(ring.pop(), Some(1));
    /// assert_eq!(ring.push_batch([7, 8]), 1);
    /// ```
    pub fn push_batch<I>(&self, values: I) -> usize
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: ExactSizeIterator,
    {
        let mut values = values.into_iter();
        let backoff = Backoff::new();
        let mut pushed = 0;
        loop {
            let want = values.len().min(self.capacity());
            if want == 0 {
                return pushed;
            }
            // Relaxed: a guess, as in `push`; the stamps and the CAS decide.
            let tail = self.tail.load(Ordering::Relaxed);
            // Count the consecutive slots from `tail` that are free for their position.
            let mut free = 0;
            let mut first = 0;
            while free < want {
                let pos = tail.wrapping_add(free);
                // Acquire: pairs with the Release stamp store of the consumer that emptied
                // the slot in the previous lap (as in `push`).
                let s = self.slot(pos).stamp.load(Ordering::Acquire);
                if free == 0 {
                    first = s;
                }
                if s != stamp(pos, FREE) {
                    break;
                }
                free += 1;
            }
            if free == 0 {
                if first & !STATE_MASK == stamp(tail.wrapping_sub(self.capacity()), FREE)
                    && self.full_at(tail)
                {
                    return pushed;
                }
                backoff.snooze();
                continue;
            }
            // SeqCst on success: as in `push`. Relaxed on failure: we start over.
            if self
                .tail
                .compare_exchange_weak(
                    tail,
                    tail.wrapping_add(free),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                backoff.spin();
                continue;
            }
            // We hold the claims of tail..tail+free. Each of their slots was seen free for
            // its position before the CAS; since the tail was still `tail` at the CAS (it
            // only moves forward), no other producer claimed any of them in between, and
            // only the claimant of a position moves its slot on from FREE. So the slots are
            // free and ours. `fill` hands each one over, with a value or as skipped.
            let mut fill = Fill {
                ring: self,
                next: tail,
                end: tail.wrapping_add(free),
            };
            while fill.next != fill.end {
                let Some(value) = values.next() else {
                    // The iterator lied about its length: `fill` skips the rest.
                    return pushed;
                };
                let slot = self.slot(fill.next);
                // SAFETY: we hold the claim of `fill.next` and its slot is free for it (see
                // above): nobody else touches the value until the stamp below hands it over.
                slot.value.with_mut(|v| unsafe { (*v).write(value) });
                // Release: publishes the value; pairs with the Acquire stamp loads in `pop`
                // and `pop_batch`.
                slot.stamp.store(stamp(fill.next, FULL), Ordering::Release);
                fill.next = fill.next.wrapping_add(1);
                pushed += 1;
            }
        }
    }

    /// Pops up to `max` values into `out` (appended, oldest first); returns how many.
    ///
    /// Partial, not all-or-nothing: claims the run of consecutive ready positions at the
    /// head (up to `max`, and up to the capacity) with a single compare-and-swap, once
    /// every slot of the run was seen ready, then moves the values out. Returns fewer than
    /// `max` when fewer values are ready (a run stops at a position whose producer has not
    /// finished writing); returns 0 only if the ring was empty at some instant during the
    /// call (or `max` is 0). `out` is grown before the claim, so it does not reallocate
    /// while slots are held.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(8);
    /// for i in 0..5 {
    ///     ring.push(i).unwrap();
    /// }
    /// let mut out = Vec::new();
    /// assert_eq!(ring.pop_batch(&mut out, 3), 3);
    /// assert_eq!(out, [0, 1, 2]);
    /// assert_eq!(ring.pop_batch(&mut out, 16), 2);
    /// assert_eq!(out, [0, 1, 2, 3, 4]);
    /// ```
    pub fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        let want = max.min(self.capacity());
        if want == 0 {
            return 0;
        }
        // Grow `out` now: a panic while we hold claims would strand their slots.
        out.reserve(want);
        let backoff = Backoff::new();
        loop {
            // Relaxed: a guess, as in `pop`; the stamps and the CAS decide.
            let head = self.head.load(Ordering::Relaxed);
            let mut ready = 0;
            let mut first = 0;
            while ready < want {
                let pos = head.wrapping_add(ready);
                // Acquire: pairs with the Release stamp store of the producer of `pos`, so
                // its write of the value happens before our read (as in `pop`).
                let s = self.slot(pos).stamp.load(Ordering::Acquire);
                if ready == 0 {
                    first = s;
                }
                if s & !NO_VALUE != stamp(pos, FULL) {
                    break;
                }
                ready += 1;
            }
            if ready == 0 {
                if first == stamp(head, FREE) && self.empty_at(head) {
                    return 0;
                }
                backoff.snooze();
                continue;
            }
            // SeqCst on success: as in `pop`. Relaxed on failure: we start over.
            if self
                .head
                .compare_exchange_weak(
                    head,
                    head.wrapping_add(ready),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                backoff.spin();
                continue;
            }
            // We hold the claims of head..head+ready. Each slot was seen ready (FULL or
            // SKIPPED) for its position before the CAS; the head was still `head` at the
            // CAS, so no other consumer claimed them in between, and only the claimant of
            // a position moves its slot on from ready.
            let mut got = 0;
            for i in 0..ready {
                let pos = head.wrapping_add(i);
                let slot = self.slot(pos);
                // Relaxed: we saw this very stamp with Acquire before the claim, and only
                // we can change it now; this re-read only tells FULL from SKIPPED.
                let s = slot.stamp.load(Ordering::Relaxed);
                if s == stamp(pos, FULL) {
                    // SAFETY: we hold the claim of `pos` and its stamp says FULL: the slot
                    // holds the value written at `pos`, which nobody else reads, and the
                    // stamp below marks it moved out.
                    let value = slot.value.with(|v| unsafe { (*v).assume_init_read() });
                    // Cannot reallocate (reserved above), so cannot panic.
                    out.push(value);
                    got += 1;
                }
                // Release: our read happens before the next lap's write; pairs with the
                // Acquire stamp loads in `push`/`push_batch`.
                slot.stamp.store(
                    stamp(pos.wrapping_add(self.capacity()), FREE),
                    Ordering::Release,
                );
            }
            if got > 0 {
                return got;
            }
            // Only skipped positions: look again.
        }
    }

    /// How many values the ring holds.
    ///
    /// Racy: with other threads pushing and popping, the count may be stale as soon as it
    /// is returned. It was the difference between the tail and the head at one instant
    /// during the call (positions claimed but not yet written or read included), and is at
    /// most [`capacity`](Ring::capacity).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(4);
    /// ring.push(1).unwrap();
    /// ring.push(2).unwrap();
    /// assert_eq!(ring.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        loop {
            // SeqCst: the three loads are in the single total order with each other and
            // with the SeqCst claims, so if the tail did not move between the first and
            // the third load, `tail - head` is the length at the instant of the second.
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                return tail.wrapping_sub(head).min(self.capacity());
            }
        }
    }

    /// Whether the ring is empty.
    ///
    /// Racy: an empty ring might cease to be empty at any time, when another thread pushes.
    /// A ring that is not empty can be made empty by other threads popping.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(4);
    /// assert!(ring.is_empty());
    /// ring.push(1).unwrap();
    /// assert!(!ring.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full.
    ///
    /// Racy: a full ring might cease to be full at any time, when another thread pops.
    /// A ring that is not full can be made full by other threads pushing.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(1);
    /// assert!(!ring.is_full());
    /// ring.push(1).unwrap();
    /// assert!(ring.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }
}

/// The claimed positions `next..end` of a `push_batch` that are not yet handed over. On
/// drop (the batch is done, or its iterator panicked or ran short), hands each one over as
/// SKIPPED, so that consumers pass over it and no slot is stranded.
struct Fill<'a, T> {
    ring: &'a Ring<T>,
    next: usize,
    end: usize,
}

impl<T> Drop for Fill<'_, T> {
    fn drop(&mut self) {
        while self.next != self.end {
            // Release: pairs with the consumer's Acquire stamp load, like a FULL stamp
            // (there is no value to publish, but it keeps every hand-over alike).
            self.ring
                .slot(self.next)
                .stamp
                .store(stamp(self.next, SKIPPED), Ordering::Release);
            self.next = self.next.wrapping_add(1);
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` excludes every other access to the indices and stamps.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut pos = head;
        while pos != tail {
            let slot = self.slot(pos);
            // Relaxed: as above.
            let s = slot.stamp.load(Ordering::Relaxed);
            debug_assert!(s == stamp(pos, FULL) || s == stamp(pos, SKIPPED));
            if s == stamp(pos, FULL) {
                // SAFETY: with `&mut self` no operation is in progress, so every position in
                // head..tail was written (or skipped) and not read; FULL says this one holds
                // an initialized value, dropped here once since the ring goes away.
                slot.value.with_mut(|v| unsafe { (*v).assume_init_drop() });
            }
            pos = pos.wrapping_add(1);
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}
