//! End-to-end tests of mutual TLS on the peer port: real certificates from a throwaway
//! fleet CA (rcgen), real nodes in this process, real gRPC over loopback.
//!
//! - `FleetCa` (the testkit's `TestCa`): a self-signed CA that issues node certificates for `127.0.0.1` and
//!   `localhost`, usable both as server and as client identity.
//! - `a_cluster_over_mutual_tls_replicates_messages`: Raft and blob replication work when
//!   every node only speaks mTLS.
//! - `a_peer_without_a_fleet_certificate_is_refused`: the peer port turns away plaintext,
//!   anonymous TLS clients and certificates from another CA, and answers a fleet peer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mxfleet_core::{BodyDigest, Envelope, QueueId};
use mxfleet_proto::raft::v1::GetBlobRequest;
use mxfleet_proto::raft::v1::raft_peer_client::RaftPeerClient;
use mxfleet_queue::{PeerTls, QueueConfig};
use mxfleet_testkit::tls::{IssuedCert, TestCa as FleetCa};
use mxfleet_testkit::{QueueCluster, init_test_logging, wait_for, wait_for_async};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long a probe may take to connect and get an answer; far above loopback latency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts `size` nodes, node `n` with its own certificate `node-n` from `ca`.
async fn start_mtls_cluster(ca: &FleetCa, size: usize) -> QueueCluster {
    let identities: Vec<PeerTls> = (1..=size)
        .map(|n| ca.peer_tls(&format!("node-{n}")))
        .collect();
    QueueCluster::start_tuned(
        size,
        Arc::new(move |c: &mut QueueConfig| {
            c.tls = identities[c.node_id as usize - 1].clone();
        }),
    )
    .await
}

fn envelope(n: usize) -> Envelope {
    Envelope {
        sender: format!("sender{n}@client.example"),
        recipients: vec![format!("user{n}@example.org")],
        message_id: Some(format!("<tls-{n}@client.example>")),
        trace: None,
    }
}

fn body(n: usize) -> Vec<u8> {
    format!("Subject: over mTLS {n}\r\nMessage-ID: <tls-{n}@client.example>\r\n\r\nbody {n}\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_over_mutual_tls_replicates_messages() {
    init_test_logging();
    let ca = FleetCa::new("mxfleet test fleet CA");
    let mut cluster = start_mtls_cluster(&ca, 3).await;
    for id in cluster.running() {
        assert!(
            matches!(cluster.config(id).tls, PeerTls::Mutual { .. }),
            "node {id} runs with mutual TLS"
        );
    }
    cluster.wait_for_leader().await;

    // Node 2 may or may not lead: either way the write crosses the mTLS peer port
    // (forwarding, Raft append and blob replication).
    let mut acknowledged = BTreeSet::new();
    let mut digests = Vec::new();
    for n in 0..5 {
        let receipt = cluster
            .queue(2)
            .enqueue_bytes(envelope(n), &body(n))
            .await
            .expect("enqueue over mTLS");
        assert!(!receipt.duplicate);
        acknowledged.insert(receipt.id);
        digests.push((BodyDigest::of(&body(n)), body(n)));
    }
    assert_eq!(acknowledged.len(), 5);

    for id in cluster.running() {
        wait_for(
            &format!("node {id} to apply all five entries"),
            Duration::from_secs(15),
            || {
                let held: BTreeSet<QueueId> =
                    cluster.queue(id).entries().iter().map(|e| e.id).collect();
                held == acknowledged
            },
        )
        .await;
        for (digest, expected) in &digests {
            wait_for_async(
                &format!("node {id} to hold body {}", digest.to_hex()),
                Duration::from_secs(15),
                || async { cluster.queue(id).body(digest).await.ok().as_ref() == Some(expected) },
            )
            .await;
        }
    }

    cluster.stop_all().await;
}

/// A client of node 1's peer port, as an outsider would build it.
fn probe_endpoint(cluster: &QueueCluster, tls: Option<ClientTlsConfig>) -> Channel {
    let addr = cluster.queue(1).peer_addr();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .expect("valid URI")
        .connect_timeout(PROBE_TIMEOUT)
        .timeout(PROBE_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).expect("client TLS config");
    }
    endpoint.connect_lazy()
}

/// Asks node 1 for a blob that no node stores; returns the gRPC status it ends with.
async fn probe_get_blob(cluster: &QueueCluster, tls: Option<ClientTlsConfig>) -> tonic::Status {
    let mut client = RaftPeerClient::new(probe_endpoint(cluster, tls));
    let never_stored = BodyDigest::of(b"a body that no node in this test ever stored");
    match client
        .get_blob(GetBlobRequest {
            sha256: never_stored.to_hex(),
        })
        .await
    {
        Ok(_) => panic!("node 1 claims to hold a blob nobody stored"),
        Err(status) => status,
    }
}

fn tls_with(ca: &FleetCa, client: Option<&IssuedCert>) -> ClientTlsConfig {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.ca_pem()))
        .domain_name("127.0.0.1");
    match client {
        Some(leaf) => tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem)),
        None => tls,
    }
}

/// The transport failure behind `status`, if the call never reached an RPC handler.
fn transport_failure(status: &tonic::Status) -> Option<&tonic::transport::Error> {
    std::error::Error::source(status)?.downcast_ref::<tonic::transport::Error>()
}

/// A refusal happens at the transport, before any RPC handler runs. Which gRPC code it
/// surfaces as depends on who notices first (a TLS alert, a closed connection or an HTTP/2
/// GOAWAY), so the test checks where the failure came from rather than one code.
fn assert_refused_at_transport(status: &tonic::Status, what: &str) {
    assert!(
        transport_failure(status).is_some(),
        "{what}: expected the connection to be refused, got an answer: {status:?}"
    );
    assert_ne!(
        status.code(),
        Code::NotFound,
        "{what}: the service answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_without_a_fleet_certificate_is_refused() {
    init_test_logging();
    let ca = FleetCa::new("mxfleet test fleet CA");
    let mut cluster = start_mtls_cluster(&ca, 1).await;

    // (a) Plaintext HTTP/2 against a TLS port.
    let plaintext = probe_get_blob(&cluster, None).await;
    assert_refused_at_transport(&plaintext, "plaintext");

    // (b) TLS that trusts the fleet CA, but presents no certificate at all.
    let anonymous = probe_get_blob(&cluster, Some(tls_with(&ca, None))).await;
    assert_refused_at_transport(&anonymous, "no client certificate");

    // (c) TLS that trusts the fleet CA, with a well-formed certificate from another CA.
    let rogue_ca = FleetCa::new("some other CA");
    let rogue_leaf = rogue_ca.issue("intruder");
    let rogue = probe_get_blob(&cluster, Some(tls_with(&ca, Some(&rogue_leaf)))).await;
    assert_refused_at_transport(&rogue, "certificate from another CA");

    // (d) A proper fleet certificate: the handshake succeeds and the service itself
    // answers, with the blob store's own verdict.
    let member_leaf = ca.issue("operator-probe");
    let member = probe_get_blob(&cluster, Some(tls_with(&ca, Some(&member_leaf)))).await;
    assert_eq!(
        member.code(),
        Code::NotFound,
        "a fleet peer reaches the service: {member:?}"
    );
    assert!(
        transport_failure(&member).is_none(),
        "the NotFound comes from the service, not the transport: {member:?}"
    );

    cluster.stop_all().await;
}
