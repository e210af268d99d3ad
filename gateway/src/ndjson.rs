//! Committed records as JSON, one object per line: what `edge-gateway spool cat` prints
//! from a spool and what `GET /tap` streams from the commit path. Both render the bytes a
//! sink was given (a remote_write `WriteRequest`, a log document, an OTLP traces request),
//! so what an SRE reads is what was stored.
//!
//! - A metrics record becomes one object per series: `labels` (an object, `__name__`
//!   included), `samples` (`[timestamp_ms, value]` pairs), `histograms` (native histograms
//!   with each bucket's bounds and absolute count) and, when there are any, `exemplars`.
//!   A value that is not a finite number is the string `"NaN"`, `"+Inf"`, `"-Inf"` or
//!   `"stale"` (Prometheus' staleness marker).
//! - A log record is its document as committed, under `document`.
//! - A traces record becomes one object per span, under `span`: the document the
//!   `firehose` traces sink stores ([`crate::sink::traces::document`]).
//!
//! The caller adds where the record came from (`tenant`, `host`; `segment` and `offset` in
//! a spool; `signal` on a tap): [`Line`] puts those fields first.

use edge_schema::proto::otlp::trace::ExportTraceServiceRequest;
use edge_schema::proto::prometheus::histogram::{Count, ResetHint, ZeroCount};
use edge_schema::proto::prometheus::{BucketSpan, Histogram, Label, TimeSeries, WriteRequest};
use prost::Message;
use serde_json::{Value, json};

/// The bits of Prometheus' staleness marker (a NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The schema of native histograms with custom bucket bounds.
const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Why a record could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A metrics or traces record that is not the protobuf message it should be.
    #[error("not a {what}: {source}")]
    Decode {
        /// The message expected.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: prost::DecodeError,
    },
    /// A log document that is not JSON.
    #[error("a log document that is not JSON: {0}")]
    Document(#[source] serde_json::Error),
}

/// A value as JSON: a number when finite, otherwise a string naming it.
pub fn value(v: f64) -> Value {
    if v.is_finite() {
        return json!(v);
    }
    Value::String(
        if v.to_bits() == STALE_NAN_BITS {
            "stale"
        } else if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        }
        .into(),
    )
}

fn labels(labels: &[Label]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

/// The fields of one series, in order: its labels, samples, native histograms and
/// (when it has any) exemplars.
pub type Fields = Vec<(&'static str, Value)>;

/// One series' fields.
pub fn series(s: &TimeSeries) -> Fields {
    let mut out = Fields::new();
    out.push(("labels", labels(&s.labels)));
    out.push((
        "samples",
        s.samples
            .iter()
            .map(|p| json!([p.timestamp, value(p.value)]))
            .collect(),
    ));
    out.push(("histograms", s.histograms.iter().map(histogram).collect()));
    if !s.exemplars.is_empty() {
        out.push((
            "exemplars",
            s.exemplars
                .iter()
                .map(|e| {
                    json!({
                        "labels": labels(&e.labels),
                        "timestamp": e.timestamp,
                        "value": value(e.value),
                    })
                })
                .collect(),
        ));
    }
    out
}

/// The series of a metrics record (an uncompressed remote_write `WriteRequest`).
pub fn metrics_record(data: &[u8]) -> Result<Vec<Fields>, RenderError> {
    let request = WriteRequest::decode(data).map_err(|source| RenderError::Decode {
        what: "remote_write WriteRequest",
        source,
    })?;
    Ok(request.timeseries.iter().map(series).collect())
}

/// A log document as JSON text for one line: the document as committed when it is one
/// line of JSON (the gateway writes them so), otherwise re-encoded.
pub fn log_document(data: &[u8]) -> Result<Box<str>, RenderError> {
    let parsed: Value = serde_json::from_slice(data).map_err(RenderError::Document)?;
    match std::str::from_utf8(data) {
        Ok(text) if !text.contains('\n') => Ok(text.trim().into()),
        _ => Ok(parsed.to_string().into()),
    }
}

/// The spans of a traces record (an `ExportTraceServiceRequest`) as documents, for
/// `tenant`.
pub fn traces_record(data: &[u8], tenant: &str) -> Result<Vec<Value>, RenderError> {
    let request =
        ExportTraceServiceRequest::decode(data).map_err(|source| RenderError::Decode {
            what: "OTLP ExportTraceServiceRequest",
            source,
        })?;
    Ok(crate::sink::traces::document::from_otlp(&request, tenant)
        .iter()
        .filter_map(|doc| serde_json::from_slice(doc).ok())
        .collect())
}

/// A native histogram, readable: its count, sum, schema, zero bucket, and every bucket
/// with its bounds (`lower` exclusive, `upper` inclusive) and absolute count, ascending.
pub fn histogram(h: &Histogram) -> Value {
    let (count, zero_count) = match (h.count, h.zero_count) {
        (Some(Count::CountFloat(c)), z) => (
            value(c),
            value(match z {
                Some(ZeroCount::ZeroCountFloat(z)) => z,
                Some(ZeroCount::ZeroCountInt(z)) => z as f64,
                None => 0.0,
            }),
        ),
        (c, z) => (
            json!(match c {
                Some(Count::CountInt(c)) => c,
                _ => 0,
            }),
            json!(match z {
                Some(ZeroCount::ZeroCountInt(z)) => z,
                Some(ZeroCount::ZeroCountFloat(z)) => z as u64,
                None => 0,
            }),
        ),
    };
    let float = matches!(h.count, Some(Count::CountFloat(_)));
    let positive = counts(&h.positive_deltas, &h.positive_counts, float);
    let negative = counts(&h.negative_deltas, &h.negative_counts, float);
    let mut buckets: Vec<Value> = Vec::new();
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        for (i, c) in indexed(&h.positive_spans, &positive) {
            let bound = |i: i64| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| h.custom_values.get(i))
                    .copied()
            };
            let lower = if i == 0 {
                f64::NEG_INFINITY
            } else {
                bound(i - 1).unwrap_or(f64::INFINITY)
            };
            let upper = bound(i).unwrap_or(f64::INFINITY);
            buckets.push(json!({"lower": value(lower), "upper": value(upper), "count": c}));
        }
    } else {
        let width = 2f64.powi(-h.schema);
        let bound = |i: i64| (i as f64 * width).exp2();
        for (i, c) in indexed(&h.negative_spans, &negative).into_iter().rev() {
            buckets.push(
                json!({"lower": value(-bound(i)), "upper": value(-bound(i - 1)), "count": c}),
            );
        }
        for (i, c) in indexed(&h.positive_spans, &positive) {
            buckets
                .push(json!({"lower": value(bound(i - 1)), "upper": value(bound(i)), "count": c}));
        }
    }
    let reset = match ResetHint::try_from(h.reset_hint) {
        Ok(ResetHint::Yes) => "yes",
        Ok(ResetHint::No) => "no",
        Ok(ResetHint::Gauge) => "gauge",
        _ => "unknown",
    };
    json!({
        "timestamp": h.timestamp,
        "count": count,
        "sum": value(h.sum),
        "schema": h.schema,
        "zero_threshold": value(h.zero_threshold),
        "zero_count": zero_count,
        "buckets": buckets,
        "reset_hint": reset,
    })
}

