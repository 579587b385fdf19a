//! Retry spacing: exponential backoff between `min_backoff` and `max_backoff`, with
//! jitter so that a fleet's deferred messages do not all come due in the same second.

use std::time::Duration;

use rand::Rng;

/// Backoff bounds (Postfix's `minimal_backoff_time` and `maximal_backoff_time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 minute and 10 minutes: the values backup-MX guides give, much shorter than
    /// Postfix's defaults, because a backup MX wants to hand mail over soon.
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(60),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th failed attempt (1 for the first): `min`
    /// doubled per earlier attempt, capped at `max`, then scaled by a random factor in
    /// [0.9, 1.1] and clamped to `[min, max]` again.
    pub fn delay(&self, attempts: u32, rng: &mut impl Rng) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        let base = self
            .min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        let jitter: f64 = rng.random_range(0.9..=1.1);
        base.mul_f64(jitter).clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn delays_double_from_min_to_max_within_jitter() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let secs = |d: Duration| d.as_secs_f64();
        for (attempts, base) in [
            (1, 60.0_f64),
            (2, 120.0),
            (3, 240.0),
            (4, 480.0),
            (5, 600.0),
            (40, 600.0),
        ] {
            for _ in 0..50 {
                let delay = secs(backoff.delay(attempts, &mut rng));
                assert!(
                    (60.0..=600.0).contains(&delay),
                    "attempt {attempts}: {delay}"
                );
                assert!(
                    delay >= (base * 0.9).max(60.0) - 1e-9
                        && delay <= (base * 1.1).min(600.0) + 1e-9,
                    "attempt {attempts}: {delay} not near {base}"
                );
            }
        }
    }
}
