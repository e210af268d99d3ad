//! Batches of log records as OTLP/HTTP bodies (`ExportLogsServiceRequest`,
//! protobuf, zstd), one batch per priority class so the disk queue can shed verbose logs
//! before warnings.
//!
//! A batch closes at [`BatchLimits`]: bytes (estimated from the records' text), records,
//! or age (default 1 s). Records keep their source's `service`; each service becomes one
//! `ResourceLogs` whose resource carries `service.name`, `host.name` and the host
//! labels.

use std::time::{Duration, Instant};

use super::record::{Level, LogRecord};
use crate::queue::Class;

/// When a batch closes.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Encoded (uncompressed) bytes.
    pub max_bytes: usize,
    /// Records.
    pub max_records: usize,
    /// Age of the oldest record.
    pub max_age: Duration,
}

/// The design's defaults: 1 s, and well under the gateway's body limit.
pub const DEFAULT_LIMITS: BatchLimits = BatchLimits {
    max_bytes: 1 << 20,
    max_records: 8192,
    max_age: Duration::from_secs(1),
};

/// zstd level: 1 is the fast end, with most of the ratio on repetitive log text.
pub const ZSTD_LEVEL: i32 = 1;

/// The queue class a record goes to: debug and trace first to be shed, then info.
pub fn class_of(level: Level) -> Class {
    match level {
        Level::Trace | Level::Debug => Class::LogsDebug,
        Level::Info | Level::Unknown => Class::LogsInfo,
        Level::Warn | Level::Error | Level::Fatal => Class::LogsWarn,
    }
}

/// OTLP `SeverityNumber`: the first of each level's four values.
fn severity(level: Level) -> u64 {
    match level {
        Level::Unknown => 0,
        Level::Trace => 1,
        Level::Debug => 5,
        Level::Info => 9,
        Level::Warn => 13,
        Level::Error => 17,
        Level::Fatal => 21,
    }
}

// Protobuf, by hand: the records are encoded as they arrive, straight into the open
// batch's buffer, so no per-record message tree is built, measured and dropped (that
// was a third of the logs path's CPU, most of it in the allocator).

const LEN: u8 = 2;
const I64: u8 = 1;
const VARINT: u8 = 0;

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u8, wire: u8) {
    // Every field number used here is below 16: one byte.
    out.push((field << 3) | wire);
}

fn put_len_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Bytes of a length-delimited field holding `len` bytes.
fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// An `AnyValue` holding `text` as `string_value`, as field `field`.
fn put_string_value(out: &mut Vec<u8>, field: u8, text: &str) {
    put_tag(out, field, LEN);
    put_varint(out, len_field_size(text.len()) as u64);
    put_len_field(out, 1, text.as_bytes());
}

/// A `KeyValue` with a string value, as field `field`.
fn put_key_value(out: &mut Vec<u8>, field: u8, key: &str, value: &str) {
    let inner = len_field_size(key.len()) + len_field_size(len_field_size(value.len()));
    put_tag(out, field, LEN);
    put_varint(out, inner as u64);
    put_len_field(out, 1, key.as_bytes());
    put_string_value(out, 2, value);
}

/// One record's `LogRecord` message (without its own tag and length) into `out`.
fn encode_record(out: &mut Vec<u8>, record: &LogRecord) {
    let time = record.timestamp_ns.unwrap_or(record.observed_ns).max(0) as u64;
    if time != 0 {
        put_tag(out, 1, I64);
        out.extend_from_slice(&time.to_le_bytes());
    }
    let severity = severity(record.level);
    if severity != 0 {
        put_tag(out, 2, VARINT);
        put_varint(out, severity);
    }
    put_len_field(out, 3, record.level.name().as_bytes());
    put_string_value(out, 5, &record.message);
    for (k, v) in &record.attributes {
        put_key_value(out, 6, k, v);
    }
    let mut trace_id = None;
    if let Some(t) = &record.trace_id {
        match decode_hex_16(t) {
            Some(bytes) => trace_id = Some(bytes),
            None => put_key_value(out, 6, "trace_id", t),
        }
    }
    if record.parse_failed {
        put_key_value(out, 6, "edge.parse_failed", "true");
    }
    if record.truncated {
        put_key_value(out, 6, "edge.truncated", "true");
    }
    if let Some(bytes) = trace_id {
        put_len_field(out, 9, &bytes);
    }
    let observed = record.observed_ns.max(0) as u64;
    if observed != 0 {
        put_tag(out, 11, I64);
        out.extend_from_slice(&observed.to_le_bytes());
    }
}

