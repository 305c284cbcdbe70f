//! Options of a queue, set once at open.

use std::time::Duration;

pub use ledgerq_journal::{Durability, RecoveryMode};

use crate::compress::Compression;
use crate::error::{Error, Result};

/// How a dequeued message is consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AckMode {
    /// A dequeue consumes the message (at most once: a consumer that crashes after the
    /// dequeue loses that message). This is the default.
    #[default]
    Auto,
    /// A dequeue leases the message: [`ack`](crate::Queue::ack) ends it,
    /// [`nack`](crate::Queue::nack), an expired lease or a reopen delivers it again
    /// (at least once).
    Manual,
}

/// Options for [`Queue::open_with`](crate::Queue::open_with).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ledgerq::{AckMode, Durability, Options};
///
/// let opts = Options::new()
///     .durability(Durability::Sync)
///     .ack_mode(AckMode::Manual)
///     .lease_timeout(Duration::from_secs(30))
///     .segment_size(64 << 20);
/// assert_eq!(opts.get_ack_mode(), AckMode::Manual);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) ack_mode: AckMode,
    pub(crate) lease_timeout: Duration,
    pub(crate) segment_size: u64,
    pub(crate) flush_interval: Duration,
    pub(crate) max_message_size: Option<usize>,
    pub(crate) ring_capacity: usize,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) auto_compact: bool,
    pub(crate) priorities: bool,
    pub(crate) starvation_window: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) redelivery_backoff: Option<(Duration, Duration)>,
    pub(crate) dedup_window: Duration,
    pub(crate) max_dedup_entries: usize,
    pub(crate) compression: Compression,
    pub(crate) min_compression_size: usize,
    pub(crate) retention: Option<Retention>,
    pub(crate) compaction_interval: Duration,
    pub(crate) max_disk_bytes: Option<u64>,
    pub(crate) overflow_policy: OverflowPolicy,
}

/// How long consumed segments are kept for replay ([`Queue::seek_to_id`](crate::Queue::seek_to_id)).
///
/// Without a retention policy a segment is removed as soon as all its messages are
/// consumed (and, once dedup keys have been used, its newest record is older than the
/// longest dedup window used: the dedup table is rebuilt from those records at open).
/// With one, consumed segments are kept until one of the limits is exceeded
/// (oldest first), always keeping `min_segments`. A segment that holds a pending, leased
/// or not yet dead-lettered message is never removed by retention.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ledgerq::{Options, Retention};
///
/// let opts = Options::new().retention(Retention {
///     max_age: Some(Duration::from_secs(7 * 24 * 3600)),
///     max_bytes: Some(1 << 30),
///     ..Retention::default()
/// });
/// # let _ = opts;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove consumed segments whose newest message is older than this.
    pub max_age: Option<Duration>,
    /// Remove the oldest consumed segments while all segments take more than this.
    pub max_bytes: Option<u64>,
    /// Remove the oldest consumed segments while there are more than this many.
    pub max_segments: Option<usize>,
    /// Never go below this many segments, whatever the other limits say.
    pub min_segments: usize,
}

/// What an enqueue does when [`Options::max_disk_bytes`] is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OverflowPolicy {
    /// Refuse the enqueue with [`Error::QueueFull`](crate::Error::QueueFull): backpressure,
    /// nothing lost. The default.
    #[default]
    Reject,
    /// Drop the oldest segment of pending messages to make room, counting the dropped
    /// messages in [`Stats::dropped`](crate::Stats::dropped) (only those still pending:
    /// not those already delivered, acknowledged or leased). The enqueue does not fail
    /// with `QueueFull` unless the message does not fit even once every older segment is
    /// gone. In manual-ack mode a lease on a message in the dropped segment ends with
    /// it: its `ack` or `nack` returns [`Error::NotInFlight`](crate::Error::NotInFlight).
    DropOldest,
}

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default largest message: 10 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 << 20;

/// Bytes of a segment a payload and its headers never use: room for the segment header
/// and a record's encoding around them (record header, 6 bytes per header, dedup field,
/// padding), and for the `dlq.*` headers a dead letter adds (checked in
/// `dead_letter.rs`).
pub(crate) const SEGMENT_SLACK: u64 = 4096;

