//! `/metrics` end to end: real `Node`s (queue, SMTP intake, delivery to a `SinkMx`
//! primary) take real SMTP traffic, and their endpoints are scraped with plain HTTP
//! GETs over TCP. The series the dashboard uses must be there with sane values.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mxfleet_core::Envelope;
use mxfleet_delivery::backoff::Backoff;
use mxfleet_delivery::lease::LeaseTiming;
use mxfleet_delivery::route::{
    HickoryOptions, HickoryResolver, NextHop, OwnIdentity, Route, Router,
};
use mxfleet_delivery::{DeliveryConfig, DestinationPolicy};
use mxfleet_node::node::SmtpService;
use mxfleet_node::{DeliverySetup, Node};
use mxfleet_queue::InitialMember;
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::{PolicyHandle, SessionConfig, SessionLimits};
use mxfleet_testkit::{SinkMx, init_test_logging, test_config, wait_for, wait_for_async};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const DOMAIN: &str = "example.org";
const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

fn smtp_service(id: u64) -> SmtpService {
    let policy = RelayPolicy::new(vec![(
        DOMAIN.into(),
        RecipientRule::Listed(["alice".to_string(), "bob".to_string()].into()),
    )]);
    SmtpService {
        listen: "127.0.0.1:0".parse().unwrap(),
        session: Arc::new(SessionConfig {
            hostname: format!("node{id}.test"),
            limits: SessionLimits::default(),
            bare_line_endings: BareLineEndings::Reject,
            tls: None,
            policy: Arc::new(PolicyHandle::new(policy)),
            etrn_networks: Vec::new(),
            metrics: Default::default(),
            spam: std::sync::Arc::new(mxfleet_smtp::checks::SpamChecks::none()),
        }),
        connections: Default::default(),
        spam: None,
    }
}

/// Delivery of everything to `primary`, with timings short enough for tests.
fn delivery_setup(primary: SocketAddr) -> DeliverySetup {
    let mut config = DeliveryConfig::new("backup.example.net");
    config.lease = LeaseTiming {
        lease: Duration::from_secs(4),
        clock_drift_bound: Duration::from_millis(500),
        dot_margin: Duration::from_millis(500),
        contact_timeout: Duration::from_secs(2),
    };
    config.lease.validate().expect("test lease timing");
    config.backoff = Backoff {
        min: Duration::from_secs(120),
        max: Duration::from_secs(600),
    };
    config.probe_interval = Duration::from_millis(500);
    config.node_dead_after = Duration::from_secs(1);
    config.scheduler_tick = Duration::from_millis(50);
    config.client.timeouts.connect = Duration::from_secs(2);
    let to_primary = DestinationPolicy {
        route: Route::new(
            NextHop::parse(&format!("[{}]:{}", primary.ip(), primary.port())).unwrap(),
        ),
        ..DestinationPolicy::default()
    };
    config
        .destinations
        .insert(DOMAIN.into(), to_primary.clone());
    config.default_policy = to_primary;
    let resolver = HickoryResolver::from_nameservers(
        &["127.0.0.1:9".parse().unwrap()],
        &HickoryOptions::default(),
    )
    .expect("resolver");
    DeliverySetup {
        config,
        router: Router::new(Arc::new(resolver), OwnIdentity::default()),
    }
}

