//! The peer harness: every workload on LedgerQ and its peers in the same run, medians of
//! several runs, printed as a Markdown table (and optionally written as JSON).
//!
//! Peers: `crossbeam_queue::ArrayQueue<Vec<u8>>` and `std::sync::mpsc::sync_channel` (the
//! in-memory ceilings), `yaque` (durable, segment files), `queue-file` (durable, one file)
//! and a raw `write` + `fdatasync` loop (the storage floor of the `Sync` rows).
//!
//! ```text
//! cargo run --release -p ledgerq-benches --bin peers [-- --quick] [--json FILE]
//!     [--runs N] [--dir DIR] [--only TEXT]
//! ```
//!
//! Scratch queues go under `--dir` (default `target/peers-tmp`, which must not be on tmpfs).

mod report;
mod work;

use std::path::{Path, PathBuf};
use std::time::Instant;

use report::{Cell, Machine, Row, Sys, Unit, SYSTEMS};

const PAYLOAD: [u8; 100] = [0xAB; 100];

const NA_ONE_CONSUMER: &str = "n/a: single consumer";
const NA_IN_MEMORY: &str = "n/a: in memory";
const NA_NO_SYNC: &str = "n/a: no sync mode";
const NA_FLOOR: &str = "n/a: Sync rows only";
const NA_NO_BACKLOG: &str = "n/a: not a queue";
const NA_NO_BLOCKING: &str = "n/a: no blocking call";
const MUTEX: &str = "one Mutex";

/// Sizes of every workload; `--quick` shrinks them for the CI smoke pass.
struct Config {
    quick: bool,
    runs: usize,
    enqueue: u64,
    e2e: u64,
    batch_rounds: u64,
    big: u64,
    drain: u64,
    sync_secs: f64,
    lat_rate: u64,
    lat_secs: f64,
    lat_runs: usize,
    open_consumed: u64,
    open_backlog: u64,
    rss_backlog: u64,
    base: PathBuf,
    only: Option<String>,
}

impl Config {
    fn new(quick: bool) -> Config {
        if quick {
            Config {
                quick,
                runs: 1,
                enqueue: 20_000,
                e2e: 20_000,
                batch_rounds: 200,
                big: 2_000,
                drain: 20_000,
                sync_secs: 0.2,
                lat_rate: 10_000,
                lat_secs: 0.2,
                lat_runs: 1,
                open_consumed: 10_000,
                open_backlog: 10_000,
                rss_backlog: 20_000,
                base: PathBuf::from("target/peers-tmp"),
                only: None,
            }
        } else {
            Config {
                quick,
                runs: 5,
                enqueue: 300_000,
                e2e: 200_000,
                batch_rounds: 3_000,
                big: 20_000,
                drain: 1_000_000,
                sync_secs: 0.6,
                lat_rate: 20_000,
                lat_secs: 1.0,
                lat_runs: 3,
                open_consumed: 1_000_000,
                open_backlog: 1_000_000,
                rss_backlog: 1_000_000,
                base: PathBuf::from("target/peers-tmp"),
                only: None,
            }
        }
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("quick", self.quick.to_string()),
            ("runs (median of)", self.runs.to_string()),
            ("payload bytes", PAYLOAD.len().to_string()),
            ("1P enqueue messages", self.enqueue.to_string()),
            ("end-to-end messages", self.e2e.to_string()),
            ("batch-of-100 rounds", self.batch_rounds.to_string()),
            ("4 KiB messages", self.big.to_string()),
            ("drain backlog", self.drain.to_string()),
            ("Sync seconds per run", self.sync_secs.to_string()),
            ("latency rate msg/s", self.lat_rate.to_string()),
            ("latency seconds per run", self.lat_secs.to_string()),
            ("latency runs", self.lat_runs.to_string()),
            ("open: consumed prefix", self.open_consumed.to_string()),
            ("open: backlog", self.open_backlog.to_string()),
            ("RSS backlog", self.rss_backlog.to_string()),
            (
                "segment bytes (LedgerQ, yaque)",
                work::segment().to_string(),
            ),
            (
                "settle ms after opening a durable queue",
                work::SETTLE_MS
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
        ]
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What to do for one system in one row.
enum Plan<'a> {
    /// The system lacks the capability.
    Na(&'static str),
    /// One measurement per call, with an optional remark for the cell.
    Run(Option<&'static str>, Box<dyn FnMut() -> f64 + 'a>),
}

fn run<'a>(f: impl FnMut() -> f64 + 'a) -> Plan<'a> {
    Plan::Run(None, Box::new(f))
}

