//! The queue commands against [`FakeNode`] over real gRPC: the token header, paging,
//! the two-step bulk action, streamed bodies, and how failures map to exit codes.

use std::time::Duration;

use clap::Parser;
use mxfleet_proto::admin::v1::Selector;

use super::act::ActArgs;
use super::{Verb, act, list, read, show};
use crate::cmd::admin::fake_node::{Behaviour, FakeNode};

const TIMEOUT: Duration = Duration::from_secs(10);

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

#[tokio::test]
async fn list_pages_through_the_whole_queue_with_the_bearer_token() {
    let node = FakeNode::new(1_234);
    let admin = node.connect(TIMEOUT).await;
    let listing = list::fetch(&admin, &Selector::default(), None, false)
        .await
        .unwrap();
    assert_eq!(listing.messages.len(), 1_234);
    assert_eq!(listing.messages.last().unwrap().id, "1234");
    let seen = node.seen.lock().unwrap();
    assert_eq!(seen.page_sizes, vec![500, 500, 500]);
    assert!(
        seen.authorization
            .iter()
            .all(|a| a == "Bearer test-token-0123456789"),
        "{:?}",
        seen.authorization
    );
}

#[tokio::test]
async fn a_confirmed_bulk_action_counts_first_then_acts() {
    let node = FakeNode::new(1_234);
    let admin = node.connect(TIMEOUT).await;
    let flags = act_flags(&["--domain", "example.org", "--yes"]);
    assert_eq!(
        act::run(&admin, Verb::DELETE, flags, true).await.unwrap(),
        0
    );
    let seen = node.seen.lock().unwrap();
    let steps: Vec<(bool, bool)> = seen.acts.iter().map(|a| (a.dry_run, a.confirmed)).collect();
    assert_eq!(steps, vec![(true, false), (false, true)]);
    assert!(
        seen.acts
            .iter()
            .all(|a| a.selector.as_ref().unwrap().domain == "example.org")
    );
}

#[tokio::test]
async fn a_dry_run_only_counts() {
    let node = FakeNode::new(40);
    let admin = node.connect(TIMEOUT).await;
    let flags = act_flags(&["--state", "held", "--dry-run"]);
    assert_eq!(
        act::run(&admin, Verb::RELEASE, flags, true).await.unwrap(),
        0
    );
    assert_eq!(node.seen.lock().unwrap().acts.len(), 1);
}

#[tokio::test]
async fn an_action_by_ids_goes_at_once_with_each_id_once() {
    let node = FakeNode::new(10);
    let admin = node.connect(TIMEOUT).await;
    let flags = act_flags(&["7", "5", "7"]);
    assert_eq!(act::run(&admin, Verb::HOLD, flags, true).await.unwrap(), 0);
    let seen = node.seen.lock().unwrap();
    assert_eq!(seen.acts.len(), 1);
    assert_eq!(seen.acts[0].selector.as_ref().unwrap().ids, vec!["5", "7"]);
    assert!(!seen.acts[0].dry_run && !seen.acts[0].confirmed);
}

#[tokio::test]
async fn read_streams_the_body_into_the_out_file() {
    let mut node = FakeNode::new(1);
    node.body = (0..2_500u32).map(|i| (i % 251) as u8).collect();
    let admin = node.connect(TIMEOUT).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body.eml");
    assert_eq!(
        read::run(&admin, "1".into(), Some(out.clone()), true)
            .await
            .unwrap(),
        0
    );
    assert_eq!(std::fs::read(&out).unwrap(), node.body);
}

#[tokio::test]
async fn unavailable_exits_69_and_names_the_leader() {
    let mut node = FakeNode::new(1);
    node.behaviour = Behaviour::NoQuorum;
    let admin = node.connect(TIMEOUT).await;
    let error = list::fetch(&admin, &Selector::default(), None, false)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 69);
    let text = error.to_string();
    assert!(
        text.contains("no quorum answered; leader is node 2 (the leader is node 2)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_permission_exits_1_and_names_it() {
    let mut node = FakeNode::new(1);
    node.behaviour = Behaviour::Deny;
    let admin = node.connect(TIMEOUT).await;
    let flags = act_flags(&["3"]);
    let error = act::run(&admin, Verb::DELETE, flags, true)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 1);
    assert!(
        error
            .to_string()
            .contains("needs a token with the `queue` permission"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unknown_id_exits_1() {
    let node = FakeNode::new(1);
    let admin = node.connect(TIMEOUT).await;
    let error = show::run(&admin, "404".into(), false, false)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 1);
    assert_eq!(error.to_string(), "not found: no message 404");
}

#[tokio::test]
async fn a_node_that_does_not_answer_times_out_with_69() {
    let mut node = FakeNode::new(1);
    node.behaviour = Behaviour::Hang;
    let admin = node.connect(Duration::from_millis(200)).await;
    let error = list::fetch(&admin, &Selector::default(), None, false)
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 69);
    assert!(
        error
            .to_string()
            .contains("did not answer QueueAdmin.List within 200ms"),
        "{error}"
    );
}
