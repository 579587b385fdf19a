//! `QueueAdmin`: list, show, stats, bulk actions, flush and body reads over the
//! replicated queue, from any node. Reads answer from this node's replica (or after a
//! read-index round with the leader when `linearizable` is set); writes go through
//! Raft, forwarded to the leader when this node follows.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use mxfleet_core::{MessageState, OperatorAction, QueueEntry, QueueId, UnixMillis};
use mxfleet_proto::admin::v1 as pb;
use mxfleet_proto::admin::v1::queue_admin_server::QueueAdmin;
use mxfleet_queue::{MAX_IDS_PER_OPERATOR_COMMAND, Queue};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::auth::require;
use super::errors::{from_queue_error, linearize_if, with_leader_hint};
use super::view::{Selection, detail, operator_state, parse_id, summary};
use crate::config::AdminPermission;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// How much of a body `show` reads looking for the end of the header section.
const HEADER_READ_LIMIT: usize = 64 * 1024;
const BODY_CHUNK: usize = 64 * 1024;
const MAX_NOTES: usize = 20;

pub(crate) struct QueueAdminService {
    pub(crate) queue: Queue,
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl QueueAdminService {
    #[allow(clippy::result_large_err)]
    fn read<R>(&self, read: impl FnOnce(&mxfleet_core::QueueState) -> R) -> Result<R, Status> {
        self.queue.read_state(read).map_err(from_queue_error)
    }

    #[allow(clippy::result_large_err)]
    fn entry(&self, id: QueueId) -> Result<QueueEntry, Status> {
        self.read(|state| state.entries.get(&id).cloned())?
            .ok_or_else(|| Status::not_found(format!("no message {id} in the queue")))
    }

    async fn headers(&self, entry: &QueueEntry) -> String {
        let Ok((mut file, _)) = self.queue.open_body(&entry.body, &entry.body_holders).await else {
            return String::new();
        };
        let mut buffer = vec![0u8; HEADER_READ_LIMIT];
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
            if find_header_end(&buffer[..filled]).is_some() {
                break;
            }
        }
        let end = find_header_end(&buffer[..filled]).unwrap_or(filled);
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    }
}

fn find_header_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
}

fn action_of(action: i32) -> Result<OperatorAction, Status> {
    match pb::Action::try_from(action) {
        Ok(pb::Action::Hold) => Ok(OperatorAction::Hold),
        Ok(pb::Action::Release) => Ok(OperatorAction::Release),
        Ok(pb::Action::Delete) => Ok(OperatorAction::Delete),
        Ok(pb::Action::Requeue) => Ok(OperatorAction::Requeue),
        Ok(pb::Action::Bounce) => Ok(OperatorAction::Bounce),
        _ => Err(Status::invalid_argument(
            "action must be hold, release, delete, requeue or bounce",
        )),
    }
}

