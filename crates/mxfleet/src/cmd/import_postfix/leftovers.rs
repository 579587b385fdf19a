//! Why a `main.cf` parameter the importer did not use has no place in an mxfleet
//! config: [`reason`] looks the name up by family (SASL, local delivery, content
//! filters, TLS tuning, ...), with a generic reason for the rest.
//!
//! Layout: the [`FAMILIES`] table (prefixes and exact names), then [`reason`].

/// `(names or prefixes ending in '*', reason)`, first match wins.
const FAMILIES: &[(&[&str], &str)] = &[
    (
        &["mynetworks", "mynetworks_style"],
        "mxfleet never relays for client networks: it accepts mail for its relay domains \
         only (permit_mynetworks has no equivalent); ETRN clients are smtp.etrn_networks",
    ),
    (
        &[
            "smtpd_sasl_*",
            "smtp_sasl_*",
            "broken_sasl_auth_clients",
            "cyrus_sasl_*",
        ],
        "SASL: mxfleet takes no authenticated submissions; it is an MX for its relay \
         domains only",
    ),
    (
        &["virtual_*"],
        "virtual domains and mailboxes: mxfleet delivers nothing locally, it hands mail to \
         the primary",
    ),
    (
        &[
            "mydestination",
            "alias_maps",
            "alias_database",
            "local_*",
            "mailbox_*",
            "home_mailbox",
            "mail_spool_directory",
            "luser_relay",
            "forward_path",
            "allow_mail_to_*",
        ],
        "local delivery: mxfleet delivers nothing locally",
    ),
    (
        &[
            "content_filter",
            "smtpd_milters",
            "non_smtpd_milters",
            "milter_*",
            "header_checks",
            "body_checks",
            "mime_header_checks",
            "nested_header_checks",
            "smtp_header_checks",
            "smtp_body_checks",
            "receive_override_options",
        ],
        "content inspection and rewriting: mxfleet hands messages to the primary unchanged; \
         filter there",
    ),
    (
        &[
            "canonical_maps",
            "sender_canonical_maps",
            "recipient_canonical_maps",
            "*_canonical_*",
            "masquerade_*",
            "smtp_generic_maps",
            "append_dot_mydomain",
            "append_at_myorigin",
            "myorigin",
            "mydomain",
            "swap_bangpath",
            "allow_percent_hack",
        ],
        "address rewriting: mxfleet keeps envelopes as received",
    ),
    (
        &["smtpd_tls_*", "tls_*", "smtpd_use_tls", "smtpd_enforce_tls"],
        "TLS tuning: mxfleet's STARTTLS uses rustls with its own protocol versions, ciphers \
         and session handling",
    ),
    (
        &[
            "smtp_tls_*",
            "smtp_use_tls",
            "smtp_enforce_tls",
            "smtp_bind_address6",
        ],
        "outbound TLS or address setting without an mxfleet equivalent (see [delivery] in \
         deploy/examples/node1.toml for what there is)",
    ),
    (
        &["postscreen_*"],
        "postscreen setting without an mxfleet equivalent (its DNSBL sites and threshold are \
         carried; the pregreet test is spam.hygiene.greet_wait)",
    ),
    (
        &[
            "smtpd_*_restrictions",
            "smtpd_restriction_classes",
            "smtpd_delay_reject",
        ],
        "access restriction without an mxfleet equivalent; decisions are made at RCPT TO",
    ),
    (
        &[
            "smtpd_client_*_rate_limit",
            "anvil_*",
            "smtpd_client_event_limit_exceptions",
        ],
        "rate limits are [spam.rate_limits] in mxfleet, with other defaults; set them there",
    ),
    (
        &[
            "relay_transport",
            "default_transport",
            "transport_*",
            "relay_destination_*",
            "smtp_destination_*",
            "default_destination_*",
        ],
        "transport tuning: mxfleet delivers relay domains by SMTP, with the fleet-wide \
         limits of [delivery]",
    ),
    (
        &[
            "compatibility_level",
            "queue_directory",
            "command_directory",
            "daemon_directory",
            "data_directory",
            "meta_directory",
            "shlib_directory",
            "html_directory",
            "manpage_directory",
            "sample_directory",
            "readme_directory",
            "mail_owner",
            "setgid_group",
            "sendmail_path",
            "newaliases_path",
            "mailq_path",
            "inet_protocols",
            "biff",
            "debug_peer_*",
            "debugger_command",
            "maillog_file*",
            "unknown_local_recipient_reject_code",
            "notify_classes",
            "soft_bounce",
        ],
        "Postfix installation or housekeeping setting; no mxfleet equivalent",
    ),
    (
        &[
            "smtpd_banner",
            "smtpd_helo_required",
            "disable_vrfy_command",
            "strict_rfc821_envelopes",
            "smtpd_etrn_restrictions",
        ],
        "SMTP server behaviour that mxfleet fixes itself (banner, HELO, VRFY, envelope syntax)",
    ),
];

/// Why `name` is not carried over.
pub fn reason(name: &str) -> String {
    FAMILIES
        .iter()
        .find(|(patterns, _)| patterns.iter().any(|pattern| matches(pattern, name)))
        .map_or_else(
            || "no mxfleet equivalent".to_owned(),
            |(_, reason)| (*reason).to_owned(),
        )
}

/// `pattern` is a name, or has one `*` standing for any text.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        let table = [
            ("mynetworks", "never relays for client networks"),
            ("smtpd_sasl_auth_enable", "SASL"),
            ("virtual_alias_maps", "virtual domains"),
            ("smtpd_milters", "content inspection"),
            ("smtpd_tls_loglevel", "TLS tuning"),
            ("smtpd_client_message_rate_limit", "[spam.rate_limits]"),
            ("smtpd_end_of_data_restrictions", "access restriction"),
            ("compatibility_level", "housekeeping"),
            ("something_new", "no mxfleet equivalent"),
        ];
        for (name, want) in table {
            assert!(reason(name).contains(want), "{name}: {}", reason(name));
        }
    }
}
