//! The queue commands against a real node ([`TestNode`]) over real gRPC: tokens and
//! permissions as the node checks them, paging through a queue larger than a page,
//! the two-step bulk action and actions by id with the states listed afterwards,
//! bodies streamed from the blob store, and how failures (no quorum, no answer) map to
//! exit codes.

use std::time::Duration;

use clap::Parser;
use mxfleet_proto::admin::v1::{MessageState, Selector};

use super::act::ActArgs;
use super::list::PAGE_SIZE;
use super::{Verb, act, list, read, show};
use crate::cmd::admin::connection::{Admin, ClientArgs};
use crate::cmd::admin::error::CliError;
use crate::cmd::admin::test_node::{DOMAINS, OPS_TOKEN, TestNode, VIEWER_TOKEN};

/// More than one page of `queue list` (500), few enough to seed in about a second.
const MORE_THAN_A_PAGE: usize = 600;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    act: ActArgs,
}

fn act_flags(args: &[&str]) -> ActArgs {
    Flags::try_parse_from(std::iter::once("act").chain(args.iter().copied()))
        .unwrap()
        .act
}

fn in_state(state: MessageState) -> Selector {
    Selector {
        states: vec![state as i32],
        ..Default::default()
    }
}

/// The ids `queue list` shows for `selector`, in its order.
async fn listed(admin: &Admin, selector: &Selector) -> Vec<String> {
    let listing = list::fetch(admin, selector, None, false).await.unwrap();
    listing.messages.into_iter().map(|m| m.id).collect()
}

