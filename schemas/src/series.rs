//! What a store refuses in one series, checked where a series enters: at the agent's gate
//! and at the gateway, so one bad series is refused alone (its neighbours pass, the reason
//! is counted and named) and can never poison a batch, a Kinesis record or a host's queue.
//!
//! [`check`] looks at the metric name's syntax, label names (unique anywhere in the list,
//! `__name__` included; an unsorted list is sorted, as remote_write requires), the
//! timestamps of samples and histograms against a [`TimeWindow`] around now, and the
//! consistency of native histograms (schema, zero threshold, spans against buckets,
//! non-negative absolute counts, a count that covers its buckets). Label *policy* (which
//! names and values may label a metric) is [`crate::check`]'s.
//!
//! Reasons follow Mimir's discard reasons where they mean the same.

use crate::reasons;
use std::fmt;

use crate::names::is_valid_metric_name;
use crate::proto::prometheus::histogram::{Count, ZeroCount};
use crate::proto::prometheus::{BucketSpan, Histogram, TimeSeries};

/// The timestamps a store accepts, relative to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// How far ahead of now a timestamp may be (Mimir's `creation_grace_period`: 10 min).
    pub max_future_ms: i64,
    /// How far behind now a timestamp may be, or `None` for no limit (Mimir's
    /// `past_grace_period`, off by default). Set it to the store's out-of-order window.
    pub max_past_ms: Option<i64>,
}

impl Default for TimeWindow {
    fn default() -> Self {
        TimeWindow {
            max_future_ms: 10 * 60 * 1000,
            max_past_ms: None,
        }
    }
}

/// Why one series is refused.
#[derive(Clone, Debug, PartialEq)]
pub enum SeriesFault {
    /// No `__name__` label, or an empty one.
    MissingMetricName,
    /// `__name__` is not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    InvalidMetricName {
        /// The name as sent (cut to 128 bytes).
        metric: String,
    },
    /// The same label name twice.
    DuplicateLabel {
        /// The metric.
        metric: String,
        /// The repeated label.
        label: String,
    },
    /// A timestamp more than the window's `max_future_ms` ahead of now.
    TooFarInFuture {
        /// The metric.
        metric: String,
        /// The timestamp, milliseconds since the epoch.
        timestamp_ms: i64,
        /// The limit it broke.
        max_future_ms: i64,
    },
    /// A timestamp more than the window's `max_past_ms` behind now.
    TooFarInPast {
        /// The metric.
        metric: String,
        /// The timestamp, milliseconds since the epoch.
        timestamp_ms: i64,
        /// The limit it broke.
        max_past_ms: i64,
    },
    /// A native histogram the store would refuse.
    InvalidHistogram {
        /// The metric.
        metric: String,
        /// What is inconsistent.
        what: String,
    },
}

impl SeriesFault {
    /// A short, bounded reason for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            SeriesFault::MissingMetricName => reasons::MISSING_METRIC_NAME,
            SeriesFault::InvalidMetricName { .. } => reasons::METRIC_NAME_INVALID,
            SeriesFault::DuplicateLabel { .. } => reasons::DUPLICATE_LABEL_NAMES,
            SeriesFault::TooFarInFuture { .. } => reasons::TOO_FAR_IN_FUTURE,
            SeriesFault::TooFarInPast { .. } => reasons::TOO_FAR_IN_PAST,
            SeriesFault::InvalidHistogram { .. } => reasons::INVALID_NATIVE_HISTOGRAM,
        }
    }

    /// The metric the fault is about (empty when the name is missing).
    pub fn metric(&self) -> &str {
        match self {
            SeriesFault::MissingMetricName => "",
            SeriesFault::InvalidMetricName { metric }
            | SeriesFault::DuplicateLabel { metric, .. }
            | SeriesFault::TooFarInFuture { metric, .. }
            | SeriesFault::TooFarInPast { metric, .. }
            | SeriesFault::InvalidHistogram { metric, .. } => metric,
        }
    }
}

