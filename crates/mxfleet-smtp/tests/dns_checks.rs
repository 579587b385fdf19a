//! DNSBL and RHSBL lookups against a real DNS server: hickory-server runs in-process
//! (mxfleet-testkit's `TestDns`) and serves the lists below. Each test gets its own
//! server and a resolver without a cache, so the query log shows every lookup.
//!
//! Clients by last octet of 192.0.2.x:
//! - .10 on zen (127.0.0.2); .11 on zen only with the PBL code 127.0.0.10; .12 gets
//!   zen's error code 127.255.255.254;
//! - .20 on small-a and small-b; .21 on small-a only;
//! - .30 on zen and on the allowlist dnswl;
//! - .50 on nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mxfleet_smtp::checks::config::DnsblConfig;
use mxfleet_smtp::checks::dns::{CheckResolver, CheckResolverOptions};
use mxfleet_smtp::checks::dnsbl::{Dnsbl, DnsblHit, DnsblSite, DnsblVerdict};
use mxfleet_testkit::dns::{SilentDns, TestDns, Zone};

const TIMEOUT: Duration = Duration::from_millis(300);

fn client(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn code(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// `2001:db8::1` in nibble form (RFC 5782 §2.4), written out by hand.
const V6_CLIENT_LABELS: &str = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";

async fn lists() -> TestDns {
    TestDns::builder()
        .zone(
            Zone::new("zen.test")
                .a("10.2.0.192", code(2))
                .a("11.2.0.192", code(10))
                .a("12.2.0.192", Ipv4Addr::new(127, 255, 255, 254))
                .a("30.2.0.192", code(4))
                .a(V6_CLIENT_LABELS, code(3)),
        )
        .zone(
            Zone::new("small-a.test")
                .a("20.2.0.192", code(2))
                .a("21.2.0.192", code(2)),
        )
        .zone(Zone::new("small-b.test").a("20.2.0.192", code(2)))
        .zone(Zone::new("dnswl.test").a("30.2.0.192", Ipv4Addr::new(127, 0, 5, 2)))
        .zone(Zone::new("dbl.test").a("spam.example", Ipv4Addr::new(127, 0, 1, 2)))
        .servfail_zone("broken.test")
        .start()
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

fn sites(specs: &[&str]) -> Vec<DnsblSite> {
    specs
        .iter()
        .map(|spec| spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}")))
        .collect()
}

fn config(specs: &[&str], threshold: i32) -> DnsblConfig {
    DnsblConfig {
        sites: sites(specs),
        threshold,
        rhsbl_sender_sites: sites(&["dbl.test"]),
        ..DnsblConfig::default()
    }
}

fn dnsbl(dns: &TestDns, specs: &[&str], threshold: i32) -> Dnsbl {
    Dnsbl::new(
        &config(specs, threshold),
        &resolver(dns.addr, Duration::from_secs(2)),
        Duration::from_secs(2),
    )
}

#[tokio::test]
async fn listed_client_is_blocked_with_postfix_wording() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test"], 1);
    let verdict = dnsbl.score_client(client(10)).await;
    assert_eq!(
        verdict.hits,
        vec![DnsblHit {
            zone: "zen.test".to_owned(),
            code: code(2),
            weight: 1
        }]
    );
    assert_eq!(verdict.score, 1);
    assert!(verdict.failed.is_empty(), "{verdict:?}");
    assert!(verdict.blocks(1));
    assert_eq!(
        verdict.reply(client(10)).to_wire(),
        "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.test\r\n"
    );
    assert_eq!(dns.queries(), ["10.2.0.192.zen.test. A"]);
}

#[tokio::test]
async fn unlisted_client_passes() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test", "small-a.test"], 1);
    let verdict = dnsbl.score_client(client(50)).await;
    assert_eq!((verdict.score, verdict.hits.len()), (0, 0));
    assert!(
        verdict.failed.is_empty(),
        "NXDOMAIN is an answer: {verdict:?}"
    );
    assert!(!verdict.blocks(1));
}

#[tokio::test]
async fn return_code_outside_the_filter_does_not_count() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test=127.0.0.[2..9]"], 1);
    let verdict = dnsbl.score_client(client(11)).await;
    assert!(verdict.hits.is_empty(), "{verdict:?}");
    assert!(verdict.failed.is_empty(), "{verdict:?}");
    assert!(!verdict.blocks(1));
    // The same answer counts for an entry that takes it.
    let dnsbl = self::dnsbl(
        &dns,
        &["zen.test=127.0.0.[2..9]", "zen.test=127.0.0.10*2"],
        1,
    );
    let verdict = dnsbl.score_client(client(11)).await;
    assert_eq!(verdict.score, 2);
    assert_eq!(verdict.hits[0].code, code(10));
}

