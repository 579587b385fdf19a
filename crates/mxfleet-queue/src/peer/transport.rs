//! How a node reaches its peers: one lazily connected tonic `Channel` per peer address,
//! plaintext only when the configuration says so explicitly, otherwise mutual TLS with
//! the fleet's own CA, and from the configured source address if there is one.
//!
//! [`PeerChannels`] is the only place in the crate that dials a peer: Raft RPCs,
//! forwarded writes and body pushes and pulls all take their client from it, so the
//! source address and TLS settings hold for every outgoing peer connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use mxfleet_proto::MAX_MESSAGE_BYTES;
use mxfleet_proto::raft::v1::raft_peer_client::RaftPeerClient;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

/// How peers talk to each other.
#[derive(Clone)]
pub enum PeerTls {
    /// No encryption and no authentication: for `mxfleet dev` and tests only, and only
    /// when the configuration asks for it by name.
    Plaintext,
    /// Mutual TLS: every node presents a certificate signed by the fleet CA and accepts
    /// only peers that do.
    Mutual {
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        ca_pem: Vec<u8>,
    },
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerTls::Plaintext => f.write_str("Plaintext"),
            // Never print key material.
            PeerTls::Mutual { .. } => f.write_str("Mutual(..)"),
        }
    }
}

impl PeerTls {
    /// The server-side TLS settings, if any.
    pub(crate) fn server_config(&self) -> Option<ServerTlsConfig> {
        match self {
            PeerTls::Plaintext => None,
            PeerTls::Mutual {
                cert_pem,
                key_pem,
                ca_pem,
            } => Some(
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(cert_pem, key_pem))
                    .client_ca_root(Certificate::from_pem(ca_pem)),
            ),
        }
    }
}

/// A pool of channels to peers, keyed by `host:port`.
pub(crate) struct PeerChannels {
    tls: PeerTls,
    connect_timeout: Duration,
    /// The local IP outgoing connections are bound to (`QueueConfig::peer_bind_address`);
    /// `None` lets the kernel choose.
    bind_address: Option<IpAddr>,
    channels: Mutex<HashMap<String, Channel>>,
}

/// Why a channel to a peer could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up a channel to peer {addr}: {source}")]
pub(crate) struct ChannelError {
    addr: String,
    #[source]
    source: tonic::transport::Error,
}

impl PeerChannels {
    pub(crate) fn new(
        tls: PeerTls,
        connect_timeout: Duration,
        bind_address: Option<IpAddr>,
    ) -> Self {
        PeerChannels {
            tls,
            connect_timeout,
            bind_address,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// A client for the peer at `addr`. Connects lazily; tonic reconnects by itself.
    pub(crate) fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, ChannelError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.endpoint(addr)?.connect_lazy();
                channels.insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, ChannelError> {
        let wrap = |source| ChannelError {
            addr: addr.to_string(),
            source,
        };
        let scheme = match self.tls {
            PeerTls::Plaintext => "http",
            PeerTls::Mutual { .. } => "https",
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(wrap)?
            .connect_timeout(self.connect_timeout)
            // hyper binds only sockets of the address's family; a peer of the other
            // family is dialled from the kernel's choice.
            .local_address(self.bind_address)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        if let PeerTls::Mutual {
            cert_pem,
            key_pem,
            ca_pem,
        } = &self.tls
        {
            let host = addr.rsplit_once(':').map(|(host, _)| host).unwrap_or(addr);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            endpoint = endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(ca_pem))
                        .identity(Identity::from_pem(cert_pem, key_pem))
                        .domain_name(host),
                )
                .map_err(wrap)?;
        }
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use mxfleet_proto::raft::v1::GetBlobRequest;
    use tokio::net::TcpListener;

    use super::{PeerChannels, PeerTls};

    /// A peer connection comes from `bind_address`: a plain TCP listener stands in for
    /// the peer, and the address it sees the connection come from is checked. The gRPC
    /// call itself fails (nothing answers HTTP/2), which does not matter here.
    #[tokio::test]
    async fn peer_connections_come_from_the_bind_address() -> anyhow::Result<()> {
        // All of 127.0.0.0/8 is on the loopback interface on Linux, so this address can
        // be bound without any setup, and differs from the kernel's choice (127.0.0.1).
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 22));
        let peer = TcpListener::bind("127.0.0.1:0").await?;
        let peer_addr = peer.local_addr()?;
        let channels = PeerChannels::new(PeerTls::Plaintext, Duration::from_secs(5), Some(source));
        let mut client = channels.client(&peer_addr.to_string())?;
        let call = tokio::spawn(async move {
            let request = GetBlobRequest {
                sha256: "00".repeat(32),
            };
            let _ = client.get_blob(request).await;
        });
        let (_stream, from) = tokio::time::timeout(Duration::from_secs(10), peer.accept())
            .await
            .map_err(|_| anyhow::anyhow!("the peer was never dialled"))??;
        assert_eq!(from.ip(), source, "the connection came from {from}");
        call.abort();
        Ok(())
    }
}
