//! Builds the SMTP service of a node from its validated configuration: the relay
//! policy (recipient lists and files), STARTTLS certificates, limits and timeouts.
//! A SIGHUP reload (`reload`) builds the same service again from the new file.

use std::sync::Arc;

use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::listener::ConnectionLimits;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy, load_recipient_file, parse_recipient_list};
use mxfleet_smtp::tls::{load_pem_files, server_config};
use mxfleet_smtp::{PolicyHandle, SessionConfig, SessionLimits};

use mxfleet_delivery::route::{NextHop, NextHopHost};
use mxfleet_smtp::checks::SpamChecks;

use crate::config::{BareLineEndingsSetting, NodeConfig, RecipientSource};
use crate::node::SmtpService;
use crate::spam_setup::SpamSetup;

/// Why the SMTP service could not be set up; each names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("relay_domains[{index}] ({domain}): {detail}")]
    Recipients {
        index: usize,
        domain: String,
        detail: String,
    },
    #[error("{key}: {detail}")]
    Tls { key: String, detail: String },
}

impl SmtpSetupError {
    /// The config key at fault, as `config check` would name it.
    pub fn key(&self) -> String {
        match self {
            SmtpSetupError::Recipients { index, .. } => format!("relay_domains[{index}]"),
            SmtpSetupError::Tls { key, .. } => key.clone(),
        }
    }

    /// What is wrong there.
    pub fn detail(&self) -> String {
        match self {
            SmtpSetupError::Recipients { domain, detail, .. } => format!("{domain}: {detail}"),
            SmtpSetupError::Tls { detail, .. } => detail.clone(),
        }
    }
}

/// The relay policy described by `config`, reading recipient files.
pub fn relay_policy(config: &NodeConfig) -> Result<RelayPolicy, SmtpSetupError> {
    let mut domains = Vec::new();
    for (index, relay) in config.relay_domains.iter().enumerate() {
        let failed = |detail: String| SmtpSetupError::Recipients {
            index,
            domain: relay.domain.clone(),
            detail,
        };
        let rule = match &relay.recipients {
            RecipientSource::CatchAll => RecipientRule::CatchAll,
            RecipientSource::Listed(_) => {
                let listed = relay.listed_addresses().unwrap_or_default().join("\n");
                parse_recipient_list(&listed, &relay.domain).map_err(|e| failed(e.to_string()))?
            }
            RecipientSource::File(path) => {
                load_recipient_file(path, &relay.domain).map_err(|e| failed(e.to_string()))?
            }
        };
        domains.push((relay.domain.clone(), rule));
    }
    Ok(RelayPolicy::new(domains))
}

/// Every explicit next hop of every relay domain (`host:port`), for the list of
/// clients never greylisted.
fn static_next_hops(config: &NodeConfig) -> Vec<String> {
    let mut hops = Vec::new();
    for relay in &config.relay_domains {
        let route = &relay.delivery.route;
        for next_hop in std::iter::once(&route.primary).chain(route.fallback.as_ref()) {
            if let NextHop::Explicit(hosts) = next_hop {
                for host in hosts {
                    let name = match &host.host {
                        NextHopHost::Name(name) => name.clone(),
                        NextHopHost::Ip(ip) => ip.to_string(),
                    };
                    hops.push(host_port(&name, host.port));
                }
            }
        }
    }
    hops
}

/// `host:port`, bracketing an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The SMTP service described by `config`.
pub fn smtp_service(config: &NodeConfig) -> Result<SmtpService, SmtpSetupError> {
    let smtp = &config.smtp;
    let tls = if smtp.tls_certificates.is_empty() {
        None
    } else {
        let mut certificates = Vec::new();
        for (index, certificate) in smtp.tls_certificates.iter().enumerate() {
            let mut pem = load_pem_files(&certificate.cert, &certificate.key).map_err(|e| {
                SmtpSetupError::Tls {
                    key: format!("smtp.tls_certificates[{index}]"),
                    detail: e.to_string(),
                }
            })?;
            pem.names = certificate.names.clone();
            certificates.push(pem);
        }
        Some(
            server_config(&certificates).map_err(|e| SmtpSetupError::Tls {
                key: "smtp.tls_certificates".into(),
                detail: e.to_string(),
            })?,
        )
    };
    if config.relay_domains.is_empty() {
        tracing::warn!("smtp_no_relay_domains: this node will refuse every recipient");
    }
    let session = SessionConfig {
        hostname: smtp.hostname.clone(),
        limits: SessionLimits {
            max_message_size: smtp.message_size_limit,
            max_recipients: smtp.recipient_limit,
            max_errors: smtp.hard_error_limit,
            command_timeout: smtp.timeout,
            data_block_timeout: smtp.data_timeout,
            data_total_timeout: smtp.data_total_timeout,
            ..SessionLimits::default()
        },
        bare_line_endings: match smtp.bare_line_endings {
            BareLineEndingsSetting::Reject => BareLineEndings::Reject,
            BareLineEndingsSetting::Normalize => BareLineEndings::Normalize,
        },
        tls,
        policy: Arc::new(PolicyHandle::new(relay_policy(config)?)),
        etrn_networks: smtp.etrn_networks.clone(),
        metrics: Default::default(),
        // Replaced in `Node::start` once the queue exists (see `spam_setup`).
        spam: Arc::new(SpamChecks::none()),
    };
    Ok(SmtpService {
        listen: smtp.listen,
        session: Arc::new(session),
        connections: ConnectionLimits {
            max_connections: smtp.max_connections,
            max_per_client: smtp.client_connection_count_limit,
        },
        spam: Some(SpamSetup {
            config: config.spam.clone(),
            dns_servers: config.dns_servers.clone(),
            primaries: static_next_hops(config),
        }),
    })
}
