//! The feeder/consumer hand-off: a ring of handles refilled, in ID order, by whichever
//! consumer holds the feeder role.
//!
//! Protocol:
//! - Only the holder of the `feeder` mutex pushes into the ring, so handles enter the ring
//!   in the order the feeder reads them (ID order).
//! - Consumers pop the ring; the ring's claim is the exactly-once point.
//! - A consumer that finds the ring empty takes the feeder role *blocking*: the holder only
//!   moves handles, and waiting for it is what keeps `pop` from reporting "nothing ready"
//!   while committed records are still being moved. Once it holds the role it pops again
//!   (the previous holder may have fed) before feeding.
//! - A consumer that finds the ring low after a successful pop tops it up with `try_lock`,
//!   never waiting.
//! - A handle the ring refuses (full) is kept by the feeder state and pushed first next
//!   time, so the source never loses one.

use std::sync::OnceLock;

use ledgerq_ring::Ring;

use crate::sync::Mutex;

/// What the feeder role owns: a source of handles in order, and the handle the ring
/// refused last time.
pub(crate) struct Feeder<S, T> {
    /// The source's own state (for the queue: the journal cursor).
    pub(crate) source: S,
    stash: Option<T>,
}

/// The ring and the feeder role.
///
/// The ring is allocated by the first feed (under the feeder role, so never by two
/// threads at once): a queue that is only written to, or only peeked at, never pays
/// for its slots (24 KiB to 32 KiB of memory at the default capacity). Before that,
/// every pop finds it empty, which it is.
pub(crate) struct Dispatch<S, T> {
    ring: OnceLock<Ring<T>>,
    /// The ring's capacity (a power of two), known before it exists.
    capacity: usize,
    feeder: Mutex<Feeder<S, T>>,
}

/// How a feeder reads its source: `fill(source, room, push)` calls `push` for each next
/// handle in order, at most `room` times, stopping early when `push` returns `false`
/// (the ring refused the handle, which the dispatcher then keeps).
pub(crate) trait Fill<S, T, E> {
    fn fill(&self, source: &mut S, room: usize, push: &mut dyn FnMut(T) -> bool) -> Result<(), E>;
}

impl<S, T: Copy, E, F> Fill<S, T, E> for F
where
    F: Fn(&mut S, usize, &mut dyn FnMut(T) -> bool) -> Result<(), E>,
{
    fn fill(&self, source: &mut S, room: usize, push: &mut dyn FnMut(T) -> bool) -> Result<(), E> {
        self(source, room, push)
    }
}

impl<S, T: Copy> Dispatch<S, T> {
    /// A dispatcher with a ring of `capacity` (rounded up to a power of two).
    pub(crate) fn new(capacity: usize, source: S) -> Self {
        let ring = OnceLock::new();
        // Under loom the ring exists from the start: the models check the hand-off,
        // and `OnceLock` is not one of loom's primitives.
        #[cfg(ledgerq_loom)]
        let _ = ring.set(Ring::with_capacity(capacity));
        Dispatch {
            ring,
            capacity: capacity
                .checked_next_power_of_two()
                .expect("capacity overflow"),
            feeder: Mutex::new(Feeder {
                source,
                stash: None,
            }),
        }
    }

    /// The ring's capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Handles waiting in the ring (racy).
    pub(crate) fn len(&self) -> usize {
        self.ring.get().map_or(0, Ring::len)
    }

    /// Pops a handle; none before the first feed allocated the ring.
    #[inline]
    fn ring_pop(&self) -> Option<T> {
        // `OnceLock::get` is an Acquire load, paired with the Release of the feeder's
        // `get_or_init`: a ring seen here is fully built.
        self.ring.get().and_then(Ring::pop)
    }

    /// The ring, allocated by the first feed (callers hold the feeder role).
    fn ring_for_feeder(&self) -> &Ring<T> {
        self.ring.get_or_init(|| Ring::with_capacity(self.capacity))
    }

