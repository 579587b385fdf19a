//! `reject_unknown_sender_domain` and `reject_unknown_client_hostname` against a real
//! DNS server (mxfleet-testkit's `TestDns`, in-process), and against one that never
//! answers (`SilentDns`) for the temporary cases.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use mxfleet_smtp::checks::dns::{CheckResolver, CheckResolverOptions};
use mxfleet_smtp::checks::sender::{
    ClientHostnameStatus, SenderDomainStatus, client_hostname_reply, client_hostname_status,
    sender_domain_reply, sender_domain_status,
};
use mxfleet_testkit::dns::{SilentDns, TestDns, Zone};

const SILENT_TIMEOUT: Duration = Duration::from_millis(300);

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
}

/// `2001:db8::40`'s nibbles under `8.b.d.0.1.0.0.2.ip6.arpa`.
const V6_40_LABELS: &str = "0.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0";

async fn dns() -> TestDns {
    TestDns::builder()
        .zone(
            Zone::new("example.test")
                .mx("mx-only", 10, "mail.example.test.")
                .a("mail", v4(5))
                .a("a-only", v4(6))
                .aaaa("v6-only", v6(6))
                .mx("null", 0, ".")
                .txt("txt-only", "v=spf1 -all")
                .mx("dangling-mx", 10, "nowhere.example.test.")
                .a("good", v4(40))
                .aaaa("good", v6(0x40))
                .a("liar", v4(99))
                .a("real", v4(43))
                .a("other", v4(99)),
        )
        .zone(
            Zone::new("2.0.192.in-addr.arpa")
                .ptr("40", "good.example.test.")
                .ptr("41", "liar.example.test.")
                .ptr("43", "other.example.test.")
                .ptr("43", "real.example.test.")
                .ptr("44", "host.broken.test.")
                .ptr("45", "192.0.2.45."),
        )
        .zone(Zone::new("8.b.d.0.1.0.0.2.ip6.arpa").ptr(V6_40_LABELS, "good.example.test."))
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

async fn sender_status(domain: &str) -> SenderDomainStatus {
    let dns = dns().await;
    sender_domain_status(&resolver(dns.addr, Duration::from_secs(2)), domain).await
}

async fn hostname_status(ip: IpAddr) -> ClientHostnameStatus {
    let dns = dns().await;
    client_hostname_status(&resolver(dns.addr, Duration::from_secs(2)), ip).await
}

#[tokio::test]
async fn sender_domain_with_an_mx_exists() {
    assert_eq!(
        sender_status("mx-only.example.test").await,
        SenderDomainStatus::Exists
    );
    // What the MX points at is delivery's business, not this check's.
    assert_eq!(
        sender_status("dangling-mx.example.test").await,
        SenderDomainStatus::Exists
    );
}

#[tokio::test]
async fn sender_domain_with_only_an_address_exists() {
    assert_eq!(
        sender_status("a-only.example.test").await,
        SenderDomainStatus::Exists
    );
    assert_eq!(
        sender_status("V6-Only.Example.Test.").await,
        SenderDomainStatus::Exists
    );
}

#[tokio::test]
async fn sender_domain_without_mx_or_address_is_not_found() {
    assert_eq!(
        sender_status("nope.example.test").await,
        SenderDomainStatus::NotFound
    );
    assert_eq!(
        sender_status("txt-only.example.test").await,
        SenderDomainStatus::NotFound
    );
    assert_eq!(
        sender_status("bad..name").await,
        SenderDomainStatus::NotFound
    );
}

#[tokio::test]
async fn nxdomain_sender_is_not_asked_for_addresses() {
    let dns = dns().await;
    let resolver = resolver(dns.addr, Duration::from_secs(2));
    sender_domain_status(&resolver, "nope.example.test").await;
    assert_eq!(dns.queries(), ["nope.example.test. MX"]);
}

#[tokio::test]
async fn null_mx_sender_domain_accepts_no_mail() {
    let status = sender_status("null.example.test").await;
    assert_eq!(status, SenderDomainStatus::NullMx);
    let reply = sender_domain_reply(&status, "a@null.example.test", "null.example.test", 450);
    assert_eq!(
        reply.expect("refused").to_string(),
        "550 5.7.27 <a@null.example.test>: Sender address rejected: Domain null.example.test does not accept mail (nullMX)"
    );
}

#[tokio::test]
async fn address_literal_sender_domain_exists() {
    let silent = SilentDns::start().await;
    let resolver = resolver(silent.addr, SILENT_TIMEOUT);
    assert_eq!(
        sender_domain_status(&resolver, "[192.0.2.1]").await,
        SenderDomainStatus::Exists
    );
}

#[tokio::test]
async fn sender_domain_lookup_timeout_is_temporary_and_defers() {
    let silent = SilentDns::start().await;
    let resolver = resolver(silent.addr, SILENT_TIMEOUT);
    let status = sender_domain_status(&resolver, "example.test").await;
    let SenderDomainStatus::Temporary(cause) = &status else {
        panic!("expected Temporary, got {status:?}");
    };
    assert!(cause.contains("timed out"), "{cause}");
    let reply = sender_domain_reply(&status, "a@example.test", "example.test", 550);
    assert_eq!(
        reply.expect("deferred").to_string(),
        "450 4.1.8 <a@example.test>: Sender address rejected: Domain not found"
    );
}

#[tokio::test]
async fn sender_domain_servfail_is_temporary() {
    let status = sender_status("broken.test").await;
    assert!(
        matches!(status, SenderDomainStatus::Temporary(_)),
        "{status:?}"
    );
}

#[tokio::test]
async fn forward_confirmed_reverse_dns_is_verified() {
    assert_eq!(
        hostname_status(IpAddr::V4(v4(40))).await,
        ClientHostnameStatus::Verified("good.example.test".to_owned())
    );
    assert_eq!(
        hostname_status(IpAddr::V6(v6(0x40))).await,
        ClientHostnameStatus::Verified("good.example.test".to_owned())
    );
}

#[tokio::test]
async fn any_of_several_ptr_names_may_verify() {
    assert_eq!(
        hostname_status(IpAddr::V4(v4(43))).await,
        ClientHostnameStatus::Verified("real.example.test".to_owned())
    );
}

#[tokio::test]
async fn ptr_name_resolving_elsewhere_is_a_mismatch() {
    let status = hostname_status(IpAddr::V4(v4(41))).await;
    assert_eq!(
        status,
        ClientHostnameStatus::Mismatch(vec!["liar.example.test".to_owned()])
    );
    let ip = IpAddr::V4(v4(41));
    assert_eq!(
        client_hostname_reply(&status, ip, 550)
            .expect("refused")
            .to_string(),
        "550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.41]"
    );
}

#[tokio::test]
async fn address_without_ptr_has_no_hostname() {
    let status = hostname_status(IpAddr::V4(v4(42))).await;
    assert_eq!(status, ClientHostnameStatus::NoPtr);
    // A PTR that is just the address again proves nothing either.
    assert_eq!(
        hostname_status(IpAddr::V4(v4(45))).await,
        ClientHostnameStatus::NoPtr
    );
    let reply = client_hostname_reply(&status, IpAddr::V4(v4(42)), 450);
    assert_eq!(
        reply.expect("refused").to_string(),
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.42]"
    );
}

#[tokio::test]
async fn forward_lookup_failure_is_temporary() {
    let status = hostname_status(IpAddr::V4(v4(44))).await;
    assert!(
        matches!(status, ClientHostnameStatus::Temporary(_)),
        "{status:?}"
    );
}

#[tokio::test]
async fn ptr_timeout_is_temporary_and_defers() {
    let silent = SilentDns::start().await;
    let resolver = resolver(silent.addr, SILENT_TIMEOUT);
    let ip = IpAddr::V4(v4(40));
    let status = client_hostname_status(&resolver, ip).await;
    assert!(
        matches!(status, ClientHostnameStatus::Temporary(_)),
        "{status:?}"
    );
    assert_eq!(
        client_hostname_reply(&status, ip, 550)
            .expect("deferred")
            .to_string(),
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.40]"
    );
}
