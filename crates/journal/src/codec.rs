//! On-disk format: segment header and record codec.
//!
//! # Segment file `{base_id:020}.seg` (created at its full size, zero-filled)
//!
//! ```text
//! offset size  segment header (64 bytes, little endian)
//!      0    8  magic  89 'L' 'Q' 'J' 0D 0A 1A 0A
//!      8    4  format version (1)
//!     12    4  header CRC32C over bytes 0..64 with this field zeroed
//!     16    8  base ID (first ID the segment holds)
//!     24    8  creation time, ns since the UNIX epoch
//!     32    8  segment size in bytes (= file length)
//!     40    4  salt: random, seeds every record checksum in this segment
//!     44   20  reserved, zero
//!     64   ..  records, each 8-byte aligned, back to back; zero after the last one
//! ```
//!
//! # Record (`len` bytes, padded with zeros to a multiple of 8)
//!
//! ```text
//! offset size  field
//!      0    4  commit word: 0 = not committed, KIND_RECORD, KIND_HOLE or KIND_END;
//!              stored LAST with a Release store (see `proto`)
//!      4    4  CRC32C, seeded with the segment salt, over bytes 8..len
//!      8    4  len: header + body, unpadded (>= 56)
//!     12    1  flags: bit 0 = dedup key present
//!     13    1  priority
//!     14    1  compression tag
//!     15    1  reserved, zero
//!     16    8  ID
//!     24    8  enqueue timestamp, ns since the UNIX epoch
//!     32    8  expiry, ns since the UNIX epoch (0 = none)
//!     40    4  headers_len: bytes of the header section
//!     44    4  dedup_len
//!     48    4  payload_len
//!     52    2  header count
//!     54    2  reserved, zero
//!     56   ..  headers: per header u16 key_len, u32 value_len, key, value (UTF-8)
//!          ..  dedup key bytes, then payload bytes
//! ```
//!
//! A hole marker (written by recovery over a never-committed reservation) is
//! `KIND_HOLE`, CRC over bytes 8..16, `len` (the bytes to skip, >= 16) at 8..12, zero.
//! The end marker is the commit word `KIND_END` at the first unreserved offset; its
//! bytes 4..8 are zero, or `END_GAP` when recovery at open accepted that IDs are
//! missing between this segment and the next (see `proto::END_GAP`).
//! `56 + headers_len + dedup_len + payload_len == len` for every valid record.

use crate::error::Error;

/// Size of the segment header; records start here.
pub const SEGMENT_HEADER_LEN: u32 = 64;
/// Size of the fixed record header.
pub const RECORD_HEADER_LEN: u32 = 56;
/// Smallest hole marker.
pub const HOLE_MIN_LEN: u32 = 16;
/// Segment magic number.
pub const MAGIC: [u8; 8] = [0x89, b'L', b'Q', b'J', 0x0D, 0x0A, 0x1A, 0x0A];
/// Format version.
pub const VERSION: u32 = 1;
/// Most headers a message may be given ([`check_headers`]).
pub const MAX_HEADERS: usize = 64;
/// Longest header key.
pub const MAX_HEADER_KEY: usize = 256;
/// Largest total of header keys and values a message may be given ([`check_headers`]).
pub const MAX_HEADERS_BYTES: usize = 64 * 1024;
/// Headers a record may carry beyond [`MAX_HEADERS`]: room for headers its owner adds
/// to a message that is already at the limits (the queue's dead-letter queue adds four).
pub const RESERVED_HEADERS: usize = 4;
/// Bytes of keys and values a record may carry beyond [`MAX_HEADERS_BYTES`], for the
/// [`RESERVED_HEADERS`].
pub const RESERVED_HEADERS_BYTES: usize = 2048;
/// Most headers per record: what a message may be given plus [`RESERVED_HEADERS`].
pub const MAX_RECORD_HEADERS: usize = MAX_HEADERS + RESERVED_HEADERS;
/// Largest total of header keys and values per record: what a message may be given
/// plus [`RESERVED_HEADERS_BYTES`].
pub const MAX_RECORD_HEADERS_BYTES: usize = MAX_HEADERS_BYTES + RESERVED_HEADERS_BYTES;

