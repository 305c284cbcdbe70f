//! The one error type of the queue.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong with a [`Queue`](crate::Queue).
///
/// Each variant carries what a person needs to act on it: the path, the ID, the size
/// and the limit. Causes are returned by [`source`](std::error::Error::source), not
/// repeated in the message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    Io {
        /// What was being done, e.g. `"create queue directory"`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another live `Queue` (in this or another process) owns the directory.
    Locked {
        /// The queue directory.
        dir: PathBuf,
    },
    /// The path given as a queue directory exists and is not a directory.
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The queue directory cannot be read or written by this process.
    PermissionDenied {
        /// The path concerned.
        path: PathBuf,
    },
    /// An option is out of range; nothing was opened.
    InvalidOptions {
        /// Which option and why.
        reason: String,
    },
    /// A payload (with its headers) is larger than `max_message_size`; nothing was written.
    MessageTooLarge {
        /// The size of the message in bytes.
        size: usize,
        /// The configured limit in bytes.
        max: usize,
    },
    /// A batch is larger than one segment can hold (a batch is one reservation in one
    /// segment); nothing was written. Split it, or use larger segments.
    BatchTooLarge {
        /// The encoded size of the batch in bytes.
        size: u64,
        /// What one segment can hold.
        max: u64,
    },
    /// `ack` or `nack` named a message that is not in flight: unknown, never delivered,
    /// already acknowledged, or the queue is in [`AckMode::Auto`](crate::AckMode::Auto).
    NotInFlight {
        /// The message ID given.
        id: u64,
    },
    /// The queue was closed.
    Closed,
    /// The disk is full; every message accepted before is still there.
    NoSpace {
        /// The file that could not be created or grown.
        path: PathBuf,
    },
    /// A flush to stable storage failed earlier; the queue refuses writes from then on.
    ///
    /// Close and reopen the queue: recovery finds what really reached the disk.
    Poisoned {
        /// The error of the failed flush.
        cause: Arc<io::Error>,
    },
    /// Stored data is damaged.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// The byte offset of the damage in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A message has more than 64 headers; nothing was written.
    TooManyHeaders {
        /// The number of headers given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A header key is longer than 256 bytes; nothing was written.
    HeaderKeyTooLarge {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message's header keys and values together exceed 64 KiB; nothing was written.
    HeadersTooLarge {
        /// Their size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A per-message option is invalid (a zero TTL, an empty or oversized dedup key);
    /// nothing was written.
    InvalidMessage {
        /// Which option and why.
        reason: String,
    },
    /// The queue's disk budget ([`Options::max_disk_bytes`](crate::Options::max_disk_bytes))
    /// is used up and its [`OverflowPolicy`](crate::OverflowPolicy) is `Reject`; nothing
    /// was written. Consume messages (and let compaction run), then retry.
    QueueFull {
        /// The budget in bytes.
        max_disk_bytes: u64,
    },
    /// A seek target is outside the retained messages: older than the first message still
    /// on disk (removed by retention or compaction), or beyond the next ID.
    SeekOutOfRange {
        /// The ID asked for.
        id: u64,
        /// The oldest ID still retained.
        first: u64,
        /// The ID the next enqueue will get.
        next: u64,
    },
    /// No message with this ID is in the queue (e.g. `requeue_dead_letter` of an ID the
    /// dead-letter queue does not hold).
    NotFound {
        /// The message ID given.
        id: u64,
    },
    /// The directory holds no queue (no segment and no consumer state file): read-only
    /// inspection never creates one.
    NotAQueue {
        /// The directory given.
        path: PathBuf,
    },
    /// Any other error of the journal.
    Journal(ledgerq_journal::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, .. } => write!(f, "failed to {op} at {}", path.display()),
            Error::Locked { dir } => write!(
                f,
                "queue directory {} is in use by another open queue (its LOCK file is held); \
                 close that queue, or read it without taking the lock (`Inspector`, or the \
                 read-only commands of the `ledgerq` tool)",
                dir.display()
            ),
            Error::NotADirectory { path } => write!(
                f,
                "{} exists and is not a directory; give a directory path for the queue",
                path.display()
            ),
            Error::PermissionDenied { path } => write!(
                f,
                "permission denied for {}; check the directory's owner and mode",
                path.display()
            ),
            Error::InvalidOptions { reason } => write!(f, "invalid options: {reason}"),
            Error::MessageTooLarge { size, max } => write!(
                f,
                "message of {size} bytes is larger than max_message_size ({max} bytes)"
            ),
            Error::BatchTooLarge { size, max } => write!(
                f,
                "batch of {size} bytes does not fit in one segment ({max} bytes); split it or \
                 use larger segments"
            ),
            Error::NotInFlight { id } => write!(
                f,
                "message {id} is not in flight (unknown, not delivered, already acknowledged, \
                 or the queue is in auto-ack mode)"
            ),
            Error::Closed => write!(f, "the queue is closed"),
            Error::NoSpace { path } => write!(
                f,
                "no space left on the device for {}; free space and retry (accepted messages are kept)",
                path.display()
            ),
            Error::Poisoned { .. } => write!(
                f,
                "an earlier flush to stable storage failed, so the queue refuses writes; \
                 close and reopen it"
            ),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt data in {} at byte {offset}: {reason}",
                path.display()
            ),
            Error::TooManyHeaders { count, max } => write!(
                f,
                "a message has {count} headers, more than the limit of {max}; nothing was written"
            ),
            Error::HeaderKeyTooLarge { len, max } => write!(
                f,
                "a header key is {len} bytes, more than the limit of {max}; nothing was written"
            ),
            Error::HeadersTooLarge { size, max } => write!(
                f,
                "a message's headers are {size} bytes, more than the limit of {max}; \
                 nothing was written"
            ),
            Error::InvalidMessage { reason } => {
                write!(f, "invalid message options: {reason}; nothing was written")
            }
            Error::QueueFull { max_disk_bytes } => write!(
                f,
                "the queue is full (disk budget of {max_disk_bytes} bytes used up); \
                 consume messages and retry"
            ),
            Error::SeekOutOfRange { id, first, next } => write!(
                f,
                "cannot seek to message {id}: a seek may go from {first} (the oldest message \
                 retained) to {next} (the ID of the next message enqueued)"
            ),
            Error::NotFound { id } => write!(f, "message {id} is not in the queue"),
            Error::NotAQueue { path } => write!(
                f,
                "{} is not a queue directory (no segment or consumer state file)",
                path.display()
            ),
            Error::Journal(e) => write!(f, "journal error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Poisoned { cause } => Some(&**cause),
            Error::Journal(e) => e.source(),
            _ => None,
        }
    }
}

