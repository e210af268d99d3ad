//! Log records as the documents the logs sink stores (one JSON object each, the
//! design's shape): `@timestamp, level, service, host, message, trace_id, tenant,
//! attributes`. From OTLP (what the agent sends) and from the JSON batch API.

use edge_schema::proto::otlp::{AnyValue, ExportLogsServiceRequest, KeyValue, any_value};
use serde_json::{Map, Value};

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of nanoseconds since the epoch.
pub fn rfc3339(nanos: u64) -> String {
    edge_schema::calendar::rfc3339_millis(nanos)
}

fn any_to_json(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any_to_json(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(kvs_to_map(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => {
            Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
        }
        None => Value::Null,
    }
}

/// Attributes as a JSON object (nested values as JSON, bytes as hex).
pub(crate) fn kvs_to_map(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_to_json(kv.value.as_ref())))
        .collect()
}

fn level_of(severity_number: i32, text: &str) -> String {
    if !text.is_empty() {
        return text.to_ascii_lowercase();
    }
    match severity_number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "unknown",
    }
    .to_string()
}

/// The documents of an OTLP request, for `tenant`.
pub fn from_otlp(req: &ExportLogsServiceRequest, tenant: &str) -> Vec<Vec<u8>> {
    let mut docs = Vec::new();
    for rl in &req.resource_logs {
        let resource = rl
            .resource
            .as_ref()
            .map(|r| kvs_to_map(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or(Value::Null);
        let host = resource.get("host.name").cloned().unwrap_or(Value::Null);
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let mut attributes: Map<String, Value> = resource
                    .iter()
                    .filter(|(k, _)| k.as_str() != "service.name" && k.as_str() != "host.name")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                attributes.extend(kvs_to_map(&r.attributes));
                let time = if r.time_unix_nano != 0 {
                    r.time_unix_nano
                } else {
                    r.observed_time_unix_nano
                };
                let mut doc = Map::new();
                doc.insert("@timestamp".into(), Value::String(rfc3339(time)));
                doc.insert(
                    "level".into(),
                    Value::String(level_of(r.severity_number, &r.severity_text)),
                );
                doc.insert("service".into(), service.clone());
                doc.insert("host".into(), host.clone());
                let message = match any_to_json(r.body.as_ref()) {
                    Value::String(s) => Value::String(s),
                    Value::Null => Value::String(String::new()),
                    other => Value::String(other.to_string()),
                };
                doc.insert("message".into(), message);
                if r.trace_id.len() == 16 {
                    let hex: String = r.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    doc.insert("trace_id".into(), Value::String(hex));
                } else if let Some(t) = attributes.remove("trace_id") {
                    doc.insert("trace_id".into(), t);
                }
                doc.insert("tenant".into(), Value::String(tenant.to_string()));
                doc.insert("attributes".into(), Value::Object(attributes));
                docs.push(Value::Object(doc).to_string().into_bytes());
            }
        }
    }
    docs
}

/// Why a JSON batch is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonBatchError(pub String);