impl fmt::Display for SeriesFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesFault::MissingMetricName => write!(f, "a series without __name__"),
            SeriesFault::InvalidMetricName { metric } => {
                write!(f, "`{metric}` is not a valid metric name")
            }
            SeriesFault::DuplicateLabel { metric, label } => {
                write!(f, "series of `{metric}`: label `{label}` appears twice")
            }
            SeriesFault::TooFarInFuture {
                metric,
                timestamp_ms,
                max_future_ms,
            } => write!(
                f,
                "series of `{metric}`: timestamp {timestamp_ms} ms is more than {} s in the future",
                max_future_ms / 1000
            ),
            SeriesFault::TooFarInPast {
                metric,
                timestamp_ms,
                max_past_ms,
            } => write!(
                f,
                "series of `{metric}`: timestamp {timestamp_ms} ms is more than {} s in the past",
                max_past_ms / 1000
            ),
            SeriesFault::InvalidHistogram { metric, what } => {
                write!(f, "native histogram `{metric}`: {what}")
            }
        }
    }
}

impl std::error::Error for SeriesFault {}

/// The lowest and highest schema of an exponential native histogram.
pub const SCHEMA_RANGE: std::ops::RangeInclusive<i32> = -4..=8;

/// Checks one series, sorting its labels by name when they are not. `now_ms` is the
/// receiver's clock, milliseconds since the epoch.
pub fn check(series: &mut TimeSeries, now_ms: i64, window: &TimeWindow) -> Result<(), SeriesFault> {
    if !series.labels.windows(2).all(|w| w[0].name <= w[1].name) {
        series.labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let metric = series
        .labels
        .iter()
        .find(|l| l.name == "__name__")
        .map_or("", |l| l.value.as_str());
    if metric.is_empty() {
        return Err(SeriesFault::MissingMetricName);
    }
    if !is_valid_metric_name(metric) {
        return Err(SeriesFault::InvalidMetricName {
            metric: cut(metric, 128),
        });
    }
    if let Some(w) = series.labels.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(SeriesFault::DuplicateLabel {
            metric: metric.to_string(),
            label: cut(&w[0].name, 128),
        });
    }
    let timestamps = series
        .samples
        .iter()
        .map(|s| s.timestamp)
        .chain(series.histograms.iter().map(|h| h.timestamp));
    for timestamp_ms in timestamps {
        check_time(metric, timestamp_ms, now_ms, window)?;
    }
    for h in &series.histograms {
        check_histogram(h).map_err(|what| SeriesFault::InvalidHistogram {
            metric: metric.to_string(),
            what,
        })?;
    }
    Ok(())
}

fn check_time(
    metric: &str,
    timestamp_ms: i64,
    now_ms: i64,
    window: &TimeWindow,
) -> Result<(), SeriesFault> {
    if timestamp_ms > now_ms.saturating_add(window.max_future_ms) {
        return Err(SeriesFault::TooFarInFuture {
            metric: metric.to_string(),
            timestamp_ms,
            max_future_ms: window.max_future_ms,
        });
    }
    if let Some(max_past_ms) = window.max_past_ms
        && timestamp_ms < now_ms.saturating_sub(max_past_ms)
    {
        return Err(SeriesFault::TooFarInPast {
            metric: metric.to_string(),
            timestamp_ms,
            max_past_ms,
        });
    }
    Ok(())
}

/// Whether a native histogram is one a store accepts; the error says what is wrong.
pub fn check_histogram(h: &Histogram) -> Result<(), String> {
    if !SCHEMA_RANGE.contains(&h.schema) {
        return Err(format!(
            "schema {} is outside {}..={}",
            h.schema,
            SCHEMA_RANGE.start(),
            SCHEMA_RANGE.end()
        ));
    }
    if !h.zero_threshold.is_finite() || h.zero_threshold < 0.0 {
        return Err(format!(
            "zero threshold {} is not a finite non-negative number",
            h.zero_threshold
        ));
    }
    let has_float_buckets = !h.positive_counts.is_empty() || !h.negative_counts.is_empty();
    match h.count {
        Some(Count::CountFloat(count)) => check_float_histogram(h, count),
        Some(Count::CountInt(_)) if has_float_buckets => {
            Err("an integer histogram carries float bucket counts".into())
        }
        Some(Count::CountInt(count)) => check_int_histogram(h, count),
        None if has_float_buckets => check_float_histogram(h, 0.0),
        None => check_int_histogram(h, 0),
    }
}

