//! The one retry decision for the sinks (Kinesis, Firehose, remote_write) and the
//! relay: after a failed try, wait exponential backoff with full jitter, or the
//! endpoint's `Retry-After` when that is longer, never less than a floor; a sink gives
//! up at its commit deadline (its client then gets 503 and keeps the data), the relay
//! never does (its checkpoint does not move until the target takes the record).

use std::time::{Duration, Instant};

use edge_daemon_kit::retry::Backoff;

/// Every sink's commit deadline: past it, the commit fails (503 upstream).
pub const COMMIT_DEADLINE: Duration = Duration::from_secs(30);

/// The backoff's first bound and its largest: full jitter up to 100 ms × 2^failures,
/// at most 5 s.
fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}

/// Consecutive failures of one piece of work, and when to try again.
#[derive(Debug)]
pub struct Retry {
    backoff: Backoff,
    deadline: Option<Instant>,
    floor: Duration,
}

impl Retry {
    /// A commit: gives up when the next try would start at or past
    /// [`COMMIT_DEADLINE`] from now.
    pub fn commit() -> Retry {
        Retry {
            backoff: backoff(),
            deadline: Some(Instant::now() + COMMIT_DEADLINE),
            floor: Duration::ZERO,
        }
    }

    /// Work that is never given up (the relay's reads and forwards), tried at least
    /// `floor` apart.
    pub fn forever(floor: Duration) -> Retry {
        Retry {
            backoff: backoff(),
            deadline: None,
            floor,
        }
    }

    /// A try succeeded: the next failure starts the backoff again.
    pub fn succeeded(&mut self) {
        self.backoff.reset();
    }

    /// A try failed: how long to wait before the next one (at least `retry_after`, the
    /// endpoint's, when it gave one), or `None` when that would pass the deadline.
    pub fn failed(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let wait = retry_after
            .unwrap_or_default()
            .max(self.backoff.next_delay())
            .max(self.floor);
        if self.deadline.is_some_and(|d| Instant::now() + wait >= d) {
            return None;
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_and_retry_after_and_the_floor_are_minimums() {
        let mut b = backoff();
        for attempt in 0..20 {
            let cap = Duration::from_millis(100 << attempt.min(6)).min(Duration::from_secs(5));
            assert!(b.next_delay() <= cap, "attempt {attempt}");
        }
        let mut r = Retry::forever(Duration::from_millis(200));
        assert!(r.failed(None) >= Some(Duration::from_millis(200)));
        assert!(r.failed(Some(Duration::from_secs(7))) >= Some(Duration::from_secs(7)));
        let mut c = Retry::commit();
        assert_eq!(c.failed(Some(COMMIT_DEADLINE)), None, "past the deadline");
        assert!(c.failed(None).is_some());
    }
}
