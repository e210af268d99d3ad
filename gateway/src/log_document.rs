//! Log records as the documents the logs sink stores (one JSON object each, the
//! design's shape): `@timestamp, level, service, host, message, trace_id, tenant,
//! attributes`. From OTLP (what the agent sends) and from the JSON batch API.
//!
//! PII never reaches a sink from any path: a record that did not come tokenized from an
//! agent (its resource carries [`TOKENIZED_BY_AGENT`]) is tokenized here with the agent's
//! tokenizer (`edge-tokenize`: same detectors, same key, so the same value gets the same
//! token): the message, a trace id that is not hex, every attribute key and every string
//! value, nested ones included. An attribute whose dotted path names a configured
//! detector (`player_id`, `user.player_id`) is taken whole, as at the agent. A record a
//! drop detector matched is not stored, and counted.

use edge_schema::proto::otlp::{AnyValue, ExportLogsServiceRequest, KeyValue, any_value};
use edge_tokenize::{Tokenizer, Verdict};
use serde_json::{Map, Value};

/// The resource attribute with which the agent says its records are tokenized already.
pub const TOKENIZED_BY_AGENT: &str = "edgepipe.tokenized";

/// The documents of a batch, and what tokenization did.
#[derive(Debug, Default)]
pub struct Documents {
    /// One JSON document per record kept.
    pub docs: Vec<Vec<u8>>,
    /// Records tokenized here (they came without an agent).
    pub tokenized: u64,
    /// Records a drop detector matched: not stored.
    pub dropped: u64,
}

impl Documents {
    /// Tokenizes `doc` unless it came from an agent, then keeps it or counts it dropped.
    fn push(&mut self, mut doc: Map<String, Value>, tokenizer: Option<&Tokenizer>) {
        if let Some(t) = tokenizer {
            self.tokenized += 1;
            if scrub(t, &mut doc).is_err() {
                self.dropped += 1;
                return;
            }
        }
        self.docs.push(Value::Object(doc).to_string().into_bytes());
    }
}

/// A string leaf of an attribute tree, by dotted path, in depth-first order.
fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Array(items) => items.iter().for_each(|v| leaves(prefix, v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        _ => {}
    }
}

