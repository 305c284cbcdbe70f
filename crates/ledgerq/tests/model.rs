//! Model-based test: random sequences of enqueue, enqueue_batch, dequeue, dequeue_batch,
//! ack, nack and close-and-reopen, in both ack modes, give the same results as a simple
//! in-memory model.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ledgerq::{AckMode, Options, Queue};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Enqueue(Vec<u8>),
    EnqueueBatch(Vec<Vec<u8>>),
    Dequeue,
    DequeueBatch(usize),
    Ack(usize),
    Nack(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let payload = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        4 => payload.clone().prop_map(Op::Enqueue),
        2 => proptest::collection::vec(payload, 0..8).prop_map(Op::EnqueueBatch),
        4 => Just(Op::Dequeue),
        2 => (0usize..10).prop_map(Op::DequeueBatch),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Nack),
        1 => Just(Op::Reopen),
    ]
}

/// The model: messages by ID, the order of delivery, what is leased.
#[derive(Default)]
struct Model {
    next_id: u64,
    payloads: BTreeMap<u64, Vec<u8>>,
    /// Fresh messages in ID order.
    fresh: VecDeque<u64>,
    /// Nacked messages, delivered before fresh ones.
    again: VecDeque<u64>,
    /// Leased: ID -> delivery count.
    leased: BTreeMap<u64, u32>,
    deliveries: BTreeMap<u64, u32>,
}

impl Model {
    fn take(&mut self, manual: bool) -> Option<(u64, u32)> {
        let id = self.again.pop_front().or_else(|| self.fresh.pop_front())?;
        let n = self.deliveries.entry(id).or_insert(0);
        *n += 1;
        let n = *n;
        if manual {
            self.leased.insert(id, n);
        } else {
            self.payloads.remove(&id);
        }
        Some((id, n))
    }

    fn reopen(&mut self) {
        let mut all: Vec<u64> = self
            .fresh
            .drain(..)
            .chain(self.again.drain(..))
            .chain(std::mem::take(&mut self.leased).into_keys())
            .collect();
        all.sort_unstable();
        self.fresh = all.into();
    }
}

fn run(mode: AckMode, ops: Vec<Op>) {
    let manual = mode == AckMode::Manual;
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::new()
            .ack_mode(mode)
            .segment_size(64 << 10)
            .lease_timeout(Duration::from_secs(3600))
            // The model redelivers for ever; dead letters have their own tests.
            .max_deliveries(0)
    };
    let mut q = Queue::open_with(dir.path(), opts()).unwrap();
    let mut m = Model {
        next_id: 1,
        ..Model::default()
    };
    let check = |q: &Queue, m: &mut Model, got: Option<ledgerq::Message>| {
        let want = m.take(manual);
        match (got, want) {
            (None, None) => {}
            (Some(g), Some((id, n))) => {
                assert_eq!(g.id(), id);
                assert_eq!(g.delivery_count(), n, "delivery count of {id}");
                let payload = m.payloads.get(&id).cloned();
                if let Some(p) = payload {
                    assert_eq!(g.payload(), &p[..]);
                }
                let _ = q;
            }
            (g, w) => panic!("got {:?}, model says {w:?}", g.map(|g| g.id())),
        }
    };
    for op in ops {
        match op {
            Op::Enqueue(p) => {
                let id = q.enqueue(&p).unwrap();
                assert_eq!(id, m.next_id);
                m.next_id += 1;
                m.payloads.insert(id, p);
                m.fresh.push_back(id);
            }
            Op::EnqueueBatch(ps) => {
                let ids = q.enqueue_batch(&ps).unwrap();
                assert_eq!(ids.start, m.next_id);
                assert_eq!(ids.end - ids.start, ps.len() as u64);
                for p in ps {
                    m.payloads.insert(m.next_id, p);
                    m.fresh.push_back(m.next_id);
                    m.next_id += 1;
                }
            }
            Op::Dequeue => {
                let got = q.dequeue().unwrap();
                check(&q, &mut m, got);
            }
            Op::DequeueBatch(n) => {
                let got = q.dequeue_batch(n).unwrap();
                let expect = (m.again.len() + m.fresh.len()).min(n);
                assert_eq!(got.len(), expect);
                for g in got {
                    check(&q, &mut m, Some(g));
                }
            }
            Op::Ack(i) | Op::Nack(i) => {
                let is_ack = matches!(op, Op::Ack(_));
                if m.leased.is_empty() {
                    let r = if is_ack {
                        q.ack(m.next_id + 5)
                    } else {
                        q.nack(m.next_id + 5, "x")
                    };
                    assert!(matches!(r, Err(ledgerq::Error::NotInFlight { .. })));
                    continue;
                }
                let id = *m.leased.keys().nth(i % m.leased.len()).unwrap();
                m.leased.remove(&id);
                if is_ack {
                    q.ack(id).unwrap();
                    m.payloads.remove(&id);
                    assert!(q.ack(id).is_err());
                } else {
                    q.nack(id, "model says so").unwrap();
                    m.again.push_back(id);
                }
            }
            Op::Reopen => {
                q.close().unwrap();
                drop(q);
                q = Queue::open_with(dir.path(), opts()).unwrap();
                m.reopen();
            }
        }
        let s = q.stats();
        assert_eq!(s.next_id, m.next_id);
        assert_eq!(s.in_flight, m.leased.len() as u64);
        assert_eq!(s.pending, (m.fresh.len() + m.again.len()) as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn auto_mode_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(AckMode::Auto, ops);
    }

    #[test]
    fn manual_mode_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(AckMode::Manual, ops);
    }
}
