//! Next-hop routing against a real DNS server: mxfleet-testkit's `TestDns` (hickory-server
//! in-process on ephemeral UDP and TCP ports) serves the authoritative zone
//! `example.test.` built below, and answers SERVFAIL for everything under
//! `broken.test.`. Each test gets its own server and resolver, so no answer is cached
//! across tests.
//!
//! The fleet's identity in every test: host name `backup.example.test`, address
//! 127.0.0.20.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_server::proto::rr::{Name, RData};
use mxfleet_delivery::route::{
    DnsError, DnsQuery, HickoryOptions, HickoryResolver, HostPort, NextHop, NextHopHost,
    NextHopParseError, OwnIdentity, Route, RouteError, Router,
};
use mxfleet_delivery::{ConnectTarget, Severity};
use mxfleet_testkit::dns::{SilentDns, TestDns, Zone};

const OWN_HOSTNAME: &str = "backup.example.test";
const OWN_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);

// ---------------------------------------------------------------------------
// The DNS fixture
// ---------------------------------------------------------------------------

/// Every record of `example.test.`, as (owner relative to the zone, data). The SOA and
/// the NS record (`ns.example.test.`) come with the testkit's zone.
fn zone_records() -> Vec<(&'static str, RData)> {
    let a = |last: u8| RData::A(A(Ipv4Addr::new(127, 0, 0, last)));
    let mx = |preference: u16, exchange: &str| {
        RData::MX(MX::new(
            preference,
            Name::from_ascii(exchange).expect("exchange name"),
        ))
    };
    vec![
        ("ns", a(53)),
        ("mx1", a(10)),
        ("backup", a(20)),
        ("other", a(30)),
        ("far", a(40)),
        ("implicit", a(50)),
        ("alias", a(20)),
        ("dual", a(60)),
        (
            "dual",
            RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x60))),
        ),
        (
            "nodata",
            RData::TXT(TXT::new(vec!["v=spf1 -all".to_owned()])),
        ),
        // The fleet is the backup MX.
        ("primary", mx(10, "mx1.example.test.")),
        ("primary", mx(20, "backup.example.test.")),
        // The fleet is the best MX, by name.
        ("loop", mx(10, "backup.example.test.")),
        ("loop", mx(20, "other.example.test.")),
        // The fleet is the best MX, by address under another name.
        ("alias-loop", mx(10, "alias.example.test.")),
        ("alias-loop", mx(20, "other.example.test.")),
        // Only the MX strictly better than the fleet's alias survives.
        ("below-alias", mx(5, "mx1.example.test.")),
        ("below-alias", mx(10, "alias.example.test.")),
        ("below-alias", mx(20, "other.example.test.")),
        ("equal", mx(30, "far.example.test.")),
        ("equal", mx(10, "mx1.example.test.")),
        ("equal", mx(10, "other.example.test.")),
        ("null", mx(0, ".")),
        ("dangling", mx(10, "missing.example.test.")),
        ("dangling", mx(20, "mx1.example.test.")),
        ("dangling-only", mx(10, "missing.example.test.")),
        ("dual-mx", mx(10, "dual.example.test.")),
        ("servfail-exchange", mx(10, "mx.broken.test.")),
        ("servfail-exchange", mx(20, "other.example.test.")),
    ]
}

async fn start_dns_server() -> TestDns {
    let zone = zone_records()
        .into_iter()
        .fold(Zone::new("example.test"), |zone, (owner, data)| {
            zone.record(owner, data)
        });
    TestDns::builder()
        .zone(zone)
        .servfail_zone("broken.test")
        .start()
        .await
}

fn fast_options() -> HickoryOptions {
    HickoryOptions {
        timeout: Duration::from_secs(2),
        attempts: 1,
        cache_size: 0,
    }
}

fn own_identity() -> OwnIdentity {
    OwnIdentity {
        hostnames: vec![OWN_HOSTNAME.to_owned()],
        addresses: vec![IpAddr::V4(OWN_ADDRESS)],
    }
}

/// A DNS server, and a router whose resolver asks only that server.
struct Fixture {
    router: Router,
    _dns: TestDns,
}

