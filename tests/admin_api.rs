//! The admin gRPC API against a 3-node fleet with delivery, called with tonic's own
//! client over real TCP: authentication and permissions, queue list/show/stats with
//! paging and filters, bulk actions through a follower, body reads, flush, cluster
//! status with the leader's replication view, drain, and the answers of a node that
//! lost its quorum. (`crates/mxfleet/tests/admin_cli.rs` drives the same API through
//! the `mxfleet` CLI.)

#[path = "support/delivery_fleet.rs"]
mod delivery_fleet;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use delivery_fleet::{DOMAIN, DeliveryFleet, test_body, test_delivery_config};
use mxfleet_core::NodeId;
use mxfleet_node::config::{AdminConfig, AdminPermission, AdminToken, TokenSecret};
use mxfleet_proto::admin::v1 as pb;
use mxfleet_proto::admin::v1::cluster_admin_client::ClusterAdminClient;
use mxfleet_proto::admin::v1::queue_admin_client::QueueAdminClient;
use mxfleet_testkit::sink::SinkMx;
use mxfleet_testkit::{init_test_logging, wait_for};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;
use tonic::{Code, Request};

const OPS_TOKEN: &str = "ops-token-0123456789abcdef";
const VIEWER_TOKEN: &str = "viewer-token-0123456789abcdef";

fn admin_config() -> AdminConfig {
    let token = |name: &str, secret: &str, permissions: &[AdminPermission]| AdminToken {
        name: name.into(),
        secret: TokenSecret::Sha256(TokenSecret::digest_of(secret)),
        permissions: permissions.iter().copied().collect(),
    };
    AdminConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        tokens: vec![
            token("ops", OPS_TOKEN, &AdminPermission::ALL),
            token("viewer", VIEWER_TOKEN, &[AdminPermission::View]),
        ],
        client_cert_permissions: Default::default(),
    }
}

