//! The harness's output: the machine description, the Markdown table and the JSON file.

use std::fmt::Write as _;
use std::path::Path;

/// The systems measured, in table column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sys {
    /// `ledgerq::Queue`.
    LedgerQ,
    /// `crossbeam_queue::ArrayQueue<Vec<u8>>` (in memory).
    ArrayQ,
    /// `std::sync::mpsc::sync_channel` (in memory).
    Mpsc,
    /// `yaque` (durable, file-backed segments).
    Yaque,
    /// `queue-file` (durable, one file).
    QueueFile,
    /// A raw `write` + `fdatasync` loop (the storage floor).
    Raw,
}

/// Every system, in column order.
pub const SYSTEMS: [Sys; 6] = [
    Sys::LedgerQ,
    Sys::ArrayQ,
    Sys::Mpsc,
    Sys::Yaque,
    Sys::QueueFile,
    Sys::Raw,
];

impl Sys {
    /// The column heading.
    pub fn name(self) -> &'static str {
        match self {
            Sys::LedgerQ => "LedgerQ",
            Sys::ArrayQ => "ArrayQueue<Vec<u8>>",
            Sys::Mpsc => "mpsc::sync_channel",
            Sys::Yaque => "yaque",
            Sys::QueueFile => "queue-file",
            Sys::Raw => "write+fdatasync",
        }
    }

    /// The name used on the command line of the RSS child and in JSON keys.
    pub fn key(self) -> &'static str {
        match self {
            Sys::LedgerQ => "ledgerq",
            Sys::ArrayQ => "array_queue",
            Sys::Mpsc => "sync_channel",
            Sys::Yaque => "yaque",
            Sys::QueueFile => "queue_file",
            Sys::Raw => "write_fdatasync",
        }
    }

    /// The inverse of [`Sys::key`].
    pub fn from_key(k: &str) -> Option<Sys> {
        SYSTEMS.into_iter().find(|s| s.key() == k)
    }
}

/// The unit of a row, and whether more is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Messages per second.
    MsgPerSec,
    /// Megabytes (10^6 bytes) of payload per second.
    MBPerSec,
    /// Microseconds (lower is better).
    Micros,
    /// Milliseconds (lower is better).
    Millis,
    /// Mebibytes (lower is better).
    MiB,
}

impl Unit {
    /// The unit's label in the table.
    pub fn label(self) -> &'static str {
        match self {
            Unit::MsgPerSec => "msg/s",
            Unit::MBPerSec => "MB/s",
            Unit::Micros => "µs",
            Unit::Millis => "ms",
            Unit::MiB => "MiB",
        }
    }

    /// Whether a larger figure is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::MsgPerSec | Unit::MBPerSec)
    }

    fn format(self, v: f64) -> String {
        match self {
            Unit::MsgPerSec => {
                if v >= 1e6 {
                    format!("{:.2} M", v / 1e6)
                } else if v >= 1e3 {
                    format!("{:.1} K", v / 1e3)
                } else {
                    format!("{v:.0}")
                }
            }
            _ => {
                if v >= 100.0 {
                    format!("{v:.0}")
                } else if v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                }
            }
        }
    }
}

/// One measurement (the median of the runs), or why there is none.
#[derive(Clone, Debug)]
pub enum Cell {
    /// A figure in the row's unit, with an optional remark on how it was obtained.
    Val(f64, Option<&'static str>),
    /// The system lacks the capability; the text says which.
    Na(&'static str),
}

impl Cell {
    /// The figure, if there is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Val(v, _) => Some(*v),
            Cell::Na(_) => None,
        }
    }
}

/// One workload and its figure for every system.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured.
    pub workload: String,
    /// The unit of every figure in the row.
    pub unit: Unit,
    /// One cell per entry of [`SYSTEMS`].
    pub cells: Vec<Cell>,
}

impl Row {
    /// The cell of `sys`.
    pub fn get(&self, sys: Sys) -> &Cell {
        let i = SYSTEMS.iter().position(|s| *s == sys).unwrap_or(0);
        &self.cells[i]
    }

    /// How many times better LedgerQ is than `sys` in this row (above 1: LedgerQ ahead).
    pub fn advantage(&self, sys: Sys) -> Option<f64> {
        let l = self.get(Sys::LedgerQ).value()?;
        let o = self.get(sys).value()?;
        if l <= 0.0 || o <= 0.0 {
            return None;
        }
        Some(if self.unit.higher_is_better() {
            l / o
        } else {
            o / l
        })
    }
}

