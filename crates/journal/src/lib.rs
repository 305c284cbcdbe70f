//! The segmented, memory-mapped append journal of LedgerQ.
