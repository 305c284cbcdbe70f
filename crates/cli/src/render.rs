//! How messages, statistics and reports are printed.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use ledgerq::inspect::{InspectStats, MessageState, Record, Report};
use ledgerq::{Message, Priority};
use serde::Serialize;

/// How messages are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per message: ID, time, priority, headers, payload (printable as is,
    /// anything else escaped as b"...").
    Text,
    /// One JSON object per line.
    Json,
    /// The payload bytes only, each followed by a newline.
    Raw,
}

pub fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Medium => "medium",
        _ => "low",
    }
}

pub fn state_name(s: MessageState) -> String {
    match s {
        MessageState::Pending => "pending".into(),
        MessageState::Delivered(k) => format!("delivered({k})"),
        MessageState::Consumed => "consumed".into(),
        MessageState::DeadLettering => "dead-lettering".into(),
        MessageState::Expired => "expired".into(),
        _ => "unknown".into(),
    }
}

pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The payload as text: as is when it is UTF-8 without control characters, else
/// `b"..."` with every byte outside printable ASCII escaped.
pub fn printable(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => format!("b\"{}\"", payload.escape_ascii()),
    }
}

fn headers_text(h: &[(String, String)]) -> String {
    if h.is_empty() {
        return "-".into();
    }
    h.iter()
        .map(|(k, v)| format!("{}={}", printable(k.as_bytes()), printable(v.as_bytes())))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Serialize)]
struct JsonMessage<'a> {
    id: u64,
    time: String,
    timestamp_ns: u64,
    priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    delivery_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    headers: Vec<[&'a str; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedup_key: Option<String>,
    /// The payload as a string: UTF-8 as is, anything else escaped (see
    /// `payload_escaped`).
    payload: String,
    payload_escaped: bool,
    payload_len: usize,
}

/// Writes one message in `format`; `state` and `dedup` only with `dump`-like output.
pub fn message(
    out: &mut impl Write,
    format: Format,
    m: &Message,
    state: Option<MessageState>,
    dedup: Option<&[u8]>,
) -> io::Result<()> {
    match format {
        Format::Raw => {
            out.write_all(m.payload())?;
            out.write_all(b"\n")
        }
        Format::Text => {
            let mut line = format!(
                "{}  {}  {}",
                m.id(),
                time(m.timestamp()),
                priority_name(m.priority())
            );
            if let Some(s) = state {
                line.push_str("  ");
                line.push_str(&state_name(s));
            }
            if let Some(e) = m.expires_at() {
                line.push_str(&format!("  expires={}", time(e)));
            }
            if let Some(d) = dedup {
                line.push_str(&format!("  dedup={}", printable(d)));
            }
            writeln!(
                out,
                "{line}  {}  {}",
                headers_text(m.headers()),
                printable(m.payload())
            )
        }
        Format::Json => {
            let (payload, payload_escaped) = match std::str::from_utf8(m.payload()) {
                Ok(s) => (s.to_string(), false),
                Err(_) => (m.payload().escape_ascii().to_string(), true),
            };
            let j = JsonMessage {
                id: m.id(),
                time: time(m.timestamp()),
                timestamp_ns: ns(m.timestamp()),
                priority: priority_name(m.priority()),
                state: state.map(state_name),
                delivery_count: m.delivery_count(),
                expires_at: m.expires_at().map(time),
                headers: m
                    .headers()
                    .iter()
                    .map(|(k, v)| [k.as_str(), v.as_str()])
                    .collect(),
                dedup_key: dedup.map(|d| String::from_utf8_lossy(d).into_owned()),
                payload,
                payload_escaped,
                payload_len: m.payload().len(),
            };
            serde_json::to_writer(&mut *out, &j).map_err(io::Error::other)?;
            out.write_all(b"\n")
        }
    }
}

/// Writes one record (a message with its state) in `format`.
pub fn record(out: &mut impl Write, format: Format, r: &Record) -> io::Result<()> {
    message(
        out,
        format,
        &r.message,
        Some(r.state),
        r.dedup_key.as_deref(),
    )
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn age(t: SystemTime) -> String {
    let d = SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO);
    let secs = Duration::from_secs(d.as_secs());
    format!("{} ago", humantime::format_duration(secs))
}

/// The statistics table.
pub fn stats_text(dir: &std::path::Path, s: &InspectStats) -> String {
    let mut rows: Vec<(&str, String)> = vec![("queue", dir.display().to_string())];
    let ids = if s.records == 0 {
        format!("none retained (next ID {})", s.next_id)
    } else {
        format!(
            "{}..={} retained, next ID {}",
            s.first_id,
            s.next_id.saturating_sub(1),
            s.next_id
        )
    };
    rows.push(("IDs", ids));
    rows.push(("records", s.records.to_string()));
    rows.push(("pending", s.pending.to_string()));
    rows.push(("in flight", s.in_flight.to_string()));
    rows.push(("consumed", s.consumed.to_string()));
    rows.push(("expired", s.expired.to_string()));
    if s.dead_lettering > 0 {
        rows.push(("dead-lettering", s.dead_lettering.to_string()));
    }
    rows.push(("dead letters", s.dead_letters.to_string()));
    if s.priorities {
        let [l, m, h] = s.deliverable_by_priority;
        rows.push((
            "by priority",
            format!("high {h}, medium {m}, low {l} (deliverable)"),
        ));
    }
    rows.push((
        "oldest pending",
        s.oldest_pending
            .map_or("-".into(), |t| format!("{} ({})", time(t), age(t))),
    ));
    rows.push((
        "newest record",
        s.newest
            .map_or("-".into(), |t| format!("{} ({})", time(t), age(t))),
    ));
    rows.push((
        "segments",
        format!("{} ({} on disk)", s.segments, bytes(s.disk_bytes)),
    ));
    rows.push((
        "consumer",
        if s.has_consumer_state {
            format!(
                "watermark {}{}",
                s.watermark,
                if s.priorities {
                    ", priority delivery"
                } else {
                    ", FIFO delivery"
                }
            )
        } else {
            "no consumer state yet".into()
        },
    ));
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<16}{v}\n"));
    }
    out
}

