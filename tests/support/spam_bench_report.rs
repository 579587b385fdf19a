//! What the spam benchmark gathers per configuration and run ([`RunResult`], two
//! [`Phase`]s), how it checks that the spam checks really ran
//! ([`RunResult::check_problems`]), and the report: a block per configuration and the
//! final markdown tables, every figure relative to `off` from the same run.
//!
//! Layout: [`Phase`], [`RunResult`], `FIGURES`, [`print_configuration`],
//! [`print_tables`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bench_stats::{CpuDelta, median, percentile};
use crate::spam_bench_client::BatchOutcome;
use crate::spam_bench_fleet::Variant;

/// Failure transcripts kept per phase.
const FAILURE_SAMPLES: usize = 5;

/// The sessions of one kind (loaded: many clients at once; serial: one client) of one
/// configuration in one run, summed over its rounds.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Milliseconds, one per accepted message, connect to the `250` after DATA; sorted
    /// by [`Phase::finish`].
    latencies_ms: Vec<f64>,
    /// The same, to the `250` after RCPT TO.
    envelope_ms: Vec<f64>,
    pub failures: usize,
    pub failure_samples: Vec<String>,
    /// Summed wall time of the batches.
    wall: Duration,
    dns_queries: usize,
}

impl Phase {
    pub fn add(&mut self, outcome: BatchOutcome, wall: Duration, dns_queries: usize) {
        let ms = |latency: &Duration| latency.as_secs_f64() * 1000.0;
        self.latencies_ms.extend(outcome.latencies.iter().map(ms));
        self.envelope_ms
            .extend(outcome.envelope_latencies.iter().map(ms));
        self.failures += outcome.failures;
        let room = FAILURE_SAMPLES.saturating_sub(self.failure_samples.len());
        self.failure_samples
            .extend(outcome.failure_samples.into_iter().take(room));
        self.wall += wall;
        self.dns_queries += dns_queries;
    }

    pub fn finish(&mut self) {
        self.latencies_ms.sort_by(f64::total_cmp);
        self.envelope_ms.sort_by(f64::total_cmp);
    }

    pub fn accepted(&self) -> usize {
        self.latencies_ms.len()
    }

    pub fn msgs_per_sec(&self) -> f64 {
        self.accepted() as f64 / self.wall.as_secs_f64()
    }

    pub fn p50(&self) -> f64 {
        percentile(&self.latencies_ms, 50.0)
    }

    pub fn p99(&self) -> f64 {
        percentile(&self.latencies_ms, 99.0)
    }

    pub fn envelope_p50(&self) -> f64 {
        percentile(&self.envelope_ms, 50.0)
    }

    pub fn queries_per_msg(&self) -> f64 {
        self.dns_queries as f64 / (self.accepted() + self.failures).max(1) as f64
    }
}

/// The figures of one configuration in one run.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// `--clients` concurrent clients: throughput, and latency under load.
    pub loaded: Phase,
    /// One client at a time: the latency the checks add to one message, without
    /// queueing behind other sessions and without in-flight DNS queries shared with
    /// them (hickory merges identical queries in flight).
    pub serial: Phase,
    /// Increase of `mxfleet_spam_checks_total` by (check, result), both phases.
    pub checks: BTreeMap<(String, String), u64>,
    /// Probes of the primary (none expected: every verdict is cached).
    pub probes: u64,
    /// CPU during the loaded batches.
    pub cpu: CpuDelta,
}

/// The result every check must give on every benchmark message.
fn expected_result(check: &str) -> &'static str {
    match check {
        "primary_aware" => "primary_down",
        "dnsbl" | "rhsbl_sender" => "clean",
        "unknown_client_hostname" => "verified",
        "unknown_sender_domain" => "exists",
        "spf" => "pass",
        "verify_recipients" => "cache_valid",
        "greylisting" => "known",
        _ => "?",
    }
}

impl RunResult {
    /// CPU time of this whole process (nodes, clients, DNS server) per message of the
    /// loaded batches: the cost of a message, mostly blind to other processes.
    fn cpu_ms_per_msg(&self) -> f64 {
        self.cpu.mine_ms() / self.loaded.accepted().max(1) as f64
    }

    pub fn add_checks(&mut self, delta: BTreeMap<(String, String), u64>) {
        for (key, count) in delta {
            *self.checks.entry(key).or_default() += count;
        }
    }

    /// Problems with the check counters: a configured check that did not run on every
    /// accepted message with its expected result, any other result, or a probe.
    pub fn check_problems(&self, variant: &Variant) -> Vec<String> {
        let accepted = (self.loaded.accepted() + self.serial.accepted()) as u64;
        let mut problems = Vec::new();
        for check in &variant.checks {
            let (name, expected) = (check.as_str(), expected_result(check.as_str()));
            let count = self
                .checks
                .get(&(name.to_owned(), expected.to_owned()))
                .copied()
                .unwrap_or(0);
            if count < accepted {
                problems.push(format!(
                    "{name}={expected} counted {count} for {accepted} accepted"
                ));
            }
        }
        for ((check, result), count) in &self.checks {
            let configured = variant.checks.iter().any(|c| c.as_str() == check);
            if *count > 0 && (!configured || result != expected_result(check)) {
                problems.push(format!("unexpected {check}={result} x{count}"));
            }
        }
        if self.probes > 0 {
            problems.push(format!("{} probe(s) of the primary", self.probes));
        }
        problems
    }
}

/// A figure of one configuration in one run, given the same run's `off`.
struct Figure {
    name: &'static str,
    decimals: usize,
    value: fn(&RunResult, &RunResult) -> f64,
}

