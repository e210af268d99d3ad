//! What an OTLP body will cost in memory once decoded, known before it is: the wire
//! format is walked (no allocation) and every message element that becomes a struct of
//! its own is counted at its size.
//!
//! A body's strings are at most its own size, but its structs are not: an empty
//! `ResourceLogs` is two bytes on the wire and 80 in memory, so 16 MiB of them (a 1.4 KB
//! zstd body) decode to 640 MiB. The budget of decompressed bytes in flight reserves
//! this cost before the decode, so such a body is a 503 (or, past the whole budget, a
//! 413) instead of the gateway's memory.

use std::mem::size_of;

use edge_schema::proto::otlp::trace::{ResourceSpans, ScopeSpans, Span, span};
use edge_schema::proto::otlp::{AnyValue, KeyValue, LogRecord, ResourceLogs, ScopeLogs};

/// Beside each log record or span: the document or sink record made from it (its
/// strings are counted with the body's size).
pub const PER_ITEM: u64 = 256;

/// How deep messages may nest (prost's own limit).
const DEPTH: u32 = 100;

/// The message types whose fields are walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    TracesRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Resource,
    Scope,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// A message field walked into: its kind, and what each element costs (zero for a
/// singular field, held inline in its parent).
fn child(kind: Kind, field: u64) -> Option<(Kind, u64)> {
    let size = |n: usize| n as u64;
    let repeated_kv = Some((Kind::KeyValue, size(size_of::<KeyValue>())));
    match (kind, field) {
        (Kind::LogsRequest, 1) => Some((Kind::ResourceLogs, size(size_of::<ResourceLogs>()))),
        (Kind::ResourceLogs, 1) | (Kind::ResourceSpans, 1) => Some((Kind::Resource, 0)),
        (Kind::ResourceLogs, 2) => Some((Kind::ScopeLogs, size(size_of::<ScopeLogs>()))),
        (Kind::ScopeLogs, 1) | (Kind::ScopeSpans, 1) => Some((Kind::Scope, 0)),
        (Kind::ScopeLogs, 2) => Some((Kind::LogRecord, size(size_of::<LogRecord>()) + PER_ITEM)),
        (Kind::LogRecord, 5) | (Kind::KeyValue, 2) => Some((Kind::AnyValue, 0)),
        (Kind::LogRecord, 6) => repeated_kv,
        (Kind::TracesRequest, 1) => Some((Kind::ResourceSpans, size(size_of::<ResourceSpans>()))),
        (Kind::ResourceSpans, 2) => Some((Kind::ScopeSpans, size(size_of::<ScopeSpans>()))),
        (Kind::ScopeSpans, 2) => Some((Kind::Span, size(size_of::<Span>()) + PER_ITEM)),
        (Kind::Span, 9) | (Kind::Event, 3) | (Kind::Link, 4) => repeated_kv,
        (Kind::Span, 11) => Some((Kind::Event, size(size_of::<span::Event>()))),
        (Kind::Span, 13) => Some((Kind::Link, size(size_of::<span::Link>()))),
        (Kind::Resource, 1) | (Kind::Scope, 3) | (Kind::KeyValueList, 1) => repeated_kv,
        (Kind::AnyValue, 5) => Some((Kind::ArrayValue, 0)),
        (Kind::AnyValue, 6) => Some((Kind::KeyValueList, 0)),
        (Kind::ArrayValue, 1) => Some((Kind::AnyValue, size(size_of::<AnyValue>()))),
        _ => None,
    }
}

/// Why a body could not be walked: it is not a protobuf message.
#[derive(Debug, PartialEq, Eq)]
pub struct NotProtobuf;

fn varint(buf: &mut &[u8]) -> Result<u64, NotProtobuf> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or(NotProtobuf)?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(NotProtobuf)
}

fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], NotProtobuf> {
    let n = usize::try_from(n).map_err(|_| NotProtobuf)?;
    if n > buf.len() {
        return Err(NotProtobuf);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Walks the fields of one message of `kind` (until `end_group` for a group), adding
/// the cost of every element that becomes a struct. Vectors grow by doubling, so each
/// element is counted twice.
fn walk(
    kind: Option<Kind>,
    buf: &mut &[u8],
    depth: u32,
    end_group: Option<u64>,
) -> Result<u64, NotProtobuf> {
    if depth > DEPTH {
        return Err(NotProtobuf);
    }
    let mut cost = 0u64;
    while !buf.is_empty() {
        let key = varint(buf)?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err(NotProtobuf);
        }
        match wire {
            0 => {
                varint(buf)?;
            }
            1 => {
                take(buf, 8)?;
            }
            5 => {
                take(buf, 4)?;
            }
            2 => {
                let len = varint(buf)?;
                let mut inner = take(buf, len)?;
                if let Some((k, each)) = kind.and_then(|k| child(k, field)) {
                    cost = cost.saturating_add(2 * each).saturating_add(walk(
                        Some(k),
                        &mut inner,
                        depth + 1,
                        None,
                    )?);
                }
            }
            3 => {
                walk(None, buf, depth + 1, Some(field))?;
            }
            4 if end_group == Some(field) => return Ok(cost),
            _ => return Err(NotProtobuf),
        }
    }
    match end_group {
        Some(_) => Err(NotProtobuf),
        None => Ok(cost),
    }
}

/// The struct memory an `ExportLogsServiceRequest` body decodes into, and the documents
/// made from its records.
pub fn logs(raw: &[u8]) -> Result<u64, NotProtobuf> {
    walk(Some(Kind::LogsRequest), &mut &raw[..], 0, None)
}

/// The struct memory an `ExportTraceServiceRequest` body decodes into, and the sink
/// records made from its spans.
pub fn traces(raw: &[u8]) -> Result<u64, NotProtobuf> {
    walk(Some(Kind::TracesRequest), &mut &raw[..], 0, None)
}

/// What one JSON value costs once parsed: a `serde_json::Value` (32 bytes), twice for
/// the doubling of the vector or map it sits in.
pub const PER_JSON_VALUE: u64 = 64;

/// The memory a JSON log batch parses into, and the documents made from its objects:
/// every value (counted by the separators and openings outside strings) at
/// [`PER_JSON_VALUE`], every object at [`PER_ITEM`] more. `[0,0,0,…]` is 16 times its
/// size once parsed; this says so before it is parsed.
pub fn json(raw: &[u8]) -> u64 {
    let (mut values, mut objects) = (1u64, 0u64);
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => {
                objects += 1;
                values += 1;
            }
            b'[' | b',' | b':' => values += 1,
            _ => {}
        }
    }
    values
        .saturating_mul(PER_JSON_VALUE)
        .saturating_add(objects.saturating_mul(PER_ITEM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::otlp::ExportLogsServiceRequest;
    use edge_schema::proto::otlp::trace::ExportTraceServiceRequest;
    use prost::Message;

    #[test]
    fn empty_messages_cost_their_structs_and_strings_cost_nothing_here() {
        // 1,000 empty ResourceLogs: two bytes each on the wire.
        let raw = [0x0au8, 0x00].repeat(1000);
        assert_eq!(logs(&raw), Ok(2000 * size_of::<ResourceLogs>() as u64));
        let decoded = ExportLogsServiceRequest::decode(raw.as_slice()).expect("decodes");
        assert_eq!(decoded.resource_logs.len(), 1000);
        // A record with a long body and two attributes.
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(AnyValue {
                            value: Some(edge_schema::proto::otlp::any_value::Value::StringValue(
                                "x".repeat(10_000),
                            )),
                        }),
                        attributes: vec![KeyValue::default(), KeyValue::default()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let per = |n: usize| 2 * n as u64;
        assert_eq!(
            logs(&request.encode_to_vec()),
            Ok(per(size_of::<ResourceLogs>())
                + per(size_of::<ScopeLogs>())
                + per(size_of::<LogRecord>())
                + 2 * PER_ITEM
                + 2 * per(size_of::<KeyValue>()))
        );
        // Spans, their events and links.
        let traces_request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        events: vec![span::Event::default(); 3],
                        links: vec![span::Link::default()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let cost = traces(&traces_request.encode_to_vec()).expect("walks");
        assert!(cost >= per(size_of::<Span>()) + 3 * per(size_of::<span::Event>()));
    }

    #[test]
    fn json_values_are_counted_outside_strings() {
        assert_eq!(json(b"[0,0,0]"), 4 * PER_JSON_VALUE);
        assert_eq!(
            json(br#"[{"message":"a,b:[{\"}"}]"#),
            4 * PER_JSON_VALUE + PER_ITEM
        );
        let zeros = [b"0,".as_slice()].repeat(1000).concat();
        assert!(json(&zeros) >= 1000 * PER_JSON_VALUE);
    }

    #[test]
    fn what_is_not_protobuf_is_refused() {
        assert_eq!(logs(&[0x0a, 0x05, 0x00]), Err(NotProtobuf));
        assert_eq!(logs(&[0x00]), Err(NotProtobuf));
        assert_eq!(logs(&[0xff; 11]), Err(NotProtobuf));
        assert_eq!(logs(&[0x0b]), Err(NotProtobuf), "a group never ended");
        // An unknown field that is a group is skipped, as prost skips it.
        assert_eq!(logs(&[0x4b, 0x50, 0x01, 0x4c]), Ok(0));
        // Deeper than prost goes: values in arrays in values, 120 deep.
        let mut deep = Vec::new();
        for _ in 0..120 {
            let mut array = vec![0x0a];
            prost::encoding::encode_varint(deep.len() as u64, &mut array);
            array.extend_from_slice(&deep);
            let mut value = vec![0x2a];
            prost::encoding::encode_varint(array.len() as u64, &mut value);
            value.extend_from_slice(&array);
            deep = value;
        }
        assert_eq!(
            walk(Some(Kind::AnyValue), &mut &deep[..], 0, None),
            Err(NotProtobuf)
        );
        assert!(
            AnyValue::decode(deep.as_slice()).is_err(),
            "prost refuses it too"
        );
    }
}
