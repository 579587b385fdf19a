//! `mxfleet`: the one binary operators run.
//!
//! Subcommands (one file each under `cmd/`):
//! - `serve --config FILE`: run one fleet member.
//! - `dev`: a working local cluster on loopback, no configuration needed.
//! - `config check FILE`: validate a configuration file offline.
//! - `import-postfix main.cf [relay_recipients]`: a node config from a Postfix backup MX,
//!   and the list of what it could not carry over.
//! - `loadgen --server HOST:PORT ...`: send test mail and report throughput and latency.
//! - `test-primary --listen ADDR --dir DIR --domain D`: a test sink standing in for the
//!   primary MX (the compose fleet's); not for production.
//! - `cluster status|add|promote|remove|transfer-leader|drain`: the admin API's cluster
//!   calls (`cmd/admin/cluster/`).
//! - `queue list|show|hold|release|delete|requeue|bounce|flush|read|stats`: the admin
//!   API's queue calls (`cmd/admin/queue/`).
//!
//! Exit codes: 0 ok, 1 operation failed, 2 usage (clap, or a bulk action off a terminal
//! without `--yes`), 64 invalid configuration, 65 (`serve`) a data directory in a
//! storage format this binary does not read, 69 unavailable (the admin endpoint cannot
//! be reached, or answers UNAVAILABLE or DEADLINE_EXCEEDED).

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mxfleet", version, about = "A clustered backup MX")]
struct Cli {
    /// Log format: `text` for people, `json` for log shippers. Default: `[log] format`
    /// for `serve`, else `text`.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one fleet member from its configuration file.
    Serve(cmd::serve::ServeArgs),
    /// Run a local cluster on loopback, with no configuration.
    Dev(cmd::dev::DevArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Turn a Postfix backup-MX main.cf into a node config; list what is not carried over.
    ImportPostfix(cmd::import_postfix::ImportPostfixArgs),
    /// Send test mail at SMTP servers and report throughput and latency (smtp-source).
    Loadgen(cmd::loadgen::LoadgenArgs),
    /// A test sink standing in for the primary MX: writes each message to a directory.
    /// For test fleets (deploy/compose), never for production.
    TestPrimary(cmd::test_primary::TestPrimaryArgs),
    /// See and change the cluster: status, membership, leadership, drain.
    Cluster(cmd::admin::cluster::ClusterArgs),
    /// See and steer the queue: list, show, hold, release, delete, requeue, bounce,
    /// flush, read, stats.
    Queue(cmd::admin::queue::QueueArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format.as_deref().map(logging::parse_format);
    match &cli.command {
        // `serve` installs its subscriber once its configuration is loaded.
        Command::Serve(_) => {}
        Command::Dev(_) => logging::init(
            log_format.unwrap_or_default(),
            Some(logging::LogIdentity::dev()),
        ),
        _ => logging::init(log_format.unwrap_or_default(), None),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mxfleet: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args, log_format).await,
            Command::Dev(args) => cmd::dev::run(args).await,
            Command::Config(command) => cmd::config::run(command),
            Command::ImportPostfix(args) => cmd::import_postfix::run(args),
            Command::Loadgen(args) => cmd::loadgen::run(args).await,
            Command::TestPrimary(args) => cmd::test_primary::run(args).await,
            Command::Cluster(args) => cmd::admin::cluster::run(args).await,
            Command::Queue(args) => cmd::admin::queue::run(args).await,
        }
    });
    ExitCode::from(code)
}
