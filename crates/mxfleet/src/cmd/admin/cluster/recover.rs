//! `mxfleet cluster recover --config node.toml [--from-snapshot FILE]
//! --yes-i-have-lost-the-majority`: offline disaster recovery, run on one STOPPED node
//! when a majority of the voters is lost for good. It talks to no node: it rewrites the
//! node's own data directory (`mxfleet_queue::recover`) so that the node starts as the
//! only voter of a new membership {itself} with the queue it holds, or with the queue of
//! a backup archive restored into an empty data directory.
//!
//! Refuses (and changes nothing) without the flag (exit 2), when the node seems to run
//! (its peer, SMTP or admin port answers, or its Raft log is locked: exit 1), when the
//! data directory holds no queue and no archive is given (exit 1), and when an archive
//! is given for a data directory that is not empty (exit 1). An invalid configuration
//! exits 64.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mxfleet_core::UnixMillis;
use mxfleet_queue::recover::{RecoverReport, RecoverTarget, recover_from_archive, recover_local};
use serde::Serialize;

use crate::cmd::admin::error::CliError;
use crate::cmd::admin::{now_ms, print_json, print_text};
use crate::cmd::{EXIT_CONFIG, EXIT_USAGE};

/// How long a port probe waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What the operator must read before (and whenever) this runs.
pub const WARNING: &str = "\
WARNING: `mxfleet cluster recover` forces a new membership in which this node is the ONLY
voter. Use it only when a majority of the voters is lost for good.
  - Mail the lost nodes committed that this node never received is LOST: its senders got
    250 and will not send it again.
  - Entries this node holds that were never committed are applied anyway: their senders
    got no 250 and may have sent them again, so some messages may be DELIVERED TWICE.
  - NEVER start a lost node again with its old data directory: it still believes in the
    old membership and could form a second cluster with the other lost nodes. Wipe their
    data directories and add them back as new nodes.
";

/// `cluster recover --json`.
#[derive(Debug, Serialize)]
pub struct RecoverJson {
    pub node: u64,
    pub source: String,
    pub previous_term: u64,
    pub previous_voters: Vec<u64>,
    pub previous_last_index: Option<u64>,
    pub previous_committed_index: Option<u64>,
    pub replayed_entries: u64,
    pub replayed_uncommitted_entries: u64,
    pub new_term: u64,
    pub new_index: u64,
    pub entries: u64,
    pub live_entries: u64,
    pub restored_bodies: u64,
    pub missing_bodies: Vec<MissingJson>,
    pub old_log: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MissingJson {
    pub sha256: String,
    pub queue_ids: Vec<String>,
}

pub async fn run(
    config: PathBuf,
    from_snapshot: Option<PathBuf>,
    confirmed: bool,
    json: bool,
) -> u8 {
    eprint!("{WARNING}");
    let config = match mxfleet_node::config::load(&config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return EXIT_CONFIG;
        }
    };
    if !confirmed {
        eprintln!(
            "mxfleet: refusing to recover without --yes-i-have-lost-the-majority; nothing was \
             changed"
        );
        return EXIT_USAGE;
    }
    let mut ports = vec![("peer", config.peer.listen), ("SMTP", config.smtp.listen)];
    if let Some(admin) = &config.admin {
        ports.push(("admin", admin.listen));
    }
    let target = RecoverTarget {
        data_dir: config.node.data_dir.clone(),
        node_id: config.node.id,
        addr: config.peer.advertise.clone(),
        site: config.node.site.clone(),
    };
    let members: Vec<u64> = config
        .cluster
        .initial_members
        .iter()
        .map(|m| m.id)
        .collect();
    super::super::finish(recover(target, ports, from_snapshot.as_deref(), &members, json).await)
}