async fn list_error(admin: &Admin) -> CliError {
    list::fetch(admin, &Selector::default(), None, false)
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_a_queue_larger_than_a_page() {
    let node = TestNode::start(MORE_THAN_A_PAGE).await;
    assert!(node.seeded.len() > PAGE_SIZE as usize);
    let admin = node.connect(VIEWER_TOKEN).await;

    let listing = list::fetch(&admin, &Selector::default(), None, false)
        .await
        .unwrap();
    let ids: Vec<&str> = listing.messages.iter().map(|m| m.id.as_str()).collect();
    let seeded: Vec<&str> = node.seeded.iter().map(|m| m.id.as_str()).collect();
    // Every message exactly once, in queue id order, across the page boundary.
    assert_eq!(ids, seeded);
    assert_eq!(listing.total_matched, MORE_THAN_A_PAGE as u64);
    let bytes: usize = node.seeded.iter().map(|m| m.body.len()).sum();
    assert_eq!(listing.total_bytes, bytes as u64);
    assert!(
        listing
            .messages
            .iter()
            .all(|m| m.state == MessageState::Queued as i32)
    );

    // --limit stops inside the second page; the node still counts every match.
    let limited = list::fetch(&admin, &Selector::default(), Some(550), false)
        .await
        .unwrap();
    let ids: Vec<&str> = limited.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, seeded[..550]);
    assert_eq!(limited.total_matched, MORE_THAN_A_PAGE as u64);

    // A filter is applied by the node, on every page.
    let org = Selector {
        domain: DOMAINS[0].into(),
        ..Default::default()
    };
    assert_eq!(listed(&admin, &org).await, node.ids_to(DOMAINS[0]));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_exits_1_and_says_where_tokens_come_from() {
    let node = TestNode::start(1).await;

    let wrong = node.connect("not-a-token-0123456789").await;
    let error = list_error(&wrong).await;
    assert_eq!(error.exit_code(), 1, "{error}");
    let text = error.to_string();
    let endpoint = node.args().endpoint;
    assert!(
        text.starts_with(&format!(
            "{endpoint} did not accept the call: unknown admin token"
        )),
        "{text}"
    );
    // The node's message already says where tokens come from; the CLI adds no second
    // hint.
    assert_eq!(text.matches("MXFLEET_TOKEN").count(), 1, "{text}");

    let anonymous = Admin::connect(&node.args(), None).await.unwrap();
    let error = list_error(&anonymous).await;
    assert_eq!(error.exit_code(), 1, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("did not accept the call: no credentials"),
        "{text}"
    );
    assert!(text.contains("MXFLEET_TOKEN or --token-file"), "{text}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_exits_1_names_it_and_changes_nothing() {
    let node = TestNode::start(2).await;
    let id = node.seeded[0].id.clone();
    let viewer = node.connect(VIEWER_TOKEN).await;

    let error = act::run(&viewer, Verb::DELETE, act_flags(&[&id]), false)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 1, "{error}");
    let text = error.to_string();
    assert!(
        text.contains(r#"queue.act needs the "queue" permission, which "viewer" does not have"#),
        "{text}"
    );
    assert!(
        text.contains("QueueAdmin.Act needs a token with the `queue` permission"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body.eml");
    let error = read::run(&viewer, id.clone(), Some(out.clone()), false)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 1, "{error}");
    assert!(
        error
            .to_string()
            .contains("QueueAdmin.Read needs a token with the `read-body` permission"),
        "{error}"
    );
    assert!(!out.exists(), "a refused read leaves no file behind");

    // The viewer may still look: both messages are live and untouched.
    let all: Vec<String> = node.seeded.iter().map(|m| m.id.clone()).collect();
    assert_eq!(listed(&viewer, &Selector::default()).await, all);
    assert_eq!(show::run(&viewer, id, false, false).await.unwrap(), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_bulk_action_acts_on_exactly_the_matches() {
    let node = TestNode::start(MORE_THAN_A_PAGE).await;
    let ops = node.connect(OPS_TOKEN).await;
    let all: Vec<String> = node.seeded.iter().map(|m| m.id.clone()).collect();

    // The node refuses an unconfirmed bulk action: the CLI counts, then sends it
    // confirmed. More matches than one Raft command carries (500): the node streams
    // progress between commands and the CLI follows it to the final count.
    assert!(all.len() > 500);
    let flags = act_flags(&["--all", "--yes"]);
    assert_eq!(act::run(&ops, Verb::HOLD, flags, false).await.unwrap(), 0);
    assert_eq!(listed(&ops, &in_state(MessageState::Held)).await, all);
    assert!(
        listed(&ops, &in_state(MessageState::Queued))
            .await
            .is_empty()
    );

    // A filter: only the matches change.
    let flags = act_flags(&["--domain", DOMAINS[0], "--yes"]);
    assert_eq!(act::run(&ops, Verb::DELETE, flags, true).await.unwrap(), 0);
    let deleted = listed(&ops, &in_state(MessageState::Deleted)).await;
    assert_eq!(deleted, node.ids_to(DOMAINS[0]));
    let live = listed(&ops, &Selector::default()).await;
    assert_eq!(live, node.ids_to(DOMAINS[1]));
    assert_eq!(live, listed(&ops, &in_state(MessageState::Held)).await);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_only_counts() {
    let node = TestNode::start(10).await;
    let ops = node.connect(OPS_TOKEN).await;
    let held = vec![node.seeded[2].id.clone(), node.seeded[6].id.clone()];
    let ids: Vec<&str> = held.iter().map(String::as_str).collect();
    assert_eq!(
        act::run(&ops, Verb::HOLD, act_flags(&ids), true)
            .await
            .unwrap(),
        0
    );
    let held_now = in_state(MessageState::Held);
    assert_eq!(listed(&ops, &held_now).await, held);

    let flags = act_flags(&["--state", "held", "--dry-run"]);
    assert_eq!(act::run(&ops, Verb::RELEASE, flags, true).await.unwrap(), 0);
    assert_eq!(listed(&ops, &held_now).await, held, "a dry run released");

    let flags = act_flags(&["--state", "held", "--yes"]);
    assert_eq!(act::run(&ops, Verb::RELEASE, flags, true).await.unwrap(), 0);
    assert!(listed(&ops, &held_now).await.is_empty());
    assert_eq!(
        listed(&ops, &in_state(MessageState::Queued)).await.len(),
        10
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_by_ids_goes_at_once_with_each_id_once() {
    let node = TestNode::start(10).await;
    let ops = node.connect(OPS_TOKEN).await;
    let (five, seven) = (node.seeded[5].id.clone(), node.seeded[7].id.clone());

    // No --yes, and nothing is asked (off a terminal a question would fail with exit
    // 2). A repeated id counted twice would leave one "not done" (exit 1).
    let flags = act_flags(&[&seven, &five, &seven]);
    assert_eq!(act::run(&ops, Verb::HOLD, flags, false).await.unwrap(), 0);
    let held = in_state(MessageState::Held);
    assert_eq!(listed(&ops, &held).await, vec![five.clone(), seven.clone()]);

    // An id the node does not hold is reported by exit 1; the others are acted on.
    let three = node.seeded[3].id.clone();
    let flags = act_flags(&[&three, "FFFFFFFFFFFF"]);
    assert_eq!(act::run(&ops, Verb::HOLD, flags, false).await.unwrap(), 1);
    assert_eq!(listed(&ops, &held).await, vec![three, five, seven]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_writes_the_exact_stored_body_to_the_out_file() {
    let node = TestNode::start(0).await;
    // Several of the node's 64 KiB chunks, with bytes that are not UTF-8.
    let mut body =
        b"From: <sender@client.example>\r\nTo: <big@example.org>\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..8_000u32 {
        body.extend_from_slice(format!("line {i:05} ").as_bytes());
        body.extend((0..24u8).map(|b| 0x80 + b));
        body.extend_from_slice(b"\r\n");
    }
    assert!(body.len() > 3 * 64 * 1024);
    let id = node.enqueue("big@example.org", &body).await;
    let ops = node.connect(OPS_TOKEN).await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body.eml");
    assert_eq!(
        read::run(&ops, id, Some(out.clone()), true).await.unwrap(),
        0
    );
    assert_eq!(std::fs::read(&out).unwrap(), body);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_exits_1() {
    let node = TestNode::start(1).await;
    let viewer = node.connect(VIEWER_TOKEN).await;
    let known = node.seeded[0].id.clone();
    assert_eq!(show::run(&viewer, known, false, false).await.unwrap(), 0);
    let error = show::run(&viewer, "FFFFFFFFFFFF".into(), false, false)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 1);
    assert_eq!(
        error.to_string(),
        "not found: no message FFFFFFFFFFFF in the queue"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_quorum_serves_its_replica_but_exits_69_for_the_rest() {
    let mut node = TestNode::start_fleet(3, 3).await;
    node.stop_peers().await;
    let ops = node.connect(OPS_TOKEN).await;

    // A plain read answers from the node's own replica.
    let all: Vec<String> = node.seeded.iter().map(|m| m.id.clone()).collect();
    assert_eq!(listed(&ops, &Selector::default()).await, all);

    // A linearizable read needs the leader to confirm with a majority.
    let error = list::fetch(&ops, &Selector::default(), None, true)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 69, "{error}");
    let text = error.to_string();
    let endpoint = node.args().endpoint;
    assert!(
        text.starts_with(&format!(
            "{endpoint} cannot serve QueueAdmin.List now: no quorum: nothing was committed within"
        )),
        "{text}"
    );
    assert!(
        text.ends_with("; retry, or ask another node with --endpoint"),
        "{text}"
    );

    // So does a write.
    let flags = act_flags(&[&all[0]]);
    let error = act::run(&ops, Verb::HOLD, flags, false).await.unwrap_err();
    assert_eq!(error.exit_code(), 69, "{error}");
    assert!(
        error
            .to_string()
            .contains("cannot serve QueueAdmin.Act now: no quorum: nothing was committed within"),
        "{error}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_node_that_does_not_answer_times_out_with_69() {
    // A listener that accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let args = ClientArgs {
        endpoint: format!("http://{addr}"),
        token_file: None,
        ca_cert: None,
        client_cert: None,
        client_key: None,
        timeout: Duration::from_millis(200),
        json: false,
    };
    let admin = Admin::connect(&args, Some(VIEWER_TOKEN.into()))
        .await
        .unwrap();
    let error = list_error(&admin).await;
    assert_eq!(error.exit_code(), 69);
    assert!(
        error
            .to_string()
            .contains("did not answer QueueAdmin.List within 200ms"),
        "{error}"
    );
    silent.abort();
}
