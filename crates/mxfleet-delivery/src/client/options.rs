//! How the client behaves: the name it greets with, its TLS policy, its timeouts, and
//! the local address it connects from. Plain data, built by the caller (config or tests)
//! and borrowed by every connection.

use std::net::IpAddr;
use std::time::Duration;

/// Everything a connection needs besides the target.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Our name in EHLO/HELO (a fully qualified domain name).
    pub helo_name: String,
    pub tls: TlsPolicy,
    pub timeouts: ClientTimeouts,
    /// The local address to connect from; `None` lets the kernel choose. Must be of
    /// the same family as the target address.
    pub bind_address: Option<IpAddr>,
}

impl ClientOptions {
    /// Opportunistic TLS, RFC 5321 timeouts, no bind address.
    pub fn new(helo_name: impl Into<String>) -> Self {
        ClientOptions {
            helo_name: helo_name.into(),
            tls: TlsPolicy::Opportunistic,
            timeouts: ClientTimeouts::default(),
            bind_address: None,
        }
    }
}

/// When to use STARTTLS (RFC 3207) and what to check.
///
/// Every TLS failure is a temporary error for this host ([`super::ClientError::Tls`]).
/// The connection is dead after a failed handshake, so a caller that wants Postfix's
/// plaintext fallback under `Opportunistic` reconnects with [`TlsPolicy::Disabled`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never send STARTTLS, even when offered.
    Disabled,
    /// STARTTLS when the server offers it; any certificate is accepted (an MX host's
    /// certificate rarely matches its name, RFC 7435). A refused STARTTLS command
    /// continues in plaintext; a failed handshake is an error.
    #[default]
    Opportunistic,
    /// STARTTLS must be offered and succeed; the certificate is not checked.
    Required,
    /// STARTTLS must be offered and succeed, and the certificate must chain to a
    /// webpki root or one of `extra_roots_pem` and name the target's host.
    Verify { extra_roots_pem: Option<Vec<u8>> },
}

impl TlsPolicy {
    /// True when a connection without TLS must not carry mail.
    pub fn requires_tls(&self) -> bool {
        matches!(self, TlsPolicy::Required | TlsPolicy::Verify { .. })
    }
}

/// How long to wait at each step. Defaults follow RFC 5321 §4.5.3.2 where it gives
/// one, and Postfix otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// TCP connect (Postfix `smtp_connect_timeout`, 30 s).
    pub connect: Duration,
    /// The initial `220` greeting (RFC: 5 min).
    pub greeting: Duration,
    /// The reply to EHLO or HELO (Postfix `smtp_helo_timeout`, 5 min).
    pub helo: Duration,
    /// The reply to STARTTLS plus the TLS handshake (Postfix `smtp_starttls_timeout`,
    /// 5 min).
    pub starttls: Duration,
    /// The reply to MAIL (RFC: 5 min); also bounds writing the (pipelined) commands.
    pub mail: Duration,
    /// The reply to each RCPT (RFC: 5 min).
    pub rcpt: Duration,
    /// The `354` reply to DATA (RFC: 2 min).
    pub data_initiation: Duration,
    /// Each write of message content (RFC: 3 min).
    pub data_block: Duration,
    /// The reply to the final dot (RFC: 10 min).
    pub data_termination: Duration,
    /// The reply to RSET (Postfix `smtp_rset_timeout`, 20 s).
    pub rset: Duration,
    /// The reply to QUIT; errors are ignored, so this only bounds how long `quit`
    /// can take (Postfix waits 300 s; there is nothing to learn, so 20 s).
    pub quit: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        ClientTimeouts {
            connect: Duration::from_secs(30),
            greeting: 5 * MINUTE,
            helo: 5 * MINUTE,
            starttls: 5 * MINUTE,
            mail: 5 * MINUTE,
            rcpt: 5 * MINUTE,
            data_initiation: 2 * MINUTE,
            data_block: 3 * MINUTE,
            data_termination: 10 * MINUTE,
            rset: Duration::from_secs(20),
            quit: Duration::from_secs(20),
        }
    }
}
