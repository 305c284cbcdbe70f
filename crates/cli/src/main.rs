//! `ledgerq`: the command-line tool for the people who operate LedgerQ queues.
//!
//! Read-only commands (`stats`, `verify`, `peek`, `dump`, `tail`, `dead-letter list`)
//! never own the queue and never create or write anything; they work while another
//! process owns the queue, and on a queue a crash left with a torn tail (they show the
//! records before it; `verify` reports it). Mutating commands (`enqueue`, `dequeue`, `compact`,
//! `dead-letter requeue`) open the queue and fail if another process owns it. They open
//! it in manual-ack mode if its last open was (`dequeue` always does), so that an
//! application's acknowledgements stay as they are, and they never remove segments on
//! their own: only `compact` does, when asked.

mod render;

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledgerq::inspect::{recorded_ack_mode, Inspector, DEAD_LETTER_DIR, LOCK_FILE};
use ledgerq::{AckMode, EnqueueOptions, Error, Options, Priority, Queue};

use render::Format;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (verify: the queue is clean)
  1  failure: the queue is damaged (verify), missing, not a queue, owned by another
     process (mutating commands), or an operation failed
  2  usage error: unknown command, bad or missing arguments";

/// Inspect, verify and operate LedgerQ queues (a directory is a queue).
#[derive(Parser, Debug)]
#[command(name = "ledgerq", version, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a queue's counters: records, pending, in flight, consumed, expired, dead
    /// letters, segments and disk use (read-only).
    ///
    /// "oldest pending" (JSON `oldest_pending`, and its age `oldest_pending_age_secs`)
    /// is when the oldest message counted in "pending" was enqueued: one waiting for its
    /// first delivery; messages in flight are not included.
    #[command(after_help = EXIT_CODES)]
    Stats {
        /// The queue directory.
        dir: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every segment and the consumer state, and report segments, record ranges,
    /// holes, missing IDs, torn tails and corruption with file and offset (read-only).
    /// Exits 0 when clean, 1 when damaged.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// The queue directory.
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the next N messages a consumer would receive, changing nothing
    /// (read-only). Consumed, acknowledged, expired and dead-lettered messages are
    /// skipped; priority queues list High, then Medium, then Low.
    #[command(after_help = EXIT_CODES)]
    Peek {
        /// The queue directory.
        dir: PathBuf,
        /// How many messages.
        #[arg(short = 'n', long = "count", default_value_t = 10)]
        count: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the retained records in ID order, whatever their state (read-only).
    #[command(after_help = EXIT_CODES)]
    Dump {
        /// The queue directory.
        dir: PathBuf,
        /// Start at this ID.
        #[arg(long, value_name = "ID", conflicts_with = "since")]
        from: Option<u64>,
        /// Start at the first record enqueued at or after TIME: an RFC 3339 time
        /// (2024-05-01T10:00:00Z) or a duration ago (90s, 10m, 2h, 1day).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Output format: text (the state of each record included), json (one object
        /// per line) or raw (payload bytes, one per line).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the newest records and, with -f, follow new ones as they are appended
    /// (read-only; stop with Ctrl-C).
    #[command(after_help = EXIT_CODES)]
    Tail {
        /// The queue directory.
        dir: PathBuf,
        /// How many of the newest records to print first.
        #[arg(short = 'n', long = "count", default_value_t = 10)]
        count: u64,
        /// Keep running and print records as they are appended.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Append messages and print their IDs, one per line. Payloads come from the
    /// arguments or, without any, one per line from standard input. The directory
    /// must exist (an empty directory becomes a new queue).
    ///
    /// A line of standard input ends at "\n" or "\r\n", and its ending is not part of
    /// the payload; any other byte, a lone "\r" included, is. A payload that ends in
    /// "\r" or holds a "\n" can be given as an argument.
    ///
    /// When standard output is closed early (`| head -1`), the remaining IDs are not
    /// printed but all the input is still enqueued.
    #[command(after_help = EXIT_CODES)]
    Enqueue {
        /// The queue directory.
        dir: PathBuf,
        /// A header KEY=VALUE (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// The messages' priority.
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
        /// Time to live (30s, 5m, 1h; more than zero): the messages expire if not
        /// delivered by then.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// A dedup key: an enqueue with a key seen within the dedup window writes
        /// nothing and prints the first message's ID followed by "duplicate".
        #[arg(long, value_name = "KEY")]
        dedup_key: Option<String>,
        /// The payloads (one message each).
        payloads: Vec<String>,
    },
    /// Take up to N messages and print them; with --ack, acknowledge each once it is
    /// written out.
    ///
    /// Without --ack the messages stay unacknowledged: each is delivered again when
    /// the queue is next opened, with its delivery count one higher, and each such run
    /// counts as a failed delivery. Once a message has been taken three times without
    /// --ack, the next `ledgerq dequeue` moves it to the dead-letter queue (reason
    /// "delivered without acknowledgement") instead of printing it,
    /// and so does an application consuming with manual acknowledgement and the
    /// default max_deliveries. To look at messages without taking them, use `peek`.
    ///
    /// When standard output fails (a closed pipe, a full disk), the command stops
    /// there and exits 1; the message it could not write stays in the queue,
    /// unacknowledged (that delivery counts too).
    #[command(after_help = EXIT_CODES)]
    Dequeue {
        /// The queue directory.
        dir: PathBuf,
        /// How many messages at most.
        #[arg(short = 'n', long = "count", default_value_t = 1)]
        count: usize,
        /// Acknowledge the messages taken.
        #[arg(long)]
        ack: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove every segment file whose messages are all consumed, except the last one.
    ///
    /// No retention policy applies: an application's Retention (max age, bytes or
    /// segments kept for replay) is an option of the program that opens the queue, not
    /// recorded in it, so the consumed segments it keeps for replay are removed too.
    /// Only consumed segments whose newest message is within the longest dedup window
    /// used are kept. The other commands never remove segments.
    #[command(after_help = EXIT_CODES)]
    Compact {
        /// The queue directory.
        dir: PathBuf,
    },
    /// List or requeue the messages of the dead-letter queue (DIR/dead-letter).
    #[command(subcommand, after_help = EXIT_CODES)]
    DeadLetter(DeadLetterCommand),
    /// Print a shell completion script (e.g. `ledgerq completions bash >
    /// /etc/bash_completion.d/ledgerq`).
    #[command(after_help = EXIT_CODES)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the version.
    #[command(after_help = EXIT_CODES)]
    Version,
}

#[derive(Subcommand, Debug)]
enum DeadLetterCommand {
    /// List the dead letters still in the dead-letter queue (read-only).
    #[command(after_help = EXIT_CODES)]
    List {
        /// The queue directory (not its dead-letter directory).
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Move dead letter ID back into the queue as a new message; prints the new ID.
    #[command(after_help = EXIT_CODES)]
    Requeue {
        /// The dead letter's ID (as listed by `dead-letter list`).
        id: u64,
        /// The queue directory (not its dead-letter directory).
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PriorityArg {
    Low,
    Medium,
    High,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Priority {
        match p {
            PriorityArg::Low => Priority::Low,
            PriorityArg::Medium => Priority::Medium,
            PriorityArg::High => Priority::High,
        }
    }
}

/// A time to live: a duration (30s, 5m, 1h) that is not zero.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("a time to live must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Why a command failed: a usage error exits 2, anything else 1. The message is one
/// line that says what to do.
enum Failure {
    Usage(String),
    Failed(String),
    /// Standard output could not be written (a closed pipe, a full disk).
    Output(io::Error),
}

type CmdResult = Result<(), Failure>;

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Output(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0; a command line without a command
            // gets the help on stderr with 2; any other usage error is one line on
            // stderr with 2.
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("ledgerq: error: {first} (try --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("ledgerq: error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            if !m.is_empty() {
                eprintln!("ledgerq: error: {m}");
            }
            ExitCode::from(1)
        }
        Err(Failure::Output(e)) => {
            eprintln!("ledgerq: error: cannot write output: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> CmdResult {
    // Whether a closed standard output (`ledgerq dump DIR | head`) counts as success:
    // for the commands that change nothing, whose output is all they do, and for
    // `enqueue`, which enqueues all its input whether or not its IDs can be printed.
    // A mutating command that stops early (`dequeue`) fails instead.
    let closed_output_ok = matches!(
        cli.command,
        Command::Stats { .. }
            | Command::Verify { .. }
            | Command::Peek { .. }
            | Command::Dump { .. }
            | Command::Tail { .. }
            | Command::Enqueue { .. }
            | Command::DeadLetter(DeadLetterCommand::List { .. })
            | Command::Completions { .. }
            | Command::Version
    );
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let r = match cli.command {
        Command::Stats { dir, json } => stats(&mut out, &dir, json),
        Command::Verify { dir, json } => verify(&mut out, &dir, json),
        Command::Peek { dir, count, format } => peek(&mut out, &dir, count, format),
        Command::Dump {
            dir,
            from,
            since,
            format,
        } => dump(&mut out, &dir, from, since.as_deref(), format),
        Command::Tail {
            dir,
            count,
            follow,
            format,
        } => tail(&mut out, &dir, count, follow, format),
        Command::Enqueue {
            dir,
            headers,
            priority,
            ttl,
            dedup_key,
            payloads,
        } => {
            let mut opts = EnqueueOptions::new();
            for (k, v) in headers {
                opts = opts.header(k, v);
            }
            if let Some(p) = priority {
                opts = opts.priority(p.into());
            }
            if let Some(t) = ttl {
                opts = opts.ttl(t);
            }
            if let Some(k) = dedup_key {
                opts = opts.dedup_key(k);
            }
            enqueue(&mut out, &dir, &opts, payloads)
        }
        Command::Dequeue {
            dir,
            count,
            ack,
            format,
        } => dequeue(&mut out, &dir, count, ack, format),
        Command::Compact { dir } => compact(&mut out, &dir),
        Command::DeadLetter(DeadLetterCommand::List { dir, format }) => {
            dead_letter_list(&mut out, &dir, format)
        }
        Command::DeadLetter(DeadLetterCommand::Requeue { id, dir }) => {
            dead_letter_requeue(&mut out, &dir, id)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ledgerq", &mut out);
            Ok(())
        }
        Command::Version => {
            writeln!(out, "ledgerq {}", env!("CARGO_PKG_VERSION"))?;
            Ok(())
        }
    };
    let flushed = out.flush();
    let r = match (r, flushed) {
        (Ok(()), Err(e)) => Err(Failure::Output(e)),
        (r, _) => r,
    };
    match r {
        Err(Failure::Output(e)) if closed_output_ok && e.kind() == io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        r => r,
    }
}

/// The one-line message for a library error on queue `dir`.
fn describe(dir: &Path, e: &Error) -> String {
    let d = dir.display();
    match e {
        Error::Locked { .. } => format!(
            "queue {d} is owned by another process (lock file {}); stop that process, or \
             use a read-only command (stats, verify, peek, dump, tail)",
            dir.join(LOCK_FILE).display()
        ),
        Error::NotAQueue { .. } => {
            format!(
                "{d} is not a queue directory (no segment or consumer state file); check the path"
            )
        }
        Error::Io { source, path, .. }
            if source.kind() == io::ErrorKind::NotFound && (path == dir || !dir.exists()) =>
        {
            format!("queue directory {d} does not exist; check the path")
        }
        Error::Io { source, .. } => format!("{e}: {source}"),
        Error::Corrupt { .. } => {
            format!("{e}; run `ledgerq verify {d}` for a full report")
        }
        Error::Journal(j) => match std::error::Error::source(j) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
        _ => e.to_string(),
    }
}

fn fail(dir: &Path) -> impl Fn(Error) -> Failure + '_ {
    move |e| Failure::Failed(describe(dir, &e))
}

/// Opens `dir` read-only.
fn inspector(dir: &Path) -> Result<Inspector, Failure> {
    Inspector::open(dir).map_err(fail(dir))
}

/// Opens the queue in `dir` for a mutating command: the directory must exist (it is
/// never created here), and, unless `new_ok`, already hold a queue.
///
/// A queue whose last open was in manual-ack mode is opened in manual-ack mode: it may
/// hold acknowledgements made out of order, which an auto-ack open refuses (and would
/// not read). Automatic compaction is off: an application's retention policy is not
/// recorded in the queue, so compaction here would remove the consumed segments it
/// keeps for replay (`compact` runs its one pass on request).
fn open_queue(dir: &Path, opts: Options, new_ok: bool) -> Result<Queue, Failure> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Failure::Failed(format!(
                "{} is not a directory; give a queue directory",
                dir.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Failure::Failed(format!(
                "queue directory {} does not exist; check the path{}",
                dir.display(),
                if new_ok {
                    " (create it with mkdir to start a new queue)"
                } else {
                    ""
                }
            )))
        }
        Err(e) => {
            return Err(Failure::Failed(format!(
                "cannot read {}: {e}",
                dir.display()
            )))
        }
    }
    if !new_ok {
        // Fails on a directory that holds no queue, without creating anything.
        inspector(dir)?;
    } else if holds_other_files_only(dir) {
        // An empty directory becomes a new queue; one holding someone else's files
        // (a home directory, a mistyped path) does not.
        return Err(Failure::Failed(format!(
            "{} holds other files and no queue; give a queue directory, or an empty \
             directory to start a new queue",
            dir.display()
        )));
    }
    // New segments keep the size of the queue's existing ones (the default size would
    // otherwise apply to every segment this command creates).
    let opts = match newest_segment_size(dir) {
        Some(size) => opts.segment_size(size),
        None => opts,
    };
    // A state file that cannot be read here (another process creating it this very
    // moment, or damage) is left to the open to report (`Locked`, `Corrupt`).
    let opts = match recorded_ack_mode(dir).unwrap_or(None) {
        Some(AckMode::Manual) => opts.ack_mode(AckMode::Manual),
        _ => opts,
    };
    Queue::open_with(dir, opts.auto_compact(false)).map_err(fail(dir))
}

/// Whether `dir` holds entries and none of them is a file of a queue.
fn holds_other_files_only(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    !names.is_empty()
        && !names.iter().any(|n| {
            n == LOCK_FILE
                || n == DEAD_LETTER_DIR
                || (n.starts_with("consumer.") && n.ends_with(".state"))
                || n.ends_with(".seg")
                || n.ends_with(".seg.tmp")
        })
}

/// The size of the newest segment file of `dir`, if it is a size a queue accepts
/// (64 KiB to 1 GiB, a multiple of 4096).
fn newest_segment_size(dir: &Path) -> Option<u64> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 24
                && name.ends_with(".seg")
                && name[..20].bytes().all(|b| b.is_ascii_digit())
        })
        .max_by_key(|e| e.file_name())?;
    let size = newest.metadata().ok()?.len();
    ((64 << 10..=1 << 30).contains(&size) && size % 4096 == 0).then_some(size)
}

fn close(dir: &Path, q: Queue) -> CmdResult {
    q.close().map_err(fail(dir))
}

/// A progress indicator on stderr, only when stderr is a terminal. For a command that
/// writes to standard output while it runs (`writes_out`), also only when standard
/// output is not a terminal: on the same terminal the bar would be drawn among the
/// records, and records scrolling by show progress themselves.
fn progress(len: Option<u64>, what: &str, writes_out: bool) -> ProgressBar {
    if !io::stderr().is_terminal() || (writes_out && io::stdout().is_terminal()) {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => {
            let pb = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)")
            {
                pb.set_style(style.progress_chars("=> "));
            }
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                pb.set_style(style);
            }
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        }
    };
    pb.set_message(what.to_string());
    pb
}

fn stats(out: &mut impl Write, dir: &Path, json: bool) -> CmdResult {
    let i = inspector(dir)?;
    let s = i.stats().map_err(fail(dir))?;
    if json {
        writeln!(out, "{}", render::stats_json(dir, &s))?;
    } else {
        write!(out, "{}", render::stats_text(dir, &s))?;
    }
    Ok(())
}

fn verify(out: &mut impl Write, dir: &Path, json: bool) -> CmdResult {
    // The report covers any directory that exists; one holding no queue is reported
    // as such, not verified as empty.
    let i = inspector(dir)?;
    let pb = progress(None, &format!("verifying {}", dir.display()), false);
    let r = i.verify();
    pb.finish_and_clear();
    let r = r.map_err(|e| Failure::Failed(format!("{e}; check the path and its permissions")))?;
    let written = if json {
        writeln!(out, "{}", render::report_json(&r))
    } else {
        write!(out, "{r}")
    };
    if r.is_clean() {
        return Ok(written?);
    }
    // A damaged queue fails whether or not the report could be written (`verify DIR |
    // head -1` must not exit 0); the report goes out before the error line.
    let _ = written.and_then(|()| out.flush());
    let d = dir.display();
    let bad_state = r.consumer.as_ref().filter(|c| c.problem.is_some());
    // What an operator can do from here, the most serious damage first.
    let advice = if !r.corruption.is_empty() {
        format!(
            "the damaged records cannot be read and readers stop at them: save the \
             readable ones with `ledgerq dump {d} --from ID`, starting past each damaged \
             record (the record ranges and missing IDs above show where), then restore \
             the queue from a backup"
        )
    } else {
        let mut a = Vec::new();
        if let Some(c) = bad_state {
            a.push(format!(
                "restore {} from a backup, or move it aside (every retained message is \
                 then delivered again)",
                c.path.display()
            ));
        }
        if !r.torn.is_empty() {
            a.push(format!(
                "run `ledgerq compact {d}`: opening the queue to write cuts the torn tail off"
            ));
        }
        a.join("; then ")
    };
    Err(Failure::Failed(format!(
        "queue {d} is damaged ({} corruption(s), {} torn tail(s){}); {advice}",
        r.corruption.len(),
        r.torn.len(),
        if bad_state.is_some() {
            ", bad consumer state"
        } else {
            ""
        }
    )))
}

fn peek(out: &mut impl Write, dir: &Path, count: usize, format: Format) -> CmdResult {
    let i = inspector(dir)?;
    for m in i.peek(count).map_err(fail(dir))? {
        render::message(out, format, &m, None, None)?;
    }
    Ok(())
}

/// A time given as RFC 3339 or as a duration ago.
fn parse_since(s: &str) -> Result<SystemTime, Failure> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now()
            .checked_sub(d)
            .unwrap_or(SystemTime::UNIX_EPOCH));
    }
    Err(Failure::Usage(format!(
        "--since `{s}` is neither an RFC 3339 time (2024-05-01T10:00:00Z) nor a duration \
         ago (10m, 2h)"
    )))
}

