//! Shared helpers for the LedgerQ benchmarks.