/// Absolute bucket counts: integer deltas summed up, or float counts as they are.
fn counts(deltas: &[i64], floats: &[f64], float: bool) -> Vec<Value> {
    if float {
        return floats.iter().map(|c| value(*c)).collect();
    }
    let mut absolute: i64 = 0;
    deltas
        .iter()
        .map(|d| {
            absolute = absolute.saturating_add(*d);
            json!(absolute)
        })
        .collect()
}

/// Each count with its bucket index, as the spans lay them out (the first span's offset
/// is its first index; each later offset is the gap after the span before).
fn indexed(spans: &[BucketSpan], counts: &[Value]) -> Vec<(i64, Value)> {
    let mut out = Vec::with_capacity(counts.len());
    let mut counts = counts.iter();
    let mut index: i64 = 0;
    for span in spans {
        index += i64::from(span.offset);
        for _ in 0..span.length {
            let Some(c) = counts.next() else {
                return out;
            };
            out.push((index, c.clone()));
            index += 1;
        }
    }
    out
}

/// One output line: the fields saying where a record came from, then the record's own.
#[derive(Debug, Default)]
pub struct Line {
    text: String,
}

impl Line {
    /// A line opening with `field: value`.
    pub fn new(field: &str, value: impl Into<Value>) -> Line {
        Line::default().with(field, value)
    }

    /// Adds `field: value`.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Line {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        self.text.push_str(&Value::String(field.into()).to_string());
        self.text.push(':');
        self.text.push_str(&value.into().to_string());
        self
    }

    /// Adds `field` holding `json`, JSON text already (a log document as committed).
    pub fn with_raw(mut self, field: &str, json: &str) -> Line {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        self.text.push_str(&Value::String(field.into()).to_string());
        self.text.push(':');
        self.text.push_str(json);
        self
    }

    /// Adds every field of `fields`, in order.
    pub fn with_all(self, fields: Fields) -> Line {
        fields
            .into_iter()
            .fold(self, |line, (k, v)| line.with(k, v))
    }

    /// The line, with its newline.
    pub fn end(mut self) -> String {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push_str("}\n");
        self.text
    }
}

