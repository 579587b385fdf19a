//! The deployment files under `deploy/` that are not node configs must agree with the
//! configs they run: the compose fleet (`deploy/compose/compose.yaml`), the Kubernetes
//! manifests (`deploy/kubernetes/*.yaml`), the systemd unit and the `Dockerfile`.
//!
//! The YAML is parsed (yaml-rust2) and checked against the node configs it mounts or
//! renders: ports, data volumes, peer addresses, the test primary's address and domains,
//! probes, and the Kubernetes template rendered per pod ordinal the way its init
//! container does it. Nothing here needs Docker, kubectl or systemd.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mxfleet_node::config::{FileChecks, NodeConfig, PeerTransport, TokenSecret, parse_with};
use yaml_rust2::{Yaml, YamlLoader};

/// How long a node drains after SIGTERM before it exits anyway (`SHUTDOWN_DEADLINE` in
/// `crates/mxfleet/src/cmd/mod.rs`); every supervisor must wait longer.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);

/// Where the admin CLI looks when no endpoint is given (`DEFAULT_ENDPOINT`).
const ADMIN_CLI_DEFAULT: &str = "127.0.0.1:7402";

fn deploy_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_config(text: &str, origin: &str) -> NodeConfig {
    parse_with(text, origin, FileChecks::Skip).unwrap_or_else(|errors| panic!("{errors}"))
}

fn yaml_documents(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {yaml:?}"))
}

fn list<'a>(yaml: &'a Yaml, what: &str) -> &'a [Yaml] {
    yaml.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {yaml:?}"))
}

fn strings(yaml: &Yaml, what: &str) -> Vec<String> {
    list(yaml, what)
        .iter()
        .map(|item| match item {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("{what}: expected strings, found {other:?}"),
        })
        .collect()
}

/// "45s", "1m30s" (compose) or a bare number of seconds (Kubernetes, systemd).
fn duration(text: &str) -> Duration {
    match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}")),
    }
}

fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn port_of(addr: &str) -> u16 {
    let (_, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr}: no port"));
    port.parse().unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// The ports the Dockerfile's final stage EXPOSEs.
fn dockerfile_exposed() -> BTreeSet<u16> {
    let path = deploy_dir().join("../Dockerfile");
    read(&path)
        .lines()
        .filter_map(|line| line.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace())
        .map(|port| {
            port.parse()
                .unwrap_or_else(|e| panic!("EXPOSE {port}: {e}"))
        })
        .collect()
}

/// A node's listening ports: SMTP, peer and (if any) metrics.
fn listening_ports(config: &NodeConfig) -> Vec<u16> {
    let mut ports = vec![config.smtp.listen.port(), config.peer.listen.port()];
    ports.extend(config.metrics_listen.map(|m| m.port()));
    ports
}

// --- compose -------------------------------------------------------------------------------

/// One entry of a service's `volumes` (short syntax `source:target[:ro]`).
struct Mount {
    source: String,
    target: String,
    read_only: bool,
}

fn mounts(service: &Yaml, name: &str) -> Vec<Mount> {
    strings(&service["volumes"], &format!("{name}.volumes"))
        .into_iter()
        .map(|entry| {
            let parts: Vec<&str> = entry.split(':').collect();
            match parts.as_slice() {
                [source, target] => Mount {
                    source: source.to_string(),
                    target: target.to_string(),
                    read_only: false,
                },
                [source, target, "ro"] => Mount {
                    source: source.to_string(),
                    target: target.to_string(),
                    read_only: true,
                },
                _ => panic!("{name}: unexpected volume {entry}"),
            }
        })
        .collect()
}

/// The container ports a service publishes (`[ip:]host:container`) and exposes.
fn container_ports(service: &Yaml, name: &str) -> (Vec<u16>, Vec<u16>) {
    let published = if service["ports"].is_badvalue() {
        Vec::new()
    } else {
        strings(&service["ports"], &format!("{name}.ports"))
            .iter()
            .map(|entry| port_of(entry))
            .collect()
    };
    let exposed = strings(&service["expose"], &format!("{name}.expose"))
        .iter()
        .map(|port| {
            port.parse()
                .unwrap_or_else(|e| panic!("{name}: {port}: {e}"))
        })
        .collect();
    (published, exposed)
}

/// A non-root process may bind `port` only if the service lowers
/// `net.ipv4.ip_unprivileged_port_start` to it.
fn may_bind(service: &Yaml, port: u16) -> bool {
    port >= 1024
        || service["sysctls"]["net.ipv4.ip_unprivileged_port_start"]
            .as_str()
            .and_then(|v| v.parse::<u16>().ok())
            .is_some_and(|start| start <= port)
}

/// The value following `flag` in an argument list, each time it appears.
fn flag_values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|pair| pair[0] == flag)
        .map(|pair| pair[1].as_str())
        .collect()
}

