//! The delivery side of a node from its configuration: the DNS resolver (the system's,
//! or configured nameservers), who "we" are for MX loop detection, and the router.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mxfleet_delivery::route::{
    HickoryOptions, HickoryResolver, OwnIdentity, ResolverSetupError, Router,
};
use mxfleet_smtp::checks::Check;

/// Builds the router: `dns_servers` when given, else the system resolver
/// configuration; MX hosts contacted on `mx_port`; `identity` for loop detection.
pub fn router(
    dns_servers: &[SocketAddr],
    mx_port: u16,
    identity: OwnIdentity,
) -> Result<Router, ResolverSetupError> {
    let resolver = if dns_servers.is_empty() {
        HickoryResolver::from_system_config()?
    } else {
        HickoryResolver::from_nameservers(dns_servers, &HickoryOptions::default())?
    };
    Ok(Router::new(Arc::new(resolver), identity).with_mx_port(mx_port))
}

/// "Us", for MX loop detection: our host names, and the addresses we listen on
/// (unspecified addresses such as 0.0.0.0 say nothing and are left out).
pub fn own_identity(hostnames: &[&str], listen: &[SocketAddr]) -> OwnIdentity {
    let mut names: Vec<String> = hostnames
        .iter()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let mut addresses: Vec<IpAddr> = listen
        .iter()
        .map(SocketAddr::ip)
        .filter(|ip| !ip.is_unspecified())
        .collect();
    addresses.sort();
    addresses.dedup();
    OwnIdentity {
        hostnames: names,
        addresses,
    }
}

/// The delivery setup a configured node runs with: its `[delivery]` settings, and a
/// router that knows the node's names and listening addresses.
pub fn from_config(
    config: &crate::config::NodeConfig,
) -> Result<crate::DeliverySetup, ResolverSetupError> {
    let identity = own_identity(
        &[
            &config.smtp.hostname,
            &config.delivery.hostname,
            &config.node.name,
        ],
        &[config.smtp.listen, config.peer.listen],
    );
    let mut delivery = config.delivery.clone();
    delivery.watched_primaries = watched_primaries(config);
    Ok(crate::DeliverySetup {
        config: delivery,
        router: router(&config.dns_servers, config.mx_port, identity)?,
    })
}

/// The relay domains whose primary the fleet watches at all times, not only while mail
/// waits for it: primary-aware domains, to decide what to accept, and verified ones,
/// to answer from the cache at once while the primary is down instead of probing a
/// primary that may hang until the probe timeout.
pub fn watched_primaries(config: &crate::config::NodeConfig) -> std::collections::BTreeSet<String> {
    config
        .spam
        .domain_checks
        .iter()
        .filter(|(_, checks)| {
            checks.contains(&Check::PrimaryAware) || checks.contains(&Check::VerifyRecipients)
        })
        .map(|(domain, _)| domain.clone())
        .collect()
}
