//! Every `.toml` under `deploy/` must be a node config that validates.
//!
//! The files name TLS paths under `/etc/mxfleet/tls/` that do not exist on a build
//! machine, so existence checks are skipped; everything else is checked as in
//! production. The example fleet is also checked as a whole: the nodes agree on
//! `initial_members`, and each one's entry matches its own identity.

use std::path::{Path, PathBuf};

use mxfleet_node::config::{FileChecks, NodeConfig, parse_with};

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
            matches!(
                config.peer.transport,
                mxfleet_node::config::PeerTransport::MutualTls { .. }
            ),
            "node {} must use mutual TLS",
            config.node.id
        );
    }
}
