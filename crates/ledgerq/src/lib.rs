//! LedgerQ: an embedded, durable, lock-free message queue. A directory is a queue.