#[derive(Serialize)]
struct JsonStats {
    dir: String,
    first_id: u64,
    next_id: u64,
    records: u64,
    pending: u64,
    in_flight: u64,
    consumed: u64,
    expired: u64,
    dead_lettering: u64,
    dead_letters: u64,
    deliverable_by_priority: JsonLevels,
    priorities: bool,
    watermark: u64,
    has_consumer_state: bool,
    segments: u64,
    disk_bytes: u64,
    /// When the oldest pending message (waiting for its first delivery; not one in
    /// flight) was enqueued.
    oldest_pending: Option<String>,
    /// How long ago, in whole seconds.
    oldest_pending_age_secs: Option<u64>,
    newest: Option<String>,
}

#[derive(Serialize)]
struct JsonLevels {
    high: u64,
    medium: u64,
    low: u64,
}

/// The statistics as one JSON object.
pub fn stats_json(dir: &std::path::Path, s: &InspectStats) -> String {
    let [low, medium, high] = s.deliverable_by_priority;
    let j = JsonStats {
        dir: dir.display().to_string(),
        first_id: s.first_id,
        next_id: s.next_id,
        records: s.records,
        pending: s.pending,
        in_flight: s.in_flight,
        consumed: s.consumed,
        expired: s.expired,
        dead_lettering: s.dead_lettering,
        dead_letters: s.dead_letters,
        deliverable_by_priority: JsonLevels { high, medium, low },
        priorities: s.priorities,
        watermark: s.watermark,
        has_consumer_state: s.has_consumer_state,
        segments: s.segments,
        disk_bytes: s.disk_bytes,
        oldest_pending: s.oldest_pending.map(time),
        oldest_pending_age_secs: s.oldest_pending.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
                .as_secs()
        }),
        newest: s.newest.map(time),
    };
    serde_json::to_string_pretty(&j).unwrap_or_default()
}

#[derive(Serialize)]
struct JsonReport {
    dir: String,
    clean: bool,
    records: u64,
    first_id: Option<u64>,
    last_id: Option<u64>,
    segments: Vec<JsonSegment>,
    holes: Vec<JsonSpan>,
    gaps: Vec<[u64; 2]>,
    torn: Vec<JsonSpan>,
    corruption: Vec<JsonSpan>,
    consumer: Option<JsonConsumer>,
}

#[derive(Serialize)]
struct JsonSegment {
    path: String,
    base_id: u64,
    size: u64,
    first_id: Option<u64>,
    last_id: Option<u64>,
    records: u64,
    hole_markers: u64,
    bytes_used: u64,
    sealed: bool,
    header_ok: bool,
}

#[derive(Serialize)]
struct JsonSpan {
    path: String,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    marked: Option<bool>,
}

impl JsonSpan {
    /// A span at `offset` of `path` with no optional field set.
    fn at(path: &std::path::Path, offset: u64) -> JsonSpan {
        JsonSpan {
            path: path.display().to_string(),
            offset,
            len: None,
            reason: None,
            marked: None,
        }
    }
}

#[derive(Serialize)]
struct JsonConsumer {
    path: String,
    watermark: Option<u64>,
    problem: Option<String>,
    acknowledged: u64,
    delivered: u64,
    max_deliveries: u64,
    dead_lettering: u64,
}

/// The recovery report as one JSON object.
pub fn report_json(r: &Report) -> String {
    let p = |p: &std::path::Path| p.display().to_string();
    let j = JsonReport {
        dir: p(&r.dir),
        clean: r.is_clean(),
        records: r.records(),
        first_id: r.first_id(),
        last_id: r.last_id(),
        segments: r
            .segments
            .iter()
            .map(|s| JsonSegment {
                path: p(&s.path),
                base_id: s.base_id,
                size: s.size,
                first_id: s.first_id,
                last_id: s.last_id,
                records: s.records,
                hole_markers: s.hole_markers,
                bytes_used: s.bytes_used,
                sealed: s.sealed,
                header_ok: s.header_ok,
            })
            .collect(),
        holes: r
            .holes
            .iter()
            .map(|h| JsonSpan {
                len: Some(h.len),
                marked: Some(h.marked),
                ..JsonSpan::at(&h.path, h.offset)
            })
            .collect(),
        gaps: r.gaps.iter().map(|g| [g.from, g.to]).collect(),
        torn: r
            .torn
            .iter()
            .map(|t| JsonSpan {
                len: Some(t.len),
                reason: Some(t.reason.clone()),
                ..JsonSpan::at(&t.path, t.offset)
            })
            .collect(),
        corruption: r
            .corruption
            .iter()
            .map(|c| JsonSpan {
                reason: Some(c.reason.clone()),
                ..JsonSpan::at(&c.path, c.offset)
            })
            .collect(),
        consumer: r.consumer.as_ref().map(|c| JsonConsumer {
            path: p(&c.path),
            watermark: c.watermark,
            problem: c.problem.clone(),
            acknowledged: c.acknowledged,
            delivered: c.delivered,
            max_deliveries: c.max_deliveries,
            dead_lettering: c.dead_lettering,
        }),
    };
    serde_json::to_string_pretty(&j).unwrap_or_default()
}
