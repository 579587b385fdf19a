//! Tests only: an in-process admin API that answers like a node, so the client's
//! plumbing (token header, paging, streams, timeouts, error statuses) is tested over real
//! gRPC on an ephemeral port before the real server exists.
//!
//! [`FakeNode::start`] serves both services on `127.0.0.1:0` until the test's runtime
//! ends; [`Seen`] records what the client sent, for the test to assert on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mxfleet_proto::admin::v1::cluster_admin_server::{ClusterAdmin, ClusterAdminServer};
use mxfleet_proto::admin::v1::queue_admin_server::{QueueAdmin, QueueAdminServer};
use mxfleet_proto::admin::v1::*;
use mxfleet_testkit::tls::TestCa;
use tonic::codegen::tokio_stream::{self, Stream};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::connection::{Admin, ClientArgs};

/// How the fake answers every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    #[default]
    Normal,
    /// UNAVAILABLE, naming node 2 as the leader.
    NoQuorum,
    /// PERMISSION_DENIED.
    Deny,
    /// Never answers.
    Hang,
}

/// What the client sent.
#[derive(Debug, Default)]
pub struct Seen {
    pub authorization: Vec<String>,
    pub page_sizes: Vec<u32>,
    pub acts: Vec<ActRequest>,
}

#[derive(Clone)]
pub struct FakeNode {
    /// Live messages `List` and `Act` see, ids 1..=messages.
    pub messages: u64,
    pub body: Vec<u8>,
    pub behaviour: Behaviour,
    pub seen: Arc<Mutex<Seen>>,
}

impl FakeNode {
    pub fn new(messages: u64) -> Self {
        FakeNode {
            messages,
            body: Vec::new(),
            behaviour: Behaviour::Normal,
            seen: Arc::default(),
        }
    }

    /// Serves on an ephemeral port; returns client flags pointing at it.
    pub async fn start(&self) -> ClientArgs {
        self.serve(None).await
    }

    /// Serves over TLS with a certificate from `ca`, asking for a client certificate
    /// signed by `ca`; returns `https://localhost:PORT` flags without TLS files.
    pub async fn start_tls(&self, ca: &TestCa) -> ClientArgs {
        let leaf = ca.issue("admin");
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(leaf.cert_pem, leaf.key_pem))
            .client_ca_root(Certificate::from_pem(ca.ca_pem()));
        let mut args = self.serve(Some(tls)).await;
        args.endpoint = args
            .endpoint
            .replace("http://127.0.0.1", "https://localhost");
        args
    }

    async fn serve(&self, tls: Option<ServerTlsConfig>) -> ClientArgs {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        let server = builder
            .add_service(QueueAdminServer::new(self.clone()))
            .add_service(ClusterAdminServer::new(self.clone()))
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(server);
        ClientArgs {
            endpoint: format!("http://{addr}"),
            token_file: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            timeout: Duration::from_secs(10),
            json: false,
        }
    }

    /// Starts the fake and connects to it with `MXFLEET_TOKEN=token`.
    pub async fn connect(&self, timeout: Duration) -> Admin {
        let mut args = self.start().await;
        args.timeout = timeout;
        Admin::connect(&args, Some("test-token-0123456789".into()))
            .await
            .unwrap()
    }

    /// Records the call and answers per [`Behaviour`]; `Ok` means: serve it normally.
    async fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.seen.lock().unwrap().authorization.push(authorization);
        match self.behaviour {
            Behaviour::Normal => Ok(()),
            Behaviour::NoQuorum => {
                let mut status = Status::unavailable("no quorum answered; leader is node 2");
                status
                    .metadata_mut()
                    .insert("x-mxfleet-leader", MetadataValue::from_static("2"));
                Err(status)
            }
            Behaviour::Deny => Err(Status::permission_denied("token ops lacks the permission")),
            Behaviour::Hang => std::future::pending().await,
        }
    }
}

fn summary(id: u64) -> MessageSummary {
    MessageSummary {
        id: id.to_string(),
        state: MessageState::Deferred as i32,
        size: 1000,
        ..Default::default()
    }
}

type BoxStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl QueueAdmin for FakeNode {
    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        self.admit(&request).await?;
        let request = request.into_inner();
        self.seen.lock().unwrap().page_sizes.push(request.page_size);
        let start: u64 = request.page_token.parse().unwrap_or(0);
        let end = (start + u64::from(request.page_size.clamp(1, 1000))).min(self.messages);
        Ok(Response::new(ListReply {
            messages: (start + 1..=end).map(summary).collect(),
            next_page_token: if end < self.messages {
                end.to_string()
            } else {
                String::new()
            },
            total_matched: self.messages,
            total_bytes: self.messages * 1000,
        }))
    }

    async fn show(&self, request: Request<ShowRequest>) -> Result<Response<MessageDetail>, Status> {
        self.admit(&request).await?;
        Err(Status::not_found(format!(
            "no message {}",
            request.into_inner().id
        )))
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<QueueStats>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(QueueStats {
            total_messages: self.messages,
            ..Default::default()
        }))
    }

    type ActStream = BoxStream<ActProgress>;

    async fn act(&self, request: Request<ActRequest>) -> Result<Response<Self::ActStream>, Status> {
        self.admit(&request).await?;
        let request = request.into_inner();
        self.seen.lock().unwrap().acts.push(request.clone());
        let selector = request.selector.unwrap_or_default();
        let matched = if selector.ids.is_empty() {
            self.messages
        } else {
            selector.ids.len() as u64
        };
        let mut updates = Vec::new();
        if !request.dry_run {
            if selector.ids.is_empty() && !request.confirmed {
                return Err(Status::failed_precondition(
                    "a bulk action must be confirmed",
                ));
            }
            updates.extend((500..matched).step_by(500).map(|done| ActProgress {
                matched,
                done,
                ..Default::default()
            }));
        }
        let done = if request.dry_run { 0 } else { matched };
        updates.push(ActProgress {
            matched,
            done,
            finished: true,
            ..Default::default()
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(
            updates.into_iter().map(Ok),
        ))))
    }

    async fn flush(&self, request: Request<FlushRequest>) -> Result<Response<FlushReply>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(FlushReply {
            made_due: self.messages,
        }))
    }

    type ReadStream = BoxStream<BodyChunk>;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        self.admit(&request).await?;
        let chunks: Vec<Result<BodyChunk, Status>> = self
            .body
            .chunks(1000)
            .map(|c| {
                Ok(BodyChunk {
                    data: c.to_vec().into(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

#[tonic::async_trait]
impl ClusterAdmin for FakeNode {
    async fn status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(ClusterStatus {
            answered_by: 1,
            leader: Some(1),
            term: 3,
            ..Default::default()
        }))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(MembershipReply { log_index: 10 }))
    }

    async fn promote(
        &self,
        request: Request<NodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(MembershipReply { log_index: 11 }))
    }

    async fn remove(
        &self,
        request: Request<NodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(MembershipReply { log_index: 12 }))
    }

    async fn transfer_leader(
        &self,
        request: Request<NodeRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(TransferLeaderReply {
            leader: Some(request.into_inner().id),
        }))
    }

    async fn drain(&self, request: Request<DrainRequest>) -> Result<Response<DrainReply>, Status> {
        self.admit(&request).await?;
        Ok(Response::new(DrainReply {
            log_index: 13,
            leased_messages: 2,
        }))
    }
}
