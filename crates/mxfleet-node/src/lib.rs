//! mxfleet-node: one fleet member, wired from its configuration.
//!
//! Layout:
//! - [`config`]: the TOML configuration, loaded in two stages before any socket binds.
//! - [`node`]: `Node`, the running member (queue, housekeeping, shutdown).
//! - [`signals`]: the signals that stop a node.

pub mod config;
pub mod node;
pub mod signals;

pub use node::{Node, NodeError, queue_config};
