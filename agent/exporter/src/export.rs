//! Export: the registry's snapshot as a remote_write `WriteRequest` (each exponential
//! histogram as one native histogram series, [`ExpHistogram::to_native`]) and as
//! Prometheus text exposition (classic `_bucket`/`_sum`/`_count` from
//! [`ExpHistogram::classic_buckets`], exact at the exponential bucket bounds).
//!
//! Snapshots are cumulative. Reading takes the registry's lock only to list the series;
//! the values are read from the instruments after it is released.

use edge_schema::exposition::{escape_help, escape_label_value, format_value};
use std::fmt::Write as _;

use edge_schema::proto::prometheus::{
    self as pb, BucketSpan, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
    histogram::{Count, ResetHint, ZeroCount},
    metric_metadata::MetricType,
};
use prost::Message;

use crate::histogram::{ExpHistogram, NativeHistogram};
use crate::registry::{Instrument, Kind, LabelSet, REJECT_REASONS, Registry, overflow_labels};

/// Reasons a push fails, as counted in `edge_exporter_pushes_failed_total{reason}`.
pub const PUSH_FAILURE_REASONS: [&str; 7] = [
    "timeout",
    "refused",
    "io",
    "throttled",
    "server_error",
    "rejected",
    "bad_url",
];

/// One series' value at snapshot time.
enum Value {
    Scalar(f64),
    Histogram(ExpHistogram),
}

struct SeriesSnapshot {
    name: String,
    labels: LabelSet,
    value: Value,
}

/// A family's name, help, kind and series handles, as listed under the registry's lock.
type Listed = (String, String, Kind, Vec<(LabelSet, Instrument)>);

struct FamilySnapshot {
    name: String,
    help: String,
    kind: Kind,
    series: Vec<SeriesSnapshot>,
}

impl Registry {
    pub(crate) fn count_push_failure(&self, reason: &'static str) {
        let mut failures = self
            .inner
            .push_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *failures.entry(reason).or_insert(0) += 1;
    }

    /// Snapshots pushed and dropped so far, by reason.
    pub fn push_failures(&self, reason: &str) -> u64 {
        self.inner
            .push_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<FamilySnapshot> {
        // List under the lock, read outside it.
        let listed: Vec<Listed> = {
            let state = self.lock();
            state
                .families
                .iter()
                .map(|f| {
                    let mut series: Vec<(LabelSet, Instrument)> = f
                        .series
                        .iter()
                        .map(|(labels, i)| (labels.clone(), i.clone()))
                        .collect();
                    if let Some(o) = &f.overflow {
                        series.push((overflow_labels(), o.clone()));
                    }
                    (f.name.clone(), f.help.clone(), f.kind, series)
                })
                .collect()
        };
        let mut out: Vec<FamilySnapshot> = listed
            .into_iter()
            .map(|(name, help, kind, series)| FamilySnapshot {
                series: series
                    .into_iter()
                    .map(|(labels, instrument)| SeriesSnapshot {
                        name: name.clone(),
                        labels,
                        value: match instrument {
                            // Counts above 2^53 lose precision as f64, as in every
                            // Prometheus client.
                            #[allow(clippy::cast_precision_loss)]
                            Instrument::Counter(c) => Value::Scalar(c.get() as f64),
                            Instrument::FloatCounter(c) => Value::Scalar(c.get()),
                            Instrument::Gauge(g) => Value::Scalar(g.get()),
                            Instrument::Histogram(h) => Value::Histogram(h.snapshot()),
                        },
                    })
                    .collect(),
                name,
                help,
                kind,
            })
            .collect();
        out.push(self.self_metrics());
        out.push(self.push_failure_metrics());
        out.retain(|f| !f.series.is_empty());
        out
    }

    /// `edge_series_rejected_total{reason, stage="exporter"}`, every reason, so `rate()`
    /// works from the first refusal.
    fn self_metrics(&self) -> FamilySnapshot {
        let series = REJECT_REASONS
            .iter()
            .map(|reason| SeriesSnapshot {
                name: "edge_series_rejected_total".into(),
                labels: vec![
                    ("reason".into(), (*reason).into()),
                    ("stage".into(), "exporter".into()),
                ],
                #[allow(clippy::cast_precision_loss)]
                value: Value::Scalar(self.rejected(reason) as f64),
            })
            .collect();
        FamilySnapshot {
            name: "edge_series_rejected_total".into(),
            help: "New series refused by the label policy or the budget.".into(),
            kind: Kind::Counter,
            series,
        }
    }

    fn push_failure_metrics(&self) -> FamilySnapshot {
        let series = PUSH_FAILURE_REASONS
            .iter()
            .filter_map(|reason| {
                let n = self.push_failures(reason);
                #[allow(clippy::cast_precision_loss)]
                (n > 0).then(|| SeriesSnapshot {
                    name: "edge_exporter_pushes_failed_total".into(),
                    labels: vec![("reason".into(), (*reason).into())],
                    value: Value::Scalar(n as f64),
                })
            })
            .collect();
        FamilySnapshot {
            name: "edge_exporter_pushes_failed_total".into(),
            help: "Snapshots the exporter could not push to the agent, dropped.".into(),
            kind: Kind::Counter,
            series,
        }
    }

    /// The snapshot as a remote_write request, every sample stamped `timestamp_ms`.
    pub fn write_request(&self, timestamp_ms: i64) -> WriteRequest {
        let families = self.snapshot();
        let mut request = WriteRequest::default();
        for family in &families {
            request.metadata.push(MetricMetadata {
                r#type: match family.kind {
                    Kind::Counter | Kind::FloatCounter => MetricType::Counter,
                    Kind::Gauge => MetricType::Gauge,
                    Kind::Histogram => MetricType::Histogram,
                } as i32,
                metric_family_name: family.name.clone(),
                help: family.help.clone(),
                unit: String::new(),
            });
            for series in &family.series {
                let mut ts = TimeSeries {
                    labels: proto_labels(&series.name, &series.labels),
                    ..Default::default()
                };
                match &series.value {
                    Value::Scalar(v) => ts.samples.push(Sample {
                        value: *v,
                        timestamp: timestamp_ms,
                    }),
                    Value::Histogram(h) => ts
                        .histograms
                        .push(native_to_proto(&h.to_native(), timestamp_ms)),
                }
                request.timeseries.push(ts);
            }
        }
        request
    }