fn run_noted<'a>(note: &'static str, f: impl FnMut() -> f64 + 'a) -> Plan<'a> {
    Plan::Run(Some(note), Box::new(f))
}

/// Measures a row: `runs` rounds, each running every system once in column order (so a
/// slow spell of the machine hits every system rather than one), then the medians.
/// Before each run the page cache is written back (`sync`), so that no system pays for
/// the writeback of the files an earlier run left dirty.
fn row<'a>(workload: &str, unit: Unit, runs: usize, plan: impl Fn(Sys) -> Plan<'a>) -> Row {
    let t = Instant::now();
    let mut plans: Vec<Plan<'a>> = SYSTEMS.iter().map(|s| plan(*s)).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); plans.len()];
    for _ in 0..runs.max(1) {
        for (p, out) in plans.iter_mut().zip(samples.iter_mut()) {
            if let Plan::Run(_, f) = p {
                // SAFETY: `sync` takes no arguments and cannot fail.
                unsafe { libc::sync() };
                out.push(f());
            }
        }
    }
    let cells = plans
        .iter()
        .zip(samples)
        .map(|(p, s)| match p {
            Plan::Na(why) => Cell::Na(why),
            Plan::Run(note, _) => Cell::Val(median(s), *note),
        })
        .collect();
    eprintln!("  {workload}: {:.1} s", t.elapsed().as_secs_f64());
    Row {
        workload: workload.to_string(),
        unit,
        cells,
    }
}

fn wants(cfg: &Config, name: &str) -> bool {
    cfg.only.as_ref().is_none_or(|o| name.contains(o.as_str()))
}