/// Starts `size` nodes (SMTP and delivery when `primary` is given), bootstraps them
/// into one cluster, waits for a leader, and serves every node's metrics.
async fn start_fleet(
    root: &std::path::Path,
    size: u64,
    primary: Option<SocketAddr>,
) -> Vec<(Node, SocketAddr)> {
    let mut nodes = Vec::new();
    for id in 1..=size {
        let site = SITES[(id as usize - 1) % SITES.len()];
        let mut config = test_config(id, site, root.join(format!("node{id}")));
        config.write_timeout = Duration::from_secs(5);
        let (smtp, delivery) = match primary {
            Some(primary) => (Some(smtp_service(id)), Some(delivery_setup(primary))),
            None => (None, None),
        };
        let node = Node::start(config, smtp, delivery)
            .await
            .expect("node starts");
        let metrics = node
            .serve_metrics("127.0.0.1:0".parse().unwrap())
            .await
            .expect("metrics listener");
        nodes.push((node, metrics));
    }
    let members: Vec<InitialMember> = nodes
        .iter()
        .map(|(node, _)| InitialMember {
            id: node.queue().node_id(),
            addr: node.queue().advertise_addr().to_string(),
            site: SITES[(node.queue().node_id() as usize - 1) % SITES.len()].to_string(),
        })
        .collect();
    nodes[0]
        .0
        .queue()
        .bootstrap(&members)
        .await
        .expect("bootstrap");
    wait_for(
        "one leader all nodes agree on",
        Duration::from_secs(20),
        || {
            let leaders: HashSet<Option<u64>> = nodes
                .iter()
                .map(|(n, _)| n.queue().status().leader)
                .collect();
            leaders.len() == 1 && !leaders.contains(&None)
        },
    )
    .await;
    nodes
}

/// One HTTP/1.1 exchange over a fresh TCP connection: status code, headers (lower-case
/// names), body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to metrics");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("metrics answer in time")
        .unwrap();
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, headers, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(body.ends_with("# EOF\n"), "incomplete exposition:\n{body}");
    body
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// A line-based SMTP client that checks each reply's code.
struct Smtp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Smtp {
    async fn connect(addr: SocketAddr) -> Smtp {
        let (read, writer) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut smtp = Smtp {
            reader: BufReader::new(read),
            writer,
        };
        smtp.expect("220").await;
        smtp
    }

