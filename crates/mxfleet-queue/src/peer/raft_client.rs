//! openraft's network over gRPC: one `PeerConnection` per target node.
//!
//! Raft messages travel as postcard bytes inside `RaftMessage` (see the proto file for
//! why). AppendEntries uses a bidirectional stream, so the leader can pipeline batches
//! and heartbeats; snapshots are streamed from their file in 1 MiB chunks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mxfleet_proto::CHUNK_BYTES;
use mxfleet_proto::raft::v1::{RaftMessage, SnapshotChunk, snapshot_chunk};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::peer::transport::PeerChannels;
use crate::types::{
    PeerNode, Snapshot, SnapshotData, TypeConfig, Vote, WIRE_FORMAT, WireFormatMismatch,
    check_wire_format, decode, encode,
};

type RpcResult<T> = Result<T, RPCError<TypeConfig>>;

/// Builds a `PeerConnection` per target; openraft calls it for every replication
/// stream, heartbeat and vote.
#[derive(Clone)]
pub(crate) struct PeerNetwork {
    pub(crate) channels: Arc<PeerChannels>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> Self::Network {
        PeerConnection {
            target,
            addr: node.addr.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// openraft's view of one peer.
pub(crate) struct PeerConnection {
    target: u64,
    addr: String,
    channels: Arc<PeerChannels>,
}

pub(crate) fn to_message<T: Serialize>(value: &T) -> Result<RaftMessage, postcard::Error> {
    Ok(RaftMessage {
        format: WIRE_FORMAT,
        payload: encode(value)?,
    })
}

/// Why a peer's `RaftMessage` was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerMessageError {
    /// A wire format outside the range this binary reads (logged as
    /// `peer_wire_format_refused`): one side must be upgraded first.
    #[error(transparent)]
    Format(#[from] WireFormatMismatch),
    /// A readable format whose payload does not decode.
    #[error("undecodable peer message: {0}")]
    Decode(#[from] postcard::Error),
}

impl PeerMessageError {
    /// The answer to a peer whose request was not read: `FailedPrecondition` for a
    /// wire format (retrying cannot help until one side is upgraded), `InvalidArgument`
    /// for the rest.
    pub(crate) fn into_status(self) -> tonic::Status {
        match self {
            PeerMessageError::Format(e) => tonic::Status::failed_precondition(e.to_string()),
            PeerMessageError::Decode(e) => {
                tonic::Status::invalid_argument(format!("undecodable peer message: {e}"))
            }
        }
    }
}

/// Reads a peer's message: its wire format must be one this binary reads
/// ([`check_wire_format`]), then its payload must decode. `peer` and `rpc` name the
/// sender and the exchange for the refusal's log line.
pub(crate) fn from_message<T: DeserializeOwned>(
    message: &RaftMessage,
    peer: &dyn std::fmt::Display,
    rpc: &str,
) -> Result<T, PeerMessageError> {
    check_wire_format(message.format, peer, rpc)?;
    Ok(decode(&message.payload)?)
}

fn network_error(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(e.to_string()))
}

/// A transport failure: openraft backs off before retrying an unreachable peer.
fn unreachable(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(e.to_string()))
}

fn status_error(status: tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            unreachable(format!("{}: {}", status.code(), status.message()))
        }
        _ => network_error(format!("{}: {}", status.code(), status.message())),
    }
}

impl PeerConnection {
    fn timeout_error(&self, action: RPCTypes, timeout: Duration) -> RPCError<TypeConfig> {
        RPCError::Timeout(openraft::errors::Timeout {
            action,
            id: 0,
            target: self.target,
            timeout,
        })
    }

