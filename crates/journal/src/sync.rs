//! The loom shim: the only module that names the atomic types used by the
//! reservation/commit protocol ([`crate::proto`]). Under `--cfg ledgerq_loom`
//! they are loom's, so the protocol can be model-checked over an in-memory buffer.

#[cfg(ledgerq_loom)]
pub use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(ledgerq_loom))]
pub use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Back off inside a wait loop (another thread is finishing a segment roll).
#[inline]
pub fn spin_wait(round: u32) {
    #[cfg(ledgerq_loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(ledgerq_loom))]
    {
        if round < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}
