//! Per-series policy at the gateway: label names valid, none forbidden by the label
//! policy, no value that looks like personal data or an unbounded identifier (the same
//! heuristic as the agent and `label-lint`), and the tenant's label limits. A series that breaks one is dropped with a
//! reason (Mimir's discard reason names where they mean the same); its neighbours pass.

use edge_schema::names::is_valid_label_name;
use edge_schema::policy::LabelPolicy;
use edge_schema::proto::prometheus::TimeSeries;
use edge_schema::values::{classify, is_checked_label};

use crate::config::TenantLimits;

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

/// Label names already found fine in this request: a request repeats the same few
/// names hundreds of times, and the policy lookup normalizes each one it is asked.
#[derive(Debug, Default)]
pub struct KnownNames<'a>(Vec<&'a str>);

/// Checks one series (owned form; tests and callers outside the hot path).
pub fn check_series(
    series: &TimeSeries,
    policy: &LabelPolicy,
    limits: &TenantLimits,
) -> Result<(), Discard> {
    let labels: Vec<(&str, &str)> = series
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    check_labels(&labels, policy, limits, &mut KnownNames::default())
}

/// Checks one series' labels, remembering the names found fine in `known`.
pub fn check_labels<'a>(
    labels: &[(&'a str, &'a str)],
    policy: &LabelPolicy,
    limits: &TenantLimits,
    known: &mut KnownNames<'a>,
) -> Result<(), Discard> {
    let metric = metric_name(labels);
    let discard = |reason, message: String| Err(Discard { reason, message });
    if metric.is_empty() {
        return discard("missing_metric_name", "a series without __name__".into());
    }
    if labels.len() > limits.max_label_names {
        return discard(
            "max_label_names_per_series",
            format!(
                "series of {metric} has {} labels, more than the limit of {}",
                labels.len(),
                limits.max_label_names
            ),
        );
    }
    let mut previous: Option<&str> = None;
    for &(name, value) in labels {
        if !known.0.contains(&name) {
            if name.len() > limits.max_label_name_length {
                return discard(
                    "label_name_too_long",
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
                    "label_invalid",
                    format!("series of {metric}: {name:?} is not a valid label name"),
                );
            }
            if let Some(matched) = policy.forbidden_match(name) {
                return discard(
                    "forbidden_label",
                    format!(
                        "series of {metric}: label {name} is forbidden by the label policy (matches {matched}); player-level detail belongs in logs"
                    ),
                );
            }
            // A few dozen names at most per request: a list beats a hash set here.
            if known.0.len() < 64 {
                known.0.push(name);
            }
        }
        if value.len() > limits.max_label_value_length {
            return discard(
                "label_value_too_long",
                format!(
                    "series of {metric}: the value of label {name} is {} bytes, over the limit of {}",
                    value.len(),
                    limits.max_label_value_length
                ),
            );
        }
        if previous == Some(name) {
            return discard(
                "duplicate_label_names",
                format!("series of {metric}: label {name} twice"),
            );
        }
        if is_checked_label(name)
            && let Some(suspect) = classify(value, policy.is_host_label(name))
        {
            return discard(
                "pii_label_value",
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

/// A stable hash of a series' labels (order-independent), for the active-series count:
/// one SipHash pass over `name 0xff value 0xfe …` in name order. remote_write sends
/// labels sorted; only an unsorted set pays for a sorted copy.
pub fn labels_hash(labels: &[(&str, &str)], scratch: &mut Vec<u8>) -> u64 {
    use std::hash::Hasher;
    scratch.clear();
    let mut push = |(n, v): &(&str, &str)| {
        scratch.extend_from_slice(n.as_bytes());
        scratch.push(0xff);
        scratch.extend_from_slice(v.as_bytes());
        scratch.push(0xfe);
    };
    if labels.windows(2).all(|w| w[0].0 <= w[1].0) {
        labels.iter().for_each(&mut push);
    } else {
        let mut sorted = labels.to_vec();
        sorted.sort_unstable();
        sorted.iter().for_each(&mut push);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(scratch);
    h.finish()
}

/// [`labels_hash`] of an owned series.
pub fn series_hash(series: &TimeSeries) -> u64 {
    let labels: Vec<(&str, &str)> = series
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    labels_hash(&labels, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BUILTIN_LIMITS;
    use edge_schema::proto::prometheus::Label;

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
        let policy = LabelPolicy::shipped();
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
        let sha = "7f3c2a1e9b0d4c8f2a6e1b3d5c7f9a0b2c4e6f8a";
        assert_eq!(
            reason(&series(&[("__name__", "up"), ("build_id", sha)])),
            Ok(())
        );
    }

    #[test]
    fn hash_ignores_label_order() {
        let a = series(&[("__name__", "up"), ("region", "eu")]);
        let b = series(&[("region", "eu"), ("__name__", "up")]);
        let c = series(&[("__name__", "up"), ("region", "us")]);
        assert_eq!(series_hash(&a), series_hash(&b));
        assert_ne!(series_hash(&a), series_hash(&c));
    }
}