fn dump(
    out: &mut impl Write,
    dir: &Path,
    from: Option<u64>,
    since: Option<&str>,
    format: Format,
) -> CmdResult {
    let since = since.map(parse_since).transpose()?;
    let i = inspector(dir)?;
    let start = match (from, since) {
        (Some(id), _) => id,
        (None, Some(t)) => i.seek_time(t).map_err(fail(dir))?,
        (None, None) => i.first_id(),
    };
    // For the progress bar only: the end as far as an undamaged scan of the last
    // segment sees it. The dump itself runs until the cursor finds nothing more.
    let end = i.next_id();
    let first = start.max(i.first_id());
    let pb = progress(Some(end.saturating_sub(first)), "dumping", true);
    let mut records = i.records(first).map_err(fail(dir))?;
    let mut n = 0u64;
    let r = (|| {
        for r in records.by_ref() {
            let r = r.map_err(fail(dir))?;
            render::record(out, format, &r)?;
            n += 1;
            if n % 1024 == 0 {
                pb.set_position(r.message.id().saturating_sub(first));
            }
        }
        Ok(())
    })();
    pb.finish_and_clear();
    r
}

fn tail(out: &mut impl Write, dir: &Path, count: u64, follow: bool, format: Format) -> CmdResult {
    let i = inspector(dir)?;
    let from = i.next_id().saturating_sub(count).max(i.first_id());
    let mut records = i.records(from).map_err(fail(dir))?;
    loop {
        for r in records.by_ref() {
            let r = r.map_err(fail(dir))?;
            render::record(out, format, &r)?;
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn enqueue(
    out: &mut impl Write,
    dir: &Path,
    opts: &EnqueueOptions,
    payloads: Vec<String>,
) -> CmdResult {
    let q = open_queue(dir, Options::new(), true)?;
    let mut ids = Ids {
        out,
        enqueued: 0,
        error: None,
    };
    if payloads.is_empty() {
        let stdin = io::stdin();
        let mut lock = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = lock.read_until(b'\n', &mut line).map_err(|e| {
                Failure::Failed(format!(
                    "cannot read standard input: {e} ({} message(s) enqueued before it)",
                    ids.enqueued
                ))
            })?;
            if n == 0 {
                break;
            }
            // The line ending, "\n" or "\r\n", is not part of the payload.
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            ids.put(&q, dir, opts, &line)?;
        }
    } else {
        for p in &payloads {
            ids.put(&q, dir, opts, p.as_bytes())?;
        }
    }
    if ids.error.is_none() {
        ids.error = ids.out.flush().err();
    }
    close(dir, q)?;
    match ids.error {
        // The reader stopped early (`| head -1`): it has what it wanted, and the input
        // is all in the queue.
        Some(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::Failed(format!(
            "cannot write the IDs to standard output: {e}; all {} message(s) were enqueued",
            ids.enqueued
        ))),
        _ => Ok(()),
    }
}

/// Enqueues payloads and prints their IDs. Once standard output fails, nothing more is
/// printed but every payload is still enqueued: a reader that stops early must not cut
/// the input short.
struct Ids<'a, W: Write> {
    out: &'a mut W,
    /// How many payloads were enqueued (duplicates included).
    enqueued: u64,
    /// The first error writing to `out`.
    error: Option<io::Error>,
}

impl<W: Write> Ids<'_, W> {
    fn put(&mut self, q: &Queue, dir: &Path, opts: &EnqueueOptions, payload: &[u8]) -> CmdResult {
        let e = q.enqueue_with(payload, opts).map_err(|e| {
            Failure::Failed(format!(
                "{} ({} message(s) enqueued before it)",
                describe(dir, &e),
                self.enqueued
            ))
        })?;
        self.enqueued += 1;
        if self.error.is_none() {
            let written = if e.is_duplicate() {
                writeln!(self.out, "{} duplicate", e.id())
            } else {
                writeln!(self.out, "{}", e.id())
            };
            self.error = written.err();
        }
        Ok(())
    }
}

