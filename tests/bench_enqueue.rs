//! Enqueue benchmark: how fast a 3-node replicated queue durably accepts messages.
//!
//! What one enqueue costs here is what a `250` after DATA costs in production: the
//! accepting node stores the body (fdatasync + directory fsync), streams it to the
//! other voters until a write quorum has fsynced it, forwards the `Enqueue` to the
//! leader when it is not the leader itself, and returns once the entry is committed
//! (fdatasynced in a quorum of Raft WALs) and applied locally.
//!
//! Setup: three in-process nodes ([`QueueCluster`]) on loopback ports, real gRPC, real
//! fsyncs into a temp dir (`$TMPDIR`, printed with its filesystem type: a tmpfs makes
//! every fsync free and the numbers meaningless), heartbeat 50 ms, election 300 ms,
//! production write and body-quorum timeouts.
//!
//! Scenarios: body size {4 KiB, 1 MiB} x concurrent writers {1, 32}. Writer `w` sends
//! its `k`-th message to node `(w + k) % 3`, so two thirds of the writes are forwarded
//! to the leader. Every message has a unique Message-ID, which is also written into
//! the body so that every body is a new blob. Each run starts a fresh cluster, sends a
//! warm-up batch, waits for the cluster to go quiet, then sends the measured batch.
//!
//! Reported per scenario (median of the runs, then every run's value):
//! - commits/s: measured enqueues / wall time of the measured batch;
//! - p50 / p99: per-enqueue latency (`Queue::enqueue_bytes`, body store included), ms;
//! - WAL syncs/commit: fdatasync batches of the Raft WAL summed over the 3 nodes, per
//!   commit. Without group commit every entry is synced on every node (3.0); lower
//!   means batching. Also shown per node (the sum / 3);
//! - blob fsyncs/commit: blob-store fsyncs summed over the 3 nodes, per commit (each
//!   node holding a body pays an fdatasync and a directory fsync: 6.0 unbatched).
//!
//! Each run also shows the CPU share used by this process and by everything else on
//! the machine during the measured batch (from procfs): a run that shares the machine
//! with a build shows it there, and its figures are not comparable.
//!
//! Counters are read once the cluster is quiet (every node applied the same index, no
//! counter moving) before and after the measured batch, so the body pushes that finish
//! in the background after a commit are counted with it.
//!
//! Layout: option parsing, scenarios, one run (`run_once` / `drive`), counters and
//! quiescence, then the report (per-scenario blocks and the final markdown tables).
//!
//! Run: `cargo bench -p mxfleet-e2e --bench enqueue [-- --runs N] [-- --quick]`.
//! `--runs N` (default 3) repeats every scenario N times on a fresh cluster;
//! `--quick` uses tiny counts for a smoke run. Unknown arguments (such as the
//! `--bench` that cargo passes) are ignored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mxfleet_core::Envelope;
use mxfleet_queue::{Queue, QueueConfig};
use mxfleet_testkit::{QueueCluster, init_test_logging};

#[path = "support/bench_stats.rs"]
mod bench_stats;
use bench_stats::{CpuSample, filesystem_of, median};

const NODES: usize = 3;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// How often the quiescence check looks at the counters.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// Quiescence normally takes a few polls; past this the run reports what it has.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Options {
    runs: usize,
    quick: bool,
}

/// Parses `--runs N` / `--runs=N` and `--quick`; ignores everything else.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        runs: 3,
        quick: false,
    };
    while let Some(arg) = args.next() {
        let runs = match arg.as_str() {
            "--quick" => {
                options.quick = true;
                continue;
            }
            "--runs" => args.next().ok_or("--runs needs a value")?,
            other => match other.strip_prefix("--runs=") {
                Some(value) => value.to_string(),
                None => continue,
            },
        };
        options.runs = match runs.parse() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("--runs wants a positive integer, got {runs:?}")),
        };
    }
    Ok(options)
}

/// One cell of the benchmark matrix.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    body_bytes: usize,
    writers: usize,
    warmup: usize,
    enqueues: usize,
}

impl Scenario {
    fn label(&self) -> String {
        let size = if self.body_bytes >= MIB {
            format!("{} MiB", self.body_bytes / MIB)
        } else {
            format!("{} KiB", self.body_bytes / KIB)
        };
        format!("{size} x {} writer(s)", self.writers)
    }
}

