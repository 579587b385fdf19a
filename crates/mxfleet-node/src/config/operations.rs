//! `[admin]`, `[metrics]` and `[log]`: how operators reach, watch and read a node.
//!
//! - `[admin]` is the gRPC admin listener (`mxfleet cluster …`, `mxfleet queue …`). It is
//!   separate from the peer port and off unless `listen` is set. Callers authenticate
//!   with a bearer token (`[[admin.tokens]]`) or, when `tls_client_ca` is set, with a
//!   client certificate signed by that CA. Each token carries permissions: `view`,
//!   `queue`, `cluster` and `read-body` (reading message bodies is its own permission
//!   and every use is logged). A listener that is not on loopback must use TLS unless
//!   `plaintext = true` says otherwise, so that tokens do not cross a network in clear.
//! - `[metrics]`: the Prometheus `/metrics` HTTP listener, off unless `listen` is set.
//! - `[log]`: `format = "text"` (default) or `"json"`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::FileChecks;
use super::error::ErrorReport;
use super::fields::existing_file;
use super::raw::{RawAdmin, RawAdminToken, RawLog, RawMetrics};

/// What an admin caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminPermission {
    /// Cluster status, queue list/show/stats.
    View,
    /// Queue changes: hold, release, delete, requeue, bounce, flush.
    Queue,
    /// Membership changes, leadership transfer and node drain.
    Cluster,
    /// Streaming a queued message's body (`queue read`), logged on every use.
    ReadBody,
}

impl AdminPermission {
    /// Every permission, in the order they are documented.
    pub const ALL: [AdminPermission; 4] = [
        AdminPermission::View,
        AdminPermission::Queue,
        AdminPermission::Cluster,
        AdminPermission::ReadBody,
    ];

    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminPermission::View => "view",
            AdminPermission::Queue => "queue",
            AdminPermission::Cluster => "cluster",
            AdminPermission::ReadBody => "read-body",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == word)
    }
}

