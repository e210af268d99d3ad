//! The instruments game code records into: counters, gauges and a concurrent
//! exponential histogram.
//!
//! ## The hot path
//!
//! [`Counter::inc`]/[`Counter::add`] and [`Gauge::set`] are single atomic operations;
//! [`FloatCounter::add`] and [`Gauge::add`] are a compare-and-swap loop on the `f64`'s
//! bits. None of them locks or allocates.
//!
//! [`Histogram::record`] takes no lock shared between game threads and never allocates.
//! The design, and why:
//!
//! - **Stripes.** A histogram has [`STRIPES`] stripes, each a complete exponential
//!   histogram (scale, sum, min, max, zero count, two windows of 160 bucket counts stored
//!   inline) on its own cache lines (`align(128)`, so neither neighbouring lines nor the
//!   adjacent-line prefetcher share them). Every thread gets a slot number the first time
//!   it records (a `const` thread-local, so later reads are one TLS load) and records into
//!   stripe `slot % STRIPES`: the first [`STRIPES`] threads that record each own a stripe,
//!   so a game's few simulation threads never touch each other's cache lines.
//! - **A flag per stripe, not a lock shared by threads.** A stripe's fields are atomics
//!   updated with plain loads and stores (no read-modify-write, so they compile to
//!   ordinary `mov`s), under a flag taken with one atomic swap and released with one
//!   store. The flag is only ever contended by the snapshot (once per push, every 10 s),
//!   or by two threads that landed on one stripe; a waiter spins briefly, then yields,
//!   so a holder that was preempted mid-record does not burn the waiter's time slice.
//!   Everything is safe Rust: no `unsafe`, no torn reads, and the snapshot sees each
//!   stripe whole.
//! - **The bucket index is computed before the flag is taken**, at the histogram's
//!   configured scale: it needs nothing from the stripe, and the swap would otherwise
//!   hold back its table loads. Under the flag it is shifted down to the stripe's scale
//!   (downscaling maps bucket `i` to `i >> by` exactly). The index itself costs a table
//!   lookup, no logarithm (see [`crate::histogram`]).
//! - **The common case is one comparison**: a bucket inside the window is incremented in
//!   place; starting, widening or downscaling the window is out of line. The count is not
//!   stored; the snapshot derives it from the buckets.
//!
//! A property test holds a stripe equal, bucket for bucket, to [`ExpHistogram`] recording
//! the same values. The measured cost is in the crate's README ("Performance").
//!
//! The alternatives were measured or weighed: a `Mutex<ExpHistogram>` per stripe costs
//! ~4 ns more per record (lock and unlock are two read-modify-writes); atomic
//! read-modify-writes per field (no flag) cost a locked instruction per field and cannot
//! downscale consistently; a thread-exclusive stripe without any flag needs the snapshot
//! to stop the writer, which takes either a store-load fence per record (as costly as the
//! swap) or `unsafe` process-wide barriers.
//!
//! ## One outlier must not cost resolution forever
//!
//! A cumulative histogram that had to downscale for one far-off value would otherwise keep
//! the coarse resolution for the life of the process. The exporter handles it the way
//! Prometheus' Go client does with its minimum reset duration: when a snapshot finds that
//! the histogram is below its configured scale and at least `reset_after`
//! ([`DEFAULT_RESET_AFTER`], 30 minutes, or [`Histogram::with_reset_after`]) has passed
//! since it started or last reset, the snapshot *takes* the data: it returns everything
//! recorded so far, and recording starts again, empty, at the configured scale. Prometheus
//! sees the count drop and the schema rise, both of which it treats as a counter reset
//! (`rate()`, `increase()` and `histogram_quantile()` over rates handle it), and no
//! observation is lost: the values recorded before the reset are in the snapshot that is
//! pushed. One caveat: if that very push is dropped, the values recorded since the
//! previous successful push are lost (the next snapshot no longer holds them).
//! Resolution is never lost for a histogram whose values fit 160 buckets at its scale:
//! it never downscales, so it never resets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::histogram::{
    DEFAULT_MAX_SIZE, DEFAULT_ZERO_THRESHOLD, ExpHistogram, MAX_SCALE, MIN_SCALE, index_at,
    span_downscale,
};

/// Stripes per histogram: game servers run a handful of simulation threads; four stripes
/// give each its own on common layouts at 4 × 2.5 KiB of bucket storage per series.
pub const STRIPES: usize = 4;

/// Spins on a held stripe before yielding the core (about a microsecond of spinning).
const SPINS_BEFORE_YIELD: u32 = 256;

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

