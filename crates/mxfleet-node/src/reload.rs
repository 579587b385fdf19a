//! SIGHUP: what a running node takes from a changed config file, without dropping a
//! connection.
//!
//! Reloaded at once: the relay domains and their recipient lists (sessions already open
//! see them at their next RCPT), the `[spam]` section and each domain's checks, the
//! STARTTLS certificates, and the SMTP limits and timeouts but the message size limit
//! (these two for connections accepted from then on; a session keeps what it started
//! with, a TLS session its certificate). The rate limiters start empty.
//!
//! A reload is all or nothing: everything is built first (recipient files read,
//! certificates and keys checked, spam checks assembled), and only then swapped in. Any
//! error keeps the whole old config and is reported with its key path
//! ([`ReloadRejected`]).
//!
//! What needs a restart (listen addresses, identity, peers, Raft, the admin API,
//! delivery settings, the message size limit, which the queue enforces too) is
//! compared with the config the node started with, and each
//! changed key is reported ([`Reloaded::needs_restart`]) so the operator knows the
//! file and the running node differ.
//!
//! Main types: [`SmtpReloader`] (owned by `Node`), [`Reloaded`], [`ReloadRejected`].

use std::fmt::Debug;
use std::sync::Arc;

use mxfleet_smtp::checks::SpamChecks;
use mxfleet_smtp::{SessionConfig, SessionConfigHandle, SessionLimits};

use crate::config::NodeConfig;
use crate::spam_setup::FleetSpamParts;

/// Rebuilds a running node's SMTP config from a new file and swaps it in.
pub struct SmtpReloader {
    /// The listener's handle: what each new connection gets.
    handle: Arc<SessionConfigHandle>,
    /// The spam checks' fleet state and prober, made at start and kept across reloads;
    /// `None` when the node was started without spam setup (then no domain may use a
    /// fleet-backed check).
    fleet_spam: Option<FleetSpamParts>,
}

/// A reload that took effect.
#[derive(Debug)]
pub struct Reloaded {
    pub relay_domains: usize,
    pub tls_certificates: usize,
    /// Relay domains with at least one spam check.
    pub checked_domains: usize,
    /// Keys that differ from the config the node started with and only take effect
    /// at a restart (the reload applied everything else).
    pub needs_restart: Vec<String>,
}

/// A reload that changed nothing: every error, each with its key path.
#[derive(Debug)]
pub struct ReloadRejected {
    pub errors: Vec<KeyError>,
}

/// One problem in the new config.
#[derive(Debug)]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

impl SmtpReloader {
    pub fn new(handle: Arc<SessionConfigHandle>, fleet_spam: Option<FleetSpamParts>) -> Self {
        SmtpReloader { handle, fleet_spam }
    }

    /// Applies what `new` says that can change at run time. `started_with` is the
    /// config the node was started from, to report what needs a restart.
    pub async fn reload(
        &self,
        started_with: &NodeConfig,
        new: &NodeConfig,
    ) -> Result<Reloaded, ReloadRejected> {
        let rejected = |key: String, message: String| ReloadRejected {
            errors: vec![KeyError { key, message }],
        };
        let service =
            crate::smtp_setup::smtp_service(new).map_err(|e| rejected(e.key(), e.detail()))?;
        let spam = match (&self.fleet_spam, &service.spam) {
            (Some(fleet), Some(setup)) => crate::spam_setup::build(setup, fleet)
                .await
                .map_err(|e| rejected("spam".into(), e.to_string()))?,
            _ if new
                .spam
                .domain_checks
                .values()
                .all(|checks| checks.is_empty()) =>
            {
                SpamChecks::none()
            }
            _ => {
                return Err(rejected(
                    "spam".into(),
                    "this node was started without spam checks; restart it to add them".into(),
                ));
            }
        };
        let running = self.handle.current();
        let fresh = &service.session;
        // The policy handle and the metrics stay the same objects: open sessions read
        // the policy through the handle, and the counters must not restart from zero.
        let session = SessionConfig {
            hostname: fresh.hostname.clone(),
            // The queue's body writer and the peers' replication keep the size limit
            // they started with; announcing a larger SIZE would take bodies the queue
            // then refuses.
            limits: SessionLimits {
                max_message_size: running.limits.max_message_size,
                ..fresh.limits.clone()
            },
            bare_line_endings: fresh.bare_line_endings,
            tls: fresh.tls.clone(),
            policy: running.policy.clone(),
            etrn_networks: fresh.etrn_networks.clone(),
            metrics: running.metrics.clone(),
            spam: Arc::new(spam),
        };
        running
            .policy
            .replace(fresh.policy.current().as_ref().clone());
        self.handle.replace(Arc::new(session));
        Ok(Reloaded {
            relay_domains: new.relay_domains.len(),
            tls_certificates: new.smtp.tls_certificates.len(),
            checked_domains: new
                .spam
                .domain_checks
                .values()
                .filter(|checks| !checks.is_empty())
                .count(),
            needs_restart: needs_restart(started_with, new),
        })
    }
}

