//! `ClusterAdmin`: the fleet's status as any node sees it (with the leader's
//! replication view, asked of the leader over the peer port), membership changes,
//! leadership transfer, draining a node for maintenance, and backup archives (in
//! `snapshot.rs`).

use std::time::Duration;

use mxfleet_core::NodeId;
use mxfleet_proto::admin::v1 as pb;
use mxfleet_proto::admin::v1::cluster_admin_server::ClusterAdmin;
use mxfleet_queue::{LeaderView, Queue};
use tonic::{Request, Response, Status};
use tracing::info;

use super::auth::require;
use super::errors::{linearize_if, with_leader_hint};
use crate::config::AdminPermission;

/// How long `status` waits for the leader's replication view before answering with
/// this node's view alone.
const LEADER_VIEW_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct ClusterAdminService {
    pub(crate) queue: Queue,
}

impl ClusterAdminService {
    #[allow(clippy::result_large_err)]
    fn known_member(&self, id: NodeId) -> Result<(), Status> {
        if self.queue.status().members.iter().any(|m| m.id == id) {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "node {id} is not a member; `mxfleet cluster status` lists the members"
            )))
        }
    }
}

#[tonic::async_trait]
impl ClusterAdmin for ClusterAdminService {
    async fn status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        require(&request, AdminPermission::View, "cluster.status")?;
        linearize_if(&self.queue, request.into_inner().linearizable).await?;
        let view = tokio::time::timeout(LEADER_VIEW_TIMEOUT, self.queue.leader_view())
            .await
            .ok()
            .and_then(Result::ok);
        Ok(Response::new(cluster_status(&self.queue, view.as_ref())))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let caller = require(&request, AdminPermission::Cluster, "cluster.add")?;
        let request = request.into_inner();
        if request.id == 0 {
            return Err(Status::invalid_argument("node ids are non-zero"));
        }
        if request.addr.trim().is_empty() || request.site.trim().is_empty() {
            return Err(Status::invalid_argument(
                "give the new node's peer address (host:port) and its site",
            ));
        }
        if self
            .queue
            .status()
            .members
            .iter()
            .any(|m| m.id == request.id)
        {
            return Err(Status::already_exists(format!(
                "node {} is already a member",
                request.id
            )));
        }
        let log_index = self
            .queue
            .add_learner(request.id, request.addr.trim(), request.site.trim())
            .await
            .map_err(|e| with_leader_hint(&self.queue, e))?;
        info!(caller = %caller.name, node = request.id, addr = %request.addr, site = %request.site,
            log_index, "admin_learner_added");
        Ok(Response::new(pb::MembershipReply { log_index }))
    }

    async fn promote(
        &self,
        request: Request<pb::NodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let caller = require(&request, AdminPermission::Cluster, "cluster.promote")?;
        let id = request.into_inner().id;
        self.known_member(id)?;
        let log_index = self
            .queue
            .promote(id)
            .await
            .map_err(|e| with_leader_hint(&self.queue, e))?;
        info!(caller = %caller.name, node = id, log_index, "admin_node_promoted");
        Ok(Response::new(pb::MembershipReply { log_index }))
    }

    async fn remove(
        &self,
        request: Request<pb::NodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let caller = require(&request, AdminPermission::Cluster, "cluster.remove")?;
        let id = request.into_inner().id;
        self.known_member(id)?;
        let log_index = self
            .queue
            .remove(id)
            .await
            .map_err(|e| with_leader_hint(&self.queue, e))?;
        info!(caller = %caller.name, node = id, log_index, "admin_node_removed");
        Ok(Response::new(pb::MembershipReply { log_index }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::NodeRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        let caller = require(
            &request,
            AdminPermission::Cluster,
            "cluster.transfer_leader",
        )?;
        let to = request.into_inner().id;
        self.known_member(to)?;
        if !self
            .queue
            .status()
            .members
            .iter()
            .any(|m| m.id == to && m.voter)
        {
            return Err(Status::failed_precondition(format!(
                "node {to} is a learner; only a voter can lead (promote it first)"
            )));
        }
        self.queue
            .transfer_leader(to)
            .await
            .map_err(|e| with_leader_hint(&self.queue, e))?;
        info!(caller = %caller.name, to, "admin_leader_transfer");
        // Wait briefly for the new leader, so that the answer says who leads now.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if self.queue.status().leader == Some(to) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(pb::TransferLeaderReply {
            leader: self.queue.status().leader,
        }))
    }

    type SnapshotStream = super::snapshot::SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        super::snapshot::snapshot(&self.queue, request).await
    }

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainReply>, Status> {
        let caller = require(&request, AdminPermission::Cluster, "cluster.drain")?;
        let request = request.into_inner();
        self.known_member(request.id)?;
        if !request.undo {
            let drained = self
                .queue
                .read_state(|state| state.fleet.drained.clone())
                .unwrap_or_default();
            let in_service = self
                .queue
                .status()
                .members
                .iter()
                .filter(|m| m.id != request.id && !drained.contains(&m.id))
                .count();
            if in_service == 0 {
                return Err(Status::failed_precondition(format!(
                    "node {} is the last node in service; draining it would stop all intake \
                     and delivery (undrain another node first)",
                    request.id
                )));
            }
        }
        self.queue
            .set_drained(request.id, !request.undo)
            .await
            .map_err(|e| with_leader_hint(&self.queue, e))?;
        let now = self.queue.clock_now();
        let leased_messages = self
            .queue
            .read_state(|state| {
                state
                    .live_entries()
                    .filter(|e| {
                        e.assignment
                            .is_some_and(|a| a.owner == request.id && a.lease_until > now)
                    })
                    .count() as u64
            })
            .unwrap_or(0);
        let log_index = self.queue.status().last_applied_index.unwrap_or(0);
        info!(caller = %caller.name, node = request.id, drained = !request.undo, leased_messages,
            "admin_node_drain");
        Ok(Response::new(pb::DrainReply {
            log_index,
            leased_messages,
        }))
    }
}