struct Admin {
    addrs: BTreeMap<NodeId, SocketAddr>,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start_admin(fleet: &DeliveryFleet) -> Admin {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut addrs = BTreeMap::new();
    for id in fleet.cluster.running() {
        let addr = mxfleet_node::admin::start(
            &admin_config(),
            fleet.queue(id).clone(),
            shutdown.clone(),
            &tracker,
        )
        .await
        .expect("admin listener");
        addrs.insert(id, addr);
    }
    Admin {
        addrs,
        _shutdown: shutdown.drop_guard(),
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("admin connects")
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn selector(states: &[pb::MessageState]) -> pb::Selector {
    pb::Selector {
        states: states.iter().map(|s| *s as i32).collect(),
        ..Default::default()
    }
}

async fn act(
    client: &mut QueueAdminClient<Channel>,
    action: pb::Action,
    selector: pb::Selector,
    dry_run: bool,
) -> Result<pb::ActProgress, tonic::Status> {
    let request = pb::ActRequest {
        action: action as i32,
        selector: Some(selector),
        dry_run,
        confirmed: true,
    };
    let mut stream = client.act(authed(request, OPS_TOKEN)).await?.into_inner();
    let mut last = None;
    while let Some(progress) = stream.message().await? {
        last = Some(progress);
    }
    let last = last.expect("at least the final progress message");
    assert!(last.finished, "the stream ends with the final reply");
    Ok(last)
}

async fn list_all(
    client: &mut QueueAdminClient<Channel>,
    selector: pb::Selector,
    page_size: u32,
) -> (Vec<pb::MessageSummary>, usize) {
    let mut messages = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let reply = client
            .list(authed(
                pb::ListRequest {
                    selector: Some(selector.clone()),
                    page_size,
                    page_token,
                    linearizable: false,
                },
                VIEWER_TOKEN,
            ))
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        messages.extend(reply.messages);
        if reply.next_page_token.is_empty() {
            assert_eq!(messages.len() as u64, reply.total_matched);
            return (messages, pages);
        }
        page_token = reply.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_need_a_known_token_with_the_right_permission() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let mut fleet = DeliveryFleet::start(test_delivery_config(sink.addr())).await;
    let admin = start_admin(&fleet).await;
    let mut queue = QueueAdminClient::new(channel(admin.addrs[&1]).await);

    let anonymous = queue.stats(Request::new(pb::StatsRequest::default())).await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    let wrong = queue
        .stats(authed(pb::StatsRequest::default(), "not-a-token-at-all"))
        .await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    assert!(
        queue
            .stats(authed(pb::StatsRequest::default(), VIEWER_TOKEN))
            .await
            .is_ok()
    );

    let denied = queue
        .act(authed(
            pb::ActRequest {
                action: pb::Action::Hold as i32,
                selector: Some(pb::Selector::default()),
                dry_run: false,
                confirmed: true,
            },
            VIEWER_TOKEN,
        ))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("\"queue\""),
        "{}",
        denied.message()
    );
    let read = queue
        .read(authed(
            pb::ReadRequest {
                id: "000000000001".into(),
            },
            VIEWER_TOKEN,
        ))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(read.code(), Code::PermissionDenied);
    let mut cluster = ClusterAdminClient::new(channel(admin.addrs[&1]).await);
    let drain = cluster
        .drain(authed(
            pb::DrainRequest { id: 2, undo: false },
            VIEWER_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(drain.code(), Code::PermissionDenied);
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_list_show_act_and_read_through_a_follower() {
    init_test_logging();
    let mut sink = SinkMx::start().await;
    let config = test_delivery_config(sink.addr());
    sink.stop().await;
    let mut fleet = DeliveryFleet::start(config).await;
    let leader = fleet.cluster.wait_for_leader().await;
    let follower = fleet
        .cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    let admin = start_admin(&fleet).await;
    let mut queue = QueueAdminClient::new(channel(admin.addrs[&follower]).await);

    let ids = fleet.enqueue_many(1, 30, "sender@client.example").await;
    // Every message is tried once while the primary is down, and deferred.
    wait_for("30 deferred messages", Duration::from_secs(30), || {
        fleet
            .queue(follower)
            .entries()
            .iter()
            .all(|e| e.attempts > 0)
    })
    .await;

    // Paging: 30 messages, 7 per page.
    let (listed, pages) = list_all(&mut queue, pb::Selector::default(), 7).await;
    assert_eq!(listed.len(), 30);
    assert_eq!(pages, 5);
    let mut listed_ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    listed_ids.dedup();
    assert_eq!(listed_ids.len(), 30, "no message twice across pages");
    assert!(
        listed
            .iter()
            .all(|m| m.state == pb::MessageState::Deferred as i32 && m.attempts >= 1)
    );

    // Show: envelope, headers from the body, history with the failed attempt.
    let first = ids[0];
    let detail = queue
        .show(authed(
            pb::ShowRequest {
                id: first.to_string(),
                linearizable: true,
            },
            VIEWER_TOKEN,
        ))
        .await
        .expect("show")
        .into_inner();
    let summary = detail.summary.unwrap();
    assert_eq!(summary.sender, "sender@client.example");
    assert_eq!(summary.recipients[0].address, format!("user0@{DOMAIN}"));
    assert_eq!(detail.headers, "", "headers are content: read-body only");
    let detail = queue
        .show(authed(
            pb::ShowRequest {
                id: first.to_string(),
                linearizable: false,
            },
            OPS_TOKEN,
        ))
        .await
        .expect("show")
        .into_inner();
    assert!(
        detail.headers.contains("Subject: test 0\r\n"),
        "{}",
        detail.headers
    );
    assert!(
        !detail.headers.contains("body 0"),
        "headers stop at the blank line"
    );
    let kinds: Vec<&str> = detail.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"accepted"));
    assert!(
        kinds.contains(&"assigned") && kinds.contains(&"attempt"),
        "{kinds:?}"
    );

    // Read: the stored body, byte for byte.
    let mut body = Vec::new();
    let mut chunks = queue
        .read(authed(
            pb::ReadRequest {
                id: first.to_string(),
            },
            OPS_TOKEN,
        ))
        .await
        .expect("read")
        .into_inner();
    while let Some(chunk) = chunks.message().await.expect("chunk") {
        body.extend_from_slice(&chunk.data);
    }
    assert_eq!(body, test_body(0));

    // A bulk hold by recipient filter, counted first with a dry run.
    let filter = pb::Selector {
        recipient: format!("user1@{DOMAIN}"),
        ..Default::default()
    };
    let counted = act(&mut queue, pb::Action::Hold, filter.clone(), true)
        .await
        .unwrap();
    assert_eq!(
        (counted.matched, counted.done),
        (1, 0),
        "a dry run changes nothing"
    );
    let held = act(&mut queue, pb::Action::Hold, pb::Selector::default(), false)
        .await
        .unwrap();
    assert_eq!((held.matched, held.done, held.skipped), (30, 30, 0));
    let (held_list, _) = list_all(&mut queue, selector(&[pb::MessageState::Held]), 100).await;
    assert_eq!(held_list.len(), 30);

    // An unconfirmed bulk action is refused; one by id needs no confirmation.
    let unconfirmed = queue
        .act(authed(
            pb::ActRequest {
                action: pb::Action::Release as i32,
                selector: Some(pb::Selector::default()),
                dry_run: false,
                confirmed: false,
            },
            OPS_TOKEN,
        ))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(unconfirmed.code(), Code::InvalidArgument);
    let by_id = pb::Selector {
        ids: vec![ids[1].to_string()],
        ..Default::default()
    };
    let deleted = act(&mut queue, pb::Action::Delete, by_id.clone(), false)
        .await
        .unwrap();
    assert_eq!(deleted.done, 1);
    let again = act(&mut queue, pb::Action::Delete, by_id, false)
        .await
        .unwrap();
    assert_eq!((again.done, again.skipped), (0, 1));
    assert!(
        again.notes[0].contains("already Deleted"),
        "{:?}",
        again.notes
    );

    // Bounce one while it is held (no owner has it), then release the rest. Its
    // sender gets a DSN when the primary is up.
    let bounce = pb::Selector {
        ids: vec![ids[2].to_string()],
        ..Default::default()
    };
    assert_eq!(
        act(&mut queue, pb::Action::Bounce, bounce, false)
            .await
            .unwrap()
            .done,
        1
    );
    let released = act(
        &mut queue,
        pb::Action::Release,
        selector(&[pb::MessageState::Held]),
        false,
    )
    .await
    .unwrap();
    assert_eq!(released.done, 28);

    wait_for("the bounce's DSN queued", Duration::from_secs(20), || {
        fleet.queue(follower).len() == 31
    })
    .await;
    let stats = queue
        .stats(authed(
            pb::StatsRequest { linearizable: true },
            VIEWER_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stats.total_messages, 29,
        "30, less one deleted and one bounced, plus the DSN"
    );
    let per_domain: BTreeMap<&str, u64> =
        stats.domains.iter().fold(BTreeMap::new(), |mut sums, d| {
            *sums.entry(d.domain.as_str()).or_default() += d.messages;
            sums
        });
    assert_eq!(per_domain.get(DOMAIN), Some(&28));
    assert_eq!(
        per_domain.get("client.example"),
        Some(&1),
        "the DSN to the sender"
    );
    assert_eq!(stats.received_last_minute, 31);

    // The primary comes back; flush makes the deferred ones due at once.
    sink.restart().await;
    let flushed = queue
        .flush(authed(
            pb::FlushRequest {
                domain: DOMAIN.into(),
            },
            OPS_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(flushed.made_due <= 28);
    wait_for(
        "28 messages and 1 DSN delivered",
        Duration::from_secs(30),
        || {
            fleet
                .queue(follower)
                .read_state(|s| s.live_entries().count())
                .unwrap()
                == 0
        },
    )
    .await;
    let (live, _) = list_all(&mut queue, pb::Selector::default(), 100).await;
    assert!(live.is_empty(), "nothing left: {live:?}");
    assert_eq!(sink.received_count(), 29);
    // The fleet saw the primary down, then up again, and says so in the status.
    let mut cluster = ClusterAdminClient::new(channel(admin.addrs[&follower]).await);
    let status = cluster
        .status(authed(pb::ClusterStatusRequest::default(), VIEWER_TOKEN))
        .await
        .unwrap()
        .into_inner();
    let destination = status
        .destinations
        .iter()
        .find(|d| d.destination == DOMAIN)
        .expect("the primary's reachability");
    assert!(destination.up, "{destination:?}");
    assert!(destination.nodes.iter().any(|n| n.reachable));
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_status_drain_and_a_node_without_quorum() {
    init_test_logging();
    let sink = SinkMx::start().await;
    let mut fleet = DeliveryFleet::start(test_delivery_config(sink.addr())).await;
    let leader = fleet.cluster.wait_for_leader().await;
    let followers: Vec<NodeId> = fleet
        .cluster
        .running()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let admin = start_admin(&fleet).await;
    let mut cluster = ClusterAdminClient::new(channel(admin.addrs[&followers[0]]).await);

    // Status from a follower carries the leader's view of every member.
    let status = cluster
        .status(authed(
            pb::ClusterStatusRequest { linearizable: true },
            VIEWER_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.answered_by, followers[0]);
    assert_eq!(status.leader, Some(leader));
    assert!(status.leader_view);
    assert_eq!(status.members.len(), 3);
    for member in &status.members {
        assert_eq!(member.membership, "voter");
        assert!(member.matched_index.is_some(), "{member:?}");
        assert!(
            member.lag_entries.is_some_and(|lag| lag < 100),
            "{member:?}"
        );
        assert!(member.delivering && !member.drained);
        let expected_role = if member.id == leader {
            "leader"
        } else {
            "follower"
        };
        assert_eq!(member.role, expected_role);
    }

    // Drain a follower: it stops taking delivery work; undo puts it back.
    let drained = followers[1];
    cluster
        .drain(authed(
            pb::DrainRequest {
                id: drained,
                undo: false,
            },
            OPS_TOKEN,
        ))
        .await
        .unwrap();
    let member = |status: &pb::ClusterStatus, id| {
        status.members.iter().find(|m| m.id == id).cloned().unwrap()
    };
    let status = cluster
        .status(authed(pb::ClusterStatusRequest::default(), VIEWER_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(member(&status, drained).drained);
    assert!(!member(&status, drained).delivering);
    // The answering node has applied the drain; the drained node itself may apply it
    // a moment later.
    wait_for("the drained node knows", Duration::from_secs(5), || {
        fleet.queue(drained).is_drained()
    })
    .await;
    let before = sink.received_count();
    let sent = fleet
        .enqueue_many(leader, 20, "sender@client.example")
        .await;
    wait_for(
        "20 delivered by the others",
        Duration::from_secs(30),
        || sink.received_count() >= before + 20,
    )
    .await;
    for id in sent {
        let entry = fleet.queue(leader).entry(id).unwrap();
        assert!(
            !entry.history.iter().any(|h| matches!(
                h,
                mxfleet_core::HistoryEvent::Assigned { owner, .. } if *owner == drained
            )),
            "a drained node gets no new work: {:?}",
            entry.history
        );
    }
    cluster
        .drain(authed(
            pb::DrainRequest {
                id: drained,
                undo: true,
            },
            OPS_TOKEN,
        ))
        .await
        .unwrap();
    wait_for("the undrained node knows", Duration::from_secs(5), || {
        !fleet.queue(drained).is_drained()
    })
    .await;
    let unknown = cluster
        .drain(authed(
            pb::DrainRequest {
                id: 42,
                undo: false,
            },
            OPS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Two of three nodes stop: the survivor answers local reads, and refuses writes
    // and linearizable reads with UNAVAILABLE.
    let survivor = followers[0];
    for id in fleet.cluster.running() {
        if id != survivor {
            fleet.stop(id).await;
        }
    }
    let mut queue = QueueAdminClient::new(channel(admin.addrs[&survivor]).await);
    assert!(
        queue
            .stats(authed(
                pb::StatsRequest {
                    linearizable: false
                },
                VIEWER_TOKEN
            ))
            .await
            .is_ok()
    );
    let linearizable = queue
        .stats(authed(
            pb::StatsRequest { linearizable: true },
            VIEWER_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(linearizable.code(), Code::Unavailable, "{linearizable:?}");
    let write = queue
        .flush(authed(pb::FlushRequest::default(), OPS_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::Unavailable, "{write:?}");
    assert!(write.message().contains("no quorum"), "{}", write.message());
    fleet.stop_all().await;
}
