//! Per-series policy at the gateway: label names valid, none forbidden by the label
//! policy, each allowed everywhere or declared for its metric in the catalog (the same
//! check the agent applies, so a client that skips the agent meets it too), no value that looks like personal data or an unbounded identifier (the same
//! heuristic as the agent and `label-lint`), and the tenant's label limits. A series that breaks one is dropped with a
//! reason (Mimir's discard reason names where they mean the same); its neighbours pass.

use edge_schema::check::Schema;
use edge_schema::names::{is_valid_label_name, is_valid_metric_name};
use edge_schema::proto::prometheus::{Histogram, TimeSeries};
use edge_schema::reasons;
use edge_schema::series::check_histogram;
use edge_schema::values::{classify, is_checked_label};
use prost::Message;

use crate::config::TenantLimits;
use crate::decode::remote_write::{ScanError, Scanned, SeriesView, label_fields};

/// Why a series is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discard {
    /// The discard reason, for `edge_gateway_discarded_samples_total{reason}`.
    pub reason: &'static str,
    /// What and where, for the answer's body.
    pub message: String,
}

/// The series' metric name, for messages.
pub fn metric_name<'a>(labels: &[(&'a str, &'a str)]) -> &'a str {
    labels
        .iter()
        .find(|(n, _)| *n == "__name__")
        .map_or("", |(_, v)| v)
}

/// Label names already found fine for every metric in this request: a request repeats
/// the same few names hundreds of times, and the policy lookup normalizes each one it is
/// asked. (A name allowed because the catalog declares it for one metric is checked
/// again for each series.)
#[derive(Debug, Default)]
pub struct KnownNames<'a>(Vec<&'a str>);

/// Checks one series (owned form; tests and callers outside the hot path).
pub fn check_series(
    series: &TimeSeries,
    schema: &Schema,
    limits: &TenantLimits,
) -> Result<(), Discard> {
    let labels: Vec<(&str, &str)> = series
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    check_labels(&labels, schema, limits, &mut KnownNames::default())
}

/// Checks one series' labels, remembering the names found fine in `known`.
pub fn check_labels<'a>(
    labels: &[(&'a str, &'a str)],
    schema: &Schema,
    limits: &TenantLimits,
    known: &mut KnownNames<'a>,
) -> Result<(), Discard> {
    let policy = schema.policy();
    let metric = metric_name(labels);
    let discard = |reason, message: String| Err(Discard { reason, message });
    if metric.is_empty() {
        return discard(
            reasons::MISSING_METRIC_NAME,
            "a series without __name__".into(),
        );
    }
    if !is_valid_metric_name(metric) {
        return discard(
            reasons::METRIC_NAME_INVALID,
            format!("{:.128} is not a valid metric name", metric.escape_debug()),
        );
    }
    check_label_count(metric, labels.len(), limits)?;
    let mut previous: Option<&str> = None;
    for &(name, value) in labels {
        if !known.0.contains(&name) {
            if name.len() > limits.max_label_name_length {
                return discard(
                    reasons::LABEL_NAME_TOO_LONG,
                    format!(
                        "series of {metric}: label name {:.64}… is {} bytes, over the limit of {}",
                        name,
                        name.len(),
                        limits.max_label_name_length
                    ),
                );
            }
            if !is_valid_label_name(name) {
                return discard(
                    reasons::LABEL_INVALID,
                    format!("series of {metric}: {name:?} is not a valid label name"),
                );
            }
            if let Some(matched) = policy.forbidden_match(name) {
                return discard(
                    reasons::FORBIDDEN_LABEL,
                    format!(
                        "series of {metric}: label {name} is forbidden by the label policy (matches {matched}); player-level detail belongs in logs"
                    ),
                );
            }
            if !policy.is_allowed_everywhere(name) {
                // Declared for this metric in the catalog, or refused.
                if schema.check_label(metric, name).is_err() {
                    return discard(
                        reasons::LABEL_NOT_ALLOWED,
                        format!(
                            "series of {metric}: label {name} is not allowed: it is not in the label policy's allow_labels and not declared for this metric in the catalog"
                        ),
                    );
                }
            } else if known.0.len() < 64 {
                // A few dozen names at most per request: a list beats a hash set here.
                known.0.push(name);
            }
        }
        if value.len() > limits.max_label_value_length {
            return discard(
                reasons::LABEL_VALUE_TOO_LONG,
                format!(
                    "series of {metric}: the value of label {name} is {} bytes, over the limit of {}",
                    value.len(),
                    limits.max_label_value_length
                ),
            );
        }
        if previous == Some(name) {
            return discard(
                reasons::DUPLICATE_LABEL_NAMES,
                format!("series of {metric}: label {name} twice"),
            );
        }
        // Sorted names make "twice" an adjacent pair, and a store refuses unsorted ones;
        // the gateway forwards the bytes as sent, so it refuses rather than sorts.
        if previous.is_some_and(|p| p > name) {
            return discard(
                reasons::LABELS_NOT_SORTED,
                format!(
                    "series of {metric}: label {name} comes after {}; remote_write labels are sorted by name",
                    previous.unwrap_or_default()
                ),
            );
        }
        if is_checked_label(name)
            && let Some(suspect) = classify(value, policy.is_host_label(name))
        {
            return discard(
                reasons::PII_LABEL_VALUE,
                format!(
                    "series of {metric}: the value of label {name} looks like {}; personal data and unbounded identifiers must never be label values",
                    suspect.describe()
                ),
            );
        }
        previous = Some(name);
    }
    Ok(())
}

