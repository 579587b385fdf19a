//! `mxfleet cluster …`: see and change the fleet's membership.
//!
//! - `status [--linearizable]`: leader, term, indices, members, reachability (status.rs).
//! - `add ID ADDR --site SITE`: join a node as a learner.
//! - `promote ID`: make a learner a voter.
//! - `remove ID`: take a node out of the cluster.
//! - `transfer-leader ID`: hand leadership to another voter.
//! - `drain ID [--undo]`: stop SMTP intake and delivery on a node, or resume them.
//! - `snapshot --out FILE [--local]`: download a backup archive (snapshot.rs).
//! - `recover --config FILE [--from-snapshot FILE] --yes-i-have-lost-the-majority`:
//!   offline, on a stopped node: make it the only voter after losing the majority, or
//!   restore an archive into an empty data directory (recover.rs). Talks to no node.
//!
//! `status` needs the token permission `view`; `snapshot` needs `cluster` and
//! `read-body`; the others need `cluster`. With `--json` the changes print a
//! `MembershipJson` document, `status` a `ClusterStatusJson`, `snapshot` a
//! `SnapshotJson`, `recover` a `RecoverJson`.

mod recover;
mod snapshot;
mod status;

use clap::{Args, Subcommand};
use mxfleet_proto::admin::v1::{AddLearnerRequest, DrainRequest, NodeRequest};

use super::connection::{Admin, ClientArgs};
use super::error::{CliError, Rpc};
use super::format::messages;
use super::json::MembershipJson;
use super::{env_token, finish, print_json, print_text};

const ADD_LEARNER: Rpc = Rpc {
    name: "ClusterAdmin.AddLearner",
    permission: "cluster",
};
const PROMOTE: Rpc = Rpc {
    name: "ClusterAdmin.Promote",
    permission: "cluster",
};
const REMOVE: Rpc = Rpc {
    name: "ClusterAdmin.Remove",
    permission: "cluster",
};
const TRANSFER_LEADER: Rpc = Rpc {
    name: "ClusterAdmin.TransferLeader",
    permission: "cluster",
};
const DRAIN: Rpc = Rpc {
    name: "ClusterAdmin.Drain",
    permission: "cluster",
};

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Show the leader, term, log indices, each member's replication and health, and
    /// which nodes reach which destinations.
    Status {
        /// Have the node confirm with the leader that it is up to date before answering.
        #[arg(long)]
        linearizable: bool,
    },
    /// Join a node as a learner: it copies the log but does not vote until promoted.
    Add {
        /// The new node's id (`[node] id` in its configuration).
        id: u64,
        /// Its peer address as HOST:PORT (`[peer]` in its configuration).
        #[arg(value_parser = parse_peer_addr)]
        addr: String,
        /// Its site, e.g. fra1 (`[node] site`).
        #[arg(long)]
        site: String,
    },
    /// Make a learner a voter, once it has caught up (LAG in `cluster status`).
    Promote {
        /// The node id.
        id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node id.
        id: u64,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The voter that should lead.
        id: u64,
    },
    /// Download a backup archive of the node's queue (metadata and every queued body)
    /// into FILE (written as FILE.tmp, renamed when complete). Needs `cluster` and
    /// `read-body`.
    Snapshot {
        /// Where to write the archive.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// Take it from the node's own replica without confirming with the leader first
        /// (works on a node without quorum; may miss the newest messages).
        #[arg(long)]
        local: bool,
    },
    /// OFFLINE disaster recovery on a stopped node after a majority of the voters is
    /// lost for good: make it the only voter of a new membership, keeping its queue (or
    /// restoring an archive into an empty data directory). Prints what may be lost.
    Recover {
        /// The stopped node's configuration file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: std::path::PathBuf,
        /// Restore this backup archive (from `cluster snapshot`) into the node's empty
        /// data directory instead of using its own data.
        #[arg(long, value_name = "FILE")]
        from_snapshot: Option<std::path::PathBuf>,
        /// Confirms that the majority is lost for good and you read the warnings.
        #[arg(long)]
        yes_i_have_lost_the_majority: bool,
    },
    /// Stop SMTP intake (421 4.3.2) and delivery on a node and move its work to the
    /// others; --undo puts it back into service.
    Drain {
        /// The node id.
        id: u64,
        /// Put a drained node back into service.
        #[arg(long)]
        undo: bool,
    },
}

fn parse_peer_addr(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(text.to_owned())
        }
        _ => Err("write the peer address as HOST:PORT, e.g. 10.0.0.4:7401".to_owned()),
    }
}

