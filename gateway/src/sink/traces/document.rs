//! Spans as the documents the `firehose` traces sink stores: one JSON object per span,
//! ready for OpenSearch like the logs' documents: `@timestamp` (the start),
//! `end_timestamp`, `duration_ms`, `trace_id`, `span_id`, `parent_span_id` (hex), `name`,
//! `kind`, `status` (`{code, message}`), `service`, `host`, `tenant`, `attributes`
//! (resource attributes, then the span's), `events`, `links`.

use edge_schema::proto::otlp::trace::{ExportTraceServiceRequest, span, status};
use serde_json::{Map, Value, json};

use crate::log_document::{kvs_to_map, rfc3339};

fn hex(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn kind_name(kind: i32) -> &'static str {
    match span::SpanKind::try_from(kind) {
        Ok(span::SpanKind::Internal) => "internal",
        Ok(span::SpanKind::Server) => "server",
        Ok(span::SpanKind::Client) => "client",
        Ok(span::SpanKind::Producer) => "producer",
        Ok(span::SpanKind::Consumer) => "consumer",
        _ => "unspecified",
    }
}

fn status_name(code: i32) -> &'static str {
    match status::StatusCode::try_from(code) {
        Ok(status::StatusCode::Ok) => "ok",
        Ok(status::StatusCode::Error) => "error",
        _ => "unset",
    }
}

/// The documents of a request, for `tenant`.
pub fn from_otlp(request: &ExportTraceServiceRequest, tenant: &str) -> Vec<Vec<u8>> {
    let mut docs = Vec::new();
    for rs in &request.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| kvs_to_map(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or(Value::Null);
        let host = resource.get("host.name").cloned().unwrap_or(Value::Null);
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let mut attributes: Map<String, Value> = resource
                    .iter()
                    .filter(|(k, _)| k.as_str() != "service.name" && k.as_str() != "host.name")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                attributes.extend(kvs_to_map(&s.attributes));
                let status = s.status.as_ref();
                let events: Vec<Value> = s
                    .events
                    .iter()
                    .map(|e| {
                        json!({
                            "@timestamp": rfc3339(e.time_unix_nano),
                            "name": e.name,
                            "attributes": kvs_to_map(&e.attributes),
                        })
                    })
                    .collect();
                let links: Vec<Value> = s
                    .links
                    .iter()
                    .map(|l| {
                        json!({
                            "trace_id": hex(&l.trace_id),
                            "span_id": hex(&l.span_id),
                            "attributes": kvs_to_map(&l.attributes),
                        })
                    })
                    .collect();
                let duration_ms =
                    s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
                let doc = json!({
                    "@timestamp": rfc3339(s.start_time_unix_nano),
                    "end_timestamp": rfc3339(s.end_time_unix_nano),
                    "duration_ms": duration_ms,
                    "trace_id": hex(&s.trace_id),
                    "span_id": hex(&s.span_id),
                    "parent_span_id": hex(&s.parent_span_id),
                    "name": s.name,
                    "kind": kind_name(s.kind),
                    "status": {
                        "code": status_name(status.map_or(0, |st| st.code)),
                        "message": status.map(|st| st.message.clone()).unwrap_or_default(),
                    },
                    "service": service,
                    "host": host,
                    "tenant": tenant,
                    "scope": ss.scope.as_ref().map(|sc| sc.name.clone()),
                    "attributes": attributes,
                    "events": events,
                    "links": links,
                });
                docs.push(doc.to_string().into_bytes());
            }
        }
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::otlp::trace::{ResourceSpans, ScopeSpans, Span, Status};
    use edge_schema::proto::otlp::{AnyValue, KeyValue, Resource, any_value};

    #[test]
    fn a_span_becomes_one_document() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "game"), kv("host.name", "gs-1")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01; 8],
                        name: "match.start".into(),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_250_000_000,
                        attributes: vec![kv("map", "dust")],
                        status: Some(Status {
                            code: 2,
                            message: "boom".into(),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let docs = from_otlp(&request, "game");
        assert_eq!(docs.len(), 1);
        let doc: Value = serde_json::from_slice(&docs[0]).expect("json");
        assert_eq!(doc["trace_id"], "abababababababababababababababab");
        assert_eq!(doc["span_id"], "0101010101010101");
        assert_eq!(doc["parent_span_id"], Value::Null);
        assert_eq!(doc["kind"], "server");
        assert_eq!(doc["duration_ms"], 250.0);
        assert_eq!(doc["status"]["code"], "error");
        assert_eq!(doc["service"], "game");
        assert_eq!(doc["host"], "gs-1");
        assert_eq!(doc["tenant"], "game");
        assert_eq!(doc["attributes"]["map"], "dust");
        assert_eq!(doc["@timestamp"], "2023-11-14T22:13:20.000Z");
    }
}