const FIGURES: [Figure; 15] = [
    Figure {
        name: "msgs/s",
        decimals: 1,
        value: |r, _| r.loaded.msgs_per_sec(),
    },
    Figure {
        name: "msgs/s / off",
        decimals: 3,
        value: |r, off| r.loaded.msgs_per_sec() / off.loaded.msgs_per_sec(),
    },
    Figure {
        name: "CPU ms/msg",
        decimals: 2,
        value: |r, _| r.cpu_ms_per_msg(),
    },
    Figure {
        name: "added CPU ms/msg",
        decimals: 2,
        value: |r, off| r.cpu_ms_per_msg() - off.cpu_ms_per_msg(),
    },
    Figure {
        name: "1-client p50 ms",
        decimals: 2,
        value: |r, _| r.serial.p50(),
    },
    Figure {
        name: "1-client p99 ms",
        decimals: 2,
        value: |r, _| r.serial.p99(),
    },
    Figure {
        name: "added 1-client p50 ms",
        decimals: 2,
        value: |r, off| r.serial.p50() - off.serial.p50(),
    },
    Figure {
        name: "added 1-client p99 ms",
        decimals: 2,
        value: |r, off| r.serial.p99() - off.serial.p99(),
    },
    Figure {
        name: "1-client envelope p50 ms",
        decimals: 2,
        value: |r, _| r.serial.envelope_p50(),
    },
    Figure {
        name: "added 1-client envelope p50 ms",
        decimals: 2,
        value: |r, off| r.serial.envelope_p50() - off.serial.envelope_p50(),
    },
    Figure {
        name: "loaded p50 ms",
        decimals: 2,
        value: |r, _| r.loaded.p50(),
    },
    Figure {
        name: "loaded p99 ms",
        decimals: 2,
        value: |r, _| r.loaded.p99(),
    },
    Figure {
        name: "added loaded p50 ms",
        decimals: 2,
        value: |r, off| r.loaded.p50() - off.loaded.p50(),
    },
    Figure {
        name: "DNS q/msg 1-client",
        decimals: 2,
        value: |r, _| r.serial.queries_per_msg(),
    },
    Figure {
        name: "DNS q/msg loaded",
        decimals: 2,
        value: |r, _| r.loaded.queries_per_msg(),
    },
];

fn figure_values(figure: &Figure, runs: &[RunResult], off: &[RunResult]) -> Vec<f64> {
    runs.iter()
        .zip(off)
        .map(|(run, off)| (figure.value)(run, off))
        .collect()
}

fn fmt_runs(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn failures(runs: &[RunResult]) -> usize {
    runs.iter()
        .map(|r| r.loaded.failures + r.serial.failures)
        .sum()
}

/// One configuration's block: every figure's median and per-run values, failures,
/// and the check counters of the last run.
pub fn print_configuration(variant: &Variant, runs: &[RunResult], off: &[RunResult]) {
    println!("\n== {} ({} run(s)) ==", variant.name, runs.len());
    for figure in &FIGURES {
        let values = figure_values(figure, runs, off);
        let d = figure.decimals;
        println!(
            "  {:<30} median {:>9.d$}   runs [{}]",
            figure.name,
            median(&values),
            fmt_runs(&values, d)
        );
    }
    let failed = failures(runs);
    if failed > 0 {
        println!("  !! {failed} session(s) without a 250 over all runs");
    }
    if let Some(last) = runs.last()
        && !last.checks.is_empty()
    {
        let counted: Vec<String> = last
            .checks
            .iter()
            .map(|((check, result), n)| format!("{check}={result} x{n}"))
            .collect();
        println!("  checks (last run): {}", counted.join(", "));
    }
}

/// The final tables: medians (and every run's msgs/s), then every run. `results[0]`
/// is `off`.
pub fn print_tables(variants: &[Variant], results: &[Vec<RunResult>]) {
    let off = &results[0];
    println!("\n## Median of runs\n");
    print!("| configuration |");
    for figure in &FIGURES {
        print!(" {} |", figure.name);
    }
    println!(" msgs/s every run | failed |");
    print!("|---|");
    for _ in &FIGURES {
        print!("---:|");
    }
    println!("---|---:|");
    for (variant, runs) in variants.iter().zip(results) {
        print!("| {} |", variant.name);
        for figure in &FIGURES {
            let values = figure_values(figure, runs, off);
            print!(" {:.d$} |", median(&values), d = figure.decimals);
        }
        let rates: Vec<f64> = runs.iter().map(|r| r.loaded.msgs_per_sec()).collect();
        println!(" {} | {} |", fmt_runs(&rates, 1), failures(runs));
    }

    println!("\n## Every run\n");
    print!("| configuration | run | accepted |");
    for figure in &FIGURES {
        print!(" {} |", figure.name);
    }
    println!(" CPU bench % | CPU others % |");
    print!("|---|---:|---:|");
    for _ in &FIGURES {
        print!("---:|");
    }
    println!("---:|---:|");
    for (variant, runs) in variants.iter().zip(results) {
        for (i, (run, off)) in runs.iter().zip(off).enumerate() {
            print!(
                "| {} | {} | {} |",
                variant.name,
                i + 1,
                run.loaded.accepted() + run.serial.accepted()
            );
            for figure in &FIGURES {
                print!(" {:.d$} |", (figure.value)(run, off), d = figure.decimals);
            }
            let (bench, others) = run.cpu.shares();
            println!(" {bench:.0} | {others:.0} |");
        }
    }
}