/// Flag bit: a dedup key is present.
pub const FLAG_DEDUP: u8 = 1;

/// Rounds up to a multiple of 8.
#[inline]
pub fn align8(n: u32) -> u32 {
    (n + 7) & !7
}

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub struct RecordIn<'a> {
    /// The message body.
    pub payload: &'a [u8],
    /// Priority (0 = default).
    pub priority: u8,
    /// Expiry in ns since the UNIX epoch (0 = none).
    pub expires_at_ns: u64,
    /// Ordered key/value headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// Compression tag (0 = none; the queue interprets it).
    pub compression: u8,
    /// Deduplication key.
    pub dedup_key: Option<&'a [u8]>,
    /// Enqueue time in ns since the UNIX epoch; `None` = now.
    pub timestamp_ns: Option<u64>,
}

impl<'a> RecordIn<'a> {
    /// A record with `payload` and defaults for everything else.
    pub fn new(payload: &'a [u8]) -> Self {
        RecordIn {
            payload,
            priority: 0,
            expires_at_ns: 0,
            headers: &[],
            compression: 0,
            dedup_key: None,
            timestamp_ns: None,
        }
    }
}

/// Checks the limits of the headers a message may be given: at most [`MAX_HEADERS`],
/// keys of at most [`MAX_HEADER_KEY`] bytes, at most [`MAX_HEADERS_BYTES`] of keys and
/// values. Returns the bytes of all keys and values.
///
/// A record may carry more ([`MAX_RECORD_HEADERS`], [`MAX_RECORD_HEADERS_BYTES`]): the
/// journal's own check leaves its owner room to add headers to any message that passed
/// this one.
///
/// # Errors
/// [`Error::TooManyHeaders`], [`Error::HeaderKeyTooLarge`], [`Error::HeadersTooLarge`].
pub fn check_headers(headers: &[(&str, &str)]) -> Result<usize, Error> {
    check_headers_within(headers, MAX_HEADERS, MAX_HEADERS_BYTES)
}

/// Checks the limits of a record's headers ([`MAX_RECORD_HEADERS`],
/// [`MAX_HEADER_KEY`], [`MAX_RECORD_HEADERS_BYTES`]); returns the bytes of all keys and
/// values.
pub(crate) fn check_record_headers(headers: &[(&str, &str)]) -> Result<usize, Error> {
    check_headers_within(headers, MAX_RECORD_HEADERS, MAX_RECORD_HEADERS_BYTES)
}

fn check_headers_within(
    headers: &[(&str, &str)],
    max_count: usize,
    max_bytes: usize,
) -> Result<usize, Error> {
    if headers.len() > max_count {
        return Err(Error::TooManyHeaders {
            count: headers.len(),
            max: max_count,
        });
    }
    let mut hbytes = 0usize;
    for (k, v) in headers {
        if k.len() > MAX_HEADER_KEY {
            return Err(Error::HeaderKeyTooLarge {
                len: k.len(),
                max: MAX_HEADER_KEY,
            });
        }
        hbytes = hbytes.saturating_add(k.len()).saturating_add(v.len());
    }
    if hbytes > max_bytes {
        return Err(Error::HeadersTooLarge {
            size: hbytes,
            max: max_bytes,
        });
    }
    Ok(hbytes)
}