async fn fixture() -> Fixture {
    let dns = start_dns_server().await;
    let resolver =
        HickoryResolver::from_nameservers(&[dns.addr], &fast_options()).expect("resolver");
    let router = Router::new(Arc::new(resolver), own_identity()).with_shuffle_seed(42);
    Fixture { router, _dns: dns }
}

impl Fixture {
    async fn mx(&self, domain: &str) -> Result<Vec<ConnectTarget>, RouteError> {
        self.router.route(domain, &NextHop::Mx).await
    }

    async fn mx_targets(&self, domain: &str) -> Vec<(String, SocketAddr, Option<u16>)> {
        let targets = self
            .mx(domain)
            .await
            .unwrap_or_else(|e| panic!("route {domain}: {e}"));
        targets
            .into_iter()
            .map(|t| (t.host, t.addr, t.preference))
            .collect()
    }
}

fn smtp(last: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 25))
}

fn target(host: &str, last: u8, preference: u16) -> (String, SocketAddr, Option<u16>) {
    (host.to_owned(), smtp(last), Some(preference))
}

// ---------------------------------------------------------------------------
// MX routing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn fleet_as_backup_mx_routes_to_the_primary_only() {
    let f = fixture().await;
    assert_eq!(
        f.mx_targets("primary.example.test").await,
        vec![target("mx1.example.test", 10, 10)]
    );
}

#[tokio::test]
async fn fleet_as_best_mx_loops_back() {
    let f = fixture().await;
    let error = f.mx("loop.example.test").await.expect_err("loop");
    assert_eq!(
        error,
        RouteError::MxLoopsBack {
            domain: "loop.example.test".to_owned(),
            exchange: OWN_HOSTNAME.to_owned(),
            preference: 10,
        }
    );
    assert_eq!(error.severity(), Severity::Temporary);
    assert_eq!(error.status().status, "4.4.6");
    assert!(
        error.to_string().contains("loops back to myself"),
        "{error}"
    );
}

#[tokio::test]
async fn own_address_under_another_name_loops_back() {
    let f = fixture().await;
    let error = f.mx("alias-loop.example.test").await.expect_err("loop");
    assert_eq!(
        error,
        RouteError::MxLoopsBack {
            domain: "alias-loop.example.test".to_owned(),
            exchange: "alias.example.test".to_owned(),
            preference: 10,
        }
    );
}

#[tokio::test]
async fn only_mx_strictly_better_than_own_address_are_used() {
    let f = fixture().await;
    assert_eq!(
        f.mx_targets("below-alias.example.test").await,
        vec![target("mx1.example.test", 10, 5)]
    );
}

