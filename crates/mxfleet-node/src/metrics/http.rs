//! The metrics endpoint: HTTP/1.1 (hyper) on its own listener. `GET /metrics` (and
//! `HEAD`) answers the node's metrics in the OpenMetrics text format. `GET /ready`
//! answers `200` while a `250` is possible here: Raft runs, the node knows a leader,
//! it is not drained and not stopping; else `503` with the reason. It is the readiness
//! probe of load balancers and Kubernetes. Other methods get `405`, every other path `404`. No TLS and no
//! authentication: bind it to an address only the Prometheus server reaches.
//!
//! Lifecycle: [`serve`] accepts until the node's shutdown token is cancelled. Each
//! connection runs on the node's `TaskTracker`; on shutdown it finishes the response in
//! progress and closes (hyper's graceful shutdown), so the tracker drains promptly.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use mxfleet_queue::Queue;

use super::NodeMetrics;

/// A client that does not finish sending its request headers in this time is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: NodeMetrics,
    queue: Queue,
    stopping: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(listen = %local, "metrics_listening");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!(cause = %e, "metrics_accept_failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        let readiness = Readiness {
            queue: queue.clone(),
            stopping: stopping.clone(),
        };
        tracker.spawn(async move {
            let service =
                service_fn(move |request| answer(request, metrics.clone(), readiness.clone()));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                debug!(client = %client, cause = %e, "metrics_connection_failed");
            }
        });
    }
    info!(listen = %local, "metrics_listener_stopped");
}

async fn answer(
    request: Request<Incoming>,
    metrics: NodeMetrics,
    readiness: Readiness,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method();
    let path = request.uri().path();
    if path != "/metrics" && path != "/ready" {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "not found; try /metrics or /ready\n",
        ));
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    if path == "/ready" {
        return Ok(readiness.answer());
    }
    // Encoding walks the whole queue state: keep it off the async workers.
    let text = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(super::CONTENT_TYPE));
    Ok(response)
}

/// What `/ready` looks at: the queue, and the token that says the node is stopping
/// (its SMTP side is cancelled first).
#[derive(Clone)]
struct Readiness {
    queue: Queue,
    stopping: CancellationToken,
}

impl Readiness {
    /// `200 ready: leader N` while a `250` is possible here, else `503` and why.
    fn answer(&self) -> Response<Full<Bytes>> {
        let status = self.queue.status();
        let refusal = if self.stopping.is_cancelled() {
            Some("the node is stopping".to_owned())
        } else if status.role == "shutdown" {
            Some("Raft has stopped (see raft_failed in the log)".to_owned())
        } else if self.queue.is_drained() {
            Some("the node is drained for maintenance".to_owned())
        } else if status.leader.is_none() {
            Some(format!("node {} knows no leader", status.node_id))
        } else {
            None
        };
        match (refusal, status.leader) {
            (None, Some(leader)) => plain(StatusCode::OK, format!("ready: leader {leader}\n")),
            (refusal, _) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", refusal.unwrap_or_default()),
            ),
        }
    }
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