/// Counts sized for roughly 5-10 s per run on a 2-core VM with a virtio disk.
fn scenarios(quick: bool) -> Vec<Scenario> {
    let cell = |body_bytes, writers, warmup, enqueues| Scenario {
        body_bytes,
        writers,
        warmup,
        enqueues,
    };
    if quick {
        return vec![
            cell(4 * KIB, 1, 5, 30),
            cell(4 * KIB, 32, 32, 128),
            cell(MIB, 1, 2, 5),
            cell(MIB, 32, 32, 64),
        ];
    }
    vec![
        cell(4 * KIB, 1, 50, 500),
        cell(4 * KIB, 32, 320, 6000),
        cell(MIB, 1, 10, 100),
        cell(MIB, 32, 64, 400),
    ]
}

fn tune(config: &mut QueueConfig) {
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout = Duration::from_millis(300);
    // Production values (QueueConfig::new), not the testkit's short ones: a slow
    // fsync under load must show as latency, not as a failed write.
    config.write_timeout = Duration::from_secs(5);
    config.blob_quorum_timeout = Duration::from_secs(10);
    config.max_message_size = 16 * MIB as u64;
}

/// Per-node durability counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counters {
    wal_syncs: Vec<u64>,
    blob_fsyncs: Vec<u64>,
}

impl Counters {
    fn read(queues: &[Queue]) -> Self {
        Counters {
            wal_syncs: queues.iter().map(Queue::wal_sync_count).collect(),
            blob_fsyncs: queues.iter().map(|q| q.blobs().fsync_count()).collect(),
        }
    }

    /// Sums over the nodes of `self - before`.
    fn delta_since(&self, before: &Counters) -> (u64, u64) {
        let sum = |now: &[u64], then: &[u64]| -> u64 {
            now.iter()
                .zip(then)
                .map(|(a, b)| a.saturating_sub(*b))
                .sum()
        };
        (
            sum(&self.wal_syncs, &before.wal_syncs),
            sum(&self.blob_fsyncs, &before.blob_fsyncs),
        )
    }
}

/// Waits until every node has applied the same index and no counter moved between two
/// polls, then returns the counters. Gives up (with a warning) after SETTLE_DEADLINE.
async fn wait_quiescent(queues: &[Queue]) -> Counters {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut last = Counters::read(queues);
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let now = Counters::read(queues);
        let applied: Vec<Option<u64>> = queues
            .iter()
            .map(|q| q.status().last_applied_index)
            .collect();
        let applied_everywhere = applied.windows(2).all(|w| w[0] == w[1]);
        if now == last && applied_everywhere {
            return now;
        }
        if Instant::now() >= deadline {
            eprintln!("warning: cluster not quiet after {SETTLE_DEADLINE:?} (applied {applied:?})");
            return now;
        }
        last = now;
    }
}

/// What the writers of one batch saw.
#[derive(Debug, Default)]
struct BatchOutcome {
    latencies: Vec<Duration>,
    duplicates: usize,
    errors: usize,
    first_error: Option<String>,
}

