//! RelayPolicy decisions: every reply code and enhanced status code, as a transcript.

use super::*;
use crate::policy::parse_recipient_list;

fn policy() -> RelayPolicy {
    let listed = parse_recipient_list("alice@example.org\nBob@example.org\n", "example.org");
    RelayPolicy::new(vec![
        ("Example.ORG".to_owned(), listed.unwrap()),
        ("catchall.example".to_owned(), RecipientRule::CatchAll),
        (
            "Hand.Example".to_owned(),
            RecipientRule::Listed(["Carol".to_owned()].into_iter().collect()),
        ),
    ])
}

/// `(code, status, text)` of a refusal, or `(250, "", mailbox)` when accepted.
fn outcome<T: std::fmt::Display>(result: Result<T, Reply>) -> (u16, &'static str, String) {
    match result {
        Ok(value) => (250, "", value.to_string()),
        Err(reply) => (reply.code, reply.status, reply.lines.join("\n")),
    }
}

const DENIED: &str = "Relay access denied";
const UNKNOWN: &str = "Recipient address rejected: User unknown in relay recipient table";
const RCPT_FQDN: &str = "Recipient address rejected: need fully-qualified address";
const RCPT_SYNTAX: &str = "Recipient address rejected: Bad recipient address syntax";

#[test]
fn recipients() {
    let policy = policy();
    let table: &[(&str, u16, &str, &str)] = &[
        // Accepted: listed users (any case), catch-all, domain in any case.
        ("alice@example.org", 250, "", "alice@example.org"),
        ("<ALICE@Example.Org>", 250, "", "ALICE@example.org"),
        ("bob@example.org", 250, "", "bob@example.org"),
        ("carol@hand.example", 250, "", "carol@hand.example"),
        (
            "anyone@catchall.example",
            250,
            "",
            "anyone@catchall.example",
        ),
        (
            "Anyone@CATCHALL.example",
            250,
            "",
            "Anyone@catchall.example",
        ),
        (
            "\"john doe\"@catchall.example",
            250,
            "",
            "\"john doe\"@catchall.example",
        ),
        // Unknown users of a listed domain: refused now, never bounced later.
        ("mallory@example.org", 550, "5.1.1", UNKNOWN),
        ("alice2@example.org", 550, "5.1.1", UNKNOWN),
        ("\"alice \"@example.org", 550, "5.1.1", UNKNOWN),
        // Not our domain, subdomains included.
        ("user@victim.example", 554, "5.7.1", DENIED),
        ("alice@sub.example.org", 554, "5.7.1", DENIED),
        ("alice@example.org.evil.example", 554, "5.7.1", DENIED),
        // Relay tricks, even against a catch-all domain.
        ("user%victim.example@catchall.example", 554, "5.7.1", DENIED),
        ("victim.example!user@catchall.example", 554, "5.7.1", DENIED),
        (
            "@catchall.example:user@victim.example",
            554,
            "5.7.1",
            DENIED,
        ),
        (
            "@a.example,@catchall.example:user@victim.example",
            554,
            "5.7.1",
            DENIED,
        ),
        (
            "\"user@victim.example\"@catchall.example",
            554,
            "5.7.1",
            DENIED,
        ),
        (
            "\"user%victim.example\"@catchall.example",
            554,
            "5.7.1",
            DENIED,
        ),
        (
            "\"victim.example!user\"@catchall.example",
            554,
            "5.7.1",
            DENIED,
        ),
        ("user@victim.example@catchall.example", 554, "5.7.1", DENIED),
        ("user@[192.0.2.1]", 554, "5.7.1", DENIED),
        ("user@[IPv6:2001:db8::1]", 554, "5.7.1", DENIED),
        ("user@192.0.2.1", 554, "5.7.1", DENIED),
        ("user@catchall.example.", 554, "5.7.1", DENIED),
        ("alice@example.org.", 554, "5.7.1", DENIED),
        // Not fully qualified.
        ("postmaster", 504, "5.5.2", RCPT_FQDN),
        ("user@localhost", 504, "5.5.2", RCPT_FQDN),
        // Syntax.
        ("", 501, "5.1.3", RCPT_SYNTAX),
        ("<>", 501, "5.1.3", RCPT_SYNTAX),
        ("user @catchall.example", 501, "5.1.3", RCPT_SYNTAX),
        ("us,er@catchall.example", 501, "5.1.3", RCPT_SYNTAX),
        ("user@catch_all.example", 501, "5.1.3", RCPT_SYNTAX),
        ("<user@catchall.example", 501, "5.1.3", RCPT_SYNTAX),
    ];
    for (raw, code, status, text) in table {
        let (got_code, got_status, got_text) = outcome(policy.check_recipient(raw));
        assert_eq!(
            (got_code, got_status),
            (*code, *status),
            "{raw:?}: {got_text}"
        );
        assert!(
            got_text.contains(text),
            "{raw:?}: {got_text:?} lacks {text:?}"
        );
    }
}

