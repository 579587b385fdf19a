//! A TCP fault proxy for a test fleet: partitions, one-way cuts, latency, jitter,
//! bandwidth caps and resets, without netem or root.
//!
//! Every node of the fleet (and the primary) gets a proxy in front of it, and every other
//! host connects to it through that proxy. Each host binds its outgoing sockets to its
//! own loopback source IP (node 1 = 127.0.0.11, ...), so a proxy names the connecting
//! host by the peer IP of an accepted connection; IPs no host owns are named `"client"`.
//!
//! Faults are set per directed link `from` → `to` and act on the bytes flowing that
//! way, on every proxied connection between the two hosts, whichever side opened it.
//! Cutting a→b discards what a sends to b on connections a opened to b (client to
//! server) and on connections b opened to a (server to client), while b→a bytes flow.
//!
//! Semantics, for a connection from host S to the proxy in front of host D:
//! - A new connection follows the S→D link: Refuse resets it at once (RST); Drop and
//!   Blackhole accept it and hold it: nothing is connected upstream, what S sends is
//!   discarded, nothing is sent back. A held connection is dead for good (a TCP session
//!   whose state was lost): it stays silent after a heal, until S shuts down its side.
//! - Conditions are re-read while a connection lives. Setting Refuse on either direction
//!   resets the connection both ways (both peers see RST; a real firewall would only
//!   tell the sender, we prefer prompt and deterministic). Setting Drop closes it both
//!   ways with FIN. Setting Blackhole discards the bytes of that direction from then on,
//!   including chunks still waiting out their latency.
//! - A direction that discarded anything stays dead after a heal, its FIN included:
//!   its peer lost bytes in the middle of the stream and could never resume, so it ends
//!   through its own timeout. Bytes are never reordered, and discarded bytes are never
//!   delivered later. The other direction keeps flowing.
//! - A direction under Refuse when bytes arrive (say D→S on a connection accepted while
//!   only D→S was refused) resets the connection.
//! - Latency and jitter delay each chunk by `latency + rand(0..=jitter)`, never before
//!   the chunk ahead of it, so order holds and throughput is not one chunk per delay.
//!   Bandwidth is a token bucket per direction per connection.
//! - `reset` RSTs the live connections between two hosts and leaves the links as they
//!   are. A proxy whose upstream refuses (the node is down) resets its client.
//! - An IO error on either socket of a connection resets both.
//!
//! Events are logged at debug level as `proxy_*` (`proxy_connection_refused`,
//! `proxy_connection_reset`, `proxy_link_set`, ...).
//!
//! Layout:
//! - [`Network`]: the handle the harness drives (this file).
//! - `link`: conditions, stats and the sans-IO pacing rules.
//! - `fabric`: hosts, links and the registry of live connections, behind one lock.
//! - `connection`: each proxy's accept loop and the life of one connection.
//! - `pump`: one direction of a connection, reader and paced writer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::debug;

mod connection;
mod fabric;
mod link;
mod pump;
#[cfg(test)]
mod tests;

pub use fabric::UNKNOWN_HOST;
pub use link::{Cut, LinkCondition, LinkStats};

use connection::accept_loop;
use fabric::Fabric;

/// A simulated network of hosts and the proxies in front of them. Clones share the
/// network; when the last clone is dropped every proxy stops and every connection
/// closes, as with [`Network::shutdown`].
#[derive(Clone)]
pub struct Network {
    owner: Arc<ShutdownOnDrop>,
}

/// Owned only by `Network` handles; the tasks hold the fabric itself, so the last
/// handle's drop is what shuts the network down.
struct ShutdownOnDrop {
    fabric: Arc<Fabric>,
}

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        shut_down(&self.fabric);
    }
}

fn shut_down(fabric: &Fabric) {
    if !fabric.shutdown.is_cancelled() {
        debug!("proxy_shutdown");
    }
    fabric.shutdown.cancel();
    fabric.tasks.close();
}

impl Default for Network {
    fn default() -> Network {
        Network::new()
    }
}

impl Network {
    pub fn new() -> Network {
        Network {
            owner: Arc::new(ShutdownOnDrop {
                fabric: Arc::new(Fabric::new()),
            }),
        }
    }