// A message whose payload and headers fill `max_message_size` fits in a segment.
const _: () = assert!(
    ledgerq_journal::SEGMENT_HEADER_LEN as usize
        + ledgerq_journal::RECORD_HEADER_LEN as usize
        + 6 * ledgerq_journal::MAX_HEADERS
        + 8
        + crate::queue::MAX_DEDUP_KEY
        + 7
        <= SEGMENT_SLACK as usize
);
/// Default ring capacity: how many messages are dispatched ahead of consumers.
pub const DEFAULT_RING_CAPACITY: usize = 1024;

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Buffered,
            ack_mode: AckMode::Auto,
            lease_timeout: Duration::from_secs(30),
            segment_size: DEFAULT_SEGMENT_SIZE,
            flush_interval: Duration::from_secs(1),
            max_message_size: None,
            ring_capacity: DEFAULT_RING_CAPACITY,
            recovery_mode: RecoveryMode::Strict,
            auto_compact: true,
            priorities: false,
            starvation_window: Duration::from_secs(30),
            max_deliveries: 3,
            redelivery_backoff: None,
            dedup_window: Duration::from_secs(300),
            max_dedup_entries: 100_000,
            compression: Compression::None,
            min_compression_size: 1024,
            retention: None,
            compaction_interval: Duration::from_secs(1),
            max_disk_bytes: None,
            overflow_policy: OverflowPolicy::Reject,
        }
    }
}

impl Options {
    /// The defaults: buffered durability, auto-ack, 30 s leases, 64 MiB segments,
    /// a flush every second, 10 MiB messages, a ring of 1024.
    pub fn new() -> Self {
        Self::default()
    }