#[test]
fn compose_fleet_runs_its_node_configs_against_the_test_primary() {
    let dir = deploy_dir().join("compose");
    let docs = yaml_documents(&dir.join("compose.yaml"));
    let [compose] = docs.as_slice() else {
        panic!("compose.yaml: one document expected");
    };
    let services = compose["services"]
        .as_hash()
        .expect("compose.yaml: services");
    let names: Vec<&str> = services.keys().map(|k| text(k, "service name")).collect();
    assert_eq!(names, ["primary", "node1", "node2", "node3"]);
    let declared_volumes: BTreeSet<&str> = compose["volumes"]
        .as_hash()
        .expect("compose.yaml: volumes")
        .keys()
        .map(|k| text(k, "volume name"))
        .collect();
    let exposed_by_image = dockerfile_exposed();
    let image = text(&compose["services"]["primary"]["image"], "primary.image");

    // The test primary: `mxfleet test-primary`, on a port the nodes deliver to.
    let primary = &compose["services"]["primary"];
    let primary_args = strings(&primary["command"], "primary.command");
    assert_eq!(primary_args[0], "test-primary");
    let [primary_listen] = flag_values(&primary_args, "--listen")[..] else {
        panic!("primary: one --listen expected: {primary_args:?}");
    };
    let primary_port = port_of(primary_listen);
    let primary_domains = flag_values(&primary_args, "--domain");
    let [primary_dir] = flag_values(&primary_args, "--dir")[..] else {
        panic!("primary: one --dir expected");
    };
    let primary_mounts = mounts(primary, "primary");
    assert!(
        primary_mounts
            .iter()
            .any(|m| m.target == primary_dir && declared_volumes.contains(m.source.as_str())),
        "the primary's --dir must be a named volume"
    );
    let (_, exposed) = container_ports(primary, "primary");
    assert_eq!(exposed, [primary_port]);
    assert!(may_bind(primary, primary_port));

    let mut data_volumes = BTreeSet::new();
    let mut fleet = Vec::new();
    for id in 1..=3u64 {
        let name = format!("node{id}");
        let service = &compose["services"][name.as_str()];
        assert_eq!(text(&service["image"], "image"), image, "{name}: one image");
        let args = strings(&service["command"], &format!("{name}.command"));
        let [config_path] = flag_values(&args, "--config")[..] else {
            panic!("{name}: serve --config expected: {args:?}");
        };
        assert_eq!(args[0], "serve");
        let service_mounts = mounts(service, &name);
        let config_mount = service_mounts
            .iter()
            .find(|m| m.target == config_path)
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {config_path}"));
        assert!(
            config_mount.read_only,
            "{name}: the config is mounted read-only"
        );
        let config_file = dir.join(&config_mount.source);
        let config = parse_config(&read(&config_file), &config_file.display().to_string());

        assert_eq!(config.node.id, id);
        // Peers dial each other by compose service name.
        assert_eq!(host_of(&config.peer.advertise), name);
        assert_eq!(config.peer.transport, PeerTransport::Plaintext);
        let data = service_mounts
            .iter()
            .find(|m| Path::new(&m.target) == config.node.data_dir)
            .unwrap_or_else(|| panic!("{name}: no volume at node.data_dir"));
        assert!(declared_volumes.contains(data.source.as_str()), "{name}");
        assert!(
            data_volumes.insert(data.source.clone()),
            "{name}: shared data volume"
        );

        // Published and exposed ports are the ones the config listens on.
        let (published, exposed) = container_ports(service, &name);
        assert_eq!(exposed, [config.peer.listen.port()], "{name}: peer port");
        let mut expected = vec![config.smtp.listen.port()];
        expected.extend(config.metrics_listen.map(|m| m.port()));
        assert_eq!(published, expected, "{name}: SMTP and metrics ports");
        assert!(may_bind(service, config.smtp.listen.port()), "{name}");
        for port in listening_ports(&config) {
            assert!(
                exposed_by_image.contains(&port),
                "Dockerfile must EXPOSE {port}"
            );
        }

        // Mail goes to the test primary, which takes it.
        for relay in &config.relay_domains {
            let next_hop = relay.delivery.route.primary.to_string();
            assert_eq!(next_hop, format!("[primary]:{primary_port}"), "{name}");
            assert!(
                primary_domains.contains(&relay.domain.as_str()),
                "{}",
                relay.domain
            );
        }

        // `docker compose exec nodeN mxfleet cluster status` works as written: the CLI's
        // default endpoint, and the token compose sets.
        let admin = config.admin.as_ref().expect("an admin listener");
        assert_eq!(admin.listen.to_string(), ADMIN_CLI_DEFAULT);
        let token = text(&service["environment"]["MXFLEET_TOKEN"], "MXFLEET_TOKEN");
        assert!(
            admin
                .tokens
                .iter()
                .any(|t| t.secret == TokenSecret::Sha256(TokenSecret::digest_of(token))),
            "{name}: MXFLEET_TOKEN matches no admin token"
        );
        let grace = text(&service["stop_grace_period"], "stop_grace_period");
        assert!(duration(grace) > SHUTDOWN_DRAIN, "{name}: {grace}");
        fleet.push(config);
    }

    // node1 bootstraps all three; the others must agree on the list.
    let members = &fleet[0].cluster.initial_members;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    for config in &fleet {
        assert_eq!(&config.cluster.initial_members, members);
    }
}