fn measure(cfg: &Config) -> Vec<Row> {
    let base = cfg.base.as_path();
    let runs = cfg.runs;
    let mut rows = Vec::new();

    let name = "1 producer, enqueue only";
    if wants(cfg, name) {
        rows.push(row(name, Unit::MsgPerSec, runs, |s| match s {
            Sys::Raw => Plan::Na(NA_FLOOR),
            s => run(move || work::enqueue_1p(s, base, cfg.enqueue, &PAYLOAD)),
        }));
    }

    for (p, c) in [(1usize, 1usize), (2, 2), (4, 4)] {
        let name = format!("end to end, {p}P/{c}C");
        if !wants(cfg, &name) {
            continue;
        }
        let per = cfg.e2e / p as u64;
        rows.push(row(&name, Unit::MsgPerSec, runs, |s| {
            let m = move || work::end_to_end(s, base, p, c, per, &PAYLOAD);
            match s {
                Sys::Raw => Plan::Na(NA_FLOOR),
                Sys::Mpsc | Sys::Yaque if c > 1 => Plan::Na(NA_ONE_CONSUMER),
                Sys::QueueFile if p + c > 2 => run_noted(MUTEX, m),
                _ => run(m),
            }
        }));
    }

    let name = "batch of 100: enqueue then dequeue";
    if wants(cfg, name) {
        rows.push(row(name, Unit::MsgPerSec, runs, |s| {
            let m = move || work::batch_100(s, base, cfg.batch_rounds, &PAYLOAD);
            match s {
                Sys::Raw => Plan::Na(NA_FLOOR),
                Sys::ArrayQ | Sys::Mpsc => run_noted("no batch API: 100 single ops", m),
                _ => run(m),
            }
        }));
    }

    let name = "4 KiB payloads, end to end 1P/1C";
    if wants(cfg, name) {
        let big = vec![0xCDu8; 4096];
        let big = &big;
        rows.push(row(name, Unit::MBPerSec, runs, |s| match s {
            Sys::Raw => Plan::Na(NA_FLOOR),
            s => run(move || work::end_to_end(s, base, 1, 1, cfg.big, big) * 4096.0 / 1e6),
        }));
    }

    let name = format!("drain a {} backlog, 1 consumer", cfg.drain);
    if wants(cfg, &name) {
        rows.push(row(&name, Unit::MsgPerSec, runs, |s| match s {
            Sys::Raw => Plan::Na(NA_FLOOR),
            s => run(move || work::drain(s, base, cfg.drain, &PAYLOAD)),
        }));
    }

    for threads in [1usize, 8, 32] {
        let name = format!("Durability::Sync enqueue, {threads} producers");
        if !wants(cfg, &name) {
            continue;
        }
        rows.push(row(&name, Unit::MsgPerSec, runs, |s| {
            let m = move || work::sync_producers(s, base, threads, cfg.sync_secs, &PAYLOAD);
            match s {
                Sys::ArrayQ | Sys::Mpsc => Plan::Na(NA_IN_MEMORY),
                Sys::Yaque => Plan::Na(NA_NO_SYNC),
                Sys::QueueFile if threads > 1 => run_noted(MUTEX, m),
                Sys::Raw if threads > 1 => run_noted("one file, no grouping", m),
                _ => run(m),
            }
        }));
    }

    for (wait, label) in [
        (work::Wait::Block, "blocking consumer"),
        (work::Wait::Poll, "polling consumer"),
    ] {
        let lat_name = format!("latency at {} msg/s, 1P/1C, {label}", cfg.lat_rate);
        if !wants(cfg, &lat_name) {
            continue;
        }
        let t = Instant::now();
        // Which systems take part: all but the floor; a blocking consumer needs a
        // blocking call, which `ArrayQueue` and queue-file do not have.
        let na = |s: Sys| match s {
            Sys::Raw => Some(NA_FLOOR),
            Sys::ArrayQ | Sys::QueueFile if wait == work::Wait::Block => Some(NA_NO_BLOCKING),
            _ => None,
        };
        // Rounds over the systems, as in `row`; each run gives all four percentiles.
        let mut all: Vec<Vec<work::Percentiles>> = vec![Vec::new(); SYSTEMS.len()];
        for _ in 0..cfg.lat_runs.max(1) {
            for (s, out) in SYSTEMS.iter().zip(all.iter_mut()) {
                if na(*s).is_none() {
                    out.push(work::latency(*s, base, cfg.lat_rate, cfg.lat_secs, wait));
                }
            }
        }
        eprintln!("  {lat_name}: {:.1} s", t.elapsed().as_secs_f64());
        for (i, q) in ["p50", "p99", "p99.9", "max"].iter().enumerate() {
            let cells = SYSTEMS
                .iter()
                .zip(&all)
                .map(|(s, runs)| match na(*s) {
                    Some(why) => Cell::Na(why),
                    None => Cell::Val(median(runs.iter().map(|p| p[i]).collect()), None),
                })
                .collect();
            rows.push(Row {
                workload: format!("{lat_name}, {q}"),
                unit: Unit::Micros,
                cells,
            });
        }
    }

    let name = format!(
        "open + first read: {} consumed, {} pending",
        cfg.open_consumed, cfg.open_backlog
    );
    if wants(cfg, &name) {
        rows.push(row(&name, Unit::Millis, runs, |s| match s {
            Sys::ArrayQ | Sys::Mpsc => Plan::Na(NA_IN_MEMORY),
            Sys::Raw => Plan::Na(NA_NO_BACKLOG),
            s => {
                let fx = work::OpenFixture::build(
                    s,
                    base,
                    cfg.open_consumed,
                    cfg.open_backlog,
                    &PAYLOAD,
                );
                run(move || fx.open_ms())
            }
        }));
    }

    let name = format!("RssAnon with a {} backlog", cfg.rss_backlog);
    if wants(cfg, &name) {
        rows.push(row(&name, Unit::MiB, runs.min(3), |s| match s {
            Sys::Raw => Plan::Na(NA_NO_BACKLOG),
            s => run(move || rss_in_child(s, base, cfg.rss_backlog)),
        }));
    }
    rows
}

/// Re-executes this binary with the hidden `--rss-child` argument and returns the child's
/// RssAnon (MiB) with a backlog of `n` messages in `sys`.
fn rss_in_child(sys: Sys, base: &Path, n: u64) -> f64 {
    let exe = std::env::current_exe().unwrap_or_else(|e| work::die("current_exe", e));
    let out = std::process::Command::new(exe)
        .arg("--rss-child")
        .arg(sys.key())
        .arg(n.to_string())
        .arg(base)
        .output()
        .unwrap_or_else(|e| work::die("running the RSS child", e));
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: Option<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon "))
        .and_then(|v| v.trim().parse().ok());
    match kib {
        Some(k) if out.status.success() => k / 1024.0,
        _ => work::die(
            "the RSS child",
            format!("{} {}", out.status, String::from_utf8_lossy(&out.stderr)),
        ),
    }
}

