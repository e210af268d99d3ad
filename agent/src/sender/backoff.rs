//! Retry timing: exponential backoff with full jitter, and `Retry-After` in both of its
//! forms.
//!
//! Full jitter (a delay drawn uniformly from zero to the exponential bound) is what
//! keeps 5,000 agents that lost the gateway at the same moment from coming back in the
//! same second: their retries spread evenly over the whole window.

use std::time::{Duration, SystemTime};

/// The first retry's bound.
pub const BASE_DELAY: Duration = Duration::from_millis(500);

/// The largest bound: a gateway back from an outage sees each agent within this long.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The longest `Retry-After` obeyed; a longer one (a misconfigured peer) is cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

pub use edge_daemon_kit::retry::Backoff;

/// Backoff state for one destination: bounds of `BASE_DELAY · 2^failures`, at most
/// `MAX_DELAY`.
pub fn destination() -> Backoff {
    Backoff::new(BASE_DELAY, MAX_DELAY)
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (relative to `now`; a
/// date in the past means now), cut to [`MAX_RETRY_AFTER`]. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    edge_daemon_kit::retry::parse_retry_after(value, now, MAX_RETRY_AFTER)
}

/// Up to a fifth more than `delay`, at random: agents told the same `Retry-After` do not
/// all return in the same instant, and none returns early.
pub fn spread(delay: Duration) -> Duration {
    delay + delay.mul_f64(0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn full_jitter_stays_within_a_growing_capped_bound() {
        let mut b = destination();
        for attempt in 0..20u32 {
            let bound = BASE_DELAY
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_DELAY);
            let d = b.next_delay();
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
        // Spread: 1,000 agents at the cap do not pick the same second.
        let mut seconds = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut b = destination().after(10);
            seconds.insert(b.next_delay().as_secs());
        }
        assert!(
            seconds.len() >= 25,
            "only {} distinct seconds",
            seconds.len()
        );
        b.reset();
        assert_eq!(b.failures(), 0);
        let s = spread(Duration::from_secs(2));
        assert!(s >= Duration::from_secs(2) && s <= Duration::from_millis(2400));
    }
}
