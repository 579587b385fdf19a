//! What an SMTP session needs to know: the name it announces, its limits and timeouts,
//! TLS, how to treat bare line endings, and the relay policy.
//!
//! Two handles make it reloadable (SIGHUP) without dropping a connection:
//! - [`PolicyHandle`]: the relay policy, read at every RCPT, so that sessions already
//!   open see new recipients at once.
//! - [`SessionConfigHandle`]: the whole [`SessionConfig`] (TLS certificates, spam
//!   checks, limits), taken by the listener for each new connection; a session keeps
//!   the config it started with until it ends.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::data::BareLineEndings;
use crate::policy::RelayPolicy;

/// Limits and timeouts of one session. Defaults follow RFC 5321 §4.5.3 and Postfix.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Largest message accepted (also announced as `SIZE`).
    pub max_message_size: u64,
    /// Recipients per message (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Protocol errors before `421 4.7.0` and disconnect (Postfix smtpd_hard_error_limit).
    pub max_errors: u32,
    /// Commands per connection.
    pub max_commands: u32,
    /// Mail transactions per connection (Postfix sets no limit by default; this one
    /// only stops a client that never lets go of its connection).
    pub max_transactions: u32,
    /// Longest command line, CRLF included (Postfix line_length_limit).
    pub max_line_length: usize,
    /// Waiting for a command (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout: Duration,
    /// Waiting for the next chunk of DATA (RFC 5321 §4.5.3.2.5: 3 minutes).
    pub data_block_timeout: Duration,
    /// The whole of DATA, from 354 to the final dot.
    pub data_total_timeout: Duration,
    /// The STARTTLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_message_size: 64_000_000,
            max_recipients: 1000,
            max_errors: 20,
            max_commands: 10_000,
            max_transactions: 1000,
            max_line_length: 2048,
            command_timeout: Duration::from_secs(300),
            data_block_timeout: Duration::from_secs(180),
            data_total_timeout: Duration::from_secs(600),
            tls_handshake_timeout: Duration::from_secs(60),
        }
    }
}

/// The relay policy, replaceable at run time (SIGHUP reload) without dropping sessions:
/// a session reads the current policy at each RCPT.
#[derive(Debug)]
pub struct PolicyHandle(RwLock<Arc<RelayPolicy>>);

impl PolicyHandle {
    pub fn new(policy: RelayPolicy) -> Self {
        PolicyHandle(RwLock::new(Arc::new(policy)))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<RelayPolicy> {
        self.0
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Swaps in a new policy; sessions pick it up at their next command.
    pub fn replace(&self, policy: RelayPolicy) {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(policy);
    }
}

/// The session config that new connections get, replaceable at run time (SIGHUP
/// reload). Lifecycle: the listener reads it once per accepted connection; the session
/// owns that `Arc` until it ends, so a reload never changes a session in progress
/// (a TLS session keeps the certificate it was made with).
#[derive(Debug)]
pub struct SessionConfigHandle(RwLock<Arc<SessionConfig>>);

impl SessionConfigHandle {
    pub fn new(config: Arc<SessionConfig>) -> Self {
        SessionConfigHandle(RwLock::new(config))
    }

    /// The config for a connection accepted now.
    pub fn current(&self) -> Arc<SessionConfig> {
        self.0
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|c| c.into_inner().clone())
    }

    /// Swaps in a new config for the connections accepted from now on.
    pub fn replace(&self, config: Arc<SessionConfig>) {
        let mut slot = self.0.write().unwrap_or_else(|c| c.into_inner());
        *slot = config;
    }
}

/// Everything a session needs besides its stream and the intake.
#[derive(Clone)]
pub struct SessionConfig {
    /// The name in the banner, EHLO reply and log lines.
    pub hostname: String,
    pub limits: SessionLimits,
    pub bare_line_endings: BareLineEndings,
    /// STARTTLS is offered only when this is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub policy: Arc<PolicyHandle>,
    /// Clients allowed to use ETRN (RFC 1985); empty refuses everyone with `459`.
    pub etrn_networks: Vec<crate::policy::IpNetwork>,
    /// Where the listener and sessions count what they do; the node registers it.
    pub metrics: crate::metrics::SmtpMetrics,
    /// The spam checks (`SpamChecks::none()` when `[spam]` configures none).
    pub spam: Arc<crate::checks::SpamChecks>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("hostname", &self.hostname)
            .field("limits", &self.limits)
            .field("bare_line_endings", &self.bare_line_endings)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}
