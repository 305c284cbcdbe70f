//! Shared helpers for the LedgerQ integration tests.
