//! `mxfleet cluster …` and `mxfleet queue …`: the operators' clients of a node's gRPC
//! admin API (`proto/mxfleet/admin/v1/admin.proto`).
//!
//! Every command connects to one node (`--endpoint`, `MXFLEET_ENDPOINT`, default
//! `http://127.0.0.1:7402`), sends the token from `--token-file`/`MXFLEET_TOKEN_FILE` or
//! `MXFLEET_TOKEN` as `authorization: Bearer …`, uses TLS for `https://` endpoints
//! (`--ca-cert`, and `--client-cert`/`--client-key` for mutual TLS), waits at most
//! `--timeout` (default 30s) per answer, and prints an aligned table, or one JSON
//! document on stdout with `--json` (shapes and conventions in `json.rs`). Errors go to
//! stderr as `mxfleet: …` with a hint, and the exit code says what kind they were: 0 ok,
//! 1 the operation failed, 2 usage, 69 unavailable (the table is in `error.rs`).
//!
//! Layout:
//! - `connection`: [`ClientArgs`](connection::ClientArgs), token, TLS, and `Admin`, the
//!   connected handle with per-call timeouts.
//! - `error`: `CliError`, the one classification of failures into exit codes and hints.
//! - `cluster/`: `status` (status.rs) and the membership commands (mod.rs).
//! - `queue/`: one file per subcommand: list, show, act (hold, release, delete, requeue,
//!   bounce), flush, read, stats.
//! - `selector`: the filter flags shared by `queue list` and the bulk actions.
//! - `json`: the `--json` documents. `table`, `format`: how values look to people.
//! - `test_node` (tests only): a real node with its admin API, seeded with messages, to
//!   run the commands against.

pub mod cluster;
mod connection;
mod error;
mod format;
mod json;
pub mod queue;
mod selector;
mod table;
#[cfg(test)]
mod test_node;

use std::io::Write;
use std::time::SystemTime;

use serde::Serialize;

use self::error::CliError;

/// Prints a failed command's error on stderr; returns the process exit code.
fn finish(result: Result<u8, CliError>) -> u8 {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mxfleet: {error}");
            error.exit_code()
        }
    }
}

/// Writes text to stdout. A closed pipe (`mxfleet queue list | head`) ends the output
/// quietly instead of failing the command.
fn print_text(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Failed(format!("cannot write to stdout: {e}"))),
    }
}

/// Writes one JSON document on one line of stdout.
fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let mut text = serde_json::to_string(value)
        .map_err(|e| CliError::Failed(format!("cannot encode the JSON output: {e}")))?;
    text.push('\n');
    print_text(&text)
}

/// The current time in Unix milliseconds, read once per command so that every age in
/// one output agrees.
fn now_ms() -> u64 {
    format::unix_millis(SystemTime::now())
}

/// The `MXFLEET_TOKEN` variable, read only here.
fn env_token() -> Option<std::ffi::OsString> {
    std::env::var_os("MXFLEET_TOKEN")
}
