//! `mxfleet serve --config FILE`: run one fleet member until SIGTERM or SIGINT.
//!
//! The configuration is validated completely before any socket is bound; an invalid
//! file prints every problem with its key path and exits 64. Logging starts once the
//! configuration is loaded: in its `[log] format` (unless `--log-format` says
//! otherwise), every line stamped with the node's name and site.

use std::path::PathBuf;

use clap::Args;
use mxfleet_node::config::LogFormat;
use mxfleet_node::{Node, queue_config};
use tracing::{error, info, warn};

use super::{EXIT_CONFIG, EXIT_DATA_FORMAT, EXIT_FAILED, SHUTDOWN_DEADLINE};

#[derive(Args)]
pub struct ServeArgs {
    /// The node configuration file (TOML).
    #[arg(long, short = 'c', env = "MXFLEET_CONFIG")]
    config: PathBuf,
}

pub async fn run(args: ServeArgs, log_format: Option<LogFormat>) -> u8 {
    let config = match mxfleet_node::config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return EXIT_CONFIG;
        }
    };
    crate::logging::init(
        log_format.unwrap_or(config.log_format),
        Some(crate::logging::LogIdentity {
            node: config.node.name.clone(),
            site: config.node.site.clone(),
        }),
    );
    // Before anything slow: the default action of SIGHUP, SIGTERM and SIGINT ends the
    // process at once, and systemd (Type=exec) may send them (`systemctl reload`,
    // `systemctl stop`) while the node is still opening its Raft log. One that arrives
    // during startup is handled once the node is ready: a reload, or an orderly stop.
    let stop = mxfleet_node::signals::stop_requested();
    tokio::pin!(stop);
    let mut reloads = match mxfleet_node::signals::reload_requests() {
        Ok(reloads) => reloads,
        Err(e) => {
            error!(cause = %e, "signal_handler_failed");
            return EXIT_FAILED;
        }
    };
    let queue_config = match queue_config(&config) {
        Ok(queue_config) => queue_config,
        Err(e) => {
            error!(cause = %e, "node_config_unusable");
            return EXIT_CONFIG;
        }
    };
    let smtp = match mxfleet_node::smtp_setup::smtp_service(&config) {
        Ok(smtp) => smtp,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return EXIT_CONFIG;
        }
    };
    let delivery = match mxfleet_node::delivery_setup::from_config(&config) {
        Ok(delivery) => delivery,
        Err(e) => {
            error!(cause = %e, "dns_resolver_unusable");
            return EXIT_CONFIG;
        }
    };
    let node = match Node::start(queue_config, Some(smtp), Some(delivery)).await {
        Ok(node) => node,
        Err(e) => {
            error!(cause = %e, "node_start_failed");
            let refused_format = matches!(
                e,
                mxfleet_node::NodeError::Start(mxfleet_queue::StartError::DataFormat(_))
            );
            return if refused_format {
                EXIT_DATA_FORMAT
            } else {
                EXIT_FAILED
            };
        }
    };
    let admin_addr = match &config.admin {
        Some(admin) => match node.start_admin(admin).await {
            Ok(addr) => Some(addr),
            Err(e) => {
                error!(cause = %e, "node_start_failed");
                node.shutdown(SHUTDOWN_DEADLINE).await;
                return EXIT_FAILED;
            }
        },
        None => None,
    };
    let metrics_addr = match config.metrics_listen {
        Some(listen) => match node.serve_metrics(listen).await {
            Ok(addr) => Some(addr),
            Err(e) => {
                error!(cause = %e, "node_start_failed");
                node.shutdown(SHUTDOWN_DEADLINE).await;
                return EXIT_FAILED;
            }
        },
        None => None,
    };
    info!(
        node_id = config.node.id,
        peer_addr = %node.queue().peer_addr(),
        smtp_addr = %node.smtp_addr().map(|a| a.to_string()).unwrap_or_default(),
        admin_addr = %admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        metrics_addr = %metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
        "node_ready"
    );
    let exit = {
        // Borrows the node until the loop ends, before the shutdown takes it.
        let raft_failed = node.queue().raft_failed();
        tokio::pin!(raft_failed);
        loop {
            tokio::select! {
                signal = &mut stop => {
                    match signal {
                        Ok(name) => info!(signal = name, "stop_requested"),
                        Err(e) => error!(cause = %e, "signal_handler_failed"),
                    }
                    break 0;
                }
                // Raft stopped by itself (a full disk, an I/O error): this node can
                // take no part until it restarts. SMTP stays up and answers 452/451
                // (nothing can be stored here), so that senders try another MX rather
                // than a closed port. Once the data directory takes writes again the
                // node exits 1; its supervisor (systemd's Restart=on-failure) starts
                // it, and it rejoins and catches up from the leader.
                cause = &mut raft_failed => {
                    error!(%cause, "raft_failed");
                    match wait_for_room(&config.node.data_dir, &mut stop).await {
                        Some(()) => {
                            error!("raft_failed_node_exits");
                            break EXIT_FAILED;
                        }
                        None => break 0,
                    }
                }
                _ = reloads.recv() => reload_config(&args.config, &config, &node).await,
            }
        }
    };
    node.shutdown(SHUTDOWN_DEADLINE).await;
    exit
}

