//! Fleet-wide pacing per destination, enforced by the leader when it assigns work: a
//! token bucket for messages per second, and the destination's connection limit split
//! into per-owner shares. Owners never add up to more than the fleet-wide limits,
//! because they only deliver what the leader gave them, with the connections it gave.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most one second's worth.
#[derive(Debug)]
pub struct RateBucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateBucket {
    /// A full bucket.
    pub fn new(rate_per_second: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        RateBucket {
            rate,
            tokens: rate,
            refilled: now,
        }
    }

    /// Tokens available at `now` (whole messages).
    pub fn available(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.refilled = now;
        self.tokens = (self.tokens + self.rate * elapsed.as_secs_f64()).min(self.rate);
        self.tokens.floor() as usize
    }

    /// Spends `count` tokens (after `available` said they were there).
    pub fn take(&mut self, count: usize) {
        self.tokens = (self.tokens - count as f64).max(0.0);
    }

    /// How long until one token is available again.
    pub fn time_to_next(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0)) / self.rate)
    }
}

/// Splits `total` connections among `owners` (at least one each while there are
/// connections to give; earlier owners get the remainder).
pub fn connection_shares(total: u32, owners: usize) -> Vec<u32> {
    if owners == 0 {
        return Vec::new();
    }
    let owners_u32 = owners as u32;
    let (each, extra) = (total / owners_u32, total % owners_u32);
    (0..owners_u32)
        .map(|i| each + u32::from(i < extra))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_fleet_limit() {
        assert_eq!(connection_shares(10, 3), vec![4, 3, 3]);
        assert_eq!(connection_shares(2, 3), vec![1, 1, 0]);
        assert_eq!(connection_shares(5, 0), Vec::<u32>::new());
        for total in 0..40 {
            for owners in 1..7 {
                assert_eq!(connection_shares(total, owners).iter().sum::<u32>(), total);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_at_its_rate_and_holds_one_second() {
        let start = Instant::now();
        let mut bucket = RateBucket::new(100, start);
        assert_eq!(bucket.available(start), 100);
        bucket.take(100);
        assert_eq!(bucket.available(start), 0);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(bucket.available(Instant::now()), 25);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(bucket.available(Instant::now()), 100);
    }
}
