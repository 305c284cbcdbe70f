//! Shared helpers for the LedgerQ benchmarks.

/// The ring workload shared by the `ring` criterion bench and the `ring-ab` harness:
/// values moved from producers to consumers through `Ring<T>` or
/// `crossbeam_queue::ArrayQueue<T>`.
pub mod ring {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Barrier;
    use std::thread;
    use std::time::{Duration, Instant};

    use crossbeam_queue::ArrayQueue;
    use crossbeam_utils::Backoff;
    use ledgerq_ring::Ring;

    /// The capacity of every benchmarked queue.
    pub const CAPACITY: usize = 1024;
    /// Values moved per run.
    pub const PER_RUN: u64 = 200_000;
    /// How many values a consumer takes before it adds them to the shared count.
    const COUNT_EVERY: u64 = 64;

    /// The operations a benchmarked queue offers.
    pub trait Q<T>: Sync {
        /// Pushes up to `n` values made by `make`; how many it pushed.
        fn push_n(&self, make: &mut dyn FnMut() -> T, n: usize) -> usize;
        /// Pops up to `n` values into `out`; how many it popped.
        fn pop_n(&self, out: &mut Vec<T>, n: usize) -> usize;
    }

    impl<T: Send> Q<T> for Ring<T> {
        fn push_n(&self, make: &mut dyn FnMut() -> T, n: usize) -> usize {
            if n == 1 {
                let v = make();
                return usize::from(self.push(v).is_ok());
            }
            // Values are made only for the slots the batch claims.
            self.push_batch((0..n).map(|_| make()))
        }

        fn pop_n(&self, out: &mut Vec<T>, n: usize) -> usize {
            if n == 1 {
                return self.pop().map(|v| out.push(v)).map_or(0, |_| 1);
            }
            self.pop_batch(out, n)
        }
    }

    impl<T: Send> Q<T> for ArrayQueue<T> {
        fn push_n(&self, make: &mut dyn FnMut() -> T, n: usize) -> usize {
            for i in 0..n {
                if self.push(make()).is_err() {
                    return i;
                }
            }
            n
        }

        fn pop_n(&self, out: &mut Vec<T>, n: usize) -> usize {
            for i in 0..n {
                match self.pop() {
                    Some(v) => out.push(v),
                    None => return i,
                }
            }
            n
        }
    }

    /// Moves `PER_RUN` values from `p` producers to `c` consumers in batches of `batch`; the
    /// time runs from the barrier until every thread is done. A thread that finds the queue
    /// full or empty backs off (`Backoff::snooze`, which yields), the same for both queues:
    /// the machine may have fewer cores than threads.
    pub fn run<T: Send, F: Fn() -> T + Sync>(
        q: &dyn Q<T>,
        p: usize,
        c: usize,
        batch: usize,
        make: F,
    ) -> Duration {
        let per = PER_RUN / p as u64;
        let total = per * p as u64;
        let taken = AtomicU64::new(0);
        let barrier = Barrier::new(p + c + 1);
        thread::scope(|s| {
            let mut threads = Vec::with_capacity(p + c);
            for _ in 0..p {
                threads.push(s.spawn(|| {
                    barrier.wait();
                    let backoff = Backoff::new();
                    let mut left = per as usize;
                    let mut make = || make();
                    while left > 0 {
                        let n = q.push_n(&mut make, batch.min(left));
                        if n == 0 {
                            backoff.snooze();
                        } else {
                            backoff.reset();
                        }
                        left -= n;
                    }
                }));
            }
            for _ in 0..c {
                threads.push(s.spawn(|| {
                    barrier.wait();
                    let backoff = Backoff::new();
                    let mut out = Vec::with_capacity(batch);
                    // Counted locally and added to the shared count every `COUNT_EVERY`
                    // values and whenever the queue is found empty, so that the shared
                    // counter does not bounce between the consumers on every value (it
                    // would cost more than a single-value operation of either queue).
                    let mut mine = 0u64;
                    while taken.load(Ordering::Relaxed) < total {
                        out.clear();
                        let n = q.pop_n(&mut out, batch);
                        if n == 0 {
                            if mine > 0 {
                                taken.fetch_add(mine, Ordering::Relaxed);
                                mine = 0;
                            }
                            backoff.snooze();
                        } else {
                            backoff.reset();
                            std::hint::black_box(&mut out);
                            mine += n as u64;
                            if mine >= COUNT_EVERY {
                                taken.fetch_add(mine, Ordering::Relaxed);
                                mine = 0;
                            }
                        }
                    }
                }));
            }
            barrier.wait();
            let start = Instant::now();
            for t in threads {
                t.join().unwrap();
            }
            start.elapsed()
        })
    }
}
