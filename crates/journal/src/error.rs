//! The journal's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the journal.
///
/// `Display` says what happened and what to do about it; `source()` gives the cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    Io {
        /// What was being done (`"create segment"`, `"flush segment"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another writer holds the queue directory's lock file.
    Locked {
        /// The queue directory.
        dir: PathBuf,
    },
    /// The disk is full (`ENOSPC`) while creating a segment. Nothing already
    /// appended is affected; appends fail until space is freed.
    NoSpace {
        /// The file that could not be allocated.
        path: PathBuf,
    },
    /// An earlier flush (msync/fdatasync) failed; the journal refuses further appends
    /// and syncs. Close it and open it again (recovery re-validates the tail).
    Poisoned {
        /// The failure that latched the journal.
        cause: Arc<io::Error>,
    },
    /// The payload (or the encoded record / batch) exceeds a size limit.
    RecordTooLarge {
        /// Size that was asked for.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A record has more headers than allowed.
    TooManyHeaders {
        /// Number of headers given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A header key is longer than allowed.
    HeaderKeyTooLarge {
        /// Key length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// All headers of a record together are larger than allowed.
    HeadersTooLarge {
        /// Total size of keys and values in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A segment file is damaged at `offset`.
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The options are inconsistent; the message says which one.
    InvalidOptions(String),
    /// The journal was opened read-only.
    ReadOnly,
    /// No record with this ID is retained (or the position does not hold it).
    NotFound {
        /// The ID asked for.
        id: u64,
    },
    /// The segment budget ([`crate::JournalOptions::max_segments`]) is used up; nothing
    /// was written.
    Full {
        /// The budget.
        max_segments: usize,
    },
    /// The journal was shut down ([`crate::Journal::shutdown`]); open it again.
    Closed,
}

impl Error {
    /// Wraps an I/O error, turning `ENOSPC` into [`Error::NoSpace`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return Error::NoSpace { path };
        }
        Error::Io { op, path, source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} failed for {}: {source}", path.display()),
            Error::Locked { dir } => write!(
                f,
                "queue directory {} is locked by another writer (close it, or open read-only)",
                dir.display()
            ),
            Error::NoSpace { path } => write!(
                f,
                "no space left on device while allocating {} (free disk space or remove consumed segments; earlier records are intact)",
                path.display()
            ),
            Error::Poisoned { cause } => write!(
                f,
                "journal is poisoned by an earlier flush failure ({cause}); close and reopen it"
            ),
            Error::RecordTooLarge { size, max } => write!(f, "record of {size} bytes exceeds the limit of {max} bytes"),
            Error::TooManyHeaders { count, max } => write!(f, "record has {count} headers, at most {max} are allowed"),
            Error::HeaderKeyTooLarge { len, max } => write!(f, "header key of {len} bytes exceeds the limit of {max} bytes"),
            Error::HeadersTooLarge { size, max } => write!(f, "headers total {size} bytes, at most {max} are allowed"),
            Error::Corrupt { path, offset, reason } => {
                write!(f, "segment {} is corrupt at offset {offset}: {reason}", path.display())
            }
            Error::InvalidOptions(msg) => write!(f, "invalid journal options: {msg}"),
            Error::ReadOnly => write!(f, "journal is open read-only"),
            Error::NotFound { id } => write!(f, "record {id} is not in the journal"),
            Error::Closed => write!(f, "the journal is closed"),
            Error::Full { max_segments } => {
                write!(f, "the journal's budget of {max_segments} segments is used up")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Poisoned { cause } => Some(&**cause),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_and_displays() {
        assert_send_sync::<Error>();
        let e = Error::io(
            "create segment",
            "/x",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(e, Error::NoSpace { .. }));
        let s = Error::Locked { dir: "/q".into() }.to_string();
        assert!(s.starts_with("queue directory /q is locked"));
        assert!(!s.ends_with('.'));
        assert_eq!(Error::Closed.to_string(), "the journal is closed");
    }
}
