//! Queue errors as gRPC statuses, and the optional read-index round before a read.
//!
//! `NoQuorum` and `Unavailable` are `UNAVAILABLE` (the CLI exits 69): the message names
//! the leader this node knows, if any, and the `x-mxfleet-leader` metadata carries its
//! id. A refused command is `NOT_FOUND` for an unknown message and
//! `FAILED_PRECONDITION` otherwise.

use mxfleet_core::Rejection;
use mxfleet_queue::{Queue, QueueError};
use tonic::Status;

/// The status for a queue error.
pub(crate) fn from_queue_error(error: QueueError) -> Status {
    match error {
        QueueError::NoQuorum { .. } | QueueError::Unavailable(_) => Status::unavailable(format!(
            "{error}; retry, or ask a node on the majority side"
        )),
        QueueError::StorageFull { .. } => Status::resource_exhausted(error.to_string()),
        QueueError::TooLarge { .. } => Status::invalid_argument(error.to_string()),
        QueueError::Refused(Rejection::UnknownMessage(id)) => {
            Status::not_found(format!("no message {id} in the queue"))
        }
        QueueError::Refused(rejection) => Status::failed_precondition(rejection.to_string()),
    }
}

/// The status for a queue error, naming the leader `queue` knows when the error is
/// about reaching one.
pub(crate) fn with_leader_hint(queue: &Queue, error: QueueError) -> Status {
    let status = from_queue_error(error);
    if status.code() != tonic::Code::Unavailable {
        return status;
    }
    let cluster = queue.status();
    let Some(leader) = cluster.leader else {
        return Status::unavailable(format!(
            "{} (no leader known: the cluster has no quorum reachable from node {})",
            status.message(),
            cluster.node_id
        ));
    };
    let addr = cluster
        .members
        .iter()
        .find(|m| m.id == leader)
        .map(|m| m.addr.clone())
        .unwrap_or_default();
    let mut hinted = Status::unavailable(format!(
        "{} (leader known to node {}: node {leader} at {addr})",
        status.message(),
        cluster.node_id
    ));
    if let Ok(value) = leader.to_string().parse() {
        hinted.metadata_mut().insert("x-mxfleet-leader", value);
    }
    hinted
}

/// When `linearizable`, waits until this node has applied everything committed
/// before the call (a read-index round with the leader).
#[allow(clippy::result_large_err)]
pub(crate) async fn linearize_if(queue: &Queue, linearizable: bool) -> Result<(), Status> {
    if linearizable {
        queue
            .linearize()
            .await
            .map_err(|e| with_leader_hint(queue, e))?;
    }
    Ok(())
}