// --- Kubernetes ----------------------------------------------------------------------------

/// Every document of every `.yaml` file in `deploy/kubernetes/`.
fn kubernetes_objects() -> Vec<Yaml> {
    let dir = deploy_dir().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list deploy/kubernetes")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files.iter().flat_map(|path| yaml_documents(path)).collect()
}

fn object<'a>(objects: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn named<'a>(items: &'a Yaml, name: &str, what: &str) -> &'a Yaml {
    list(items, what)
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{what}: nothing named {name}"))
}

/// A container's port number by name (`smtp` → 25).
fn container_port(container: &Yaml, name: &str) -> u16 {
    let port = named(&container["ports"], name, "ports")["containerPort"]
        .as_i64()
        .expect("containerPort");
    u16::try_from(port).expect("a port number")
}

/// What the init container's script does, done here: the template with this pod's
/// name, id and ordinal filled in.
fn render(template: &str, ordinal: u64) -> String {
    template
        .replace("@NODE_ID@", &(ordinal + 1).to_string())
        .replace("@POD_NAME@", &format!("mxfleet-{ordinal}"))
        .replace("@ORDINAL@", &ordinal.to_string())
}

#[test]
fn kubernetes_statefulset_renders_a_valid_config_for_each_pod() {
    let objects = kubernetes_objects();
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes");
    }
    let sts = object(&objects, "StatefulSet", "mxfleet");
    let namespace = text(&sts["metadata"]["namespace"], "namespace");
    for o in &objects {
        if o["kind"].as_str() != Some("Namespace") {
            assert_eq!(
                o["metadata"]["namespace"].as_str(),
                Some(namespace),
                "{o:?}"
            );
        }
    }
    let replicas = sts["spec"]["replicas"].as_i64().expect("replicas");
    assert_eq!(replicas, 3);
    let selector = &sts["spec"]["selector"]["matchLabels"];
    assert_eq!(&sts["spec"]["template"]["metadata"]["labels"], selector);

    // Peers: a headless Service that publishes pods before they are ready.
    let peers_name = text(&sts["spec"]["serviceName"], "serviceName");
    let peers = object(&objects, "Service", peers_name);
    assert_eq!(peers["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        peers["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    assert_eq!(&peers["spec"]["selector"], selector);

    // Voluntary disruptions take one voter at a time.
    let pdb = objects
        .iter()
        .find(|o| o["kind"].as_str() == Some("PodDisruptionBudget"))
        .expect("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_i64(), Some(1));
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    let pod = &sts["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("grace");
    assert!(Duration::from_secs(grace as u64) > SHUTDOWN_DRAIN);
    let container = named(&pod["containers"], "mxfleet", "containers");
    let init = named(&pod["initContainers"], "render-config", "initContainers");
    let args = strings(&container["args"], "args");
    let [config_path] = flag_values(&args, "--config")[..] else {
        panic!("serve --config expected: {args:?}");
    };

    // The template, where the init container reads it, and the script that renders it
    // to where the node reads its config.
    let script = strings(&init["args"], "render-config args").join("\n");
    let template_mount = named(&init["volumeMounts"], "template", "volumeMounts");
    let template_dir = text(&template_mount["mountPath"], "mountPath");
    let config_map_name = text(
        &named(&pod["volumes"], "template", "volumes")["configMap"]["name"],
        "configMap name",
    );
    let config_map = object(&objects, "ConfigMap", config_map_name);
    let (key, template) = config_map["data"]
        .as_hash()
        .and_then(|data| data.iter().next())
        .map(|(k, v)| (text(k, "key"), text(v, "template")))
        .expect("one template in the ConfigMap");
    assert!(
        script.contains(&format!("{template_dir}/{key}")),
        "{script}"
    );
    assert!(script.contains(&format!("> {config_path}")), "{script}");
    assert!(
        script.contains(&format!("mxfleet config check {config_path}")),
        "{script}"
    );
    for (placeholder, value) in [
        ("@NODE_ID@", "${node_id}"),
        ("@POD_NAME@", "${HOSTNAME}"),
        ("@ORDINAL@", "${ordinal}"),
    ] {
        assert!(
            script.contains(&format!("s/{placeholder}/{value}/g")),
            "{script}"
        );
        assert!(template.contains(placeholder), "{placeholder} unused");
    }
    assert!(script.contains("ordinal=\"${HOSTNAME##*-}\""), "{script}");
    assert!(script.contains("node_id=$((ordinal + 1))"), "{script}");

    let mounted: Vec<(String, String)> = list(&container["volumeMounts"], "volumeMounts")
        .iter()
        .map(|m| {
            (
                text(&m["name"], "name").to_owned(),
                text(&m["mountPath"], "mountPath").to_owned(),
            )
        })
        .collect();
    let secret_dirs: Vec<&str> = mounted
        .iter()
        .filter(|(name, _)| {
            // Claims (volumeClaimTemplates) are not among the pod's volumes.
            list(&pod["volumes"], "volumes")
                .iter()
                .any(|v| v["name"].as_str() == Some(name) && !v["secret"].is_badvalue())
        })
        .map(|(_, path)| path.as_str())
        .collect();
    let in_secret = |file: &Path| secret_dirs.iter().any(|dir| file.starts_with(dir));

    let mut rendered = Vec::new();
    for ordinal in 0..replicas as u64 {
        let pod_name = format!("mxfleet-{ordinal}");
        let text = render(template, ordinal);
        assert!(!text.contains('@'), "a placeholder is left:\n{text}");
        let config = parse_config(&text, &format!("{pod_name}:{config_path}"));
        assert_eq!(config.node.id, ordinal + 1);
        assert_eq!(config.node.name, pod_name);
        assert_eq!(
            host_of(&config.peer.advertise),
            format!("{pod_name}.{peers_name}.{namespace}.svc.cluster.local")
        );
        assert_eq!(config.peer.listen.port(), container_port(container, "peer"));
        assert_eq!(config.smtp.listen.port(), container_port(container, "smtp"));
        let metrics: SocketAddr = config.metrics_listen.expect("[metrics] listen");
        assert!(
            metrics.ip().is_unspecified(),
            "the kubelet probes the pod IP"
        );
        assert_eq!(metrics.port(), container_port(container, "metrics"));
        for port in listening_ports(&config) {
            assert!(dockerfile_exposed().contains(&port), "EXPOSE {port}");
        }
        // The data directory is the claim, and every file the config names is in a
        // mounted Secret.
        let data = mounted
            .iter()
            .find(|(_, path)| Path::new(path) == config.node.data_dir)
            .expect("a volume at node.data_dir");
        let claims = list(&sts["spec"]["volumeClaimTemplates"], "volumeClaimTemplates");
        assert!(
            claims
                .iter()
                .any(|c| c["metadata"]["name"].as_str() == Some(&data.0))
        );
        let PeerTransport::MutualTls { cert, key, ca } = &config.peer.transport else {
            panic!("peers must use mutual TLS");
        };
        let mut files = vec![cert.clone(), key.clone(), ca.clone()];
        for tls in &config.smtp.tls_certificates {
            files.extend([tls.cert.clone(), tls.key.clone()]);
        }
        for token in &config.admin.as_ref().expect("admin").tokens {
            if let TokenSecret::Unread(path) = &token.secret {
                files.push(path.clone());
            }
        }
        for file in &files {
            assert!(
                in_secret(file),
                "{} is in no mounted Secret",
                file.display()
            );
        }
        rendered.push(config);
    }
    // Every pod bootstraps the same voters, each one a pod of this StatefulSet.
    let members = &rendered[0].cluster.initial_members;
    assert_eq!(members.len(), replicas as usize);
    for config in &rendered {
        assert_eq!(&config.cluster.initial_members, members);
        assert_eq!(config.relay_domains, rendered[0].relay_domains);
    }

    // Probes: liveness on the SMTP port, readiness on /ready (a leader is known).
    let liveness = &container["livenessProbe"];
    assert_eq!(liveness["tcpSocket"]["port"].as_str(), Some("smtp"));
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"].as_str(), Some("/ready"));
    assert_eq!(readiness["port"].as_str(), Some("metrics"));
    assert!(!container["startupProbe"].is_badvalue(), "a startup probe");
    // Port 25 as a non-root user.
    let sysctl = named(
        &pod["securityContext"]["sysctls"],
        "net.ipv4.ip_unprivileged_port_start",
        "sysctls",
    );
    let start: u16 = text(&sysctl["value"], "value").parse().expect("a port");
    assert!(start <= rendered[0].smtp.listen.port());
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

    // SMTP from outside reaches the pods' smtp port, keeping the client's address.
    let smtp = object(&objects, "Service", "mxfleet-smtp");
    let smtp_port = named(&smtp["spec"]["ports"], "smtp", "ports");
    assert_eq!(smtp_port["port"].as_i64(), Some(25));
    assert_eq!(smtp_port["targetPort"].as_str(), Some("smtp"));
    assert_eq!(
        smtp["spec"]["externalTrafficPolicy"].as_str(),
        Some("Local")
    );
    assert_eq!(&smtp["spec"]["selector"], selector);
}

// --- systemd -------------------------------------------------------------------------------

/// `Key=value` settings of one section of a unit file, in order (keys may repeat).
fn unit_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
        } else if current == section {
            let (key, value) = line.split_once('=').expect("Key=value");
            settings.push((key.to_owned(), value.to_owned()));
        }
    }
    settings
}

#[test]
fn systemd_unit_checks_the_config_restarts_on_failure_and_outwaits_the_drain() {
    let text = read(&deploy_dir().join("systemd/mxfleet.service"));
    let service = unit_section(&text, "Service");
    let get = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let values = get(key);
        let [value] = values.as_slice() else {
            panic!("{key}: one setting expected, found {values:?}");
        };
        value
    };
    let start = one("ExecStart");
    let config = start
        .strip_prefix("/usr/local/bin/mxfleet serve --config ")
        .unwrap_or_else(|| panic!("ExecStart={start}"));
    assert_eq!(
        one("ExecStartPre"),
        format!("/usr/local/bin/mxfleet config check {config}")
    );
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("RestartPreventExitStatus"), "64 65");
    assert!(duration(one("TimeoutStopSec")) > SHUTDOWN_DRAIN);
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(one("RestrictAddressFamilies").contains("AF_INET6"));
    let open_files: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE");
    // The example fleet's data directory is the one the unit makes writable.
    let example = read(&deploy_dir().join("examples/node1.toml"));
    let example = parse_config(&example, "node1.toml");
    assert_eq!(
        Path::new("/var/lib").join(one("StateDirectory")),
        example.node.data_dir
    );
    assert!(
        get("ReadWritePaths")
            .iter()
            .any(|p| Path::new(p) == example.node.data_dir)
    );
    assert!(open_files > 2 * example.smtp.max_connections as u64);
    // systemd ignores start-limit keys in [Service]; they belong to [Unit].
    assert!(get("StartLimitIntervalSec").is_empty() && get("StartLimitBurst").is_empty());
}