    /// Pops the next handle, feeding the ring from the source if it is empty.
    /// `Ok(None)` means the source had nothing committed beyond what was delivered.
    pub(crate) fn pop<E>(&self, fill: &impl Fill<S, T, E>) -> Result<Option<T>, E> {
        if let Some(x) = self.ring_pop() {
            if self.len() < self.capacity / 4 {
                if let Ok(mut f) = self.feeder.try_lock() {
                    // `x` is already claimed and must reach the caller: a feed error here
                    // is not returned (that would drop `x`); the source reports it again
                    // when a consumer finds the ring empty.
                    let _ = self.feed(&mut f, fill);
                }
            }
            return Ok(Some(x));
        }
        let mut f = self.feeder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(x) = self.ring_pop() {
            return Ok(Some(x));
        }
        self.feed(&mut f, fill)?;
        Ok(self.ring_pop())
    }

    /// With the feeder role held: pops up to `max` handles waiting in the ring (or the
    /// stash) into `out` and returns `None`; if there are none, runs `take` on the
    /// source instead and returns its result. Nothing older than what the source
    /// holds is then waiting, and nothing is fed while the role is held, so the caller
    /// may take records from the source directly, in order, without the ring.
    pub(crate) fn pop_or_take<R>(
        &self,
        out: &mut Vec<T>,
        max: usize,
        take: impl FnOnce(&mut S) -> R,
    ) -> Option<R> {
        let pop_batch = |out: &mut Vec<T>| self.ring.get().map_or(0, |r| r.pop_batch(out, max));
        if pop_batch(out) > 0 {
            return None;
        }
        let mut f = self.feeder.lock().unwrap_or_else(|p| p.into_inner());
        // Only the feeder role pushes: with it held, an empty pop means an empty ring.
        if pop_batch(out) > 0 {
            return None;
        }
        if let Some(x) = f.stash.take() {
            out.push(x);
            return None;
        }
        Some(take(&mut f.source))
    }

    /// Holding the feeder role (so nothing is fed meanwhile), drops every handle in the
    /// ring and the stash and lets `f` reposition the source (seek). Handles that
    /// consumers popped before are theirs.
    pub(crate) fn reset<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        let mut g = self.feeder.lock().unwrap_or_else(|p| p.into_inner());
        g.stash = None;
        while self.ring_pop().is_some() {}
        f(&mut g.source)
    }

    fn feed<E>(&self, f: &mut Feeder<S, T>, fill: &impl Fill<S, T, E>) -> Result<(), E> {
        let ring = self.ring_for_feeder();
        if let Some(x) = f.stash.take() {
            if let Err(x) = ring.push(x) {
                f.stash = Some(x);
                return Ok(());
            }
        }
        let room = ring.capacity().saturating_sub(ring.len());
        if room == 0 {
            return Ok(());
        }
        let stash = &mut f.stash;
        fill.fill(&mut f.source, room, &mut |x| match ring.push(x) {
            Ok(()) => true,
            Err(x) => {
                *stash = Some(x);
                false
            }
        })
    }
}

#[cfg(all(test, ledgerq_loom))]
mod loom_models {
    //! The hand-off under loom: a producer commits records (a counter), two consumers pop
    //! with the feeder role contended; every committed record is delivered exactly once.
    use super::*;
    use crate::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    /// Records committed by the producer.
    const N: usize = 3;

    struct Source {
        next: usize,
    }

    /// The feeder's fill: pushes the committed records from `s.next` on, at most `room`.
    fn filler(
        committed: Arc<AtomicUsize>,
    ) -> impl Fn(&mut Source, usize, &mut dyn FnMut(usize) -> bool) -> Result<(), ()> + Clone {
        move |s, room, push| {
            // Acquire pairs with the producer's Release increment.
            let upto = committed.load(Ordering::Acquire);
            let mut n = 0;
            while s.next < upto && n < room {
                let x = s.next;
                s.next += 1;
                // A refused record is kept in the dispatcher's stash.
                if !push(x) {
                    break;
                }
                n += 1;
            }
            Ok(())
        }
    }