/// Validates the limits (the payload against `max_payload`, the headers against the
/// record limits of [`check_record_headers`]) and returns the unpadded encoded length.
/// Nothing is written.
pub(crate) fn encoded_len(rec: &RecordIn<'_>, max_payload: usize) -> Result<u32, Error> {
    if rec.payload.len() > max_payload {
        return Err(Error::RecordTooLarge {
            size: rec.payload.len() as u64,
            max: max_payload as u64,
        });
    }
    let hbytes = check_record_headers(rec.headers)?;
    let dedup = rec.dedup_key.map_or(0, <[u8]>::len);
    let total = (RECORD_HEADER_LEN as u64)
        .saturating_add(hbytes as u64)
        .saturating_add(6 * rec.headers.len() as u64)
        .saturating_add(dedup as u64)
        .saturating_add(rec.payload.len() as u64);
    // Aligned length must also fit in u32 (checked against the segment by the caller).
    match u32::try_from(total) {
        Ok(t) if t <= u32::MAX - 8 => Ok(t),
        _ => Err(Error::RecordTooLarge {
            size: total,
            max: u64::from(u32::MAX - 8),
        }),
    }
}

/// Writes a record of unpadded length `len` (from [`encoded_len`]) at `dst`, except
/// the commit word, and returns nothing; the caller commits.
///
/// # Safety
/// `dst` must be valid for writes of `align8(len)` bytes, 8-aligned, exclusively owned
/// by the caller (a reservation), and hold zeros (padding is not written).
#[inline]
pub(crate) unsafe fn write_record(
    dst: *mut u8,
    len: u32,
    rec: &RecordIn<'_>,
    id: u64,
    ts: u64,
    salt: u32,
) {
    let mut hlen = 0u32;
    for (k, v) in rec.headers {
        // Checked in `encoded_len`: keys <= 256, all headers <= 66 KiB.
        hlen += 6 + k.len() as u32 + v.len() as u32;
    }
    let dedup = rec.dedup_key.unwrap_or(&[]);
    let flags = if rec.dedup_key.is_some() {
        FLAG_DEDUP
    } else {
        0
    };
    // Bytes 8..56 as six little-endian words, built in registers: checksummed and
    // stored from there (no byte array to assemble and read back).
    // Lengths below were bounded by `encoded_len` (total fits in u32).
    let words: [u64; 6] = [
        u64::from(len)
            | u64::from(flags) << 32
            | u64::from(rec.priority) << 40
            | u64::from(rec.compression) << 48,
        id,
        ts,
        rec.expires_at_ns,
        u64::from(hlen) | u64::from(dedup.len() as u32) << 32,
        u64::from(rec.payload.len() as u32) | u64::from(rec.headers.len() as u16) << 32,
    ];
    let mut crc = crate::crc::crc32c_words(salt, &words);
    let mut at = RECORD_HEADER_LEN as usize;
    // SAFETY: [1] the caller owns `dst..dst + align8(len)`, and `len >= 56`; [2] every
    // copy below stays inside `len` because `len` was computed from exactly these
    // pieces; [3] `dst` is 8-aligned, so the word stores at `dst + 8..56` and the
    // u32 store at `dst + 4` are aligned.
    unsafe {
        for (k, v) in rec.headers {
            let mut e = [0u8; 6];
            e[0..2].copy_from_slice(&(k.len() as u16).to_le_bytes());
            e[2..6].copy_from_slice(&(v.len() as u32).to_le_bytes());
            crc = crate::crc::crc32c_append(crc, &e);
            crc = crate::crc::crc32c_append(crc, k.as_bytes());
            crc = crate::crc::crc32c_append(crc, v.as_bytes());
            std::ptr::copy_nonoverlapping(e.as_ptr(), dst.add(at), 6);
            at += 6;
            std::ptr::copy_nonoverlapping(k.as_ptr(), dst.add(at), k.len());
            at += k.len();
            std::ptr::copy_nonoverlapping(v.as_ptr(), dst.add(at), v.len());
            at += v.len();
        }
        if !dedup.is_empty() {
            crc = crate::crc::crc32c_append(crc, dedup);
            std::ptr::copy_nonoverlapping(dedup.as_ptr(), dst.add(at), dedup.len());
            at += dedup.len();
        }
        crc = crate::crc::crc32c_append(crc, rec.payload);
        std::ptr::copy_nonoverlapping(rec.payload.as_ptr(), dst.add(at), rec.payload.len());
        debug_assert_eq!(at + rec.payload.len(), len as usize);
        // Bytes 4..56: everything of the header except the commit word.
        for (i, w) in words.iter().enumerate() {
            dst.add(8 + 8 * i).cast::<u64>().write(w.to_le());
        }
        dst.add(4).cast::<u32>().write(crc.to_le());
    }
}

