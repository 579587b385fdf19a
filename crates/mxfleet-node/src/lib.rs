//! mxfleet-node: one fleet member, wired from its configuration.

pub mod config;
