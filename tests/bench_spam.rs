//! Spam-check benchmark: what the SMTP-time spam checks (issue 7) cost per message,
//! in added latency and in throughput, with the DNS answers cached and uncached.
//!
//! Setup (`support/spam_bench_fleet.rs`): three in-process nodes (real Raft over gRPC,
//! real fsyncs into `$TMPDIR`, printed with its filesystem type), an SMTP listener per
//! node and per configuration over the node's `QueueIntake`, and an in-process
//! authoritative DNS server on loopback. The load generator
//! (`support/spam_bench_client.rs`) runs plain-TCP SMTP clients, one 4 KiB message
//! per session, no pipelining, sessions spread over the three nodes.
//!
//! Configurations, all on the relay domain, all measured in every run:
//! - `off`: `SpamChecks::none()`;
//! - `all on, cached`: every check (primary_aware with the primary reported down by
//!   every node, dnsbl over 2 zones, rhsbl_sender, unknown_client_hostname,
//!   unknown_sender_domain, spf, verify_recipients with every verdict cached,
//!   greylisting with every triplet passed and auto-allowlisting off, so that each
//!   RCPT looks its triplet up) and every anvil rate limit (never reached); DNS
//!   answers warm in the resolver and DNSBL caches;
//! - `all on, uncached DNS`: the same with the resolver cache (size 0) and the DNSBL
//!   cache off, so every session asks the DNS server (7 queries per message). The
//!   server is on loopback and answers from memory: a lower bound on real DNS latency;
//! - with `--per-check`, also each check alone (DNS checks cached and uncached) and
//!   the rate limits alone.
//!
//! Each run starts a fresh cluster, primes its spam state, warms every configuration
//! up, then measures in `--rounds` rounds; a round gives every configuration in turn
//! its share of the messages, so that a burst of noise on the machine hits them all
//! alike (the first configuration of a round rotates from run to run). A share is a
//! loaded batch (`--clients` clients at once) then a serial batch (one client), each
//! followed by quiescence of the cluster.
//!
//! Reported per configuration (median of the runs, then every run): msgs/s of the
//! loaded batches and its ratio to `off`; latency at the client from `connect` to the
//! `250` after DATA, p50 / p99, serial and loaded, and what the configuration adds to
//! `off`'s (same run), and the serial envelope latency (`connect` to the `250` after
//! RCPT TO, where the checks decide: the added latency without the noise of DATA's
//! fsyncs); DNS queries per message (from the DNS server's log); the CPU time of
//! this process per loaded message (nodes, clients and DNS server together: the
//! figure least disturbed by other processes), and the CPU share of this process and
//! of the rest of the machine. The serial batches give the
//! extra latency per message; the loaded ones the throughput, with latency that
//! includes queueing behind the other sessions (and DNS queries shared with them:
//! hickory merges identical queries in flight, and every session comes from one
//! client address). Every session that does not end in `250` is counted and shown;
//! the `mxfleet_spam_checks_total` counters prove that each configured check ran on
//! every message with the expected result.
//!
//! Run: `cargo bench -p mxfleet-e2e --bench spam [-- --runs N] [--quick] [--per-check]
//! [--messages M] [--serial M] [--clients C] [--rounds R] [--dns-log]`: per
//! configuration and run, `--messages` loaded (default 500) and `--serial` serial
//! (default 100) messages from `--clients` (default 12) clients in `--rounds`
//! (default 4) rounds; `--dns-log` lists the DNS queries of every batch. Unknown
//! arguments (such as cargo's `--bench`) are ignored.

#[path = "support/bench_stats.rs"]
mod bench_stats;
#[path = "support/spam_bench_client.rs"]
mod spam_bench_client;
#[path = "support/spam_bench_fleet.rs"]
mod spam_bench_fleet;
#[path = "support/spam_bench_report.rs"]
mod spam_bench_report;

use std::collections::BTreeMap;
use std::time::Instant;

use bench_stats::{CpuSample, filesystem_of};
use mxfleet_smtp::checks::Check;
use mxfleet_testkit::dns::TestDns;
use mxfleet_testkit::init_test_logging;
use spam_bench_client::{Batch, send_batch};
use spam_bench_fleet::{
    BenchFleet, NODES, Variant, check_counts, client_address, dns_zones, is_dns_check,
};
use spam_bench_report::{RunResult, print_configuration, print_tables};

