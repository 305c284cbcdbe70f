//! Read-only inspection beside a live owner whose compaction removes consumed segments
//! while the inspector reads: `Inspector` and `verify` see a consistent journal (the
//! segments that are left) and never fail because a file they listed is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ledgerq::inspect::Inspector;
use ledgerq::{Options, Queue};

#[test]
fn inspection_beside_an_owner_that_compacts_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .segment_size(64 << 10)
            .compaction_interval(Duration::from_millis(1)),
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    let mut failures = Vec::new();
    let mut rounds = 0;
    thread::scope(|s| {
        s.spawn(|| {
            let payload = [7u8; 300];
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..200 {
                    q.enqueue(payload).unwrap();
                }
                while q.dequeue().unwrap().is_some() {}
            }
        });
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            rounds += 1;
            let inspected = Inspector::open(dir.path()).and_then(|i| {
                i.stats()?;
                i.peek(3)?;
                Ok(())
            });
            if let Err(e) = inspected {
                failures.push(format!("inspector: {e:?}"));
            }
            match ledgerq_recovery::verify(dir.path()) {
                Err(e) => failures.push(format!("verify: {e:?}")),
                Ok(r) if !r.corruption.is_empty() => {
                    failures.push(format!("verify reports damage: {:?}", r.corruption))
                }
                Ok(_) => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        failures.is_empty(),
        "{} failures in {rounds} rounds, first: {}",
        failures.len(),
        failures[0]
    );
    assert!(q.stats().total_enqueued > 0);
}
