//! Every `.toml` under `deploy/` must be a node config that validates.
//!
//! The files name TLS paths under `/etc/mxfleet/tls/` that do not exist on a build
//! machine, so existence checks are skipped; everything else is checked as in
//! production. The example fleet is also checked as a whole: the nodes agree on
//! `initial_members`, each one's entry matches its own identity, all of them accept
//! mail for the same domains with the same limits, and all deliver it alike.
//!
//! The fleet's DNS (`deploy/examples/dns/*.zone`, parsed with hickory's zone-file
//! parser) and TLS requests (`deploy/examples/tls/**.cnf`) must match the configs: MX 10
//! is each relay domain's primary and MX 20 every node, each certificate request names
//! what its config entry serves, and each peer certificate the address peers dial.
//! (The compose, Kubernetes and systemd files are checked in `deploy_manifests.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

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

/// `deploy/examples/node1.toml` … `node5.toml`, parsed.
fn example_fleet() -> Vec<NodeConfig> {
    let examples = deploy_dir().join("examples");
    (1..=5)
        .map(|n| examples.join(format!("node{n}.toml")))
        .map(|path| parse_file(&path).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn example_fleet_agrees_on_its_members() {
    let fleet = example_fleet();

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

/// Every record of the zone files in `deploy/examples/dns/`, and each file's origin.
struct ExampleZones {
    /// Zone origin (`example.org.`) → the file that holds it.
    origins: BTreeMap<String, PathBuf>,
    records: Vec<Record>,
}

impl ExampleZones {
    fn load() -> ExampleZones {
        let dir = deploy_dir().join("examples/dns");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        files.sort();
        let mut zones = ExampleZones {
            origins: BTreeMap::new(),
            records: Vec::new(),
        };
        for path in files {
            assert!(
                path.extension().is_some_and(|ext| ext == "zone"),
                "{}: only .zone files belong in examples/dns",
                path.display()
            );
            let text = std::fs::read_to_string(&path).expect("read zone file");
            let (origin, sets) = Parser::new(text.as_str(), Some(path.clone()), None)
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert_eq!(
                format!("{}zone", origin.to_ascii()),
                file_name,
                "a zone file is named after its origin"
            );
            zones.origins.insert(origin.to_ascii(), path.clone());
            zones.records.extend(
                sets.values()
                    .flat_map(|set| set.records_without_rrsigs().cloned()),
            );
        }
        zones
    }

    fn at(&self, owner: &str, record_type: RecordType) -> impl Iterator<Item = &RData> {
        let owner = fqdn(owner);
        self.records
            .iter()
            .filter(move |r| r.record_type() == record_type && r.name.to_ascii() == owner)
            .map(|r| &r.data)
    }

    /// The addresses of `owner`'s A and AAAA records.
    fn addresses(&self, owner: &str) -> Vec<IpAddr> {
        let v4 = self.at(owner, RecordType::A).filter_map(|data| match data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        });
        let v6 = self
            .at(owner, RecordType::AAAA)
            .filter_map(|data| match data {
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            });
        v4.chain(v6).collect()
    }

    /// `owner`'s MX records as (preference, exchange).
    fn mx(&self, owner: &str) -> Vec<(u16, String)> {
        let mut mx: Vec<(u16, String)> = self
            .at(owner, RecordType::MX)
            .filter_map(|data| match data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        mx.sort();
        mx
    }

    /// `owner`'s SPF policies: its TXT records that start with `v=spf1`.
    fn spf(&self, owner: &str) -> Vec<String> {
        self.at(owner, RecordType::TXT)
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .filter(|text| text.starts_with("v=spf1 ") || text == "v=spf1")
            .collect()
    }
}

/// `name` as a zone file writes a fully qualified name: lower case, trailing dot.
fn fqdn(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

/// The host of a `[host]:port` next hop or a `host:port` peer address.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[test]
fn example_zones_put_the_primary_at_mx_10_and_every_node_at_mx_20() {
    let fleet = example_fleet();
    let zones = ExampleZones::load();
    let relay_domains = &fleet[0].relay_domains;

    let origins: BTreeSet<String> = zones.origins.keys().cloned().collect();
    let domains: BTreeSet<String> = relay_domains.iter().map(|r| fqdn(&r.domain)).collect();
    assert_eq!(origins, domains, "one zone file per relay domain");

    let nodes: BTreeSet<String> = fleet.iter().map(|c| fqdn(&c.node.name)).collect();
    assert_eq!(nodes.len(), 5);
    for relay in relay_domains {
        let mx = zones.mx(&relay.domain);
        let primaries: Vec<&str> = mx
            .iter()
            .filter(|(preference, _)| *preference == 10)
            .map(|(_, host)| host.as_str())
            .collect();
        let backups: BTreeSet<String> = mx
            .iter()
            .filter(|(preference, _)| *preference == 20)
            .map(|(_, host)| host.clone())
            .collect();
        assert_eq!(mx.len(), primaries.len() + backups.len(), "{mx:?}");
        assert_eq!(backups, nodes, "{}: MX 20 must be every node", relay.domain);
        let [primary] = primaries.as_slice() else {
            panic!("{}: exactly one MX 10 expected, {mx:?}", relay.domain);
        };
        assert!(!nodes.contains(*primary), "{primary} is a fleet node");
        // A domain routed to a named primary must name the host its MX 10 gives, so
        // senders and the fleet agree on which host is the primary.
        let next_hop = relay.delivery.route.primary.to_string();
        if next_hop != "mx" {
            assert_eq!(fqdn(host_of(&next_hop)), *primary, "{}", relay.domain);
        }
        for (_, host) in &mx {
            let addresses = zones.addresses(host);
            assert!(
                addresses.iter().any(IpAddr::is_ipv4) && addresses.iter().any(IpAddr::is_ipv6),
                "MX host {host} needs an A and an AAAA record, has {addresses:?}"
            );
        }
    }
}

#[test]
fn example_zones_publish_spf_for_the_domains_the_nodes_and_the_dsn_name() {
    let fleet = example_fleet();
    let zones = ExampleZones::load();
    // RFC 7208 §4.5: more than one SPF record at a name is a permanent error.
    let one_spf = |owner: &str| -> String {
        let spf = zones.spf(owner);
        let [policy] = spf.as_slice() else {
            panic!("{owner}: exactly one SPF record expected, found {spf:?}");
        };
        assert!(policy.ends_with(" -all"), "{owner}: {policy}");
        policy.clone()
    };
    for origin in zones.origins.keys() {
        one_spf(origin);
    }
    // DSNs and probes go out from <>: SPF checks the HELO name, each node's own.
    for config in &fleet {
        assert_eq!(one_spf(&config.delivery.hostname), "v=spf1 a -all");
    }
    // The DSN name is sent by any node: its SPF must allow every node's address.
    let reporting_mta = one_spf(&fleet[0].delivery.reporting_mta);
    let include = reporting_mta
        .split_whitespace()
        .find_map(|term| term.strip_prefix("include:"))
        .unwrap_or_else(|| panic!("{reporting_mta}: expected include:<fleet list>"));
    let fleet_list = one_spf(include);
    let listed: BTreeSet<IpAddr> = fleet_list
        .split_whitespace()
        .filter_map(|term| term.strip_prefix("ip4:").or(term.strip_prefix("ip6:")))
        .map(|ip| ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")))
        .collect();
    let node_addresses: BTreeSet<IpAddr> = fleet
        .iter()
        .flat_map(|c| zones.addresses(&c.node.name))
        .collect();
    assert_eq!(
        listed, node_addresses,
        "{include} must list every node address"
    );
}

#[test]
fn example_certificate_names_resolve() {
    let zones = ExampleZones::load();
    for config in example_fleet() {
        for certificate in &config.smtp.tls_certificates {
            for name in certificate.names.iter().filter(|n| !n.starts_with("*.")) {
                assert!(
                    !zones.addresses(name).is_empty(),
                    "{name} (served by {}) has no address in examples/dns",
                    certificate.cert.display()
                );
            }
        }
    }
}

/// What an OpenSSL request config asks for: its `[alt_names]` and its `[ext]` keys.
#[derive(Debug, Default)]
struct CertRequest {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    extensions: BTreeMap<String, String>,
}

fn cert_request(path: &Path) -> CertRequest {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut request = CertRequest::default();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not key = value: {line}", path.display()));
        let (key, value) = (key.trim(), value.trim());
        match section.as_str() {
            "alt_names" => match key.split_once('.') {
                Some(("DNS", _)) => request.dns.push(value.to_owned()),
                Some(("IP", _)) => request.ips.push(
                    value
                        .parse()
                        .unwrap_or_else(|e| panic!("{}: {value}: {e}", path.display())),
                ),
                _ => panic!("{}: unexpected alt name {key}", path.display()),
            },
            "ext" => {
                request.extensions.insert(key.to_owned(), value.to_owned());
            }
            _ => {}
        }
    }
    if !request.dns.is_empty() || !request.ips.is_empty() {
        assert_eq!(
            request.extensions.get("subjectAltName").map(String::as_str),
            Some("@alt_names"),
            "{}",
            path.display()
        );
    }
    request
}

/// The request config for the certificate at `cert` (`/etc/mxfleet/tls/smtp.crt`) on
/// node `id`: `tls/node<id>/smtp.cnf` if the node has its own, else the shared
/// `tls/smtp.cnf`.
fn request_for(id: u64, cert: &Path) -> PathBuf {
    let tls = deploy_dir().join("examples/tls");
    let stem = cert
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| panic!("{}: no file name", cert.display()));
    let own = tls.join(format!("node{id}/{stem}.cnf"));
    if own.exists() {
        own
    } else {
        tls.join(format!("{stem}.cnf"))
    }
}

#[test]
fn example_certificate_requests_name_what_the_configs_serve() {
    let tls = deploy_dir().join("examples/tls");
    let mut used = BTreeSet::from([tls.join("fleet-ca.cnf")]);
    let ca = cert_request(&tls.join("fleet-ca.cnf"));
    assert_eq!(
        ca.extensions.get("basicConstraints").map(String::as_str),
        Some("critical, CA:true, pathlen:0")
    );

    for config in example_fleet() {
        let id = config.node.id;
        for (index, certificate) in config.smtp.tls_certificates.iter().enumerate() {
            let path = request_for(id, &certificate.cert);
            let request = cert_request(&path);
            assert_eq!(
                request.dns,
                certificate.names,
                "{} vs smtp.tls_certificates[{index}] of node {id}",
                path.display()
            );
            used.insert(path);
        }
        // The node's own certificate is the first one: its MX host name.
        let own = &config.smtp.tls_certificates[0].names;
        assert!(own.contains(&config.smtp.hostname), "node {id}: {own:?}");
        assert!(own.contains(&config.node.name), "node {id}: {own:?}");

        let PeerTransport::MutualTls { cert, .. } = &config.peer.transport else {
            panic!("node {id} must use mutual TLS");
        };
        let path = request_for(id, cert);
        let request = cert_request(&path);
        // Peers check the certificate against the host they dial: the advertised one.
        let dialled = host_of(&config.peer.advertise);
        match dialled.parse::<IpAddr>() {
            Ok(ip) => assert!(request.ips.contains(&ip), "{}: {ip}", path.display()),
            Err(_) => assert!(
                request.dns.iter().any(|d| d == dialled),
                "{}: {dialled}",
                path.display()
            ),
        }
        assert!(
            request.dns.contains(&config.node.name),
            "{}",
            path.display()
        );
        assert_eq!(
            request
                .extensions
                .get("extendedKeyUsage")
                .map(String::as_str),
            Some("serverAuth, clientAuth"),
            "{}: one certificate serves both ends of mutual TLS",
            path.display()
        );
        used.insert(path);
    }

    // No request the configs do not use.
    let cnf_files: BTreeSet<PathBuf> = cnf_files(&tls);
    assert_eq!(cnf_files, used);
}

fn cnf_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("list tls dir") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            found.extend(cnf_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "cnf") {
            found.insert(path);
        }
    }
    found
}