/// The machine the figures were measured on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// `nproc`.
    pub nproc: usize,
    /// The CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// The kernel release.
    pub kernel: String,
    /// The filesystem (type and device) holding the scratch directories.
    pub filesystem: String,
    /// /proc/loadavg when the run started (other processes skew the figures).
    pub loadavg: String,
}

impl Machine {
    /// Describes this machine, with the filesystem that holds `dir`.
    pub fn detect(dir: &Path) -> Machine {
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let filesystem = match mount_of(dir) {
            Some((fstype, dev, mnt)) => format!("{fstype} ({dev} on {mnt})"),
            None => "unknown".into(),
        };
        Machine {
            loadavg: loadavg(),
            nproc,
            cpu,
            kernel,
            filesystem,
        }
    }
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The (filesystem type, device, mount point) of the mount holding `dir`: the longest
/// mount point in /proc/mounts that is a prefix of its canonical path.
pub fn mount_of(dir: &Path) -> Option<(String, String, String)> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let mut best: Option<(String, String, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let mnt = f[1];
        if dir.starts_with(mnt) && best.as_ref().is_none_or(|b| mnt.len() >= b.2.len()) {
            best = Some((f[2].to_string(), f[0].to_string(), mnt.to_string()));
        }
    }
    best
}

/// The Markdown table: one row per workload, one column per system, and LedgerQ's ratio to
/// `ArrayQueue<Vec<u8>>` in the same run.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| workload | unit |");
    for s in SYSTEMS {
        let _ = write!(out, " {} |", s.name());
    }
    out.push_str(" LedgerQ / ArrayQueue |\n|---|---|");
    for _ in SYSTEMS {
        out.push_str("---:|");
    }
    out.push_str("---:|\n");
    for r in rows {
        let _ = write!(out, "| {} | {} |", r.workload, r.unit.label());
        for c in &r.cells {
            match c {
                Cell::Val(v, None) => {
                    let _ = write!(out, " {} |", r.unit.format(*v));
                }
                Cell::Val(v, Some(note)) => {
                    let _ = write!(out, " {} ({note}) |", r.unit.format(*v));
                }
                Cell::Na(why) => {
                    let _ = write!(out, " {why} |");
                }
            }
        }
        match (r.get(Sys::LedgerQ).value(), r.get(Sys::ArrayQ).value()) {
            (Some(l), Some(a)) if a > 0.0 => {
                let _ = writeln!(out, " {:.2}x |", l / a);
            }
            _ => out.push_str(" |\n"),
        }
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// The whole result as JSON: machine, command, settings (name, value pairs) and rows.
pub fn json(machine: &Machine, command: &str, settings: &[(&str, String)], rows: &[Row]) -> String {
    let mut o = String::from("{\n  \"machine\": {");
    let _ = writeln!(
        o,
        "\"nproc\": {}, \"cpu\": {}, \"kernel\": {}, \"filesystem\": {}, \"loadavg_at_start\": {}}},",
        machine.nproc,
        json_str(&machine.cpu),
        json_str(&machine.kernel),
        json_str(&machine.filesystem),
        json_str(&machine.loadavg)
    );
    let _ = writeln!(o, "  \"command\": {},", json_str(command));
    o.push_str("  \"settings\": {");
    for (i, (k, v)) in settings.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(o, "{sep}{}: {}", json_str(k), json_str(v));
    }
    o.push_str("},\n  \"rows\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(
            o,
            "    {{\"workload\": {}, \"unit\": {}, \"higher_is_better\": {}, \"results\": {{",
            json_str(&r.workload),
            json_str(r.unit.label()),
            r.unit.higher_is_better()
        );
        for (j, (s, c)) in SYSTEMS.iter().zip(&r.cells).enumerate() {
            let sep = if j == 0 { "" } else { ", " };
            match c {
                Cell::Val(v, note) => {
                    let _ = write!(
                        o,
                        "{sep}{}: {{\"value\": {}",
                        json_str(s.key()),
                        json_num(*v)
                    );
                    if let Some(n) = note {
                        let _ = write!(o, ", \"note\": {}", json_str(n));
                    }
                    o.push('}');
                }
                Cell::Na(why) => {
                    let _ = write!(
                        o,
                        "{sep}{}: {{\"na\": {}}}",
                        json_str(s.key()),
                        json_str(why)
                    );
                }
            }
        }
        let comma = if i + 1 == rows.len() { "" } else { "," };
        let _ = writeln!(o, "}}}}{comma}");
    }
    o.push_str("  ]\n}\n");
    o
}
