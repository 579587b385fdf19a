//! One module per subcommand. Each `run` returns the process exit code.
//!
//! - `serve`, `dev` (+ `dev_primary`), `config`, `loadgen`: one file each.
//! - `import_postfix`: `import-postfix`, a directory (main.cf parser, maps, conversion).
//! - `test_primary`: `dev_primary` on its own, the sink of the compose test fleet.
//! - `admin`: the admin API clients, `cluster …` and `queue …`.

pub mod admin;
pub mod config;
pub mod dev;
mod dev_primary;
pub mod import_postfix;
pub mod loadgen;
pub mod serve;
pub mod test_primary;

/// Exit code: the operation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage (what clap exits with for a bad flag).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the service is unavailable; retrying later or elsewhere may help
/// (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code: the configuration is invalid (sysexits EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code: the data directory was written in a storage format this binary does not
/// read (sysexits EX_DATAERR). Restarting the same binary cannot help.
pub const EXIT_DATA_FORMAT: u8 = 65;

/// How long a stopping node may take to drain before it exits anyway.
pub const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