/// The most records `bytes` of a segment can hold (every record, hole and end marker
/// takes at least 8 aligned bytes): a bound on the IDs a scan of them may find.
pub(crate) fn max_records(bytes: u32) -> u64 {
    u64::from(bytes / 8)
}

/// Whether every byte of `b` is zero. Whole 64-byte blocks are folded with OR (the
/// compiler turns that into vector instructions); a byte-at-a-time `all` with its early
/// exit took about a fifth of an open, in the clean-close check of 64 KiB of zeros.
pub(crate) fn all_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    for block in blocks.by_ref() {
        let mut acc = 0u64;
        for word in block.chunks_exact(8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(word);
            acc |= u64::from_ne_bytes(a);
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

#[inline]
pub(crate) fn rd_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
pub(crate) fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
pub(crate) fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// What the fixed header of a structurally sound record says.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    /// Header + body, unpadded.
    pub len: u32,
    /// The record's ID.
    pub id: u64,
    /// The stored checksum (over bytes `8..len`).
    pub crc: u32,
}

/// Checks the record at `off` in the whole-segment image `seg` (commit word given
/// separately) for bounds and structure, not its checksum. Never panics.
pub(crate) fn record_shape(seg: &[u8], off: u32) -> Result<Shape, &'static str> {
    let off = off as usize;
    let Some(hdr) = seg.get(off..off + RECORD_HEADER_LEN as usize) else {
        return Err("record header runs past the end of the segment");
    };
    let len = rd_u32(hdr, 8);
    if len < RECORD_HEADER_LEN {
        return Err("record length below the header size");
    }
    let end = off as u64 + u64::from(align8(len.min(u32::MAX - 8)));
    if end > seg.len() as u64 {
        return Err("record runs past the end of the segment");
    }
    let h = u64::from(rd_u32(hdr, 40));
    let d = u64::from(rd_u32(hdr, 44));
    let p = u64::from(rd_u32(hdr, 48));
    if u64::from(RECORD_HEADER_LEN) + h + d + p != u64::from(len) {
        return Err("record field lengths do not add up");
    }
    Ok(Shape {
        len,
        id: rd_u64(hdr, 16),
        crc: rd_u32(hdr, 4),
    })
}

/// The bytes a record's checksum covers (`shape` from [`record_shape`] at `off`).
#[inline]
pub(crate) fn checksummed(seg: &[u8], off: u32, shape: Shape) -> &[u8] {
    &seg[off as usize + 8..off as usize + shape.len as usize]
}

/// Checks the record at `off` in the whole-segment image `seg` (commit word given
/// separately): bounds, structure and CRC. Returns `(len, id)`. Never panics.
pub(crate) fn validate_record(seg: &[u8], off: u32, salt: u32) -> Result<(u32, u64), &'static str> {
    let shape = record_shape(seg, off)?;
    if crate::crc::crc32c_append(salt, checksummed(seg, off, shape)) != shape.crc {
        return Err("record checksum mismatch");
    }
    Ok((shape.len, shape.id))
}

/// Checks a hole marker at `off`; returns its length.
pub(crate) fn validate_hole(seg: &[u8], off: u32, salt: u32) -> Result<u32, &'static str> {
    let off = off as usize;
    let Some(hdr) = seg.get(off..off + HOLE_MIN_LEN as usize) else {
        return Err("hole marker runs past the end of the segment");
    };
    if crc32c::crc32c_append(salt, &hdr[8..16]) != rd_u32(hdr, 4) {
        return Err("hole marker checksum mismatch");
    }
    let len = rd_u32(hdr, 8);
    if len < HOLE_MIN_LEN || len % 8 != 0 || off as u64 + u64::from(len) > seg.len() as u64 {
        return Err("hole marker length out of bounds");
    }
    Ok(len)
}

