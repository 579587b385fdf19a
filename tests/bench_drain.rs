//! Drain benchmark: how fast a backlog reaches the primary once it comes back.
//!
//! Scenario (the reason a backup MX exists): the primary is down, a backlog of
//! `--messages` messages of `--size` bytes is queued and deferred, then the primary
//! returns. Measured from the moment the primary accepts connections again:
//! - first: time to the first message the primary receives;
//! - last: time to the last one;
//! - drain msg/s: messages / (last - first).
//!
//! Targets:
//! - `mxfleet`: three in-process nodes (release build, real gRPC, real fsyncs into
//!   `$TMPDIR`) with delivery running and production timings: probe every 10 s,
//!   30 s leases, 10 connections to the primary fleet-wide. The backlog is enqueued
//!   through the queue API (the intake path is measured by `loadgen`).
//! - `postfix-flush` and `postfix-timers` (with `--postfix`, as root): the stock
//!   Postfix backup MX of `../shared/bench/postfix-baseline.sh` (backoff 1m..10m,
//!   queue_run_delay 60s), loaded with `smtp-source`; then `postqueue -f` right after
//!   the primary returns, or nothing (Postfix waits for its own timers).
//!
//! The primary is `SinkMx` from the testkit (accepts everything, counts arrivals).
//!
//! Run: `cargo bench -p mxfleet-e2e --bench drain -- [--runs N] [--messages M]
//! [--size BYTES] [--postfix] [--postfix-script PATH]`.

#[path = "support/delivery_fleet.rs"]
mod delivery_fleet;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use delivery_fleet::{DOMAIN, DeliveryFleet};
use mxfleet_core::{Envelope, MessageState};
use mxfleet_delivery::route::{NextHop, Route};
use mxfleet_delivery::{DeliveryConfig, DestinationPolicy};
use mxfleet_testkit::sink::SinkMx;

struct Options {
    runs: usize,
    messages: usize,
    size: usize,
    postfix: bool,
    postfix_script: PathBuf,
}

fn options() -> Options {
    let mut options = Options {
        runs: 3,
        messages: 10_000,
        size: 4096,
        postfix: false,
        postfix_script: PathBuf::from("../shared/bench/postfix-baseline.sh"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => options.runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--messages" => {
                options.messages = args.next().and_then(|v| v.parse().ok()).unwrap_or(10_000)
            }
            "--size" => options.size = args.next().and_then(|v| v.parse().ok()).unwrap_or(4096),
            "--postfix" => options.postfix = true,
            "--postfix-script" => {
                options.postfix_script = args.next().map(PathBuf::from).unwrap_or_default()
            }
            _ => {}
        }
    }
    options
}

/// One drain measurement.
#[derive(Clone, Copy, Debug)]
struct Drain {
    first: Duration,
    last: Duration,
}

impl Drain {
    fn rate(&self, messages: usize) -> f64 {
        messages as f64 / (self.last - self.first).as_secs_f64().max(1e-3)
    }
}

