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
//! Bucket boundaries are irrational, so "the boundary" means its `f64` value as computed
//! by [`lower_boundary`], and [`index_of`] is defined against exactly those values: a
//! value equal to a boundary belongs to the bucket below, one ulp above it to the bucket
//! above. Powers of two are exact at every scale. Index computation uses the float's
//! exponent bits and, for scales 1..=8, a table of the `2^s` mantissa boundaries (no
//! logarithm on the hot path); above scale 8 a logarithm gives a first guess that is then
//! corrected against the same boundaries. Subnormals are normalised first, so the
//! smallest subnormal at scale 20 and `f64::MAX` both have indexes well inside `i32`.
//!
//! ## Range
//!
//! The scale never goes below −4, the lowest Prometheus schema, so every histogram can be
//! exported. At −4 one bucket spans 16 binary orders of magnitude, and all of `f64`
//! (2,098 binary orders, subnormals included) fits in 132 buckets, which is why
//! `max_size` is at least [`MIN_MAX_SIZE`].

use std::sync::OnceLock;

/// The OpenTelemetry default and the design's limit: 160 buckets per sign.
pub const DEFAULT_MAX_SIZE: usize = 160;

/// The fewest buckets per sign that hold every finite `f64` at scale −4.
pub const MIN_MAX_SIZE: usize = 132;

/// The lowest scale: Prometheus' lowest schema, so every histogram stays exportable.
pub const MIN_SCALE: i32 = -4;

/// The highest scale the OpenTelemetry data model allows.
pub const MAX_SCALE: i32 = 20;

/// The highest Prometheus native-histogram schema.
pub const MAX_NATIVE_SCHEMA: i32 = 8;

/// Values with `|v|` at or below this go to the zero bucket: 2^−128, as Prometheus'
/// clients default to, so noise around zero does not spread the histogram over hundreds of
/// binary orders of magnitude.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Empty buckets kept inside a span instead of starting a new one when encoding for
/// Prometheus (one span costs more bytes than two zero deltas).
pub const NATIVE_MAX_GAP: u32 = 2;

/// The highest scale whose mantissa boundaries are kept in a table (2^8 = 256 entries).
const TABLE_MAX_SCALE: i32 = 8;

/// A refused observation: NaN or an infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("NaN and infinities cannot be recorded in a histogram")]
pub struct NonFinite;

/// Per scale 1..=8: the mantissa boundaries and a lookup by the mantissa's top bits.
struct ScaleTable {
    /// `boundaries[k] = 2^(k / 2^s)`, for `k` in `0..2^s`.
    boundaries: Vec<f64>,
    /// For each of the `4 · 2^s` equal cells of `[1, 2)`: the largest `k` whose boundary is
    /// below the cell's start (or 0). Boundaries are at least `ln 2 / 2^s` apart, wider than
    /// a cell (`1 / (4 · 2^s)`), so a cell holds at most one boundary and one comparison
    /// finishes the lookup.
    cells: Vec<u16>,
    /// Bits to shift the 52-bit fraction right to get the cell.
    shift: u32,
}

/// `tables()[s]` for scales 1..=8 (index 0 unused).
fn tables() -> &'static [ScaleTable] {
    static TABLES: OnceLock<Vec<ScaleTable>> = OnceLock::new();
    TABLES.get_or_init(|| {
        (0..=TABLE_MAX_SCALE)
            .map(|s| {
                let n = 1u32 << s;
                let boundaries: Vec<f64> = (0..n)
                    .map(|k| (f64::from(k) / f64::from(n)).exp2())
                    .collect();
                let cell_bits = s as u32 + 2;
                let cells = (0..(1u64 << cell_bits))
                    .map(|c| {
                        let start = f64::from_bits((1023u64 << 52) | (c << (52 - cell_bits)));
                        let below = boundaries.partition_point(|b| *b < start);
                        u16::try_from(below.saturating_sub(1)).unwrap_or(u16::MAX)
                    })
                    .collect();
                ScaleTable {
                    boundaries,
                    cells,
                    shift: 52 - cell_bits,
                }
            })
            .collect()
    })
}

/// The mantissa boundary `2^(k / 2^scale)` for `0 <= k < 2^scale`, scale > 0.
fn boundary_mantissa(k: i64, scale: i32) -> f64 {
    if scale <= TABLE_MAX_SCALE {
        // k < 2^scale <= 256 by the caller's contract.
        tables()[scale as usize].boundaries[k as usize]
    } else {
        #[allow(clippy::cast_precision_loss)]
        let exponent = k as f64 / f64::from(1u32 << scale);
        exponent.exp2()
    }
}

/// `v = m · 2^e` with `m` in `[1, 2)`, for finite `v > 0`, subnormals included.
#[inline]
fn mantissa_exponent(v: f64) -> (f64, i64) {
    const MANTISSA: u64 = (1 << 52) - 1;
    const ONE: u64 = 1023 << 52;
    let (bits, bias) = if v.to_bits() >> 52 == 0 {
        // Subnormal: scale into the normal range, exactly (by a power of two).
        ((v * 18_446_744_073_709_551_616.0).to_bits(), 1023 + 64)
    } else {
        (v.to_bits(), 1023)
    };
    let field = ((bits >> 52) & 0x7ff) as i64;
    (f64::from_bits((bits & MANTISSA) | ONE), field - bias)
}

