//! A bounded, lock-free multi-producer multi-consumer ring.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>): every
//! slot carries a sequence number (its *stamp*) that says whether the slot is ready to be
//! written or read in the current lap, and producers and consumers claim positions by
//! moving `tail` and `head` with a compare-and-swap. The claim is the exactly-once point:
//! a position is claimed by one thread only, and the stamp hands the slot over.
//!
//! ```
//! use ledgerq_ring::Ring;
//!
//! let ring = Ring::with_capacity(4);
//! ring.push(1).unwrap();
//! ring.push(2).unwrap();
//! assert_eq!(ring.pop(), Some(1));
//! assert_eq!(ring.pop(), Some(2));
//! assert_eq!(ring.pop(), None);
//! ```

mod sync;

use std::fmt;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Backoff, UnsafeCell};

/// A slot of the ring.
struct Slot<T> {
    /// The slot's stamp. For the position `p` that maps to this slot
    /// (`p & mask == index`):
    /// - `stamp == p`: the slot is empty and ready to be written at position `p`;
    /// - `stamp == p + 1`: the slot holds the value written at position `p`, ready to be
    ///   read;
    /// - after the read, the consumer sets `stamp = p + capacity`, ready for the next lap.
    stamp: AtomicUsize,
    /// The value; initialized exactly when `stamp == p + 1` for the slot's current `p`.
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded, lock-free multi-producer multi-consumer ring of `T`.
///
/// Values come out in the order their pushes claimed positions (FIFO); each pushed value
/// is popped exactly once; values left in the ring when it is dropped are dropped with it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use ledgerq_ring::Ring;
///
/// let ring = Arc::new(Ring::with_capacity(64));
/// let producer = {
///     let ring = ring.clone();
///     thread::spawn(move || {
///         for i in 0..1000u32 {
///             let mut v = i;
///             while let Err(back) = ring.push(v) {
///                 v = back;
///                 thread::yield_now();
///             }
///         }
///     })
/// };
/// let mut next = 0;
/// while next < 1000 {
///     if let Some(v) = ring.pop() {
///         assert_eq!(v, next);
///         next += 1;
///     }
/// }
/// producer.join().unwrap();
/// ```
pub struct Ring<T> {
    /// The next position to read. Only moved by consumers (CAS); read by everyone.
    head: CachePadded<AtomicUsize>,
    /// The next position to write. Only moved by producers (CAS); read by everyone.
    tail: CachePadded<AtomicUsize>,
    /// The slots; `buffer.len() == capacity`, a power of two.
    buffer: Box<[Slot<T>]>,
    /// `capacity - 1`.
    mask: usize,
}

// SAFETY: the ring owns its values and hands each to exactly one thread (the claim of a
// position is exclusive), so sending the ring sends `T`s: `T: Send` suffices.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: `&Ring<T>` only moves `T`s in and out by value (never shares a `&T`), and every
// slot access is made exclusive by the position claim and the stamp protocol, so sharing
// the ring across threads only requires that `T` can be sent: `T: Send`.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    /// A ring holding up to `capacity` values, rounded up to a power of two (and to at
    /// least 2: with one slot, a stamp could not tell "full at position `p`" from "free for
    /// position `p + 1`").
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or if rounding it up to a power of two overflows `usize`.
    pub fn with_capacity(capacity: usize) -> Ring<T> {
        assert!(capacity > 0, "capacity must be non-zero");
        let capacity = capacity
            .max(2)
            .checked_next_power_of_two()
            .expect("capacity overflows when rounded up to a power of two");
        let buffer = (0..capacity)
            .map(|i| Slot {
                stamp: AtomicUsize::new(i),
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
    #[inline]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    #[inline]
    fn slot(&self, pos: usize) -> &Slot<T> {
        let index = pos & self.mask;
        debug_assert!(index < self.buffer.len());
        // SAFETY: `index <= mask < buffer.len()`.
        unsafe { self.buffer.get_unchecked(index) }
    }

    /// Pushes `value`, or hands it back in `Err` if the ring is full.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(2);
    /// assert_eq!(ring.push('a'), Ok(()));
    /// assert_eq!(ring.push('b'), Ok(()));
    /// assert_eq!(ring.push('c'), Err('c'));
    /// ```
    pub fn push(&self, value: T) -> Result<(), T> {
        let backoff = Backoff::new();
        // Relaxed: the tail is only a hint for which position to try; the slot's stamp
        // (loaded with Acquire below) is what decides.
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(tail);
            // Acquire: pairs with the Release store of the stamp by the consumer that
            // emptied this slot in the previous lap, so its read of the old value happens
            // before our write.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                // The slot is free for position `tail`: claim the position.
                // Relaxed on success: the claim publishes nothing (the value is published
                // by the stamp's Release store); the Acquire above already ordered us
                // after the slot's previous consumer.
                match self.tail.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: we own position `tail` (the CAS succeeded), and the slot's
                        // stamp says it is empty for this position: no one else reads or
                        // writes the value until we publish it with the stamp below.
                        slot.value.with_mut(|v| unsafe { (*v).write(value) });
                        // Release: publishes the value; pairs with the Acquire stamp load
                        // in `pop`.
                        slot.stamp.store(tail.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(t) => {
                        tail = t;
                        backoff.spin();
                    }
                }
            } else if stamp.wrapping_add(self.capacity()) == tail.wrapping_add(1) {
                // The slot still holds the value of the previous lap: the ring was full
                // when we looked. Check that the head has not moved meanwhile.
                // SeqCst fence: orders the stamp load above before the head load below,
                // so that a full ring is only reported if it was full at one instant.
                // Pairs with the fence in `pop`.
                crate::sync::atomic::fence(Ordering::SeqCst);
                let head = self.head.load(Ordering::Relaxed);
                if head.wrapping_add(self.capacity()) == tail {
                    return Err(value);
                }
                backoff.spin();
                tail = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer claimed this position; try the current tail.
                backoff.snooze();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the oldest value, or `None` if the ring is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(2);
    /// assert_eq!(ring.pop(), None::<u8>);
    /// ring.push(7).unwrap();
    /// assert_eq!(ring.pop(), Some(7));
    /// ```
    pub fn pop(&self) -> Option<T> {
        let backoff = Backoff::new();
        // Relaxed: a hint, as in `push`; the stamp decides.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the Release stamp store in `push`, so the value written
            // at position `head` is visible before we read it.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                // Relaxed: as in `push`, the stamp carries the synchronization.
                match self.head.compare_exchange_weak(
                    head,
                    head.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: we own position `head` (the CAS succeeded) and the stamp
                        // says the slot holds the value written at it; after this read
                        // the stamp below hands the slot to the next lap's producer.
                        let value = slot.value.with(|v| unsafe { (*v).assume_init_read() });
                        // Release: our read of the value happens before the next lap's
                        // write; pairs with the Acquire stamp load in `push`.
                        slot.stamp
                            .store(head.wrapping_add(self.capacity()), Ordering::Release);
                        return Some(value);
                    }
                    Err(h) => {
                        head = h;
                        backoff.spin();
                    }
                }
            } else if stamp == head {
                // The slot is empty for this lap: the ring was empty when we looked.
                // SeqCst fence: pairs with the fence in `push` (see there).
                crate::sync::atomic::fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::Relaxed);
                if tail == head {
                    return None;
                }
                // A producer has claimed the position but not yet published its value.
                // Report empty rather than wait for it: it is not ready yet.
                let latest = self.head.load(Ordering::Relaxed);
                if latest == head {
                    return None;
                }
                backoff.spin();
                head = latest;
            } else {
                // Another consumer took this position; try the current head.
                backoff.snooze();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Pushes values from `values` until the ring is full or the iterator ends; returns
    /// how many were pushed. Positions for the whole run are claimed with one
    /// compare-and-swap, after every slot in it was seen free.
    ///
    /// Partial: on a full ring the values not pushed stay in the iterator (nothing is
    /// taken from it that was not pushed).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = ledgerq_ring::Ring::with_capacity(4);
    /// let mut items = vec![1, 2, 3, 4, 5, 6].into_iter();
    /// assert_eq!(ring.push_batch(&mut items), 4);
    /// assert_eq!(items.next(), Some(5));
    /// ```
    pub fn push_batch<I>(&self, values: &mut I) -> usize
    where
        I: ExactSizeIterator<Item = T>,
    {
        let mut pushed = 0;
        let backoff = Backoff::new();
        while values.len() > 0 {
            // Relaxed: a hint; the stamps decide.
            let tail = self.tail.load(Ordering::Relaxed);
            let want = values.len().min(self.capacity());
            // Count how many consecutive slots from `tail` are free for their position.
            let mut free = 0;
            while free < want {
                let pos = tail.wrapping_add(free);
                // Acquire: pairs with the consumer's Release stamp store (as in `push`).
                if self.slot(pos).stamp.load(Ordering::Acquire) != pos {
                    break;
                }
                free += 1;
            }
            if free == 0 {
                if self.is_full_at(tail) {
                    return pushed;
                }
                backoff.snooze();
                continue;
            }
            // Relaxed: as in `push`; each slot's stamp publishes its value.
            if self
                .tail
                .compare_exchange_weak(
                    tail,
                    tail.wrapping_add(free),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                backoff.spin();
                continue;
            }
            // We own positions tail..tail+free. Each slot was seen free for its position,
            // and a free slot only changes when its position is claimed, which we now hold.
            for i in 0..free {
                let pos = tail.wrapping_add(i);
                let slot = self.slot(pos);
                let value = values
                    .next()
                    .expect("ExactSizeIterator reported more items");
                // SAFETY: position `pos` is ours (the CAS above claimed tail..tail+free)
                // and its slot was seen empty for `pos` before the claim; no one else
                // touches the value until the stamp below publishes it.
                slot.value.with_mut(|v| unsafe { (*v).write(value) });
                // Release: pairs with the Acquire stamp load in `pop`/`pop_batch`.
                slot.stamp.store(pos.wrapping_add(1), Ordering::Release);
            }
            pushed += free;
        }
        pushed
    }

    /// Pops up to `max` values into `out` (appended, oldest first) and returns how many.
    /// Positions for the whole run are claimed with one compare-and-swap, after every slot
    /// in it was seen ready. Partial: returns fewer than `max` (maybe 0) when fewer are
    /// ready.
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
    /// ```
    pub fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        let backoff = Backoff::new();
        let want = max.min(self.capacity());
        if want == 0 {
            return 0;
        }
        loop {
            // Relaxed: a hint; the stamps decide.
            let head = self.head.load(Ordering::Relaxed);
            let mut ready = 0;
            while ready < want {
                let pos = head.wrapping_add(ready);
                // Acquire: pairs with the producer's Release stamp store.
                if self.slot(pos).stamp.load(Ordering::Acquire) != pos.wrapping_add(1) {
                    break;
                }
                ready += 1;
            }
            if ready == 0 {
                // SeqCst fence: as in `pop`.
                crate::sync::atomic::fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::Relaxed);
                let latest = self.head.load(Ordering::Relaxed);
                if tail == head || latest == head {
                    return 0;
                }
                backoff.snooze();
                continue;
            }
            // Relaxed: as in `pop`.
            if self
                .head
                .compare_exchange_weak(
                    head,
                    head.wrapping_add(ready),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                backoff.spin();
                continue;
            }
            out.reserve(ready);
            for i in 0..ready {
                let pos = head.wrapping_add(i);
                let slot = self.slot(pos);
                // SAFETY: position `pos` is ours (the CAS claimed head..head+ready), and
                // its slot was seen holding the value for `pos`; a ready slot only changes
                // when its position is claimed, which we hold.
                let value = slot.value.with(|v| unsafe { (*v).assume_init_read() });
                // Release: pairs with the Acquire stamp load in `push`/`push_batch`.
                slot.stamp
                    .store(pos.wrapping_add(self.capacity()), Ordering::Release);
                out.push(value);
            }
            return ready;
        }
    }

    fn is_full_at(&self, tail: usize) -> bool {
        // SeqCst fence: as in `push`.
        crate::sync::atomic::fence(Ordering::SeqCst);
        let head = self.head.load(Ordering::Relaxed);
        head.wrapping_add(self.capacity()) == tail
    }

    /// How many values the ring holds.
    ///
    /// Racy: with other threads pushing and popping, the value may be stale as soon as it
    /// is returned. It is exact at some instant during the call, and always at most
    /// [`capacity`](Ring::capacity).
    pub fn len(&self) -> usize {
        loop {
            // SeqCst: a consistent snapshot of both indices (retried if the tail moved
            // while we read the head).
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                return tail.wrapping_sub(head).min(self.capacity());
            }
        }
    }

    /// Whether the ring is empty.
    ///
    /// Racy: it might stop being empty at any time. If it is not empty, another thread
    /// can make it empty only by popping.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full.
    ///
    /// Racy: it might stop being full at any time. If it is not full, another thread can
    /// make it full only by pushing.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // We have `&mut self`: no other thread can touch the ring. Drop the values between
        // head and tail, each exactly once.
        // Relaxed: `&mut self` excludes every other access.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut pos = head;
        while pos != tail {
            let slot = self.slot(pos);
            // SAFETY: every position in head..tail was pushed and not popped (no claim is
            // in progress: we have exclusive access), so its slot holds an initialized value
            // that nothing else will read or drop.
            slot.value.with_mut(|v| unsafe { (*v).assume_init_drop() });
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