#[tokio::test]
async fn dnsbl_error_code_is_a_failure_not_a_listing() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test"], 1);
    let verdict = dnsbl.score_client(client(12)).await;
    assert!(verdict.hits.is_empty(), "{verdict:?}");
    assert!(!verdict.blocks(1));
    assert_eq!(verdict.failed.len(), 1, "{verdict:?}");
    assert_eq!(verdict.failed[0].0, "zen.test");
    assert!(
        verdict.failed[0].1.contains("127.255.255.254"),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn weighted_lists_block_only_together() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["small-a.test*2", "small-b.test*2"], 3);
    let one = dnsbl.score_client(client(21)).await;
    assert_eq!(one.score, 2);
    assert!(!one.blocks(3));
    let both = dnsbl.score_client(client(20)).await;
    assert_eq!(both.score, 4);
    assert!(both.blocks(3));
    assert_eq!(
        both.reply(client(20)).to_string(),
        "554 5.7.1 Service unavailable; Client host [192.0.2.20] blocked using small-a.test, small-b.test"
    );
}

#[tokio::test]
async fn allowlist_weight_offsets_a_listing() {
    let dns = lists().await;
    let specs = ["zen.test*3", "dnswl.test=127.0.[0..255].[1..3]*-2"];
    let dnsbl = dnsbl(&dns, &specs, 3);
    let verdict = dnsbl.score_client(client(30)).await;
    assert_eq!(verdict.score, 1, "{verdict:?}");
    assert_eq!(verdict.hits.len(), 2);
    assert!(!verdict.blocks(3));
    // Without the allowlist the same client is blocked.
    let dnsbl = self::dnsbl(&dns, &specs[..1], 3);
    assert!(dnsbl.score_client(client(30)).await.blocks(3));
}

#[tokio::test]
async fn second_lookup_is_answered_from_the_cache() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test", "small-a.test"], 1);
    let first = dnsbl.score_client(client(10)).await;
    assert!(!first.from_cache);
    let asked = dns.query_count();
    assert_eq!(asked, 2);
    let second = dnsbl.score_client(client(10)).await;
    assert!(second.from_cache);
    assert_eq!((second.score, &second.hits), (first.score, &first.hits));
    assert_eq!(dns.query_count(), asked, "{:?}", dns.queries());
    // Even with the server gone.
    dns.stop().await;
    assert!(dnsbl.score_client(client(10)).await.blocks(1));
}

#[tokio::test]
async fn cached_verdict_expires_after_cache_ttl() {
    let dns = lists().await;
    let now = Arc::new(Mutex::new(Instant::now()));
    let clock = now.clone();
    let config = DnsblConfig {
        cache_ttl: Duration::from_secs(60),
        ..config(&["zen.test"], 1)
    };
    let dnsbl = Dnsbl::new(
        &config,
        &resolver(dns.addr, Duration::from_secs(2)),
        TIMEOUT,
    )
    .with_clock(Arc::new(move || *clock.lock().unwrap()));
    dnsbl.score_client(client(10)).await;
    *now.lock().unwrap() += Duration::from_secs(59);
    assert!(dnsbl.score_client(client(10)).await.from_cache);
    *now.lock().unwrap() += Duration::from_secs(1);
    assert!(!dnsbl.score_client(client(10)).await.from_cache);
    assert_eq!(dns.query_count(), 2);
}

#[tokio::test]
async fn cache_keeps_at_most_cache_entries_clients() {
    let dns = lists().await;
    let config = DnsblConfig {
        cache_entries: 1,
        ..config(&["zen.test"], 1)
    };
    let dnsbl = Dnsbl::new(
        &config,
        &resolver(dns.addr, Duration::from_secs(2)),
        TIMEOUT,
    );
    dnsbl.score_client(client(10)).await;
    dnsbl.score_client(client(50)).await;
    // client(10) was the oldest and made room for client(50).
    assert!(!dnsbl.score_client(client(10)).await.from_cache);
    assert_eq!(dns.query_count(), 3);
}

#[tokio::test]
async fn timeout_fails_open_and_names_the_site() {
    let silent = SilentDns::start().await;
    let config = config(&["zen.test*5"], 1);
    let dnsbl = Dnsbl::new(&config, &resolver(silent.addr, TIMEOUT), TIMEOUT);
    let verdict = dnsbl.score_client(client(10)).await;
    assert_eq!(verdict.score, 0);
    assert!(!verdict.blocks(1));
    assert_eq!(verdict.failed.len(), 1, "{verdict:?}");
    assert_eq!(verdict.failed[0].0, "zen.test");
    assert!(verdict.failed[0].1.contains("timed out"), "{verdict:?}");
    // A verdict with a failed site is not cached: the next client asks again.
    assert!(!dnsbl.score_client(client(10)).await.from_cache);
}

