//! Node configuration: one TOML file per fleet member, loaded in two stages before any
//! socket is bound.
//!
//! 1. **Raw** (`raw`): serde reads the file into structs that deny unknown keys and
//!    keep durations, sizes and addresses as strings. Only the shape is checked, so a
//!    typo'd key or a wrong TOML type is reported with its dotted key path
//!    (`raft.heartbeat_interval`) and line.
//! 2. **Validated** (`validated`): defaults are applied, units and addresses parsed,
//!    and every rule checked, including rules across keys. Every problem is collected,
//!    each with its key path (`cluster.initial_members[2].addr`), so the operator fixes
//!    the whole file in one go.
//!
//! The binary prints [`ConfigErrors`] (one line per problem) and exits with
//! [`EXIT_CONFIG`]:
//!
//! ```no_run
//! # use std::path::Path;
//! match mxfleet_node::config::load(Path::new("/etc/mxfleet/node.toml")) {
//!     Ok(_config) => { /* bind sockets, start Raft */ }
//!     Err(errors) => {
//!         eprintln!("{errors}");
//!         std::process::exit(mxfleet_node::config::EXIT_CONFIG);
//!     }
//! }
//! ```
//!
//! Layout:
//! - `raw`: stage 1, the file's shape (`RawConfig`).
//! - `validated`: stage 2, [`NodeConfig`] and its sections, and the rules across keys.
//! - `peer`: stage 2 of `[peer]`, [`PeerConfig`] (listen, advertise, source address,
//!   mutual TLS).
//! - `smtp`: stage 2 of `[smtp]`, [`SmtpConfig`] (listener, limits, STARTTLS).
//! - `delivery`: stage 2 of `[delivery]`, the node's `mxfleet_delivery::DeliveryConfig`.
//! - `relay_domains`: stage 2 of `[[relay_domains]]`, [`RelayDomainConfig`].
//! - `spam`: stage 2 of `[spam]` and each relay domain's `checks`, the node's
//!   `mxfleet_smtp::checks::SpamConfig` ([`NodeConfig::spam`]).
//! - `destination`: the per-destination delivery keys that `[delivery]` sets as defaults
//!   and each relay domain may override (route, TLS, limits, lifetime, delay warnings).
//! - `operations`: stage 2 of `[admin]` ([`AdminConfig`]: listener, TLS, tokens and
//!   their permissions), `[metrics]` and `[log]`.
//! - `fields`: stage-2 checks of single values (durations, sizes, counts, labels, files).
//! - `host_port`: `host:port` addresses that peers dial, normalized for comparison.
//! - `dns_name`: host names, domains and certificate names, normalized for comparison.
//! - `error`: [`ConfigError`], [`ConfigErrors`] and the collector both stages share.
//!
//! The examples in `deploy/examples/` are parsed by `tests/deploy_examples.rs`.

mod delivery;
mod destination;
mod dns_name;
mod error;
mod fields;
mod host_port;
mod operations;
mod peer;
mod raw;
mod relay_domains;
mod smtp;
mod spam;
mod validated;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use operations::{AdminConfig, AdminPermission, AdminTls, AdminToken, LogFormat, TokenSecret};
pub use peer::{PeerConfig, PeerTransport};
pub use relay_domains::{RecipientSource, RelayDomainConfig};
pub use smtp::{BareLineEndingsSetting, SmtpConfig, TlsCertificateConfig};
pub use validated::{
    ClusterConfig, InitialMember, NodeConfig, NodeIdentity, QueueLimits, RaftTimers,
};

use error::ErrorReport;

/// Process exit code for a configuration the node refuses to start with
/// (`EX_USAGE` in sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// How much of the host validation may look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecks {
    /// Check that the TLS files and recipient files exist and are readable, read the
    /// `smtp_tls_CAfile`s, check that an existing `data_dir` is a directory, and default
    /// `node.name` to the machine hostname. Used by [`load`] and [`parse`].
    Filesystem,
    /// Judge the text alone and touch nothing, e.g. to check example configs on a
    /// machine without the TLS or recipient files. `node.name` then defaults to
    /// `mxfleet-node-<id>`, and an `smtp_tls_CAfile` is not read: its policy carries no
    /// extra roots.
    Skip,
}

/// Reads and validates the config file at `path`, checking the files it names.
///
/// A file that cannot be read is reported as one error with an empty key.
pub fn load(path: &Path) -> Result<NodeConfig, ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with(&text, &origin, FileChecks::Filesystem),
        Err(why) => {
            let mut report = ErrorReport::new(&origin);
            report.push("", format!("cannot read config file: {why}"));
            report.finish(None)
        }
    }
}

/// Validates config `text`, checking the files it names; `origin` labels the errors
/// (usually the file path).
pub fn parse(text: &str, origin: &str) -> Result<NodeConfig, ConfigErrors> {
    parse_with(text, origin, FileChecks::Filesystem)
}

/// Validates config `text`, consulting the host only as far as `checks` allows.
pub fn parse_with(
    text: &str,
    origin: &str,
    checks: FileChecks,
) -> Result<NodeConfig, ConfigErrors> {
    let mut report = ErrorReport::new(origin);
    let config = raw::deserialize(text, &mut report)
        .and_then(|raw| validated::validate(raw, checks, &mut report));
    report.finish(config)
}
