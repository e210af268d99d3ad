//! The instruments game code records into: counters, gauges and a concurrent
//! exponential histogram.
//!
//! ## The hot path
//!
//! `inc`/`add`/`set` are single atomic operations. [`Histogram::record`] takes no lock
//! shared between game threads and never allocates: a histogram has [`STRIPES`]
//! cache-line-aligned stripes, each holding an exponential histogram in atomic fields with
//! its bucket storage allocated up front. Every thread gets a slot number once and records
//! into stripe `slot % STRIPES`, so up to [`STRIPES`] game threads each own a stripe and
//! never contend. A stripe is guarded by a flag: one atomic swap to take it, one plain
//! store to release it; its fields are then updated with plain loads and stores, no
//! read-modify-write. The only other party that takes the flag is the snapshot, once per
//! push (every 10 s), which merges the stripes. A property test holds a stripe equal,
//! bucket for bucket, to [`ExpHistogram`] recording the same values.
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

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::histogram::{
    DEFAULT_MAX_SIZE, DEFAULT_ZERO_THRESHOLD, ExpHistogram, MAX_SCALE, MIN_SCALE, NonFinite,
    index_of, span_downscale,
};

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

/// One sign's buckets in a stripe: `counts[j]` is bucket `offset + j` for `j < len`;
/// slots at and past `len` are always zero.
#[derive(Debug)]
struct StripeBuckets {
    offset: AtomicI32,
    len: AtomicU32,
    counts: Box<[AtomicU64]>,
}

// Every field of a stripe is read and written only while its `busy` flag is held, so
// plain `Relaxed` loads and stores (no read-modify-write) are enough: the flag's
// Acquire/Release orders them between holders.
impl StripeBuckets {
    fn new(max_size: usize) -> Self {
        StripeBuckets {
            offset: AtomicI32::new(0),
            len: AtomicU32::new(0),
            counts: (0..max_size).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn get(&self, j: usize) -> u64 {
        self.counts[j].load(Ordering::Relaxed)
    }

    fn set(&self, j: usize, v: u64) {
        self.counts[j].store(v, Ordering::Relaxed);
    }

    fn range(&self) -> Option<(i32, i32)> {
        let len = self.len.load(Ordering::Relaxed);
        let offset = self.offset.load(Ordering::Relaxed);
        (len > 0).then(|| (offset, offset + len as i32 - 1))
    }

    /// Adds one to bucket `index`, which must fit in the capacity with the others;
    /// `offset` and `len` are the current window, as the caller just read them.
    #[inline]
    fn increment(&self, index: i32, offset: i32, len: usize) {
        let at = index.wrapping_sub(offset);
        if len > 0 && (at as u32 as usize) < len {
            let j = at as usize;
            self.set(j, self.get(j) + 1);
        } else if len == 0 {
            self.offset.store(index, Ordering::Relaxed);
            self.len.store(1, Ordering::Relaxed);
            self.set(0, 1);
        } else if at < 0 {
            // Shift up to make room below; the vacated slots become zero.
            let shift = (-at) as usize;
            for j in (0..len).rev() {
                self.set(j + shift, self.get(j));
            }
            for j in 0..shift {
                self.set(j, 0);
            }
            self.set(0, 1);
            self.offset.store(index, Ordering::Relaxed);
            self.len.store((len + shift) as u32, Ordering::Relaxed);
        } else {
            let j = at as usize;
            self.set(j, 1);
            self.len.store(j as u32 + 1, Ordering::Relaxed);
        }
    }

    /// Merges pairs of adjacent buckets `by` times.
    fn downscale(&self, by: u32) {
        let Some((offset, last)) = self.range() else {
            return;
        };
        if by == 0 {
            return;
        }
        let new_offset = offset >> by;
        for j in 0..=(last - offset) as usize {
            let target = (((offset + j as i32) >> by) - new_offset) as usize;
            let v = self.get(j);
            self.set(j, 0);
            self.set(target, self.get(target) + v);
        }
        self.offset.store(new_offset, Ordering::Relaxed);
        self.len
            .store(((last >> by) - new_offset + 1) as u32, Ordering::Relaxed);
    }

    fn take(&self, reset: bool) -> (i32, Vec<u64>) {
        let len = self.len.load(Ordering::Relaxed) as usize;
        let counts = (0..len).map(|j| self.get(j)).collect();
        let offset = self.offset.load(Ordering::Relaxed);
        if reset {
            for j in 0..len {
                self.set(j, 0);
            }
            self.len.store(0, Ordering::Relaxed);
        }
        (offset, counts)
    }
}

/// One thread's share of a histogram, on its own cache line(s).
#[derive(Debug)]
#[repr(align(128))]
struct Stripe {
    busy: AtomicBool,
    scale: AtomicI32,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    zero: AtomicU64,
    positive: StripeBuckets,
    negative: StripeBuckets,
}

/// Holds a stripe's flag; releases it when dropped.
struct Held<'a>(&'a Stripe);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

impl Stripe {
    fn new(scale: i32) -> Self {
        Stripe {
            busy: AtomicBool::new(false),
            scale: AtomicI32::new(scale),
            sum: AtomicU64::new(0f64.to_bits()),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            zero: AtomicU64::new(0),
            positive: StripeBuckets::new(DEFAULT_MAX_SIZE),
            negative: StripeBuckets::new(DEFAULT_MAX_SIZE),
        }
    }

