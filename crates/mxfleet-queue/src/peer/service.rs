//! The gRPC service on a node's peer port: Raft RPCs into openraft, forwarded writes
//! into the local leader, and the blob side channel into the blob store.

use std::pin::Pin;
use std::sync::{Arc, Weak};

use futures::{Stream, StreamExt};
use mxfleet_core::BodyDigest;
use mxfleet_proto::CHUNK_BYTES;
use mxfleet_proto::raft::v1::raft_peer_server::RaftPeer;
use mxfleet_proto::raft::v1::{
    BlobChunk, ForwardError, ForwardReply, ForwardRequest, GetBlobRequest, PutBlobReply,
    RaftMessage, SnapshotChunk, forward_error, forward_reply, snapshot_chunk,
};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::blob_store::BlobError;
use crate::peer::forward::ForwardedWrite;
use crate::peer::raft_client::{PeerMessageError, from_message, to_message};
use crate::snapshot_file::decode_snapshot;
use crate::types::{Snapshot, SnapshotMeta, TypeConfig, Vote, check_wire_format, decode, encode};
use crate::write_path::{LocalWriteError, QueueCore};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The peer service of one node.
///
/// It holds the node only weakly: tonic runs each peer connection on a task of its own
/// that outlives the server at shutdown (peers keep their connections open), and a
/// strong reference there would keep the stopped node's WAL and sled open, and locked.
pub(crate) struct PeerService {
    pub(crate) core: Weak<QueueCore>,
}

impl PeerService {
    fn core(&self) -> Result<Arc<QueueCore>, Status> {
        self.core
            .upgrade()
            .ok_or_else(|| Status::unavailable("node is shutting down"))
    }
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// How a refusal names the peer that sent `request`: its address as this node sees it.
fn sender<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "an unknown address".to_string(), |a| a.to_string())
}

/// Reads a unary Raft request (wire format first, then the payload).
fn read_request<T: serde::de::DeserializeOwned>(
    request: &Request<RaftMessage>,
    rpc: &str,
) -> Result<T, Status> {
    from_message(request.get_ref(), &sender(request), rpc).map_err(PeerMessageError::into_status)
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    to_message(value)
        .map(Response::new)
        .map_err(|e| Status::internal(e.to_string()))
}