    fn fabric(&self) -> &Arc<Fabric> {
        &self.owner.fabric
    }

    /// Registers a host by name and the source IP its outgoing connections come from.
    /// Registering the IP again renames it; connections already accepted keep their name.
    pub fn add_host(&self, name: &str, source_ip: IpAddr) {
        self.fabric().add_host(name, source_ip);
    }

    /// Starts a proxy in front of `name`: listens on `listen` (`127.0.0.1:0` for an
    /// ephemeral port) and forwards to `upstream`. Returns the proxy's address.
    /// Connections from an IP no host owns are tagged `"client"` and are never faulted
    /// unless a fault names `"client"`. The fronted host need not have a source IP (the
    /// primary, say, never connects out). Fails once the network is shut down.
    pub async fn front(
        &self,
        name: &str,
        listen: SocketAddr,
        upstream: SocketAddr,
    ) -> io::Result<SocketAddr> {
        let fabric = self.fabric();
        if fabric.shutdown.is_cancelled() {
            return Err(io::Error::other("the proxy network is shut down"));
        }
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        debug!(host = name, %address, %upstream, "proxy_listening");
        let accepting = accept_loop(Arc::clone(fabric), listener, name.to_owned(), upstream);
        fabric.tasks.spawn(accepting);
        Ok(address)
    }

    /// Sets the condition of bytes flowing from `from` to `to` (directed), replacing
    /// every field of the previous one.
    pub fn set(&self, from: &str, to: &str, condition: LinkCondition) {
        self.fabric()
            .update(from, to, |current| *current = condition);
    }

    /// Both directions between every host of `a` and every host of `b` get `cut`;
    /// their latency, jitter and bandwidth stay as they were.
    pub fn partition(&self, a: &[&str], b: &[&str], cut: Cut) {
        for_each_pair(a, b, |from, to| {
            self.fabric()
                .update(from, to, |current| current.cut = Some(cut));
        });
    }

    /// Latency, jitter and bandwidth between every pair across `a` and `b`, both
    /// directions; their cuts stay as they were.
    pub fn degrade(
        &self,
        a: &[&str],
        b: &[&str],
        latency: Duration,
        jitter: Duration,
        bandwidth: Option<u64>,
    ) {
        for_each_pair(a, b, |from, to| {
            self.fabric().update(from, to, |current| {
                current.latency = latency;
                current.jitter = jitter;
                current.bandwidth = bandwidth;
            });
        });
    }

    /// Every link back to a clean pass. Connections that lost bytes stay dead.
    pub fn heal(&self) {
        self.fabric().heal();
    }

    /// One-shot: resets (RST) every live proxied connection between the two hosts,
    /// either direction; the link conditions are unchanged.
    pub fn reset(&self, a: &str, b: &str) {
        self.fabric().reset(a, b);
    }

    /// Counters per directed link, sorted by `from` then `to`.
    pub fn stats(&self) -> Vec<LinkStats> {
        self.fabric().stats()
    }

    /// The counters of one directed link (zero if nothing crossed it yet).
    pub fn link_stats(&self, from: &str, to: &str) -> LinkStats {
        self.stats()
            .into_iter()
            .find(|stats| stats.from == from && stats.to == to)
            .unwrap_or_else(|| LinkStats {
                from: from.to_owned(),
                to: to.to_owned(),
                ..LinkStats::default()
            })
    }

    /// Proxied connections currently open (relayed or held).
    pub fn live_connections(&self) -> usize {
        self.fabric().live_connections()
    }

    /// Stops every proxy and closes every connection (with FIN). Also done when the
    /// last clone of the network is dropped.
    pub fn shutdown(&self) {
        shut_down(self.fabric());
    }

    /// Waits until the network is shut down and every proxy and connection task has
    /// ended.
    pub async fn stopped(&self) {
        self.fabric().tasks.wait().await;
    }
}

/// Calls `apply` for both directions of every pair across `a` and `b`.
fn for_each_pair(a: &[&str], b: &[&str], mut apply: impl FnMut(&str, &str)) {
    for x in a {
        for y in b {
            apply(x, y);
            apply(y, x);
        }
    }
}