/// How often a node whose Raft failed checks whether its disk takes writes again.
const ROOM_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Room enough in the data directory to restart: one MiB written and synced.
const ROOM_PROBE_BYTES: usize = 1 << 20;

/// Waits until `data_dir` takes a synced 1 MiB write again (`Some`), or until a stop
/// signal (`None`).
async fn wait_for_room<F: std::future::Future>(
    data_dir: &std::path::Path,
    stop: &mut std::pin::Pin<&mut F>,
) -> Option<()> {
    let probe = data_dir.join(".room-probe");
    loop {
        let attempt = {
            let probe = probe.clone();
            tokio::task::spawn_blocking(move || write_probe(&probe)).await
        };
        match attempt {
            Ok(Ok(())) => return Some(()),
            Ok(Err(cause)) => info!(%cause, "raft_failed_waiting_for_disk"),
            Err(cause) => info!(%cause, "raft_failed_waiting_for_disk"),
        }
        tokio::select! {
            _ = stop.as_mut() => {
                info!("stop_requested");
                return None;
            }
            _ = tokio::time::sleep(ROOM_CHECK_INTERVAL) => {}
        }
    }
}

fn write_probe(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let result = std::fs::File::create(path).and_then(|mut file| {
        file.write_all(&vec![0u8; ROOM_PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(path);
    result
}

/// SIGHUP: re-read the config file and apply what a running node can take (relay
/// domains, recipient lists, `[spam]`, TLS certificates, SMTP limits); see
/// `mxfleet_node::reload`. A file with any error keeps the old config whole and logs
/// every error with its key path (`reload_rejected`). Keys that differ from the
/// config the node started with and need a restart are logged as
/// `reload_needs_restart`.
async fn reload_config(
    path: &std::path::Path,
    started_with: &mxfleet_node::config::NodeConfig,
    node: &Node,
) {
    info!(config = %path.display(), "reload_requested");
    let config = match mxfleet_node::config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors.0 {
                error!(key = %error.key, message = %error.message, "reload_rejected");
            }
            return;
        }
    };
    let Some(reloader) = node.smtp_reloader() else {
        info!("reload_nothing_to_reload");
        return;
    };
    match reloader.reload(started_with, &config).await {
        Ok(reloaded) => {
            for key in &reloaded.needs_restart {
                warn!(%key, "reload_needs_restart");
            }
            info!(
                relay_domains = reloaded.relay_domains,
                tls_certificates = reloaded.tls_certificates,
                checked_domains = reloaded.checked_domains,
                needs_restart = reloaded.needs_restart.len(),
                "config_reloaded"
            );
        }
        Err(rejected) => {
            for error in &rejected.errors {
                error!(key = %error.key, message = %error.message, "reload_rejected");
            }
        }
    }
}
