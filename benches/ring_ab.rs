//! `Ring<u64>` against `crossbeam_queue::ArrayQueue<u64>`, alternated run by run.
//!
//! The `ring` criterion bench measures each queue for seconds at a time, one after the
//! other; on a shared machine the load can change between the two and swing their
//! ratio either way. This harness runs the two queues in turns (which one goes first
//! alternates by round), each turn moving the same values with the same threads as the
//! bench, and reports per case the median rate of each queue and the median of the
//! per-round ratios, with their quartiles.
//!
//! ```text
//! cargo run --release -p ledgerq-benches --bin ring-ab [-- --rounds N] [--repeat N]
//! ```
//!
//! `--rounds` (default 31) is the number of rounds; each turn moves `--repeat` (default
//! 5) times `PER_RUN` values.

use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use ledgerq_benches::ring::{run, CAPACITY, PER_RUN};
use ledgerq_ring::Ring;

/// A case: producers, consumers, batch size.
const CASES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (2, 2, 1),
    (1, 1, 16),
    (2, 2, 16),
    (4, 4, 1),
    (4, 4, 16),
];

fn main() {
    let mut rounds = 31usize;
    let mut repeat = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or_else(|| usage(&format!("{name} takes a positive number")))
        };
        match a.as_str() {
            "--rounds" => rounds = value("--rounds"),
            "--repeat" => repeat = value("--repeat"),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    println!(
        "Ring<u64> against ArrayQueue<u64>, capacity {CAPACITY}, {rounds} rounds of \
         {repeat} x {PER_RUN} values per queue and case, alternated; {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!();
    println!("| case | Ring M/s (median) | ArrayQueue M/s (median) | Ring / ArrayQueue: median [quartiles] | rounds Ring ahead |");
    println!("|---|---|---|---|---|");
    let mut ring_rate = Vec::new();
    for (p, c, batch) in CASES {
        let turn = |ring: bool| -> f64 {
            let took: Duration = (0..repeat)
                .map(|_| {
                    if ring {
                        run(&Ring::<u64>::with_capacity(CAPACITY), p, c, batch, || 42u64)
                    } else {
                        run(&ArrayQueue::<u64>::new(CAPACITY), p, c, batch, || 42u64)
                    }
                })
                .sum();
            (PER_RUN / p as u64 * p as u64) as f64 * repeat as f64 / took.as_secs_f64() / 1e6
        };
        let mut r = Vec::with_capacity(rounds);
        let mut a = Vec::with_capacity(rounds);
        for round in 0..rounds {
            if round % 2 == 0 {
                r.push(turn(true));
                a.push(turn(false));
            } else {
                a.push(turn(false));
                r.push(turn(true));
            }
        }
        let mut ratio: Vec<f64> = r.iter().zip(&a).map(|(r, a)| r / a).collect();
        let ahead = ratio.iter().filter(|&&x| x >= 1.0).count();
        let (q1, med, q3) = quartiles(&mut ratio);
        let ring_median = quartiles(&mut r).1;
        ring_rate.push(((p, c, batch), ring_median));
        println!(
            "| {p}P{c}C batch {batch} | {ring_median:.1} | {:.1} | {med:.2}x [{q1:.2}, {q3:.2}] | {ahead} of {rounds} |",
            quartiles(&mut a).1
        );
    }
    println!();
    for (p, c) in [(1, 1), (2, 2), (4, 4)] {
        let rate = |b: usize| {
            ring_rate
                .iter()
                .find(|(k, _)| *k == (p, c, b))
                .map(|(_, v)| *v)
        };
        if let (Some(one), Some(sixteen)) = (rate(1), rate(16)) {
            println!(
                "Ring {p}P{c}C: batch 16 at {:.2}x the batch-1 rate (medians)",
                sixteen / one
            );
        }
    }
}

/// First quartile, median and third quartile of `v` (sorted in place).
fn quartiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn usage(why: &str) -> ! {
    eprintln!("ring-ab: {why}\nusage: ring-ab [--rounds N] [--repeat N]");
    std::process::exit(2)
}
