//! Exponential histograms, following the OpenTelemetry data model.
//!
//! At scale `s` the base is `2^(2^-s)` and bucket `i` covers `(base^i, base^(i+1)]`
//! (upper-inclusive). Positive and negative values have their own dense bucket arrays,
//! each with an offset; values with `|v| <= zero_threshold` go to the zero bucket. A
//! histogram holds at most `max_size` buckets per sign: when a new value would not fit,
//! it downscales (merging pairs of adjacent buckets) by the smallest amount that makes it
//! fit. Count, sum, min and max are kept exactly.
//!
//! A Prometheus native-histogram bucket index is the OpenTelemetry index **+ 1**
//! (Prometheus buckets are `(base^(i-1), base^i]`); [`ExpHistogram::to_native`] converts,
//! with the schema (= scale) clamped to −4..=8.
//!
//! ## Exactness at bucket boundaries
//!
//! [`index_of`] gives the mathematically exact OpenTelemetry index of every `f64`,
//! subnormals included, at every scale from −10 to 20: a power of two (the only boundary an
//! `f64` can equal) belongs to the bucket below it, and a value one ulp either side of an
//! irrational boundary lands on its true side. [`lower_boundary`] gives each boundary as
//! the largest `f64` at or below it, so bucket `i` holds exactly the `f64`s in
//! `(lower_boundary(i), lower_boundary(i + 1)]`. How this is computed fast (exponent bits,
//! a compile-time table of exact mantissa boundaries for scales 1..=8, an exact 128-bit
//! fallback above) is in the `index` submodule's docs; the tests check it against an
//! independent big-integer reference.
//!
//! ## Range
//!
//! OpenTelemetry allows scales −10..=20; [`index_of`] and [`lower_boundary`] accept all of
//! them. An [`ExpHistogram`] itself never goes below −4 ([`MIN_SCALE`]), the lowest
//! Prometheus schema, so every histogram can be exported without an error path: at −4 one
//! bucket spans 16 binary orders of magnitude, and all of `f64` (2,098 binary orders,
//! subnormals included) fits in 132 buckets, which is why `max_size` is at least
//! [`MIN_MAX_SIZE`] and downscaling never needs to go lower. A starting scale below −4 is
//! raised to −4 (it could only lose resolution that the bucket budget does not require).
//!
//! ## Rules this module follows, with their reasons
//!
//! - **Sum**: the plain `f64` sum in recording order (so it matches a sum computed the same
//!   way bit for bit); merging adds the two sums, so a merged sum is within floating-point
//!   rounding of the sequential one, not always equal to it.
//! - **Quantiles**: the value of rank `⌈q·count⌉` (1-based, rank 1 for `q = 0`), estimated
//!   from the bucket holding that rank as `2LU/(L+U)`, which keeps the relative error at
//!   most `α = (base−1)/(base+1)` (8.6% at scale 2) of the true value at that rank; ranks
//!   1 and `count` are the exact min and max.
//! - **Zero bucket**: `|v| <= zero_threshold` (default 2^−128). Merging histograms with
//!   different thresholds widens to the larger one, moving buckets below it into the zero
//!   bucket, as the Prometheus native-histogram specification prescribes.

mod index;

pub(crate) use index::index_at;
pub use index::{OTEL_MAX_SCALE, OTEL_MIN_SCALE, index_of, lower_boundary};

/// The default exponential-histogram starting scale: 2, ≈13 buckets per decade (the seed
/// design's "12–16 buckets per decade") with a relative error of at most 8.6%.
pub const DEFAULT_SCALE: i32 = 2;

/// The OpenTelemetry default and the design's limit: 160 buckets per sign.
pub const DEFAULT_MAX_SIZE: usize = 160;

/// The fewest buckets per sign that hold every finite `f64` at scale −4.
pub const MIN_MAX_SIZE: usize = 132;

/// The lowest scale: Prometheus' lowest schema, so every histogram stays exportable.
pub const MIN_SCALE: i32 = -4;

/// The highest scale: the highest the OpenTelemetry data model allows.
pub const MAX_SCALE: i32 = OTEL_MAX_SCALE;

/// The highest Prometheus native-histogram schema.
pub const MAX_NATIVE_SCHEMA: i32 = 8;