fn dequeue(out: &mut impl Write, dir: &Path, count: usize, ack: bool, format: Format) -> CmdResult {
    let q = open_queue(dir, Options::new().ack_mode(AckMode::Manual), false)?;
    // `written`: how many messages were written out before this one.
    for written in 0..count {
        let Some(m) = q.dequeue().map_err(fail(dir))? else {
            break;
        };
        // Each message is written out (flushed) before it is acknowledged and before
        // the next is taken: a failed write (a full disk, a closed pipe) stops the
        // command and leaves that message in the queue, unacknowledged.
        if let Err(e) = render::message(out, format, &m, None, None).and_then(|()| out.flush()) {
            close(dir, q)?;
            let id = m.id();
            return Err(Failure::Failed(if ack {
                format!(
                    "cannot write message {id} to standard output: {e}; stopped after \
                     {written} message(s) written and acknowledged, message {id} was not \
                     acknowledged and will be delivered again"
                )
            } else {
                format!(
                    "cannot write message {id} to standard output: {e}; stopped after \
                     {written} message(s) written (none acknowledged)"
                )
            }));
        }
        if ack {
            q.ack(m.id()).map_err(fail(dir))?;
        }
    }
    close(dir, q)
}

fn compact(out: &mut impl Write, dir: &Path) -> CmdResult {
    let q = open_queue(dir, Options::new(), false)?;
    let pb = progress(None, &format!("compacting {}", dir.display()), false);
    let r = q.compact();
    pb.finish_and_clear();
    let r = r.map_err(fail(dir))?;
    writeln!(
        out,
        "removed {} segment(s), freed {} bytes",
        r.segments_removed, r.bytes_freed
    )?;
    close(dir, q)
}

fn dead_letter_list(out: &mut impl Write, dir: &Path, format: Format) -> CmdResult {
    // The queue itself must be there; an absent dead-letter queue holds nothing.
    inspector(dir)?;
    let dlq = dir.join(DEAD_LETTER_DIR);
    if !dlq.exists() {
        return Ok(());
    }
    let i = inspector(&dlq)?;
    for r in i.records(i.first_id()).map_err(fail(&dlq))? {
        let r = r.map_err(fail(&dlq))?;
        if r.state.is_deliverable() {
            render::message(out, format, &r.message, None, None)?;
        }
    }
    Ok(())
}

fn dead_letter_requeue(out: &mut impl Write, dir: &Path, id: u64) -> CmdResult {
    let q = open_queue(dir, Options::new(), false)?;
    let new_id = q.requeue_dead_letter(id).map_err(|e| match e {
        Error::NotFound { .. } => Failure::Failed(format!(
            "the dead-letter queue of {} holds no message {id}; list them with `ledgerq \
             dead-letter list {}`",
            dir.display(),
            dir.display()
        )),
        e => Failure::Failed(describe(dir, &e)),
    })?;
    writeln!(out, "{new_id}")?;
    close(dir, q)
}