const BODY_BYTES: usize = 4 * 1024;
/// How long the process's idle CPU is sampled after each run.
const IDLE_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Options {
    runs: usize,
    /// Loaded messages per configuration and run.
    messages: usize,
    /// Serial messages per configuration and run.
    serial: usize,
    /// Warm-up messages per configuration and run.
    warmup: usize,
    clients: usize,
    rounds: usize,
    per_check: bool,
    /// Print the DNS queries of each measured batch, by name and type.
    dns_log: bool,
    quick: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        runs: 3,
        messages: 500,
        serial: 100,
        warmup: 60,
        clients: 12,
        rounds: 4,
        per_check: false,
        dns_log: false,
        quick: false,
    };
    // Explicit counts win over --quick's, whatever the order.
    let mut counts: [Option<usize>; 4] = [None; 4];
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let target = match name.as_str() {
            "--quick" => {
                options.quick = true;
                continue;
            }
            "--per-check" => {
                options.per_check = true;
                continue;
            }
            "--dns-log" => {
                options.dns_log = true;
                continue;
            }
            "--runs" => &mut options.runs,
            "--messages" => counts[0].insert(0),
            "--serial" => counts[1].insert(0),
            "--clients" => counts[2].insert(0),
            "--rounds" => counts[3].insert(0),
            _ => continue,
        };
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or(format!("{name} needs a value"))?,
        };
        *target = match value.parse() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{name} wants a positive integer, got {value:?}")),
        };
    }
    if options.quick {
        (options.messages, options.serial, options.warmup) = (40, 8, 9);
        (options.clients, options.rounds) = (4, 2);
    }
    let [messages, serial, clients, rounds] = counts;
    options.messages = messages.unwrap_or(options.messages);
    options.serial = serial.unwrap_or(options.serial);
    options.clients = clients.unwrap_or(options.clients);
    options.rounds = rounds.unwrap_or(options.rounds);
    Ok(options)
}

/// Index 0 is always `off`, the baseline of the ratios.
fn variants(per_check: bool) -> Vec<Variant> {
    let mut variants = vec![Variant::off(), Variant::all(true), Variant::all(false)];
    if per_check {
        variants.push(Variant::rate_limits_only());
        for check in Check::ALL {
            variants.push(Variant::only(check, true));
            if is_dns_check(check) {
                variants.push(Variant::only(check, false));
            }
        }
    }
    variants
}

/// How many of `total` messages round `round` of `rounds` sends.
fn share(total: usize, rounds: usize, round: usize) -> usize {
    total / rounds + usize::from(round < total % rounds)
}

/// Sends a warm-up batch to configuration `index`: its DNS caches fill, its listeners
/// and the cluster's connections are hot.
async fn warm_up(fleet: &BenchFleet, options: &Options, index: usize, run: usize) {
    let batch = Batch {
        tag: format!("spam-bench-warm-r{run}-v{index}"),
        clients: options.clients,
        messages: options.warmup,
        body_bytes: BODY_BYTES,
    };
    let outcome = send_batch(&fleet.endpoints[index].listeners, &batch).await;
    if outcome.failures > 0 {
        eprintln!(
            "warning: {} warm-up session(s) of configuration {index} failed, first: {}",
            outcome.failures,
            outcome.failure_samples.first().map_or("?", String::as_str)
        );
    }
}

/// One round of configuration `index`: its share of the loaded messages from
/// `--clients` clients, then its share of the serial ones from one client, each
/// between quiet points of the cluster.
async fn measure_round(
    fleet: &BenchFleet,
    dns: &TestDns,
    options: &Options,
    (index, run, round): (usize, usize, usize),
    into: &mut RunResult,
) {
    let endpoints = &fleet.endpoints[index];
    let phases = [
        ("load", options.clients, options.messages),
        ("one", 1, options.serial),
    ];
    for (phase, clients, total) in phases {
        let batch = Batch {
            tag: format!("spam-bench-{phase}-r{run}-v{index}-k{round}"),
            clients,
            messages: share(total, options.rounds, round),
            body_bytes: BODY_BYTES,
        };
        let counts_before = check_counts(&endpoints.metrics);
        let queries_before = dns.query_count();
        let probes_before = fleet.prober.probes();
        let cpu_before = CpuSample::read();
        let started = Instant::now();
        let outcome = send_batch(&endpoints.listeners, &batch).await;
        let wall = started.elapsed();
        let cpu = CpuSample::read().since(&cpu_before);
        let queries = dns.query_count() - queries_before;
        into.probes += fleet.prober.probes() - probes_before;
        into.add_checks(counter_delta(
            &check_counts(&endpoints.metrics),
            &counts_before,
        ));
        if options.dns_log && queries > 0 {
            let mut by_query: BTreeMap<String, usize> = BTreeMap::new();
            for query in dns.queries().into_iter().skip(queries_before) {
                *by_query.entry(query).or_default() += 1;
            }
            for (query, count) in by_query {
                println!("    dns {phase} v{index} k{round}: {count:>5} x {query}");
            }
        }
        if phase == "load" {
            into.cpu.add(cpu);
            into.loaded.add(outcome, wall, queries);
        } else {
            into.serial.add(outcome, wall, queries);
        }
        fleet.wait_quiet().await;
    }
}

