//! The instruments game code records into: counters, gauges and a concurrent
//! exponential histogram.
//!
//! ## The hot path
//!
//! `inc`/`add`/`set` are single atomic operations. [`Histogram::record`] takes no lock
//! shared between game threads and never allocates: a histogram has [`STRIPES`]
//! cache-line-aligned stripes, each an [`ExpHistogram`] with its bucket storage reserved
//! up front behind its own mutex. Every thread gets a slot number once, and records into
//! stripe `slot % STRIPES`, so up to [`STRIPES`] game threads each own a stripe and never
//! contend; the only other party that takes a stripe's mutex is the snapshot, once per
//! push (every 10 s). An uncontended mutex is one compare-and-swap to take and one store
//! to release. A snapshot merges the stripes.
//!
//! ## One outlier must not cost resolution forever
//!
//! A cumulative histogram that had to downscale for one far-off value would otherwise keep
//! the coarse resolution for the life of the process. When a snapshot finds that the
//! histogram is below its configured scale and at least [`DEFAULT_RESET_AFTER`] has
//! passed since it started (or last reset), the snapshot *takes* the data: it returns
//! everything recorded so far, and recording starts again, empty, at the configured scale.
//! Prometheus sees the count drop, which it treats as a counter reset (`rate()` and
//! `histogram_quantile()` handle it), and no observation is lost: the values recorded
//! before the reset are in the snapshot that is pushed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::histogram::{ExpHistogram, NonFinite};

/// Stripes per histogram: game servers run a handful of simulation threads; four stripes
/// give each its own on common layouts at 4 × 2.5 KiB of bucket storage per series.
pub const STRIPES: usize = 4;

/// How long a histogram that lost resolution waits before it resets: long enough that
/// resets are rare events on a dashboard, short enough that an outlier costs at most
/// half an hour of coarse buckets.
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(30 * 60);

