//! SMTP intake end to end: a 3-node cluster with an SMTP listener on every node, driven
//! by real clients nobody here wrote (the `lettre` crate and Python's `smtplib`), with
//! and without STARTTLS, and a leader killed while 20 clients are sending.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox as LettreMailbox;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mxfleet_core::QueueId;
use mxfleet_node::intake::QueueIntake;
use mxfleet_queue::Queue;
use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::listener::ConnectionLimits;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy};
use mxfleet_smtp::tls::{CertificatePem, server_config};
use mxfleet_smtp::{MessageIntake, PolicyHandle, SessionConfig, SessionLimits};
use mxfleet_testkit::tls::TestCa;
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An SMTP listener in front of one node's queue.
struct SmtpEndpoint {
    addr: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl SmtpEndpoint {
    async fn start(queue: Queue, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let policy = RelayPolicy::new(vec![
            (
                "example.org".into(),
                RecipientRule::Listed(["alice".to_string(), "bob".to_string()].into()),
            ),
            ("example.test".into(), RecipientRule::CatchAll),
        ]);
        let session = Arc::new(SessionConfig {
            hostname: format!("node{}.test", queue.node_id()),
            limits: SessionLimits::default(),
            bare_line_endings: BareLineEndings::Reject,
            tls,
            policy: Arc::new(PolicyHandle::new(policy)),
            etrn_networks: Vec::new(),
            metrics: Default::default(),
            spam: std::sync::Arc::new(mxfleet_smtp::checks::SpamChecks::none()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let intake: Arc<dyn MessageIntake> = Arc::new(QueueIntake::new(queue));
        tracker.spawn(mxfleet_smtp::listener::serve(
            listener,
            session,
            ConnectionLimits::default(),
            intake,
            shutdown.clone(),
            tracker.clone(),
        ));
        SmtpEndpoint {
            addr,
            shutdown,
            tracker,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(15), self.tracker.wait())
            .await
            .expect("SMTP sessions stop");
    }
}

fn smtp_tls(ca: &TestCa) -> Arc<rustls::ServerConfig> {
    let leaf = ca.issue("mx.test");
    server_config(&[CertificatePem {
        chain: leaf.cert_pem.into_bytes(),
        key: leaf.key_pem.into_bytes(),
        names: vec!["localhost".into()],
    }])
    .expect("server TLS config")
}

async fn start_fleet(tls: Option<Arc<rustls::ServerConfig>>) -> (QueueCluster, Vec<SmtpEndpoint>) {
    let cluster = QueueCluster::start(3).await;
    let mut endpoints = Vec::new();
    for id in 1..=3 {
        endpoints.push(SmtpEndpoint::start(cluster.queue(id).clone(), tls.clone()).await);
    }
    (cluster, endpoints)
}

fn message(n: usize, to: &str) -> Message {
    Message::builder()
        .from(
            "Sender <sender@client.example>"
                .parse::<LettreMailbox>()
                .unwrap(),
        )
        .to(to.parse::<LettreMailbox>().unwrap())
        .message_id(Some(format!("<lettre-{n}@client.example>")))
        .subject(format!("test {n}"))
        .body(format!("body {n}\r\n"))
        .unwrap()
}

fn lettre_plain(addr: SocketAddr) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

/// Parses "Ok: queued as 00000000000A" out of a 250 reply.
fn queued_id(lines: &[String]) -> QueueId {
    let text = lines.join(" ");
    let hex = text
        .rsplit("queued as ")
        .next()
        .expect("queue id in reply")
        .trim();
    hex.parse()
        .unwrap_or_else(|_| panic!("no queue id in {text:?}"))
}

async fn wait_for_ids(cluster: &QueueCluster, node: u64, ids: &BTreeSet<QueueId>) {
    wait_for(
        &format!("node {node} to hold every acknowledged message"),
        Duration::from_secs(20),
        || {
            let held: BTreeSet<QueueId> =
                cluster.queue(node).entries().iter().map(|e| e.id).collect();
            ids.is_subset(&held)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lettre_delivers_to_every_node_and_each_message_is_on_all_three() {
    init_test_logging();
    let (mut cluster, endpoints) = start_fleet(None).await;
    let mut acknowledged = BTreeSet::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let transport = lettre_plain(endpoint.addr);
        for n in 0..3 {
            let response = transport
                .send(message(i * 10 + n, "alice@example.org"))
                .await
                .unwrap();
            assert_eq!(response.code().to_string(), "250");
            acknowledged.insert(queued_id(
                &response.message().map(str::to_string).collect::<Vec<_>>(),
            ));
        }
    }
    assert_eq!(acknowledged.len(), 9);
    for node in 1..=3 {
        wait_for_ids(&cluster, node, &acknowledged).await;
    }
    // A recipient we do not know is refused at RCPT time, through lettre as well.
    let refused = lettre_plain(endpoints[0].addr)
        .send(message(99, "mallory@example.org"))
        .await;
    let error = refused.expect_err("unknown recipient refused");
    assert!(error.is_permanent(), "{error}");
    assert!(error.to_string().contains("5.1.1"), "{error}");
    for endpoint in endpoints {
        endpoint.stop().await;
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lettre_with_starttls_is_accepted() {
    init_test_logging();
    let ca = TestCa::new("smtp test CA");
    let (mut cluster, endpoints) = start_fleet(Some(smtp_tls(&ca))).await;
    let parameters = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(ca.ca_pem().as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(endpoints[1].addr.port())
        .tls(Tls::Required(parameters))
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let response = transport
        .send(message(1, "someone@example.test"))
        .await
        .unwrap();
    let id = queued_id(&response.message().map(str::to_string).collect::<Vec<_>>());
    for node in 1..=3 {
        wait_for_ids(&cluster, node, &BTreeSet::from([id])).await;
    }
    for endpoint in endpoints {
        endpoint.stop().await;
    }
    cluster.stop_all().await;
}

const SMTPLIB_CLIENT: &str = r#"
import smtplib, ssl, sys
port, mode, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP("localhost", port, timeout=20)
s.ehlo("python.client.example")
if mode == "starttls":
    s.starttls(context=ssl.create_default_context(cafile=cafile))
    s.ehlo("python.client.example")
msg = "From: py@client.example\r\nTo: bob@example.org\r\nSubject: smtplib " + mode + "\r\nMessage-ID: <smtplib-" + mode + "@client.example>\r\n\r\nhello\r\n"
s.mail("py@client.example")
s.rcpt("bob@example.org")
code, reply = s.data(msg)
print(code, reply.decode())
code, reply = s.docmd("RCPT", "TO:<nobody@elsewhere.example>")
print(code, reply.decode())
s.quit()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_smtplib_sends_plain_and_with_starttls() {
    init_test_logging();
    let ca = TestCa::new("smtp test CA");
    let (mut cluster, endpoints) = start_fleet(Some(smtp_tls(&ca))).await;
    let dir = tempfile::tempdir().unwrap();
    let cafile = dir.path().join("ca.pem");
    std::fs::write(&cafile, ca.ca_pem()).unwrap();
    let mut acknowledged = BTreeSet::new();
    for (mode, endpoint) in [("plain", &endpoints[0]), ("starttls", &endpoints[2])] {
        let output = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(SMTPLIB_CLIENT)
            .arg(endpoint.addr.port().to_string())
            .arg(mode)
            .arg(&cafile)
            .output()
            .await
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut lines = stdout.lines();
        let accepted = lines.next().unwrap_or_default();
        assert!(
            accepted.starts_with("250 2.0.0 Ok: queued as "),
            "{mode}: {stdout}"
        );
        acknowledged.insert(queued_id(&[accepted.to_string()]));
        let relay = lines.next().unwrap_or_default();
        assert!(
            relay.starts_with("503"),
            "{mode}: RCPT outside a transaction: {stdout}"
        );
    }
    for node in 1..=3 {
        wait_for_ids(&cluster, node, &acknowledged).await;
    }
    for endpoint in endpoints {
        endpoint.stop().await;
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_no_acknowledged_message_and_no_client_hangs() {
    init_test_logging();
    let (mut cluster, mut endpoints) = start_fleet(None).await;
    let leader = cluster.wait_for_leader().await;
    let addrs: Vec<SocketAddr> = endpoints.iter().map(|e| e.addr).collect();
    let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut clients = Vec::new();
    for client in 0..20usize {
        let addrs = addrs.clone();
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(async move {
            let mut outcomes = (0usize, 0usize);
            for n in 0..10usize {
                let addr = addrs[(client + n) % addrs.len()];
                let sent = lettre_plain(addr)
                    .send(message(client * 100 + n, "alice@example.org"))
                    .await;
                match sent {
                    Ok(response) => {
                        let id =
                            queued_id(&response.message().map(str::to_string).collect::<Vec<_>>());
                        acknowledged.lock().unwrap().insert(id);
                        outcomes.0 += 1;
                    }
                    Err(_) => outcomes.1 += 1,
                }
            }
            outcomes
        }));
    }
    // Let some mail through, then kill the leader (its SMTP listener goes with it).
    wait_for(
        "the first acknowledged messages",
        Duration::from_secs(30),
        || acknowledged.lock().unwrap().len() >= 20,
    )
    .await;
    let leader_endpoint = endpoints.remove(leader as usize - 1);
    leader_endpoint.shutdown.cancel();
    cluster.stop(leader).await;
    // No client hangs: each finishes its 10 attempts well within lettre's timeouts.
    let mut totals = (0, 0);
    for client in clients {
        let (ok, failed) = tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("a client hung")
            .unwrap();
        totals = (totals.0 + ok, totals.1 + failed);
    }
    assert_eq!(totals.0 + totals.1, 200);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 20);
    for node in cluster.running() {
        wait_for_ids(&cluster, node, &acknowledged).await;
    }
    for endpoint in endpoints {
        endpoint.stop().await;
    }
    cluster.stop_all().await;
}
