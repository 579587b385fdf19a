//! mxfleet-core: the vocabulary every other mxfleet crate speaks, and the pure queue
//! state machine that Raft replicates.
//!
//! Nothing here performs I/O or reads a clock. Times arrive inside commands, stamped by
//! the node that proposes them, so every replica computes exactly the same state from
//! the same log.
//!
//! Layout:
//! - [`ids`]: `NodeId`, `QueueId`, `BodyDigest`, `DedupKey` and `UnixMillis`.
//! - [`envelope`]: the SMTP envelope (`Envelope`) of a queued message.
//! - [`entry`]: one queued message (`QueueEntry`), its `MessageState`, its current
//!   `Assignment` and its `HistoryEvent`s.
//! - [`command`]: what is proposed through Raft (`Command`) and what applying it
//!   answers (`Response`, `Rejection`).
//! - [`delivery`]: attempt reports, per-recipient status, notifications, and the
//!   fleet's view of each destination.
//! - [`spam`]: the fleet-wide state of the spam checks (greylisting, allowlisted
//!   clients, recipient verification) and the `SpamFact`s that change it.
//! - [`state`]: `QueueState` and the pure `QueueState::apply`.

pub mod command;
pub mod delivery;
pub mod entry;
pub mod envelope;
pub mod ids;
pub mod spam;
pub mod state;

pub use command::{Command, OperatorAction, Rejection, Response};
pub use delivery::{
    AttemptReport, DestinationState, FleetState, NotificationKind, OutcomeStatus, Reachability,
    RecipientOutcome, RecipientState, RecipientStatus, destination_of,
};
pub use entry::{Assignment, HistoryEvent, MessageState, QueueEntry};
pub use envelope::{Envelope, ReceivedTrace};
pub use ids::{BodyDigest, DedupKey, NodeId, QueueId, UnixMillis};
pub use spam::{SpamFact, SpamKey, SpamState};
pub use state::{Applied, Change, QueueState};