/// The most services one batcher names (file sources and OTLP services together).
pub const MAX_SERVICES: usize = 64;

/// A service's `Resource` (service.name, host.name, host labels), as field 1 of
/// `ResourceLogs`.
fn encode_resource(service: &str, host_name: &str, host_labels: &[(String, String)]) -> Vec<u8> {
    let mut attrs = Vec::new();
    put_key_value(&mut attrs, 1, "service.name", service);
    put_key_value(&mut attrs, 1, "host.name", host_name);
    // Tells the gateway these records are tokenized already (it tokenizes those that
    // arrive without an agent).
    put_key_value(&mut attrs, 1, TOKENIZED_MARK, "true");
    for (k, v) in host_labels {
        put_key_value(&mut attrs, 1, k, v);
    }
    let mut resource = Vec::new();
    put_len_field(&mut resource, 1, &attrs);
    resource
}

#[derive(Debug, Default)]
struct Open {
    /// Encoded `log_records` fields (tag, length, `LogRecord`) by service index.
    records: Vec<Vec<u8>>,
    count: usize,
    bytes: usize,
    since: Option<Instant>,
}

/// A closed batch: the class it is queued under, the body, and its record count.
#[derive(Debug)]
pub struct Closed {
    /// Queue class.
    pub class: Class,
    /// zstd-compressed `ExportLogsServiceRequest`.
    pub body: Vec<u8>,
    /// Records in it.
    pub records: usize,
}

/// Open batches, one per class.
pub struct Batcher {
    limits: BatchLimits,
    /// Each service's encoded `Resource` (service.name, host.name, host labels), as
    /// field 1 of `ResourceLogs`.
    resources: Vec<Vec<u8>>,
    /// Each service's name, in the order of `resources`.
    services: Vec<String>,
    /// The host name and labels, for services added later.
    host: (String, Vec<(String, String)>),
    /// The encoded `InstrumentationScope`, as field 1 of `ScopeLogs`.
    scope: Vec<u8>,
    open: [Open; 3],
    /// Scratch: one record, then one request, reused.
    record: Vec<u8>,
    request: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("limits", &self.limits)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

fn slot(class: Class) -> usize {
    match class {
        Class::LogsDebug => 0,
        Class::LogsInfo => 1,
        _ => 2,
    }
}

/// The resource attribute that says an agent tokenized these records (the gateway's
/// `log_document::TOKENIZED_BY_AGENT`).
pub const TOKENIZED_MARK: &str = "edgepipe.tokenized";

const SLOT_CLASSES: [Class; 3] = [Class::LogsDebug, Class::LogsInfo, Class::LogsWarn];

impl Batcher {
    /// A batcher for `services` (indexes into it name a record's service), with the
    /// host name and labels every resource carries.
    pub fn new(
        limits: BatchLimits,
        services: &[String],
        host_name: &str,
        host_labels: &[(String, String)],
    ) -> Self {
        let resources = services
            .iter()
            .map(|service| encode_resource(service, host_name, host_labels))
            .collect();
        let mut scope_fields = Vec::new();
        put_len_field(&mut scope_fields, 1, b"edge-agent");
        put_len_field(&mut scope_fields, 2, env!("CARGO_PKG_VERSION").as_bytes());
        let mut scope = Vec::new();
        put_len_field(&mut scope, 1, &scope_fields);
        let compressor = match zstd::bulk::Compressor::new(ZSTD_LEVEL) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no reusable zstd context; one is made per batch");
                None
            }
        };
        Batcher {
            limits,
            open: Default::default(),
            resources,
            services: services.to_vec(),
            host: (host_name.to_string(), host_labels.to_vec()),
            scope,
            record: Vec::new(),
            request: Vec::new(),
            compressor,
        }
    }

    /// The index of service `name`, added if it is new (OTLP records name their own).
    /// Past [`MAX_SERVICES`] services, records of a new one go under the last added.
    pub fn service(&mut self, name: &str) -> usize {
        if let Some(i) = self.services.iter().position(|s| s == name) {
            return i;
        }
        if self.services.len() >= MAX_SERVICES {
            return self.services.len() - 1;
        }
        self.resources
            .push(encode_resource(name, &self.host.0, &self.host.1));
        self.services.push(name.to_string());
        self.services.len() - 1
    }

    /// The name of service `i`.
    pub fn service_name(&self, i: usize) -> Option<&str> {
        self.services.get(i).map(String::as_str)
    }

    /// Adds a record of service `service`; returns the batch it closed, if any.
    pub fn add(&mut self, service: usize, record: &LogRecord, now: Instant) -> Option<Closed> {
        let i = slot(class_of(record.level));
        self.record.clear();
        encode_record(&mut self.record, record);
        let open = &mut self.open[i];
        if open.records.len() < self.resources.len() {
            open.records.resize_with(self.resources.len(), Vec::new);
        }
        let Some(buffer) = open.records.get_mut(service) else {
            tracing::error!(service, "a log record names no known service; dropped");
            return None;
        };
        let before = buffer.len();
        put_len_field(buffer, 2, &self.record);
        open.bytes += buffer.len() - before;
        open.count += 1;
        open.since.get_or_insert(now);
        if open.count >= self.limits.max_records || open.bytes >= self.limits.max_bytes {
            return self.close(i);
        }
        None
    }

    /// Batches whose oldest record has waited `max_age`.
    pub fn due(&mut self, now: Instant) -> Vec<Closed> {
        (0..3)
            .filter(|&i| {
                self.open[i]
                    .since
                    .is_some_and(|s| now.saturating_duration_since(s) >= self.limits.max_age)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|i| self.close(i))
            .collect()
    }

    /// Every open batch, now (shutdown).
    pub fn flush(&mut self) -> Vec<Closed> {
        (0..3).filter_map(|i| self.close(i)).collect()
    }

    /// Whether any record waits.
    pub fn is_empty(&self) -> bool {
        self.open.iter().all(|o| o.count == 0)
    }

    fn close(&mut self, i: usize) -> Option<Closed> {
        let open = &mut self.open[i];
        if open.count == 0 {
            return None;
        }
        let records = open.count;
        open.count = 0;
        open.bytes = 0;
        open.since = None;
        let request = &mut self.request;
        request.clear();
        for (service, encoded) in open.records.iter_mut().enumerate() {
            if encoded.is_empty() {
                continue;
            }
            let resource = &self.resources[service];
            let scope_logs = self.scope.len() + encoded.len();
            let resource_logs = resource.len() + len_field_size(scope_logs);
            put_tag(request, 1, LEN);
            put_varint(request, resource_logs as u64);
            request.extend_from_slice(resource);
            put_tag(request, 2, LEN);
            put_varint(request, scope_logs as u64);
            request.extend_from_slice(&self.scope);
            request.extend_from_slice(encoded);
            encoded.clear();
            // Kept for the next batch (regrowing it costs copies and wakes the
            // allocator's consolidation), unless one huge record blew it up.
            if encoded.capacity() > 2 * self.limits.max_bytes {
                encoded.shrink_to(self.limits.max_bytes);
            }
        }
        let compressed = match &mut self.compressor {
            Some(c) => c.compress(request),
            None => zstd::bulk::compress(request, ZSTD_LEVEL),
        };
        if request.capacity() > 2 * self.limits.max_bytes {
            request.shrink_to(self.limits.max_bytes);
        }
        match compressed {
            Ok(body) => Some(Closed {
                class: SLOT_CLASSES[i],
                body,
                records,
            }),
            Err(e) => {
                tracing::error!(error = %e, records, "cannot compress a log batch; it is lost");
                None
            }
        }
    }
}

