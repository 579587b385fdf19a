//! The admin API server: `ClusterAdmin` and `QueueAdmin` (proto/mxfleet/admin/v1) on
//! the node's own admin listener, never on the peer port.
//!
//! Every call passes the [`auth`] interceptor (bearer token or verified client
//! certificate) and then asks for the permission it needs. Writes log
//! `admin_call caller=… method=…`; body reads log `admin_body_read`.
//!
//! Layout:
//! - `auth`: callers, tokens, permissions.
//! - `errors`: queue errors as gRPC statuses, leader hints, linearizable reads.
//! - `view`: operator states, selectors, entry and history conversion.
//! - `cluster_service`, `queue_service`: the two services; `snapshot`: the backup
//!   archive stream (`ClusterAdmin.Snapshot`, needs `cluster` and `read-body`, logs
//!   `admin_snapshot_read`).

mod auth;
mod cluster_service;
mod errors;
mod queue_service;
mod snapshot;
mod view;

use std::net::SocketAddr;

use mxfleet_proto::MAX_MESSAGE_BYTES;
use mxfleet_proto::admin::v1::cluster_admin_server::ClusterAdminServer;
use mxfleet_proto::admin::v1::queue_admin_server::QueueAdminServer;
use mxfleet_queue::Queue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::{error, info};

use crate::config::AdminConfig;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen for the admin API on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Tokens(String),
}

/// Binds the admin listener and serves until `shutdown`. Returns the bound address.
pub async fn start(
    config: &AdminConfig,
    queue: Queue,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr, AdminError> {
    let authenticator = auth::Authenticator::new(config).map_err(AdminError::Tokens)?;
    let mut server = Server::builder();
    if let Some(tls) = &config.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| AdminError::Tls(format!("{}: {e}", path.display())))
        };
        let mut tls_config =
            ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            // Client certificates are optional at the TLS layer: a caller may still
            // come with a bearer token instead.
            tls_config = tls_config
                .client_ca_root(Certificate::from_pem(read(ca)?))
                .client_auth_optional(true);
        }
        server = server
            .tls_config(tls_config)
            .map_err(|e| AdminError::Tls(e.to_string()))?;
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AdminError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AdminError::Listen {
        addr: config.listen,
        source,
    })?;
    let cluster_auth = authenticator.clone();
    let cluster = InterceptedService::new(
        ClusterAdminServer::new(cluster_service::ClusterAdminService {
            queue: queue.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES),
        move |request| cluster_auth.intercept(request),
    );
    let queue_service = InterceptedService::new(
        QueueAdminServer::new(queue_service::QueueAdminService { queue })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        move |request| authenticator.intercept(request),
    );
    let router = server.add_service(cluster).add_service(queue_service);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    info!(listen = %addr, tls = config.tls.is_some(), "admin_listening");
    tracker.spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
            .await
        {
            error!(cause = %e, "admin_server_failed");
        }
        info!(listen = %addr, "admin_listener_stopped");
    });
    Ok(addr)
}
