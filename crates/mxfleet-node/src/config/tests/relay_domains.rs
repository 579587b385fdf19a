//! `[[relay_domains]]`: the three recipient sources, exactly one per domain, and each
//! rule with its key path.

use std::path::PathBuf;

use mxfleet_delivery::DestinationPolicy;

use super::*;

/// `[[relay_domains]]` tables after the minimal config.
fn with_relay_domains(tables: &str) -> String {
    format!("{MINIMAL}\n{tables}\n")
}

#[test]
fn each_recipient_source_is_accepted() {
    let config = accepted(&with_relay_domains(
        r#"
[[relay_domains]]
domain = "Example.ORG."
recipients = ["alice", "Bob@EXAMPLE.org", '"john doe"@example.org']

[[relay_domains]]
domain = "example.net"
recipient_file = "/etc/mxfleet/recipients/example.net"
catch_all = false

[[relay_domains]]
domain = "example.com"
catch_all = true
"#,
    ));
    assert_eq!(
        config.relay_domains,
        [
            RelayDomainConfig {
                domain: "example.org".to_owned(),
                recipients: RecipientSource::Listed(vec![
                    "alice".to_owned(),
                    "Bob@EXAMPLE.org".to_owned(),
                    "\"john doe\"@example.org".to_owned(),
                ]),
                delivery: DestinationPolicy::default(),
            },
            RelayDomainConfig {
                domain: "example.net".to_owned(),
                recipients: RecipientSource::File(PathBuf::from(
                    "/etc/mxfleet/recipients/example.net"
                )),
                delivery: DestinationPolicy::default(),
            },
            RelayDomainConfig {
                domain: "example.com".to_owned(),
                recipients: RecipientSource::CatchAll,
                delivery: DestinationPolicy::default(),
            },
        ]
    );
    assert_eq!(
        config.relay_domains[0].listed_addresses(),
        Some(vec![
            "alice@example.org".to_owned(),
            "Bob@EXAMPLE.org".to_owned(),
            "\"john doe\"@example.org".to_owned(),
        ])
    );
    assert_eq!(config.relay_domains[1].listed_addresses(), None);
}

#[test]
fn exactly_one_recipient_source_per_domain() {
    let cases = [
        // (sources written in a table for example.org, words in the relay_domains[0] error)
        ("", "names no recipients: give exactly one of recipients"),
        ("catch_all = false", "(catch_all = false chooses none)"),
        (
            "recipients = [\"alice\"]\nrecipient_file = \"/r\"",
            "sets recipients and recipient_file, which are alternatives",
        ),
        (
            "recipient_file = \"/r\"\ncatch_all = true",
            "sets recipient_file and catch_all = true",
        ),
        (
            "recipients = [\"alice\"]\nrecipient_file = \"/r\"\ncatch_all = true",
            "sets recipients, recipient_file and catch_all = true",
        ),
    ];
    for (sources, words) in cases {
        let errors = rejected(&with_relay_domains(&format!(
            "[[relay_domains]]\ndomain = \"example.org\"\n{sources}"
        )));
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["relay_domains[0]"]);
        let message = message_for(&errors, "relay_domains[0]");
        assert!(message.contains(words), "{sources:?}: {message}");
    }
    // catch_all = false beside a real source changes nothing.
    let config = accepted(&with_relay_domains(
        "[[relay_domains]]\ndomain = \"example.org\"\nrecipients = [\"alice\"]\ncatch_all = false",
    ));
    assert_eq!(
        config.relay_domains[0].recipients,
        RecipientSource::Listed(vec!["alice".to_owned()])
    );
}

#[test]
fn each_rule_is_reported_with_its_key_path() {
    let cases = [
        // (the second of two tables, rejected key, words in the message)
        ("catch_all = true", "relay_domains[1].domain", "is required"),
        (
            "domain = \"localhost\"\ncatch_all = true",
            "relay_domains[1].domain",
            "not fully qualified",
        ),
        (
            "domain = \"exa mple.org\"\ncatch_all = true",
            "relay_domains[1].domain",
            "may only contain",
        ),
        (
            "domain = \"10.0.0.1\"\ncatch_all = true",
            "relay_domains[1].domain",
            "all-digit",
        ),
        (
            "domain = \"EXAMPLE.com.\"\ncatch_all = true",
            "relay_domains[1].domain",
            "example.com is already listed as relay_domains[0]",
        ),
        (
            "domain = \"example.org\"\nrecipients = []",
            "relay_domains[1].recipients",
            "is empty",
        ),
        (
            "domain = \"example.org\"\nrecipients = [\"alice\", \" \"]",
            "relay_domains[1].recipients[1]",
            "must not be empty",
        ),
        (
            "domain = \"example.org\"\nrecipients = [\"@example.org\"]",
            "relay_domains[1].recipients[0]",
            "replace recipients with catch_all = true",
        ),
        (
            "domain = \"example.org\"\nrecipients = [\"alice\", \"bob@example.net\"]",
            "relay_domains[1].recipients[1]",
            "\"bob@example.net\" is not in example.org",
        ),
        (
            "domain = \"example.org\"\nrecipients = [\"bob@sub.example.org\"]",
            "relay_domains[1].recipients[0]",
            "is not in example.org",
        ),
        (
            "domain = \"example.org\"\nrecipient_file = \"\"",
            "relay_domains[1].recipient_file",
            "must not be empty",
        ),
    ];
    for (table, key, words) in cases {
        let errors = rejected(&with_relay_domains(&format!(
            "[[relay_domains]]\ndomain = \"example.com\"\ncatch_all = true\n\n\
             [[relay_domains]]\n{table}"
        )));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{table}\n{key}: {message}");
        assert_eq!(
            errors.0.len(),
            1,
            "{table}\none problem, one error:\n{errors}"
        );
    }
}