#[tonic::async_trait]
impl QueueAdmin for QueueAdminService {
    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListReply>, Status> {
        require(&request, AdminPermission::View, "queue.list")?;
        let request = request.into_inner();
        linearize_if(&self.queue, request.linearizable).await?;
        let selection = Selection::parse(request.selector)?;
        let page_size = match request.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(parse_id(&request.page_token)?)
        };
        let now = self.queue.clock_now();
        let reply = self.read(|state| {
            let mut messages = Vec::new();
            let mut total_matched = 0u64;
            let mut total_bytes = 0u64;
            let mut next_page_token = String::new();
            for entry in state.entries.values() {
                if !selection.matches(entry, now) {
                    continue;
                }
                total_matched += 1;
                total_bytes += entry.size;
                if after.is_some_and(|after| entry.id <= after) {
                    continue;
                }
                if messages.len() < page_size {
                    messages.push(summary(entry, now));
                } else if next_page_token.is_empty() {
                    next_page_token = messages
                        .last()
                        .map(|m: &pb::MessageSummary| m.id.clone())
                        .unwrap_or_default();
                }
            }
            pb::ListReply {
                messages,
                next_page_token,
                total_matched,
                total_bytes,
            }
        })?;
        Ok(Response::new(reply))
    }

    async fn show(
        &self,
        request: Request<pb::ShowRequest>,
    ) -> Result<Response<pb::MessageDetail>, Status> {
        let caller = require(&request, AdminPermission::View, "queue.show")?;
        let request = request.into_inner();
        linearize_if(&self.queue, request.linearizable).await?;
        let entry = self.entry(parse_id(&request.id)?)?;
        // A finished message's body stays until it is collected; a deleted one's is
        // not worth fetching from peers.
        // Headers are message content: only for callers who may read bodies, and
        // logged like a body read.
        let headers = if entry.state == MessageState::Deleted
            || !caller.may(AdminPermission::ReadBody)
        {
            String::new()
        } else {
            info!(caller = %caller.name, queue_id = %entry.id, part = "headers", "admin_body_read");
            self.headers(&entry).await
        };
        Ok(Response::new(detail(
            &entry,
            self.queue.clock_now(),
            headers,
        )))
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::QueueStats>, Status> {
        require(&request, AdminPermission::View, "queue.stats")?;
        linearize_if(&self.queue, request.into_inner().linearizable).await?;
        let now = self.queue.clock_now();
        Ok(Response::new(self.read(|state| queue_stats(state, now))?))
    }

    type ActStream = Streamed<pb::ActProgress>;

    async fn act(
        &self,
        request: Request<pb::ActRequest>,
    ) -> Result<Response<Self::ActStream>, Status> {
        let caller = require(&request, AdminPermission::Queue, "queue.act")?;
        let request = request.into_inner();
        let action = action_of(request.action)?;
        let selection = Selection::parse(request.selector)?;
        let now = self.queue.clock_now();
        let ids: Vec<QueueId> = self.read(|state| {
            state
                .entries
                .values()
                .filter(|entry| selection.matches(entry, now))
                .map(|entry| entry.id)
                .collect()
        })?;
        if selection.by_ids() && ids.is_empty() {
            return Err(Status::not_found(
                "no message with the given ids in the queue",
            ));
        }
        let matched = ids.len() as u64;
        let (sender, receiver) = mpsc::channel(4);
        if request.dry_run {
            let _ = sender
                .send(Ok(pb::ActProgress {
                    matched,
                    finished: true,
                    ..Default::default()
                }))
                .await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(receiver))));
        }
        if !selection.by_ids() && !request.confirmed {
            return Err(Status::invalid_argument(format!(
                "{} of {matched} messages is a bulk action: confirm it (the CLI asks, or \
                 takes --yes), or count first with a dry run",
                action.as_str()
            )));
        }
        info!(caller = %caller.name, action = action.as_str(), matched, selector = ?selection,
            "admin_bulk_action_started");
        let queue = self.queue.clone();
        tokio::spawn(async move {
            let mut progress = pb::ActProgress {
                matched,
                ..Default::default()
            };
            for chunk in ids.chunks(MAX_IDS_PER_OPERATOR_COMMAND) {
                match queue.operate(action, chunk.to_vec()).await {
                    Ok(rejected) => {
                        progress.skipped += rejected.len() as u64;
                        progress.done += (chunk.len() - rejected.len()) as u64;
                        for rejection in rejected {
                            if progress.notes.len() < MAX_NOTES {
                                progress.notes.push(rejection.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        info!(caller = %caller.name, action = action.as_str(), matched,
                            done = progress.done, cause = %e, "admin_bulk_action_failed");
                        let _ = sender.send(Err(with_leader_hint(&queue, e))).await;
                        return;
                    }
                }
                let update = pb::ActProgress {
                    notes: Vec::new(),
                    ..progress.clone()
                };
                if sender.send(Ok(update)).await.is_err() {
                    info!(caller = %caller.name, action = action.as_str(), done = progress.done,
                        "admin_bulk_action_abandoned_by_client");
                    return;
                }
            }
            info!(caller = %caller.name, action = action.as_str(), matched,
                done = progress.done, skipped = progress.skipped, "admin_bulk_action_finished");
            progress.finished = true;
            let _ = sender.send(Ok(progress)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn flush(
        &self,
        request: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::FlushReply>, Status> {
        require(&request, AdminPermission::Queue, "queue.flush")?;
        let domain = request.into_inner().domain.trim().to_ascii_lowercase();
        let domain = (!domain.is_empty()).then_some(domain);
        let now = self.queue.clock_now();
        let made_due = self.read(|state| {
            state
                .live_entries()
                .filter(|e| operator_state(e, now) == pb::MessageState::Deferred)
                .filter(|e| domain.as_ref().is_none_or(|d| e.destination() == *d))
                .count() as u64
        })?;
        self.queue
            .flush(domain.as_deref())
            .await
            .map_err(|e| with_leader_hint(&self.queue, e))?;
        Ok(Response::new(pb::FlushReply { made_due }))
    }

    type ReadStream = Streamed<pb::BodyChunk>;

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let caller = require(&request, AdminPermission::ReadBody, "queue.read")?;
        let id = parse_id(&request.into_inner().id)?;
        let entry = self.entry(id)?;
        if matches!(entry.state, MessageState::Deleted) {
            return Err(Status::failed_precondition(format!(
                "message {id} was deleted; its body is gone or going"
            )));
        }
        // Every body read is logged: it is someone's mail.
        info!(caller = %caller.name, queue_id = %id, sender = %entry.envelope.sender,
            size = entry.size, "admin_body_read");
        let opened = self.queue.open_body(&entry.body, &entry.body_holders).await;
        let (mut file, _) = match opened {
            Ok(opened) => opened,
            Err(e) if entry.state.is_final() => {
                return Err(Status::failed_precondition(format!(
                    "message {id} is finished and its body is no longer stored: {e}"
                )));
            }
            Err(e) => return Err(from_queue_error(e)),
        };
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut buffer = vec![0u8; BODY_CHUNK];
            loop {
                match file.read(&mut buffer).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = pb::BodyChunk {
                            data: bytes::Bytes::copy_from_slice(&buffer[..n]),
                        };
                        if sender.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = sender
                            .send(Err(Status::internal(format!("reading the body: {e}"))))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

fn queue_stats(state: &mxfleet_core::QueueState, now: UnixMillis) -> pb::QueueStats {
    let mut by_domain: BTreeMap<(String, i32), pb::DomainStats> = BTreeMap::new();
    let mut stats = pb::QueueStats {
        duplicates: state.fleet.duplicate_submissions,
        lapsed_reassignments: state.fleet.lapsed_reassignments,
        lost_after_dot: state.fleet.lost_after_dot,
        stale_outcomes: state.fleet.stale_outcomes,
        ..Default::default()
    };
    let within = |at: UnixMillis, ms: u64| now.0.saturating_sub(at.0) <= ms;
    for entry in state.entries.values() {
        if within(entry.received_at, 60_000) {
            stats.received_last_minute += 1;
        }
        if within(entry.received_at, 900_000) {
            stats.received_last_15_minutes += 1;
        }
        if entry.state == MessageState::Delivered
            && let Some(at) = entry.last_attempt_at
        {
            stats.delivered_last_minute += u64::from(within(at, 60_000));
            stats.delivered_last_15_minutes += u64::from(within(at, 900_000));
        }
        if entry.state.is_final() {
            continue;
        }
        let age = now.0.saturating_sub(entry.received_at.0) / 1000;
        stats.total_messages += 1;
        stats.total_bytes += entry.size;
        stats.oldest_age_seconds = stats.oldest_age_seconds.max(age);
        let state = operator_state(entry, now) as i32;
        let domain = by_domain
            .entry((entry.destination(), state))
            .or_insert_with(|| pb::DomainStats {
                domain: entry.destination(),
                state,
                ..Default::default()
            });
        domain.messages += 1;
        domain.bytes += entry.size;
        domain.oldest_age_seconds = domain.oldest_age_seconds.max(age);
    }
    stats.domains = by_domain.into_values().collect();
    stats
}
