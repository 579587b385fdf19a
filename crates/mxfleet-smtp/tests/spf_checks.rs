//! SPF through mail-auth against a real DNS server (mxfleet-testkit's `TestDns`,
//! in-process) publishing the records below, and the `Received-SPF:` value.
//!
//! Client 192.0.2.1 is `mail.example.org`, the only permitted sender of
//! `example.org`; 192.0.2.2 is anyone else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mxfleet_smtp::checks::dns::{CheckResolver, CheckResolverOptions};
use mxfleet_smtp::checks::spf::{SpfChecker, SpfEvaluation, SpfIdentity, SpfResult, fail_reply};
use mxfleet_testkit::dns::{SilentDns, TestDns, Zone};

const RECEIVER: &str = "mx2.example.net";
const SILENT_TIMEOUT: Duration = Duration::from_millis(300);

fn client(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

async fn dns() -> TestDns {
    TestDns::start([Zone::new("example.org")
        .txt("@", "v=spf1 ip4:192.0.2.1 -all")
        .a("mail", Ipv4Addr::new(192, 0, 2, 1))
        .txt("mail", "v=spf1 a -all")
        .txt("soft", "v=spf1 ip4:192.0.2.1 ~all")
        .txt("neutral", "v=spf1 ?all")
        .mx("via-mx", 10, "mail.example.org.")
        .txt("via-mx", "v=spf1 mx -all")
        .txt("broken", "v=spf1 ip4:not-an-address -all")
        .a("nospf", Ipv4Addr::new(192, 0, 2, 9))])
    .await
}

fn resolver(nameserver: SocketAddr, timeout: Duration) -> CheckResolver {
    let options = CheckResolverOptions {
        timeout,
        attempts: 0,
        cache_size: 0,
    };
    CheckResolver::from_nameservers(&[nameserver], &options).expect("resolver")
}

async fn evaluate(ip: IpAddr, helo: &str, sender: &str) -> SpfEvaluation {
    let dns = dns().await;
    let checker = SpfChecker::new(&resolver(dns.addr, Duration::from_secs(2)));
    checker.evaluate(ip, helo, sender, RECEIVER).await
}

#[tokio::test]
async fn permitted_sender_passes_with_the_rfc_7208_header() {
    let evaluation = evaluate(client(1), "mail.example.org", "a@example.org").await;
    assert_eq!(evaluation.result, SpfResult::Pass);
    assert_eq!(evaluation.identity, SpfIdentity::MailFrom);
    assert_eq!(
        evaluation.received_spf,
        "pass (mx2.example.net: domain of a@example.org designates 192.0.2.1 as permitted sender) \
         client-ip=192.0.2.1; envelope-from=\"a@example.org\"; helo=mail.example.org; \
         receiver=mx2.example.net; identity=mailfrom;"
    );
}

#[tokio::test]
async fn other_sender_fails_and_the_refusal_is_worded() {
    let evaluation = evaluate(client(2), "elsewhere.example", "a@example.org").await;
    assert_eq!(evaluation.result, SpfResult::Fail);
    assert!(
        evaluation.received_spf.starts_with(
            "fail (mx2.example.net: domain of a@example.org does not designate 192.0.2.2 as permitted sender) client-ip=192.0.2.2;"
        ),
        "{}",
        evaluation.received_spf
    );
    assert_eq!(
        fail_reply("a@example.org").to_wire(),
        "550 5.7.23 <a@example.org>: Sender address rejected: SPF fail\r\n"
    );
}

#[tokio::test]
async fn tilde_all_soft_fails() {
    let evaluation = evaluate(client(2), "x.example", "a@soft.example.org").await;
    assert_eq!(evaluation.result, SpfResult::SoftFail);
    assert!(
        evaluation.received_spf.starts_with("softfail ("),
        "{}",
        evaluation.received_spf
    );
}

#[tokio::test]
async fn question_all_is_neutral() {
    let evaluation = evaluate(client(2), "x.example", "a@neutral.example.org").await;
    assert_eq!(evaluation.result, SpfResult::Neutral);
}

#[tokio::test]
async fn domain_without_spf_record_is_none() {
    let evaluation = evaluate(client(2), "x.example", "a@nospf.example.org").await;
    assert_eq!(evaluation.result, SpfResult::None);
    let evaluation = evaluate(client(2), "x.example", "a@missing.example.org").await;
    assert_eq!(evaluation.result, SpfResult::None);
    assert!(
        evaluation.received_spf.starts_with(
            "none (mx2.example.net: domain missing.example.org does not publish an SPF record)"
        ),
        "{}",
        evaluation.received_spf
    );
}

#[tokio::test]
async fn mx_mechanism_is_resolved_through_our_server() {
    let evaluation = evaluate(client(1), "x.example", "a@via-mx.example.org").await;
    assert_eq!(evaluation.result, SpfResult::Pass);
    let evaluation = evaluate(client(2), "x.example", "a@via-mx.example.org").await;
    assert_eq!(evaluation.result, SpfResult::Fail);
}

#[tokio::test]
async fn syntax_error_in_the_record_is_permerror() {
    let evaluation = evaluate(client(1), "x.example", "a@broken.example.org").await;
    assert_eq!(evaluation.result, SpfResult::PermError);
}

#[tokio::test]
async fn null_sender_is_checked_on_the_helo_name() {
    let evaluation = evaluate(client(1), "mail.example.org", "").await;
    assert_eq!(evaluation.result, SpfResult::Pass);
    assert_eq!(evaluation.identity, SpfIdentity::Helo);
    assert_eq!(
        evaluation.received_spf,
        "pass (mx2.example.net: domain of postmaster@mail.example.org designates 192.0.2.1 as permitted sender) \
         client-ip=192.0.2.1; envelope-from=\"<>\"; helo=mail.example.org; \
         receiver=mx2.example.net; identity=helo;"
    );
    let evaluation = evaluate(client(2), "mail.example.org", "").await;
    assert_eq!(evaluation.result, SpfResult::Fail);
}

#[tokio::test]
async fn dns_timeout_is_temperror() {
    let silent = SilentDns::start().await;
    let checker = SpfChecker::new(&resolver(silent.addr, SILENT_TIMEOUT));
    let evaluation = checker
        .evaluate(client(1), "mail.example.org", "a@example.org", RECEIVER)
        .await;
    assert_eq!(evaluation.result, SpfResult::TempError);
    assert!(
        evaluation.received_spf.starts_with("temperror ("),
        "{}",
        evaluation.received_spf
    );
}

#[tokio::test]
async fn whole_evaluation_deadline_is_temperror() {
    let silent = SilentDns::start().await;
    // The resolver alone would wait 10 s; the evaluation gives up first.
    let checker = SpfChecker::new(&resolver(silent.addr, Duration::from_secs(10)))
        .with_deadline(SILENT_TIMEOUT);
    let evaluation = checker
        .evaluate(client(1), "mail.example.org", "a@example.org", RECEIVER)
        .await;
    assert_eq!(evaluation.result, SpfResult::TempError);
}