/// Waits until the sink has `messages` arrivals; returns first and last times since
/// `since`.
async fn watch_drain(sink: &SinkMx, messages: usize, since: Instant) -> Drain {
    let mut first = None;
    loop {
        let count = sink.received_count();
        if count > 0 && first.is_none() {
            first = Some(since.elapsed());
        }
        if count >= messages {
            return Drain {
                first: first.unwrap_or_default(),
                last: since.elapsed(),
            };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn body(n: usize, size: usize) -> Vec<u8> {
    let mut body = format!(
        "From: <sender@client.example>\r\nTo: <user{n}@{DOMAIN}>\r\nMessage-ID: <drain-{n}@client.example>\r\nSubject: drain {n}\r\n\r\n"
    )
    .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    while body.len() + line.len() <= size {
        body.extend_from_slice(line);
    }
    body
}

async fn run_mxfleet(messages: usize, size: usize) -> Drain {
    let mut sink = SinkMx::start().await;
    sink.stop().await;
    let mut config = DeliveryConfig::new("backup.example.net");
    let to_primary = DestinationPolicy {
        route: Route::new(
            NextHop::parse(&format!("[{}]:{}", sink.addr().ip(), sink.addr().port())).unwrap(),
        ),
        ..DestinationPolicy::default()
    };
    config.destinations.insert(DOMAIN.into(), to_primary);
    let mut fleet = DeliveryFleet::start(config).await;
    let mut pending = Vec::new();
    for n in 0..messages {
        let queue = fleet.queue((n % 3) as u64 + 1).clone();
        let envelope = Envelope {
            sender: "sender@client.example".into(),
            recipients: vec![format!("user{n}@{DOMAIN}")],
            message_id: Some(format!("<drain-{n}@client.example>")),
            trace: None,
        };
        let body = body(n, size);
        pending.push(tokio::spawn(async move {
            queue.enqueue_bytes(envelope, &body).await.expect("enqueue")
        }));
        if pending.len() == 32 {
            for handle in pending.drain(..) {
                handle.await.expect("enqueue task");
            }
        }
    }
    for handle in pending.drain(..) {
        handle.await.expect("enqueue task");
    }
    // Wait until every message has been tried once and deferred.
    loop {
        let deferred = fleet
            .queue(1)
            .read_state(|s| {
                s.entries
                    .values()
                    .filter(|e| e.state == MessageState::Queued && e.last_attempt_at.is_some())
                    .count()
            })
            .unwrap_or(0);
        if deferred == messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sink.restart().await;
    let drain = watch_drain(&sink, messages, Instant::now()).await;
    fleet.stop_all().await;
    sink.stop().await;
    drain
}

fn script(options: &Options, args: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(&options.postfix_script)
        .args(args)
        .output()
        .expect("postfix-baseline.sh runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn run_postfix(options: &Options, flush: bool) -> Drain {
    let primary: SocketAddr = "127.0.0.1:2626".parse().unwrap();
    let mut sink = SinkMx::start_on(primary).await;
    sink.stop().await;
    script(options, &["stop"]);
    let _ = std::fs::remove_dir_all("/tmp/pfbaseline");
    script(options, &["start", "127.0.0.1:2525", "127.0.0.1:2626"]);
    let load = script(
        options,
        &[
            "source",
            &options.messages.to_string(),
            "20",
            &options.size.to_string(),
        ],
    );
    eprint!("  postfix load: {load}");
    // Wait until Postfix has tried everything once (all in the deferred queue).
    loop {
        let deferred = Command::new("bash")
            .arg("-c")
            .arg("find /tmp/pfbaseline/spool/deferred -type f | wc -l")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if deferred >= options.messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.restart().await;
    let since = Instant::now();
    if flush {
        script(options, &["flush"]);
    }
    let drain = watch_drain(&sink, options.messages, since).await;
    script(options, &["stop"]);
    // Release the fixed primary port before the next run binds it again.
    sink.stop().await;
    drain
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn report(name: &str, messages: usize, runs: &[Drain]) {
    let firsts: Vec<f64> = runs.iter().map(|d| d.first.as_secs_f64()).collect();
    let lasts: Vec<f64> = runs.iter().map(|d| d.last.as_secs_f64()).collect();
    let rates: Vec<f64> = runs.iter().map(|d| d.rate(messages)).collect();
    println!(
        "| {name} | {:.2} | {:.2} | {:.0} | {} |",
        median(firsts.clone()),
        median(lasts.clone()),
        median(rates.clone()),
        runs.iter()
            .map(|d| format!(
                "{:.2}/{:.2}/{:.0}",
                d.first.as_secs_f64(),
                d.last.as_secs_f64(),
                d.rate(messages)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // Quiet unless RUST_LOG asks for more (e.g. RUST_LOG=mxfleet_delivery=info).
    mxfleet_testkit::init_test_logging();
    let options = options();
    println!(
        "drain of {} messages x {} bytes, {} runs; TMPDIR={}",
        options.messages,
        options.size,
        options.runs,
        std::env::temp_dir().display()
    );
    let mut mxfleet = Vec::new();
    let mut flush = Vec::new();
    let mut timers = Vec::new();
    for run in 1..=options.runs {
        let drain = run_mxfleet(options.messages, options.size).await;
        eprintln!("run {run} mxfleet: {drain:?}");
        mxfleet.push(drain);
        if options.postfix {
            let drain = run_postfix(&options, true).await;
            eprintln!("run {run} postfix-flush: {drain:?}");
            flush.push(drain);
            let drain = run_postfix(&options, false).await;
            eprintln!("run {run} postfix-timers: {drain:?}");
            timers.push(drain);
        }
    }
    println!(
        "| target | first s (median) | last s (median) | drain msg/s (median) | runs first/last/rate |"
    );
    println!("|---|---:|---:|---:|---|");
    report("mxfleet (3 nodes)", options.messages, &mxfleet);
    if options.postfix {
        report("Postfix + postqueue -f", options.messages, &flush);
        report("Postfix, own timers", options.messages, &timers);
    }
}