    /// The snapshot in Prometheus text exposition format 0.0.4. Histograms become classic
    /// histograms whose `le` bounds are the exponential buckets' upper bounds, so the
    /// counts are exact.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for family in self.snapshot() {
            let kind = match family.kind {
                Kind::Counter | Kind::FloatCounter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            for s in &family.series {
                match &s.value {
                    Value::Scalar(v) => {
                        let _ = writeln!(
                            out,
                            "{}{} {}",
                            s.name,
                            text_labels(&s.labels, None),
                            format_value(*v)
                        );
                    }
                    Value::Histogram(h) => {
                        for (le, cumulative) in h.classic_buckets() {
                            let _ = writeln!(
                                out,
                                "{}_bucket{} {cumulative}",
                                s.name,
                                text_labels(&s.labels, Some(&format_value(le)))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{}_sum{} {}",
                            s.name,
                            text_labels(&s.labels, None),
                            format_value(h.sum())
                        );
                        let _ = writeln!(
                            out,
                            "{}_count{} {}",
                            s.name,
                            text_labels(&s.labels, None),
                            h.count()
                        );
                    }
                }
            }
        }
        out
    }
}

/// Encodes the registry's snapshot as a snappy-compressed remote_write body.
pub fn encode_write_request(
    registry: &Registry,
    timestamp_ms: i64,
) -> Result<Vec<u8>, snap::Error> {
    compress(&registry.write_request(timestamp_ms).encode_to_vec())
}

/// Snappy block compression, as remote_write requires. Fails only for inputs beyond
/// snappy's block limit (about 4 GiB), far past any snapshot.
pub fn compress(bytes: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(bytes)
}

/// `__name__` and the label set, sorted by name as remote_write requires.
fn proto_labels(name: &str, labels: &LabelSet) -> Vec<Label> {
    let mut out: Vec<Label> = Vec::with_capacity(labels.len() + 1);
    out.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    out.extend(labels.iter().map(|(k, v)| Label {
        name: k.clone(),
        value: v.clone(),
    }));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A native histogram in its protobuf form (integer counts, delta-encoded).
pub fn native_to_proto(h: &NativeHistogram, timestamp_ms: i64) -> pb::Histogram {
    let spans = |spans: &[crate::histogram::BucketSpan]| -> Vec<BucketSpan> {
        spans
            .iter()
            .map(|s| BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    pb::Histogram {
        count: Some(Count::CountInt(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(ZeroCount::ZeroCountInt(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        reset_hint: ResetHint::Unknown as i32,
        timestamp: timestamp_ms,
        ..Default::default()
    }
}

/// The inverse of [`native_to_proto`]; `None` for a histogram with float counts or
/// custom bounds, which have no integer native form.
pub fn proto_to_native(h: &pb::Histogram) -> Option<NativeHistogram> {
    let spans = |spans: &[BucketSpan]| -> Vec<crate::histogram::BucketSpan> {
        spans
            .iter()
            .map(|s| crate::histogram::BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let Some(Count::CountInt(count)) = h.count else {
        return None;
    };
    let zero_count = match h.zero_count {
        Some(ZeroCount::ZeroCountInt(n)) => n,
        None => 0,
        Some(ZeroCount::ZeroCountFloat(_)) => return None,
    };
    if !h.custom_values.is_empty() || !h.positive_counts.is_empty() || !h.negative_counts.is_empty()
    {
        return None;
    }
    Some(NativeHistogram {
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count,
        count,
        sum: h.sum,
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
    })
}

fn text_labels(labels: &LabelSet, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}