#[test]
fn recipient_reply_texts_are_postfix_wording() {
    let policy = policy();
    let table: &[(&str, &str)] = &[
        (
            "<user@victim.example>",
            "554 5.7.1 <user@victim.example>: Relay access denied\r\n",
        ),
        (
            "x@example.org",
            "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown in relay \
             recipient table\r\n",
        ),
        (
            "user@localhost",
            "504 5.5.2 <user@localhost>: Recipient address rejected: need fully-qualified \
             address\r\n",
        ),
        (
            "a,b@example.org",
            "501 5.1.3 <a,b@example.org>: Recipient address rejected: Bad recipient address \
             syntax (character not allowed outside quotes)\r\n",
        ),
        (
            "<>",
            "501 5.1.3 <>: Recipient address rejected: Bad recipient address syntax (empty address)\r\n",
        ),
    ];
    for (raw, wire) in table {
        assert_eq!(
            policy.check_recipient(raw).unwrap_err().to_wire(),
            *wire,
            "{raw:?}"
        );
    }
}

#[test]
fn senders() {
    let policy = policy();
    const FQDN: &str = "Sender address rejected: need fully-qualified address";
    const SYNTAX: &str = "Sender address rejected: Bad sender address syntax";
    let table: &[(&str, u16, &str, &str)] = &[
        (
            "anyone@elsewhere.example",
            250,
            "",
            "anyone@elsewhere.example",
        ),
        (
            "<Someone@Elsewhere.EXAMPLE>",
            250,
            "",
            "Someone@elsewhere.example",
        ),
        (
            "\"john doe\"@elsewhere.example",
            250,
            "",
            "\"john doe\"@elsewhere.example",
        ),
        ("user@localhost", 504, "5.5.2", FQDN),
        ("user", 504, "5.5.2", FQDN),
        // Routing forms would aim our bounces elsewhere: refused as syntax.
        (
            "user%victim.example@elsewhere.example",
            501,
            "5.1.7",
            SYNTAX,
        ),
        ("victim!user@elsewhere.example", 501, "5.1.7", SYNTAX),
        ("@a.example:user@elsewhere.example", 501, "5.1.7", SYNTAX),
        (
            "\"user@victim.example\"@elsewhere.example",
            501,
            "5.1.7",
            SYNTAX,
        ),
        (
            "user@victim.example@elsewhere.example",
            501,
            "5.1.7",
            SYNTAX,
        ),
        ("user@[192.0.2.1]", 501, "5.1.7", SYNTAX),
        ("user@[IPv6:2001:db8::1]", 501, "5.1.7", SYNTAX),
        ("user@elsewhere.example.", 501, "5.1.7", SYNTAX),
        ("user @elsewhere.example", 501, "5.1.7", SYNTAX),
        ("<user@elsewhere.example", 501, "5.1.7", SYNTAX),
    ];
    for (raw, code, status, text) in table {
        let result = policy
            .check_sender(raw)
            .map(|s| s.expect("not the null sender"));
        let (got_code, got_status, got_text) = outcome(result);
        assert_eq!(
            (got_code, got_status),
            (*code, *status),
            "{raw:?}: {got_text}"
        );
        assert!(
            got_text.contains(text),
            "{raw:?}: {got_text:?} lacks {text:?}"
        );
    }
    assert_eq!(
        policy
            .check_sender("user@[192.0.2.1]")
            .unwrap_err()
            .to_wire(),
        "501 5.1.7 <user@[192.0.2.1]>: Sender address rejected: Bad sender address syntax \
         (IP address instead of domain)\r\n"
    );
}

