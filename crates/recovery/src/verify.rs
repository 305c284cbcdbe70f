//! The read-only verification report of a queue directory.
//!
//! The segment format is the journal's (byte map in `ledgerq_journal`'s codec module).
//! Headers, records and hole markers are checked with `ledgerq_journal::format`, the
//! same checks the journal applies; the scan here walks a segment like the journal's
//! open-time scan, but reports damage instead of failing: a record is valid when its
//! lengths add up and its CRC32C (seeded with the segment salt) matches, and its ID is
//! at least the one after the previous record.
//!
//! Which segments count as the tail (where a torn write after a crash is expected, and
//! reported as a torn tail rather than corruption) is decided as at open: from the
//! segment named by a valid `CHECKPOINT` on, else the last two segments. Below the
//! offset the checkpoint recorded as flushed, damage is corruption even in the tail.
//!
//! IDs missing between valid records are listed as gaps; those that nothing explains
//! (holes and damage passed, a torn tail open repairs, an end marker tagged
//! `END_GAP`), as readers check them, are corruption too: a missing segment file, a
//! record zeroed in a segment open does not scan. So is a first segment that starts
//! above the consumer state's watermark (segment files of unconsumed messages gone).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ledgerq_journal::format::{
    check_hole as validate_hole, check_record as validate_record, checkpoint as decode_checkpoint,
    checkpoint_tail_start, segment_header as decode_header,
};
use ledgerq_journal::proto::{END_GAP, KIND_END, KIND_HOLE, KIND_RECORD};
use ledgerq_journal::{
    Checkpoint, CHECKPOINT_FILE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};

/// Name of the default consumer group's state file.
pub const CONSUMER_STATE_FILE: &str = "consumer.default.state";

const HOLE_MIN_LEN: usize = 16;
const STATE_MAGIC: [u8; 8] = *b"LQSTATE\x01";
const STATE_VERSION: u32 = 1;
const STATE_HEADER: u64 = 4096;

/// Why [`verify`] could not produce a report. Damage is never an error: it is in the
/// [`Report`].
#[derive(Debug)]
pub enum Error {
    /// Reading the directory or a file failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The path is not a directory.
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "{op} failed for {}: {source}", path.display())
            }
            Error::NotADirectory { path } => {
                write!(f, "{} is not a queue directory", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::NotADirectory { .. } => None,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// Base ID from the file name.
    pub base_id: u64,
    /// Size of the file in bytes.
    pub size: u64,
    /// ID of the first valid record, if any.
    pub first_id: Option<u64>,
    /// ID of the last valid record, if any.
    pub last_id: Option<u64>,
    /// Valid records.
    pub records: u64,
    /// Hole markers (reservations never committed, marked by recovery).
    pub hole_markers: u64,
    /// Bytes from the start of the file to the end of the last valid record, hole or
    /// end marker (header included).
    pub bytes_used: u64,
    /// The segment ends with an end marker: no more appends go to it.
    pub sealed: bool,
    /// The header is valid (if not, nothing else of the segment was read).
    pub header_ok: bool,
}

/// Damage that opening in `RecoveryMode::Strict` reports (or that no open repairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The damaged file.
    pub path: PathBuf,
    /// Byte offset of the damage in that file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Bytes after the last valid record of a segment that opening scans (see
/// [`Report::tail_from`]) that are not a valid record and are followed by none: a write
/// torn by a crash. Opening the queue
/// zeroes them (nothing acknowledged as written is lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the torn bytes start.
    pub offset: u64,
    /// Bytes from `offset` to the last nonzero byte.
    pub len: u64,
    /// What is at `offset`.
    pub reason: String,
}

/// A span of a segment that holds no record: a hole marker written by recovery, or a
/// reservation never committed (followed by valid records) that the next open marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoleMarker {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the span.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Whether recovery already marked it (`false`: still an uncommitted reservation).
    pub marked: bool,
}

/// IDs `from..to` that no record holds (lost in holes, skipped, or never assigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdGap {
    /// First missing ID.
    pub from: u64,
    /// ID after the last missing one.
    pub to: u64,
}

/// The default consumer group's state (`consumer.default.state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerState {
    /// The file.
    pub path: PathBuf,
    /// Every ID below this is consumed (auto-ack) or acknowledged (manual), if the
    /// file could be read.
    pub watermark: Option<u64>,
    /// A problem with the file (format, size), if any.
    pub problem: Option<String>,
    /// Of the messages at or above the watermark with a recorded state (manual
    /// acknowledgement, or priority delivery): how many are acknowledged (or consumed)
    /// and wait for the watermark to pass them.
    pub acknowledged: u64,
    /// How many were delivered and not acknowledged: leased now, or delivered before a
    /// restart (each is delivered again, its count one higher).
    pub delivered: u64,
    /// The highest delivery count among those.
    pub max_deliveries: u64,
    /// How many were being moved to the dead-letter queue.
    pub dead_lettering: u64,
}

/// The checkpoint file (`CHECKPOINT`): the durable position recorded after a flush,
/// from which open scans the segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The file.
    pub path: PathBuf,
    /// Its contents, if the file is a valid checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// Why open does not use it, if so: the file is torn or corrupt, or it does not
    /// match the segment files (then open scans the last two segments, as without a
    /// checkpoint). Nothing is lost by it; the next flush rewrites the file.
    pub problem: Option<String>,
    /// The checkpointed segment's valid data ends before the checkpointed offset:
    /// records that were flushed are missing (the file was damaged or cut).
    pub ahead_of_data: bool,
}