impl fmt::Display for AdminPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[admin]`: the admin API listener and who may use it.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// `None` only with `plaintext = true` or a loopback `listen`.
    pub tls: Option<AdminTls>,
    pub tokens: Vec<AdminToken>,
    /// What a caller with a verified client certificate may do (with `tls.client_ca`).
    pub client_cert_permissions: BTreeSet<AdminPermission>,
}

/// Server TLS for the admin listener, and optionally the CA that client certificates
/// must be signed by (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// One bearer token: its name (for logs), what its secret hashes to, and what it may do.
#[derive(Clone)]
pub struct AdminToken {
    pub name: String,
    pub secret: TokenSecret,
    pub permissions: BTreeSet<AdminPermission>,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// Where a token's secret comes from. The node only ever keeps its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSecret {
    /// The SHA-256 of the secret (`secret_sha256`, or a `secret_file` already read).
    Sha256([u8; 32]),
    /// A `secret_file` not read because validation skipped the filesystem.
    Unread(PathBuf),
}

impl TokenSecret {
    /// The digest a presented token is compared with.
    pub fn digest_of(presented: &str) -> [u8; 32] {
        Sha256::digest(presented.as_bytes()).into()
    }
}

/// `[log]` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The checked `[admin]`, `[metrics]` and `[log]` tables.
pub(super) struct OperationsDraft {
    pub(super) admin: Option<Option<AdminConfig>>,
    pub(super) metrics_listen: Option<Option<SocketAddr>>,
    pub(super) log_format: Option<LogFormat>,
}

pub(super) fn check_operations(
    admin: RawAdmin,
    metrics: RawMetrics,
    log: RawLog,
    checks: FileChecks,
    report: &mut ErrorReport,
) -> OperationsDraft {
    OperationsDraft {
        admin: check_admin(admin, checks, report),
        metrics_listen: optional_listen(report, "metrics.listen", metrics.listen),
        log_format: match log.format.as_deref() {
            None | Some("text") => Some(LogFormat::Text),
            Some("json") => Some(LogFormat::Json),
            Some(other) => {
                report.push(
                    "log.format",
                    format!("{other:?} is not a log format; use \"text\" or \"json\""),
                );
                None
            }
        },
    }
}

fn optional_listen(
    report: &mut ErrorReport,
    key: &str,
    text: Option<String>,
) -> Option<Option<SocketAddr>> {
    let Some(text) = text else {
        return Some(None);
    };
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(Some(addr)),
        Err(_) => {
            report.push(
                key,
                format!("{text:?} is not an IP:port to bind, e.g. \"127.0.0.1:7402\""),
            );
            None
        }
    }
}

fn check_admin(
    raw: RawAdmin,
    checks: FileChecks,
    report: &mut ErrorReport,
) -> Option<Option<AdminConfig>> {
    let listen = optional_listen(report, "admin.listen", raw.listen.clone())?;
    let Some(listen) = listen else {
        if !raw.tokens.is_empty() || raw.tls_cert.is_some() {
            report.push(
                "admin.listen",
                "is required when other [admin] keys are set: the IP:port the admin API \
                 binds, e.g. listen = \"127.0.0.1:7402\"",
            );
            return None;
        }
        return Some(None);
    };
    let tls = admin_tls(report, &raw, listen, checks);
    let client_cert_permissions = permissions(
        report,
        "admin.client_cert_permissions",
        raw.client_cert_permissions.as_deref().unwrap_or(&[]),
    );
    let tokens: Vec<Option<AdminToken>> = raw
        .tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| admin_token(report, &format!("admin.tokens[{i}]"), token, checks))
        .collect();
    let has_client_ca = matches!(
        &tls,
        Some(Some(AdminTls {
            client_ca: Some(_),
            ..
        }))
    );
    if tokens.is_empty() && !has_client_ca {
        report.push(
            "admin.tokens",
            "no way to authenticate: add a token, e.g. [[admin.tokens]] name = \"ops\" \
             secret_file = \"/etc/mxfleet/admin.token\" permissions = [\"view\", \"queue\"], \
             or set tls_client_ca for client certificates",
        );
        return None;
    }
    let mut names = BTreeSet::new();
    for token in tokens.iter().flatten() {
        if !names.insert(token.name.clone()) {
            report.push(
                "admin.tokens",
                format!("token name {:?} is used twice; names appear in the audit log and must be unique", token.name),
            );
        }
    }
    Some(Some(AdminConfig {
        listen,
        tls: tls?,
        tokens: tokens.into_iter().collect::<Option<Vec<_>>>()?,
        client_cert_permissions: client_cert_permissions?,
    }))
}

fn admin_tls(
    report: &mut ErrorReport,
    raw: &RawAdmin,
    listen: SocketAddr,
    checks: FileChecks,
) -> Option<Option<AdminTls>> {
    let file = |report: &mut ErrorReport, key: &str, path: &Option<PathBuf>| {
        path.as_deref()
            .map(|path| existing_file(report, key, path, checks))
    };
    let cert = file(report, "admin.tls_cert", &raw.tls_cert);
    let key = file(report, "admin.tls_key", &raw.tls_key);
    let client_ca = file(report, "admin.tls_client_ca", &raw.tls_client_ca);
    match (cert, key) {
        (Some(cert), Some(key)) => Some(Some(AdminTls {
            cert: cert?,
            key: key?,
            client_ca: client_ca.flatten(),
        })),
        (None, None) => {
            if client_ca.is_some() {
                report.push(
                    "admin.tls_client_ca",
                    "client certificates need server TLS: set tls_cert and tls_key too",
                );
                return None;
            }
            if !listen.ip().is_loopback() && raw.plaintext != Some(true) {
                report.push(
                    "admin",
                    format!(
                        "admin.listen = \"{listen}\" is reachable from the network, so bearer \
                         tokens would travel in clear: set tls_cert and tls_key, or set \
                         plaintext = true if a tunnel or VPN protects it"
                    ),
                );
                return None;
            }
            Some(None)
        }
        _ => {
            report.push(
                "admin",
                "tls_cert and tls_key go together: set both or neither",
            );
            None
        }
    }
}

fn admin_token(
    report: &mut ErrorReport,
    key: &str,
    raw: RawAdminToken,
    checks: FileChecks,
) -> Option<AdminToken> {
    let name = match raw.name {
        Some(name) if !name.trim().is_empty() => Some(name),
        _ => {
            report.push(
                format!("{key}.name"),
                "is required: a label for the audit log, e.g. name = \"ops\"",
            );
            None
        }
    };
    let secret = match (raw.secret_file, raw.secret_sha256) {
        (Some(path), None) => token_file(report, &format!("{key}.secret_file"), &path, checks),
        (None, Some(hex_digest)) => {
            sha256_hex(report, &format!("{key}.secret_sha256"), &hex_digest)
        }
        (Some(_), Some(_)) => {
            report.push(key, "give secret_file or secret_sha256, not both");
            None
        }
        (None, None) => {
            report.push(
                key,
                "needs secret_file (a file holding the token) or secret_sha256 (the token's \
                 SHA-256 in hex, e.g. from `printf %s TOKEN | sha256sum`)",
            );
            None
        }
    };
    let permissions = match raw.permissions {
        Some(words) => permissions(report, &format!("{key}.permissions"), &words),
        None => {
            report.push(
                format!("{key}.permissions"),
                "is required, e.g. permissions = [\"view\", \"queue\"] (also \"cluster\", \"read-body\")",
            );
            None
        }
    };
    Some(AdminToken {
        name: name?,
        secret: secret?,
        permissions: permissions?,
    })
}

fn token_file(
    report: &mut ErrorReport,
    key: &str,
    path: &Path,
    checks: FileChecks,
) -> Option<TokenSecret> {
    let path = existing_file(report, key, path, checks)?;
    if checks == FileChecks::Skip {
        return Some(TokenSecret::Unread(path));
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() < 16 {
                report.push(
                    key,
                    format!(
                        "{}: the token is shorter than 16 characters; generate one with \
                         `openssl rand -hex 32`",
                        path.display()
                    ),
                );
                return None;
            }
            Some(TokenSecret::Sha256(TokenSecret::digest_of(token)))
        }
        Err(why) => {
            report.push(key, format!("{}: {why}", path.display()));
            None
        }
    }
}

fn sha256_hex(report: &mut ErrorReport, key: &str, text: &str) -> Option<TokenSecret> {
    let mut digest = [0u8; 32];
    match hex::decode_to_slice(text.trim(), &mut digest) {
        Ok(()) => Some(TokenSecret::Sha256(digest)),
        Err(_) => {
            report.push(key, "must be 64 hex digits (a SHA-256)");
            None
        }
    }
}

fn permissions(
    report: &mut ErrorReport,
    key: &str,
    words: &[String],
) -> Option<BTreeSet<AdminPermission>> {
    let mut set = BTreeSet::new();
    let mut ok = true;
    for word in words {
        match AdminPermission::parse(word) {
            Some(permission) => {
                set.insert(permission);
            }
            None => {
                report.push(
                    key,
                    format!(
                        "{word:?} is not a permission; use \"view\", \"queue\", \"cluster\" or \"read-body\""
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(set)
}