/// A series of `count` labels against the tenant's `max_label_names` (asked before its
/// labels are read, so a series of a million labels is not read into memory first).
pub fn check_label_count(metric: &str, count: usize, limits: &TenantLimits) -> Result<(), Discard> {
    if count > limits.max_label_names {
        return Err(Discard {
            reason: reasons::MAX_LABEL_NAMES_PER_SERIES,
            message: format!(
                "series of {metric} has {count} labels, more than the limit of {}",
                limits.max_label_names
            ),
        });
    }
    Ok(())
}

/// The samples and histograms of one series, against what a store accepts: timestamps
/// within the tenant's window around `now_ms` (a sample dated year 3000 would move a
/// store's head into the future and get every later batch refused) and native histograms
/// consistent ([`edge_schema::series::check_histogram`]: schema, zero threshold, spans
/// against buckets, counts).
pub fn check_samples<'m>(
    scanned: &Scanned<'_>,
    series: &SeriesView,
    body: &[u8],
    metric: impl Fn() -> &'m str,
    now_ms: i64,
    limits: &TenantLimits,
) -> Result<(), Discard> {
    let window = limits.time_window();
    if let Some(newest) = series.newest_ms
        && newest > now_ms.saturating_add(window.max_future_ms)
    {
        return Err(Discard {
            reason: reasons::TOO_FAR_IN_FUTURE,
            message: format!(
                "series of {}: timestamp {newest} ms is more than {} s ahead of the gateway's clock",
                metric(),
                window.max_future_ms / 1000
            ),
        });
    }
    if let (Some(oldest), Some(max_past)) = (series.oldest_ms, window.max_past_ms)
        && oldest < now_ms.saturating_sub(max_past)
    {
        return Err(Discard {
            reason: reasons::TOO_FAR_IN_PAST,
            message: format!(
                "series of {}: timestamp {oldest} ms is more than {} s behind the gateway's clock",
                metric(),
                max_past / 1000
            ),
        });
    }
    for range in scanned.histograms_of(series) {
        let what = match Histogram::decode(&body[range.clone()]) {
            Ok(h) => check_histogram(&h).err(),
            Err(e) => Some(format!("does not decode: {e}")),
        };
        if let Some(what) = what {
            return Err(Discard {
                reason: reasons::INVALID_NATIVE_HISTOGRAM,
                message: format!("native histogram {}: {what}", metric()),
            });
        }
    }
    Ok(())
}

