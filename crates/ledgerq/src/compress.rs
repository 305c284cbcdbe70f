//! Payload compression: LZ4 and Zstandard, chosen per queue or per message, applied only
//! where it saves at least 5%.
//!
//! Stored form (the record's compression tag says which):
//!
//! ```text
//! tag 0  the payload as is
//! tag 1  u32 LE uncompressed length, then an LZ4 block
//! tag 2  u32 LE uncompressed length, then a Zstandard frame
//! ```
//!
//! The declared length is checked against `max_message_size` before anything is
//! allocated, and the decoded length must equal it: a damaged or hostile record is an
//! error, never a decompression bomb and never a panic.

use std::borrow::Cow;
use std::fmt;

/// How payloads are compressed on disk.
///
/// # Examples
///
/// ```
/// use ledgerq::{Compression, EnqueueOptions, Options};
///
/// let queue_default = Options::new().compression(Compression::Lz4);
/// let this_message = EnqueueOptions::new().compression(Compression::Zstd { level: 9 });
/// # let _ = (queue_default, this_message);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Stored as is (the default).
    #[default]
    None,
    /// LZ4: fast, modest ratio.
    Lz4,
    /// Zstandard at `level` (1 to 22, or negative for its fastest modes; 3 is a good
    /// default).
    Zstd {
        /// The compression level.
        level: i32,
    },
}

/// Record tag: stored as is.
pub(crate) const TAG_NONE: u8 = 0;
/// Record tag: LZ4 block with its length in front.
pub(crate) const TAG_LZ4: u8 = 1;
/// Record tag: Zstandard frame with its length in front.
pub(crate) const TAG_ZSTD: u8 = 2;

/// Checks a compression setting.
pub(crate) fn validate(c: Compression) -> Result<(), String> {
    match c {
        Compression::Zstd { level } => {
            let range = zstd::compression_level_range();
            if range.contains(&level) && level != 0 {
                Ok(())
            } else {
                Err(format!(
                    "zstd level {level} is outside {}..={} (0 excluded)",
                    range.start(),
                    range.end()
                ))
            }
        }
        _ => Ok(()),
    }
}

/// Compresses `payload` into `out` if `c` asks for it, the payload is at least
/// `min_size` bytes, and the result is at least 5% smaller. Returns the tag to store:
/// [`TAG_NONE`] means `out` is unused and the payload is stored as is.
pub(crate) fn compress(c: Compression, payload: &[u8], min_size: usize, out: &mut Vec<u8>) -> u8 {
    out.clear();
    if c == Compression::None || payload.len() < min_size.max(1) {
        return TAG_NONE;
    }
    let Ok(len) = u32::try_from(payload.len()) else {
        return TAG_NONE;
    };
    out.extend_from_slice(&len.to_le_bytes());
    let (tag, written) = match c {
        Compression::None => (TAG_NONE, None),
        Compression::Lz4 => {
            let bound = lz4_flex::block::get_maximum_output_size(payload.len());
            out.resize(4 + bound, 0);
            let n = lz4_flex::block::compress_into(payload, &mut out[4..]).ok();
            (TAG_LZ4, n)
        }
        Compression::Zstd { level } => {
            let bound = zstd::zstd_safe::compress_bound(payload.len());
            out.resize(4 + bound, 0);
            (TAG_ZSTD, zstd_compress(payload, &mut out[4..], level))
        }
    };
    // Worth it only if the codec worked and the result is at least 5% smaller.
    match written {
        Some(n) if ((4 + n) as u64) * 100 <= (payload.len() as u64) * 95 => {
            out.truncate(4 + n);
            tag
        }
        _ => {
            out.clear();
            TAG_NONE
        }
    }
}

thread_local! {
    /// A Zstandard context per producer thread and level: making one costs more than
    /// compressing a small payload.
    static ZSTD_C: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses with this thread's Zstandard context; the compressed length.
fn zstd_compress(payload: &[u8], out: &mut [u8], level: i32) -> Option<usize> {
    ZSTD_C.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        c.as_mut()?.1.compress_to_buffer(payload, out).ok()
    })
}