/// Encodes the 16 bytes of a hole marker of `len` bytes (commit word included).
pub(crate) fn hole_marker(len: u32, salt: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&crate::proto::KIND_HOLE.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(salt, &b[8..16]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub base_id: u64,
    pub created_ns: u64,
    pub size: u64,
    pub salt: u32,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.base_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ns.to_le_bytes());
        b[32..40].copy_from_slice(&self.size.to_le_bytes());
        b[40..44].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        let Some(b) = b.get(..SEGMENT_HEADER_LEN as usize) else {
            return Err("file is shorter than a segment header");
        };
        if b[0..8] != MAGIC {
            return Err("bad segment magic");
        }
        if rd_u32(b, 8) != VERSION {
            return Err("unsupported segment format version");
        }
        let mut c = [0u8; SEGMENT_HEADER_LEN as usize];
        c.copy_from_slice(b);
        c[12..16].fill(0);
        if crc32c::crc32c(&c) != rd_u32(b, 12) {
            return Err("segment header checksum mismatch");
        }
        Ok(SegmentHeader {
            base_id: rd_u64(b, 16),
            created_ns: rd_u64(b, 24),
            size: rd_u64(b, 32),
            salt: rd_u32(b, 40),
        })
    }
}

/// A committed record, borrowed from the mapping.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    /// Bytes 8..len of the record (the commit word and CRC are excluded).
    raw: &'a [u8],
    pos: Position,
}

/// Where a record lives: its segment, byte offset and ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u32,
    pub(crate) id: u64,
}

impl Position {
    /// The record's ID.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Base ID of the segment holding the record.
    pub fn segment(&self) -> u64 {
        self.segment
    }
    /// Byte offset of the record in its segment file.
    pub fn offset(&self) -> u32 {
        self.offset
    }
    /// Builds a position from its parts (as stored by the queue).
    pub fn new(segment: u64, offset: u32, id: u64) -> Self {
        Position {
            segment,
            offset,
            id,
        }
    }
}

impl std::fmt::Debug for RecordView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordView")
            .field("pos", &self.pos)
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

// `raw` starts at record byte 8, so record offset N is raw offset N - 8.
impl<'a> RecordView<'a> {
    /// Builds a view over record bytes `8..len`. Returns `None` if the field lengths
    /// are inconsistent with the slice (corrupt bytes never panic).
    pub(crate) fn new(raw: &'a [u8], pos: Position) -> Option<Self> {
        if raw.len() < (RECORD_HEADER_LEN - 8) as usize {
            return None;
        }
        let h = u64::from(rd_u32(raw, 32));
        let d = u64::from(rd_u32(raw, 36));
        let p = u64::from(rd_u32(raw, 40));
        if u64::from(RECORD_HEADER_LEN - 8) + h + d + p != raw.len() as u64 {
            return None;
        }
        Some(RecordView { raw, pos })
    }
    /// The record's ID.
    pub fn id(&self) -> u64 {
        rd_u64(self.raw, 8)
    }
    /// Enqueue time, ns since the UNIX epoch.
    pub fn timestamp_ns(&self) -> u64 {
        rd_u64(self.raw, 16)
    }
    /// Priority.
    pub fn priority(&self) -> u8 {
        self.raw[5]
    }
    /// Compression tag.
    pub fn compression(&self) -> u8 {
        self.raw[6]
    }
    /// Expiry, ns since the UNIX epoch (0 = none).
    pub fn expires_at_ns(&self) -> u64 {
        rd_u64(self.raw, 24)
    }
    fn hlen(&self) -> usize {
        rd_u32(self.raw, 32) as usize
    }
    fn dlen(&self) -> usize {
        rd_u32(self.raw, 36) as usize
    }
    /// The dedup key, if any.
    pub fn dedup_key(&self) -> Option<&'a [u8]> {
        if self.raw[4] & FLAG_DEDUP == 0 {
            return None;
        }
        let at = (RECORD_HEADER_LEN - 8) as usize + self.hlen();
        self.raw.get(at..at + self.dlen())
    }
    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        let at = (RECORD_HEADER_LEN - 8) as usize + self.hlen() + self.dlen();
        self.raw.get(at..).unwrap_or(&[])
    }
    /// The headers in order. Stops early on malformed bytes (never panics).
    pub fn headers(&self) -> Headers<'a> {
        let at = (RECORD_HEADER_LEN - 8) as usize;
        let bytes = self.raw.get(at..at + self.hlen()).unwrap_or(&[]);
        Headers {
            bytes,
            left: rd_u16(self.raw, 44),
        }
    }

    /// The record's length in bytes before padding (its header included).
    pub(crate) fn raw_len(&self) -> u32 {
        // `raw` is bytes 8..len of a record whose len is a u32.
        u32::try_from(self.raw.len() + 8).expect("a record's length fits in u32")
    }

    /// Where the record lives.
    pub fn position(&self) -> Position {
        self.pos
    }
}