/// The hash of a series' labels, keyed with a secret drawn when the gateway starts.
///
/// A series whose hash is already active for its tenant, found fine under the config in
/// force, skips the label checks on its later pushes ([`crate::quota::Quotas::checked_series`]).
/// A fixed key would let a client search offline for a forbidden series that collides with
/// an allowed one; with a secret key (SipHash-1-3, a keyed pseudo-random function) it
/// could only guess online, one push at a time, against 2⁶⁴.
///
/// What is hashed is the series' label fields as they lie in the body (tags, lengths,
/// names, values): the same bytes always read as the same labels, so a series known fine
/// needs no reading at all. The same labels encoded otherwise (fields of a label in
/// another order, longer varints; no encoder here does that) hash otherwise: they are
/// checked as a new series and count as one more active series of their tenant.
#[derive(Clone, Debug, Default)]
pub struct SeriesKeys(std::collections::hash_map::RandomState);

impl SeriesKeys {
    /// The keyed hash of `series`' label fields in `body`.
    pub fn hash(&self, body: &[u8], series: &SeriesView) -> Result<u64, ScanError> {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.0.build_hasher();
        match &series.label_bytes {
            Some(run) => h.write(&body[run.clone()]),
            None => {
                for field in label_fields(body, series)? {
                    h.write(&body[field]);
                }
            }
        }
        Ok(h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BUILTIN_LIMITS;
    use edge_schema::proto::prometheus::{Label, WriteRequest};

    fn series(labels: &[(&str, &str)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reasons() {
        let policy = Schema::new(
            edge_schema::policy::LabelPolicy::shipped(),
            edge_schema::catalog::Catalog::shipped(),
        );
        let l = BUILTIN_LIMITS;
        assert_eq!(
            check_series(
                &series(&[("__name__", "up"), ("region", "eu")]),
                &policy,
                &l
            ),
            Ok(())
        );
        let reason = |s: &TimeSeries| check_series(s, &policy, &l).map_err(|d| d.reason);
        assert_eq!(
            reason(&series(&[("region", "eu")])),
            Err("missing_metric_name")
        );
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("player_id", "p1")])),
            Err("forbidden_label")
        );
        let long = "x".repeat(200);
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("region", &long)])),
            Err("label_value_too_long")
        );
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("bad-name", "v")])),
            Err("label_invalid")
        );
        let many: Vec<(String, String)> =
            (0..31).map(|i| (format!("l{i:02}"), "v".into())).collect();
        let mut s = series(&[("__name__", "up")]);
        s.labels.extend(many.iter().map(|(n, v)| Label {
            name: n.clone(),
            value: v.clone(),
        }));
        assert_eq!(reason(&s), Err("max_label_names_per_series"));
        for value in ["203.0.113.7", "val.user@example.com", "plr-123456789"] {
            assert_eq!(
                reason(&series(&[("__name__", "up"), ("shard_id", value)])),
                Err("pii_label_value"),
                "{value}"
            );
        }
        // Numbers in `le` and a build hash in a host label are not identifiers.
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("le", "250000")])),
            Ok(())
        );
        // The allowlist: a label neither allowed everywhere nor declared for its metric.
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("session_uuid", "s")])),
            Err("label_not_allowed")
        );
        assert_eq!(
            reason(&series(&[
                ("__name__", "node_cpu_seconds_total"),
                ("mode", "idle")
            ])),
            Ok(()),
            "declared for its metric"
        );
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("mode", "idle")])),
            Err("label_not_allowed"),
            "declared for another metric only"
        );
        let sha = "7f3c2a1e9b0d4c8f2a6e1b3d5c7f9a0b2c4e6f8a";
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("build_id", sha)])),
            Ok(())
        );
    }

    #[test]
    fn names_sorted_and_unique_anywhere() {
        let policy = Schema::new(
            edge_schema::policy::LabelPolicy::shipped(),
            edge_schema::catalog::Catalog::shipped(),
        );
        let l = BUILTIN_LIMITS;
        let reason = |s: &TimeSeries| check_series(s, &policy, &l).map_err(|d| d.reason);
        assert_eq!(
            reason(&series(&[("__name__", "game.tick")])),
            Err("metric_name_invalid")
        );
        assert_eq!(
            reason(&series(&[
                ("__name__", "up"),
                ("region", "eu"),
                ("az", "a")
            ])),
            Err("labels_not_sorted")
        );
        // Unsorted, the same name twice would not be adjacent: sorted, it always is.
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("az", "a"), ("az", "b")])),
            Err("duplicate_label_names")
        );
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("__name__", "down")])),
            Err("duplicate_label_names")
        );
    }

    /// Scans `request` and checks the samples of its series; one reason per series.
    fn sample_reasons(
        request: &WriteRequest,
        limits: &TenantLimits,
    ) -> Vec<Result<(), &'static str>> {
        let body = request.encode_to_vec();
        let scanned = crate::decode::remote_write::scan(&body).expect("scans");
        scanned
            .series
            .iter()
            .map(|s| check_samples(&scanned, s, &body, || "m", NOW, limits).map_err(|d| d.reason))
            .collect()
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn timestamps_outside_the_window_and_inconsistent_histograms_are_refused_alone() {
        use edge_schema::proto::prometheus::histogram::Count;
        use edge_schema::proto::prometheus::{BucketSpan, Sample};
        let at = |ts: i64| TimeSeries {
            samples: vec![Sample {
                value: 1.0,
                timestamp: ts,
            }],
            ..series(&[("__name__", "up")])
        };
        let histogram = |deltas: Vec<i64>| TimeSeries {
            histograms: vec![Histogram {
                count: Some(Count::CountInt(3)),
                schema: 3,
                positive_spans: vec![BucketSpan {
                    offset: 0,
                    length: 2,
                }],
                positive_deltas: deltas,
                timestamp: NOW,
                ..Default::default()
            }],
            ..series(&[("__name__", "h")])
        };
        let request = WriteRequest {
            timeseries: vec![
                at(NOW),
                at(32_503_680_000_000),
                at(NOW - 86_400_000),
                histogram(vec![1, 1]),
                histogram(vec![1]),
                histogram(vec![2, -3]),
            ],
            ..Default::default()
        };
        assert_eq!(
            sample_reasons(&request, &BUILTIN_LIMITS),
            [
                Ok(()),
                Err("too_far_in_future"),
                Ok(()),
                Ok(()),
                Err("invalid_native_histogram"),
                Err("invalid_native_histogram"),
            ]
        );
        let strict = TenantLimits {
            past_grace_period_ms: 3_600_000,
            ..BUILTIN_LIMITS
        };
        assert_eq!(sample_reasons(&request, &strict)[2], Err("too_far_in_past"));
    }

    #[test]
    fn the_series_hash_is_of_the_label_fields_and_depends_on_its_key() {
        use edge_schema::proto::prometheus::{Label, Sample, WriteRequest};
        let series = |labels: &[(&str, &str)], value: f64| TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample {
                value,
                timestamp: 1,
            }],
            ..Default::default()
        };
        let a = [("__name__", "up"), ("region", "eu")];
        let body = WriteRequest {
            timeseries: vec![
                series(&a, 1.0),
                series(&a, 2.0),
                series(&[("__name__", "up"), ("region", "us")], 1.0),
                series(&[("__name__", "upr"), ("egion", "eu")], 1.0),
            ],
            metadata: vec![],
        }
        .encode_to_vec();
        let scanned = crate::decode::remote_write::scan(&body).expect("scans");
        let keys = SeriesKeys::default();
        let h: Vec<u64> = scanned
            .series
            .iter()
            .map(|s| keys.hash(&body, s).expect("hash"))
            .collect();
        // Samples are not part of a series' identity; labels are, cut where they are cut.
        assert_eq!(h[0], h[1]);
        assert_ne!(h[0], h[2]);
        assert_ne!(h[0], h[3]);
        // Another gateway (another key) hashes the same series otherwise.
        let other = SeriesKeys::default();
        assert_ne!(h[0], other.hash(&body, &scanned.series[0]).expect("hash"));
    }
}
