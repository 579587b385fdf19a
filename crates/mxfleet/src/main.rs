//! `mxfleet`: the one binary operators run.
//!
//! Subcommands (one file each under `cmd/`):
//! - `serve --config FILE`: run one fleet member.
//! - `dev`: a working local cluster on loopback, no configuration needed.
//! - `config check FILE`: validate a configuration file offline.
//! - `loadgen --server HOST:PORT ...`: send test mail and report throughput and latency.
//!
//! Exit codes: 0 ok, 1 operation failed, 2 usage (clap), 64 invalid configuration.

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mxfleet", version, about = "A clustered backup MX")]
struct Cli {
    /// Log format: `text` for people, `json` for log shippers.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
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
    /// Send test mail at SMTP servers and report throughput and latency (smtp-source).
    Loadgen(cmd::loadgen::LoadgenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log_format);
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
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Dev(args) => cmd::dev::run(args).await,
            Command::Config(command) => cmd::config::run(command),
            Command::Loadgen(args) => cmd::loadgen::run(args).await,
        }
    });
    ExitCode::from(code)
}