/// An increment a [`FloatCounter`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefusedIncrement {
    /// NaN or an infinity.
    #[error("NaN and infinities cannot be added to a counter")]
    NonFinite,
    /// A negative increment: a counter only goes up.
    #[error("a counter only goes up: negative increments are refused")]
    Negative,
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

    /// Adds `v`; refuses (and counts in [`FloatCounter::refused`]) a negative or
    /// non-finite `v`.
    pub fn add(&self, v: f64) -> Result<(), RefusedIncrement> {
        if !v.is_finite() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(RefusedIncrement::NonFinite);
        }
        if v < 0.0 {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(RefusedIncrement::Negative);
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
/// slots at and past `len` are always zero. The counts are inline, not behind a pointer,
/// so reaching a bucket is one load fewer.
#[derive(Debug)]
struct StripeBuckets {
    offset: AtomicI32,
    len: AtomicU32,
    counts: [AtomicU64; DEFAULT_MAX_SIZE],
}

// Every field of a stripe is read and written only while its `busy` flag is held, so
// plain `Relaxed` loads and stores (no read-modify-write) are enough: the flag's
// Acquire/Release orders them between holders.
impl StripeBuckets {
    fn new() -> Self {
        StripeBuckets {
            offset: AtomicI32::new(0),
            len: AtomicU32::new(0),
            counts: [const { AtomicU64::new(0) }; DEFAULT_MAX_SIZE],
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
            positive: StripeBuckets::new(),
            negative: StripeBuckets::new(),
        }
    }

    /// Takes the flag: one atomic swap when free, which it is unless the snapshot (once
    /// per push) or a thread sharing this stripe holds it. A holder keeps it for tens of
    /// nanoseconds (a snapshot: a few microseconds), so a waiter spins briefly, then yields
    /// its core: a holder preempted mid-record must not cost the waiter its time slice.
    #[inline]
    fn hold(&self) -> Held<'_> {
        if self.busy.swap(true, Ordering::Acquire) {
            self.hold_contended();
        }
        Held(self)
    }

    #[cold]
    fn hold_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.busy.load(Ordering::Relaxed) {
                if spins < SPINS_BEFORE_YIELD {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            if !self.busy.swap(true, Ordering::Acquire) {
                return;
            }
        }
    }

    #[inline]
    fn load_f64(a: &AtomicU64) -> f64 {
        f64::from_bits(a.load(Ordering::Relaxed))
    }

    /// Records a finite value whose bucket index at `configured` (the histogram's scale,
    /// never below the stripe's) is `index` (ignored for the zero bucket); the caller holds
    /// the flag. Mirrors `ExpHistogram::record` (a property test holds the two equal).
    #[inline]
    fn record(&self, _held: &Held<'_>, v: f64, index: i32, configured: i32) {
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
        // Downscaling maps bucket i to i >> by exactly (floor division), so the index at
        // the stripe's scale is the configured one shifted.
        let index = index >> (configured - scale);
        let side = if v > 0.0 {
            &self.positive
        } else {
            &self.negative
        };
        // The common case: the bucket is inside the window.
        let at = index.wrapping_sub(side.offset.load(Ordering::Relaxed)) as u32;
        match side.counts.get(at as usize) {
            Some(count) if at < side.len.load(Ordering::Relaxed) => {
                count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            _ => self.record_outside(index, v > 0.0),
        }
    }

    /// Records into bucket `index` (at the stripe's scale) outside the current window of
    /// its sign: starts the window, widens it, or downscales first when the window would
    /// exceed [`DEFAULT_MAX_SIZE`]. Out of line, so the common path stays small.
    #[cold]
    #[inline(never)]
    fn record_outside(&self, mut index: i32, positive: bool) {
        let scale = self.scale.load(Ordering::Relaxed);
        let side = if positive {
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
        // The index at the configured scale needs nothing from the stripe, so it is
        // computed before taking the stripe's flag, whose locked swap would otherwise
        // hold back the table loads behind it.
        let magnitude = v.abs();
        let index = if magnitude > DEFAULT_ZERO_THRESHOLD {
            index_at(magnitude, self.scale)
        } else {
            0
        };
        let stripe = &self.stripes[slot() % STRIPES];
        let held = stripe.hold();
        stripe.record(&held, v, index, self.scale);
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
        assert_eq!(f.add(-1.0), Err(RefusedIncrement::Negative));
        assert_eq!(f.add(f64::NAN), Err(RefusedIncrement::NonFinite));
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
        // Six threads on four stripes: some share a stripe and contend for its flag, and
        // snapshots taken meanwhile contend with all of them.
        let h = std::sync::Arc::new(Histogram::with_scale(2));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        // Integers, so the sum is exact in any order.
                        h.record(f64::from(i % 1000 + 1) * f64::from(t + 1));
                    }
                })
            })
            .collect();
        let mut previous = 0;
        for _ in 0..20 {
            let count = h.snapshot().count();
            assert!(count >= previous, "cumulative");
            previous = count;
        }
        for t in threads {
            t.join().expect("thread");
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 6 * 20_000);
        // Per thread: 20 × (1 + … + 1000) × (t + 1); over t = 0..6: 20 × 500,500 × 21.
        assert_eq!(s.sum(), 20.0 * 500_500.0 * 21.0);
        let mut reference = ExpHistogram::new(2);
        for t in 0..6u32 {
            for i in 0..20_000u32 {
                reference
                    .record(f64::from(i % 1000 + 1) * f64::from(t + 1))
                    .expect("finite");
            }
        }
        assert_eq!(s.scale(), reference.scale());
        assert_eq!(s.positive(), reference.positive());
        assert_eq!((s.min(), s.max()), (1.0, 6000.0));
    }

    #[test]
    fn two_threads_on_one_stripe_lose_no_counts() {
        // A fresh histogram whose stripe 0 both threads are forced onto.
        let h = std::sync::Arc::new(Histogram::with_scale(3));
        let stripe = &h.stripes[0];
        std::thread::scope(|scope| {
            for t in 0..2u32 {
                scope.spawn(move || {
                    for i in 0..50_000u32 {
                        let v = f64::from(i % 300 + 1) * if t == 0 { 1.0 } else { -1.0 };
                        let index = index_at(v.abs(), 3);
                        let held = stripe.hold();
                        stripe.record(&held, v, index, 3);
                    }
                });
            }
        });
        let s = h.snapshot();
        assert_eq!(s.count(), 100_000);
        assert_eq!(s.positive().counts().iter().sum::<u64>(), 50_000);
        assert_eq!(s.negative().counts().iter().sum::<u64>(), 50_000);
        assert_eq!(s.sum(), 0.0);
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
