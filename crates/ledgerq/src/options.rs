//! Options of a queue, set once at open.

use std::time::Duration;

pub use ledgerq_journal::{Durability, RecoveryMode};

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
}

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default largest message: 10 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 << 20;
/// Default ring capacity: how many messages are dispatched ahead of consumers.
pub const DEFAULT_RING_CAPACITY: usize = 4096;

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
        }
    }
}

impl Options {
    /// The defaults: buffered durability, auto-ack, 30 s leases, 64 MiB segments,
    /// a flush every second, 10 MiB messages, a ring of 4096.
    pub fn new() -> Self {
        Self::default()
    }

    /// When an enqueue is durable. Default [`Durability::Buffered`].
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Auto or manual acknowledgement. Default [`AckMode::Auto`].
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

    /// The size of each segment file in bytes. Default 64 MiB; from 64 KiB to 1 GiB.
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
    /// segment if that is less; a value set here must fit in a segment.
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

    /// Bytes of a segment a single payload may use: the segment less its header and a
    /// record header with room for the largest header set.
    fn segment_room(&self) -> u64 {
        self.segment_size.saturating_sub(4096)
    }

    /// How many messages the dispatch ring holds ahead of consumers (rounded up to a power
    /// of two). Memory use is bounded by this, not by the backlog. Default 4096.
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
                "max_message_size {max} does not fit in a segment of {} bytes",
                self.segment_size
            ));
        }
        if self.ring_capacity == 0 || self.ring_capacity > 1 << 24 {
            return bad(format!(
                "ring_capacity {} is outside 1..=16777216",
                self.ring_capacity
            ));
        }
        Ok(())
    }
}
