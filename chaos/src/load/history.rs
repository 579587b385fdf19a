//! The history of a load run: every message the generator made and every attempt to
//! submit one, with what the sender was told.
//!
//! This is the left-hand side of the checker's comparison (the right-hand side is what
//! the primary received). Times are milliseconds since the run's epoch, so histories of
//! one run line up with fault schedules and deliveries measured from the same epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the generator did, in the order attempts ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    /// Every message made, by its chaos id.
    pub messages: BTreeMap<u64, Submitted>,
    /// Every submission attempt, appended when it ended.
    pub attempts: Vec<Attempt>,
}

impl History {
    /// The attempts made for message `id`, in the order they ended.
    pub fn attempts_of(&self, id: u64) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter().filter(move |a| a.message == id)
    }
}

/// One message as the generator made it; resubmissions send these same bytes again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The chaos id: the value of the message's first header, `X-Chaos-Id`.
    pub id: u64,
    /// `<chaos-{seed}-{id}@load.chaos>`, with the angle brackets.
    pub message_id: String,
    pub recipient: String,
    /// Hex SHA-256 of the whole message as submitted (unstuffed, CRLF line endings).
    pub body_sha256: String,
    /// Bytes of the whole message as submitted.
    pub size: usize,
}

/// One SMTP session that tried to submit one message to one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The chaos id of the message.
    pub message: u64,
    /// The node's name, as given in the load's targets.
    pub node: String,
    /// When connecting began.
    pub started_ms: u64,
    /// When the outcome was known (before QUIT).
    pub ended_ms: u64,
    pub outcome: Outcome,
    /// The last reply line, or what went wrong at which step.
    pub reply: String,
}

/// What the sender may conclude from an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// 2xx after the final dot: the fleet promised to deliver.
    Ok,
    /// 5xx at any step: rejected for good, nothing stored.
    Fail,
    /// 4xx, timeout, closed connection or garbage before any content was sent (including
    /// a failed connect and a banner other than 220): definitely not stored.
    Refused,
    /// Timeout, 4xx, garbage or a dropped connection once content was being sent: may or
    /// may not be stored.
    Unknown,
}