/// Values with `|v|` at or below this go to the zero bucket: 2^−128, as Prometheus'
/// clients default to, so noise around zero does not spread the histogram over hundreds of
/// binary orders of magnitude.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Empty buckets kept inside a span instead of starting a new one when encoding for
/// Prometheus (one span costs more bytes than two zero deltas).
pub const NATIVE_MAX_GAP: u32 = 2;

/// A refused observation: NaN or an infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("NaN and infinities cannot be recorded in a histogram")]
pub struct NonFinite;

/// One sign's buckets: `counts[j]` is bucket `offset + j`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    offset: i32,
    counts: Vec<u64>,
}

impl Buckets {
    fn with_capacity(n: usize) -> Self {
        Buckets {
            offset: 0,
            counts: Vec::with_capacity(n),
        }
    }

    /// Index of the first bucket.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// The dense counts from [`Buckets::offset`] on.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// `(index, count)` of every bucket, empty ones included.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        let offset = self.offset;
        self.counts
            .iter()
            .enumerate()
            .map(move |(j, n)| (offset + j as i32, *n))
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    fn last(&self) -> i32 {
        self.offset + self.counts.len() as i32 - 1
    }

    /// How many halvings of the resolution make `index` fit with the others.
    #[inline]
    fn needed_downscale(&self, index: i32, max_size: usize) -> u32 {
        if self.is_empty() {
            return 0;
        }
        let (low, high) = (self.offset.min(index), self.last().max(index));
        // The common case, without the loop: it already fits.
        if i64::from(high) - i64::from(low) < max_size as i64 {
            return 0;
        }
        span_downscale(low, high, max_size)
    }