/// What [`verify`] found. `Display` prints it for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The directory.
    pub dir: PathBuf,
    /// Every segment file, in base ID order.
    pub segments: Vec<SegmentReport>,
    /// Hole markers and uncommitted reservations.
    pub holes: Vec<HoleMarker>,
    /// IDs missing between valid records (across segments too).
    pub gaps: Vec<IdGap>,
    /// Torn tails (repaired by the next open).
    pub torn: Vec<TornTail>,
    /// Corruption.
    pub corruption: Vec<Corruption>,
    /// The consumer state, if the file exists.
    pub consumer: Option<ConsumerState>,
    /// The checkpoint, if the file exists.
    pub checkpoint: Option<CheckpointReport>,
    /// Base ID of the first segment that opening scans (the tail), if any segment
    /// exists: the checkpointed segment, or the second to last without a usable
    /// checkpoint. Segments before it are read only by consumers.
    pub tail_from: Option<u64>,
}

impl Report {
    /// No corruption, no torn tail and a readable consumer state: the directory opens
    /// in strict mode without repairs that lose data. Holes, and ID gaps that crashes
    /// explain (hole markers, torn tails, end markers recovery tagged), are normal and
    /// do not count, nor does a missing or unusable checkpoint (open then scans more,
    /// and loses nothing). IDs missing otherwise are [`Report::corruption`].
    pub fn is_clean(&self) -> bool {
        self.corruption.is_empty()
            && self.torn.is_empty()
            && self.consumer.as_ref().is_none_or(|c| c.problem.is_none())
    }

    /// Valid records in all segments.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// The first valid ID, if any.
    pub fn first_id(&self) -> Option<u64> {
        self.segments.iter().find_map(|s| s.first_id)
    }

    /// The last valid ID, if any.
    pub fn last_id(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(|s| s.last_id)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "queue directory {}", self.dir.display())?;
        let ids = match (self.first_id(), self.last_id()) {
            (Some(a), Some(b)) => format!("IDs {a}..={b}"),
            _ => "no records".to_string(),
        };
        writeln!(
            f,
            "{} segment(s), {} record(s), {ids}",
            self.segments.len(),
            self.records()
        )?;
        for s in &self.segments {
            let name = s.path.file_name().map_or_else(
                || s.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            if !s.header_ok {
                writeln!(f, "  {name}  base {}  bad header", s.base_id)?;
                continue;
            }
            let ids = match (s.first_id, s.last_id) {
                (Some(a), Some(b)) => format!("IDs {a}..={b}"),
                _ => "empty".to_string(),
            };
            writeln!(
                f,
                "  {name}  base {}  {ids}  {} record(s)  {} of {} bytes used  {}{}",
                s.base_id,
                s.records,
                s.bytes_used,
                s.size,
                if s.sealed { "sealed" } else { "open" },
                if s.hole_markers > 0 {
                    format!("  {} hole(s)", s.hole_markers)
                } else {
                    String::new()
                }
            )?;
        }
        for h in &self.holes {
            writeln!(
                f,
                "hole: {} at offset {}, {} bytes{}",
                h.path.display(),
                h.offset,
                h.len,
                if h.marked {
                    ""
                } else {
                    " (uncommitted reservation; marked at next open)"
                }
            )?;
        }
        for g in &self.gaps {
            writeln!(f, "missing IDs: {}..{}", g.from, g.to)?;
        }
        for t in &self.torn {
            writeln!(
                f,
                "torn tail: {} at offset {}, {} bytes: {} (zeroed at next open)",
                t.path.display(),
                t.offset,
                t.len,
                t.reason
            )?;
        }
        for c in &self.corruption {
            writeln!(
                f,
                "CORRUPT: {} at offset {}: {}",
                c.path.display(),
                c.offset,
                c.reason
            )?;
        }
        match &self.checkpoint {
            None => writeln!(f, "checkpoint: none; open scans the last two segments")?,
            Some(c) => {
                if let Some(cp) = &c.checkpoint {
                    write!(
                        f,
                        "checkpoint: segment {} offset {}, next ID {}",
                        cp.segment_base, cp.offset, cp.next_id
                    )?;
                    if let Some(x) = cp.extra {
                        write!(f, ", consumer watermark {x}")?;
                    }
                    if cp.clean {
                        write!(f, " (written by a clean close")?;
                        if cp.check_from != 0 {
                            write!(f, "; open checks the records from offset {}", cp.check_from)?;
                        }
                        write!(f, ")")?;
                    }
                    writeln!(f)?;
                }
                match &c.problem {
                    Some(p) => writeln!(
                        f,
                        "checkpoint: not used ({p}); open scans the last two segments"
                    )?,
                    None => {
                        if let Some(t) = self.tail_from {
                            writeln!(f, "checkpoint: open scans from segment {t} on")?;
                        }
                    }
                }
                if c.ahead_of_data {
                    writeln!(
                        f,
                        "checkpoint: records it recorded as flushed are missing from segment {}",
                        c.checkpoint.map_or(0, |cp| cp.segment_base)
                    )?;
                }
            }
        }
        match &self.consumer {
            None => writeln!(f, "consumer state: none")?,
            Some(c) => {
                match c.watermark {
                    Some(w) => {
                        let pending = self.last_id().map_or(0, |l| (l + 1).saturating_sub(w));
                        writeln!(
                            f,
                            "consumer state: watermark {w} (IDs below are consumed), {pending} ID(s) at or above it"
                        )?;
                        if c.acknowledged + c.delivered + c.dead_lettering > 0 {
                            writeln!(
                                f,
                                "consumer state: above it {} acknowledged, {} delivered and not acknowledged (at most {} time(s)), {} being dead-lettered",
                                c.acknowledged, c.delivered, c.max_deliveries, c.dead_lettering
                            )?;
                        }
                        if self.last_id().is_some_and(|l| w > l + 1) {
                            writeln!(
                                f,
                                "consumer state: watermark is ahead of the journal (its tail was lost); open clamps it"
                            )?;
                        }
                    }
                    None => writeln!(f, "consumer state: unreadable")?,
                }
                if let Some(p) = &c.problem {
                    writeln!(f, "CORRUPT: {}: {p}", c.path.display())?;
                }
            }
        }
        writeln!(
            f,
            "{}",
            if self.is_clean() {
                "clean"
            } else {
                "NOT CLEAN"
            }
        )
    }
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The first valid record after `off` (8-aligned, leaving room for a hole marker)
/// with an ID of at least `next_id`.
fn find_next_valid(s: &[u8], off: usize, salt: u32, next_id: u64) -> Option<usize> {
    let mut p = off + HOLE_MIN_LEN;
    while p + 8 <= s.len() {
        if rd_u32(s, p) == KIND_RECORD {
            if let Ok((_, id)) = validate_record(s, p, salt) {
                if id >= next_id {
                    return Some(p);
                }
            }
        }
        p += 8;
    }
    None
}

/// What the scan carries from record to record, and from one segment to the next, to
/// tell IDs lost in a crash (explained) from IDs whose records vanished (corruption),
/// by the rule readers apply: missing IDs must be explained by the bytes of holes and
/// damage passed since the last valid record (each ID took at least a record header),
/// or follow an end marker tagged `END_GAP`, or a torn tail that open repairs (and then
/// tags).
#[derive(Default)]
struct Flow {
    /// The ID the next valid record should have, barring holes (`None` before the
    /// first segment).
    expect: Option<u64>,
    /// Bytes of holes and damage passed since the last valid record.
    passed: u64,
    /// Any gap up to the next valid record is accepted (or was reported already).
    accepted: bool,
    /// The previous segment ended at a slot never committed, here.
    uncommitted_end: Option<(PathBuf, u64)>,
}

impl Flow {
    /// IDs missing before `id` that nothing explains, as `from..to`.
    fn missing_before(&self, id: u64) -> Option<(u64, u64)> {
        let e = self.expect?;
        (id > e && !self.accepted && id - e > self.passed / u64::from(RECORD_HEADER_LEN))
            .then_some((e, id))
    }

