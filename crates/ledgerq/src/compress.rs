//! Payload compression.

/// How a payload is compressed on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    #[default]
    None,
    /// LZ4.
    Lz4,
    /// Zstandard at `level`.
    Zstd {
        /// The compression level.
        level: i32,
    },
}

pub(crate) fn validate(c: Compression) -> Result<(), String> {
    let _ = c;
    Ok(())
}

/// Compresses `payload` into `out` if worth it; returns the tag used (0 = stored as is).
pub(crate) fn compress(c: Compression, payload: &[u8], min_size: usize, out: &mut Vec<u8>) -> u8 {
    let _ = (c, payload, min_size, out);
    0
}

/// Why a stored payload could not be decompressed.
#[derive(Debug)]
pub(crate) enum DecodeError {
    UnknownTag(u8),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownTag(t) => write!(f, "unknown compression tag {t}"),
        }
    }
}

pub(crate) fn decompress(
    tag: u8,
    stored: &[u8],
    max_size: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, DecodeError> {
    let _ = max_size;
    match tag {
        0 => Ok(std::borrow::Cow::Borrowed(stored)),
        t => Err(DecodeError::UnknownTag(t)),
    }
}