    /// Reads one (possibly multi-line) reply and checks its code.
    async fn expect(&mut self, code: &str) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                    .await
                    .expect("reply in time")
                    .unwrap();
            assert!(read > 0, "connection closed; so far: {reply:?}");
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        assert!(reply.starts_with(code), "expected {code}, got {reply:?}");
        reply
    }

    async fn send(&mut self, line: &str, code: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.expect(code).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_report_smtp_delivery_queue_and_raft() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let root = tempfile::tempdir().unwrap();
    let nodes = start_fleet(root.path(), 3, Some(sink.addr())).await;
    let (intake, intake_metrics) = (&nodes[0].0, nodes[0].1);

    // Three messages in one session; one unknown recipient refused along the way.
    const MESSAGES: usize = 3;
    let mut smtp = Smtp::connect(intake.smtp_addr().expect("smtp")).await;
    smtp.send("EHLO client.example", "250").await;
    for n in 0..MESSAGES {
        smtp.send("MAIL FROM:<sender@client.example>", "250").await;
        smtp.send(&format!("RCPT TO:<alice@{DOMAIN}>"), "250").await;
        if n == 0 {
            smtp.send(&format!("RCPT TO:<nobody@{DOMAIN}>"), "550")
                .await;
        }
        smtp.send("DATA", "354").await;
        let body = format!(
            "From: <sender@client.example>\r\nTo: <alice@{DOMAIN}>\r\nMessage-ID: <metrics-{n}@client.example>\r\nSubject: metrics {n}\r\n\r\nbody {n}\r\n."
        );
        smtp.send(&body, "250").await;
    }
    smtp.send("QUIT", "221").await;
    sink.wait_for_messages(MESSAGES, Duration::from_secs(30))
        .await;

    // Delivered: the queue drains on every node (each applies the same log).
    for (_, addr) in &nodes {
        let addr = *addr;
        wait_for_async(
            "the queue to drain and missing bodies to settle",
            Duration::from_secs(30),
            || async move {
                let text = scrape(addr).await;
                ["queued", "deferred", "in_flight", "held"].iter().all(|s| {
                    value(&text, &format!(r#"mxfleet_queue_messages{{state="{s}"}}"#)) == Some(0.0)
                }) && value(
                    &text,
                    r#"mxfleet_queue_finished_messages{state="delivered"}"#,
                ) == Some(MESSAGES as f64)
                    // A body applied here before its push arrived counts as missing
                    // until the keeper's next pass (at most PULL_GRACE later): wait
                    // for it to settle rather than catch it in passing (CI did).
                    && value(&text, "mxfleet_blobs_missing") == Some(0.0)
            },
        )
        .await;
    }

    let texts: Vec<String> = {
        let mut texts = Vec::new();
        for (_, addr) in &nodes {
            texts.push(scrape(*addr).await);
        }
        texts
    };
    let intake_text = scrape(intake_metrics).await;

    // SMTP, on the node that took the session.
    assert_eq!(
        must(&intake_text, "mxfleet_smtp_messages_accepted_total"),
        MESSAGES as f64
    );
    assert_eq!(
        must(
            &intake_text,
            r#"mxfleet_smtp_rejected_total{reason="unknown_recipient"}"#
        ),
        1.0
    );
    assert!(must(&intake_text, "mxfleet_smtp_accepted_bytes_total") > 0.0);
    assert_eq!(must(&intake_text, "mxfleet_smtp_connections_total"), 1.0);
    assert_eq!(
        must(&intake_text, r#"mxfleet_smtp_replies_total{class="3xx"}"#),
        MESSAGES as f64
    );
    assert_eq!(
        must(&intake_text, r#"mxfleet_smtp_replies_total{class="5xx"}"#),
        1.0
    );
    // Banner, EHLO, QUIT, and MAIL, RCPT and the final dot per message.
    assert_eq!(
        must(&intake_text, r#"mxfleet_smtp_replies_total{class="2xx"}"#),
        (3 + 3 * MESSAGES) as f64
    );
    assert_eq!(
        must(
            &intake_text,
            r#"mxfleet_smtp_sessions_ended_total{end="quit"}"#
        ),
        1.0
    );
    assert_eq!(must(&intake_text, "mxfleet_smtp_sessions_active"), 0.0);
    assert!(must(&intake_text, "mxfleet_blobs_stored_total") >= MESSAGES as f64);
    assert!(must(&intake_text, "mxfleet_blob_stored_bytes_total") > 0.0);

    // Delivery: the attempts happened on whichever nodes owned the messages.
    let sum = |series: &str| texts.iter().filter_map(|t| value(t, series)).sum::<f64>();
    assert_eq!(
        sum(r#"mxfleet_delivery_attempts_total{outcome="sent"}"#),
        MESSAGES as f64
    );
    assert_eq!(
        sum("mxfleet_delivery_attempt_duration_seconds_count"),
        MESSAGES as f64
    );
    assert_eq!(sum("mxfleet_delivery_delay_seconds_count"), MESSAGES as f64);

    // Queue and fleet gauges, the same on every node.
    for text in &texts {
        assert_eq!(must(text, "mxfleet_queue_oldest_message_age_seconds"), 0.0);
        assert_eq!(must(text, r#"mxfleet_queue_bytes{state="queued"}"#), 0.0);
        assert_eq!(must(text, "mxfleet_delivery_fencing_rejections_total"), 0.0);
        assert_eq!(
            must(text, "mxfleet_delivery_internal_redeliveries_total"),
            0.0
        );
        assert!(
            !text.contains("mxfleet_queue_domain_messages{"),
            "drained queue has no domain series"
        );
        assert!(must(text, "mxfleet_raft_term") >= 1.0);
        assert!(must(text, "mxfleet_raft_leader_changes_total") >= 1.0);
        assert!(must(text, "mxfleet_raft_applied_index") >= MESSAGES as f64);
        assert_eq!(must(text, "mxfleet_blobs_missing"), 0.0);
    }

    // Raft on the leader: it proposed every write, and it reports its peers' lag.
    let leader = texts
        .iter()
        .position(|t| value(t, "mxfleet_raft_is_leader") == Some(1.0))
        .expect("one node says it leads");
    let leader_text = &texts[leader];
    assert!(must(leader_text, "mxfleet_raft_commit_latency_seconds_count") >= MESSAGES as f64);
    assert!(must(leader_text, "mxfleet_raft_commit_latency_seconds_sum") > 0.0);
    for peer in (1..=3).filter(|id| *id != leader as u64 + 1) {
        let lag = must(
            leader_text,
            &format!(r#"mxfleet_raft_replication_lag_entries{{peer="{peer}"}}"#),
        );
        assert!(lag >= 0.0);
    }
    assert!(leader_text.contains(&format!(
        r#"mxfleet_node_info{{node_id="{}",site="{}",version="#,
        leader + 1,
        SITES[leader]
    )));

    // The Grafana dashboard asks only for series these nodes expose.
    let exposed = exposed_names(&texts.concat());
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/mxfleet.json"
    ))
    .expect("deploy/grafana/mxfleet.json");
    let used = metric_names_in(&dashboard);
    assert!(used.len() > 20, "the dashboard names few metrics: {used:?}");
    let unknown: Vec<&String> = used.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses unexposed names: {unknown:?}"
    );

    for (node, _) in nodes {
        node.shutdown(Duration::from_secs(10)).await;
    }
}

/// Every metric and sample name in an exposition (`# TYPE` names and sample names).
fn exposed_names(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(typed) => typed.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_string)
        .collect()
}

/// Every `mxfleet_…` identifier in `text`.
fn metric_names_in(text: &str) -> HashSet<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = HashSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("mxfleet_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_only_metrics_and_stops_with_the_node() {
    init_test_logging();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_fleet(root.path(), 1, None).await;
    let (node, addr) = nodes.pop().unwrap();
    node.queue()
        .enqueue_bytes(
            Envelope {
                sender: "a@client.example".into(),
                recipients: vec![format!("held@{DOMAIN}")],
                message_id: Some("<one@client.example>".into()),
                trace: None,
            },
            b"Subject: one\r\n\r\nbody\r\n",
        )
        .await
        .expect("enqueue");

    let text = scrape(addr).await;
    assert_eq!(must(&text, "mxfleet_raft_is_leader"), 1.0);
    assert!(must(&text, "mxfleet_raft_commit_latency_seconds_count") >= 1.0);
    // No delivery on this node: the message waits, and its age and domain show.
    assert_eq!(
        must(&text, r#"mxfleet_queue_messages{state="queued"}"#),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"mxfleet_queue_domain_messages{state="queued",domain="example.org"}"#
        ),
        1.0
    );
    assert!(
        must(
            &text,
            r#"mxfleet_queue_domain_bytes{state="queued",domain="example.org"}"#
        ) > 0.0
    );
    assert!(must(&text, "mxfleet_queue_oldest_message_age_seconds") >= 0.0);
    // A node without SMTP or delivery has no such series.
    assert!(!text.contains("mxfleet_smtp_"));
    assert!(!text.contains("mxfleet_delivery_attempts"));

    let (status, _, _) = http(addr, "GET", "/").await;
    assert_eq!(status, 404);
    let (status, headers, _) = http(addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "allow" && v == "GET, HEAD")
    );

    node.shutdown(Duration::from_secs(10)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "metrics port still open after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_endpoint_answers_503_without_a_leader_and_while_drained() {
    init_test_logging();
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(
        test_config(1, "site-a", root.path().join("node1")),
        None,
        None,
    )
    .await
    .expect("node starts");
    let addr = node
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .await
        .expect("metrics listener");
    // Not bootstrapped: no cluster, no leader, not ready.
    let (status, _, body) = http(addr, "GET", "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("knows no leader"), "{body}");

    let members = [InitialMember {
        id: 1,
        addr: node.queue().advertise_addr().to_string(),
        site: "site-a".into(),
    }];
    node.queue().bootstrap(&members).await.expect("bootstrap");
    wait_for_async(
        "the node reports ready",
        Duration::from_secs(20),
        || async { http(addr, "GET", "/ready").await.0 == 200 },
    )
    .await;
    let (_, _, body) = http(addr, "GET", "/ready").await;
    assert_eq!(body, "ready: leader 1\n");
    let (status, _, _) = http(addr, "POST", "/ready").await;
    assert_eq!(status, 405);

    // Drained for maintenance: it refuses SMTP, so it is not ready either.
    node.queue().set_drained(1, true).await.expect("drain");
    let (status, _, body) = http(addr, "GET", "/ready").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: the node is drained for maintenance\n")
    );
    node.queue().set_drained(1, false).await.expect("undrain");
    assert_eq!(http(addr, "GET", "/ready").await.0, 200);
    node.shutdown(Duration::from_secs(10)).await;
}
