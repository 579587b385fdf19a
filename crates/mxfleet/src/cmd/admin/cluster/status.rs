//! `mxfleet cluster status`: the answering node, the leader and term, the node's log
//! indices, a member table, and which nodes reach which destinations.
//!
//! [`render`] is sans-IO: it takes the reply and the current time and returns the text.

use std::fmt::Write as _;

use mxfleet_proto::admin::v1::{ClusterStatus, ClusterStatusRequest};

use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::{CliError, Rpc};
use crate::cmd::admin::format::{millis_span, relative, time, yes_no};
use crate::cmd::admin::json::ClusterStatusJson;
use crate::cmd::admin::table::Table;
use crate::cmd::admin::{now_ms, print_json, print_text};

const STATUS: Rpc = Rpc {
    name: "ClusterAdmin.Status",
    permission: "view",
};

pub async fn run(admin: &Admin, linearizable: bool, json: bool) -> Result<u8, CliError> {
    let request = admin.request(ClusterStatusRequest { linearizable });
    let status = admin.call(STATUS, admin.cluster().status(request)).await?;
    if json {
        print_json(&ClusterStatusJson::from(&status))?;
    } else {
        print_text(&render(&status, now_ms()))?;
    }
    Ok(0)
}

fn index(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |i| i.to_string())
}

/// The whole report, as people read it.
pub fn render(status: &ClusterStatus, now_ms: u64) -> String {
    let mut out = String::new();
    let leader = match status.leader {
        Some(id) => format!("node {id}"),
        None => "none known".to_owned(),
    };
    let _ = writeln!(out, "answered by  node {}", status.answered_by);
    let _ = writeln!(out, "leader       {leader}, term {}", status.term);
    let _ = writeln!(
        out,
        "indices      last log {}, committed {}, applied {}, snapshot {}",
        index(status.last_log_index),
        index(status.committed_index),
        index(status.applied_index),
        index(status.snapshot_index),
    );
    out.push('\n');

    let mut members = Table::new(&[
        "ID",
        "ADDR",
        "SITE",
        "MEMBERSHIP",
        "ROLE",
        "MATCHED",
        "LAG",
        "LAST CONTACT",
        "DRAINED",
        "DELIVERING",
    ])
    .right(&[0, 5, 6, 7]);
    for m in &status.members {
        members.push(vec![
            m.id.to_string(),
            m.addr.clone(),
            m.site.clone(),
            m.membership.clone(),
            m.role.clone(),
            index(m.matched_index),
            index(m.lag_entries),
            m.last_contact_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{} ago", millis_span(ms))),
            yes_no(m.drained).to_owned(),
            yes_no(m.delivering).to_owned(),
        ]);
    }
    if members.is_empty() {
        out.push_str("no members known\n");
    } else {
        out.push_str(&members.render());
    }
    if !status.leader_view {
        out.push_str(
            "(MATCHED, LAG and LAST CONTACT need the leader's view, and the leader was not \
             reached)\n",
        );
    }
    out.push('\n');

    let mut reach = Table::new(&[
        "DESTINATION",
        "UP",
        "NODE",
        "REACHABLE",
        "AT",
        "SEEN",
        "DETAIL",
    ])
    .right(&[2])
    .cap(6, 80);
    for d in &status.destinations {
        if d.nodes.is_empty() {
            reach.push(vec![d.destination.clone(), yes_no(d.up).to_owned()]);
        }
        for n in &d.nodes {
            reach.push(vec![
                d.destination.clone(),
                yes_no(d.up).to_owned(),
                n.node.to_string(),
                yes_no(n.reachable).to_owned(),
                time(n.at),
                relative(n.at, now_ms),
                n.detail.clone(),
            ]);
        }
    }
    if reach.is_empty() {
        out.push_str("no destination reachability reported yet\n");
    } else {
        out.push_str(&reach.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use mxfleet_proto::admin::v1::{DestinationReachability, Member, NodeReachability};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn member(id: u64, role: &str, lag: Option<u64>) -> Member {
        Member {
            id,
            addr: format!("10.0.0.{id}:7401"),
            site: "fra1".into(),
            membership: "voter".into(),
            role: role.into(),
            matched_index: lag.map(|l| 120 - l),
            lag_entries: lag,
            last_contact_ms: lag.map(|_| 40),
            drained: id == 3,
            delivering: id != 3,
        }
    }

    #[test]
    fn status_lists_leader_indices_members_and_reachability() {
        let status = ClusterStatus {
            answered_by: 2,
            leader: Some(1),
            term: 7,
            last_log_index: Some(120),
            committed_index: Some(120),
            applied_index: Some(119),
            snapshot_index: None,
            members: vec![
                member(1, "leader", Some(0)),
                member(2, "follower", Some(3)),
                member(3, "follower", Some(0)),
            ],
            leader_view: true,
            destinations: vec![DestinationReachability {
                destination: "[mx.example.org]:25".into(),
                up: true,
                nodes: vec![NodeReachability {
                    node: 2,
                    reachable: true,
                    at: NOW - 65_000,
                    detail: "250 ok".into(),
                }],
            }],
        };
        let text = render(&status, NOW);
        let expected = "\
answered by  node 2
leader       node 1, term 7
indices      last log 120, committed 120, applied 119, snapshot -

ID  ADDR           SITE  MEMBERSHIP  ROLE      MATCHED  LAG  LAST CONTACT  DRAINED  DELIVERING
 1  10.0.0.1:7401  fra1  voter       leader        120    0      40ms ago  no       yes
 2  10.0.0.2:7401  fra1  voter       follower      117    3      40ms ago  no       yes
 3  10.0.0.3:7401  fra1  voter       follower      120    0      40ms ago  yes      no

DESTINATION          UP   NODE  REACHABLE  AT                    SEEN       DETAIL
[mx.example.org]:25  yes     2  yes        2023-11-14T22:12:15Z  1m 5s ago  250 ok
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn without_the_leaders_view_the_replication_columns_are_explained() {
        let status = ClusterStatus {
            answered_by: 3,
            term: 9,
            members: vec![member(3, "unknown", None)],
            ..Default::default()
        };
        let text = render(&status, NOW);
        assert!(text.contains("leader       none known, term 9"), "{text}");
        assert!(text.contains("the leader was not reached"), "{text}");
        assert!(
            text.contains("no destination reachability reported yet"),
            "{text}"
        );
    }
}
