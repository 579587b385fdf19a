//! mxfleet-node: one fleet member, wired from its configuration.
//!
//! Layout:
//! - [`admin`]: the gRPC admin API server (cluster and queue), tokens, permissions.
//! - [`config`]: the TOML configuration, loaded in two stages before any socket binds.
//! - [`delivery_setup`]: the resolver, our identity and the router for delivery.
//! - [`node`]: `Node`, the running member (queue, housekeeping, shutdown).
//! - [`reload`]: SIGHUP: what a running node can take from a changed config.
//! - [`intake`]: the SMTP intake backed by the replicated queue.
//! - [`metrics`]: the node's Prometheus registry and its `/metrics` endpoint.
//! - [`signals`]: the signals that stop or reload a node.
//! - [`smtp_setup`]: the SMTP service (relay policy, TLS, limits) from the config.
//! - [`spam_setup`]: the spam checks, built once the queue and delivery run.
//! - [`spam_state`]: the spam checks' fleet view over the queue (batched facts).

pub mod admin;
pub mod config;
pub mod delivery_setup;
pub mod intake;
pub mod metrics;
pub mod node;
pub mod reload;
pub mod signals;
pub mod smtp_setup;
pub mod spam_setup;
pub mod spam_state;

pub use node::{DeliverySetup, Node, NodeError, queue_config};