fn blob_status(e: BlobError) -> Status {
    match e {
        BlobError::StorageFull { .. } => Status::resource_exhausted(e.to_string()),
        BlobError::DigestMismatch { .. } | BlobError::TooLarge { .. } => {
            Status::invalid_argument(e.to_string())
        }
        BlobError::NotFound(_) => Status::not_found(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let vote: VoteRequest<TypeConfig> = read_request(&request, "vote")?;
        let answer = self
            .core()?
            .raft
            .vote(vote)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        reply(&answer)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let vote: VoteRequest<TypeConfig> = read_request(&request, "pre_vote")?;
        let answer = self
            .core()?
            .raft
            .pre_vote(vote)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        reply(&answer)
    }

    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let append: AppendEntriesRequest<TypeConfig> = read_request(&request, "append_entries")?;
        let core = self.core()?;
        core.note_append_received();
        let answer = core
            .raft
            .append_entries(append)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        reply(&answer)
    }

    type StreamAppendStream = BoxStream<RaftMessage>;

    async fn stream_append(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // Requests are decoded in order; the first unreadable one ends the input, so
        // responses always match a prefix of the requests. Why it was unreadable is
        // kept, and ends the responses as an error (`FailedPrecondition` for a wire
        // format this node does not read), so that the leader learns it.
        let core = self.core()?;
        let contact = Arc::downgrade(&core);
        let peer = sender(&request);
        let refusal: Arc<std::sync::Mutex<Option<Status>>> = Arc::default();
        let refused = refusal.clone();
        let requests = request
            .into_inner()
            .take_while(|item| futures::future::ready(item.is_ok()))
            .map(move |item| {
                let message = item.ok()?;
                from_message::<AppendEntriesRequest<TypeConfig>>(&message, &peer, "stream_append")
                    .map_err(|e| {
                        *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into_status());
                    })
                    .ok()
            })
            .take_while(|decoded| futures::future::ready(decoded.is_some()))
            .filter_map(futures::future::ready)
            .inspect(move |_| {
                if let Some(core) = contact.upgrade() {
                    core.note_append_received();
                }
            });
        let responses = core
            .raft
            .stream_append(requests)
            .map(|result| match result {
                Ok(answer) => to_message(&answer).map_err(|e| Status::internal(e.to_string())),
                Err(fatal) => Err(Status::internal(fatal.to_string())),
            })
            .chain(futures::stream::iter(std::iter::from_fn(move || {
                refusal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .map(Err)
            })));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let peer = sender(&request);
        let mut chunks = request.into_inner();
        let header = match chunks.next().await {
            Some(Ok(SnapshotChunk {
                part: Some(snapshot_chunk::Part::Header(h)),
            })) => h,
            _ => return Err(bad_request("snapshot stream must start with a header")),
        };
        let (vote, meta): (Vote, SnapshotMeta) = from_message(&header, &peer, "install_snapshot")
            .map_err(PeerMessageError::into_status)?;
        let incoming = self.core()?.incoming_snapshot_path();
        let mut file = tokio::fs::File::create(&incoming)
            .await
            .map_err(|e| Status::internal(format!("snapshot spool: {e}")))?;
        let received = async {
            while let Some(chunk) = chunks.next().await {
                match chunk?.part {
                    Some(snapshot_chunk::Part::Data(data)) => file
                        .write_all(&data)
                        .await
                        .map_err(|e| Status::internal(format!("snapshot spool: {e}")))?,
                    _ => return Err(bad_request("unexpected snapshot header")),
                }
            }
            file.sync_all()
                .await
                .map_err(|e| Status::internal(format!("snapshot spool: {e}")))?;
            // A broken snapshot must never reach openraft: a failing install is fatal
            // to the node. Check it completely first.
            let bytes = tokio::fs::read(&incoming)
                .await
                .map_err(|e| Status::internal(format!("snapshot spool: {e}")))?;
            decode_snapshot(&incoming, &bytes).map_err(|e| Status::data_loss(e.to_string()))?;
            tokio::fs::File::open(&incoming)
                .await
                .map_err(|e| Status::internal(format!("snapshot spool: {e}")))
        }
        .await;
        let outcome = match received {
            Ok(snapshot_file) => {
                debug!(index = ?meta.last_log_id.map(|l| l.index), "snapshot_received");
                self.core()?
                    .raft
                    .install_full_snapshot(
                        vote,
                        Snapshot {
                            meta,
                            snapshot: snapshot_file,
                        },
                    )
                    .await
                    .map_err(|e| Status::internal(e.to_string()))
            }
            Err(status) => Err(status),
        };
        if let Err(e) = tokio::fs::remove_file(&incoming).await {
            warn!(path = %incoming.display(), cause = %e, "snapshot_spool_not_removed");
        }
        reply(&outcome?)
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let transfer: TransferLeaderRequest<TypeConfig> =
            read_request(&request, "transfer_leader")?;
        let answer = self
            .core()?
            .raft
            .handle_transfer_leader(transfer)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        reply(&answer)
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardReply>, Status> {
        let peer = sender(&request);
        let request = request.into_inner();
        check_wire_format(request.format, &peer, "forward")
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let write: ForwardedWrite = decode(&request.write).map_err(bad_request)?;
        let result = match self.core()?.propose_local(write).await {
            Ok(response) => forward_reply::Result::Response(
                encode(&response).map_err(|e| Status::internal(e.to_string()))?,
            ),
            Err(error) => forward_reply::Result::Error(forward_error_of(error)),
        };
        Ok(Response::new(ForwardReply {
            result: Some(result),
        }))
    }

    async fn put_blob(
        &self,
        request: Request<Streaming<BlobChunk>>,
    ) -> Result<Response<PutBlobReply>, Status> {
        let mut chunks = request.into_inner();
        let first = chunks
            .next()
            .await
            .ok_or_else(|| bad_request("empty blob stream"))??;
        let expected = BodyDigest::from_hex(&first.sha256)
            .ok_or_else(|| bad_request("first blob chunk must name its sha256"))?;
        let mut writer = self
            .core()?
            .blobs
            .writer(self.core()?.max_message_size)
            .await
            .map_err(blob_status)?;
        writer.write_chunk(&first.data).await.map_err(blob_status)?;
        while let Some(chunk) = chunks.next().await {
            writer
                .write_chunk(&chunk?.data)
                .await
                .map_err(blob_status)?;
        }
        // finish() fsyncs and checks the digest: only then do we confirm.
        writer.finish(Some(expected)).await.map_err(blob_status)?;
        Ok(Response::new(PutBlobReply { stored: true }))
    }

    type GetBlobStream = BoxStream<BlobChunk>;

    async fn get_blob(
        &self,
        request: Request<GetBlobRequest>,
    ) -> Result<Response<Self::GetBlobStream>, Status> {
        let digest = BodyDigest::from_hex(&request.get_ref().sha256)
            .ok_or_else(|| bad_request("sha256 must be 64 hex digits"))?;
        let core = self.core()?;
        // Checked before serving (one extra read, and pulls are rare): a corrupt copy
        // would only be streamed whole and then refused by the puller, again at every
        // pull. Found corrupt, it goes into quarantine here, and the puller asks the
        // next holder.
        let (file, size) = match core.blobs.open_verified(&digest).await {
            Ok(opened) => opened,
            Err(error @ BlobError::Corrupt { .. }) => {
                let now = core.config.clock.now();
                core.blobs
                    .quarantine(&digest, now)
                    .await
                    .map_err(blob_status)?;
                return Err(Status::data_loss(error.to_string()));
            }
            Err(e) => return Err(blob_status(e)),
        };
        let name = digest.to_hex();
        let chunks = ReaderStream::with_capacity(file, CHUNK_BYTES).map(move |item| {
            item.map(|data| BlobChunk {
                sha256: name.clone(),
                size,
                data,
            })
            .map_err(|e| Status::internal(format!("blob read: {e}")))
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}

fn forward_error_of(error: LocalWriteError) -> ForwardError {
    use forward_error::Kind;
    let (kind, leader, message) = match &error {
        LocalWriteError::NotLeader { leader } => {
            (Kind::NotLeader, leader.clone(), error.to_string())
        }
        // A leader whose Raft stopped is going away: the follower retries elsewhere.
        LocalWriteError::NoQuorum(_) | LocalWriteError::Stopped(_) => {
            (Kind::NoQuorum, None, error.to_string())
        }
        LocalWriteError::Refused(_) => (Kind::Refused, None, error.to_string()),
    };
    let (leader_id, leader_addr) = leader.map(|(id, node)| (id, node.addr)).unwrap_or_default();
    ForwardError {
        kind: kind as i32,
        leader_id,
        leader_addr,
        message,
    }
}