#[tokio::test]
async fn servfail_on_one_site_leaves_the_others_counting() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["broken.test*5", "zen.test"], 1);
    let verdict = dnsbl.score_client(client(10)).await;
    assert_eq!(verdict.score, 1);
    assert!(verdict.blocks(1));
    assert_eq!(verdict.failed.len(), 1, "{verdict:?}");
    assert_eq!(verdict.failed[0].0, "broken.test");
    assert!(
        verdict.failed[0].1.contains("Server Failure"),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn ipv6_client_is_asked_in_nibble_form() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test"], 1);
    let verdict = dnsbl.score_client("2001:db8::1".parse().unwrap()).await;
    assert_eq!(verdict.score, 1, "{verdict:?}");
    assert_eq!(verdict.hits[0].code, code(3));
    assert_eq!(dns.queries(), [format!("{V6_CLIENT_LABELS}.zen.test. A")]);
}

#[tokio::test]
async fn ipv4_mapped_client_is_asked_as_ipv4() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test"], 1);
    let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
    let verdict = dnsbl.score_client(mapped).await;
    assert!(verdict.blocks(1));
    assert!(verdict.reply(mapped).to_string().contains("[192.0.2.10]"));
}

#[tokio::test]
async fn rhsbl_lists_the_sender_domain() {
    let dns = lists().await;
    let dnsbl = dnsbl(&dns, &["zen.test"], 1);
    let hit = dnsbl.listed_domain("Spam.Example.").await.expect("listed");
    assert_eq!(
        hit,
        DnsblHit {
            zone: "dbl.test".to_owned(),
            code: Ipv4Addr::new(127, 0, 1, 2),
            weight: 1
        }
    );
    assert_eq!(
        hit.sender_reply("bob@spam.example").to_string(),
        "554 5.7.1 <bob@spam.example>: Sender address rejected: blocked using dbl.test"
    );
    assert_eq!(dnsbl.listed_domain("clean.example").await, None);
    assert_eq!(dnsbl.listed_domain("[192.0.2.1]").await, None);
    assert_eq!(
        dns.queries(),
        ["spam.example.dbl.test. A", "clean.example.dbl.test. A"]
    );
}

#[tokio::test]
async fn rhsbl_timeout_is_not_a_listing() {
    let silent = SilentDns::start().await;
    let dnsbl = Dnsbl::new(&config(&[], 1), &resolver(silent.addr, TIMEOUT), TIMEOUT);
    assert_eq!(dnsbl.listed_domain("spam.example").await, None);
}

#[tokio::test]
async fn no_sites_means_no_queries() {
    let dns = lists().await;
    let dnsbl = Dnsbl::new(
        &DnsblConfig::default(),
        &resolver(dns.addr, Duration::from_secs(2)),
        TIMEOUT,
    );
    let verdict = dnsbl.score_client(client(10)).await;
    assert!(!verdict.blocks(1));
    assert_eq!(dnsbl.listed_domain("spam.example").await, None);
    assert_eq!(dns.query_count(), 0);
}

#[tokio::test]
async fn zero_cache_entries_turns_the_cache_off() {
    let dns = lists().await;
    let config = DnsblConfig {
        cache_entries: 0,
        ..config(&["zen.test"], 1)
    };
    let dnsbl = Dnsbl::new(
        &config,
        &resolver(dns.addr, Duration::from_secs(2)),
        TIMEOUT,
    );
    dnsbl.score_client(client(10)).await;
    assert!(!dnsbl.score_client(client(10)).await.from_cache);
    assert_eq!(dns.query_count(), 2);
}

#[test]
fn reply_names_the_lists_that_reached_the_threshold() {
    let hit = |zone: &str, weight| DnsblHit {
        zone: zone.to_owned(),
        code: code(2),
        weight,
    };
    let mut verdict = DnsblVerdict {
        score: 4,
        hits: vec![hit("small.test", 1), hit("big.test", 3)],
        failed: Vec::new(),
        from_cache: false,
        threshold: 3,
    };
    let text = |v: &DnsblVerdict| v.reply(client(1)).lines[0].to_string();
    // The heaviest list reaches the threshold alone.
    assert_eq!(
        text(&verdict),
        "Service unavailable; Client host [192.0.2.1] blocked using big.test"
    );
    verdict.threshold = 4;
    assert_eq!(
        text(&verdict),
        "Service unavailable; Client host [192.0.2.1] blocked using big.test, small.test"
    );
    // An allowlist's negative weight must be made up by more lists.
    verdict.threshold = 3;
    verdict.hits.push(hit("allow.test", -1));
    verdict.score = 3;
    assert!(text(&verdict).ends_with("blocked using big.test, small.test"));
}
