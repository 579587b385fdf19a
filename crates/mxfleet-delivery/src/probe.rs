//! Drain on recovery: while a destination is down, every node probes it (connect,
//! EHLO, QUIT) every `probe_interval`. The first success reports it reachable through
//! Raft, which releases every deferred message for it at once (`released_at`); the
//! leader's next round assigns them, paced. Probes start only once an attempt has found
//! the destination down, so a primary that answers 4xx per message is left to its
//! backoff instead of being retried every probe. Watched primaries are left to
//! `primary_watch`, which probes them every interval anyway and reports the same way.
//!
//! Reaching a destination's primary is shared with `primary_watch` and `verify`:
//! - [`session_options`]: the client options under the destination's TLS policy.
//! - [`open_session`]: connect and open a session as delivery does, including the
//!   plaintext retry under opportunistic TLS.
//! - [`probe_primary`]: connect + EHLO + QUIT to the primary's targets in order.

use std::collections::BTreeSet;
use std::sync::Arc;

use mxfleet_core::MessageState;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info};

use crate::client::{ClientError, ClientOptions, SmtpConnection, TlsPolicy};
use crate::config::{DeliveryConfig, DestinationPolicy};
use crate::owner::DeliveryOwner;
use crate::route::Router;
use crate::target::ConnectTarget;

/// What one probe of a destination's primary found.
pub(crate) enum ProbeOutcome {
    /// This target opened a session (and was sent QUIT).
    Reached(ConnectTarget),
    /// No target opened a session, or routing failed: why, for the report's detail.
    Unreached(String),
}

/// The client's options with `policy`'s TLS.
pub(crate) fn session_options(
    config: &DeliveryConfig,
    policy: &DestinationPolicy,
) -> ClientOptions {
    ClientOptions {
        tls: policy.tls.clone(),
        ..config.client.clone()
    }
}

/// Opens a session with `target` as delivery does: under a TLS policy that does not
/// require TLS, a failed handshake is retried once in plaintext (as Postfix does), so
/// a primary with broken TLS is not mistaken for a dead one.
pub(crate) async fn open_session(
    target: &ConnectTarget,
    options: &ClientOptions,
) -> Result<SmtpConnection, ClientError> {
    match SmtpConnection::connect(target, options).await {
        Err(ClientError::Tls { .. }) if !options.tls.requires_tls() => {
            let plaintext = ClientOptions {
                tls: TlsPolicy::Disabled,
                ..options.clone()
            };
            SmtpConnection::connect(target, &plaintext).await
        }
        result => result,
    }
}

/// Connects to `destination`'s primary (the route delivery uses, without the fallback
/// relay), target by target, until one opens a session; says QUIT to it.
pub(crate) async fn probe_primary(
    config: &DeliveryConfig,
    router: &Router,
    destination: &str,
) -> ProbeOutcome {
    let policy = config.policy(destination);
    let targets = match router.route(destination, &policy.route.primary).await {
        Ok(targets) => targets,
        Err(e) => {
            debug!(destination, cause = %e, "probe_route_failed");
            return ProbeOutcome::Unreached(format!("{} ({e})", e.status()));
        }
    };
    let options = session_options(config, policy);
    let mut failures = Vec::new();
    for target in targets {
        match open_session(&target, &options).await {
            Ok(connection) => {
                connection.quit().await;
                return ProbeOutcome::Reached(target);
            }
            Err(e) => {
                debug!(destination, host = %target, cause = %e, "probe_failed");
                failures.push(e.to_string());
            }
        }
    }
    ProbeOutcome::Unreached(failures.join("; "))
}

impl DeliveryOwner {
    pub(crate) async fn probe_loop(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.config.probe_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if !self.in_contact() {
                continue;
            }
            for destination in self.destinations_down() {
                self.probe(&destination).await;
            }
        }
    }

    /// Destinations the fleet last saw down that still have deferred mail waiting,
    /// except watched primaries (`primary_watch` probes those).
    fn destinations_down(&self) -> BTreeSet<String> {
        self.queue
            .read_state(|state| {
                state
                    .entries
                    .values()
                    .filter(|e| e.state == MessageState::Queued && e.last_attempt_at.is_some())
                    .map(|e| e.destination())
                    .filter(|d| !self.config.watched_primaries.contains(d))
                    .filter(|d| state.fleet.destinations.get(d).is_some_and(|s| !s.is_up()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn probe(&self, destination: &str) {
        let ProbeOutcome::Reached(target) =
            probe_primary(&self.config, &self.router, destination).await
        else {
            return;
        };
        info!(destination, host = %target, "probe_succeeded");
        if let Err(e) = self
            .queue
            .report_reachability(destination, true, format!("probe reached {target}"))
            .await
        {
            debug!(destination, cause = %e, "probe_report_failed");
        }
    }
}
