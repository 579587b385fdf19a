//! Lease timing for delivery ownership, and the argument that a cut-off owner stops
//! delivering before anyone else may start.
//!
//! # The argument
//!
//! Let `L` be the lease, `D` the clock-drift bound (no two nodes' wall clocks differ by
//! more than `D` at any instant), and `S` the dot margin (an upper bound on the time
//! between our writing the final `.` and the primary receiving it).
//!
//! 1. The leader stamps `lease_until = leader_now + L` on an `Assign`.
//! 2. The leader proposes a new `Assign` for a message only when
//!    `leader_now >= lease_until + D` ([`LeaseTiming::reassignable`]); `apply` also
//!    refuses an `Assign` while `lease_until > now`.
//! 3. An owner starts an attempt, and writes the final dot, only while
//!    `owner_now <= lease_until - D - S` ([`LeaseTiming::may_deliver`]) and while it is
//!    in contact with the cluster (it heard from the leader, or as leader from a
//!    quorum, within `contact_timeout`).
//!
//! Suppose the old owner writes the dot at real time `t1` and the leader reassigns at
//! `t2`. By (3) the owner's clock read at most `lease_until - D - S` at `t1`; by (2) the
//! leader's read at least `lease_until + D` at `t2`, so the owner's clock read at least
//! `lease_until` at `t2`. Clocks run at real rate within the bound, so
//! `t2 - t1 >= D + S > S`: the old owner's dot reached the primary before a new owner
//! even existed. Two owners never deliver the same message at the same time.
//!
//! A duplicate remains possible only when the old owner got the primary's `250` but
//! could not commit `Delivered` (it died, or was cut off, between the two). The next
//! `Assign` of such a message finds a lapsed lease and counts it in
//! `FleetState::lapsed_reassignments`, so every possible internal redelivery is
//! counted. A cut-off owner cannot renew (renewal is a Raft commit), so its leases run
//! out at most `L` after its last renewal; the contact check only makes it stop sooner.
//!
//! Renewal keeps work in flight valid: an owner renews a lease when less than half of
//! `L` remains.

use std::time::Duration;

use mxfleet_core::UnixMillis;

/// The lease parameters (see the module documentation for why they are safe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// `L`: how long an assignment lasts without renewal.
    pub lease: Duration,
    /// `D`: the bound on the difference between any two nodes' wall clocks.
    pub clock_drift_bound: Duration,
    /// `S`: the time allowed for the final dot to reach the primary.
    pub dot_margin: Duration,
    /// An owner that has not heard from the cluster for this long stops starting work.
    pub contact_timeout: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease: Duration::from_secs(30),
            clock_drift_bound: Duration::from_secs(2),
            dot_margin: Duration::from_secs(2),
            contact_timeout: Duration::from_secs(5),
        }
    }
}

impl LeaseTiming {
    /// Checks the relation the argument needs: a lease long enough to hold both
    /// margins, with room for work.
    pub fn validate(&self) -> Result<(), String> {
        let margins = self.clock_drift_bound + self.dot_margin;
        if self.lease <= margins * 2 {
            return Err(format!(
                "lease ({:?}) must exceed twice clock_drift_bound + dot_margin ({:?})",
                self.lease,
                margins * 2
            ));
        }
        if self.contact_timeout >= self.lease - margins {
            return Err(format!(
                "contact_timeout ({:?}) must be shorter than lease - clock_drift_bound - dot_margin ({:?})",
                self.contact_timeout,
                self.lease - margins
            ));
        }
        Ok(())
    }

    /// The `lease_until` for an assignment or renewal made at `now`.
    pub fn lease_until(&self, now: UnixMillis) -> UnixMillis {
        now.plus_millis(millis(self.lease))
    }

    /// Rule 2: may the leader give the message to someone else at `leader_now`?
    pub fn reassignable(&self, lease_until: UnixMillis, leader_now: UnixMillis) -> bool {
        leader_now.0 >= lease_until.0.saturating_add(millis(self.clock_drift_bound))
    }

    /// Rule 3: may the owner start an attempt or write the final dot at `owner_now`?
    pub fn may_deliver(&self, lease_until: UnixMillis, owner_now: UnixMillis) -> bool {
        owner_now
            .0
            .saturating_add(millis(self.clock_drift_bound + self.dot_margin))
            <= lease_until.0
    }

    /// How long from `owner_now` the owner may still write a final dot (zero if not).
    pub fn delivery_window(&self, lease_until: UnixMillis, owner_now: UnixMillis) -> Duration {
        let last = lease_until
            .0
            .saturating_sub(millis(self.clock_drift_bound + self.dot_margin));
        Duration::from_millis(last.saturating_sub(owner_now.0))
    }

    /// True when a lease in flight should be renewed (less than half remains).
    pub fn needs_renewal(&self, lease_until: UnixMillis, owner_now: UnixMillis) -> bool {
        lease_until.0.saturating_sub(owner_now.0) < millis(self.lease) / 2
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_stops_before_the_leader_may_reassign_even_with_skewed_clocks() {
        let timing = LeaseTiming::default();
        timing.validate().unwrap();
        let lease_until = timing.lease_until(UnixMillis(1_000_000));
        let drift = millis(timing.clock_drift_bound);
        // Scan real time with the worst skew the bound allows: the owner's clock runs
        // a full `drift` behind the leader's, so the owner believes its lease lasts
        // longest and the leader believes it ended soonest.
        let mut last_owner_dot = None;
        let mut first_reassign = None;
        for real in (1_000_000..1_100_000u64).step_by(10) {
            let owner_now = UnixMillis(real - drift.min(real));
            let leader_now = UnixMillis(real);
            if timing.may_deliver(lease_until, owner_now) {
                last_owner_dot = Some(real);
            }
            if first_reassign.is_none() && timing.reassignable(lease_until, leader_now) {
                first_reassign = Some(real);
            }
        }
        let (dot, reassign) = (last_owner_dot.unwrap(), first_reassign.unwrap());
        assert!(
            reassign - dot >= millis(timing.dot_margin),
            "dot at {dot}, reassignment at {reassign}"
        );
    }

    #[test]
    fn renewal_starts_at_half_the_lease() {
        let timing = LeaseTiming::default();
        let until = timing.lease_until(UnixMillis(0));
        assert!(!timing.needs_renewal(until, UnixMillis(14_000)));
        assert!(timing.needs_renewal(until, UnixMillis(16_000)));
    }

    #[test]
    fn inconsistent_timings_are_refused() {
        let timing = LeaseTiming {
            lease: Duration::from_secs(5),
            ..LeaseTiming::default()
        };
        assert!(timing.validate().is_err());
        let timing = LeaseTiming {
            contact_timeout: Duration::from_secs(29),
            ..LeaseTiming::default()
        };
        assert!(timing.validate().is_err());
    }
}
