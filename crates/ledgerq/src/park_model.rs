//! loom model of the consumer parking protocol of `queue.rs` (blocking park and async
//! wakers share it): a producer commits, issues a SeqCst fence and wakes only if it sees
//! a waiter; a consumer registers as a waiter (SeqCst increment and fence), registers its
//! waker under the wakers' mutex, then tries once more before sleeping. The model checks
//! the absence of lost wake-ups: every consumer that goes to sleep is woken.

#![cfg(all(test, ledgerq_loom))]

use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

struct Park {
    /// The commit (the journal's Release store of a record's commit word).
    committed: AtomicBool,
    waiters: AtomicUsize,
    /// Registered wakers; a waker is modelled as a flag its owner checks.
    wakers: Mutex<Vec<Arc<AtomicBool>>>,
}

impl Park {
    /// `Inner::wake` after a commit.
    fn produce(&self) {
        self.committed.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            for w in std::mem::take(&mut *self.wakers.lock().unwrap()) {
                w.store(true, Ordering::Release);
            }
        }
    }

    /// A `dequeue_async` poll sequence: attempt, count as waiting, register, attempt.
    /// Returns whether the consumer got the message without sleeping, and its waker.
    fn consume(&self) -> (bool, Arc<AtomicBool>) {
        let waker = Arc::new(AtomicBool::new(false));
        if self.committed.load(Ordering::Acquire) {
            return (true, waker);
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.wakers.lock().unwrap().push(waker.clone());
        if self.committed.load(Ordering::Acquire) {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            return (true, waker);
        }
        (false, waker)
    }
}

#[test]
fn loom_models_park_no_lost_wakeup() {
    loom::model(|| {
        let p = Arc::new(Park {
            committed: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            wakers: Mutex::new(Vec::new()),
        });
        let consumer = {
            let p = p.clone();
            thread::spawn(move || p.consume())
        };
        p.produce();
        let (got, waker) = consumer.join().unwrap();
        // Either the consumer saw the commit, or it sleeps and the producer woke it.
        assert!(got || waker.load(Ordering::Acquire), "lost wake-up");
    });
}

#[test]
fn loom_models_park_two_consumers_one_commit() {
    loom::model(|| {
        let p = Arc::new(Park {
            committed: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            wakers: Mutex::new(Vec::new()),
        });
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                thread::spawn(move || p.consume())
            })
            .collect();
        p.produce();
        for c in consumers {
            let (got, waker) = c.join().unwrap();
            assert!(got || waker.load(Ordering::Acquire), "lost wake-up");
        }
    });
}
