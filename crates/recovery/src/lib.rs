//! The read-only [`verify`] report of a LedgerQ directory, which the CLI prints.
//! Repairs at open (cutting a torn tail, marking holes, the checkpoint) are made by
//! the journal before it publishes a segment, and the consumer state by the queue;
//! [`RecoveryMode`] chooses between reporting damage and skipping it there.
//!
//! [`verify`] reads every segment file and the default consumer state file directly
//! (it opens nothing for writing and creates nothing, so it works beside a running
//! writer and on a directory that must not be touched, e.g. after a crash, before
//! recovery repairs it) and reports every segment, the ID gaps and hole markers, torn
//! tails and corruption with file, offset and reason, and the checkpoint (the durable
//! position from which opening scans the segments).
//!
//! ```no_run
//! let report = ledgerq_recovery::verify(std::path::Path::new("/var/lib/app/queue"))?;
//! print!("{report}");
//! if !report.is_clean() {
//!     std::process::exit(1);
//! }
//! # Ok::<(), ledgerq_recovery::Error>(())
//! ```
#![forbid(unsafe_code)]

// The journal builds only its modelled protocol under `--cfg ledgerq_loom`, and so does
// this crate: nothing here is modelled.
#[cfg(not(ledgerq_loom))]
mod verify;

/// Whether damage found when opening or reading is an error or skipped (and counted).
#[cfg(not(ledgerq_loom))]
pub use ledgerq_journal::RecoveryMode;

#[cfg(not(ledgerq_loom))]
pub use verify::{
    verify, CheckpointReport, ConsumerState, Corruption, Error, HoleMarker, IdGap, Report,
    SegmentReport, TornTail, CONSUMER_STATE_FILE,
};
