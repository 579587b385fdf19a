//! The SMTP listener: accepts connections, enforces the connection limits (in total and
//! per client IP, like Postfix's `smtpd_client_connection_count_limit`), and runs one
//! session per connection on the node's `TaskTracker`.
//!
//! Each accepted connection takes the [`SessionConfigHandle`]'s config of that moment,
//! so a reload reaches new connections and leaves open ones alone.
//!
//! Lifecycle: `serve` runs until the shutdown token is cancelled; it then stops
//! accepting, and each session answers `421 4.3.2` at its next command (a transaction
//! in flight is finished first). The caller waits for the tracker to drain.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{SessionConfig, SessionConfigHandle};
use crate::intake::MessageIntake;
use crate::metrics::RejectReason;
use crate::reply::Reply;
use crate::session::{ClientInfo, run_session};

/// Connection limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Sessions at once, all clients together.
    pub max_connections: usize,
    /// Sessions at once from one client IP.
    pub max_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 500,
            max_per_client: 50,
        }
    }
}

/// Counts open sessions per client; a `Slot` gives its place back when dropped.
#[derive(Default)]
struct ConnectionCounts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

struct Slot {
    counts: Arc<Mutex<ConnectionCounts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.ip);
            }
        }
    }
}

fn take_slot(
    counts: &Arc<Mutex<ConnectionCounts>>,
    ip: IpAddr,
    limits: ConnectionLimits,
) -> Result<Slot, &'static str> {
    let mut guard = counts.lock().unwrap_or_else(|p| p.into_inner());
    if guard.total >= limits.max_connections {
        return Err("too many connections");
    }
    let mine = guard.per_client.get(&ip).copied().unwrap_or(0);
    if mine >= limits.max_per_client {
        return Err("too many connections from your IP");
    }
    guard.total += 1;
    *guard.per_client.entry(ip).or_insert(0) += 1;
    Ok(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Accepts SMTP connections on `listener` until `shutdown`, all with one config.
pub async fn serve(
    listener: TcpListener,
    config: Arc<SessionConfig>,
    limits: ConnectionLimits,
    intake: Arc<dyn MessageIntake>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let handle = Arc::new(SessionConfigHandle::new(config));
    serve_reloadable(listener, handle, limits, intake, shutdown, tracker).await;
}

/// Accepts SMTP connections on `listener` until `shutdown`; each new connection gets
/// the config `handle` holds when it is accepted.
pub async fn serve_reloadable(
    listener: TcpListener,
    handle: Arc<SessionConfigHandle>,
    limits: ConnectionLimits,
    intake: Arc<dyn MessageIntake>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let counts = Arc::new(Mutex::new(ConnectionCounts::default()));
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(listen = %local, "smtp_listening");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, addr): (_, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: keep serving the sessions we have.
                warn!(cause = %e, "smtp_accept_failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let config = handle.current();
        config.metrics.connection_accepted();
        if let Some(why) = intake.refuses_sessions() {
            info!(client = %addr, why, "smtp_connection_refused");
            let reply = Reply::new(
                421,
                "4.3.2",
                format!("{} Service not available: {why}", config.hostname),
            );
            config.metrics.rejected(RejectReason::NodeDrained);
            config.metrics.reply_sent(&reply);
            tracker.spawn(async move {
                let _ = stream.write_all(reply.to_wire().as_bytes()).await;
                let _ = stream.shutdown().await;
            });
            continue;
        }
        let slot = match take_slot(&counts, addr.ip(), limits) {
            Ok(slot) => slot,
            Err(why) => {
                info!(client = %addr, why, "smtp_connection_refused");
                let reply = Reply::new(421, "4.7.0", format!("{} Error: {why}", config.hostname));
                config.metrics.rejected(RejectReason::ConnectionLimit);
                config.metrics.reply_sent(&reply);
                tracker.spawn(async move {
                    let _ = stream.write_all(reply.to_wire().as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
                continue;
            }
        };
        let (intake, shutdown) = (intake.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _slot = slot;
            run_session(stream, ClientInfo { addr }, config, intake, shutdown).await;
        });
    }
    info!(listen = %local, "smtp_listener_stopped");
}