/// `2^e` as an `f64` (0 or +Inf outside the representable range).
fn pow2(e: i64) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else if e >= -1074 {
        f64::from_bits(1u64 << (e + 1074))
    } else {
        0.0
    }
}

/// The OpenTelemetry bucket index of finite `v > 0` at `scale`: the `i` with
/// `lower_boundary(i) < v <= lower_boundary(i + 1)`.
#[inline]
pub fn index_of(v: f64, scale: i32) -> i32 {
    let (m, e) = mantissa_exponent(v);
    let index = if scale <= 0 {
        let shift = -scale;
        // A power of two is the upper edge of the bucket below it.
        if m == 1.0 {
            (e - 1) >> shift
        } else {
            e >> shift
        }
    } else {
        let n = 1i64 << scale;
        if m == 1.0 {
            e * n - 1
        } else {
            e * n + sub_index(m, scale)
        }
    };
    // |e| <= 1075 and n <= 2^20, so |index| <= 1075 · 2^20 + 1 < 2^31: the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let index = index as i32;
    index
}

/// The largest `k` in `[0, 2^scale)` with `2^(k/2^scale) < m`, for `m` in `(1, 2)`.
#[inline]
fn sub_index(m: f64, scale: i32) -> i64 {
    let n = 1i64 << scale;
    if scale <= TABLE_MAX_SCALE {
        let table = &tables()[scale as usize];
        let cell = ((m.to_bits() & ((1 << 52) - 1)) >> table.shift) as usize;
        let k = usize::from(table.cells[cell]);
        // At most one boundary lies in the cell: one comparison, no branch to mispredict.
        let next_below = table.boundaries.get(k + 1).is_some_and(|b| *b < m);
        return k as i64 + i64::from(next_below);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let mut k = ((m.log2() * n as f64).floor() as i64).clamp(0, n - 1);
    while k > 0 && boundary_mantissa(k, scale) >= m {
        k -= 1;
    }
    while k + 1 < n && boundary_mantissa(k + 1, scale) < m {
        k += 1;
    }
    k
}

/// `base^index` at `scale`, as the `f64` that [`index_of`] compares against.
pub fn lower_boundary(index: i32, scale: i32) -> f64 {
    let index = i64::from(index);
    if scale <= 0 {
        pow2(index << -scale)
    } else {
        let n = 1i64 << scale;
        boundary_mantissa(index.rem_euclid(n), scale) * pow2(index.div_euclid(n))
    }
}

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
        Self::new(crate::registry::DEFAULT_SCALE)
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
        let mut index = index_of(magnitude, self.scale);
        let needed = if v > 0.0 {
            self.positive.needed_downscale(index, self.max_size)
        } else {
            self.negative.needed_downscale(index, self.max_size)
        };
        if needed > 0 {
            let by = needed.min((self.scale - MIN_SCALE) as u32);
            self.downscale(by);
            index >>= by;
        }
        if v > 0.0 {
            self.positive.increment(index, 1);
        } else {
            self.negative.increment(index, 1);
        }
        Ok(())
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
        self.zero_threshold = self.zero_threshold.max(other.zero_threshold);
        self.zero_count += other.zero_count;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
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

    /// The bucket bounds `(lower, upper]` of positive bucket `index`.
    pub fn bounds(&self, index: i32) -> (f64, f64) {
        (
            lower_boundary(index, self.scale),
            lower_boundary(index.saturating_add(1), self.scale),
        )
    }

    /// Estimates the `q`-quantile (0 ≤ q ≤ 1) as the value of rank `⌈q·count⌉`: the bucket
    /// holding that rank gives `2LU/(L+U)` (relative error at most `(base−1)/(base+1)`),
    /// clamped to `[min, max]`. `None` when empty or `q` is out of range.
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
        let estimate = |index: i32| {
            let (l, u) = self.bounds(index);
            if u.is_finite() {
                2.0 * l * u / (l + u)
            } else {
                l
            }
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
        let prom = |b: &Buckets| b.iter().map(|(i, n)| (i + 1, n)).collect::<Vec<_>>();
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

/// Encodes `(index, count)` buckets (ascending, any zero counts skipped) as spans and
/// deltas, keeping runs of up to `max_gap` empty buckets inside a span.
pub fn encode_spans(buckets: &[(i32, u64)], max_gap: u32) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let mut previous_count = 0i64;
    let mut next_index: Option<i32> = None;
    for &(index, count) in buckets.iter().filter(|(_, c)| *c > 0) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        match (next_index, spans.last_mut()) {
            (Some(next), Some(span)) if index - next <= max_gap as i32 => {
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

/// Decodes spans and deltas back to `(index, count)` for every bucket they list.
pub fn decode_spans(spans: &[BucketSpan], deltas: &[i64]) -> Vec<(i32, u64)> {
    crate::export::decode_buckets(spans, deltas)
}

#[cfg(test)]
mod tests;
