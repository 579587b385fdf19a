//! `mxfleet config check FILE`: validate a configuration offline, printing every
//! problem with its key path.

use std::path::PathBuf;

use clap::Subcommand;

use super::EXIT_CONFIG;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE (including that the TLS files it names exist) and exit 0 if valid.
    Check {
        /// The node configuration file.
        file: PathBuf,
    },
}

pub fn run(command: ConfigCommand) -> u8 {
    match command {
        ConfigCommand::Check { file } => match mxfleet_node::config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: ok (node {} \"{}\" at site {}, peer port {})",
                    file.display(),
                    config.node.id,
                    config.node.name,
                    config.node.site,
                    config.peer.listen
                );
                0
            }
            Err(errors) => {
                eprintln!("{errors}");
                EXIT_CONFIG
            }
        },
    }
}
