//! Every `.toml` under `deploy/` must be a node config that validates.
//!
//! The files name TLS paths under `/etc/mxfleet/tls/` that do not exist on a build
//! machine, so existence checks are skipped; everything else is checked as in
//! production. The example fleet is also checked as a whole: the nodes agree on
//! `initial_members`, each one's entry matches its own identity, all of them accept
//! mail for the same domains with the same limits, and all deliver it alike.

use std::path::{Path, PathBuf};

use mxfleet_delivery::DestinationPolicy;
use mxfleet_delivery::route::{NextHop, Route};
use mxfleet_node::config::{
    FileChecks, NodeConfig, PeerTransport, RecipientSource, RelayDomainConfig, SmtpConfig,
    parse_with,
};

fn deploy_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    // Canonical, so that error lines name `/…/deploy/examples/x.toml`.
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// All `.toml` files under `dir`, recursively, in a stable order.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn parse_file(path: &Path) -> Result<NodeConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_with(&text, &path.display().to_string(), FileChecks::Skip).map_err(|e| e.to_string())
}

#[test]
fn every_deploy_config_validates() {
    let files = toml_files(&deploy_dir());
    assert!(
        files.len() >= 6,
        "expected at least 6 configs under {}, found {files:?}",
        deploy_dir().display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| parse_file(path).err())
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn example_fleet_agrees_on_its_members() {
    let examples = deploy_dir().join("examples");
    let fleet: Vec<NodeConfig> = (1..=5)
        .map(|n| examples.join(format!("node{n}.toml")))
        .map(|path| parse_file(&path).unwrap_or_else(|e| panic!("{e}")))
        .collect();

    let members = &fleet[0].cluster.initial_members;
    let mut sites: Vec<&str> = members.iter().map(|m| m.site.as_str()).collect();
    sites.dedup();
    assert_eq!(sites, ["fra1", "ams1", "lon1"]);

    for config in &fleet {
        assert_eq!(
            &config.cluster.initial_members, members,
            "{}",
            config.node.name
        );
        let own = members
            .iter()
            .find(|member| member.id == config.node.id)
            .unwrap_or_else(|| panic!("node {} is not an initial member", config.node.id));
        assert_eq!(own.addr, config.peer.advertise);
        assert_eq!(own.site, config.node.site);
        assert!(
            matches!(config.peer.transport, PeerTransport::MutualTls { .. }),
            "node {} must use mutual TLS",
            config.node.id
        );
    }

    // A sender's retry may land on any node, so every node must answer it alike: the
    // same domains and recipients, and the same limits. Only the announced name differs.
    let same_everywhere = |config: &NodeConfig| SmtpConfig {
        hostname: String::new(),
        tls_certificates: Vec::new(),
        ..config.smtp.clone()
    };
    for config in &fleet {
        assert_eq!(config.smtp.hostname, config.node.name);
        assert_eq!(same_everywhere(config), same_everywhere(&fleet[0]));
        assert_eq!(config.relay_domains, fleet[0].relay_domains);
        assert!(
            !config.smtp.tls_certificates.is_empty(),
            "node {} must offer STARTTLS",
            config.node.id
        );
    }
    // A message may be delivered by any node, and a DSN rebuilt by any leader: the
    // delivery settings must agree too, only the HELO name is each node's own.
    for config in &fleet {
        let delivery = &config.delivery;
        assert_eq!(delivery.hostname, config.smtp.hostname);
        assert_eq!(delivery.reporting_mta, fleet[0].delivery.reporting_mta);
        assert_eq!(
            format!("{:?}", delivery.destinations),
            format!("{:?}", fleet[0].delivery.destinations)
        );
        assert_eq!(
            format!("{:?}", delivery.default_policy),
            format!("{:?}", fleet[0].delivery.default_policy)
        );
    }
    let routes: Vec<(&str, String)> = fleet[0]
        .relay_domains
        .iter()
        .map(|relay| {
            (
                relay.domain.as_str(),
                relay.delivery.route.primary.to_string(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("example.org", "mx".to_owned()),
            ("example.com", "[mail.example.com]:25".to_owned()),
            ("example.net", "[mail.example.net]:25".to_owned()),
        ]
    );

    let sources: Vec<(&str, &RecipientSource)> = fleet[0]
        .relay_domains
        .iter()
        .map(|relay| (relay.domain.as_str(), &relay.recipients))
        .collect();
    assert!(
        matches!(
            sources.as_slice(),
            [
                ("example.org", RecipientSource::Listed(_)),
                ("example.com", RecipientSource::File(_)),
                ("example.net", RecipientSource::CatchAll),
            ]
        ),
        "{sources:?}"
    );
    // The spam checks judge a sender the same on every node.
    for config in &fleet {
        assert_eq!(config.spam, fleet[0].spam);
    }
    let spam = &fleet[0].spam;
    let checks = |domain: &str| -> Vec<&str> {
        spam.domain_checks[domain]
            .iter()
            .map(|c| c.as_str())
            .collect()
    };
    assert_eq!(
        checks("example.org"),
        ["dnsbl", "unknown_sender_domain", "spf"]
    );
    assert_eq!(
        checks("example.com"),
        ["dnsbl", "unknown_sender_domain", "spf"]
    );
    assert_eq!(
        checks("example.net"),
        ["primary_aware", "dnsbl", "verify_recipients", "greylisting"]
    );
    assert_eq!(spam.dnsbl.sites.len(), 3);
    assert_eq!(spam.dnsbl.threshold, 3);
    assert_eq!(spam.rate_limits.client_connection_rate_limit, 60);
}

#[test]
fn dev_node_takes_mail_for_example_test_on_a_high_port() {
    let config =
        parse_file(&deploy_dir().join("examples/dev-node.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.smtp.listen.to_string(), "127.0.0.1:2525");
    assert_eq!(config.smtp.hostname, "dev-node");
    assert!(config.smtp.tls_certificates.is_empty());
    assert_eq!(
        config.relay_domains,
        [RelayDomainConfig {
            domain: "example.test".to_owned(),
            recipients: RecipientSource::CatchAll,
            delivery: DestinationPolicy {
                route: Route::new(NextHop::parse("[127.0.0.1]:2526").expect("next hop")),
                ..DestinationPolicy::default()
            },
        }]
    );
    assert_eq!(config.delivery.hostname, "dev-node");
    assert_eq!(
        config.delivery.default_policy.route.primary.to_string(),
        "[127.0.0.1]:2526"
    );
}

/// The `[delivery]` section of the example comments out each default; written out, they
/// must change nothing, so that the example documents the defaults truthfully.
#[test]
fn commented_delivery_values_in_the_example_are_the_defaults() {
    // Commented keys whose value is an example rather than the default.
    const EXAMPLES_ONLY: [&str; 5] = [
        "smtp_bind_address",
        "relayhost",
        "dns_servers",
        "default_destination_rate",
        "smtp_tls_CAfile",
    ];
    let path = deploy_dir().join("examples/node1.toml");
    let text = std::fs::read_to_string(&path).expect("read node1.toml");
    let mut in_delivery = false;
    let mut uncommented = 0;
    let written: Vec<String> = text
        .lines()
        .map(|line| {
            // The section runs from its header to the first empty line.
            if line.starts_with('[') || line.is_empty() {
                in_delivery = line == "[delivery]";
            }
            let key = line
                .strip_prefix("# ")
                .and_then(|rest| rest.split_once(" = "))
                .map(|(key, _)| key);
            match key {
                Some(key)
                    if in_delivery
                        && !EXAMPLES_ONLY.contains(&key)
                        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                {
                    uncommented += 1;
                    line["# ".len()..].to_owned()
                }
                _ => line.to_owned(),
            }
        })
        .collect();
    assert!(uncommented >= 20, "only {uncommented} defaults found");
    let origin = path.display().to_string();
    let defaults = parse_with(&written.join("\n"), &origin, FileChecks::Skip)
        .unwrap_or_else(|errors| panic!("{errors}"));
    let example = parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        format!("{:?}", defaults.delivery),
        format!("{:?}", example.delivery)
    );
    assert_eq!(defaults.dns_servers, example.dns_servers);
    assert_eq!(defaults.mx_port, example.mx_port);
}