    /// Takes the flag: one atomic swap when free, which it is unless the snapshot (once
    /// per push) or a thread sharing this stripe holds it.
    #[inline]
    fn hold(&self) -> Held<'_> {
        while self.busy.swap(true, Ordering::Acquire) {
            while self.busy.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        Held(self)
    }

    #[inline]
    fn load_f64(a: &AtomicU64) -> f64 {
        f64::from_bits(a.load(Ordering::Relaxed))
    }

    /// Records a finite value; the caller holds the flag. Mirrors `ExpHistogram::record`
    /// (a property test holds the two equal).
    #[inline]
    fn record(&self, _held: &Held<'_>, v: f64) {
        // The count is not stored: it is the zero bucket plus the buckets, summed at
        // snapshot time, which saves a load and a store per record.
        self.sum
            .store((Self::load_f64(&self.sum) + v).to_bits(), Ordering::Relaxed);
        if v < Self::load_f64(&self.min) {
            self.min.store(v.to_bits(), Ordering::Relaxed);
        }
        if v > Self::load_f64(&self.max) {
            self.max.store(v.to_bits(), Ordering::Relaxed);
        }
        let magnitude = v.abs();
        if magnitude <= DEFAULT_ZERO_THRESHOLD {
            self.zero
                .store(self.zero.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            return;
        }
        let scale = self.scale.load(Ordering::Relaxed);
        let mut index = index_of(magnitude, scale);
        let side = if v > 0.0 {
            &self.positive
        } else {
            &self.negative
        };
        let mut len = side.len.load(Ordering::Relaxed) as usize;
        let mut offset = side.offset.load(Ordering::Relaxed);
        if len > 0 {
            let (low, high) = (offset.min(index), (offset + len as i32 - 1).max(index));
            if i64::from(high) - i64::from(low) >= DEFAULT_MAX_SIZE as i64 {
                let needed = span_downscale(low, high, DEFAULT_MAX_SIZE);
                let by = needed.min((scale - MIN_SCALE).max(0) as u32);
                self.positive.downscale(by);
                self.negative.downscale(by);
                self.scale.store(scale - by as i32, Ordering::Relaxed);
                index >>= by;
                len = side.len.load(Ordering::Relaxed) as usize;
                offset = side.offset.load(Ordering::Relaxed);
            }
        }
        side.increment(index, offset, len);
    }

    /// The stripe as a histogram; with `reset`, the stripe starts over at `scale`.
    fn take(&self, _held: &Held<'_>, reset: Option<i32>) -> ExpHistogram {
        let zero = self.zero.load(Ordering::Relaxed);
        let positive = self.positive.take(reset.is_some());
        let negative = self.negative.take(reset.is_some());
        let count = zero + positive.1.iter().sum::<u64>() + negative.1.iter().sum::<u64>();
        let h = ExpHistogram::from_parts(
            self.scale.load(Ordering::Relaxed),
            DEFAULT_ZERO_THRESHOLD,
            zero,
            count,
            Self::load_f64(&self.sum),
            (Self::load_f64(&self.min), Self::load_f64(&self.max)),
            positive,
            negative,
        );
        if let Some(scale) = reset {
            self.scale.store(scale, Ordering::Relaxed);
            for (a, v) in [
                (&self.sum, 0f64.to_bits()),
                (&self.min, f64::INFINITY.to_bits()),
                (&self.max, f64::NEG_INFINITY.to_bits()),
                (&self.zero, 0),
            ] {
                a.store(v, Ordering::Relaxed);
            }
        }
        h
    }
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // A `const` thread-local is a plain TLS access, without lazy-initialisation
    // bookkeeping; `usize::MAX` means "no slot yet".
    static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// This thread's slot number, assigned on first use.
#[inline]
fn slot() -> usize {
    SLOT.with(|slot| {
        let mine = slot.get();
        if mine != usize::MAX {
            return mine;
        }
        let assigned = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        slot.set(assigned);
        assigned
    })
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
        let scale = scale.clamp(MIN_SCALE, MAX_SCALE);
        Histogram {
            stripes: std::array::from_fn(|_| Stripe::new(scale)),
            scale,
            refused: AtomicU64::new(0),
            reset_after,
            epoch: Mutex::new(Instant::now()),
        }
    }

    /// Records one value. NaN and ±Inf are refused, counted in [`Histogram::refused`],
    /// and never stored.
    #[inline]
    pub fn record(&self, v: f64) {
        if !v.is_finite() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let stripe = &self.stripes[slot() % STRIPES];
        let held = stripe.hold();
        stripe.record(&held, v);
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
        let mut epoch = self
            .epoch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lost_resolution = self
            .stripes
            .iter()
            .any(|s| s.scale.load(Ordering::Relaxed) < self.scale);
        let reset = (lost_resolution && epoch.elapsed() >= self.reset_after).then_some(self.scale);
        let mut merged = ExpHistogram::new(self.scale);
        for stripe in &self.stripes {
            let held = stripe.hold();
            merged.merge(&stripe.take(&held, reset));
        }
        if reset.is_some() {
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

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A stripe records exactly what `ExpHistogram` records: same scale, same buckets,
        /// same count, sum, min and max.
        #[test]
        fn a_stripe_equals_exp_histogram(
            values in proptest::collection::vec(
                prop_oneof![
                    (-40.0f64..40.0).prop_map(|e| 10f64.powf(e)),
                    (-40.0f64..40.0).prop_map(|e| -(10f64.powf(e))),
                    Just(0.0),
                ],
                0..400,
            ),
            scale in -4i32..=20,
        ) {
            let h = Histogram::with_scale(scale);
            let mut reference = ExpHistogram::new(scale);
            for v in &values {
                h.record(*v);
                reference.record(*v).expect("finite");
            }
            let got = h.snapshot();
            prop_assert_eq!(got.scale(), reference.scale());
            prop_assert_eq!(got.positive(), reference.positive());
            prop_assert_eq!(got.negative(), reference.negative());
            prop_assert_eq!(got.zero_count(), reference.zero_count());
            prop_assert_eq!(got.count(), reference.count());
            prop_assert_eq!(got.sum().to_bits(), reference.sum().to_bits());
            if !values.is_empty() {
                prop_assert_eq!((got.min(), got.max()), (reference.min(), reference.max()));
            }
        }
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