    /// Commits `N` records, one at a time.
    fn producer(committed: Arc<AtomicUsize>) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            for _ in 0..N {
                // Release pairs with the Acquire loads of the fill and the direct take.
                committed.fetch_add(1, Ordering::Release);
            }
        })
    }

    /// A consumer that pops twice (feeding the ring when it is empty).
    fn popper(
        d: Arc<Dispatch<Source, usize>>,
        fill: impl Fill<Source, usize, ()> + Send + 'static,
    ) -> thread::JoinHandle<Vec<usize>> {
        thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                if let Some(x) = d.pop(&fill).unwrap() {
                    got.push(x);
                }
            }
            got
        })
    }

    /// Joins the consumers (each must have seen increasing records), drains what is
    /// left, and checks every committed record was delivered exactly once and that
    /// nothing older than a delivered record was left behind.
    fn check(
        d: &Dispatch<Source, usize>,
        fill: &impl Fill<Source, usize, ()>,
        consumers: Vec<thread::JoinHandle<Vec<usize>>>,
    ) {
        let mut all: Vec<usize> = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            all.extend(got);
        }
        let newest = all.iter().copied().max();
        while let Some(x) = d.pop(fill).unwrap() {
            assert!(newest.is_none_or(|n| x > n), "{x} left behind {newest:?}");
            all.push(x);
        }
        all.sort_unstable();
        assert_eq!(all, (0..N).collect::<Vec<_>>());
    }

    #[test]
    fn loom_models_feeder_handoff_exactly_once() {
        loom::model(|| {
            let committed = Arc::new(AtomicUsize::new(0));
            let d = Arc::new(Dispatch::<Source, usize>::new(2, Source { next: 0 }));
            let fill = filler(committed.clone());
            let producer = producer(committed);
            let consumers = vec![
                popper(d.clone(), fill.clone()),
                popper(d.clone(), fill.clone()),
            ];
            producer.join().unwrap();
            check(&d, &fill, consumers);
        });
    }

    /// One consumer pops (feeding the ring), the other takes records straight from
    /// the source when the ring is empty (`pop_or_take`, the batch path): still every
    /// committed record exactly once, each consumer in order, nothing left behind.
    #[test]
    fn loom_models_direct_take_exactly_once() {
        loom::model(|| {
            let committed = Arc::new(AtomicUsize::new(0));
            let d = Arc::new(Dispatch::<Source, usize>::new(2, Source { next: 0 }));
            let fill = filler(committed.clone());
            let producer = producer(committed.clone());
            let taker = {
                let d = d.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        let mut popped = Vec::new();
                        let taken = d.pop_or_take(&mut popped, 2, |s: &mut Source| {
                            // Acquire pairs with the producer's Release increment.
                            let upto = committed.load(Ordering::Acquire);
                            let mut direct = Vec::new();
                            while s.next < upto && direct.len() < 2 {
                                direct.push(s.next);
                                s.next += 1;
                            }
                            direct
                        });
                        got.extend(popped);
                        got.extend(taken.unwrap_or_default());
                    }
                    got
                })
            };
            let consumers = vec![popper(d.clone(), fill.clone()), taker];
            producer.join().unwrap();
            check(&d, &fill, consumers);
        });
    }
}

#[cfg(all(test, not(ledgerq_loom)))]
mod tests {
    use super::*;

    /// Feeds `0..upto` from `s.0`, at most `room` at a time.
    fn fill(
        upto: usize,
    ) -> impl Fn(&mut (usize,), usize, &mut dyn FnMut(usize) -> bool) -> Result<(), ()> {
        move |s, room, push| {
            let mut n = 0;
            while s.0 < upto && n < room {
                let x = s.0;
                s.0 += 1;
                // A refused handle is kept in the dispatcher's stash.
                if !push(x) {
                    break;
                }
                n += 1;
            }
            Ok(())
        }
    }

    #[test]
    fn the_ring_is_allocated_by_the_first_feed_and_delivers_in_order() {
        let d: Dispatch<(usize,), usize> = Dispatch::new(3, (0,));
        assert_eq!(d.capacity(), 4);
        assert_eq!(d.len(), 0);
        assert!(d.ring.get().is_none(), "no ring before anything was fed");
        // A batch pop with nothing fed takes from the source directly: still no ring.
        let mut out = Vec::new();
        assert_eq!(d.pop_or_take(&mut out, 8, |s| s.0), Some(0));
        assert!(d.ring.get().is_none());
        d.reset(|_| ());
        assert!(d.ring.get().is_none());
        let f = fill(10);
        let mut got = Vec::new();
        while let Some(x) = d.pop(&f).unwrap() {
            got.push(x);
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(d.ring.get().map(Ring::capacity), Some(4));
        // Fed again after a reset, from where the source was moved.
        let f = fill(12);
        d.reset(|s| s.0 = 11);
        assert_eq!(d.pop(&f).unwrap(), Some(11));
        assert_eq!(d.pop(&f).unwrap(), None);
    }
}