async fn recover(
    target: RecoverTarget,
    ports: Vec<(&'static str, SocketAddr)>,
    from_snapshot: Option<&Path>,
    initial_members: &[u64],
    json: bool,
) -> Result<u8, CliError> {
    let answering = tokio::task::spawn_blocking(move || {
        ports
            .into_iter()
            .filter(|(_, addr)| answers(*addr))
            .map(|(name, addr)| format!("{name} {addr}"))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| CliError::Failed(format!("probing the node's ports failed: {e}")))?;
    if !answering.is_empty() {
        return Err(CliError::Failed(format!(
            "node {} seems to be running ({} answer{}); stop it first, then run recover \
             again; nothing was changed",
            target.node_id,
            answering.join(", "),
            if answering.len() == 1 { "s" } else { "" }
        )));
    }
    let now = UnixMillis(now_ms());
    let report = match from_snapshot {
        Some(archive) => recover_from_archive(&target, archive, now).await,
        None => recover_local(&target, now).await,
    }
    .map_err(|e| CliError::Failed(e.to_string()))?;
    let document = document(target.node_id, &report);
    if json {
        print_json(&document)?;
    } else {
        print_text(&render(&document))?;
    }
    for missing in &document.missing_bodies {
        eprintln!(
            "mxfleet: WARNING: no node holds body {} of message(s) {} any more: they cannot \
             be delivered (delete them with `mxfleet queue delete`)",
            missing.sha256,
            missing.queue_ids.join(", ")
        );
    }
    if initial_members.iter().any(|id| *id != target.node_id) {
        eprintln!(
            "mxfleet: edit the configuration: [cluster] initial_members still lists the old \
             members; it is only read on a new data directory, but list only node {} there \
             so that nobody bootstraps the old fleet from it",
            target.node_id
        );
    }
    Ok(0)
}

/// True when something accepts connections on `addr` (an unspecified address is probed
/// on loopback).
fn answers(addr: SocketAddr) -> bool {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    addr.port() != 0 && TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok()
}

fn document(node: u64, report: &RecoverReport) -> RecoverJson {
    RecoverJson {
        node,
        source: report.source.clone(),
        previous_term: report.previous_term,
        previous_voters: report.previous_voters.clone(),
        previous_last_index: report.previous_last_index,
        previous_committed_index: report.previous_committed_index,
        replayed_entries: report.replayed,
        replayed_uncommitted_entries: report.replayed_uncommitted,
        new_term: report.new_term,
        new_index: report.new_index,
        entries: report.entries,
        live_entries: report.live_entries,
        restored_bodies: report.restored_bodies,
        missing_bodies: report
            .missing_bodies
            .iter()
            .map(|(digest, ids)| MissingJson {
                sha256: digest.to_hex(),
                queue_ids: ids.iter().map(|id| id.to_string()).collect(),
            })
            .collect(),
        old_log: report.old_log.as_ref().map(|p| p.display().to_string()),
    }
}

fn render(d: &RecoverJson) -> String {
    let voters: Vec<String> = d.previous_voters.iter().map(|v| v.to_string()).collect();
    let index = |i: Option<u64>| i.map_or_else(|| "-".to_owned(), |i| i.to_string());
    let mut out = format!(
        "node {} recovered from {} as the only voter (term {}, log index {})\n\
         before: term {}, voters {{{}}}, last log index {}, known committed {}\n\
         replayed {} log entries ({} beyond the known commit); the queue holds {} entries \
         ({} live)\n",
        d.node,
        d.source,
        d.new_term,
        d.new_index,
        d.previous_term,
        voters.join(", "),
        index(d.previous_last_index),
        index(d.previous_committed_index),
        d.replayed_entries,
        d.replayed_uncommitted_entries,
        d.entries,
        d.live_entries,
    );
    if d.restored_bodies > 0 {
        out.push_str(&format!(
            "restored {} bodies from the archive\n",
            d.restored_bodies
        ));
    }
    if let Some(old) = &d.old_log {
        out.push_str(&format!(
            "the old Raft log was kept in {old} (remove it once you are done)\n"
        ));
    }
    out.push_str(&format!(
        "next: start the node (`mxfleet serve`); it leads alone. Then add fresh nodes (empty \
         data directories) with `mxfleet cluster add ID HOST:PORT --site SITE` and, once \
         caught up, `mxfleet cluster promote ID`.\n\
         {} missing bodies\n",
        d.missing_bodies.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_or_closed_address_is_probed_on_loopback_without_panicking() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(answers(SocketAddr::from(([0, 0, 0, 0], port))));
        drop(listener);
        assert!(!answers(SocketAddr::from(([127, 0, 0, 1], 0))));
    }

    #[test]
    fn the_warning_names_what_can_be_lost_or_doubled() {
        assert!(WARNING.contains("LOST"));
        assert!(WARNING.contains("DELIVERED TWICE"));
        assert!(WARNING.contains("NEVER start a lost node"));
    }
}