    /// A valid record `id` was read.
    fn record(&mut self, id: u64) {
        *self = Flow {
            expect: Some(id + 1),
            ..Flow::default()
        };
    }
}

/// Reports IDs missing between the segments read so far and the segment `base` at
/// `path`, and starts that segment in `flow`.
fn enter_segment(base: u64, path: &Path, flow: &mut Flow, r: &mut Report) {
    if let Some((from, to)) = flow.missing_before(base) {
        let c = match flow.uncommitted_end.take() {
            Some((p, offset)) => Corruption {
                path: p,
                offset,
                reason: format!(
                    "record never committed in a segment followed by another: IDs \
                     {from}..{to} are missing (a record was zeroed or the segment was cut)"
                ),
            },
            None => Corruption {
                path: path.to_path_buf(),
                offset: 16,
                reason: format!(
                    "segment starts at ID {to}, but the IDs before it end at {}: IDs \
                     {from}..{to} are missing (a segment file is missing)",
                    from - 1
                ),
            },
        };
        r.corruption.push(c);
    }
    *flow = Flow {
        expect: Some(flow.expect.map_or(base, |e| e.max(base))),
        ..Flow::default()
    };
}

/// Scans one segment (its base ID, path and bytes); `tail` says whether open scans it (where a torn write is
/// expected after a crash rather than corruption). `durable_end` is the offset below
/// which the checkpoint recorded the segment as flushed (0 if it names another one):
/// damage there is corruption even in the tail.
fn scan_segment(
    (base, path, s): (u64, &Path, &[u8]),
    tail: bool,
    durable_end: u64,
    next_expected: &mut Option<u64>,
    flow: &mut Flow,
    r: &mut Report,
) -> Result<(), Error> {
    let mut seg = SegmentReport {
        path: path.to_path_buf(),
        base_id: base,
        size: s.len() as u64,
        first_id: None,
        last_id: None,
        records: 0,
        hole_markers: 0,
        bytes_used: 0,
        sealed: false,
        header_ok: false,
    };
    let corrupt = |r: &mut Report, offset: u64, reason: String| {
        r.corruption.push(Corruption {
            path: path.to_path_buf(),
            offset,
            reason,
        });
    };
    let header_len = SEGMENT_HEADER_LEN as usize;
    let unborn = s.iter().take(header_len).all(|&b| b == 0)
        || (decode_header(s).is_err() && s.iter().skip(header_len).all(|&b| b == 0));
    if tail && unborn {
        // A segment created but whose header never reached the disk (whole): open
        // removes it.
        r.torn.push(TornTail {
            path: path.to_path_buf(),
            offset: 0,
            len: s.iter().rposition(|&b| b != 0).map_or(0, |p| p as u64 + 1),
            reason: "segment header never written whole (removed at next open)".into(),
        });
        r.segments.push(seg);
        flow.accepted = true;
        return Ok(());
    }
    let salt = match decode_header(s) {
        Ok((hbase, size, salt)) => {
            let len = s.len() as u64;
            if hbase != base {
                corrupt(
                    r,
                    16,
                    format!("header base ID {hbase} does not match the file name"),
                );
                None
            } else if size != len
                || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&len)
                || len % 8 != 0
            {
                corrupt(
                    r,
                    32,
                    format!("header size {size} does not match file length {len}"),
                );
                None
            } else {
                Some(salt)
            }
        }
        Err(reason) => {
            corrupt(r, 0, reason.to_string());
            None
        }
    };
    let Some(salt) = salt else {
        r.segments.push(seg);
        flow.accepted = true;
        return Ok(());
    };
    seg.header_ok = true;
    let mut off = SEGMENT_HEADER_LEN as usize;
    let mut next_id = base;
    while off + 8 <= s.len() {
        let commit = rd_u32(s, off);
        let flushed = (off as u64) < durable_end;
        let bad: String = match commit {
            KIND_END if flushed => "end marker".to_string(),
            KIND_END => {
                seg.sealed = true;
                flow.accepted |= rd_u32(s, off + 4) == END_GAP;
                off += 8;
                break;
            }
            KIND_RECORD => match validate_record(s, off, salt) {
                Ok((len, id)) if id >= next_id => {
                    if let Some((from, to)) = flow.missing_before(id) {
                        corrupt(
                            r,
                            off as u64,
                            format!(
                                "IDs {from}..{to} are missing before this record (a record \
                                 was zeroed or overwritten)"
                            ),
                        );
                    }
                    flow.record(id);
                    if let Some(n) = *next_expected {
                        if id > n {
                            r.gaps.push(IdGap { from: n, to: id });
                        }
                    }
                    seg.first_id.get_or_insert(id);
                    seg.last_id = Some(id);
                    seg.records += 1;
                    *next_expected = Some(id + 1);
                    next_id = id + 1;
                    off += len as usize;
                    continue;
                }
                Ok((_, id)) => format!("record ID {id} out of order (expected at least {next_id})"),
                Err(reason) => reason.to_string(),
            },
            KIND_HOLE => match validate_hole(s, off, salt) {
                Ok(len) => {
                    r.holes.push(HoleMarker {
                        path: path.to_path_buf(),
                        offset: off as u64,
                        len,
                        marked: true,
                    });
                    seg.hole_markers += 1;
                    flow.passed += len;
                    off += len as usize;
                    continue;
                }
                Err(reason) => reason.to_string(),
            },
            0 => "record reserved but never committed".to_string(),
            w => format!("unknown commit word {w:#010x}"),
        };
        let below_durable = || {
            format!(
                "{bad}, below offset {durable_end} up to which the checkpoint recorded the \
                 segment as flushed (flushed records are damaged or missing)"
            )
        };
        match find_next_valid(s, off, salt, next_id) {
            Some(next) => {
                if flushed {
                    corrupt(r, off as u64, below_durable());
                } else if commit != 0 {
                    corrupt(r, off as u64, bad);
                } else if !tail {
                    // Open marks holes only in the tail: in a segment before it every
                    // reservation was committed before the checkpoint moved past it.
                    corrupt(
                        r,
                        off as u64,
                        format!("{bad} in a segment that open does not scan (a record was zeroed)"),
                    );
                } else {
                    r.holes.push(HoleMarker {
                        path: path.to_path_buf(),
                        offset: off as u64,
                        len: (next - off) as u64,
                        marked: false,
                    });
                }
                flow.passed += (next - off) as u64;
                off = next;
            }
            None => {
                let nonzero = s[off..].iter().rposition(|&b| b != 0);
                if flushed {
                    corrupt(r, off as u64, below_durable());
                    flow.accepted = true;
                } else if tail {
                    if let Some(last) = nonzero {
                        r.torn.push(TornTail {
                            path: path.to_path_buf(),
                            offset: off as u64,
                            len: last as u64 + 1,
                            reason: bad,
                        });
                    }
                    // Open cuts it and tags the end: the IDs reserved there are lost in
                    // the crash, not missing.
                    flow.accepted = true;
                } else if nonzero.is_some() {
                    corrupt(r, off as u64, format!("{bad} (nothing valid follows)"));
                    flow.accepted = true;
                } else {
                    // Zeros to the end: the segment ends here (an end marker is not
                    // always flushed), and the next one must continue its IDs.
                    flow.uncommitted_end = Some((path.to_path_buf(), off as u64));
                }
                break;
            }
        }
    }
    seg.bytes_used = off.min(s.len()) as u64;
    r.segments.push(seg);
    Ok(())
}