/// Writes the scrubbed leaves back in the same order, and scrubs every key.
fn write_back(
    t: &Tokenizer,
    value: &mut Value,
    scrubbed: &mut std::vec::IntoIter<(String, String)>,
) -> Result<(), String> {
    match value {
        Value::String(s) => {
            if let Some((_, new)) = scrubbed.next() {
                *s = new;
            }
        }
        Value::Array(items) => {
            for v in items {
                write_back(t, v, scrubbed)?;
            }
        }
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                write_back(t, &mut v, scrubbed)?;
                let key = t.scrub_text(&k)?.into_owned();
                map.insert(key, v);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Tokenizes one document in place; `Err` with the detector when a drop detector matched.
fn scrub(t: &Tokenizer, doc: &mut Map<String, Value>) -> Result<(), String> {
    let mut message = match doc.get("message") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let mut trace_id = match doc.get("trace_id") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut attributes = Vec::new();
    if let Some(a) = doc.get("attributes") {
        leaves("", a, &mut attributes);
    }
    if let Verdict::Drop { detector } =
        t.scrub_fields(&mut message, trace_id.as_mut(), &mut attributes)
    {
        return Err(detector);
    }
    doc.insert("message".into(), Value::String(message));
    if let Some(id) = trace_id {
        doc.insert("trace_id".into(), Value::String(id));
    }
    if let Some(a) = doc.get_mut("attributes") {
        write_back(t, a, &mut attributes.into_iter())?;
    }
    for key in ["service", "host"] {
        if let Some(Value::String(s)) = doc.get_mut(key) {
            *s = t.scrub_text(s)?.into_owned();
        }
    }
    Ok(())
}

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

/// The documents of an OTLP request, for `tenant`; records not tokenized by an agent are
/// tokenized with `tokenizer`.
pub fn from_otlp(req: &ExportLogsServiceRequest, tenant: &str, tokenizer: &Tokenizer) -> Documents {
    let mut docs = Documents::default();
    for rl in &req.resource_logs {
        let mut resource = rl
            .resource
            .as_ref()
            .map(|r| kvs_to_map(&r.attributes))
            .unwrap_or_default();
        let by_agent = resource.remove(TOKENIZED_BY_AGENT).is_some();
        let tokenizer = (!by_agent).then_some(tokenizer);
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
                docs.push(doc, tokenizer);
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
/// `instance`, `message`, optional `traceId` and `metadata` (an object). No agent sends
/// this API: every record is tokenized with `tokenizer`.
pub fn from_json_batch(
    body: &[u8],
    tenant: &str,
    tokenizer: &Tokenizer,
) -> Result<Documents, JsonBatchError> {
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
    let mut docs = Documents::default();
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
        docs.push(doc, Some(tokenizer));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::otlp::{LogRecord, Resource, ResourceLogs, ScopeLogs};

    fn tokenizer() -> Tokenizer {
        let key = edge_tokenize::TokenKey::from_bytes(b"gateway-test-key-0123456789").expect("key");
        let player = edge_tokenize::DetectorSpec {
            name: "player_id".into(),
            pattern: Some("p-[0-9]{6,}".into()),
            action: edge_tokenize::Action::Tokenize,
        };
        Tokenizer::new(key, &[player]).expect("tokenizer")
    }

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
        let t = tokenizer();
        let docs = from_otlp(&req, "t1", &t).docs;
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
        let t = tokenizer();
        let docs = from_json_batch(body, "studio-x", &t).expect("batch").docs;
        assert_eq!(docs.len(), 2);
        let a: Value = serde_json::from_slice(&docs[0]).expect("json");
        assert_eq!(a["level"], "info");
        assert_eq!(a["host"], "i-1");
        assert_eq!(a["attributes"]["k"], 1);
        let b: Value = serde_json::from_slice(&docs[1]).expect("json");
        assert_eq!(b["@timestamp"], "2024-05-01T12:00:00.000Z");
        let wrapped = br#"{"logs":[{"message":"x"}]}"#;
        assert_eq!(
            from_json_batch(wrapped, "t", &t)
                .expect("wrapped")
                .docs
                .len(),
            1
        );
        for bad in [
            &b"{"[..],
            b"3",
            br#"[{"level":"info"}]"#,
            br#"[{"message":1}]"#,
            br#"{"x":[]}"#,
        ] {
            assert!(
                from_json_batch(bad, "t", &t).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn records_without_an_agent_are_tokenized_everywhere_and_an_agents_are_left_alone() {
        let t = tokenizer();
        let body = br#"[{"message":"login jane@example.com from 203.0.113.9","traceId":"user-bob@example.org","metadata":{"player_id":"p-1234567","nested":{"peer":"10.1.2.3","list":["x@y.example",3]},"who@keys.example":"v"}}]"#;
        let docs = from_json_batch(body, "t", &t).expect("batch");
        assert_eq!((docs.docs.len(), docs.tokenized, docs.dropped), (1, 1, 0));
        let text = String::from_utf8(docs.docs[0].clone()).expect("utf-8");
        for pii in [
            "jane@example.com",
            "203.0.113.9",
            "bob@example.org",
            "p-1234567",
            "10.1.2.3",
            "x@y.example",
            "who@keys.example",
        ] {
            assert!(!text.contains(pii), "{pii} in {text}");
        }
        let doc: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            doc["message"],
            format!(
                "login {} from {}",
                t.token("jane@example.com"),
                t.token("203.0.113.9")
            )
        );
        // The same token the agent gives the same value under the same key.
        assert_eq!(doc["attributes"]["player_id"], t.token("p-1234567"));
        assert_eq!(doc["attributes"]["nested"]["peer"], t.token("10.1.2.3"));
        assert_eq!(doc["attributes"]["nested"]["list"][1], 3);

        let record = |marked: bool| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: if marked {
                        vec![kv("service.name", "game"), kv(TOKENIZED_BY_AGENT, "true")]
                    } else {
                        vec![kv("service.name", "game")]
                    },
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("to ann@example.net".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        };
        let plain = from_otlp(&record(false), "t", &t);
        assert_eq!(plain.tokenized, 1);
        assert!(!String::from_utf8_lossy(&plain.docs[0]).contains("ann@example.net"));
        let agent = from_otlp(&record(true), "t", &t);
        assert_eq!(agent.tokenized, 0, "an agent's record is tokenized already");
        let doc: Value = serde_json::from_slice(&agent.docs[0]).expect("json");
        assert_eq!(doc["message"], "to ann@example.net");
        assert!(
            doc["attributes"].get(TOKENIZED_BY_AGENT).is_none(),
            "the mark is not stored"
        );
    }
}