/// A monotonic integer counter.
#[derive(Debug, Default)]
pub struct Counter {
    value: AtomicU64,
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one.
    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A monotonic floating-point counter (seconds of CPU, bytes as floats, …). Negative,
/// NaN and infinite increments are refused and counted.
#[derive(Debug, Default)]
pub struct FloatCounter {
    bits: AtomicU64,
    refused: AtomicU64,
}

impl FloatCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `v`; refuses (and counts) a negative or non-finite `v`.
    pub fn add(&self, v: f64) -> Result<(), NonFinite> {
        if !v.is_finite() || v < 0.0 {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(NonFinite);
        }
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
        Ok(())
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    /// Increments refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge {
    bits: AtomicU64,
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Adds `v` (may be negative).
    pub fn add(&self, v: f64) {
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

/// A stripe on its own cache line, so two threads' stripes never share one.
#[derive(Debug)]
#[repr(align(128))]
struct Stripe(Mutex<ExpHistogram>);

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
}

/// A concurrent exponential histogram (see the module docs for the design).
#[derive(Debug)]
pub struct Histogram {
    stripes: [Stripe; STRIPES],
    scale: i32,
    refused: AtomicU64,
    reset_after: Duration,
    epoch: Mutex<Instant>,
}

impl Histogram {
    /// A histogram starting at `scale` (clamped to −4..=20).
    pub fn with_scale(scale: i32) -> Self {
        Self::with_reset_after(scale, DEFAULT_RESET_AFTER)
    }

    /// A histogram that resets to regain resolution after `reset_after` (see the module
    /// docs).
    pub fn with_reset_after(scale: i32, reset_after: Duration) -> Self {
        Histogram {
            stripes: std::array::from_fn(|_| Stripe(Mutex::new(ExpHistogram::new(scale)))),
            scale: ExpHistogram::new(scale).scale(),
            refused: AtomicU64::new(0),
            reset_after,
            epoch: Mutex::new(Instant::now()),
        }
    }

    fn stripe(&self, i: usize) -> MutexGuard<'_, ExpHistogram> {
        // A panic inside `record` cannot leave an ExpHistogram half-updated in a way that
        // breaks its invariants (counts are only ever added), so a poisoned stripe is
        // still good data.
        self.stripes[i]
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one value. NaN and ±Inf are refused, counted in [`Histogram::refused`],
    /// and never stored.
    #[inline]
    pub fn record(&self, v: f64) {
        let slot = SLOT.with(|s| *s) % STRIPES;
        if self.stripe(slot).record(v).is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Values refused (NaN, ±Inf).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The configured starting scale.
    pub fn configured_scale(&self) -> i32 {
        self.scale
    }

    /// Everything recorded so far, merged. If the histogram lost resolution and
    /// `reset_after` has passed, recording starts again at the configured scale (see the
    /// module docs); the returned snapshot still holds every value recorded before.
    pub fn snapshot(&self) -> ExpHistogram {
        let mut merged = ExpHistogram::new(self.scale);
        let mut epoch = self
            .epoch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lost_resolution = (0..STRIPES).any(|i| self.stripe(i).scale() < self.scale);
        let reset = lost_resolution && epoch.elapsed() >= self.reset_after;
        for i in 0..STRIPES {
            let mut stripe = self.stripe(i);
            merged.merge(&stripe);
            if reset {
                stripe.reset(self.scale);
            }
        }
        if reset {
            *epoch = Instant::now();
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges() {
        let c = Counter::new();
        c.inc();
        c.add(4);
        assert_eq!(c.get(), 5);
        let f = FloatCounter::new();
        f.add(0.5).expect("ok");
        f.add(0.25).expect("ok");
        assert!(f.add(-1.0).is_err());
        assert!(f.add(f64::NAN).is_err());
        assert_eq!((f.get(), f.refused()), (0.75, 2));
        let g = Gauge::new();
        g.set(3.0);
        g.add(-1.5);
        assert_eq!(g.get(), 1.5);
    }

    #[test]
    fn non_finite_values_are_refused_and_counted() {
        let h = Histogram::with_scale(2);
        h.record(1.0);
        h.record(f64::NAN);
        h.record(f64::INFINITY);
        h.record(f64::NEG_INFINITY);
        let s = h.snapshot();
        assert_eq!(s.count(), 1);
        assert_eq!(s.sum(), 1.0);
        assert_eq!(h.refused(), 3);
    }

    #[test]
    fn threads_lose_no_counts() {
        let h = std::sync::Arc::new(Histogram::with_scale(2));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        h.record(f64::from(i % 1000 + 1) * 1e-3 * f64::from(t + 1));
                    }
                })
            })
            .collect();
        // Snapshots taken while threads record must not lose anything either.
        for _ in 0..20 {
            let _ = h.snapshot();
        }
        for t in threads {
            t.join().expect("thread");
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 6 * 20_000);
        let buckets: u64 = s.positive().counts().iter().sum::<u64>() + s.zero_count();
        assert_eq!(buckets, s.count());
    }

    #[test]
    fn an_outlier_costs_resolution_only_until_the_reset() {
        let h = Histogram::with_reset_after(4, Duration::ZERO);
        for i in 1..=100 {
            h.record(f64::from(i) * 1e-3);
        }
        h.record(1e30); // forces a downscale far below scale 4
        let before = h.snapshot();
        assert!(
            before.scale() < 4,
            "the outlier downscaled: {}",
            before.scale()
        );
        assert_eq!(before.count(), 101, "the reset snapshot holds every value");
        // Recording starts again at full resolution.
        h.record(0.05);
        let after = h.snapshot();
        assert_eq!(after.scale(), 4);
        assert_eq!(
            after.count(),
            1,
            "a counter reset, which Prometheus detects"
        );

        // Without the interval having passed, nothing resets.
        let kept = Histogram::with_reset_after(4, Duration::from_secs(3600));
        kept.record(1e-3);
        kept.record(1e30);
        assert!(kept.snapshot().scale() < 4);
        assert_eq!(kept.snapshot().count(), 2);
    }
}
