//! Counters of a queue.

/// A snapshot of a queue's counters, from [`Queue::stats`](crate::Queue::stats).
///
/// Values are read without stopping producers or consumers, so under load they are
/// approximate: each is exact at some instant during the call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages waiting to be delivered (not counting those in flight).
    pub pending: u64,
    /// Manual-ack mode: messages delivered and not yet acknowledged. A message being
    /// handed out counts here from the moment a consumer claims it, before it leaves
    /// `pending`: under load `pending + in_flight` may count such a message twice for a
    /// moment, never zero times (a program that waits for both to reach zero before it
    /// closes cannot close under a consumer about to ack).
    pub in_flight: u64,
    /// IDs assigned over the queue's life.
    pub total_enqueued: u64,
    /// The ID the next enqueue will get.
    pub next_id: u64,
    /// Segment files of the journal (holding messages, or the one being filled).
    pub segments: u64,
    /// Bytes of segment files on disk: the journal's `segments` and, once appends have
    /// started, the empty segment prepared ahead of need, each at its full size.
    pub disk_bytes: u64,
    /// Messages that expired before delivery (since open). Expiry is found when a
    /// dequeue reaches the message (and passes over it): until then an expired message
    /// still counts in `pending` (and in `oldest_pending_age`), though no dequeue,
    /// stream or peek returns it.
    pub expired: u64,
    /// Messages moved to the dead-letter queue over the queue's life.
    pub dead_lettered: u64,
    /// Dedup keys tracked now.
    pub dedup_tracked: u64,
    /// Dedup keys forgotten early because the table was full (since open).
    pub dedup_evicted: u64,
    /// Pending messages dropped by [`OverflowPolicy::DropOldest`](crate::OverflowPolicy)
    /// (since open).
    pub dropped: u64,
    /// Moves to the dead-letter queue that failed (since open), each logged: the
    /// message stayed in the queue and was delivered again (see
    /// [`Queue::nack`](crate::Queue::nack)).
    pub dead_letter_failures: u64,
    /// Damaged or missing parts of the journal passed over in
    /// [`RecoveryMode::Skip`](crate::RecoveryMode::Skip) since open, each counted once:
    /// damaged spans repaired at open, damaged records and missing ID ranges met by
    /// readers, and missing segment files at the front of the journal.
    pub corrupt_skipped: u64,
    /// How long the oldest pending message has waited, if any is pending.
    pub oldest_pending_age: Option<std::time::Duration>,
}