#[tokio::test]
async fn implicit_mx_that_is_ourselves_loops_back() {
    let f = fixture().await;
    let error = f.mx(OWN_HOSTNAME).await.expect_err("loop");
    assert!(
        matches!(error, RouteError::MxLoopsBack { preference: 0, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn equal_preferences_are_both_kept_ahead_of_worse_ones() {
    let f = fixture().await;
    let targets = f.mx_targets("equal.example.test").await;
    assert_eq!(targets.len(), 3, "{targets:?}");
    let mut best: Vec<_> = targets[..2].to_vec();
    best.sort();
    assert_eq!(
        best,
        vec![
            target("mx1.example.test", 10, 10),
            target("other.example.test", 30, 10)
        ]
    );
    assert_eq!(targets[2], target("far.example.test", 40, 30));
}

#[tokio::test]
async fn equal_preference_order_follows_the_seed() {
    let dns = start_dns_server().await;
    let router = |seed| {
        let resolver = HickoryResolver::from_nameservers(&[dns.addr], &fast_options()).unwrap();
        Router::new(Arc::new(resolver), own_identity()).with_shuffle_seed(seed)
    };
    let first = router(3)
        .route("equal.example.test", &NextHop::Mx)
        .await
        .unwrap();
    let again = router(3)
        .route("equal.example.test", &NextHop::Mx)
        .await
        .unwrap();
    assert_eq!(first, again);
}

#[tokio::test]
async fn null_mx_is_permanent_5_1_10() {
    let f = fixture().await;
    let error = f.mx("null.example.test").await.expect_err("null MX");
    assert_eq!(
        error,
        RouteError::NullMx {
            domain: "null.example.test".to_owned()
        }
    );
    assert_eq!(error.severity(), Severity::Permanent);
    let status = error.status();
    assert_eq!((status.code, status.status), (556, "5.1.10"));
    assert_eq!(
        status.to_string(),
        "556 5.1.10 domain null.example.test does not accept mail (null MX)"
    );
}

#[tokio::test]
async fn no_mx_uses_the_domain_address_on_port_25() {
    let f = fixture().await;
    assert_eq!(
        f.mx_targets("implicit.example.test").await,
        vec![("implicit.example.test".to_owned(), smtp(50), None)]
    );
}

#[tokio::test]
async fn mx_port_comes_from_the_router() {
    let f = fixture().await;
    let router = f.router.with_mx_port(2525);
    let targets = router
        .route("implicit.example.test", &NextHop::Mx)
        .await
        .unwrap();
    assert_eq!(targets[0].addr.port(), 2525);
}

#[tokio::test]
async fn no_mx_and_no_address_is_permanent() {
    let f = fixture().await;
    let error = f.mx("nodata.example.test").await.expect_err("no mail host");
    assert_eq!(
        error,
        RouteError::NoMailHost {
            domain: "nodata.example.test".to_owned()
        }
    );
    assert_eq!(error.severity(), Severity::Permanent);
    assert_eq!(error.status().status, "5.4.4");
}

#[tokio::test]
async fn nxdomain_is_permanent_5_1_2() {
    let f = fixture().await;
    let error = f.mx("Nope.Example.Test.").await.expect_err("nxdomain");
    assert_eq!(
        error,
        RouteError::NoSuchDomain {
            domain: "nope.example.test".to_owned(),
            query: DnsQuery::Mx
        }
    );
    assert_eq!(error.severity(), Severity::Permanent);
    assert_eq!(error.status().status, "5.1.2");
}

#[tokio::test]
async fn servfail_is_temporary_4_4_3() {
    let f = fixture().await;
    let error = f.mx("broken.test").await.expect_err("servfail");
    let RouteError::DnsUnavailable {
        domain,
        query,
        cause,
    } = &error
    else {
        panic!("expected DnsUnavailable, got {error:?}");
    };
    assert_eq!((domain.as_str(), *query), ("broken.test", DnsQuery::Mx));
    assert!(
        matches!(cause, DnsError::ServerFailure { response_code, .. } if response_code == "Server Failure"),
        "{cause:?}"
    );
    assert_eq!(error.severity(), Severity::Temporary);
    assert_eq!(error.status().status, "4.4.3");
}

#[tokio::test]
async fn timeout_is_temporary() {
    // A "server" that takes queries on UDP and TCP and never answers.
    let silent_dns = SilentDns::start().await;
    let silent = silent_dns.addr;
    let options = HickoryOptions {
        timeout: Duration::from_millis(300),
        attempts: 0,
        cache_size: 0,
    };
    let resolver = HickoryResolver::from_nameservers(&[silent], &options).unwrap();
    let router = Router::new(Arc::new(resolver), own_identity());
    let error = router
        .route("example.test", &NextHop::Mx)
        .await
        .expect_err("timeout");
    assert!(
        matches!(
            &error,
            RouteError::DnsUnavailable {
                cause: DnsError::Timeout { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.severity(), Severity::Temporary);
    assert_eq!(error.status().status, "4.4.3");
}

#[tokio::test]
async fn unresolvable_exchange_is_skipped() {
    let f = fixture().await;
    assert_eq!(
        f.mx_targets("dangling.example.test").await,
        vec![target("mx1.example.test", 10, 20)]
    );
    assert_eq!(
        f.mx_targets("servfail-exchange.example.test").await,
        vec![target("other.example.test", 30, 20)]
    );
}

#[tokio::test]
async fn no_exchange_resolving_is_temporary() {
    let f = fixture().await;
    let error = f
        .mx("dangling-only.example.test")
        .await
        .expect_err("no host");
    assert!(matches!(&error, RouteError::NoHostResolved { failures, .. } if failures.len() == 1));
    assert_eq!(error.severity(), Severity::Temporary);
    assert_eq!(error.status().status, "4.4.4");
}

#[tokio::test]
async fn exchange_addresses_come_ipv4_first() {
    let f = fixture().await;
    let targets = f.mx_targets("dual-mx.example.test").await;
    let v6: IpAddr = "2001:db8::60".parse().unwrap();
    assert_eq!(
        targets,
        vec![
            target("dual.example.test", 60, 10),
            (
                "dual.example.test".to_owned(),
                SocketAddr::new(v6, 25),
                Some(10)
            ),
        ]
    );
}

// ---------------------------------------------------------------------------
// Explicit next hops and the fallback relay
// ---------------------------------------------------------------------------

#[tokio::test]
async fn explicit_hosts_keep_their_order() {
    let f = fixture().await;
    let hop = NextHop::parse("[192.0.2.7], [mx1.example.test]:2525").expect("parse");
    let targets = f
        .router
        .route("anything.example", &hop)
        .await
        .expect("route");
    let targets: Vec<_> = targets
        .into_iter()
        .map(|t| (t.host, t.addr, t.preference))
        .collect();
    assert_eq!(
        targets,
        vec![
            (
                "192.0.2.7".to_owned(),
                "192.0.2.7:25".parse().unwrap(),
                None
            ),
            (
                "mx1.example.test".to_owned(),
                "127.0.0.10:2525".parse().unwrap(),
                None
            ),
        ]
    );
}

#[tokio::test]
async fn explicit_host_is_not_looked_up_as_mx() {
    let f = fixture().await;
    // primary.example.test has MX records but no address: as an explicit host it
    // does not resolve, and is skipped.
    let hop = NextHop::parse("[primary.example.test] [mx1.example.test]").expect("parse");
    let targets = f
        .router
        .route("anything.example", &hop)
        .await
        .expect("route");
    assert_eq!(targets.len(), 1);
    assert_eq!(
        (targets[0].host.as_str(), targets[0].addr),
        ("mx1.example.test", smtp(10))
    );
}

#[tokio::test]
async fn explicit_hosts_that_all_fail_are_temporary() {
    let f = fixture().await;
    let hop = NextHop::parse("[missing.example.test], [mx.broken.test]").expect("parse");
    let error = f
        .router
        .route("anything.example", &hop)
        .await
        .expect_err("no host");
    let RouteError::NoHostResolved { failures, .. } = &error else {
        panic!("expected NoHostResolved, got {error:?}");
    };
    assert!(
        matches!(failures[0], DnsError::NxDomain { .. }),
        "{failures:?}"
    );
    assert!(
        matches!(failures[1], DnsError::ServerFailure { .. }),
        "{failures:?}"
    );
    assert_eq!(error.severity(), Severity::Temporary);
    assert_eq!(error.status().status, "4.4.3");
}

#[tokio::test]
async fn explicit_hop_to_our_own_address_is_allowed() {
    // A local content filter, e.g. Postfix's [127.0.0.1]:10025, is no loop.
    let f = fixture().await;
    let hop = NextHop::parse("[127.0.0.20]:10025").expect("parse");
    let targets = f
        .router
        .route("anything.example", &hop)
        .await
        .expect("route");
    assert_eq!(targets[0].addr, "127.0.0.20:10025".parse().unwrap());
}

#[tokio::test]
async fn fallback_relay_has_its_own_targets() {
    let f = fixture().await;
    let route = Route {
        primary: NextHop::Mx,
        fallback: Some(NextHop::parse("[other.example.test]").expect("parse")),
    };
    let fallback = f
        .router
        .route_fallback("primary.example.test", &route)
        .await;
    let targets = fallback.expect("has a fallback").expect("routes");
    assert_eq!(
        (targets[0].host.as_str(), targets[0].addr),
        ("other.example.test", smtp(30))
    );
    let no_fallback = Route::new(NextHop::Mx);
    assert!(
        f.router
            .route_fallback("primary.example.test", &no_fallback)
            .await
            .is_none()
    );
}

// ---------------------------------------------------------------------------
// The next-hop parser
// ---------------------------------------------------------------------------

fn host(name: &str, port: u16) -> HostPort {
    HostPort {
        host: NextHopHost::Name(name.to_owned()),
        port,
    }
}

fn ip(address: &str, port: u16) -> HostPort {
    HostPort {
        host: NextHopHost::Ip(address.parse().unwrap()),
        port,
    }
}

#[test]
fn parses_mx_and_host_lists() {
    assert_eq!(NextHop::parse("mx"), Ok(NextHop::Mx));
    assert_eq!(NextHop::parse(" MX "), Ok(NextHop::Mx));
    assert_eq!(
        NextHop::parse("[Mail.Example.com.]:2525"),
        Ok(NextHop::Explicit(vec![host("mail.example.com", 2525)]))
    );
    assert_eq!(
        NextHop::parse("[192.0.2.1], [ipv6:2001:db8::1]:587 [2001:db8::2]"),
        Ok(NextHop::Explicit(vec![
            ip("192.0.2.1", 25),
            ip("2001:db8::1", 587),
            ip("2001:db8::2", 25)
        ]))
    );
    assert_eq!(
        NextHop::parse_entries(["[a.example]", "[b.example]:26"]),
        Ok(NextHop::Explicit(vec![
            host("a.example", 25),
            host("b.example", 26)
        ]))
    );
}

#[test]
fn display_reads_back() {
    for text in [
        "mx",
        "[mail.example.com]:2525, [192.0.2.1]:25, [ipv6:2001:db8::1]:587",
    ] {
        let hop = NextHop::parse(text).unwrap();
        assert_eq!(hop.to_string(), text);
        assert_eq!(NextHop::parse(&hop.to_string()), Ok(hop));
    }
}

#[test]
fn parse_errors_carry_the_offending_text() {
    let entry = |text: &str| text.to_owned();
    let cases = [
        ("", NextHopParseError::Empty),
        (" , ", NextHopParseError::Empty),
        (
            "mail.example.com",
            NextHopParseError::MissingBrackets {
                entry: entry("mail.example.com"),
            },
        ),
        (
            "[mail.example.com",
            NextHopParseError::UnclosedBracket {
                entry: entry("[mail.example.com"),
            },
        ),
        (
            "[]:25",
            NextHopParseError::EmptyHost {
                entry: entry("[]:25"),
            },
        ),
        (
            "[a.example]:0",
            NextHopParseError::InvalidPort {
                entry: entry("[a.example]:0"),
                port: entry("0"),
            },
        ),
        (
            "[a.example]:smtp",
            NextHopParseError::InvalidPort {
                entry: entry("[a.example]:smtp"),
                port: entry("smtp"),
            },
        ),
        (
            "[a.example]:70000",
            NextHopParseError::InvalidPort {
                entry: entry("[a.example]:70000"),
                port: entry("70000"),
            },
        ),
        (
            "[a.example]25",
            NextHopParseError::TrailingText {
                entry: entry("[a.example]25"),
                rest: entry("25"),
            },
        ),
        (
            "[bad!host]",
            NextHopParseError::InvalidHost {
                entry: entry("[bad!host]"),
                host: entry("bad!host"),
            },
        ),
        (
            "[999.0.0.1]",
            NextHopParseError::InvalidHost {
                entry: entry("[999.0.0.1]"),
                host: entry("999.0.0.1"),
            },
        ),
        (
            "[ipv6:192.0.2.1]",
            NextHopParseError::InvalidHost {
                entry: entry("[ipv6:192.0.2.1]"),
                host: entry("ipv6:192.0.2.1"),
            },
        ),
        (
            "mx, [a.example]",
            NextHopParseError::MxInList {
                text: entry("mx, [a.example]"),
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(NextHop::parse(text), Err(expected), "parsing {text:?}");
    }
    let message = NextHop::parse("mail.example.com").unwrap_err().to_string();
    assert!(message.contains("\"mail.example.com\""), "{message}");
}
