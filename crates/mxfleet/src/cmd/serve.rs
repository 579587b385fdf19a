//! `mxfleet serve --config FILE`: run one fleet member until SIGTERM or SIGINT.
//!
//! The configuration is validated completely before any socket is bound; an invalid
//! file prints every problem with its key path and exits 64.

use std::path::PathBuf;

use clap::Args;
use mxfleet_node::{Node, queue_config};
use tracing::{error, info};

use super::{EXIT_CONFIG, EXIT_FAILED, SHUTDOWN_DEADLINE};

#[derive(Args)]
pub struct ServeArgs {
    /// The node configuration file (TOML).
    #[arg(long, short = 'c', env = "MXFLEET_CONFIG")]
    config: PathBuf,
}

pub async fn run(args: ServeArgs) -> u8 {
    let config = match mxfleet_node::config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return EXIT_CONFIG;
        }
    };
    let queue_config = match queue_config(&config) {
        Ok(queue_config) => queue_config,
        Err(e) => {
            error!(cause = %e, "node_config_unusable");
            return EXIT_CONFIG;
        }
    };
    let node = match Node::start(queue_config, None).await {
        Ok(node) => node,
        Err(e) => {
            error!(cause = %e, "node_start_failed");
            return EXIT_FAILED;
        }
    };
    info!(
        node_id = config.node.id,
        name = %config.node.name,
        site = %config.node.site,
        peer_addr = %node.queue().peer_addr(),
        "node_ready"
    );
    let signal = mxfleet_node::signals::stop_requested().await;
    match signal {
        Ok(name) => info!(signal = name, "stop_requested"),
        Err(e) => error!(cause = %e, "signal_handler_failed"),
    }
    node.shutdown(SHUTDOWN_DEADLINE).await;
    0
}