fn check_float_histogram(h: &Histogram, count: f64) -> Result<(), String> {
    if !h.positive_deltas.is_empty() || !h.negative_deltas.is_empty() {
        return Err("a float histogram carries integer bucket deltas".into());
    }
    let zero = match h.zero_count {
        Some(ZeroCount::ZeroCountFloat(z)) => z,
        Some(ZeroCount::ZeroCountInt(z)) => z as f64,
        None => 0.0,
    };
    if zero.is_nan() || zero < 0.0 {
        return Err(format!("zero count {zero} is negative"));
    }
    let positive = float_buckets("positive", &h.positive_spans, &h.positive_counts)?;
    let negative = float_buckets("negative", &h.negative_spans, &h.negative_counts)?;
    let buckets = zero + positive + negative;
    // Float counts: allow the rounding of a sum of many buckets. NaN is refused too.
    if count.is_nan() || count < buckets * (1.0 - 1e-9) {
        return Err(format!(
            "count {count} is less than the zero bucket and buckets together ({buckets})"
        ));
    }
    Ok(())
}

fn check_int_histogram(h: &Histogram, count: u64) -> Result<(), String> {
    let zero = match h.zero_count {
        Some(ZeroCount::ZeroCountInt(z)) => z,
        Some(ZeroCount::ZeroCountFloat(_)) => {
            return Err("an integer histogram carries a float zero count".into());
        }
        None => 0,
    };
    let positive = int_buckets("positive", &h.positive_spans, &h.positive_deltas)?;
    let negative = int_buckets("negative", &h.negative_spans, &h.negative_deltas)?;
    let buckets = u128::from(zero) + positive + negative;
    if u128::from(count) < buckets {
        return Err(format!(
            "count {count} is less than the zero bucket and buckets together ({buckets})"
        ));
    }
    Ok(())
}

/// The spans' lengths against the bucket count, and offsets after the first not negative.
fn check_spans(side: &str, spans: &[BucketSpan], buckets: usize) -> Result<(), String> {
    if let Some((i, span)) = spans.iter().enumerate().skip(1).find(|(_, s)| s.offset < 0) {
        return Err(format!(
            "{side} span {i} has a negative offset ({})",
            span.offset
        ));
    }
    let lengths: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if lengths != buckets as u64 {
        return Err(format!(
            "{side} spans cover {lengths} buckets but {buckets} are sent"
        ));
    }
    Ok(())
}

/// The sum of absolute bucket counts, each of which must not be negative.
fn int_buckets(side: &str, spans: &[BucketSpan], deltas: &[i64]) -> Result<u128, String> {
    check_spans(side, spans, deltas.len())?;
    let mut absolute: i128 = 0;
    let mut sum: u128 = 0;
    for (i, delta) in deltas.iter().enumerate() {
        absolute += i128::from(*delta);
        if absolute < 0 {
            return Err(format!(
                "{side} bucket {i} has a negative count ({absolute})"
            ));
        }
        sum += absolute as u128;
    }
    Ok(sum)
}

fn float_buckets(side: &str, spans: &[BucketSpan], counts: &[f64]) -> Result<f64, String> {
    check_spans(side, spans, counts.len())?;
    let mut sum = 0.0;
    for (i, count) in counts.iter().enumerate() {
        if count.is_nan() || *count < 0.0 {
            return Err(format!("{side} bucket {i} has a negative count ({count})"));
        }
        sum += count;
    }
    Ok(sum)
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests;
