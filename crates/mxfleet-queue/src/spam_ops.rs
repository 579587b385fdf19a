//! The spam-check side of the `Queue` handle: recording what the checks saw
//! (greylisting triplets, recipient verdicts) and expiring it. Reads go through
//! `Queue::read_state` like every other local read.

use mxfleet_core::{Command, SpamFact};

use crate::error::QueueError;
use crate::queue::Queue;

impl Queue {
    /// Commits a batch of spam facts (forwarded to the leader from a follower).
    pub async fn record_spam_facts(&self, facts: Vec<SpamFact>) -> Result<(), QueueError> {
        if facts.is_empty() {
            return Ok(());
        }
        self.command_done(Command::SpamFacts { facts }).await
    }

    /// Drops greylisting, allowlist and verification records that have run out.
    pub async fn expire_spam_state(&self) -> Result<(), QueueError> {
        let now = self.now();
        self.command_done(Command::ExpireSpamState { now }).await
    }
}
