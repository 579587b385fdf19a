//! Recipient list format: entries, comments, catch-all, and errors with line numbers.

use std::io::Write as _;

use super::*;

fn listed(users: &[&str]) -> RecipientRule {
    RecipientRule::Listed(users.iter().map(|u| u.to_string()).collect())
}

#[test]
fn lists_parse_to_lower_cased_local_parts_or_catch_all() {
    let table: &[(&str, RecipientRule)] = &[
        (
            "alice@example.org\nbob@example.org\n",
            listed(&["alice", "bob"]),
        ),
        ("Alice@EXAMPLE.org\r\n", listed(&["alice"])),
        (
            "# users\n\n   \n  alice@example.org  \n\t# more\n",
            listed(&["alice"]),
        ),
        ("alice@example.org # Alice Liddell\n", listed(&["alice"])),
        ("foo#bar@example.org\n", listed(&["foo#bar"])),
        (
            "\"John Doe\"@example.org  # quoted\n",
            listed(&["\"john doe\""]),
        ),
        ("\"john\"@example.org\n", listed(&["john"])),
        ("<carol@example.org>\n", listed(&["carol"])),
        ("\u{FEFF}alice@example.org\n", listed(&["alice"])),
        ("@example.org\n", RecipientRule::CatchAll),
        ("alice@example.org\n@EXAMPLE.ORG\n", RecipientRule::CatchAll),
    ];
    for (text, expected) in table {
        let rule = parse_recipient_list(text, "Example.Org");
        assert_eq!(rule.as_ref().ok(), Some(expected), "{text:?}: {rule:?}");
    }
}

#[test]
fn errors_name_the_line() {
    let table: &[(&str, usize, &str)] = &[
        (
            "alice@example.org\nbob@example.net\n",
            2,
            "line 2: \"bob@example.net\" is not in domain example.org",
        ),
        (
            "# c\n\n@example.net\n",
            3,
            "line 3: \"@example.net\" is not in domain example.org",
        ),
        (
            "alice@sub.example.org\n",
            1,
            "line 1: \"alice@sub.example.org\" is not in domain example.org",
        ),
        (
            "a@example.org\nb%evil.example@example.org\n",
            2,
            "line 2: \"b%evil.example@example.org\": \"b%evil.example@example.org\": % in local part",
        ),
        (
            "\"x@y\"@example.org\n",
            1,
            "line 1: \"\\\"x@y\\\"@example.org\": \"\\\"x@y\\\"@example.org\": @, % or ! in quoted local part",
        ),
        (
            "alice\n",
            1,
            "line 1: \"alice\": \"alice\": need fully-qualified address",
        ),
        (
            "alice@example.org OK\n",
            1,
            "line 1: unexpected \"OK\" after \"alice@example.org\": one address per line",
        ),
        (
            "a@example.org b@example.org\n",
            1,
            "line 1: unexpected \"b@example.org\" after \"a@example.org\": one address per line",
        ),
    ];
    for (text, line, message) in table {
        let error = parse_recipient_list(text, "example.org").unwrap_err();
        assert_eq!(error.line(), Some(*line), "{text:?}");
        assert_eq!(error.path(), None);
        assert_eq!(error.to_string(), *message, "{text:?}");
    }
}

#[test]
fn a_list_without_entries_is_refused() {
    for text in ["", "\n\n", "# nobody yet\n"] {
        let error = parse_recipient_list(text, "example.org").unwrap_err();
        assert!(
            matches!(error, RecipientListError::NoEntries { .. }),
            "{text:?}"
        );
        assert_eq!(
            error.to_string(),
            "recipient list: no recipients listed for example.org; add `@example.org` to \
             accept every recipient"
        );
    }
}

#[test]
fn file_errors_carry_path_and_line() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "# example.org users\nalice@example.org\n\nbob@example.net\n"
    )
    .unwrap();
    let error = load_recipient_file(file.path(), "example.org").unwrap_err();
    assert_eq!((error.path(), error.line()), (Some(file.path()), Some(4)));
    let expected = format!(
        "{}:4: \"bob@example.net\" is not in domain example.org",
        file.path().display()
    );
    assert_eq!(error.to_string(), expected);
}

#[test]
fn files_load_and_missing_files_say_so() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(file, "alice@example.org\nBob@example.org\n").unwrap();
    let rule = load_recipient_file(file.path(), "example.org").unwrap();
    assert_eq!(rule, listed(&["alice", "bob"]));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let error = load_recipient_file(&missing, "example.org").unwrap_err();
    assert!(matches!(error, RecipientListError::Read { .. }));
    assert_eq!(
        (error.path(), error.line()),
        (Some(missing.as_path()), None)
    );
}

#[test]
fn listed_rules_match_case_insensitively() {
    let rule = parse_recipient_list(
        "Alice@example.org\n\"John Doe\"@example.org\n",
        "example.org",
    )
    .unwrap();
    for local in ["alice", "ALICE", "aLiCe", "\"john doe\"", "\"JOHN DOE\""] {
        assert!(rule.accepts(local), "{local}");
    }
    for local in ["bob", "alice2", "john doe"] {
        assert!(!rule.accepts(local), "{local}");
    }
    assert!(RecipientRule::CatchAll.accepts("anyone"));
}
