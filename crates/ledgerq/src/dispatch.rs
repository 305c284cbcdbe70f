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
pub(crate) struct Dispatch<S, T> {
    ring: Ring<T>,
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
        Dispatch {
            ring: Ring::with_capacity(capacity),
            feeder: Mutex::new(Feeder {
                source,
                stash: None,
            }),
        }
    }

    /// The ring's capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Handles waiting in the ring (racy).
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Pops the next handle, feeding the ring from the source if it is empty.
    /// `Ok(None)` means the source had nothing committed beyond what was delivered.
    pub(crate) fn pop<E>(&self, fill: &impl Fill<S, T, E>) -> Result<Option<T>, E> {
        if let Some(x) = self.ring.pop() {
            if self.ring.len() < self.ring.capacity() / 4 {
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
        if let Some(x) = self.ring.pop() {
            return Ok(Some(x));
        }
        self.feed(&mut f, fill)?;
        Ok(self.ring.pop())
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
        if self.ring.pop_batch(out, max) > 0 {
            return None;
        }
        let mut f = self.feeder.lock().unwrap_or_else(|p| p.into_inner());
        // Only the feeder role pushes: with it held, an empty pop means an empty ring.
        if self.ring.pop_batch(out, max) > 0 {
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
        while self.ring.pop().is_some() {}
        f(&mut g.source)
    }

    fn feed<E>(&self, f: &mut Feeder<S, T>, fill: &impl Fill<S, T, E>) -> Result<(), E> {
        if let Some(x) = f.stash.take() {
            if let Err(x) = self.ring.push(x) {
                f.stash = Some(x);
                return Ok(());
            }
        }
        let room = self.ring.capacity().saturating_sub(self.ring.len());
        if room == 0 {
            return Ok(());
        }
        let ring = &self.ring;
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
