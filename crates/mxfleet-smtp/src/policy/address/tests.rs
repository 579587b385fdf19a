//! `parse_path` table: every rule, in the order the parser applies them.

use super::*;

fn ok(local: &str, domain: &str) -> Result<Mailbox, AddressError> {
    Ok(Mailbox {
        local: local.to_owned(),
        domain: domain.to_owned(),
    })
}

#[test]
fn valid_addresses_parse_and_normalise() {
    let table: &[(&str, Result<Mailbox, AddressError>)] = &[
        ("user@example.org", ok("user", "example.org")),
        ("<user@example.org>", ok("user", "example.org")),
        ("User.Name@Example.ORG", ok("User.Name", "example.org")),
        (
            "first.last+tag@mx.example.org",
            ok("first.last+tag", "mx.example.org"),
        ),
        ("o'brien@example.org", ok("o'brien", "example.org")),
        ("foo#bar@example.org", ok("foo#bar", "example.org")),
        (
            "{x}=y?z^_`|~@example.org",
            ok("{x}=y?z^_`|~", "example.org"),
        ),
        ("john..doe.@docomo.ne.jp", ok("john..doe.", "docomo.ne.jp")),
        (
            "\"john doe\"@example.org",
            ok("\"john doe\"", "example.org"),
        ),
        ("\"john\"@example.org", ok("john", "example.org")),
        ("\"a\\\"b\"@example.org", ok("\"a\\\"b\"", "example.org")),
        ("\"a,b\"@example.org", ok("\"a,b\"", "example.org")),
        ("üser@bücher.example", ok("üser", "bücher.example")),
        ("用户@例子.广告", ok("用户", "例子.广告")),
        ("user@BÜCHER.example", ok("user", "bücher.example")),
        (
            "user@xn--bcher-kva.example",
            ok("user", "xn--bcher-kva.example"),
        ),
    ];
    for (raw, expected) in table {
        assert_eq!(parse_path(raw), *expected, "{raw:?}");
    }
}

#[test]
fn each_broken_rule_has_its_own_error() {
    use AddressError as E;
    let s = String::from;
    let local_65 = format!("{}@example.org", "a".repeat(65));
    let local_64 = format!("{}@example.org", "a".repeat(64));
    let quoted_65 = format!("\"{}\"@example.org", "a b".repeat(21));
    let addr_254 = format!(
        "{}@{}.example.org",
        "a".repeat(50),
        vec!["b".repeat(63); 3].join(".")
    );
    let addr_255 = format!("a{addr_254}");
    let label_64 = format!("user@{}.org", "a".repeat(64));
    let table: Vec<(&str, AddressError)> = vec![
        ("", E::Empty(s(""))),
        ("<>", E::Empty(s("<>"))),
        (
            "<user@example.org",
            E::UnbalancedBrackets(s("<user@example.org")),
        ),
        (
            "user@example.org>",
            E::UnbalancedBrackets(s("user@example.org>")),
        ),
        (
            "user @example.org",
            E::ControlOrSpace(s("user @example.org")),
        ),
        (
            " user@example.org",
            E::ControlOrSpace(s(" user@example.org")),
        ),
        (
            "user@exa mple.org",
            E::ControlOrSpace(s("user@exa mple.org")),
        ),
        (
            "user\t@example.org",
            E::ControlOrSpace(s("user\t@example.org")),
        ),
        (
            "us\ner@example.org",
            E::ControlOrSpace(s("us\ner@example.org")),
        ),
        (
            "\"a\rb\"@example.org",
            E::ControlOrSpace(s("\"a\rb\"@example.org")),
        ),
        (
            "user@example.org\0",
            E::ControlOrSpace(s("user@example.org\0")),
        ),
        (
            "u\u{7f}@example.org",
            E::ControlOrSpace(s("u\u{7f}@example.org")),
        ),
        (&addr_255, E::TooLong(addr_255.clone())),
        (
            "@a,@b:user@c.example",
            E::SourceRoute(s("@a,@b:user@c.example")),
        ),
        (
            "@a.example:b@c.example",
            E::SourceRoute(s("@a.example:b@c.example")),
        ),
        (
            "<@a.example:b@c.example>",
            E::SourceRoute(s("<@a.example:b@c.example>")),
        ),
        (
            "@example.org",
            E::InvalidLocalPart(s("@example.org"), "empty local part"),
        ),
        (
            "user%victim.example@example.org",
            E::PercentHack(s("user%victim.example@example.org")),
        ),
        (
            "user%victim.example",
            E::PercentHack(s("user%victim.example")),
        ),
        (
            "victim.example!user@example.org",
            E::BangPath(s("victim.example!user@example.org")),
        ),
        ("victim!user", E::BangPath(s("victim!user"))),
        (
            "\"user@victim.example\"@example.org",
            E::QuotedRouting(s("\"user@victim.example\"@example.org")),
        ),
        (
            "\"user%victim\"@example.org",
            E::QuotedRouting(s("\"user%victim\"@example.org")),
        ),
        (
            "\"victim!user\"@example.org",
            E::QuotedRouting(s("\"victim!user\"@example.org")),
        ),
        (
            "\"user\\@victim\"@example.org",
            E::QuotedRouting(s("\"user\\@victim\"@example.org")),
        ),
        (
            "\"user@victim.example\"",
            E::QuotedRouting(s("\"user@victim.example\"")),
        ),
        (
            "us\"er@example.org",
            E::InvalidLocalPart(
                s("us\"er@example.org"),
                "character not allowed outside quotes",
            ),
        ),
        (
            "us,er@example.org",
            E::InvalidLocalPart(
                s("us,er@example.org"),
                "character not allowed outside quotes",
            ),
        ),
        (
            "us\\er@example.org",
            E::InvalidLocalPart(
                s("us\\er@example.org"),
                "character not allowed outside quotes",
            ),
        ),
        (
            "\"user@example.org",
            E::InvalidLocalPart(s("\"user@example.org"), "unterminated quotes"),
        ),
        (
            "\"user\"x@example.org",
            E::InvalidLocalPart(s("\"user\"x@example.org"), "text after the closing quote"),
        ),
        (
            "\"user",
            E::InvalidLocalPart(s("\"user"), "unterminated quotes"),
        ),
        (
            "\"\"@example.org",
            E::InvalidLocalPart(s("\"\"@example.org"), "empty local part"),
        ),
        (
            "\"a\\é\"@example.org",
            E::InvalidLocalPart(s("\"a\\é\"@example.org"), "bad quoted pair"),
        ),
        (&local_65, E::LocalPartTooLong(local_65.clone())),
        (&quoted_65, E::LocalPartTooLong(quoted_65.clone())),
        (
            "user@victim.example@example.org",
            E::MultipleAt(s("user@victim.example@example.org")),
        ),
        (
            "\"user\"@victim@example.org",
            E::MultipleAt(s("\"user\"@victim@example.org")),
        ),
        ("user@[192.0.2.1]", E::IpLiteral(s("user@[192.0.2.1]"))),
        (
            "user@[IPv6:2001:db8::1]",
            E::IpLiteral(s("user@[IPv6:2001:db8::1]")),
        ),
        ("user@[example.org]", E::IpLiteral(s("user@[example.org]"))),
        ("user@192.0.2.1", E::IpLiteral(s("user@192.0.2.1"))),
        ("user@example.org.", E::TrailingDot(s("user@example.org."))),
        (
            "<user@example.org.>",
            E::TrailingDot(s("<user@example.org.>")),
        ),
        ("user", E::NotFqdn(s("user"))),
        ("postmaster", E::NotFqdn(s("postmaster"))),
        ("\"john doe\"", E::NotFqdn(s("\"john doe\""))),
        ("user@localhost", E::NotFqdn(s("user@localhost"))),
        ("user@", E::InvalidDomain(s("user@"), "empty domain")),
        (
            "user@example..org",
            E::InvalidDomain(s("user@example..org"), "empty label in domain"),
        ),
        (
            "user@.example.org",
            E::InvalidDomain(s("user@.example.org"), "empty label in domain"),
        ),
        (
            "user@exa_mple.org",
            E::InvalidDomain(s("user@exa_mple.org"), "character not allowed in domain"),
        ),
        (
            "user@-example.org",
            E::InvalidDomain(
                s("user@-example.org"),
                "hyphen at the start or end of a domain label",
            ),
        ),
        (
            "user@example.123",
            E::InvalidDomain(s("user@example.123"), "all-numeric top-level domain"),
        ),
        (
            &label_64,
            E::InvalidDomain(label_64.clone(), "domain label longer than 63 octets"),
        ),
    ];
    for (raw, expected) in table {
        assert_eq!(parse_path(raw), Err(expected), "{raw:?}");
    }
    assert!(parse_path(&local_64).is_ok());
    assert_eq!((addr_254.len(), parse_path(&addr_254).is_ok()), (254, true));
}

