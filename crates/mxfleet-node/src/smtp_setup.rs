//! Builds the SMTP service of a node from its validated configuration: the relay
//! policy (recipient lists and files), STARTTLS certificates, limits and timeouts.
//! `relay_policy` is also what a SIGHUP reload calls.

use std::sync::Arc;

use mxfleet_smtp::data::BareLineEndings;
use mxfleet_smtp::listener::ConnectionLimits;
use mxfleet_smtp::policy::{RecipientRule, RelayPolicy, load_recipient_file, parse_recipient_list};
use mxfleet_smtp::tls::{load_pem_files, server_config};
use mxfleet_smtp::{PolicyHandle, SessionConfig, SessionLimits};

use crate::config::{BareLineEndingsSetting, NodeConfig, RecipientSource};
use crate::node::SmtpService;

/// Why the SMTP service could not be set up; each names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("relay_domains[{index}] ({domain}): {detail}")]
    Recipients {
        index: usize,
        domain: String,
        detail: String,
    },
    #[error("smtp.tls_certificates: {0}")]
    Tls(String),
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

/// The SMTP service described by `config`.
pub fn smtp_service(config: &NodeConfig) -> Result<SmtpService, SmtpSetupError> {
    let smtp = &config.smtp;
    let tls = if smtp.tls_certificates.is_empty() {
        None
    } else {
        let mut certificates = Vec::new();
        for certificate in &smtp.tls_certificates {
            let mut pem = load_pem_files(&certificate.cert, &certificate.key)
                .map_err(|e| SmtpSetupError::Tls(e.to_string()))?;
            pem.names = certificate.names.clone();
            certificates.push(pem);
        }
        Some(server_config(&certificates).map_err(|e| SmtpSetupError::Tls(e.to_string()))?)
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
    };
    Ok(SmtpService {
        listen: smtp.listen,
        session: Arc::new(session),
        connections: ConnectionLimits {
            max_connections: smtp.max_connections,
            max_per_client: smtp.client_connection_count_limit,
        },
    })
}