#[test]
fn duplicate_domain_names_the_first_table() {
    let errors = rejected(&with_relay_domains(
        r#"
[[relay_domains]]
domain = "example.org"
catch_all = true

[[relay_domains]]
domain = "example.net"
catch_all = true

[[relay_domains]]
domain = "Example.Org"
recipients = ["alice"]
"#,
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["relay_domains[2].domain"]
    );
    assert!(
        message_for(&errors, "relay_domains[2].domain")
            .contains("example.org is already listed as relay_domains[0]")
    );
}

#[test]
fn recipient_domain_must_be_the_table_domain_in_any_case() {
    let config = accepted(&with_relay_domains(
        "[[relay_domains]]\ndomain = \"example.org\"\nrecipients = [\"bob@EXAMPLE.ORG\"]",
    ));
    assert_eq!(
        config.relay_domains[0].recipients,
        RecipientSource::Listed(vec!["bob@EXAMPLE.ORG".to_owned()])
    );

    let errors = rejected(&with_relay_domains(
        "[[relay_domains]]\ndomain = \"example.org\"\nrecipients = [\"bob@example.org.uk\"]",
    ));
    let message = message_for(&errors, "relay_domains[0].recipients[0]");
    assert!(
        message.contains("list it in the table of its own domain"),
        "{message}"
    );
}

#[test]
fn every_problem_of_every_table_is_reported_at_once() {
    let errors = rejected(&with_relay_domains(
        r#"
[[relay_domains]]
domain = "example"
recipients = ["alice@example.org", ""]
catch_all = true

[[relay_domains]]
recipient_file = ""
"#,
    ));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "relay_domains[0].domain",
            // Without a valid domain, only the empty entry can be judged.
            "relay_domains[0].recipients[1]",
            "relay_domains[0]",
            "relay_domains[1].domain",
            "relay_domains[1].recipient_file",
        ],
        "{errors}"
    );
}

#[test]
fn shape_errors_carry_the_table_index() {
    let cases = [
        (
            "domain = \"example.org\"\nrecipient_map = \"/r\"",
            "relay_domains[1].recipient_map",
            "unknown field",
        ),
        (
            "domain = \"example.org\"\ncatch_all = \"yes\"",
            "relay_domains[1].catch_all",
            "invalid type",
        ),
        (
            "domain = \"example.org\"\nrecipients = \"alice\"",
            "relay_domains[1].recipients",
            "invalid type",
        ),
    ];
    for (table, key, words) in cases {
        let errors = rejected(&with_relay_domains(&format!(
            "[[relay_domains]]\ndomain = \"example.com\"\ncatch_all = true\n\n\
             [[relay_domains]]\n{table}"
        )));
        let message = message_for(&errors, key);
        assert!(message.contains(words), "{table}\n{key}: {message}");
    }
}

#[test]
fn recipient_file_must_exist_unless_checks_are_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listed = dir.path().join("example.org");
    std::fs::write(&listed, "alice@example.org\n").expect("write recipient file");
    let missing = dir.path().join("example.net");
    let text = with_relay_domains(&format!(
        "[[relay_domains]]\ndomain = \"example.org\"\nrecipient_file = {listed:?}\n\n\
         [[relay_domains]]\ndomain = \"example.net\"\nrecipient_file = {missing:?}\n\n\
         [[relay_domains]]\ndomain = \"example.com\"\nrecipient_file = {dir:?}\n",
        dir = dir.path(),
    ));

    let errors = parse(&text, ORIGIN).expect_err("a missing file and a directory");
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        [
            "relay_domains[1].recipient_file",
            "relay_domains[2].recipient_file"
        ]
    );
    assert!(message_for(&errors, "relay_domains[1].recipient_file").contains("file not found"));
    assert!(message_for(&errors, "relay_domains[2].recipient_file").contains("not a regular file"));

    let config = accepted(&text);
    assert_eq!(
        config.relay_domains[1].recipients,
        RecipientSource::File(missing)
    );
}
