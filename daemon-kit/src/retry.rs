//! Retry timing: exponential backoff with full jitter, and `Retry-After` in both of its
//! forms.
//!
//! Full jitter (a delay drawn uniformly from zero to the exponential bound) keeps
//! clients that failed at the same moment from coming back in the same instant: their
//! retries spread evenly over the whole window.

use std::time::{Duration, SystemTime};

/// Backoff state for one piece of work or destination: failures in a row.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Bounds of `base · 2^failures`, at most `max`.
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// Starting as if `failures` had already happened in a row.
    pub const fn after(mut self, failures: u32) -> Backoff {
        self.failures = failures;
        self
    }

    /// The bound after `failures` failures: `min(max, base · 2^failures)`.
    pub fn bound(&self, failures: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << failures.min(16))
            .min(self.max)
    }

    /// The delay before the next attempt after one more failure: uniform in
    /// `[0, bound(failures)]`.
    pub fn next_delay(&mut self) -> Duration {
        let bound = self.bound(self.failures);
        self.failures = self.failures.saturating_add(1);
        bound.mul_f64(fastrand::f64())
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: start over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (relative to `now`; a
/// date in the past means now), cut to `cap`. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date_cut_to_the_cap() {
        let cap = Duration::from_secs(600);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("2", now, cap),
            Some(Duration::from_secs(2))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            parse_retry_after(&later, now, cap),
            Some(Duration::from_secs(7))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now, cap), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now, cap), None);
        assert_eq!(parse_retry_after("999999", now, cap), Some(cap));
    }

    #[test]
    fn full_jitter_stays_within_a_growing_capped_bound() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(base, max);
        for attempt in 0..20u32 {
            let bound = base.saturating_mul(1 << attempt.min(16)).min(max);
            let d = b.next_delay();
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
        assert_eq!(b.failures(), 20);
        b.reset();
        assert_eq!(b.failures(), 0);
    }
}