/// The documents of a JSON batch: an array of entries, or `{"logs": [...]}`; each entry
/// has `timestamp` (RFC 3339 text or epoch milliseconds), `level`, `service`,
/// `instance`, `message`, optional `traceId` and `metadata` (an object).
pub fn from_json_batch(body: &[u8], tenant: &str) -> Result<Vec<Vec<u8>>, JsonBatchError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| JsonBatchError(format!("not JSON: {e}")))?;
    let entries = match value {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("logs") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(JsonBatchError(
                    "an object must hold the entries under \"logs\": [...]".into(),
                ));
            }
        },
        _ => {
            return Err(JsonBatchError(
                "a JSON array of log entries, or {\"logs\": [...]}".into(),
            ));
        }
    };
    let mut docs = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Object(mut e) = entry else {
            return Err(JsonBatchError(format!("entry {i}: not an object")));
        };
        let message = match e.remove("message") {
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(JsonBatchError(format!(
                    "entry {i}: \"message\" must be a string"
                )));
            }
            None => return Err(JsonBatchError(format!("entry {i}: \"message\" is missing"))),
        };
        let timestamp = match e.remove("timestamp") {
            Some(Value::String(s)) => Value::String(s),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(ms) => Value::String(rfc3339(ms.saturating_mul(1_000_000))),
                None => {
                    return Err(JsonBatchError(format!(
                        "entry {i}: \"timestamp\" must be RFC 3339 text or epoch milliseconds"
                    )));
                }
            },
            Some(_) => {
                return Err(JsonBatchError(format!(
                    "entry {i}: \"timestamp\" must be RFC 3339 text or epoch milliseconds"
                )));
            }
            None => Value::String(rfc3339(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            )),
        };
        let text = |e: &mut Map<String, Value>, key: &str| match e.remove(key) {
            Some(Value::String(s)) => Value::String(s),
            _ => Value::Null,
        };
        let level = match text(&mut e, "level") {
            Value::String(s) => Value::String(s.to_ascii_lowercase()),
            _ => Value::String("unknown".into()),
        };
        let service = text(&mut e, "service");
        let host = text(&mut e, "instance");
        let trace_id = text(&mut e, "traceId");
        let attributes = match e.remove("metadata") {
            Some(Value::Object(m)) => m,
            Some(Value::Null) | None => Map::new(),
            Some(_) => {
                return Err(JsonBatchError(format!(
                    "entry {i}: \"metadata\" must be an object"
                )));
            }
        };
        let mut doc = Map::new();
        doc.insert("@timestamp".into(), timestamp);
        doc.insert("level".into(), level);
        doc.insert("service".into(), service);
        doc.insert("host".into(), host);
        doc.insert("message".into(), Value::String(message));
        if !trace_id.is_null() {
            doc.insert("trace_id".into(), trace_id);
        }
        doc.insert("tenant".into(), Value::String(tenant.to_string()));
        doc.insert("attributes".into(), Value::Object(attributes));
        docs.push(Value::Object(doc).to_string().into_bytes());
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::otlp::{LogRecord, Resource, ResourceLogs, ScopeLogs};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_714_564_800_500_000_000),
            "2024-05-01T12:00:00.500Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn otlp_records_become_documents() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "game"),
                        kv("host.name", "gs-1"),
                        kv("region", "eu"),
                    ],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_714_564_800_500_000_000,
                        severity_number: 13,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("slow tick".into())),
                        }),
                        attributes: vec![kv("shard", "3")],
                        trace_id: vec![0xab; 16],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        };
        let docs = from_otlp(&req, "t1");
        assert_eq!(docs.len(), 1);
        let doc: Value = serde_json::from_slice(&docs[0]).expect("json");
        assert_eq!(doc["@timestamp"], "2024-05-01T12:00:00.500Z");
        assert_eq!(doc["level"], "warn");
        assert_eq!(doc["service"], "game");
        assert_eq!(doc["host"], "gs-1");
        assert_eq!(doc["message"], "slow tick");
        assert_eq!(doc["tenant"], "t1");
        assert_eq!(doc["trace_id"], "ab".repeat(16));
        assert_eq!(doc["attributes"]["region"], "eu");
        assert_eq!(doc["attributes"]["shard"], "3");
    }

    #[test]
    fn json_batches() {
        let body = br#"[{"timestamp":"2024-05-01T12:00:00Z","level":"INFO","service":"lobby","instance":"i-1","message":"hi","traceId":"t","metadata":{"k":1}},{"timestamp":1714564800000,"message":"two"}]"#;
        let docs = from_json_batch(body, "studio-x").expect("batch");
        assert_eq!(docs.len(), 2);
        let a: Value = serde_json::from_slice(&docs[0]).expect("json");
        assert_eq!(a["level"], "info");
        assert_eq!(a["host"], "i-1");
        assert_eq!(a["attributes"]["k"], 1);
        let b: Value = serde_json::from_slice(&docs[1]).expect("json");
        assert_eq!(b["@timestamp"], "2024-05-01T12:00:00.000Z");
        let wrapped = br#"{"logs":[{"message":"x"}]}"#;
        assert_eq!(from_json_batch(wrapped, "t").expect("wrapped").len(), 1);
        for bad in [
            &b"{"[..],
            b"3",
            br#"[{"level":"info"}]"#,
            br#"[{"message":1}]"#,
            br#"{"x":[]}"#,
        ] {
            assert!(
                from_json_batch(bad, "t").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
