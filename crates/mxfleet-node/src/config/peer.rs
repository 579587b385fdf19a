//! `[peer]`: the Raft and replication port between fleet members, and how it is secured.
//!
//! `listen` is what the peer server binds; `advertise` is what the other members dial,
//! and defaults to `listen` (required when `listen` binds every interface).
//! `bind_address` is the source IP of the connections this node opens to the others (on
//! a multi-homed host, the address their firewalls expect); without it the kernel picks
//! one by route. Peer traffic is mutual TLS (`tls_cert`, `tls_key`, `tls_ca`) unless `plaintext = true` says
//! otherwise, explicitly: a forgotten TLS section is an error, not a plaintext fleet.
//!
//! Layout: the types ([`PeerConfig`], [`PeerTransport`]), then [`check_peer`] and the
//! checks of each key. Whether this node's `cluster.initial_members` entry matches the
//! advertised address is checked in [`super::validated`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::FileChecks;
use super::error::ErrorReport;
use super::fields::{bind_address, existing_file, required};
use super::host_port::HostPort;
use super::raw::RawPeer;

/// `[peer]`: the Raft and replication port between fleet members.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Where the peer server binds.
    pub listen: SocketAddr,
    /// `host:port` the other members dial, normalized (names lowercased, IPv6 in
    /// brackets). Equals `listen` unless `advertise` was given.
    pub advertise: String,
    /// The local IP every outgoing peer connection (Raft, forwarded writes, body
    /// replication) is made from; `None` lets the kernel choose.
    pub bind_address: Option<IpAddr>,
    pub transport: PeerTransport,
}

/// How peer connections are secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTransport {
    /// No TLS at all: development only, chosen with an explicit `plaintext = true`.
    Plaintext,
    /// Mutual TLS: this node presents `cert`/`key`, and accepts and dials only peers
    /// whose certificate is signed by `ca`. All three are PEM files.
    MutualTls {
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    },
}

/// The address peers dial, and which key it came from (for error messages).
pub(super) struct Advertised {
    pub(super) addr: HostPort,
    pub(super) from_key: &'static str,
}

/// `[peer]` with each key checked on its own: `None` where it was wrong.
pub(super) struct PeerDraft {
    pub(super) listen: Option<SocketAddr>,
    pub(super) advertised: Option<Advertised>,
    pub(super) bind_address: Option<Option<IpAddr>>,
    pub(super) transport: Option<PeerTransport>,
}

/// Checks every key of `[peer]` on its own; wrong keys are `None` in the draft.
pub(super) fn check_peer(
    mut raw: RawPeer,
    checks: FileChecks,
    report: &mut ErrorReport,
) -> PeerDraft {
    let listen = required(
        report,
        "peer.listen",
        raw.listen.take(),
        r#"the IP:port the peer port binds, e.g. listen = "0.0.0.0:7401""#,
    )
    .and_then(|text| listen_addr(report, &text));
    let advertised = match raw.advertise.take() {
        Some(text) => advertise_addr(report, &text),
        None => listen.and_then(|listen| advertise_from_listen(report, listen)),
    };
    let bind_address = bind_address(report, "peer.bind_address", raw.bind_address.take());
    let transport = peer_transport(report, &raw, checks);
    PeerDraft {
        listen,
        advertised,
        bind_address,
        transport,
    }
}

fn listen_addr(report: &mut ErrorReport, text: &str) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() == 0 => {
            report.push(
                "peer.listen",
                "port 0 would bind an ephemeral port that peers cannot find; give a fixed port",
            );
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            report.push(
                "peer.listen",
                format!(
                    "{text:?} is not an IP:port to bind, e.g. \"0.0.0.0:7401\" or \
                     \"[::]:7401\" (a DNS name belongs in peer.advertise)"
                ),
            );
            None
        }
    }
}

fn advertise_addr(report: &mut ErrorReport, text: &str) -> Option<Advertised> {
    match HostPort::parse(text) {
        Ok(addr) if addr.is_unspecified() => {
            report.push(
                "peer.advertise",
                format!(
                    "{addr} can be bound but not dialled; give the address the other \
                     members reach this node at"
                ),
            );
            None
        }
        Ok(addr) => Some(Advertised {
            addr,
            from_key: "peer.advertise",
        }),
        Err(why) => {
            report.push("peer.advertise", why);
            None
        }
    }
}

fn advertise_from_listen(report: &mut ErrorReport, listen: SocketAddr) -> Option<Advertised> {
    if listen.ip().is_unspecified() {
        report.push(
            "peer.advertise",
            format!(
                "is required because peer.listen = \"{listen}\" binds every interface, \
                 which peers cannot dial; set it to the address the other members reach \
                 this node at, e.g. advertise = \"10.0.1.5:{}\"",
                listen.port()
            ),
        );
        return None;
    }
    match HostPort::from_socket_addr(listen) {
        Ok(addr) => Some(Advertised {
            addr,
            from_key: "peer.listen",
        }),
        Err(why) => {
            report.push("peer.listen", why);
            None
        }
    }
}

/// Plaintext only when asked for explicitly; otherwise all three TLS files.
fn peer_transport(
    report: &mut ErrorReport,
    raw: &RawPeer,
    checks: FileChecks,
) -> Option<PeerTransport> {
    let tls_files = [
        ("peer.tls_cert", raw.tls_cert.as_deref()),
        ("peer.tls_key", raw.tls_key.as_deref()),
        ("peer.tls_ca", raw.tls_ca.as_deref()),
    ];
    let given: Vec<&str> = tls_files
        .iter()
        .filter(|(_, path)| path.is_some())
        .map(|(key, _)| *key)
        .collect();

    if raw.plaintext == Some(true) {
        if given.is_empty() {
            return Some(PeerTransport::Plaintext);
        }
        report.push(
            "peer.plaintext",
            format!(
                "plaintext = true turns peer TLS off, but {} {} set; remove plaintext = true \
                 to use mutual TLS, or remove the tls_* keys",
                given.join(", "),
                if given.len() == 1 { "is" } else { "are" },
            ),
        );
        return None;
    }

    if given.is_empty() {
        report.push(
            "peer",
            "no TLS configured: give tls_cert, tls_key and tls_ca (PEM files) for mutual TLS \
             between fleet members, or set plaintext = true for a development fleet \
             (peer traffic then travels unencrypted and unauthenticated)",
        );
        return None;
    }
    let [cert, key, ca] = tls_files.map(|(key, path)| match path {
        Some(path) => existing_file(report, key, path, checks),
        None => {
            report.push(
                key,
                "is required: mutual TLS needs all of tls_cert, tls_key and tls_ca; \
                 or set plaintext = true for a development fleet",
            );
            None
        }
    });
    Some(PeerTransport::MutualTls {
        cert: cert?,
        key: key?,
        ca: ca?,
    })
}