fn read_consumer_state(path: &Path) -> Result<Option<ConsumerState>, Error> {
    let b = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read consumer state", path)(e)),
    };
    let mut st = ConsumerState {
        path: path.to_path_buf(),
        watermark: None,
        problem: None,
        acknowledged: 0,
        delivered: 0,
        max_deliveries: 0,
        dead_lettering: 0,
    };
    if b.len() < 24 {
        st.problem = Some(format!("file is {} bytes, too short for a header", b.len()));
        return Ok(Some(st));
    }
    if b[0..8] != STATE_MAGIC {
        st.problem = Some("bad magic: not a LedgerQ consumer state file".into());
        return Ok(Some(st));
    }
    let version = rd_u32(&b, 8);
    if version != STATE_VERSION {
        st.problem = Some(format!("unsupported format version {version}"));
        return Ok(Some(st));
    }
    let bits = rd_u32(&b, 12);
    st.watermark = Some(rd_u64(&b, 16));
    let want = if bits < 32 {
        Some(STATE_HEADER + 8 * (1u64 << bits))
    } else {
        None
    };
    if want != Some(b.len() as u64) {
        st.problem = Some(format!(
            "file is {} bytes, which does not match a window of {bits} bits",
            b.len()
        ));
        return Ok(Some(st));
    }
    // The entries (byte map in the queue's `state` module): `(lap + 1) << 8 | state`
    // for the message `lap << bits | index`; state 0xFF acknowledged, 0xFE being
    // dead-lettered, 1..=253 delivered that many times. Entries of messages below the
    // watermark (earlier laps included) are settled and left out.
    let w = rd_u64(&b, 16);
    for (index, e) in b[STATE_HEADER as usize..].chunks_exact(8).enumerate() {
        let e = u64::from_le_bytes(e.try_into().expect("8 bytes"));
        let lap = (e >> 8).wrapping_sub(1);
        let id = lap.checked_shl(bits).map(|l| l | index as u64);
        if e == 0 || id.is_none_or(|id| id < w) {
            continue;
        }
        match e & 0xFF {
            0xFF => st.acknowledged += 1,
            0xFE => st.dead_lettering += 1,
            n @ 1..=253 => {
                st.delivered += 1;
                st.max_deliveries = st.max_deliveries.max(n);
            }
            _ => {}
        }
    }
    Ok(Some(st))
}

