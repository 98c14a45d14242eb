//! Summarizes `run.sh`'s measurements (stdin, one run per line:
//! `round instrumentation requests_per_s p99_us errors`) as a Markdown table: each run's
//! requests/s and p99 latency as ratios against the `none` run of the same round, then
//! per instrumentation the median ratio and its spread (min–max) over rounds.

use std::collections::BTreeMap;
use std::io::Read;

struct Run {
    round: u32,
    name: String,
    rps: f64,
    p99_us: f64,
    errors: u64,
}

fn parse(line: &str) -> Option<Run> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.len() != 5 {
        return None;
    }
    Some(Run {
        round: w[0].parse().ok()?,
        name: w[1].to_string(),
        rps: w[2].parse().ok()?,
        p99_us: w[3].parse().ok()?,
        errors: w[4].parse().ok()?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
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

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.3}–{max:.3}")
}

fn main() -> std::io::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let runs: Vec<Run> = input.lines().filter_map(parse).collect();
    let baseline: BTreeMap<u32, &Run> = runs
        .iter()
        .filter(|r| r.name == "none")
        .map(|r| (r.round, r))
        .collect();
    // Instrumentations in order of first appearance.
    let mut names: Vec<&str> = Vec::new();
    for r in &runs {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    println!(
        "| instrumentation | rounds | requests/s (median) | throughput vs none (median) | \
         spread | p99 µs (median) | p99 vs none (median) | spread | errors |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---|---:|");
    for name in names {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.name == name).collect();
        let (mut rps_ratio, mut p99_ratio) = (Vec::new(), Vec::new());
        for r in &mine {
            if let Some(base) = baseline.get(&r.round) {
                rps_ratio.push(r.rps / base.rps);
                p99_ratio.push(r.p99_us / base.p99_us);
            }
        }
        println!(
            "| {name} | {} | {:.0} | {:.3} | {} | {:.0} | {:.3} | {} | {} |",
            mine.len(),
            median(mine.iter().map(|r| r.rps).collect()),
            median(rps_ratio.clone()),
            spread(&rps_ratio),
            median(mine.iter().map(|r| r.p99_us).collect()),
            median(p99_ratio.clone()),
            spread(&p99_ratio),
            mine.iter().map(|r| r.errors).sum::<u64>(),
        );
    }
    println!("\nper run (round: requests/s, p99 µs):");
    for r in &runs {
        println!(
            "  round {} {:<16} {:>9.0} req/s  p99 {:>8.0} µs  errors {}",
            r.round, r.name, r.rps, r.p99_us, r.errors
        );
    }
    Ok(())
}
