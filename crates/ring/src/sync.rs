//! The one place that names synchronization primitives: std's (and crossbeam's backoff)
//! normally, loom's under `--cfg ledgerq_loom`.

#[cfg(ledgerq_loom)]
pub(crate) mod atomic {
    pub(crate) use loom::sync::atomic::{fence, AtomicUsize, Ordering};
}
#[cfg(not(ledgerq_loom))]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{fence, AtomicUsize, Ordering};
}

#[cfg(ledgerq_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's closure-based access, so that the same code runs
/// under loom, which checks each access.
#[cfg(not(ledgerq_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(ledgerq_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer for reading.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a pointer for writing.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(not(ledgerq_loom))]
pub(crate) use crossbeam_utils::Backoff;

/// Under loom, waiting must yield to loom's scheduler so that the thread waited on runs.
#[cfg(ledgerq_loom)]
pub(crate) struct Backoff;

#[cfg(ledgerq_loom)]
impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff
    }

    pub(crate) fn spin(&self) {
        loom::thread::yield_now();
    }

    pub(crate) fn snooze(&self) {
        loom::thread::yield_now();
    }
}
