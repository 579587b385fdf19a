//! The `postscreen_dnsbl_sites` syntax, `zone[=filter][*weight]`, table-driven: what
//! parses (and what its filter then accepts), and what is refused with which message.

use std::net::Ipv4Addr;

use mxfleet_smtp::checks::dnsbl::DnsblSite;

fn parse(spec: &str) -> DnsblSite {
    spec.parse()
        .unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"))
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("test address")
}

/// (spec, zone, weight, answers accepted, answers refused)
type GoodCase = (
    &'static str,
    &'static str,
    i32,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn good_specs_parse_into_zone_filter_and_weight() {
    let cases: &[GoodCase] = &[
        (
            "zen.spamhaus.org",
            "zen.spamhaus.org",
            1,
            &["127.0.0.2", "127.0.0.11", "127.1.2.3"],
            &["127.255.255.254", "10.0.0.1"],
        ),
        (
            "Zen.Spamhaus.ORG.",
            "zen.spamhaus.org",
            1,
            &["127.0.0.2"],
            &[],
        ),
        (
            "zen.spamhaus.org=127.0.0.2",
            "zen.spamhaus.org",
            1,
            &["127.0.0.2"],
            &["127.0.0.3", "127.0.1.2"],
        ),
        (
            "zen.spamhaus.org=127.0.0.[2..11]",
            "zen.spamhaus.org",
            1,
            &["127.0.0.2", "127.0.0.11"],
            &["127.0.0.1", "127.0.0.12"],
        ),
        (
            "b.example=127.0.[0..254].[2;4;6]",
            "b.example",
            1,
            &["127.0.0.2", "127.0.254.6"],
            &["127.0.255.2", "127.0.0.3"],
        ),
        (
            "c.example=127.0.0.[1;3..5]",
            "c.example",
            1,
            &["127.0.0.1", "127.0.0.4"],
            &["127.0.0.2", "127.0.0.6"],
        ),
        ("bl.example*3", "bl.example", 3, &["127.0.0.2"], &[]),
        (
            "zen.spamhaus.org=127.0.0.[2..11]*3",
            "zen.spamhaus.org",
            3,
            &["127.0.0.3"],
            &["127.0.0.12"],
        ),
        (
            "list.dnswl.org=127.0.[0..255].[1..3]*-2",
            "list.dnswl.org",
            -2,
            &["127.0.15.1", "127.0.5.3"],
            &["127.0.5.0", "127.0.5.255"],
        ),
        (
            "_under.score-zone.example",
            "_under.score-zone.example",
            1,
            &[],
            &[],
        ),
    ];
    for (spec, zone, weight, accepted, refused) in cases {
        let site = parse(spec);
        assert_eq!(
            (site.zone.as_str(), site.weight),
            (*zone, *weight),
            "{spec}"
        );
        for answer in *accepted {
            assert!(site.accepts(ip(answer)), "{spec} should accept {answer}");
        }
        for answer in *refused {
            assert!(!site.accepts(ip(answer)), "{spec} should refuse {answer}");
        }
    }
}

#[test]
fn sites_display_in_their_own_syntax() {
    for spec in [
        "zen.spamhaus.org",
        "zen.spamhaus.org=127.0.0.2",
        "zen.spamhaus.org=127.0.0.[2..11]*3",
        "b.example=127.0.[0..254].[2;4;6]",
        "list.dnswl.org=127.0.[0..255].[1..3]*-2",
    ] {
        let site = parse(spec);
        assert_eq!(site.to_string(), spec);
        assert_eq!(parse(&site.to_string()), site);
    }
}

#[test]
fn bad_specs_are_refused_with_the_offending_part() {
    // (spec, a part of the message)
    let cases = [
        ("", "is not a DNS zone name"),
        ("*3", "is not a DNS zone name"),
        ("=127.0.0.2", "is not a DNS zone name"),
        ("bad..zone", "is not a DNS zone name"),
        ("-bad.example", "is not a DNS zone name"),
        ("bad!.example", "is not a DNS zone name"),
        ("zen example", "white space"),
        ("zen.example*", "the weight \"\" is not an integer"),
        ("zen.example*x", "the weight \"x\" is not an integer"),
        ("zen.example*1.5", "the weight \"1.5\" is not an integer"),
        ("zen.example*3*4", "the weight \"3*4\" is not an integer"),
        ("zen.example=", "needs four octets"),
        ("zen.example=127.0.0", "needs four octets"),
        ("zen.example=127.0.0.2.1", "needs four octets"),
        ("zen.example=127.0.0.256", "256 is not an octet"),
        ("zen.example=127.0.0.[2..300]", "300 is not an octet"),
        (
            "zen.example=127.0.0.[11..2]",
            "the range \"11..2\" runs backwards",
        ),
        ("zen.example=127.0.0.[2", "has no closing ]"),
        ("zen.example=127.0.0.[]", "\"\" is not a number"),
        ("zen.example=127.0.0.[2;;4]", "\"\" is not a number"),
        ("zen.example=127.0.0.x", "\"x\" is not a number"),
        ("zen.example=127.0.0.+2", "\"+2\" is not a number"),
    ];
    for (spec, expected) in cases {
        let message = spec
            .parse::<DnsblSite>()
            .expect_err(&format!("{spec:?} should be refused"));
        assert!(
            message.contains(expected),
            "{spec:?}: {message:?} should mention {expected:?}"
        );
        assert!(message.contains(&format!("{spec:?}")), "{message}");
    }
}