fn counter_delta(
    after: &BTreeMap<(String, String), u64>,
    before: &BTreeMap<(String, String), u64>,
) -> BTreeMap<(String, String), u64> {
    after
        .iter()
        .map(|(key, value)| {
            let then = before.get(key).copied().unwrap_or(0);
            (key.clone(), value.saturating_sub(then))
        })
        .filter(|(_, delta)| *delta > 0)
        .collect()
}

/// Every run: a fresh, primed fleet; a warm-up of every configuration; then
/// `--rounds` rounds, each measuring every configuration in turn, starting from a
/// different one in each run.
async fn run_all(options: Options, variants: &[Variant]) -> Vec<Vec<RunResult>> {
    let client = client_address();
    let dns = TestDns::start(dns_zones(client)).await;
    println!(
        "DNS server: in-process on {} (loopback, answers from memory); SMTP clients \
         connect from and to {client}{}",
        dns.addr,
        if client.is_loopback() {
            " (loopback: hickory answers its PTR and A itself, so reverse DNS costs no query)"
        } else {
            ""
        }
    );
    let mut results = vec![Vec::new(); variants.len()];
    for run in 0..options.runs {
        let fleet = BenchFleet::start(variants, dns.addr, client).await;
        fleet.prime().await;
        let order: Vec<usize> = (0..variants.len())
            .map(|step| (run + step) % variants.len())
            .collect();
        for &index in &order {
            warm_up(&fleet, &options, index, run).await;
        }
        fleet.wait_quiet().await;
        let mut gathered = vec![RunResult::default(); variants.len()];
        for round in 0..options.rounds {
            for &index in &order {
                let into = &mut gathered[index];
                measure_round(&fleet, &dns, &options, (index, run, round), into).await;
            }
        }
        fleet.stop().await;
        // What this process burns once the run's fleet is gone: anything but ~0 is a
        // leftover task that slows the following runs.
        let idle_before = CpuSample::read();
        tokio::time::sleep(IDLE_PROBE).await;
        let (idle_cpu, _) = CpuSample::read().since(&idle_before).shares();
        println!(
            "  after run {}: this process idles at {idle_cpu:.0}% of the machine",
            run + 1
        );
        for (index, mut result) in gathered.into_iter().enumerate() {
            result.loaded.finish();
            result.serial.finish();
            let problems = result.check_problems(&variants[index]);
            let (cpu_bench, cpu_others) = result.cpu.shares();
            println!(
                "  run {} {:<32} {:>6.1} msgs/s, p50 1-client {:>5.2} ms, loaded {:>6.2} ms, \
                 DNS q/msg {:.2} / {:.2}, {} failed, CPU: bench {cpu_bench:.0}%, \
                 others {cpu_others:.0}%",
                run + 1,
                variants[index].name,
                result.loaded.msgs_per_sec(),
                result.serial.p50(),
                result.loaded.p50(),
                result.serial.queries_per_msg(),
                result.loaded.queries_per_msg(),
                result.loaded.failures + result.serial.failures,
            );
            for sample in result
                .loaded
                .failure_samples
                .iter()
                .chain(&result.serial.failure_samples)
            {
                println!("    failed session: {sample}");
            }
            if !problems.is_empty() {
                println!("    !! checks: {}", problems.join("; "));
            }
            results[index].push(result);
        }
    }
    dns.stop().await;
    results
}

fn main() {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("bench_spam: {problem}");
            std::process::exit(2);
        }
    };
    init_test_logging();
    let temp = std::env::temp_dir();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let variants = variants(options.per_check);
    println!(
        "mxfleet spam-check benchmark: {NODES} nodes in-process, {cpus} CPU(s), data in {} ({}), \
         {} run(s), {} configurations; per configuration and run: {} loaded messages from \
         {} clients and {} from 1 client, in {} rounds, after {} warm-up; {} KiB bodies{}",
        temp.display(),
        filesystem_of(&temp),
        options.runs,
        variants.len(),
        options.messages,
        options.clients,
        options.serial,
        options.rounds,
        options.warmup,
        BODY_BYTES / 1024,
        if options.quick { "; QUICK counts" } else { "" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for the benchmark");
    let results = runtime.block_on(run_all(options, &variants));
    for (variant, runs) in variants.iter().zip(&results) {
        print_configuration(variant, runs, &results[0]);
    }
    print_tables(&variants, &results);
}