/// The checkpoint file's report (`None` if there is none) and the index of the first
/// segment open scans.
fn read_checkpoint(
    dir: &Path,
    found: &[(u64, PathBuf)],
) -> Result<(Option<CheckpointReport>, usize), Error> {
    let fallback = found.len().saturating_sub(2);
    let path = dir.join(CHECKPOINT_FILE);
    let b = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, fallback)),
        Err(e) => return Err(io_err("read checkpoint", &path)(e)),
    };
    let mut rep = CheckpointReport {
        path,
        checkpoint: None,
        problem: None,
        ahead_of_data: false,
    };
    let cp = match decode_checkpoint(&b) {
        Ok(cp) => cp,
        Err(reason) => {
            rep.problem = Some(reason.to_string());
            return Ok((Some(rep), fallback));
        }
    };
    rep.checkpoint = Some(cp);
    let bases: Vec<u64> = found.iter().map(|f| f.0).collect();
    let salt_of = |i: usize| -> Option<u32> {
        use std::io::Read;
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        fs::File::open(&found[i].1).ok()?.read_exact(&mut h).ok()?;
        decode_header(&h).ok().map(|(_, _, salt)| salt)
    };
    match checkpoint_tail_start(&cp, &bases, salt_of) {
        Ok(k) => Ok((Some(rep), k)),
        Err(reason) => {
            rep.problem = Some(reason.to_string());
            Ok((Some(rep), fallback))
        }
    }
}

/// How many times [`verify`] starts again when the queue's owner removes consumed
/// segments while it reads them.
const VERIFY_ATTEMPTS: usize = 20;

/// Reads the queue directory `dir` and reports on every segment, hole, gap, torn
/// tail and corruption, and on the consumer state. Writes and creates nothing.
///
/// Works beside a live owner: if segments it listed are removed before it reads them
/// (compaction removes the oldest, consumed segments), it starts again.
///
/// # Errors
/// [`Error::NotADirectory`] if `dir` is not a directory, [`Error::Io`] if it or a file
/// in it cannot be read. Damage is reported in the [`Report`], not as an error.
pub fn verify(dir: &Path) -> Result<Report, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match verify_once(dir, attempt < VERIFY_ATTEMPTS)? {
            Some(r) => return Ok(r),
            None => continue,
        }
    }
}