    async fn unary<Req, Resp, F, Fut>(
        &self,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
        call: F,
    ) -> RpcResult<Resp>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(
            mxfleet_proto::raft::v1::raft_peer_client::RaftPeerClient<tonic::transport::Channel>,
            RaftMessage,
        ) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let client = self.channels.client(&self.addr).map_err(unreachable)?;
        let message = to_message(request).map_err(network_error)?;
        let ttl = option.soft_ttl();
        let reply = tokio::time::timeout(ttl, call(client, message))
            .await
            .map_err(|_| self.timeout_error(action, ttl))?
            .map_err(status_error)?;
        from_message(reply.get_ref(), &self.peer(), &action.to_string()).map_err(network_error)
    }

    /// How refusals name this peer in the log.
    fn peer(&self) -> String {
        format!("node {} at {}", self.target, self.addr)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<TypeConfig>> {
        self.unary(
            RPCTypes::AppendEntries,
            &rpc,
            &option,
            |mut c, m| async move { c.append_entries(m).await },
        )
        .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, RpcResult<BoxStream<'s, RpcResult<StreamAppendResult<TypeConfig>>>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        Box::pin(async move {
            let mut client = self.channels.client(&self.addr).map_err(unreachable)?;
            // An encoding failure cannot happen for these types; if it ever did, the
            // empty payload is refused by the receiver and the stream ends with an error.
            let outbound = input.map(|request| {
                to_message(&request).unwrap_or(RaftMessage {
                    format: WIRE_FORMAT,
                    payload: Vec::new(),
                })
            });
            let ttl = option.soft_ttl();
            let response = tokio::time::timeout(ttl, client.stream_append(outbound))
                .await
                .map_err(|_| self.timeout_error(RPCTypes::AppendEntries, ttl))?
                .map_err(status_error)?;
            let peer = self.peer();
            let inbound = response.into_inner().map(move |item| match item {
                Ok(message) => {
                    from_message::<StreamAppendResult<TypeConfig>>(&message, &peer, "stream_append")
                        .map_err(network_error)
                }
                Err(status) => Err(status_error(status)),
            });
            Ok(Box::pin(inbound) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        self.unary(RPCTypes::Vote, &rpc, &option, |mut c, m| async move {
            c.vote(m).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        self.unary(RPCTypes::Vote, &rpc, &option, |mut c, m| async move {
            c.pre_vote(m).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self
            .channels
            .client(&self.addr)
            .map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e.to_string())))?;
        let header = to_message(&(vote, &snapshot.meta))
            .map_err(|e| StreamingError::from(network_error(e)))?;
        let mut file = snapshot.snapshot;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| StreamingError::from(network_error(format!("snapshot file: {e}"))))?;
        let chunks = futures::stream::once(async move {
            SnapshotChunk {
                part: Some(snapshot_chunk::Part::Header(header)),
            }
        })
        .chain(futures::stream::unfold(Some(file), |state| async move {
            let mut file = state?;
            let mut buffer = vec![0u8; CHUNK_BYTES];
            let mut filled = 0;
            // Fill whole chunks so that the receiver sees few, large messages.
            while filled < CHUNK_BYTES {
                match file.read(&mut buffer[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        tracing::warn!(cause = %e, "snapshot_read_failed");
                        return None;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buffer.truncate(filled);
            let chunk = SnapshotChunk {
                part: Some(snapshot_chunk::Part::Data(buffer)),
            };
            Some((chunk, Some(file)))
        }));
        let peer = self.peer();
        let send = async move { client.install_snapshot(chunks).await };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = send => {
                let reply = reply.map_err(|s| StreamingError::from(status_error(s)))?;
                from_message(reply.get_ref(), &peer, "install_snapshot")
                    .map_err(|e| StreamingError::from(network_error(e)))
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<TransferLeaderResponse<TypeConfig>> {
        self.unary(
            RPCTypes::TransferLeader,
            &req,
            &option,
            |mut c, m| async move { c.transfer_leader(m).await },
        )
        .await
    }

    fn backoff(&self) -> Option<Backoff> {
        // Keep probing an unreachable peer often enough that a healed partition is
        // noticed within a second.
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(250))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MAX_READABLE_WIRE_FORMAT;

    #[test]
    fn a_message_in_an_unread_format_is_refused_as_a_failed_precondition() {
        let mut message = to_message(&7u64).unwrap();
        assert_eq!(from_message::<u64>(&message, &"peer", "test").unwrap(), 7);

        message.format = MAX_READABLE_WIRE_FORMAT + 1;
        let refused = from_message::<u64>(&message, &"peer", "test").unwrap_err();
        assert!(
            matches!(refused, PeerMessageError::Format(_)),
            "{refused:?}"
        );
        let status = refused.into_status();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().ends_with("upgrade this node"),
            "{status:?}"
        );

        let garbage = RaftMessage {
            format: WIRE_FORMAT,
            payload: Vec::new(),
        };
        let undecodable = from_message::<u64>(&garbage, &"peer", "test").unwrap_err();
        assert_eq!(
            undecodable.into_status().code(),
            tonic::Code::InvalidArgument
        );
    }
}
