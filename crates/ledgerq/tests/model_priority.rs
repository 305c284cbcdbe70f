//! Model-based test of priority delivery: random sequences of enqueue (with a random
//! priority, single or batch), dequeue, dequeue_batch, ack, nack, seek and
//! close-and-reopen, in both ack modes, against a model of three FIFOs (starvation window
//! off, so the order is exactly High, then Medium, then Low).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use ledgerq::{AckMode, EnqueueOptions, Options, Priority, Queue};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Enqueue(u8),
    EnqueueBatch(Vec<u8>),
    Dequeue,
    DequeueBatch(usize),
    Ack(usize),
    Nack(usize),
    SeekToStart,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..3).prop_map(Op::Enqueue),
        2 => proptest::collection::vec(0u8..3, 0..6).prop_map(Op::EnqueueBatch),
        4 => Just(Op::Dequeue),
        2 => (0usize..6).prop_map(Op::DequeueBatch),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Nack),
        1 => Just(Op::SeekToStart),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    next_id: u64,
    level: BTreeMap<u64, u8>,
    /// Not yet delivered (or delivered again after a reopen or seek), by level.
    fresh: [BTreeSet<u64>; 3],
    /// Nacked, delivered before anything else, in nack order.
    again: VecDeque<u64>,
    leased: BTreeSet<u64>,
    /// Every message not yet consumed (auto) or acknowledged (manual).
    live: BTreeSet<u64>,
}

impl Model {
    fn take(&mut self, manual: bool) -> Option<u64> {
        let id = match self.again.pop_front() {
            Some(id) => id,
            None => {
                let l = (0..3).rev().find(|&l| !self.fresh[l].is_empty())?;
                self.fresh[l].pop_first()?
            }
        };
        if manual {
            self.leased.insert(id);
        } else {
            self.live.remove(&id);
        }
        Some(id)
    }

    fn requeue_all(&mut self) {
        for id in std::mem::take(&mut self.leased)
            .into_iter()
            .chain(self.again.drain(..))
        {
            self.fresh[usize::from(self.level[&id])].insert(id);
        }
    }
}

fn prio(l: u8) -> EnqueueOptions {
    EnqueueOptions::new().priority(Priority::from_u8(l).unwrap())
}

fn run(mode: AckMode, ops: Vec<Op>) {
    let manual = mode == AckMode::Manual;
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::new()
            .priorities(true)
            .starvation_window(Duration::ZERO)
            .ack_mode(mode)
            .segment_size(64 << 10)
            .ring_capacity(4)
            .lease_timeout(Duration::from_secs(3600))
            .max_deliveries(0)
    };
    let mut q = Queue::open_with(dir.path(), opts()).unwrap();
    let mut m = Model {
        next_id: 1,
        ..Model::default()
    };
    let payload = |id: u64| id.to_le_bytes().repeat(20);
    let check = |q: &Queue, m: &mut Model, got: Option<ledgerq::Message>| {
        let want = m.take(manual);
        assert_eq!(got.as_ref().map(|g| g.id()), want, "delivery order");
        if let Some(g) = got {
            assert_eq!(g.payload(), &payload(g.id())[..]);
            assert_eq!(g.priority().as_u8(), m.level[&g.id()]);
        }
        let _ = q;
    };
    for op in ops {
        match op {
            Op::Enqueue(l) => {
                let e = q.enqueue_with(payload(m.next_id), &prio(l)).unwrap();
                assert_eq!(e.id(), m.next_id);
                m.level.insert(e.id(), l);
                m.fresh[usize::from(l)].insert(e.id());
                m.live.insert(e.id());
                m.next_id += 1;
            }
            Op::EnqueueBatch(ls) => {
                let first = m.next_id;
                let got = q
                    .enqueue_batch_with(
                        ls.iter()
                            .enumerate()
                            .map(|(i, &l)| (payload(first + i as u64), prio(l))),
                    )
                    .unwrap();
                for (e, &l) in got.iter().zip(&ls) {
                    assert_eq!(e.id(), m.next_id);
                    m.level.insert(e.id(), l);
                    m.fresh[usize::from(l)].insert(e.id());
                    m.live.insert(e.id());
                    m.next_id += 1;
                }
            }
            Op::Dequeue => {
                let got = q.dequeue().unwrap();
                check(&q, &mut m, got);
            }
            Op::DequeueBatch(n) => {
                let got = q.dequeue_batch(n).unwrap();
                let ready = m.again.len() + m.fresh.iter().map(BTreeSet::len).sum::<usize>();
                assert_eq!(got.len(), ready.min(n));
                for g in got {
                    check(&q, &mut m, Some(g));
                }
            }
            Op::Ack(i) | Op::Nack(i) => {
                if !manual || m.leased.is_empty() {
                    assert!(q.ack(m.next_id + 3).is_err());
                    continue;
                }
                let id = *m.leased.iter().nth(i % m.leased.len()).unwrap();
                m.leased.remove(&id);
                if matches!(op, Op::Ack(_)) {
                    q.ack(id).unwrap();
                    m.live.remove(&id);
                } else {
                    q.nack(id, "model").unwrap();
                    m.again.push_back(id);
                }
            }
            Op::SeekToStart => {
                // Everything retained is delivered again (nothing was compacted: the
                // whole history is in the segments kept by the retention below).
                if q.seek_to_id(1).is_ok() {
                    m.leased.clear();
                    m.again.clear();
                    for (&id, &l) in &m.level {
                        m.fresh[usize::from(l)].insert(id);
                        m.live.insert(id);
                    }
                }
            }
            Op::Reopen => {
                q.close().unwrap();
                drop(q);
                q = Queue::open_with(dir.path(), opts()).unwrap();
                assert!(q.priorities());
                m.requeue_all();
            }
        }
        let s = q.stats();
        assert_eq!(s.next_id, m.next_id);
        if manual {
            assert_eq!(s.in_flight, m.leased.len() as u64);
        }
        let pending = m.again.len() + m.fresh.iter().map(BTreeSet::len).sum::<usize>();
        assert_eq!(s.pending, pending as u64, "pending");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn auto_mode_priority_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(AckMode::Auto, ops);
    }

    #[test]
    fn manual_mode_priority_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(AckMode::Manual, ops);
    }
}
