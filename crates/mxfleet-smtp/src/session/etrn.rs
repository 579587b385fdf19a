//! ETRN (RFC 1985): a client on an allowed network asks the fleet to start delivering
//! a relay domain's deferred mail now, the same as a successful probe or
//! `mxfleet queue flush DOMAIN`. Answers `250` once the flush is committed, `459`
//! when the client or the domain is not allowed, `458` when the fleet cannot do it now.

use tracing::info;

use super::{Session, Stop};
use crate::reply::Reply;

impl Session {
    pub(super) async fn etrn(&mut self, name: String) -> Result<(), Stop> {
        if self.greeting.is_none() {
            return self.error_reply(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
        }
        if self.transaction.is_some() {
            return self.error_reply(Reply::new(
                503,
                "5.5.1",
                "Error: ETRN not allowed in a mail transaction",
            ));
        }
        // `@domain` asks for subdomains too, which is the same here; `#queue` names
        // are not supported.
        let domain = name.trim().trim_start_matches('@').to_ascii_lowercase();
        if domain.is_empty() || domain.starts_with('#') {
            return self.error_reply(Reply::new(501, "5.5.4", "Syntax: ETRN domain"));
        }
        let client_ip = self.client.addr.ip();
        if !self
            .config
            .etrn_networks
            .iter()
            .any(|network| network.contains(client_ip))
        {
            info!(client = %self.client.addr, domain, result = "client_not_allowed", "smtp_etrn");
            return self.error_reply(Reply::new(
                459,
                "4.7.1",
                format!("<{domain}>: client not allowed to use ETRN"),
            ));
        }
        if !self.config.policy.current().is_relay_domain(&domain) {
            info!(client = %self.client.addr, domain, result = "not_a_relay_domain", "smtp_etrn");
            return self.error_reply(Reply::new(
                459,
                "4.7.1",
                format!("<{domain}>: service unavailable"),
            ));
        }
        match self.intake.flush_destination(&domain).await {
            Ok(()) => {
                info!(client = %self.client.addr, domain, result = "started", "smtp_etrn");
                self.ok(Reply::new(
                    250,
                    "2.0.0",
                    format!("Queuing for node {domain} started"),
                ))
            }
            Err(e) => {
                info!(client = %self.client.addr, domain, result = "failed", cause = %e, "smtp_etrn");
                self.error_reply(Reply::new(
                    458,
                    "4.3.0",
                    format!("Unable to queue messages for node {domain}"),
                ))
            }
        }
    }
}