/// The keys whose new value only a restart applies, where `new` differs from
/// `started_with`.
pub fn needs_restart(started_with: &NodeConfig, new: &NodeConfig) -> Vec<String> {
    let (old, now) = (started_with, new);
    let mut keys = Vec::new();
    let mut compare = |key: &str, before: &dyn Debug, after: &dyn Debug| {
        if format!("{before:?}") != format!("{after:?}") {
            keys.push(key.to_owned());
        }
    };
    compare("node", &old.node, &now.node);
    compare("peer", &old.peer, &now.peer);
    compare("cluster", &old.cluster, &now.cluster);
    compare("raft", &old.raft, &now.raft);
    compare("queue", &old.queue, &now.queue);
    compare("smtp.listen", &old.smtp.listen, &now.smtp.listen);
    compare(
        "smtp.message_size_limit",
        &old.smtp.message_size_limit,
        &now.smtp.message_size_limit,
    );
    // The banner takes the new name at once; delivery's MX loop detection keeps the
    // names it started with.
    compare(
        "smtp.hostname (delivery's own names)",
        &old.smtp.hostname,
        &now.smtp.hostname,
    );
    // The recipient prober is made once, with these.
    compare(
        "spam.verify.probe_sender",
        &old.spam.verify.probe_sender,
        &now.spam.verify.probe_sender,
    );
    compare(
        "spam.verify.probe_timeout",
        &old.spam.verify.probe_timeout,
        &now.spam.verify.probe_timeout,
    );
    compare(
        "smtp.max_connections",
        &old.smtp.max_connections,
        &now.smtp.max_connections,
    );
    compare(
        "smtp.client_connection_count_limit",
        &old.smtp.client_connection_count_limit,
        &now.smtp.client_connection_count_limit,
    );
    compare("admin", &old.admin, &now.admin);
    compare("metrics.listen", &old.metrics_listen, &now.metrics_listen);
    compare("log.format", &old.log_format, &now.log_format);
    compare("delivery.dns_servers", &old.dns_servers, &now.dns_servers);
    compare("delivery.mx_port", &old.mx_port, &now.mx_port);
    // Delivery reads its settings once: the fleet-wide ones, and each relay domain's
    // route, lifetimes and TLS policy. A relay domain added by a reload takes mail at
    // once, and is delivered with the default policy (MX) until the restart.
    let mut old_delivery = old.delivery.clone();
    let mut new_delivery = now.delivery.clone();
    let old_destinations = std::mem::take(&mut old_delivery.destinations);
    let new_destinations = std::mem::take(&mut new_delivery.destinations);
    compare("delivery", &old_delivery, &new_delivery);
    for (index, relay) in now.relay_domains.iter().enumerate() {
        let key = format!(
            "relay_domains[{index}] ({}): delivery settings",
            relay.domain
        );
        compare(
            &key,
            &old_destinations.get(&relay.domain),
            &new_destinations.get(&relay.domain),
        );
    }
    // The primary watch is part of delivery: a domain newly primary-aware or verified
    // is treated as "primary up" until the restart starts watching it.
    compare(
        "spam (primary_aware / verify_recipients domains: the primary watch)",
        &crate::delivery_setup::watched_primaries(old),
        &crate::delivery_setup::watched_primaries(now),
    );
    keys
}