/// A W3C trace id: 32 hex digits → 16 bytes.
fn decode_hex_16(text: &str) -> Option<[u8; 16]> {
    let t = text.trim().as_bytes();
    if t.len() != 32 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (nibble(t[2 * i])? << 4) | nibble(t[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::otlp::{AnyValue, ExportLogsServiceRequest, KeyValue, any_value};
    use prost::Message;

    fn record(level: Level, message: &str) -> LogRecord {
        LogRecord {
            level,
            message: message.into(),
            observed_ns: 1_700_000_000_000_000_000,
            ..Default::default()
        }
    }

    fn decode(body: &[u8]) -> ExportLogsServiceRequest {
        let raw = zstd::bulk::decompress(body, 64 << 20).expect("zstd");
        ExportLogsServiceRequest::decode(raw.as_slice()).expect("OTLP")
    }

    fn text(value: &Option<AnyValue>) -> String {
        match value.as_ref().and_then(|v| v.value.clone()) {
            Some(any_value::Value::StringValue(s)) => s,
            other => panic!("not a string value: {other:?}"),
        }
    }

    fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| text(&kv.value))
    }

    fn one_record(r: &LogRecord) -> edge_schema::proto::otlp::LogRecord {
        let mut b = Batcher::new(DEFAULT_LIMITS, &["game".into()], "gs-1", &[]);
        b.add(0, r, Instant::now());
        let closed = b.flush();
        assert_eq!(closed.len(), 1);
        let mut req = decode(&closed[0].body);
        req.resource_logs[0].scope_logs[0].log_records.remove(0)
    }

    #[test]
    fn batches_close_by_records_and_by_age_one_per_class() {
        let limits = BatchLimits {
            max_bytes: 1 << 20,
            max_records: 3,
            max_age: Duration::from_secs(1),
        };
        let host = vec![("region".to_string(), "eu-west-1".to_string())];
        let mut b = Batcher::new(limits, &["game".into(), "lobby".into()], "gs-1", &host);
        let t0 = Instant::now();
        assert!(b.add(0, &record(Level::Debug, "d1"), t0).is_none());
        assert!(b.add(1, &record(Level::Info, "i1"), t0).is_none());
        assert!(b.add(0, &record(Level::Debug, "d2"), t0).is_none());
        let closed = b
            .add(1, &record(Level::Debug, "d3"), t0)
            .expect("three debug records");
        assert_eq!(closed.class, Class::LogsDebug);
        assert_eq!(closed.records, 3);
        let req = decode(&closed.body);
        assert_eq!(req.resource_logs.len(), 2, "one resource per service");
        let mut messages = Vec::new();
        let names: Vec<String> = req
            .resource_logs
            .iter()
            .map(|r| {
                let attrs = &r.resource.as_ref().expect("resource").attributes;
                assert_eq!(attr(attrs, "region").as_deref(), Some("eu-west-1"));
                assert_eq!(attr(attrs, "host.name").as_deref(), Some("gs-1"));
                let scope = &r.scope_logs[0];
                assert_eq!(scope.scope.as_ref().expect("scope").name, "edge-agent");
                messages.extend(scope.log_records.iter().map(|l| text(&l.body)));
                attr(attrs, "service.name").expect("service.name")
            })
            .collect();
        assert_eq!(names, ["game", "lobby"]);
        assert_eq!(messages, ["d1", "d2", "d3"], "order kept within a service");
        assert!(b.due(t0).is_empty());
        let due = b.due(t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].class, Class::LogsInfo);
        assert!(b.is_empty());
        assert!(b.flush().is_empty());
    }

    #[test]
    fn batches_close_by_bytes() {
        let limits = BatchLimits {
            max_bytes: 4096,
            max_records: 1 << 20,
            max_age: Duration::from_secs(60),
        };
        let mut b = Batcher::new(limits, &["game".into()], "gs-1", &[]);
        let line = "x".repeat(1000);
        let t0 = Instant::now();
        let mut added = 0;
        let closed = loop {
            added += 1;
            if let Some(c) = b.add(0, &record(Level::Info, &line), t0) {
                break c;
            }
            assert!(added < 10, "never closed");
        };
        assert_eq!(added, 4, "four 1 KB records pass 4 KiB");
        assert_eq!(
            decode(&closed.body).resource_logs[0].scope_logs[0]
                .log_records
                .len(),
            4
        );
    }

    #[test]
    fn records_keep_level_time_trace_id_attributes_and_flags() {
        let mut r = record(Level::Error, &"é".repeat(300));
        r.timestamp_ns = Some(5);
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        r.parse_failed = true;
        r.attributes = vec![
            ("shard".into(), "3".into()),
            ("empty".into(), String::new()),
            ("long".into(), "v".repeat(20_000)),
        ];
        let o = one_record(&r);
        assert_eq!(o.time_unix_nano, 5);
        assert_eq!(o.observed_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(o.severity_number, 17);
        assert_eq!(o.severity_text, "error");
        assert_eq!(text(&o.body), "é".repeat(300));
        assert_eq!(
            o.trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(attr(&o.attributes, "shard").as_deref(), Some("3"));
        assert_eq!(attr(&o.attributes, "empty").as_deref(), Some(""));
        assert_eq!(attr(&o.attributes, "long").map(|v| v.len()), Some(20_000));
        assert_eq!(
            attr(&o.attributes, "edge.parse_failed").as_deref(),
            Some("true")
        );
        assert_eq!(attr(&o.attributes, "edge.truncated"), None);

        let mut bad = record(Level::Unknown, "x");
        bad.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e47+6".into());
        bad.truncated = true;
        let o = one_record(&bad);
        assert!(o.trace_id.is_empty());
        assert_eq!(o.severity_number, 0);
        assert_eq!(
            attr(&o.attributes, "trace_id").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e47+6")
        );
        assert_eq!(
            attr(&o.attributes, "edge.truncated").as_deref(),
            Some("true")
        );
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(prost::encoding::encoded_len_varint(v), out.len(), "{v}");
        }
    }
}
