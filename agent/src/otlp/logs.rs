//! OTLP log records as the logs pipeline's records, which enter it after the parse
//! stage ([`crate::logs::pipeline::LogsPipeline::offer_structured`]): the same filters,
//! shedding, enrichment, tokenization, batching and queue as a file's lines.
//!
//! | OTLP | record |
//! |---|---|
//! | `severity_number` (or `severity_text` when it is 0) | level: 1–4 trace, 5–8 debug, 9–12 info, 13–16 warn, 17–20 error, 21–24 fatal |
//! | `body` string | message |
//! | `body` map | attributes `body.<key>` (nested: `body.a.b`), message empty |
//! | `body` other | message, as compact JSON |
//! | attributes | attributes; maps flattened `a.b`, arrays `a.0`, `a.1`…, bytes in hex |
//! | `trace_id` | the record's trace id; `span_id`, `event_name` as attributes |
//! | `time_unix_nano` (else `observed_time_unix_nano`) | time |
//! | resource `service.name` | the batch's service (other resource attributes are not kept) |
//!
//! Every record gets `source=otlp`. Nesting deeper than [`MAX_DEPTH`] is kept as
//! compact JSON text (still tokenized as a whole value).

use edge_schema::proto::opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest;
use edge_schema::proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use edge_schema::proto::opentelemetry::proto::logs::v1 as l;

use super::metrics::{any_text, hex};
use crate::logs::record::{Level, LogRecord};

/// How deep nested maps and arrays are flattened.
pub const MAX_DEPTH: usize = 8;

/// The service of records whose resource names none.
pub const DEFAULT_SERVICE: &str = "otlp";

/// Records of one service.
#[derive(Debug, Default)]
pub struct ServiceRecords {
    /// `service.name` of their resource.
    pub service: String,
    /// The records.
    pub records: Vec<LogRecord>,
}

/// The level of an OTLP severity.
pub fn level(number: i32, text: &str) -> Level {
    match number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=20 => Level::Error,
        21..=24 => Level::Fatal,
        _ => Level::parse(text),
    }
}

/// Every record of a request, grouped by service; `observed_ns` stamps records that
/// carry no time of their own.
pub fn records(request: ExportLogsServiceRequest, observed_ns: i64) -> Vec<ServiceRecords> {
    let mut out: Vec<ServiceRecords> = Vec::new();
    for rl in request.resource_logs {
        let service = rl
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| any_text(kv.value.as_ref()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE.to_string());
        let at = match out.iter().position(|s| s.service == service) {
            Some(i) => i,
            None => {
                out.push(ServiceRecords {
                    service,
                    records: Vec::new(),
                });
                out.len() - 1
            }
        };
        for sl in rl.scope_logs {
            for r in sl.log_records {
                out[at].records.push(record(r, observed_ns));
            }
        }
    }
    out
}

fn nanos(n: u64) -> Option<i64> {
    (n != 0).then(|| i64::try_from(n).unwrap_or(i64::MAX))
}

/// One record.
pub fn record(r: l::LogRecord, observed_ns: i64) -> LogRecord {
    let mut attributes = Vec::with_capacity(r.attributes.len() + 2);
    let message = match r.body.and_then(|b| b.value) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::KvlistValue(kv)) => {
            for kv in kv.values {
                flatten(&format!("body.{}", kv.key), kv.value, 0, &mut attributes);
            }
            String::new()
        }
        Some(other) => any_text(Some(&AnyValue { value: Some(other) })),
    };
    for KeyValue { key, value } in r.attributes {
        flatten(&key, value, 0, &mut attributes);
    }
    if !r.span_id.is_empty() {
        attributes.push(("span_id".to_string(), hex(&r.span_id)));
    }
    if !r.event_name.is_empty() {
        attributes.push(("event.name".to_string(), r.event_name));
    }
    attributes.push(("source".to_string(), "otlp".to_string()));
    LogRecord {
        timestamp_ns: nanos(r.time_unix_nano).or_else(|| nanos(r.observed_time_unix_nano)),
        observed_ns: nanos(r.observed_time_unix_nano).unwrap_or(observed_ns),
        level: level(r.severity_number, &r.severity_text),
        message,
        trace_id: (!r.trace_id.is_empty()).then(|| hex(&r.trace_id)),
        attributes,
        parse_failed: false,
        truncated: false,
    }
}

/// Flattens `value` under `key` into `out`: maps as `key.sub`, arrays as `key.0`.
fn flatten(key: &str, value: Option<AnyValue>, depth: usize, out: &mut Vec<(String, String)>) {
    let Some(v) = value.and_then(|v| v.value) else {
        out.push((key.to_string(), String::new()));
        return;
    };
    match v {
        any_value::Value::KvlistValue(kv) if depth < MAX_DEPTH => {
            for kv in kv.values {
                flatten(&format!("{key}.{}", kv.key), kv.value, depth + 1, out);
            }
        }
        any_value::Value::ArrayValue(a) if depth < MAX_DEPTH => {
            for (i, v) in a.values.into_iter().enumerate() {
                flatten(&format!("{key}.{i}"), Some(v), depth + 1, out);
            }
        }
        any_value::Value::StringValue(s) => out.push((key.to_string(), s)),
        other => out.push((
            key.to_string(),
            any_text(Some(&AnyValue { value: Some(other) })),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::opentelemetry::proto::common::v1::{ArrayValue, KeyValueList};

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        })
    }

    #[test]
    fn severity_body_and_nested_attributes_become_a_flat_record() {
        let r = l::LogRecord {
            time_unix_nano: 5,
            severity_number: 14,
            body: s("player joined"),
            attributes: vec![
                KeyValue {
                    key: "player".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![KeyValue {
                                key: "email".into(),
                                value: s("a@b.example"),
                            }],
                        })),
                    }),
                },
                KeyValue {
                    key: "ips".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![
                                AnyValue {
                                    value: Some(any_value::Value::StringValue("10.0.0.1".into())),
                                },
                                AnyValue {
                                    value: Some(any_value::Value::IntValue(7)),
                                },
                            ],
                        })),
                    }),
                },
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![1, 2],
            ..Default::default()
        };
        let got = record(r, 9);
        assert_eq!(got.level, Level::Warn);
        assert_eq!(got.message, "player joined");
        assert_eq!(got.timestamp_ns, Some(5));
        assert_eq!(got.observed_ns, 9);
        assert_eq!(
            got.trace_id.as_deref(),
            Some("abababababababababababababababab")
        );
        let attrs: Vec<(&str, &str)> = got
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            [
                ("player.email", "a@b.example"),
                ("ips.0", "10.0.0.1"),
                ("ips.1", "7"),
                ("span_id", "0102"),
                ("source", "otlp"),
            ]
        );
        assert_eq!(level(0, "ERROR"), Level::Error);
        assert_eq!(level(0, ""), Level::Unknown);
        assert_eq!(level(24, ""), Level::Fatal);
    }
}
