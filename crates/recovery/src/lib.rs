//! Open-time recovery of a LedgerQ directory.
#![forbid(unsafe_code)]