/// A metrics record's key (`tenant/host`) split into tenant and host.
pub fn tenant_and_host(key: &str) -> (&str, Option<&str>) {
    match key.split_once('/') {
        Some((tenant, host)) => (tenant, Some(host)),
        None => (key, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::prometheus::{Exemplar, Sample};

    #[test]
    fn a_series_keeps_its_labels_and_samples_and_names_values_json_has_no_number_for() {
        let s = TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "edge_test_total".into(),
                },
                Label {
                    name: "region".into(),
                    value: "eu".into(),
                },
            ],
            samples: vec![
                Sample {
                    value: 1.5,
                    timestamp: 1000,
                },
                Sample {
                    value: f64::from_bits(STALE_NAN_BITS),
                    timestamp: 2000,
                },
                Sample {
                    value: f64::INFINITY,
                    timestamp: 3000,
                },
            ],
            exemplars: vec![Exemplar {
                labels: vec![Label {
                    name: "trace_id".into(),
                    value: "abc".into(),
                }],
                value: 2.0,
                timestamp: 1500,
            }],
            histograms: Vec::new(),
        };
        let line = Line::new("tenant", "game").with_all(series(&s)).end();
        assert_eq!(
            line,
            "{\"tenant\":\"game\",\"labels\":{\"__name__\":\"edge_test_total\",\"region\":\"eu\"},\
             \"samples\":[[1000,1.5],[2000,\"stale\"],[3000,\"+Inf\"]],\"histograms\":[],\
             \"exemplars\":[{\"labels\":{\"trace_id\":\"abc\"},\"timestamp\":1500,\"value\":2.0}]}\n"
        );
        let request = WriteRequest {
            timeseries: vec![s],
            ..Default::default()
        };
        assert_eq!(
            metrics_record(&request.encode_to_vec())
                .expect("decodes")
                .len(),
            1
        );
        assert!(metrics_record(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn an_integer_native_histogram_shows_absolute_counts_and_bucket_bounds() {
        // Schema 0: buckets (2^(i-1), 2^i]. Positive buckets 1 and 2 (counts 2, 3: deltas
        // 2, +1), then a gap of one, bucket 4 (count 1: delta -2); negative bucket 0.
        let h = Histogram {
            count: Some(Count::CountInt(8)),
            sum: 20.0,
            schema: 0,
            zero_threshold: 0.001,
            zero_count: Some(ZeroCount::ZeroCountInt(1)),
            positive_spans: vec![
                BucketSpan {
                    offset: 1,
                    length: 2,
                },
                BucketSpan {
                    offset: 1,
                    length: 1,
                },
            ],
            positive_deltas: vec![2, 1, -2],
            negative_spans: vec![BucketSpan {
                offset: 0,
                length: 1,
            }],
            negative_deltas: vec![1],
            timestamp: 5000,
            ..Default::default()
        };
        let v = histogram(&h);
        assert_eq!(v["count"], 8);
        assert_eq!(v["zero_count"], 1);
        assert_eq!(v["reset_hint"], "unknown");
        let buckets: Vec<(f64, f64, i64)> = v["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| {
                (
                    b["lower"].as_f64().expect("lower"),
                    b["upper"].as_f64().expect("upper"),
                    b["count"].as_i64().expect("count"),
                )
            })
            .collect();
        assert_eq!(
            buckets,
            [
                (-1.0, -0.5, 1),
                (1.0, 2.0, 2),
                (2.0, 4.0, 3),
                (8.0, 16.0, 1)
            ]
        );
    }

    #[test]
    fn a_float_histogram_with_custom_buckets_uses_its_bounds() {
        let h = Histogram {
            count: Some(Count::CountFloat(3.0)),
            sum: 2.5,
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 3,
            }],
            positive_counts: vec![1.0, 1.5, 0.5],
            custom_values: vec![0.1, 1.0],
            ..Default::default()
        };
        let v = histogram(&h);
        assert_eq!(v["count"], 3.0);
        assert_eq!(
            v["buckets"],
            json!([
                {"lower": "-Inf", "upper": 0.1, "count": 1.0},
                {"lower": 0.1, "upper": 1.0, "count": 1.5},
                {"lower": 1.0, "upper": "+Inf", "count": 0.5},
            ])
        );
    }

    #[test]
    fn a_traces_record_is_one_span_document_each() {
        use edge_schema::proto::otlp::trace::{ResourceSpans, ScopeSpans, Span};
        let span = |name: &str| Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0x01; 8],
            name: name.into(),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span("match.start"), span("match.end")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let spans = traces_record(&request.encode_to_vec(), "game").expect("decodes");
        let names: Vec<&Value> = spans.iter().map(|s| &s["name"]).collect();
        assert_eq!(names, [&json!("match.start"), &json!("match.end")]);
        assert_eq!(spans[0]["tenant"], "game");
        assert_eq!(spans[0]["trace_id"], "abababababababababababababababab");
        assert!(traces_record(b"\xff\xff", "game").is_err());
    }

    #[test]
    fn a_log_document_is_kept_as_committed() {
        let doc = br#"{"z":1,"a":"x"}"#;
        assert_eq!(&*log_document(doc).expect("json"), r#"{"z":1,"a":"x"}"#);
        assert_eq!(
            Line::new("tenant", "t")
                .with_raw("document", &log_document(doc).expect("json"))
                .end(),
            "{\"tenant\":\"t\",\"document\":{\"z\":1,\"a\":\"x\"}}\n"
        );
        assert!(log_document(b"{not json").is_err());
    }
}