#[test]
fn null_sender_is_always_accepted() {
    for raw in ["", "<>"] {
        assert_eq!(policy().check_sender(raw), Ok(None), "{raw:?}");
        assert_eq!(
            RelayPolicy::default().check_sender(raw),
            Ok(None),
            "{raw:?}"
        );
    }
}

#[test]
fn relay_domains_match_in_any_case_and_exactly() {
    let policy = policy();
    for domain in [
        "example.org",
        "EXAMPLE.ORG",
        "Hand.Example",
        "catchall.example",
    ] {
        assert!(policy.is_relay_domain(domain), "{domain}");
    }
    for domain in [
        "sub.example.org",
        "example.org.",
        "org",
        "victim.example",
        "",
    ] {
        assert!(!policy.is_relay_domain(domain), "{domain}");
    }
    let mut domains: Vec<&str> = policy.domains().collect();
    domains.sort_unstable();
    assert_eq!(domains, ["catchall.example", "example.org", "hand.example"]);
}

#[test]
fn an_empty_policy_relays_for_nobody() {
    let policy = RelayPolicy::default();
    assert_eq!(outcome(policy.check_recipient("user@example.org")).0, 554);
}

#[test]
fn a_domain_given_twice_gets_the_union_of_its_rules() {
    let users =
        |names: &[&str]| RecipientRule::Listed(names.iter().map(|n| n.to_string()).collect());
    let policy = RelayPolicy::new(vec![
        ("example.org".to_owned(), users(&["alice"])),
        ("EXAMPLE.org".to_owned(), users(&["bob"])),
        ("catchall.example".to_owned(), users(&["alice"])),
        ("catchall.example".to_owned(), RecipientRule::CatchAll),
    ]);
    assert!(policy.check_recipient("alice@example.org").is_ok());
    assert!(policy.check_recipient("bob@example.org").is_ok());
    assert_eq!(outcome(policy.check_recipient("carol@example.org")).0, 550);
    assert!(policy.check_recipient("carol@catchall.example").is_ok());
}

#[test]
fn echoed_addresses_cannot_break_the_reply_line() {
    let policy = policy();
    let wire = policy
        .check_recipient("a\r\n250 ok@example.org")
        .unwrap_err()
        .to_wire();
    assert_eq!(wire.matches("\r\n").count(), 1, "{wire:?}");
    assert!(
        wire.starts_with("501 5.1.3 <a??250 ok@example.org>:"),
        "{wire:?}"
    );

    let long = format!("{}@example.org", "a".repeat(600));
    let wire = policy.check_recipient(&long).unwrap_err().to_wire();
    assert!(wire.len() < 512, "{} octets", wire.len());
    assert!(
        wire.contains("...>: Recipient address rejected"),
        "{wire:?}"
    );
}

/// smtp-proto strips quotes and source routes before the session calls us; these are
/// the forms the tricks arrive in, and every one must still be refused.
#[test]
fn tricks_as_smtp_proto_hands_them_over_are_still_denied() {
    let policy = policy();
    let table: &[(&str, &str, u16)] = &[
        (
            "<\"user@victim.example\"@catchall.example>",
            "user@victim.example@catchall.example",
            554,
        ),
        (
            "<\"user%victim.example\"@catchall.example>",
            "user%victim.example@catchall.example",
            554,
        ),
        (
            "<\"victim!user\"@catchall.example>",
            "victim!user@catchall.example",
            554,
        ),
        (
            "<@catchall.example:user@victim.example>",
            "user@victim.example",
            554,
        ),
        (
            "<@victim.example:alice@example.org>",
            "alice@example.org",
            250,
        ),
        (
            "<\"john doe\"@catchall.example>",
            "john doe@catchall.example",
            501,
        ),
    ];
    for (on_the_wire, handed_over, code) in table {
        let got = outcome(policy.check_recipient(handed_over)).0;
        assert_eq!(
            got, *code,
            "RCPT TO:{on_the_wire} arrives as {handed_over:?}"
        );
    }
}
