//! The one place that names synchronization primitives, so that the loom models
//! (`--cfg ledgerq_loom`) can swap them for loom's.

#[cfg(ledgerq_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(not(ledgerq_loom))]
pub(crate) use std::sync::Mutex;

#[cfg(ledgerq_loom)]
#[allow(unused_imports)]
pub(crate) mod atomic {
    pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
}
#[cfg(not(ledgerq_loom))]
#[allow(unused_imports)]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
}