/// The targets of the harness, checked against this run.
fn verdicts(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut behind = Vec::new();
    let mut compared = 0;
    for r in rows {
        for peer in [Sys::Yaque, Sys::QueueFile] {
            if let Some(a) = r.advantage(peer) {
                compared += 1;
                if a < 1.0 {
                    behind.push(format!(
                        "{} vs {}: LedgerQ at {:.2}x ({:.0}% behind)",
                        r.workload,
                        peer.name(),
                        a,
                        (1.0 - a) * 100.0
                    ));
                }
            }
        }
    }
    if behind.is_empty() {
        out.push_str(&format!(
            "- LedgerQ ahead of yaque and queue-file in all {compared} comparisons\n"
        ));
    } else {
        out.push_str(&format!(
            "- LedgerQ behind a durable peer in {} of {compared} comparisons:\n",
            behind.len()
        ));
        for b in behind {
            out.push_str(&format!("  - {b}\n"));
        }
    }
    if let Some(r) = rows
        .iter()
        .find(|r| r.workload.starts_with("end to end, 2P/2C"))
    {
        if let Some(a) = r.advantage(Sys::ArrayQ) {
            out.push_str(&format!(
                "- end to end 2P/2C: LedgerQ {:.2}x ArrayQueue<Vec<u8>> (target >= 1x, aim 2x)\n",
                a
            ));
        }
    }
    let sync = |t: usize| {
        rows.iter()
            .find(|r| r.workload == format!("Durability::Sync enqueue, {t} producers"))
            .and_then(|r| r.get(Sys::LedgerQ).value())
    };
    if let (Some(one), Some(many)) = (sync(1), sync(32)) {
        out.push_str(&format!(
            "- Sync 32 producers / Sync 1 producer: {:.1}x (target >= 10x); one producer waits {:.0} µs per enqueue\n",
            many / one,
            1e6 / one
        ));
    }
    out
}

fn usage() -> ! {
    eprintln!(
        "usage: peers [--quick] [--json FILE] [--runs N] [--dir DIR] [--only TEXT]\n\
         \x20            [--segment-mib N] [--settle-ms N]\n\
         Runs every workload on LedgerQ and its peers and prints a Markdown table."
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--rss-child") {
        let sys = args.get(1).and_then(|k| Sys::from_key(k));
        let n = args.get(2).and_then(|v| v.parse().ok());
        let base = args.get(3).map(PathBuf::from);
        match (sys, n, base) {
            (Some(s), Some(n), Some(b)) => work::rss_child(s, &b, n),
            _ => usage(),
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let mut cfg = Config::new(quick);
    let mut json = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => {}
            "--json" => json = Some(it.next().cloned().unwrap_or_else(|| usage())),
            "--runs" => {
                cfg.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .unwrap_or_else(|| usage());
                cfg.lat_runs = cfg.lat_runs.min(cfg.runs);
            }
            "--dir" => cfg.base = PathBuf::from(it.next().unwrap_or_else(|| usage())),
            "--settle-ms" => {
                let ms: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage());
                work::SETTLE_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
            }
            "--segment-mib" => {
                let mib: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&m: &u64| m > 0)
                    .unwrap_or_else(|| usage());
                work::SEGMENT_BYTES.store(mib << 20, std::sync::atomic::Ordering::Relaxed);
            }
            "--only" => cfg.only = Some(it.next().cloned().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    std::fs::create_dir_all(&cfg.base).unwrap_or_else(|e| work::die("creating --dir", e));
    if let Some((fstype, _, mnt)) = report::mount_of(&cfg.base) {
        if matches!(fstype.as_str(), "tmpfs" | "ramfs") {
            work::die(
                "scratch directory",
                format!(
                    "{} is on {fstype} ({mnt}); pass --dir on a real disk",
                    cfg.base.display()
                ),
            );
        }
    }
    let machine = Machine::detect(&cfg.base);
    let command = format!(
        "cargo run --release -p ledgerq-benches --bin peers --{}",
        if args.is_empty() {
            String::new()
        } else {
            format!(" {}", args.join(" "))
        }
    );
    println!("# LedgerQ peer harness");
    println!();
    println!(
        "machine: nproc {}, {}, Linux {}, scratch on {}",
        machine.nproc, machine.cpu, machine.kernel, machine.filesystem
    );
    println!("load average at start: {}", machine.loadavg);
    println!("command: {command}");
    for (k, v) in cfg.settings() {
        println!("  {k}: {v}");
    }
    println!();
    let t = Instant::now();
    let rows = measure(&cfg);
    println!("{}", report::table(&rows));
    println!("{}", verdicts(&rows));
    println!(
        "total time: {:.0} s; load average at end: {}",
        t.elapsed().as_secs_f64(),
        report::loadavg()
    );
    if let Some(path) = json {
        let text = report::json(&machine, &command, &cfg.settings(), &rows);
        std::fs::write(&path, text).unwrap_or_else(|e| work::die("writing the JSON file", e));
        println!("JSON written to {path}");
    }
}
