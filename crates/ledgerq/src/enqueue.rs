//! Per-message options: [`EnqueueOptions`], [`Priority`], and what an enqueue returns.

use std::time::Duration;

use crate::compress::Compression;

/// A message's priority. With [`Options::priorities`](crate::Options::priorities) on,
/// `High` is delivered before `Medium` before `Low` (FIFO within a level); otherwise the
/// priority is stored and returned but delivery is FIFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// The lowest level, and the default.
    #[default]
    Low = 0,
    /// The middle level.
    Medium = 1,
    /// The highest level.
    High = 2,
}

impl Priority {
    /// The number of levels.
    pub(crate) const LEVELS: usize = 3;

    /// The byte stored in the record.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The priority stored as `b`, if `b` is a valid level.
    pub fn from_u8(b: u8) -> Option<Priority> {
        match b {
            0 => Some(Priority::Low),
            1 => Some(Priority::Medium),
            2 => Some(Priority::High),
            _ => None,
        }
    }

    /// The level of a stored byte; a byte that is not a level (which a checksummed record
    /// never holds) counts as `Low`.
    pub(crate) fn from_stored(b: u8) -> Priority {
        Priority::from_u8(b).unwrap_or(Priority::Low)
    }
}

/// Options of one message, for [`Queue::enqueue_with`](crate::Queue::enqueue_with) and
/// [`Queue::enqueue_batch_with`](crate::Queue::enqueue_batch_with).
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), ledgerq::Error> {
/// use std::time::Duration;
/// use ledgerq::{EnqueueOptions, Priority, Queue};
///
/// let dir = tempfile::tempdir().unwrap();
/// let q = Queue::open(dir.path())?;
/// let opts = EnqueueOptions::new()
///     .priority(Priority::High)
///     .ttl(Duration::from_secs(60))
///     .header("content-type", "application/json")
///     .dedup_key("order-123");
/// let e = q.enqueue_with(br#"{"order":123}"#, &opts)?;
/// assert!(!e.is_duplicate());
/// // The same key within the dedup window writes nothing and returns the first ID.
/// let again = q.enqueue_with(br#"{"order":123}"#, &opts)?;
/// assert_eq!((again.id(), again.is_duplicate()), (e.id(), true));
///
/// let m = q.dequeue()?.unwrap();
/// assert_eq!(m.priority(), Priority::High);
/// assert_eq!(m.header("content-type"), Some("application/json"));
/// assert!(m.expires_at().is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    pub(crate) priority: Priority,
    pub(crate) ttl: Option<Duration>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) dedup_key: Option<Vec<u8>>,
    pub(crate) dedup_window: Option<Duration>,
    pub(crate) compression: Option<Compression>,
}

impl EnqueueOptions {
    /// No options: priority `Low`, no TTL, no headers, no dedup key, the queue's
    /// compression.
    pub fn new() -> Self {
        Self::default()
    }

    /// The message's priority. Default [`Priority::Low`].
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }

    /// How long the message may wait: once expired it is never delivered, and counted
    /// in [`Stats::expired`](crate::Stats::expired). Must be greater than zero.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Appends a header. Headers keep their order, and a key may repeat.
    /// At most 64 headers, keys of at most 256 bytes, 64 KiB for all keys and values;
    /// they count toward [`max_message_size`](crate::Options::max_message_size). A
    /// message moved to the dead-letter queue keeps all of them and gets four `dlq.*`
    /// headers beyond these limits.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// A deduplication key: an enqueue with a key already seen within its window writes
    /// nothing and returns the first message's ID with
    /// [`is_duplicate`](Enqueued::is_duplicate) `true`. At most 256 bytes.
    pub fn dedup_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// The dedup window of this message, instead of the queue's
    /// [`Options::dedup_window`](crate::Options::dedup_window).
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = Some(window);
        self
    }

    /// The compression of this message, instead of the queue's
    /// [`Options::compression`](crate::Options::compression).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = Some(c);
        self
    }
}

/// What an enqueue with options did: the message's ID, and whether it was a duplicate
/// (nothing written; the ID is the original message's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Enqueued {
    pub(crate) id: u64,
    pub(crate) duplicate: bool,
}

impl Enqueued {
    /// The message's ID (the original's for a duplicate).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the dedup key was already seen within its window, so nothing was written.
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }
}