    #[inline]
    fn increment(&mut self, index: i32, n: u64) {
        if let Some(slot) = usize::try_from(index.wrapping_sub(self.offset))
            .ok()
            .and_then(|at| self.counts.get_mut(at))
        {
            *slot += n;
            return;
        }
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(n);
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
            self.counts[0] += n;
        } else {
            let at = (index - self.offset) as usize;
            if at >= self.counts.len() {
                self.counts.resize(at + 1, 0);
            }
            self.counts[at] += n;
        }
    }

    fn downscale(&mut self, by: u32) {
        if by == 0 || self.counts.is_empty() {
            return;
        }
        let new_offset = self.offset >> by;
        let mut last = 0usize;
        for j in 0..self.counts.len() {
            let target = (((self.offset + j as i32) >> by) - new_offset) as usize;
            let v = self.counts[j];
            self.counts[j] = 0;
            self.counts[target] += v;
            last = target;
        }
        self.counts.truncate(last + 1);
        self.offset = new_offset;
    }

    fn clear(&mut self) {
        self.counts.clear();
        self.offset = 0;
    }

    /// Drops the first `n` buckets, then any empty ones that lead.
    fn drop_first(&mut self, n: usize) {
        let n = n.min(self.counts.len());
        let leading = self.counts[n..]
            .iter()
            .position(|c| *c > 0)
            .map_or(self.counts.len(), |p| n + p);
        if leading == self.counts.len() {
            self.clear();
        } else if leading > 0 {
            self.counts.drain(..leading);
            // leading < counts.len() <= max_size, far below i32::MAX.
            self.offset += leading as i32;
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Halvings needed for indexes `low..=high` to fit in `max_size` buckets.
pub(crate) fn span_downscale(low: i32, high: i32, max_size: usize) -> u32 {
    let mut by = 0;
    while i64::from((high >> by) - (low >> by)) + 1 > max_size as i64 {
        by += 1;
    }
    by
}

/// An exponential histogram (single-threaded; see [`crate::instruments::Histogram`] for
/// the concurrent recorder).
#[derive(Clone, Debug, PartialEq)]
pub struct ExpHistogram {
    scale: i32,
    max_size: usize,
    zero_threshold: f64,
    zero_count: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    positive: Buckets,
    negative: Buckets,
}

impl Default for ExpHistogram {
    fn default() -> Self {
        Self::new(DEFAULT_SCALE)
    }
}

impl ExpHistogram {
    /// An empty histogram starting at `scale` (clamped to −4..=20) with 160 buckets per
    /// sign. Bucket storage is reserved now, so recording never allocates.
    pub fn new(scale: i32) -> Self {
        Self::with_limits(scale, DEFAULT_MAX_SIZE, DEFAULT_ZERO_THRESHOLD)
    }

    /// An empty histogram with explicit limits (`max_size` at least [`MIN_MAX_SIZE`],
    /// `zero_threshold` at least 0).
    pub fn with_limits(scale: i32, max_size: usize, zero_threshold: f64) -> Self {
        let max_size = max_size.max(MIN_MAX_SIZE);
        ExpHistogram {
            scale: scale.clamp(MIN_SCALE, MAX_SCALE),
            max_size,
            zero_threshold: if zero_threshold >= 0.0 {
                zero_threshold
            } else {
                0.0
            },
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            positive: Buckets::with_capacity(max_size),
            negative: Buckets::with_capacity(max_size),
        }
    }

    /// A histogram from its parts (as a concurrent recorder holds them). `positive` and
    /// `negative` are `(offset, dense counts)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        scale: i32,
        zero_threshold: f64,
        zero_count: u64,
        count: u64,
        sum: f64,
        (min, max): (f64, f64),
        positive: (i32, Vec<u64>),
        negative: (i32, Vec<u64>),
    ) -> Self {
        let mut h = Self::with_limits(scale, DEFAULT_MAX_SIZE, zero_threshold);
        h.zero_count = zero_count;
        h.count = count;
        h.sum = sum;
        h.min = min;
        h.max = max;
        h.positive = Buckets {
            offset: positive.0,
            counts: positive.1,
        };
        h.negative = Buckets {
            offset: negative.0,
            counts: negative.1,
        };
        h
    }

    /// Records one value. NaN and ±Inf are refused and change nothing.
    #[inline]
    pub fn record(&mut self, v: f64) -> Result<(), NonFinite> {
        if !v.is_finite() {
            return Err(NonFinite);
        }
        self.count += 1;
        self.sum += v;
        // `v` is finite here, so plain comparisons do what `f64::min`/`max` would, without
        // their NaN handling.
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        let magnitude = v.abs();
        if magnitude <= self.zero_threshold {
            self.zero_count += 1;
            return Ok(());
        }
        let index = index::index_at(magnitude, self.scale);
        let side = if v > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        // The common case: the bucket is inside the window.
        let at = index.wrapping_sub(side.offset) as u32;
        match side.counts.get_mut(at as usize) {
            Some(count) => *count += 1,
            None => self.record_outside(index, v > 0.0),
        }
        Ok(())
    }

    /// Records into bucket `index` outside the current window of its sign: starts or
    /// widens the window, downscaling first if it would exceed `max_size`. Out of line, so
    /// the common path stays small.
    #[cold]
    #[inline(never)]
    fn record_outside(&mut self, mut index: i32, positive: bool) {
        let needed = if positive {
            self.positive.needed_downscale(index, self.max_size)
        } else {
            self.negative.needed_downscale(index, self.max_size)
        };
        if needed > 0 {
            let by = needed.min((self.scale - MIN_SCALE).max(0) as u32);
            self.downscale(by);
            index >>= by;
        }
        if positive {
            self.positive.increment(index, 1);
        } else {
            self.negative.increment(index, 1);
        }
    }

    /// Halves the resolution `by` times: `scale -= by`, adjacent buckets merged.
    pub fn downscale(&mut self, by: u32) {
        let by = by.min((self.scale - MIN_SCALE).max(0) as u32);
        self.positive.downscale(by);
        self.negative.downscale(by);
        self.scale -= by as i32;
    }

    /// Adds `other` into `self`. The result's scale is the highest at which both fit,
    /// which is what recording all of their values into one histogram gives.
    pub fn merge(&mut self, other: &ExpHistogram) {
        let mut scale = self.scale.min(other.scale);
        for (mine, theirs) in [
            (&self.positive, &other.positive),
            (&self.negative, &other.negative),
        ] {
            let ranges: Vec<(i32, i32, i32)> = [(mine, self.scale), (theirs, other.scale)]
                .into_iter()
                .filter(|(b, _)| !b.is_empty())
                .map(|(b, s)| (b.offset, b.last(), s))
                .collect();
            if ranges.is_empty() {
                continue;
            }
            let at = |s: i32| {
                let low = ranges.iter().map(|(l, _, from)| l >> (from - s)).min();
                let high = ranges.iter().map(|(_, h, from)| h >> (from - s)).max();
                (low.unwrap_or(0), high.unwrap_or(0))
            };
            let (low, high) = at(scale);
            scale -= span_downscale(low, high, self.max_size) as i32;
        }
        let scale = scale.max(MIN_SCALE);
        self.downscale((self.scale - scale) as u32);
        let shift = (other.scale - scale) as u32;
        for (index, n) in other.positive.iter().filter(|(_, n)| *n > 0) {
            self.positive.increment(index >> shift, n);
        }
        for (index, n) in other.negative.iter().filter(|(_, n)| *n > 0) {
            self.negative.increment(index >> shift, n);
        }
        self.zero_count += other.zero_count;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.zero_threshold != self.zero_threshold {
            self.widen_zero_bucket(self.zero_threshold.max(other.zero_threshold));
        }
    }

    /// Widens the zero bucket to `threshold`, as the Prometheus native-histogram
    /// specification prescribes for merging different widths: buckets wholly inside
    /// `[-threshold, threshold]` move into the zero bucket, and a populated bucket that
    /// straddles the threshold widens it to that bucket's upper edge and moves too.
    fn widen_zero_bucket(&mut self, threshold: f64) {
        let mut threshold = threshold.max(self.zero_threshold);
        let scale = self.scale;
        loop {
            let mut widened = false;
            for side in [&mut self.positive, &mut self.negative] {
                let mut moved = 0u64;
                let mut emptied = 0usize;
                for (j, (index, n)) in side.iter().enumerate() {
                    let (lower, upper) = (
                        lower_boundary(index, scale),
                        lower_boundary(index.saturating_add(1), scale),
                    );
                    if lower >= threshold {
                        break;
                    }
                    if upper > threshold {
                        if n == 0 {
                            break;
                        }
                        threshold = upper;
                        widened = true;
                    }
                    moved += n;
                    emptied = j + 1;
                }
                self.zero_count += moved;
                side.drop_first(emptied);
            }
            if !widened {
                break;
            }
        }
        self.zero_threshold = threshold;
    }

    /// Empties the histogram, keeping its limits but going back to `scale`.
    pub fn reset(&mut self, scale: i32) {
        self.scale = scale.clamp(MIN_SCALE, MAX_SCALE);
        self.positive.clear();
        self.negative.clear();
        self.zero_count = 0;
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }

    /// Current scale.
    pub fn scale(&self) -> i32 {
        self.scale
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values recorded.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest value recorded (`+Inf` when empty).
    pub fn min(&self) -> f64 {
        self.min
    }

    /// Largest value recorded (`-Inf` when empty).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Values in the zero bucket.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// The zero bucket's threshold.
    pub fn zero_threshold(&self) -> f64 {
        self.zero_threshold
    }

    /// The positive buckets.
    pub fn positive(&self) -> &Buckets {
        &self.positive
    }

    /// The negative buckets (bucket `i` holds values in `[-base^(i+1), -base^i)`).
    pub fn negative(&self) -> &Buckets {
        &self.negative
    }

    /// Buckets in use (from the first to the last populated one, per sign).
    pub fn bucket_count(&self) -> usize {
        self.positive.counts.len() + self.negative.counts.len()
    }

    /// The bucket bounds `(lower, upper]` of positive bucket `index` as [`lower_boundary`]
    /// gives them (negative bucket `index` holds `[-upper, -lower)`).
    pub fn bounds(&self, index: i32) -> (f64, f64) {
        (
            lower_boundary(index, self.scale),
            lower_boundary(index.saturating_add(1), self.scale),
        )
    }

    /// Estimates the `q`-quantile (0 ≤ q ≤ 1) as the value of rank `⌈q·count⌉` (1-based;
    /// rank 1 for `q = 0`) in ascending order: the bucket holding that rank gives
    /// `2LU/(L+U)` of its bounds `(L, U]` (for a negative bucket, the negated estimate of
    /// its magnitudes), which is within `α = (base−1)/(base+1)` of every value in the
    /// bucket, relatively; the zero bucket gives 0. The estimate is clamped to
    /// `[min, max]`, which only moves it closer, and ranks 1 and `count` give min and max
    /// exactly. `None` when empty or `q` is not in `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        // The ends are known exactly.
        if rank == 1 {
            return Some(self.min);
        }
        if rank == self.count {
            return Some(self.max);
        }
        let estimate = |index: i32| {
            let (l, u) = self.bounds(index);
            // 2LU/(L+U), written so that L·U cannot overflow near f64::MAX. Kept inside
            // the bucket's own f64 range (L, U]: where 2LU/(L+U) underflows (L below the
            // smallest subnormal), the smallest f64 in the bucket is the closest one.
            let estimate = l * (2.0 / (1.0 + l / u));
            estimate.clamp(l.next_up(), u)
        };
        let mut seen = 0u64;
        // Most negative first: negative buckets by descending index.
        for (index, n) in self.negative.iter().rev() {
            seen += n;
            if seen >= rank {
                return Some((-estimate(index)).clamp(self.min, self.max));
            }
        }
        seen += self.zero_count;
        if seen >= rank {
            return Some(0.0f64.clamp(self.min, self.max));
        }
        for (index, n) in self.positive.iter() {
            seen += n;
            if seen >= rank {
                return Some(estimate(index).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The histogram as a Prometheus native histogram: schema = scale clamped to −4..=8
    /// (a copy is downscaled when the scale is above 8), indexes shifted by one, spans
    /// allowing up to [`NATIVE_MAX_GAP`] empty buckets inside, delta-encoded counts.
    pub fn to_native(&self) -> NativeHistogram {
        let mut h = self.clone();
        if h.scale > MAX_NATIVE_SCHEMA {
            h.downscale((h.scale - MAX_NATIVE_SCHEMA) as u32);
        }
        let prom = |b: &Buckets| {
            b.iter()
                .map(|(i, n)| (otel_to_prometheus_index(i), n))
                .collect::<Vec<_>>()
        };
        let (positive_spans, positive_deltas) = encode_spans(&prom(&h.positive), NATIVE_MAX_GAP);
        let (negative_spans, negative_deltas) = encode_spans(&prom(&h.negative), NATIVE_MAX_GAP);
        NativeHistogram {
            schema: h.scale,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count,
            count: h.zero_count + h.positive.total() + h.negative.total(),
            sum: h.sum,
            positive_spans,
            positive_deltas,
            negative_spans,
            negative_deltas,
        }
    }

    /// A histogram from a Prometheus native histogram, the inverse of
    /// [`ExpHistogram::to_native`]: OpenTelemetry index = Prometheus index − 1. A native
    /// histogram carries no min and max, so they are set to the outer edges of the
    /// populated buckets (or the zero bucket's threshold), which bound every value.
    pub fn from_native(native: &NativeHistogram) -> Result<Self, NativeError> {
        if !(MIN_SCALE..=MAX_NATIVE_SCHEMA).contains(&native.schema) {
            return Err(NativeError::Schema(native.schema));
        }
        let positive = decode_spans(&native.positive_spans, &native.positive_deltas)?;
        let negative = decode_spans(&native.negative_spans, &native.negative_deltas)?;
        let width = |b: &[(i32, u64)]| match (b.first(), b.last()) {
            (Some((first, _)), Some((last, _))) => (i64::from(*last) - i64::from(*first) + 1)
                .try_into()
                .unwrap_or(usize::MAX),
            _ => 0,
        };
        let max_size = DEFAULT_MAX_SIZE.max(width(&positive)).max(width(&negative));
        let mut h = Self::with_limits(native.schema, max_size, native.zero_threshold);
        h.zero_count = native.zero_count;
        for (index, n) in positive.iter().filter(|(_, n)| *n > 0) {
            h.positive.increment(prometheus_to_otel_index(*index), *n);
        }
        for (index, n) in negative.iter().filter(|(_, n)| *n > 0) {
            h.negative.increment(prometheus_to_otel_index(*index), *n);
        }
        h.count = h.zero_count + h.positive.total() + h.negative.total();
        if h.count != native.count {
            return Err(NativeError::Count {
                count: native.count,
                buckets: h.count,
            });
        }
        h.sum = native.sum;
        if h.count > 0 {
            let zero = if h.zero_count > 0 {
                h.zero_threshold
            } else {
                f64::NEG_INFINITY
            };
            let edge = |b: &Buckets, last: bool| {
                let index = if last {
                    b.last().saturating_add(1)
                } else {
                    b.offset
                };
                lower_boundary(index, h.scale)
            };
            h.max = if h.positive.is_empty() {
                if h.zero_count > 0 {
                    zero
                } else {
                    -edge(&h.negative, false)
                }
            } else {
                edge(&h.positive, true)
            };
            h.min = if h.negative.is_empty() {
                if h.zero_count > 0 {
                    -zero
                } else {
                    edge(&h.positive, false)
                }
            } else {
                -edge(&h.negative, true)
            };
        }
        Ok(h)
    }

    /// Cumulative counts for classic-histogram upper bounds `le` (ascending), as a text
    /// exposition's `_bucket{le=…}` series need: for each bound, the values at or below
    /// it.
    ///
    /// A bucket counts toward `le` when its upper edge is at or below `le`: a positive
    /// bucket `(L, U]` when `U <= le`, a negative bucket `[-U, -L)` when `-L <= le`, the
    /// zero bucket `[-t, t]` when `t <= le`. So a bound on a bucket boundary (as
    /// [`lower_boundary`] gives it) is exact, except that a negative value exactly on a
    /// boundary belongs to the bucket above it; a bound inside a bucket does not count
    /// that bucket (its values are attributed to its upper edge), so the count may be low
    /// by at most that bucket's population. Any `le >= max` gets the full count, exactly.
    pub fn cumulative_counts(&self, le: &[f64]) -> Vec<u64> {
        let edges = self.upper_edges();
        let mut out = Vec::with_capacity(le.len());
        let mut at = 0usize;
        let mut cumulative = 0u64;
        for &bound in le {
            while at < edges.len() && edges[at].0 <= bound {
                cumulative += edges[at].1;
                at += 1;
            }
            out.push(if bound >= self.max {
                self.count
            } else {
                cumulative
            });
        }
        out
    }

    /// A classic histogram with one bound per populated bucket (its upper edge, see
    /// [`ExpHistogram::cumulative_counts`]) plus the zero bucket's threshold when it holds
    /// values, then `+Inf`: `(le, cumulative count)` pairs, exact.
    pub fn classic_buckets(&self) -> Vec<(f64, u64)> {
        let mut bounds: Vec<f64> = self.upper_edges().iter().map(|(edge, _)| *edge).collect();
        bounds.dedup();
        let counts = self.cumulative_counts(&bounds);
        let mut out: Vec<(f64, u64)> = bounds.into_iter().zip(counts).collect();
        out.push((f64::INFINITY, self.count));
        out
    }

    /// `(upper edge, count)` of every populated bucket and the zero bucket, ascending.
    fn upper_edges(&self) -> Vec<(f64, u64)> {
        let mut edges = Vec::with_capacity(self.bucket_count() + 1);
        for (index, n) in self.negative.iter().rev().filter(|(_, n)| *n > 0) {
            edges.push((-lower_boundary(index, self.scale), n));
        }
        if self.zero_count > 0 {
            edges.push((self.zero_threshold, self.zero_count));
        }
        for (index, n) in self.positive.iter().filter(|(_, n)| *n > 0) {
            edges.push((lower_boundary(index.saturating_add(1), self.scale), n));
        }
        edges
    }
}

/// The Prometheus native-histogram index of OpenTelemetry bucket `index`: Prometheus
/// bucket `j` is `(base^(j-1), base^j]`, OpenTelemetry bucket `i` is `(base^i, base^(i+1)]`,
/// so `j = i + 1`. Saturates at `i32::MAX`, which no real index reaches (they stay
/// within ±1,128,267,776).
pub const fn otel_to_prometheus_index(index: i32) -> i32 {
    index.saturating_add(1)
}

/// The OpenTelemetry bucket index of Prometheus native-histogram bucket `index` (`i = j −
/// 1`; saturates at `i32::MIN`).
pub const fn prometheus_to_otel_index(index: i32) -> i32 {
    index.saturating_sub(1)
}

/// A native histogram that does not describe a valid histogram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NativeError {
    /// The schema is not a standard exponential one (−4..=8).
    #[error("native histogram schema {0} is not in -4..=8")]
    Schema(i32),
    /// The spans list more buckets than there are deltas, or the other way round.
    #[error("spans list {spans} buckets but there are {deltas} deltas")]
    Length {
        /// Buckets the spans list.
        spans: u64,
        /// Deltas given.
        deltas: usize,
    },
    /// The deltas add up to a negative count.
    #[error("bucket {index}: the deltas add up to a negative count")]
    NegativeCount {
        /// The Prometheus bucket index.
        index: i32,
    },
    /// A span offset runs the index past the `i32` range.
    #[error("span offsets run the bucket index out of range")]
    IndexOverflow,
    /// The count is not the zero count plus the buckets' counts.
    #[error("count {count} is not the sum of the buckets ({buckets})")]
    Count {
        /// The histogram's count.
        count: u64,
        /// The zero bucket plus the buckets.
        buckets: u64,
    },
}

/// A run of consecutive native-histogram buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSpan {
    /// For the first span, the index of its first bucket; for later spans, the number of
    /// buckets skipped since the previous span.
    pub offset: i32,
    /// Buckets in the span.
    pub length: u32,
}

/// A Prometheus native histogram (integer counts).
#[derive(Clone, Debug, PartialEq)]
pub struct NativeHistogram {
    /// −4..=8.
    pub schema: i32,
    /// The zero bucket's threshold.
    pub zero_threshold: f64,
    /// Values in the zero bucket.
    pub zero_count: u64,
    /// All values.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Spans of positive buckets.
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket counts, each relative to the previous one.
    pub positive_deltas: Vec<i64>,
    /// Spans of negative buckets.
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket counts, each relative to the previous one.
    pub negative_deltas: Vec<i64>,
}

/// Encodes `(index, count)` buckets as native-histogram spans and deltas, per the
/// Prometheus specification: the first span's offset is the absolute index of its first
/// bucket, a later span's offset is the number of buckets skipped since the end of the
/// previous span, and each delta is a bucket's count minus the previous bucket's (the first
/// relative to 0), across span boundaries.
///
/// `buckets` must be in strictly ascending index order (a bucket out of order is
/// skipped). Empty buckets are never listed at a span's edge; a run of at most `max_gap`
/// empty buckets between two populated ones is kept inside one span (as a delta back to
/// 0 and 0 deltas) rather than starting a new span, as Prometheus' own clients do with a
/// gap of 2 ([`NATIVE_MAX_GAP`]): one more span costs more bytes than two zero deltas.
pub fn encode_spans(buckets: &[(i32, u64)], max_gap: u32) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let mut previous_count = 0i64;
    let mut next_index: Option<i32> = None;
    for &(index, count) in buckets.iter().filter(|(_, c)| *c > 0) {
        if next_index.is_some_and(|next| index < next) {
            continue;
        }
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        match (next_index, spans.last_mut()) {
            (Some(next), Some(span)) if i64::from(index - next) <= i64::from(max_gap) => {
                for _ in next..index {
                    deltas.push(-previous_count);
                    previous_count = 0;
                }
                span.length += (index - next) as u32 + 1;
            }
            (Some(next), _) => spans.push(BucketSpan {
                offset: index - next,
                length: 1,
            }),
            (None, _) => spans.push(BucketSpan {
                offset: index,
                length: 1,
            }),
        }
        deltas.push(count - previous_count);
        previous_count = count;
        next_index = Some(index + 1);
    }
    (spans, deltas)
}

/// Decodes spans and deltas back to `(index, count)` for every bucket they list, empty
/// ones included: the inverse of [`encode_spans`]. Fails when the spans and deltas
/// disagree in length, a count goes negative, or an index leaves the `i32` range.
pub fn decode_spans(spans: &[BucketSpan], deltas: &[i64]) -> Result<Vec<(i32, u64)>, NativeError> {
    let listed: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if listed != deltas.len() as u64 {
        return Err(NativeError::Length {
            spans: listed,
            deltas: deltas.len(),
        });
    }
    let mut out = Vec::with_capacity(deltas.len());
    let mut deltas = deltas.iter();
    let mut index = 0i64;
    let mut count = 0i64;
    for (n, span) in spans.iter().enumerate() {
        // The first offset is absolute, later ones are gaps after the previous span.
        index = if n == 0 {
            i64::from(span.offset)
        } else {
            index + i64::from(span.offset)
        };
        for _ in 0..span.length {
            let i = i32::try_from(index).map_err(|_| NativeError::IndexOverflow)?;
            let delta = deltas.next().copied().unwrap_or(0);
            count = count
                .checked_add(delta)
                .ok_or(NativeError::NegativeCount { index: i })?;
            let c = u64::try_from(count).map_err(|_| NativeError::NegativeCount { index: i })?;
            out.push((i, c));
            index += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
