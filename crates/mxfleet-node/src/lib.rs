//! mxfleet-node: one fleet member, wired from its configuration.
//!
//! Layout:
//! - [`config`]: the TOML configuration, loaded in two stages before any socket binds.
//! - [`node`]: `Node`, the running member (queue, housekeeping, shutdown).
//! - [`intake`]: the SMTP intake backed by the replicated queue.
//! - [`signals`]: the signals that stop a node.

pub mod config;
pub mod intake;
pub mod node;
pub mod signals;

pub use node::{Node, NodeError, queue_config};