/// Runs one `cluster` subcommand; returns the exit code.
pub async fn run(args: ClusterArgs) -> u8 {
    // Offline: reaches no node, so it needs no endpoint or token.
    if let ClusterCommand::Recover {
        config,
        from_snapshot,
        yes_i_have_lost_the_majority,
    } = args.command
    {
        return recover::run(
            config,
            from_snapshot,
            yes_i_have_lost_the_majority,
            args.client.json,
        )
        .await;
    }
    finish(dispatch(args).await)
}

async fn dispatch(args: ClusterArgs) -> Result<u8, CliError> {
    let admin = Admin::connect(&args.client, env_token()).await?;
    let mut cluster = admin.cluster();
    let json = args.client.json;
    let change = |command: &'static str, node: u64| MembershipJson {
        command,
        node,
        log_index: None,
        leader: None,
        leased_messages: None,
    };
    let (document, text) = match args.command {
        ClusterCommand::Status { linearizable } => {
            return status::run(&admin, linearizable, json).await;
        }
        ClusterCommand::Snapshot { out, local } => {
            return snapshot::run(&admin, out, local, json).await;
        }
        ClusterCommand::Recover { .. } => {
            return Err(CliError::Usage(
                "`cluster recover` runs offline; it does not connect to a node".into(),
            ));
        }
        ClusterCommand::Add { id, addr, site } => {
            let request = AddLearnerRequest {
                id,
                addr: addr.clone(),
                site: site.clone(),
            };
            let reply = admin
                .call(ADD_LEARNER, cluster.add_learner(admin.request(request)))
                .await?;
            let text = format!(
                "node {id} joined as a learner at {addr} (site {site}), log index {}\n\
                 once it has caught up (LAG in `mxfleet cluster status`), make it a voter \
                 with `mxfleet cluster promote {id}`\n",
                reply.log_index
            );
            (
                MembershipJson {
                    log_index: Some(reply.log_index),
                    ..change("add", id)
                },
                text,
            )
        }
        ClusterCommand::Promote { id } => {
            let call = cluster.promote(admin.request(NodeRequest { id }));
            let reply = admin.call(PROMOTE, call).await?;
            let text = format!("node {id} is a voter now (log index {})\n", reply.log_index);
            (
                MembershipJson {
                    log_index: Some(reply.log_index),
                    ..change("promote", id)
                },
                text,
            )
        }
        ClusterCommand::Remove { id } => {
            let call = cluster.remove(admin.request(NodeRequest { id }));
            let reply = admin.call(REMOVE, call).await?;
            let text = format!("node {id} was removed (log index {})\n", reply.log_index);
            (
                MembershipJson {
                    log_index: Some(reply.log_index),
                    ..change("remove", id)
                },
                text,
            )
        }
        ClusterCommand::TransferLeader { id } => {
            let call = cluster.transfer_leader(admin.request(NodeRequest { id }));
            let reply = admin.call(TRANSFER_LEADER, call).await?;
            let text = match reply.leader {
                Some(leader) if leader == id => format!("node {id} leads now\n"),
                Some(leader) => format!(
                    "asked node {id} to take over; node {leader} still leads (check \
                     `mxfleet cluster status`)\n"
                ),
                None => format!(
                    "asked node {id} to take over; no leader is known yet (check \
                     `mxfleet cluster status`)\n"
                ),
            };
            (
                MembershipJson {
                    leader: reply.leader,
                    ..change("transfer-leader", id)
                },
                text,
            )
        }
        ClusterCommand::Drain { id, undo } => {
            let call = cluster.drain(admin.request(DrainRequest { id, undo }));
            let reply = admin.call(DRAIN, call).await?;
            let text = if undo {
                format!(
                    "node {id} is back in service (log index {})\n",
                    reply.log_index
                )
            } else {
                format!(
                    "node {id} is drained (log index {}): it takes no SMTP and no delivery \
                     work; {} still leased to it come back to the queue as it returns them \
                     or their leases end\n",
                    reply.log_index,
                    messages(reply.leased_messages)
                )
            };
            let command = if undo { "undrain" } else { "drain" };
            let document = MembershipJson {
                log_index: Some(reply.log_index),
                leased_messages: Some(reply.leased_messages),
                ..change(command, id)
            };
            (document, text)
        }
    };
    if json {
        print_json(&document)?
    } else {
        print_text(&text)?
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    //! `cluster status` and the membership commands against a real node
    //! ([`TestNode`]), over plaintext, TLS and mutual TLS.

    use mxfleet_testkit::tls::TestCa;

    use super::*;
    use crate::cmd::admin::test_node::{OPS_TOKEN, Security, TestNode, VIEWER_TOKEN};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_is_read_over_grpc() {
        let node = TestNode::start(0).await;
        let viewer = node.connect(VIEWER_TOKEN).await;
        assert_eq!(status::run(&viewer, false, true).await.unwrap(), 0);
        // A linearizable status takes a read-index round with the leader.
        assert_eq!(status::run(&viewer, true, false).await.unwrap(), 0);
        let stranger = node.connect("not-a-token-0123456789").await;
        let error = status::run(&stranger, false, true).await.unwrap_err();
        assert_eq!(error.exit_code(), 1, "{error}");
        node.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_commands_read_the_token_file_and_change_the_node() {
        let node = TestNode::start(0).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{OPS_TOKEN}\n")).unwrap();
        let command = |command| ClusterArgs {
            client: ClientArgs {
                token_file: Some(token_file.clone()),
                ..node.args()
            },
            command,
        };
        // The only node is the last one in service: draining it is refused. (A drain
        // that takes effect is shown end to end in tests/admin_cli.rs.)
        let drain = |undo| command(ClusterCommand::Drain { id: 1, undo });
        let error = dispatch(drain(false)).await.unwrap_err();
        assert_eq!(error.exit_code(), 1, "{error}");
        assert!(
            error.to_string().contains("last node in service"),
            "{error}"
        );
        assert!(!node.queue().is_drained());
        assert_eq!(
            dispatch(drain(true)).await.unwrap(),
            0,
            "undrain is always allowed"
        );

        let error = dispatch(command(ClusterCommand::Remove { id: 9 }))
            .await
            .unwrap_err();
        assert_eq!(error.exit_code(), 1, "{error}");
        assert!(
            error.to_string().contains("node 9 is not a member"),
            "{error}"
        );
        node.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mutual_tls_takes_the_ca_and_the_client_certificate_from_files() {
        let node = TestNode::start_secured(0, Security::MutualTls).await;

        // The certificate alone authenticates: no token is sent.
        let args = node.with_client_cert(node.args(), node.ca(), "operator");
        let admin = Admin::connect(&args, None).await.unwrap();
        assert_eq!(status::run(&admin, false, true).await.unwrap(), 0);

        // Without one (and without a token) the node does not know the caller.
        let anonymous = Admin::connect(&node.args(), None).await.unwrap();
        let error = status::run(&anonymous, false, true).await.unwrap_err();
        assert_eq!(error.exit_code(), 1, "{error}");
        assert!(error.to_string().contains("no credentials"), "{error}");

        // A certificate from another CA is refused in the handshake.
        let args = node.with_client_cert(node.args(), &TestCa::new("another CA"), "intruder");
        let error = match Admin::connect(&args, None).await {
            Ok(admin) => status::run(&admin, false, true).await.unwrap_err(),
            Err(error) => error,
        };
        assert_eq!(error.exit_code(), 69, "{error}");
        assert!(
            error
                .to_string()
                .contains("--client-cert/--client-key if the node asks for a client certificate"),
            "{error}"
        );
        node.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_certificate_from_another_ca_is_unreachable_with_a_tls_hint() {
        let node = TestNode::start_secured(0, Security::Tls).await;
        // With the node's CA, a token over TLS works.
        let ops = node.connect(OPS_TOKEN).await;
        assert_eq!(status::run(&ops, false, true).await.unwrap(), 0);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            TestCa::new("another CA").ca_pem(),
        )
        .unwrap();
        let mut args = node.args();
        args.ca_cert = Some(dir.path().join("ca.pem"));
        let error = match Admin::connect(&args, Some(OPS_TOKEN.into())).await {
            Ok(admin) => status::run(&admin, false, true).await.unwrap_err(),
            Err(error) => error,
        };
        assert_eq!(error.exit_code(), 69, "{error}");
        assert!(error.to_string().contains("check --ca-cert"), "{error}");
        node.stop().await;
    }

    #[test]
    fn peer_addresses_need_a_host_and_a_port() {
        assert!(parse_peer_addr("10.0.0.4:7401").is_ok());
        assert!(parse_peer_addr("[2001:db8::4]:7401").is_ok());
        assert!(parse_peer_addr("mx4.example.net:7401").is_ok());
        for bad in ["10.0.0.4", ":7401", "mx4:0", "mx4:http"] {
            assert!(parse_peer_addr(bad).is_err(), "{bad}");
        }
    }
}