/// Why a stored payload could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The declared uncompressed size exceeds the limit.
    TooLarge { size: u64, max: usize },
    /// The bytes are not a valid stream of the tagged codec.
    Corrupt(String),
    /// The compression tag is not one this version knows.
    UnknownTag(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { size, max } => write!(
                f,
                "declares {size} uncompressed bytes, more than the limit of {max}"
            ),
            DecodeError::Corrupt(why) => write!(f, "compressed payload is damaged: {why}"),
            DecodeError::UnknownTag(t) => write!(f, "unknown compression tag {t}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The payload of a record stored with `tag`, at most `max_size` bytes once decoded.
pub(crate) fn decompress(
    tag: u8,
    stored: &[u8],
    max_size: usize,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    if tag == TAG_NONE {
        return Ok(Cow::Borrowed(stored));
    }
    if tag != TAG_LZ4 && tag != TAG_ZSTD {
        return Err(DecodeError::UnknownTag(tag));
    }
    let (head, body) = stored
        .split_at_checked(4)
        .ok_or_else(|| DecodeError::Corrupt("shorter than its length prefix".into()))?;
    let declared = u32::from_le_bytes(head.try_into().expect("4 bytes"));
    let size = usize::try_from(declared).unwrap_or(usize::MAX);
    if size > max_size {
        return Err(DecodeError::TooLarge {
            size: u64::from(declared),
            max: max_size,
        });
    }
    let mut out = vec![0u8; size];
    let n = if tag == TAG_LZ4 {
        lz4_flex::block::decompress_into(body, &mut out)
            .map_err(|e| DecodeError::Corrupt(e.to_string()))?
    } else {
        ZSTD_D
            .with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                d.as_mut()
                    .expect("just made")
                    .decompress_to_buffer(body, &mut out[..])
            })
            .map_err(|e| DecodeError::Corrupt(e.to_string()))?
    };
    if n != size {
        return Err(DecodeError::Corrupt(format!(
            "decoded {n} bytes, {size} declared"
        )));
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(n: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog "
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const CODECS: [Compression; 3] = [
        Compression::Lz4,
        Compression::Zstd { level: 3 },
        Compression::Zstd { level: -5 },
    ];

    #[test]
    fn compressible_payloads_round_trip_smaller() {
        for c in CODECS {
            let p = text(8192);
            let mut out = Vec::new();
            let tag = compress(c, &p, 1024, &mut out);
            assert_ne!(tag, TAG_NONE, "{c:?}");
            assert!(out.len() * 100 <= p.len() * 95);
            assert_eq!(&*decompress(tag, &out, 1 << 20).unwrap(), &p[..]);
        }
    }

    #[test]
    fn incompressible_and_small_payloads_are_stored_as_is() {
        for c in CODECS {
            let mut out = Vec::new();
            assert_eq!(compress(c, &noise(8192), 1024, &mut out), TAG_NONE);
            assert!(out.is_empty());
            assert_eq!(compress(c, &text(1000), 1024, &mut out), TAG_NONE);
        }
        let mut out = Vec::new();
        assert_eq!(
            compress(Compression::None, &text(8192), 0, &mut out),
            TAG_NONE
        );
        assert!(out.is_empty(), "tag 0 leaves nothing to store in `out`");
    }

    #[test]
    fn tag_none_always_leaves_out_empty() {
        let mut out = vec![1, 2, 3];
        for c in [Compression::None, CODECS[0], CODECS[1], CODECS[2]] {
            for (p, min) in [(noise(8192), 0), (text(100), 1024), (Vec::new(), 0)] {
                out.extend_from_slice(b"left over");
                if compress(c, &p, min, &mut out) == TAG_NONE {
                    assert!(out.is_empty(), "{c:?} {} {min}", p.len());
                }
            }
        }
    }

    #[test]
    fn the_five_percent_rule_is_exact() {
        // Text followed by noise, in proportions around the 5% threshold: the tag is
        // non-zero exactly when the stored form is at most 95% of the payload.
        for c in CODECS {
            let mut seen = [false; 2];
            for noise_len in (3000..4096).step_by(37) {
                let mut p = text(4096 - noise_len);
                p.extend(noise(noise_len));
                let mut out = Vec::new();
                let tag = compress(c, &p, 0, &mut out);
                seen[usize::from(tag != TAG_NONE)] = true;
                if tag == TAG_NONE {
                    assert!(out.is_empty());
                } else {
                    assert!(out.len() * 100 <= p.len() * 95, "{c:?} {}", out.len());
                    assert_eq!(&*decompress(tag, &out, p.len()).unwrap(), &p[..]);
                }
            }
            assert_eq!(seen, [true, true], "{c:?}: both sides of the threshold");
        }
    }

    #[test]
    fn a_tiny_record_declaring_a_gibibyte_is_refused() {
        // 1 GiB of zeros would compress to a few hundred bytes; the record below is a
        // real tiny stream with a length prefix of 1 GiB and a limit of 1 MiB.
        for c in CODECS {
            let mut out = Vec::new();
            let tag = compress(c, &[0u8; 4096], 0, &mut out);
            assert_ne!(tag, TAG_NONE);
            out[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
            assert_eq!(
                decompress(tag, &out, 1 << 20),
                Err(DecodeError::TooLarge {
                    size: 1 << 30,
                    max: 1 << 20
                })
            );
        }
    }

    #[test]
    fn declared_size_over_the_limit_is_refused_before_allocating() {
        for c in CODECS {
            let mut out = Vec::new();
            let tag = compress(c, &text(4096), 0, &mut out);
            assert_eq!(
                decompress(tag, &out, 4095),
                Err(DecodeError::TooLarge {
                    size: 4096,
                    max: 4095
                })
            );
            // A forged prefix declaring 4 GiB is refused without allocating it.
            out[..4].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(matches!(
                decompress(tag, &out, 1 << 20),
                Err(DecodeError::TooLarge { .. })
            ));
        }
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        for c in CODECS {
            let mut out = Vec::new();
            let tag = compress(c, &text(4096), 0, &mut out);
            for cut in [0, 3, 4, 5, out.len() / 2, out.len() - 1] {
                assert!(
                    decompress(tag, &out[..cut], 1 << 20).is_err(),
                    "{c:?} cut {cut}"
                );
            }
            // A declared size that does not match the stream.
            let mut lie = out.clone();
            lie[..4].copy_from_slice(&4000u32.to_le_bytes());
            assert!(decompress(tag, &lie, 1 << 20).is_err());
        }
        assert_eq!(decompress(9, b"x", 10), Err(DecodeError::UnknownTag(9)));
    }

    #[test]
    fn zstd_levels_are_validated() {
        assert!(validate(Compression::Zstd { level: 3 }).is_ok());
        assert!(validate(Compression::Zstd { level: 0 }).is_err());
        assert!(validate(Compression::Zstd { level: 99 }).is_err());
        assert!(validate(Compression::Lz4).is_ok());
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(p in proptest::collection::vec(any::<u8>(), 0..4096),
                                   rep in 1usize..8, codec in 0usize..3) {
            let p: Vec<u8> = p.iter().copied().cycle().take(p.len() * rep).collect();
            let mut out = Vec::new();
            let tag = compress(CODECS[codec], &p, 0, &mut out);
            let stored: &[u8] = if tag == TAG_NONE { &p } else { &out };
            prop_assert_eq!(&*decompress(tag, stored, p.len()).unwrap(), &p[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512),
                                       tag in 0u8..4) {
            let _ = decompress(tag, &b, 1 << 16);
        }
    }
}
