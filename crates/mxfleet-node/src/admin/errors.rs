//! Queue errors as gRPC statuses, and the optional read-index round before a read.
//!
//! `NoQuorum` and `Unavailable` are `UNAVAILABLE` (the CLI exits 69): the message says
//! which leader this node knows, if any, and the `x-mxfleet-leader` metadata carries its
//! id when it is another node. A refused command is `NOT_FOUND` for an unknown message and
//! `FAILED_PRECONDITION` otherwise.

use mxfleet_core::Rejection;
use mxfleet_queue::{Queue, QueueError};
use tonic::Status;

/// The status for a queue error.
pub(crate) fn from_queue_error(error: QueueError) -> Status {
    match error {
        // The detail (openraft's view of the membership) is in the node's
        // `write_no_quorum` log line; the caller gets the short story.
        QueueError::NoQuorum { waited, .. } => Status::unavailable(format!(
            "no quorum: nothing was committed within {:.1} s",
            waited.as_secs_f64()
        )),
        QueueError::Unavailable(_) => Status::unavailable(error.to_string()),
        QueueError::Declined(why) => Status::failed_precondition(why),
        QueueError::StorageFull { .. } => Status::resource_exhausted(error.to_string()),
        QueueError::TooLarge { .. } => Status::invalid_argument(error.to_string()),
        QueueError::Refused(Rejection::UnknownMessage(id)) => {
            Status::not_found(format!("no message {id} in the queue"))
        }
        QueueError::Refused(rejection) => Status::failed_precondition(rejection.to_string()),
    }
}

/// The status for a queue error, saying which leader `queue` knows when the error is
/// about reaching one. The leader's id also goes into `x-mxfleet-leader`, unless it is
/// this very node (a leader cut off from its majority still believes it leads).
pub(crate) fn with_leader_hint(queue: &Queue, error: QueueError) -> Status {
    let status = from_queue_error(error);
    if status.code() != tonic::Code::Unavailable {
        return status;
    }
    let cluster = queue.status();
    let me = cluster.node_id;
    let hint = match cluster.leader {
        None => format!("node {me} knows no leader: it cannot reach a majority"),
        Some(leader) if leader == me => {
            format!("node {me} still counts itself leader but cannot reach a majority")
        }
        Some(leader) => {
            let addr = cluster
                .members
                .iter()
                .find(|m| m.id == leader)
                .map(|m| m.addr.clone())
                .unwrap_or_default();
            let mut hinted = Status::unavailable(format!(
                "{} (node {me} knows node {leader} at {addr} as the leader)",
                status.message()
            ));
            if let Ok(value) = leader.to_string().parse() {
                hinted.metadata_mut().insert("x-mxfleet-leader", value);
            }
            return hinted;
        }
    };
    Status::unavailable(format!("{} ({hint})", status.message()))
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