impl From<ledgerq_journal::Error> for Error {
    fn from(e: ledgerq_journal::Error) -> Self {
        use ledgerq_journal::Error as J;
        match e {
            J::Io { op, path, source } => match source.kind() {
                io::ErrorKind::PermissionDenied => Error::PermissionDenied { path },
                _ => Error::Io { op, path, source },
            },
            J::Locked { dir } => Error::Locked { dir },
            J::NoSpace { path } => Error::NoSpace { path },
            J::Poisoned { cause } => Error::Poisoned { cause },
            J::Corrupt {
                path,
                offset,
                reason,
            } => Error::Corrupt {
                path,
                offset,
                reason,
            },
            J::InvalidOptions(reason) => Error::InvalidOptions { reason },
            J::RecordTooLarge { size, max } => Error::MessageTooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max: usize::try_from(max).unwrap_or(usize::MAX),
            },
            J::TooManyHeaders { count, max } => Error::TooManyHeaders { count, max },
            J::HeaderKeyTooLarge { len, max } => Error::HeaderKeyTooLarge { len, max },
            J::HeadersTooLarge { size, max } => Error::HeadersTooLarge { size, max },
            other => Error::Journal(other),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
    let path = path.into();
    match source.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { path },
        _ => Error::Io { op, path, source },
    }
}
