//! Drain on recovery: while a destination is down, every node probes it (connect,
//! EHLO, QUIT) every `probe_interval`. The first success reports it reachable through
//! Raft, which releases every deferred message for it at once (`released_at`); the
//! leader's next round assigns them, paced. Probes start only once an attempt has found
//! the destination down, so a primary that answers 4xx per message is left to its
//! backoff instead of being retried every probe.

use std::collections::BTreeSet;
use std::sync::Arc;

use mxfleet_core::MessageState;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info};

use crate::client::{ClientOptions, SmtpConnection};
use crate::owner::DeliveryOwner;

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

    /// Destinations the fleet last saw down that still have deferred mail waiting.
    fn destinations_down(&self) -> BTreeSet<String> {
        self.queue
            .read_state(|state| {
                state
                    .entries
                    .values()
                    .filter(|e| e.state == MessageState::Queued && e.last_attempt_at.is_some())
                    .map(|e| e.destination())
                    .filter(|d| state.fleet.destinations.get(d).is_some_and(|s| !s.is_up()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn probe(&self, destination: &str) {
        let policy = self.config.policy(destination);
        let targets = match self.router.route(destination, &policy.route.primary).await {
            Ok(targets) => targets,
            Err(e) => {
                debug!(destination, cause = %e, "probe_route_failed");
                return;
            }
        };
        let options = ClientOptions {
            tls: policy.tls.clone(),
            ..self.config.client.clone()
        };
        for target in &targets {
            match SmtpConnection::connect(target, &options).await {
                Ok(connection) => {
                    connection.quit().await;
                    info!(destination, host = %target, "probe_succeeded");
                    if let Err(e) = self
                        .queue
                        .report_reachability(destination, true, format!("probe reached {target}"))
                        .await
                    {
                        debug!(destination, cause = %e, "probe_report_failed");
                    }
                    return;
                }
                Err(e) => debug!(destination, host = %target, cause = %e, "probe_failed"),
            }
        }
    }
}