#[test]
fn errors_classify_into_syntax_unqualified_and_routing() {
    let table: &[(&str, AddressFault)] = &[
        ("", AddressFault::Syntax),
        ("user@exa mple.org", AddressFault::Syntax),
        ("us,er@example.org", AddressFault::Syntax),
        ("user@exa_mple.org", AddressFault::Syntax),
        ("user@localhost", AddressFault::NotFullyQualified),
        ("user", AddressFault::NotFullyQualified),
        ("@a:b@c.example", AddressFault::Routing),
        ("a%b@example.org", AddressFault::Routing),
        ("a!b@example.org", AddressFault::Routing),
        ("\"a@b\"@example.org", AddressFault::Routing),
        ("a@b@example.org", AddressFault::Routing),
        ("a@[192.0.2.1]", AddressFault::Routing),
        ("a@example.org.", AddressFault::Routing),
    ];
    for (raw, fault) in table {
        assert_eq!(parse_path(raw).unwrap_err().fault(), *fault, "{raw:?}");
    }
}

#[test]
fn error_display_quotes_the_input_and_names_the_rule() {
    let error = parse_path("user%victim.example@example.org").unwrap_err();
    assert_eq!(
        error.to_string(),
        "\"user%victim.example@example.org\": % in local part"
    );
    assert_eq!(error.input(), "user%victim.example@example.org");
    let error = parse_path("a\r\nb@example.org").unwrap_err();
    assert_eq!(
        error.to_string(),
        "\"a\\r\\nb@example.org\": control character or space outside quotes"
    );
}

#[test]
fn mailbox_displays_as_an_address_and_knows_if_it_needs_smtputf8() {
    let mailbox = parse_path("<\"john doe\"@Example.org>").unwrap();
    assert_eq!(mailbox.to_string(), "\"john doe\"@example.org");
    assert!(mailbox.is_ascii());
    assert!(!parse_path("üser@example.org").unwrap().is_ascii());
}

#[test]
fn parse_domain_uses_the_address_rules() {
    assert_eq!(parse_domain("Example.ORG"), Ok("example.org".to_owned()));
    assert!(matches!(
        parse_domain("example.org."),
        Err(AddressError::TrailingDot(_))
    ));
    assert!(matches!(
        parse_domain("localhost"),
        Err(AddressError::NotFqdn(_))
    ));
    assert!(matches!(
        parse_domain("[192.0.2.1]"),
        Err(AddressError::IpLiteral(_))
    ));
}
