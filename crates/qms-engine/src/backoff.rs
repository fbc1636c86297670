//! Exponential backoff with deterministic jitter.
//!
//! delay(n) = min(maxDelay, initialDelay × base^(n-1)), then ± `jitter` × delay. The jitter is
//! derived from a hash of (workflow uid, run, step, attempt) instead of a random number generator:
//! workflows failing together still spread out (different uids), while one workflow computes the
//! same delay after a restart (Argo had no jitter, argo-workflows #700).

use std::time::Duration;

use crate::hash;

/// The resolved numbers of a retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub base: f64,
    pub initial: Duration,
    pub max: Duration,
    pub jitter: f64,
}

impl Backoff {
    /// The delay before attempt `failed_attempt + 1`, after attempt `failed_attempt` (1-based) failed.
    pub fn delay(&self, failed_attempt: u32, seed: &[&str]) -> Duration {
        let n = failed_attempt.max(1);
        let exp = i32::try_from(n - 1).unwrap_or(i32::MAX);
        let base = if self.base.is_finite() && self.base >= 1.0 {
            self.base
        } else {
            1.0
        };
        let max = self.max.as_secs_f64();
        let raw = (self.initial.as_secs_f64() * base.powi(exp)).min(max);
        let raw = if raw.is_finite() { raw } else { max };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // A fraction in [-1, 1] from the hash: stable for the same seed.
        let unit = (hash::fnv1a(seed) % 2001) as f64 / 1000.0 - 1.0;
        let secs = (raw * (1.0 + jitter * unit)).clamp(0.0, max.max(0.0) * 2.0);
        // Whole milliseconds: the status stores times at that precision.
        Duration::from_millis((secs * 1000.0).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> Backoff {
        Backoff {
            base: 2.0,
            initial: Duration::from_secs(10),
            max: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn grows_exponentially_up_to_the_cap_without_jitter() {
        let b = policy(0.0);
        let d: Vec<u64> = (1..=5).map(|n| b.delay(n, &["s"]).as_secs()).collect();
        assert_eq!(d, vec![10, 20, 40, 60, 60]);
    }

    #[test]
    fn jitter_is_bounded_deterministic_and_varies_by_seed() {
        let b = policy(0.2);
        let mut seen = std::collections::BTreeSet::new();
        for uid in 0..50 {
            let seed = uid.to_string();
            let d = b.delay(2, &[&seed, "1", "step", "2"]);
            assert_eq!(d, b.delay(2, &[&seed, "1", "step", "2"]));
            assert!(
                d >= Duration::from_secs(16) && d <= Duration::from_secs(24),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 10, "jitter should spread delays: {seen:?}");
    }
}