/// Iterator over a record's headers.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    bytes: &'a [u8],
    left: u16,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.bytes.len() < 6 {
            return None;
        }
        self.left -= 1;
        let k = rd_u16(self.bytes, 0) as usize;
        let v = rd_u32(self.bytes, 2) as usize;
        let rest = &self.bytes[6..];
        if rest.len() < k || rest.len() - k < v {
            self.bytes = &[];
            return None;
        }
        let key = std::str::from_utf8(&rest[..k]).ok();
        let val = std::str::from_utf8(&rest[k..k + v]).ok();
        self.bytes = &rest[k + v..];
        match (key, val) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => {
                self.bytes = &[];
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn all_zero_finds_a_nonzero_byte_anywhere() {
        for len in [0usize, 1, 7, 63, 64, 65, 200, 4096] {
            let mut b = vec![0u8; len];
            assert!(all_zero(&b), "{len}");
            for i in 0..len {
                b[i] = 0x10;
                assert!(!all_zero(&b), "{len} {i}");
                b[i] = 0;
            }
        }
    }

    fn encode(rec: &RecordIn<'_>, id: u64, salt: u32) -> Vec<u8> {
        let len = encoded_len(rec, 1 << 20).unwrap();
        let mut buf = vec![0u64; align8(len) as usize / 8];
        let p = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: `buf` is a zeroed, 8-aligned, exclusively owned buffer of align8(len) bytes.
        unsafe { write_record(p, len, rec, id, rec.timestamp_ns.unwrap_or(7), salt) };
        // SAFETY: reinterpreting an owned u64 buffer as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, align8(len) as usize) }.to_vec();
        bytes
    }

    #[test]
    fn limits_are_typed_errors() {
        let p = vec![0u8; 11];
        assert!(matches!(
            encoded_len(&RecordIn::new(&p), 10),
            Err(Error::RecordTooLarge { size: 11, max: 10 })
        ));
        // A message may be given 64 headers; a record may carry 4 more.
        let hs: Vec<(&str, &str)> = (0..65).map(|_| ("k", "v")).collect();
        assert!(matches!(
            check_headers(&hs),
            Err(Error::TooManyHeaders { count: 65, max: 64 })
        ));
        let r = RecordIn {
            headers: &hs[..64],
            ..RecordIn::new(b"x")
        };
        assert!(check_headers(r.headers).is_ok());
        assert!(encoded_len(&r, 10).is_ok());
        let hs: Vec<(&str, &str)> = (0..69).map(|_| ("k", "v")).collect();
        let r = RecordIn {
            headers: &hs[..68],
            ..RecordIn::new(b"x")
        };
        assert!(encoded_len(&r, 10).is_ok());
        let r = RecordIn {
            headers: &hs,
            ..RecordIn::new(b"x")
        };
        assert!(matches!(
            encoded_len(&r, 10),
            Err(Error::TooManyHeaders { count: 69, max: 68 })
        ));
        let k = "k".repeat(257);
        let hs = [(k.as_str(), "v")];
        let r = RecordIn {
            headers: &hs,
            ..RecordIn::new(b"x")
        };
        assert!(matches!(
            encoded_len(&r, 10),
            Err(Error::HeaderKeyTooLarge { len: 257, max: 256 })
        ));
        // 64 KiB of keys and values for a message, 2 KiB more for a record.
        let v = "v".repeat(MAX_HEADERS_BYTES - 2);
        let hs = [("a", v.as_str()), ("b", "")];
        assert_eq!(check_headers(&hs).unwrap(), MAX_HEADERS_BYTES);
        let hs = [("a", v.as_str()), ("bc", "")];
        assert!(matches!(
            check_headers(&hs),
            Err(Error::HeadersTooLarge {
                size: 65537,
                max: 65536
            })
        ));
        let extra = "e".repeat(RESERVED_HEADERS_BYTES - 1);
        let hs = [("a", v.as_str()), ("b", ""), ("c", extra.as_str())];
        assert!(encoded_len(
            &RecordIn {
                headers: &hs,
                ..RecordIn::new(b"x")
            },
            10
        )
        .is_ok());
        let hs = [("a", v.as_str()), ("b", ""), ("cd", extra.as_str())];
        assert!(matches!(
            encoded_len(
                &RecordIn {
                    headers: &hs,
                    ..RecordIn::new(b"x")
                },
                10
            ),
            Err(Error::HeadersTooLarge {
                size: 67585,
                max: 67584
            })
        ));
    }

    #[test]
    fn segment_header_roundtrip_and_damage() {
        let h = SegmentHeader {
            base_id: 42,
            created_ns: 9,
            size: 65536,
            salt: 0xdead_beef,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[20] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
        assert!(SegmentHeader::decode(&[0u8; 10]).is_err());
    }

    #[test]
    fn hole_marker_validates() {
        let mut seg = vec![0u8; 128];
        seg[64..80].copy_from_slice(&hole_marker(48, 5));
        assert_eq!(validate_hole(&seg, 64, 5), Ok(48));
        assert!(validate_hole(&seg, 64, 6).is_err());
    }

    #[test]
    fn salt_matters() {
        let b = encode(&RecordIn::new(b"hello"), 3, 1);
        assert!(validate_record(&b, 0, 1).is_ok());
        assert!(validate_record(&b, 0, 2).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..300),
                     prio in any::<u8>(), comp in any::<u8>(), exp in any::<u64>(), ts in any::<u64>(),
                     dedup in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                     hdrs in proptest::collection::vec(("[a-z]{0,8}", "\\PC{0,12}"), 0..6),
                     id in any::<u64>(), salt in any::<u32>()) {
            let hs: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let rec = RecordIn { payload: &payload, priority: prio, expires_at_ns: exp, headers: &hs,
                compression: comp, dedup_key: dedup.as_deref(), timestamp_ns: Some(ts) };
            let b = encode(&rec, id, salt);
            let (len, got_id) = validate_record(&b, 0, salt).unwrap();
            prop_assert_eq!(got_id, id);
            let v = RecordView::new(&b[8..len as usize], Position::new(1, 0, id)).unwrap();
            prop_assert_eq!(v.id(), id);
            prop_assert_eq!(v.timestamp_ns(), ts);
            prop_assert_eq!(v.priority(), prio);
            prop_assert_eq!(v.compression(), comp);
            prop_assert_eq!(v.expires_at_ns(), exp);
            prop_assert_eq!(v.payload(), &payload[..]);
            prop_assert_eq!(v.dedup_key(), dedup.as_deref());
            let got: Vec<(&str, &str)> = v.headers().collect();
            prop_assert_eq!(got, hs);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), off in 0u32..200) {
            let _ = validate_record(&bytes, off, 1);
            let _ = validate_hole(&bytes, off, 1);
            let _ = SegmentHeader::decode(&bytes);
            if bytes.len() >= 48 {
                if let Some(v) = RecordView::new(&bytes, Position::new(0, 0, 0)) {
                    let _ = (v.payload(), v.dedup_key(), v.headers().count());
                }
            }
        }
    }
}