/// One pass of [`verify`]: `None` if `retry` and a segment it listed was removed
/// together with every segment listed before it (compaction at work).
fn verify_once(dir: &Path, retry: bool) -> Result<Option<Report>, Error> {
    let meta = fs::metadata(dir).map_err(io_err("open queue directory", dir))?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut found = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let ent = ent.map_err(io_err("read directory", dir))?;
        let name = ent.file_name();
        if let Some(base) = name.to_str().and_then(parse_segment_name) {
            found.push((base, ent.path()));
        }
    }
    found.sort();
    let mut r = Report {
        dir: dir.to_path_buf(),
        segments: Vec::new(),
        holes: Vec::new(),
        gaps: Vec::new(),
        torn: Vec::new(),
        corruption: Vec::new(),
        consumer: None,
        checkpoint: None,
        tail_from: None,
    };
    let (checkpoint, tail_from) = read_checkpoint(dir, &found)?;
    r.tail_from = found.get(tail_from).map(|f| f.0);
    // The checkpointed segment (when open uses the checkpoint) and how far it was
    // flushed.
    let durable = checkpoint
        .as_ref()
        .filter(|c| c.problem.is_none())
        .and_then(|c| c.checkpoint)
        .map(|cp| (cp.segment_base, u64::from(cp.offset)));
    let mut next_expected = None;
    let mut flow = Flow::default();
    for (i, (base, path)) in found.iter().enumerate() {
        if let Some(next) = next_expected {
            if *base < next {
                r.corruption.push(Corruption {
                    path: path.clone(),
                    offset: 16,
                    reason: format!(
                        "segment base ID {base} overlaps the previous segment (IDs up to {})",
                        next - 1
                    ),
                });
            }
        }
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e)
                if retry
                    && e.kind() == io::ErrorKind::NotFound
                    && found[..i].iter().all(|(_, p)| !p.exists()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(io_err("read segment", path)(e)),
        };
        enter_segment(*base, path, &mut flow, &mut r);
        let durable_end = durable
            .filter(|(b, _)| b == base)
            .map_or(0, |(_, offset)| offset);
        scan_segment(
            (*base, path, &bytes),
            i >= tail_from,
            durable_end,
            &mut next_expected,
            &mut flow,
            &mut r,
        )?;
    }
    r.checkpoint = checkpoint.map(|mut c| {
        if let (Some(cp), None) = (c.checkpoint, &c.problem) {
            c.ahead_of_data = r
                .segments
                .iter()
                .find(|s| s.base_id == cp.segment_base)
                .is_some_and(|s| s.bytes_used < u64::from(cp.offset));
        }
        c
    });
    // A checkpoint naming a segment after every file: records it recorded as flushed
    // are gone with that segment (as open reports).
    if let Some(cp) = r.checkpoint.as_ref().and_then(|c| c.checkpoint) {
        let last = r.segments.last();
        let have = last.map_or(1, |s| s.last_id.map_or(s.base_id, |l| l + 1));
        if last.is_none_or(|s| cp.segment_base > s.base_id) && cp.next_id > have {
            r.corruption.push(Corruption {
                path: dir.join(format!("{:020}.seg", cp.segment_base)),
                offset: 0,
                reason: format!(
                    "missing: the checkpoint records this segment as flushed up to ID {}, \
                     but the segment files end at ID {}: IDs {have}..{} are missing",
                    cp.next_id - 1,
                    have - 1,
                    cp.next_id
                ),
            });
        }
    }
    r.consumer = read_consumer_state(&dir.join(CONSUMER_STATE_FILE))?;
    // Segments are removed only once wholly below the consumed watermark, which is
    // made durable first: a first segment above it means unconsumed messages are gone.
    if let (Some(c), Some(first)) = (&r.consumer, r.segments.first()) {
        if let Some(w) = c.watermark.filter(|&w| w.max(1) < first.base_id) {
            let (from, to) = (w.max(1), first.base_id);
            r.corruption.push(Corruption {
                path: c.path.clone(),
                offset: 16,
                reason: format!(
                    "IDs {from}..{to} are missing: they were not consumed (the consumed \
                     watermark is {w}), but the first segment file starts at ID {to} (the \
                     segment files that held them are missing)"
                ),
            });
        }
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerq_journal::{Journal, JournalOptions, RecordIn};
    use std::collections::BTreeMap;

    const SEG: u64 = 64 << 10;

    /// A journal of `n` records of 200 bytes (several segments), closed.
    fn journal(n: u64) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(t.path(), JournalOptions::new().segment_size(SEG)).unwrap();
        for i in 0..n {
            j.append(&RecordIn::new(&[i as u8; 200])).unwrap();
        }
        j.close().unwrap();
        t
    }

    /// Every file's bytes, to prove verify writes nothing.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
    }

    fn segs(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn clean_journal_reports_every_segment_and_record() {
        let t = journal(1000);
        let r = verify(t.path()).unwrap();
        assert!(r.is_clean(), "{r}");
        assert!(r.segments.len() >= 3, "{r}");
        assert_eq!(r.records(), 1000);
        assert_eq!((r.first_id(), r.last_id()), (Some(1), Some(1000)));
        assert!(r.gaps.is_empty() && r.holes.is_empty() && r.torn.is_empty());
        // Consecutive segments continue each other; all but the last are sealed.
        for w in r.segments.windows(2) {
            assert!(w[0].sealed, "{r}");
            assert_eq!(w[0].last_id.unwrap() + 1, w[1].first_id.unwrap());
            assert_eq!(w[1].base_id, w[1].first_id.unwrap());
        }
        let last = r.segments.last().unwrap();
        assert!(!last.sealed);
        assert!(last.bytes_used > u64::from(SEGMENT_HEADER_LEN) && last.bytes_used < SEG);
        assert_eq!(r.consumer, None);
        let text = r.to_string();
        assert!(text.contains("record(s), IDs 1..=1000"), "{text}");
        assert!(text.trim_end().ends_with("clean"), "{text}");
    }

    #[test]
    fn flipped_byte_in_an_old_segment_is_reported_with_file_and_offset() {
        let t = journal(1000);
        let first = segs(t.path())[0].clone();
        let mut b = fs::read(&first).unwrap();
        // Third record: 64 + 2 * align8(56 + 200) = 576; flip a payload byte.
        b[576 + 100] ^= 1;
        fs::write(&first, &b).unwrap();
        let before = snapshot(t.path());
        let r = verify(t.path()).unwrap();
        assert_eq!(snapshot(t.path()), before, "verify must write nothing");
        assert!(!r.is_clean());
        assert_eq!(r.corruption.len(), 1, "{r}");
        let c = &r.corruption[0];
        assert_eq!((c.path.as_path(), c.offset), (first.as_path(), 576));
        assert_eq!(c.reason, "record checksum mismatch");
        // The damaged record is not counted; everything else is.
        assert_eq!(r.records(), 999);
        assert_eq!(r.gaps, vec![IdGap { from: 3, to: 4 }]);
        let text = r.to_string();
        assert!(
            text.contains("CORRUPT: ") && text.contains("at offset 576"),
            "{text}"
        );
        assert!(text.contains("missing IDs: 3..4"), "{text}");
        assert!(text.trim_end().ends_with("NOT CLEAN"), "{text}");
    }

    /// Removes the checkpoint, as after a crash before one covered the last records:
    /// damage among them is then a torn write, not damage to flushed records.
    fn forget_checkpoint(dir: &Path) {
        fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
    }

    #[test]
    fn torn_tail_is_reported_and_left_alone() {
        let t = journal(10);
        forget_checkpoint(t.path());
        let last = segs(t.path()).pop().unwrap();
        let mut b = fs::read(&last).unwrap();
        // Garbage in place of the last record (it starts at 64 + 9 * 256).
        let at = 64 + 9 * 256;
        for (i, x) in b[at..at + 100].iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(7) | 1;
        }
        fs::write(&last, &b).unwrap();
        let before = snapshot(t.path());
        let r = verify(t.path()).unwrap();
        assert_eq!(snapshot(t.path()), before);
        assert!(!r.is_clean());
        assert!(r.corruption.is_empty(), "{r}");
        assert_eq!(r.torn.len(), 1, "{r}");
        // From the garbage to the last nonzero byte (the rest of the old record).
        assert_eq!((r.torn[0].offset, r.torn[0].len), (at as u64, 256));
        assert_eq!(r.records(), 9);
        // Opening repairs it; then the report is clean.
        Journal::open(t.path(), JournalOptions::new().segment_size(SEG))
            .unwrap()
            .close()
            .unwrap();
        let r = verify(t.path()).unwrap();
        assert!(r.is_clean(), "{r}");
        assert_eq!(r.records(), 9);
    }

    #[test]
    fn uncommitted_reservation_then_hole_marker() {
        let t = journal(10);
        forget_checkpoint(t.path());
        let last = segs(t.path()).pop().unwrap();
        let mut b = fs::read(&last).unwrap();
        // The fifth record was reserved but never committed: its commit word is 0.
        let at = 64 + 4 * 256;
        b[at..at + 4].fill(0);
        fs::write(&last, &b).unwrap();
        let r = verify(t.path()).unwrap();
        assert!(r.is_clean(), "{r}");
        assert_eq!(r.holes.len(), 1);
        assert!(!r.holes[0].marked);
        assert_eq!((r.holes[0].offset, r.holes[0].len), (at as u64, 256));
        assert_eq!(r.gaps, vec![IdGap { from: 5, to: 6 }]);
        Journal::open(t.path(), JournalOptions::new().segment_size(SEG))
            .unwrap()
            .close()
            .unwrap();
        let r = verify(t.path()).unwrap();
        assert_eq!(r.holes.len(), 1, "{r}");
        assert!(r.holes[0].marked);
        assert_eq!(r.segments.last().unwrap().hole_markers, 1);
        assert!(r.to_string().contains("hole: "));
    }

    #[test]
    fn foreign_file_named_like_a_segment_is_corruption() {
        let t = journal(5);
        let junk = t.path().join("00000000000000000099.seg");
        fs::write(&junk, vec![0x5a; 5000]).unwrap();
        let r = verify(t.path()).unwrap();
        assert!(!r.is_clean());
        assert!(
            r.corruption.iter().any(|c| c.path == junk && c.offset == 0),
            "{r}"
        );
        assert!(!r.segments.last().unwrap().header_ok);
    }

    #[test]
    fn consumer_state_watermark_is_read() {
        let t = journal(5);
        let mut b = vec![0u8; 4096 + 8 * (1 << 17)];
        b[..8].copy_from_slice(b"LQSTATE\x01");
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&17u32.to_le_bytes());
        b[16..24].copy_from_slice(&3u64.to_le_bytes());
        let p = t.path().join(CONSUMER_STATE_FILE);
        fs::write(&p, &b).unwrap();
        let r = verify(t.path()).unwrap();
        let c = r.consumer.clone().unwrap();
        assert_eq!((c.watermark, c.problem), (Some(3), None));
        assert!(r.is_clean());
        assert!(r.to_string().contains("watermark 3"), "{r}");
        // A damaged one is reported.
        b[0] = b'X';
        fs::write(&p, &b).unwrap();
        let r = verify(t.path()).unwrap();
        assert!(r.consumer.as_ref().unwrap().problem.is_some());
        assert!(!r.is_clean());
    }

    fn header_salt(path: &Path) -> u32 {
        decode_header(&fs::read(path).unwrap()).unwrap().2
    }

    #[test]
    fn checkpoint_is_reported_and_decides_the_tail() {
        let t = journal(1000);
        let s = segs(t.path());
        let n = s.len();
        let r = verify(t.path()).unwrap();
        assert!(r.is_clean(), "{r}");
        let c = r.checkpoint.clone().unwrap();
        let cp = c.checkpoint.unwrap();
        assert_eq!((c.problem, c.ahead_of_data), (None, false));
        assert_eq!(cp.next_id, 1001);
        assert_eq!(r.tail_from, Some(r.segments[n - 1].base_id));
        assert_eq!(cp.segment_base, r.segments[n - 1].base_id);
        let text = r.to_string();
        assert!(text.contains("checkpoint: segment "), "{text}");
        assert!(text.contains("open scans from segment"), "{text}");

        // A checkpoint naming the fourth segment from the end, and a torn last record
        // in the segment before that one's successor: a torn tail, not corruption.
        let k = n - 4;
        let base = r.segments[k].base_id;
        let older = Checkpoint {
            segment_base: base,
            segment_salt: header_salt(&s[k]),
            offset: 64,
            next_id: base,
            extra: Some(7),
            written_ns: 0,
            clean: false,
            check_from: 0,
        };
        fs::write(t.path().join(CHECKPOINT_FILE), older.encode()).unwrap();
        let victim = &s[n - 3];
        let mut b = fs::read(victim).unwrap();
        let last_rec = 64 + (r.segments[n - 3].records as usize - 1) * 256;
        b[last_rec + 100] ^= 0xff;
        fs::write(victim, &b).unwrap();
        let r = verify(t.path()).unwrap();
        assert_eq!(r.tail_from, Some(base));
        assert!(r.corruption.is_empty(), "{r}");
        assert_eq!(r.torn.len(), 1, "{r}");
        assert_eq!(r.torn[0].path, *victim);
        assert!(r.to_string().contains("consumer watermark 7"), "{r}");
        // Without the checkpoint that segment is not in the tail: corruption.
        fs::remove_file(t.path().join(CHECKPOINT_FILE)).unwrap();
        let r = verify(t.path()).unwrap();
        assert_eq!(r.corruption.len(), 1, "{r}");
        assert!(r.checkpoint.is_none());
        assert!(r.to_string().contains("checkpoint: none"), "{r}");
    }

    #[test]
    fn damaged_or_stale_checkpoints_are_reported() {
        let t = journal(300);
        let p = t.path().join(CHECKPOINT_FILE);
        let good = fs::read(&p).unwrap();
        let mut bad = good.clone();
        bad[17] ^= 4;
        fs::write(&p, &bad).unwrap();
        let r = verify(t.path()).unwrap();
        let c = r.checkpoint.clone().unwrap();
        assert_eq!(c.checkpoint, None);
        assert_eq!(c.problem.as_deref(), Some("checkpoint checksum mismatch"));
        // Open loses nothing by it: still clean.
        assert!(r.is_clean(), "{r}");
        assert!(
            r.to_string()
                .contains("not used (checkpoint checksum mismatch)"),
            "{r}"
        );
        // A valid checkpoint whose durable records are gone from the segment.
        fs::write(&p, &good).unwrap();
        let cp = Checkpoint::decode(&good).unwrap();
        let last = segs(t.path()).pop().unwrap();
        let mut b = fs::read(&last).unwrap();
        let cut = cp.offset as usize - 256;
        b[cut..cp.offset as usize].fill(0);
        fs::write(&last, &b).unwrap();
        let r = verify(t.path()).unwrap();
        assert!(r.checkpoint.as_ref().unwrap().ahead_of_data, "{r}");
        assert!(
            r.to_string().contains("recorded as flushed are missing"),
            "{r}"
        );
        // Flushed records gone: corruption at the first of them, not a torn tail.
        assert!(!r.is_clean(), "{r}");
        assert!(r.torn.is_empty(), "{r}");
        assert_eq!(r.corruption.len(), 1, "{r}");
        assert_eq!(
            (&r.corruption[0].path, r.corruption[0].offset),
            (&last, cut as u64)
        );
    }

    #[test]
    fn empty_directory_and_errors() {
        let t = tempfile::tempdir().unwrap();
        let r = verify(t.path()).unwrap();
        assert!(r.is_clean() && r.segments.is_empty());
        assert_eq!(
            fs::read_dir(t.path()).unwrap().count(),
            0,
            "creates nothing"
        );
        assert!(matches!(
            verify(&t.path().join("missing")),
            Err(Error::Io { .. })
        ));
        let f = t.path().join("file");
        fs::write(&f, b"x").unwrap();
        let e = verify(&f).unwrap_err();
        assert!(matches!(e, Error::NotADirectory { .. }));
        assert!(e.to_string().contains("is not a queue directory"));
    }
}
