//! `mxfleet queue …`: see and steer the replicated queue. One file per subcommand:
//!
//! - `list` (list.rs): filtered listing with a mailq-like summary, paging the server
//!   500 at a time up to `--limit`. Needs `view`.
//! - `show ID` (show.rs): envelope, state, recipients, lease, headers, history. `view`.
//! - `hold|release|delete|requeue|bounce` (act.rs): by ids, or in bulk by filters with a
//!   dry-run count, a confirmation and progress on stderr. Needs `queue`.
//! - `flush [DOMAIN]` (flush.rs): make deferred messages due now. `queue`.
//! - `read ID` (read.rs): stream the stored body to stdout or `--out FILE`. `read-body`.
//! - `stats` (stats.rs): per domain and state, totals, oldest age, rates, duplicates and
//!   redeliveries. `view`.

mod act;
mod flush;
mod list;
mod read;
mod show;
mod stats;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use mxfleet_proto::admin::v1::Action;

use super::connection::{Admin, ClientArgs};
use super::error::{CliError, Rpc};
use super::selector::parse_queue_id;
use super::{env_token, finish};

const LIST: Rpc = Rpc {
    name: "QueueAdmin.List",
    permission: "view",
};
const SHOW: Rpc = Rpc {
    name: "QueueAdmin.Show",
    permission: "view",
};
const STATS: Rpc = Rpc {
    name: "QueueAdmin.Stats",
    permission: "view",
};
const ACT: Rpc = Rpc {
    name: "QueueAdmin.Act",
    permission: "queue",
};
const FLUSH: Rpc = Rpc {
    name: "QueueAdmin.Flush",
    permission: "queue",
};
const READ: Rpc = Rpc {
    name: "QueueAdmin.Read",
    permission: "read-body",
};

#[derive(Args)]
pub struct QueueArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List messages like mailq, with filters; pages through the whole queue.
    List(list::ListArgs),
    /// Show one message: envelope, state, recipients, lease, headers and history.
    Show {
        /// The queue id, as `queue list` prints it.
        #[arg(value_parser = parse_queue_id)]
        id: String,
        /// Have the node confirm with the leader that it is up to date before answering.
        #[arg(long)]
        linearizable: bool,
    },
    /// Hold messages: no delivery attempts until released.
    Hold(act::ActArgs),
    /// Release held messages back into delivery.
    Release(act::ActArgs),
    /// Delete messages without notifying the sender.
    Delete(act::ActArgs),
    /// Clear the backoff of messages: due now.
    Requeue(act::ActArgs),
    /// Return messages to their senders now: pending recipients fail with 5.0.0 and a
    /// DSN goes out.
    Bounce(act::ActArgs),
    /// Make deferred messages due now, for one recipient domain or all.
    Flush {
        /// Only this recipient domain (default: every domain).
        domain: Option<String>,
    },
    /// Stream a message's stored body (as the sender sent it) to stdout or a file.
    Read {
        /// The queue id, as `queue list` prints it.
        #[arg(value_parser = parse_queue_id)]
        id: String,
        /// Write the body to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Counts per domain and state, totals, oldest age, rates, duplicates, redeliveries.
    Stats {
        /// Have the node confirm with the leader that it is up to date before answering.
        #[arg(long)]
        linearizable: bool,
    },
}

/// One queue action as the CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verb {
    pub action: Action,
    /// `delete`: the command and the `--json` `action` field.
    pub name: &'static str,
    /// `deleted`: for progress and results.
    pub past: &'static str,
}

impl Verb {
    pub const HOLD: Verb = Verb {
        action: Action::Hold,
        name: "hold",
        past: "held",
    };
    pub const RELEASE: Verb = Verb {
        action: Action::Release,
        name: "release",
        past: "released",
    };
    pub const DELETE: Verb = Verb {
        action: Action::Delete,
        name: "delete",
        past: "deleted",
    };
    pub const REQUEUE: Verb = Verb {
        action: Action::Requeue,
        name: "requeue",
        past: "requeued",
    };
    pub const BOUNCE: Verb = Verb {
        action: Action::Bounce,
        name: "bounce",
        past: "bounced",
    };
}

/// Runs one `queue` subcommand; returns the exit code.
pub async fn run(args: QueueArgs) -> u8 {
    finish(dispatch(args).await)
}

async fn dispatch(args: QueueArgs) -> Result<u8, CliError> {
    let json = args.client.json;
    check_flags(&args.command, json)?;
    let admin = Admin::connect(&args.client, env_token()).await?;
    match args.command {
        QueueCommand::List(list) => list::run(&admin, list, json).await,
        QueueCommand::Show { id, linearizable } => show::run(&admin, id, linearizable, json).await,
        QueueCommand::Hold(act) => act::run(&admin, Verb::HOLD, act, json).await,
        QueueCommand::Release(act) => act::run(&admin, Verb::RELEASE, act, json).await,
        QueueCommand::Delete(act) => act::run(&admin, Verb::DELETE, act, json).await,
        QueueCommand::Requeue(act) => act::run(&admin, Verb::REQUEUE, act, json).await,
        QueueCommand::Bounce(act) => act::run(&admin, Verb::BOUNCE, act, json).await,
        QueueCommand::Flush { domain } => flush::run(&admin, domain, json).await,
        QueueCommand::Read { id, out } => read::run(&admin, id, out, json).await,
        QueueCommand::Stats { linearizable } => stats::run(&admin, linearizable, json).await,
    }
}

/// Flag mistakes that need no server, reported before connecting.
fn check_flags(command: &QueueCommand, json: bool) -> Result<(), CliError> {
    match command {
        QueueCommand::List(list) => list.check(),
        QueueCommand::Hold(act)
        | QueueCommand::Release(act)
        | QueueCommand::Delete(act)
        | QueueCommand::Requeue(act)
        | QueueCommand::Bounce(act) => act.check(),
        QueueCommand::Read { out: None, .. } if json => Err(CliError::Usage(
            "queue read --json needs --out FILE: without it the body itself goes to stdout"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}