impl BatchOutcome {
    fn merge(&mut self, other: BatchOutcome) {
        self.latencies.extend(other.latencies);
        self.duplicates += other.duplicates;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A message whose Message-ID (in the envelope and in the body's first header) is
/// rewritten in place for every enqueue, so that every body is a distinct blob.
struct MessageTemplate {
    body: Vec<u8>,
}

impl MessageTemplate {
    const SENDER: &str = "bench@load.test";
    const RECIPIENT: &str = "user@example.test";

    fn new(body_bytes: usize) -> Self {
        let mut body = Vec::with_capacity(body_bytes);
        body.extend_from_slice(Self::message_id_header("warm", 0, 0, 0).as_bytes());
        body.extend_from_slice(
            format!(
                "From: <{}>\r\nTo: <{}>\r\nSubject: mxfleet enqueue benchmark\r\n\r\n",
                Self::SENDER,
                Self::RECIPIENT
            )
            .as_bytes(),
        );
        let line = b"The quick brown fox jumps over the lazy dog, 0123456789 times, again.\r\n";
        while body.len() < body_bytes {
            let take = line.len().min(body_bytes - body.len());
            body.extend_from_slice(&line[..take]);
        }
        body.truncate(body_bytes);
        MessageTemplate { body }
    }

    /// Fixed width, so it can be overwritten in place.
    fn message_id(phase: &str, run: usize, writer: usize, seq: usize) -> String {
        format!("<bench-{phase}-r{run:03}-w{writer:03}-{seq:09}@load.test>")
    }

    fn message_id_header(phase: &str, run: usize, writer: usize, seq: usize) -> String {
        format!(
            "Message-ID: {}\r\n",
            Self::message_id(phase, run, writer, seq)
        )
    }

    /// Stamps a new Message-ID into the body and returns the matching envelope.
    fn next(&mut self, phase: &str, run: usize, writer: usize, seq: usize) -> Envelope {
        let header = Self::message_id_header(phase, run, writer, seq);
        let end = header.len().min(self.body.len());
        self.body[..end].copy_from_slice(&header.as_bytes()[..end]);
        Envelope {
            sender: Self::SENDER.to_string(),
            recipients: vec![Self::RECIPIENT.to_string()],
            message_id: Some(Self::message_id(phase, run, writer, seq)),
            trace: None,
        }
    }
}

/// Sends `total` enqueues from `scenario.writers` concurrent writers and waits for all.
async fn drive(
    queues: &Arc<Vec<Queue>>,
    scenario: Scenario,
    phase: &'static str,
    run: usize,
    total: usize,
) -> BatchOutcome {
    let claimed = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..scenario.writers {
        let queues = queues.clone();
        let claimed = claimed.clone();
        writers.spawn(async move {
            let mut template = MessageTemplate::new(scenario.body_bytes);
            let mut outcome = BatchOutcome::default();
            let mut sent_by_me = 0;
            loop {
                let seq = claimed.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    return outcome;
                }
                let queue = &queues[(writer + sent_by_me) % queues.len()];
                sent_by_me += 1;
                let envelope = template.next(phase, run, writer, seq);
                let started = Instant::now();
                let result = queue.enqueue_bytes(envelope, &template.body).await;
                let latency = started.elapsed();
                match result {
                    Ok(receipt) if receipt.duplicate => outcome.duplicates += 1,
                    Ok(_) => outcome.latencies.push(latency),
                    Err(e) => {
                        outcome.errors += 1;
                        outcome.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        });
    }
    let mut outcome = BatchOutcome::default();
    while let Some(joined) = writers.join_next().await {
        outcome.merge(joined.expect("a benchmark writer task panicked"));
    }
    outcome
}

/// The figures of one run of one scenario.
#[derive(Debug, Clone)]
struct RunResult {
    commits: usize,
    duplicates: usize,
    errors: usize,
    wall: Duration,
    /// Sorted ascending, in milliseconds.
    latencies_ms: Vec<f64>,
    wal_syncs: u64,
    blob_fsyncs: u64,
    /// Share of the machine's CPU capacity used by this process / by everything else
    /// during the measured batch, in percent.
    cpu_bench: f64,
    cpu_others: f64,
}

impl RunResult {
    fn commits_per_sec(&self) -> f64 {
        self.commits as f64 / self.wall.as_secs_f64()
    }

    /// Nearest-rank percentile.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let rank = (p / 100.0 * self.latencies_ms.len() as f64).ceil() as usize;
        self.latencies_ms[rank.clamp(1, self.latencies_ms.len()) - 1]
    }

    fn per_commit(&self, count: u64) -> f64 {
        count as f64 / self.commits.max(1) as f64
    }
}

async fn run_once(scenario: Scenario, run: usize) -> RunResult {
    let mut cluster = QueueCluster::start_tuned(NODES, Arc::new(tune)).await;
    let queues: Arc<Vec<Queue>> = Arc::new(
        (1..=NODES as u64)
            .map(|id| cluster.queue(id).clone())
            .collect(),
    );

    let warmup = drive(&queues, scenario, "warm", run, scenario.warmup).await;
    if warmup.errors > 0 {
        eprintln!(
            "warning: {} warm-up enqueue(s) failed, first: {}",
            warmup.errors,
            warmup.first_error.as_deref().unwrap_or("?")
        );
    }
    let before = wait_quiescent(&queues).await;

    let cpu_before = CpuSample::read();
    let started = Instant::now();
    let measured = drive(&queues, scenario, "meas", run, scenario.enqueues).await;
    let wall = started.elapsed();
    let (cpu_bench, cpu_others) = CpuSample::read().since(&cpu_before).shares();

    let after = wait_quiescent(&queues).await;
    let (wal_syncs, blob_fsyncs) = after.delta_since(&before);
    if let Some(error) = &measured.first_error {
        eprintln!(
            "warning: {} enqueue(s) failed, first: {error}",
            measured.errors
        );
    }

    drop(queues);
    cluster.stop_all().await;

    let mut latencies_ms: Vec<f64> = measured
        .latencies
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    RunResult {
        commits: measured.latencies.len(),
        duplicates: measured.duplicates,
        errors: measured.errors,
        wall,
        latencies_ms,
        wal_syncs,
        blob_fsyncs,
        cpu_bench,
        cpu_others,
    }
}

/// A figure extracted from every run of a scenario.
struct Figure {
    name: &'static str,
    decimals: usize,
    value: fn(&RunResult) -> f64,
}

const FIGURES: [Figure; 7] = [
    Figure {
        name: "commits/s",
        decimals: 1,
        value: RunResult::commits_per_sec,
    },
    Figure {
        name: "p50 ms",
        decimals: 2,
        value: |r| r.percentile_ms(50.0),
    },
    Figure {
        name: "p99 ms",
        decimals: 2,
        value: |r| r.percentile_ms(99.0),
    },
    Figure {
        name: "wall s",
        decimals: 2,
        value: |r| r.wall.as_secs_f64(),
    },
    Figure {
        name: "WAL syncs/commit (3 nodes)",
        decimals: 3,
        value: |r| r.per_commit(r.wal_syncs),
    },
    Figure {
        name: "WAL syncs/commit/node",
        decimals: 3,
        value: |r| r.per_commit(r.wal_syncs) / NODES as f64,
    },
    Figure {
        name: "blob fsyncs/commit (3 nodes)",
        decimals: 2,
        value: |r| r.per_commit(r.blob_fsyncs),
    },
];

fn fmt_runs(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_scenario(scenario: &Scenario, runs: &[RunResult]) {
    println!(
        "\n== {} ({} enqueues after {} warm-up, {} run(s)) ==",
        scenario.label(),
        scenario.enqueues,
        scenario.warmup,
        runs.len()
    );
    for figure in &FIGURES {
        let values: Vec<f64> = runs.iter().map(figure.value).collect();
        let d = figure.decimals;
        println!(
            "  {:<30} median {:>10.d$}   runs [{}]",
            figure.name,
            median(&values),
            fmt_runs(&values, d)
        );
    }
    let errors: usize = runs.iter().map(|r| r.errors).sum();
    let duplicates: usize = runs.iter().map(|r| r.duplicates).sum();
    if errors + duplicates > 0 {
        println!("  !! {errors} failed and {duplicates} duplicate enqueue(s) over all runs");
    }
}

fn print_tables(results: &[(Scenario, Vec<RunResult>)]) {
    println!("\n## Median of runs\n");
    print!("| scenario |");
    for figure in &FIGURES {
        print!(" {} |", figure.name);
    }
    println!(" failed |");
    print!("|---|");
    for _ in &FIGURES {
        print!("---:|");
    }
    println!("---:|");
    for (scenario, runs) in results {
        print!("| {} |", scenario.label());
        for figure in &FIGURES {
            let values: Vec<f64> = runs.iter().map(figure.value).collect();
            print!(" {:.d$} |", median(&values), d = figure.decimals);
        }
        println!(" {} |", runs.iter().map(|r| r.errors).sum::<usize>());
    }

    println!("\n## Every run\n");
    print!("| scenario | run | commits |");
    for figure in &FIGURES {
        print!(" {} |", figure.name);
    }
    println!(" CPU bench % | CPU others % |");
    print!("|---|---:|---:|");
    for _ in &FIGURES {
        print!("---:|");
    }
    println!("---:|---:|");
    for (scenario, runs) in results {
        for (i, run) in runs.iter().enumerate() {
            print!("| {} | {} | {} |", scenario.label(), i + 1, run.commits);
            for figure in &FIGURES {
                print!(" {:.d$} |", (figure.value)(run), d = figure.decimals);
            }
            println!(" {:.0} | {:.0} |", run.cpu_bench, run.cpu_others);
        }
    }
}

fn main() {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("bench_enqueue: {problem}");
            std::process::exit(2);
        }
    };
    init_test_logging();
    let temp = std::env::temp_dir();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "mxfleet enqueue benchmark: {NODES} nodes in-process, {cpus} CPU(s), data in {} ({}), \
         {} run(s) per scenario{}",
        temp.display(),
        filesystem_of(&temp),
        options.runs,
        if options.quick { ", QUICK counts" } else { "" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for the benchmark");
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for scenario in scenarios(options.quick) {
            let mut runs = Vec::with_capacity(options.runs);
            for run in 0..options.runs {
                let result = run_once(scenario, run).await;
                println!(
                    "  {} run {}: {:.1} commits/s, p50 {:.2} ms, p99 {:.2} ms, \
                     CPU: bench {:.0}%, others {:.0}% of the machine",
                    scenario.label(),
                    run + 1,
                    result.commits_per_sec(),
                    result.percentile_ms(50.0),
                    result.percentile_ms(99.0),
                    result.cpu_bench,
                    result.cpu_others
                );
                runs.push(result);
            }
            print_scenario(&scenario, &runs);
            results.push((scenario, runs));
        }
        results
    });
    print_tables(&results);
}