fn cluster_status(queue: &Queue, view: Option<&LeaderView>) -> pb::ClusterStatus {
    let own = queue.status();
    let fleet = queue
        .read_state(|state| state.fleet.clone())
        .unwrap_or_default();
    let members = own
        .members
        .iter()
        .map(|member| {
            let replication = view.and_then(|v| v.members.iter().find(|r| r.id == member.id));
            let matched_index = replication.and_then(|r| r.matched_index);
            let role = if own.leader == Some(member.id) {
                "leader"
            } else if member.id == own.node_id {
                own.role
            } else if !member.voter {
                "learner"
            } else if view.is_some() {
                "follower"
            } else {
                "unknown"
            };
            pb::Member {
                id: member.id,
                addr: member.addr.clone(),
                site: member.site.clone(),
                membership: if member.voter { "voter" } else { "learner" }.to_owned(),
                role: role.to_owned(),
                matched_index,
                lag_entries: view
                    .and_then(|v| v.last_log_index)
                    .zip(matched_index)
                    .map(|(last, matched)| last.saturating_sub(matched)),
                last_contact_ms: replication.and_then(|r| r.since_ack_ms),
                drained: fleet.drained.contains(&member.id),
                delivering: fleet.takes_delivery_work(member.id),
            }
        })
        .collect();
    let destinations = fleet
        .destinations
        .iter()
        .map(|(destination, state)| pb::DestinationReachability {
            destination: destination.clone(),
            up: state.is_up(),
            nodes: state
                .reachability
                .iter()
                .map(|(node, r)| pb::NodeReachability {
                    node: *node,
                    reachable: r.reachable,
                    at: r.at.0,
                    detail: r.detail.clone(),
                })
                .collect(),
        })
        .collect();
    pb::ClusterStatus {
        answered_by: own.node_id,
        leader: own.leader,
        term: own.term,
        last_log_index: own.last_log_index,
        committed_index: own.committed_index,
        applied_index: own.last_applied_index,
        snapshot_index: own.snapshot_index,
        members,
        leader_view: view.is_some(),
        destinations,
    }
}