    /// When an enqueue is durable. Default [`Durability::Buffered`].
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Auto or manual acknowledgement. Default [`AckMode::Auto`].
    ///
    /// It may differ from the last open's, except where the new mode could not read
    /// what the old one recorded: a switch to auto-ack in a FIFO queue while messages
    /// are acknowledged (or dead-lettered) after an unacknowledged one, or to manual-ack
    /// in a priority queue while a level is consumed more than 131,072 IDs ahead of a
    /// lower one. That open fails with
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions), saying what to settle
    /// first, and changes nothing. The queue records the mode of its last open;
    /// [`inspect::recorded_ack_mode`](crate::inspect::recorded_ack_mode) reads it.
    pub fn ack_mode(mut self, m: AckMode) -> Self {
        self.ack_mode = m;
        self
    }

    /// How long a manual-mode lease lasts before the message is delivered again.
    /// Default 30 s; at least 1 ms.
    pub fn lease_timeout(mut self, d: Duration) -> Self {
        self.lease_timeout = d;
        self
    }

    /// The size of each segment file in bytes. Default 64 MiB; from 64 KiB to 1 GiB, a
    /// multiple of 4096.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// How often buffered writes and consumer state are flushed. Default 1 s.
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// The largest payload (with headers) accepted. Default 10 MiB, or what fits in a
    /// segment if that is less; a value set here must fit in a segment. Lowering it
    /// does not affect messages already stored: they are still delivered.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Some(bytes);
        self
    }

    /// The largest payload accepted with these options.
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size.unwrap_or_else(|| {
            let room = usize::try_from(self.segment_room()).unwrap_or(usize::MAX);
            DEFAULT_MAX_MESSAGE_SIZE.min(room)
        })
    }

    /// Bytes of a segment a single payload with its headers may use: the segment less
    /// [`SEGMENT_SLACK`].
    fn segment_room(&self) -> u64 {
        self.segment_size.saturating_sub(SEGMENT_SLACK)
    }

    /// How many messages the dispatch ring holds ahead of consumers (rounded up to a power
    /// of two). Memory use is bounded by this, not by the backlog. Default 1024.
    pub fn ring_capacity(mut self, n: usize) -> Self {
        self.ring_capacity = n;
        self
    }

    /// What to do about corruption found at open. Default [`RecoveryMode::Strict`].
    pub fn recovery_mode(mut self, m: RecoveryMode) -> Self {
        self.recovery_mode = m;
        self
    }

    /// Whether segments whose messages are all consumed are deleted automatically.
    /// Default `true`.
    pub fn auto_compact(mut self, on: bool) -> Self {
        self.auto_compact = on;
        self
    }

    /// Priority delivery: `High` before `Medium` before `Low`, FIFO within a level, with
    /// [`starvation_window`](Options::starvation_window). Fixed when the queue is
    /// created and recorded in it: opening an existing queue uses what was recorded.
    /// Default `false` (FIFO by ID, priorities stored but not used for order).
    ///
    /// Cost: each level reads the journal once, in ID order, keeping its own messages,
    /// so a dequeue costs a constant amount amortised over the messages it passes; but
    /// the first dequeue served after `n` lower-level messages were enqueued (or after
    /// an open with such a backlog) first reads those `n` records for each higher level,
    /// to make sure no higher message is passed over.
    ///
    /// With [`AckMode::Manual`], delivery state is kept per message for a window of
    /// 131,072 IDs past the oldest unacknowledged message: priority order holds within
    /// that window, and a message enqueued behind more pending messages than that is
    /// served once the window reaches it.
    pub fn priorities(mut self, on: bool) -> Self {
        self.priorities = on;
        self
    }

    /// Priority mode: a message that has waited this long is served before newer
    /// messages of higher levels. Default 30 s; zero turns it off.
    pub fn starvation_window(mut self, d: Duration) -> Self {
        self.starvation_window = d;
        self
    }

    /// Manual-ack mode: after this many failed deliveries (nack or expired lease) a
    /// message moves to the dead-letter queue. Default 3; 0 turns dead-lettering off
    /// (a message is then redelivered for ever); at most 250. A lease that a crash or
    /// an unclosed queue ended counts as a failed delivery: a message whose last
    /// delivery it was is moved by the next open.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }

    /// Manual-ack mode: wait before a failed message is delivered again, `base` after
    /// the first failure, doubling up to `max`. Default: none (at once).
    pub fn redelivery_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.redelivery_backoff = Some((base, max));
        self
    }

    /// How long a dedup key is remembered, unless the message sets its own window.
    /// Default 5 minutes.
    pub fn dedup_window(mut self, d: Duration) -> Self {
        self.dedup_window = d;
        self
    }

    /// The most dedup keys tracked; beyond it the key expiring first is forgotten
    /// (counted in [`Stats::dedup_evicted`](crate::Stats::dedup_evicted)). Default 100,000.
    pub fn max_dedup_entries(mut self, n: usize) -> Self {
        self.max_dedup_entries = n;
        self
    }

    /// The compression of messages that do not set their own. Default
    /// [`Compression::None`].
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Payloads smaller than this are never compressed. Default 1 KiB.
    pub fn min_compression_size(mut self, bytes: usize) -> Self {
        self.min_compression_size = bytes;
        self
    }

    /// Keep consumed segments for replay, within these limits. Default: none (consumed
    /// segments are removed).
    pub fn retention(mut self, r: Retention) -> Self {
        self.retention = Some(r);
        self
    }

    /// How often automatic compaction runs (when [`auto_compact`](Options::auto_compact)
    /// is on). Default 1 s.
    pub fn compaction_interval(mut self, d: Duration) -> Self {
        self.compaction_interval = d;
        self
    }

    /// A disk budget for the queue's segment files; what happens when it is reached is
    /// the [`overflow_policy`](Options::overflow_policy). At least two segments.
    /// Default: none.
    pub fn max_disk_bytes(mut self, bytes: u64) -> Self {
        self.max_disk_bytes = Some(bytes);
        self
    }

    /// What an enqueue does when the disk budget is reached. Default
    /// [`OverflowPolicy::Reject`].
    pub fn overflow_policy(mut self, p: OverflowPolicy) -> Self {
        self.overflow_policy = p;
        self
    }

    /// Whether priority delivery was asked for.
    pub fn get_priorities(&self) -> bool {
        self.priorities
    }

    /// The durability mode set.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// The ack mode set.
    pub fn get_ack_mode(&self) -> AckMode {
        self.ack_mode
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        if !(64 << 10..=1 << 30).contains(&self.segment_size) {
            return bad(format!(
                "segment_size {} is outside 64 KiB..=1 GiB",
                self.segment_size
            ));
        }
        // Checked here, not only by the journal: an invalid option creates nothing.
        if self.segment_size % 4096 != 0 {
            return bad(format!(
                "segment_size {} is not a multiple of 4096",
                self.segment_size
            ));
        }
        if self.lease_timeout < Duration::from_millis(1) {
            return bad("lease_timeout must be at least 1 ms".into());
        }
        if self.flush_interval.is_zero() {
            return bad("flush_interval must be greater than zero".into());
        }
        let max = self.get_max_message_size();
        if max == 0 {
            return bad("max_message_size must be greater than zero".into());
        }
        if u64::try_from(max).map_or(true, |m| m > self.segment_room()) {
            return bad(format!(
                "max_message_size {max} does not fit in a segment of {} bytes (at most {} \
                 with this segment_size)",
                self.segment_size,
                self.segment_room()
            ));
        }
        if self.max_deliveries > 250 {
            return bad(format!(
                "max_deliveries {} is above the limit of 250",
                self.max_deliveries
            ));
        }
        if let Some((base, max)) = self.redelivery_backoff {
            if base.is_zero() || max < base {
                return bad("redelivery_backoff needs 0 < base <= max".into());
            }
        }
        if self.dedup_window.is_zero() {
            return bad("dedup_window must be greater than zero".into());
        }
        if self.max_dedup_entries == 0 {
            return bad("max_dedup_entries must be greater than zero".into());
        }
        if self.compaction_interval.is_zero() {
            return bad("compaction_interval must be greater than zero".into());
        }
        if let Some(b) = self.max_disk_bytes {
            if b < 2 * self.segment_size {
                return bad(format!(
                    "max_disk_bytes {b} is less than two segments of {} bytes",
                    self.segment_size
                ));
            }
        }
        crate::compress::validate(self.compression)
            .map_err(|reason| Error::InvalidOptions { reason })?;
        if self.ring_capacity == 0 || self.ring_capacity > 1 << 24 {
            return bad(format!(
                "ring_capacity {} is outside 1..=16777216",
                self.ring_capacity
            ));
        }
        Ok(())
    }
}
