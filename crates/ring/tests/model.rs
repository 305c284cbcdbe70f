//! Random sequences of push, pop, push_batch and pop_batch against a `VecDeque` model.
#![cfg(not(ledgerq_loom))]

use std::collections::VecDeque;

use ledgerq_ring::Ring;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Push(u16),
    Pop,
    PushBatch(Vec<u16>),
    PopBatch(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u16>().prop_map(Op::Push),
        Just(Op::Pop),
        proptest::collection::vec(any::<u16>(), 0..12).prop_map(Op::PushBatch),
        (0usize..12).prop_map(Op::PopBatch),
    ]
}

proptest! {
    #[test]
    fn matches_vecdeque(cap in 1usize..10, ops in proptest::collection::vec(op(), 0..200)) {
        let ring = Ring::with_capacity(cap);
        let cap = ring.capacity();
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(v) => {
                    let r = ring.push(v);
                    if model.len() < cap {
                        prop_assert_eq!(r, Ok(()));
                        model.push_back(v);
                    } else {
                        prop_assert_eq!(r, Err(v));
                    }
                }
                Op::Pop => prop_assert_eq!(ring.pop(), model.pop_front()),
                Op::PushBatch(vs) => {
                    let mut it = vs.clone().into_iter();
                    let n = ring.push_batch(&mut it);
                    let fit = vs.len().min(cap - model.len());
                    prop_assert_eq!(n, fit);
                    prop_assert_eq!(it.len(), vs.len() - fit);
                    model.extend(vs.into_iter().take(fit));
                }
                Op::PopBatch(max) => {
                    let mut out = Vec::new();
                    let n = ring.pop_batch(&mut out, max);
                    let want: Vec<u16> = (0..max.min(model.len())).map(|_| model.pop_front().unwrap()).collect();
                    prop_assert_eq!(n, want.len());
                    prop_assert_eq!(out, want);
                }
            }
            prop_assert_eq!(ring.len(), model.len());
            prop_assert_eq!(ring.is_empty(), model.is_empty());
            prop_assert_eq!(ring.is_full(), model.len() == cap);
        }
    }
}
