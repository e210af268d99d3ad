//! Batches of log records as OTLP/HTTP bodies (`ExportLogsServiceRequest`,
//! protobuf, zstd), one batch per priority class so the disk queue can shed verbose logs
//! before warnings.
//!
//! A batch closes at [`BatchLimits`]: bytes (estimated from the records' text), records,
//! or age (default 1 s). Records keep their source's `service`; each service becomes one
//! `ResourceLogs` whose resource carries `service.name`, `host.name` and the host
//! labels.

use std::time::{Duration, Instant};

use edge_schema::proto::otlp::{
    AnyValue, ExportLogsServiceRequest, InstrumentationScope, KeyValue, LogRecord as OtlpRecord,
    Resource, ResourceLogs, ScopeLogs, SeverityNumber, any_value,
};
use prost::Message;

use super::record::{Level, LogRecord};
use crate::queue::Class;

/// When a batch closes.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Estimated uncompressed bytes.
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

fn severity(level: Level) -> SeverityNumber {
    match level {
        Level::Unknown => SeverityNumber::Unspecified,
        Level::Trace => SeverityNumber::Trace,
        Level::Debug => SeverityNumber::Debug,
        Level::Info => SeverityNumber::Info,
        Level::Warn => SeverityNumber::Warn,
        Level::Error => SeverityNumber::Error,
        Level::Fatal => SeverityNumber::Fatal,
    }
}

fn kv(key: impl Into<String>, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
    }
}

#[derive(Debug, Default)]
struct Open {
    /// Records by service index.
    records: Vec<(usize, OtlpRecord)>,
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
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    /// Resource attributes per service (service.name, host.name, host labels).
    resources: Vec<Vec<KeyValue>>,
    open: [Open; 3],
}

fn slot(class: Class) -> usize {
    match class {
        Class::LogsDebug => 0,
        Class::LogsInfo => 1,
        _ => 2,
    }
}

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
            .map(|service| {
                let mut attrs = vec![
                    kv("service.name", service.clone()),
                    kv("host.name", host_name.to_string()),
                ];
                attrs.extend(host_labels.iter().map(|(k, v)| kv(k.clone(), v.clone())));
                attrs
            })
            .collect();
        Batcher {
            limits,
            resources,
            open: Default::default(),
        }
    }

    /// Adds a record of service `service`; returns the batch it closed, if any.
    pub fn add(&mut self, service: usize, record: LogRecord, now: Instant) -> Option<Closed> {
        let class = class_of(record.level);
        let open = &mut self.open[slot(class)];
        open.bytes += 64
            + record.message.len()
            + record
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>();
        open.since.get_or_insert(now);
        open.records.push((service, to_otlp(record)));
        if open.records.len() >= self.limits.max_records || open.bytes >= self.limits.max_bytes {
            return self.close(slot(class));
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
        self.open.iter().all(|o| o.records.is_empty())
    }

    fn close(&mut self, i: usize) -> Option<Closed> {
        let open = std::mem::take(&mut self.open[i]);
        if open.records.is_empty() {
            return None;
        }
        let records = open.records.len();
        let mut by_service: Vec<Vec<OtlpRecord>> = vec![Vec::new(); self.resources.len()];
        for (service, record) in open.records {
            if let Some(list) = by_service.get_mut(service) {
                list.push(record);
            }
        }
        let request = ExportLogsServiceRequest {
            resource_logs: by_service
                .into_iter()
                .enumerate()
                .filter(|(_, records)| !records.is_empty())
                .map(|(service, log_records)| ResourceLogs {
                    resource: Some(Resource {
                        attributes: self.resources[service].clone(),
                        dropped_attributes_count: 0,
                    }),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: "edge-agent".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        log_records,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        };
        let raw = request.encode_to_vec();
        match zstd::bulk::compress(&raw, ZSTD_LEVEL) {
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

/// One record in its OTLP form (moving its strings).
pub fn to_otlp(record: LogRecord) -> OtlpRecord {
    let mut attributes: Vec<KeyValue> = record
        .attributes
        .into_iter()
        .map(|(k, v)| kv(k, v))
        .collect();
    let mut trace_id = Vec::new();
    if let Some(t) = record.trace_id {
        match decode_hex_16(&t) {
            Some(bytes) => trace_id = bytes,
            None => attributes.push(kv("trace_id", t)),
        }
    }
    if record.parse_failed {
        attributes.push(kv("edge.parse_failed", "true".into()));
    }
    if record.truncated {
        attributes.push(kv("edge.truncated", "true".into()));
    }
    OtlpRecord {
        time_unix_nano: record.timestamp_ns.unwrap_or(record.observed_ns).max(0) as u64,
        observed_time_unix_nano: record.observed_ns.max(0) as u64,
        severity_number: severity(record.level) as i32,
        severity_text: record.level.name().to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(record.message)),
        }),
        attributes,
        trace_id,
        ..Default::default()
    }
}

/// A W3C trace id: 32 hex digits → 16 bytes.
fn decode_hex_16(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if t.len() != 32 {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(b.add(0, record(Level::Debug, "d1"), t0).is_none());
        assert!(b.add(1, record(Level::Info, "i1"), t0).is_none());
        assert!(b.add(0, record(Level::Debug, "d2"), t0).is_none());
        let closed = b
            .add(1, record(Level::Debug, "d3"), t0)
            .expect("three debug records");
        assert_eq!(closed.class, Class::LogsDebug);
        assert_eq!(closed.records, 3);
        let req = decode(&closed.body);
        assert_eq!(req.resource_logs.len(), 2, "one resource per service");
        let names: Vec<String> = req
            .resource_logs
            .iter()
            .map(|r| {
                let attrs = &r.resource.as_ref().expect("resource").attributes;
                assert!(attrs.iter().any(|kv| kv.key == "region"));
                match &attrs[0].value.as_ref().and_then(|v| v.value.clone()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(names, ["game", "lobby"]);
        assert!(b.due(t0).is_empty());
        let due = b.due(t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].class, Class::LogsInfo);
        assert!(b.is_empty());
    }

    #[test]
    fn records_keep_level_time_trace_id_and_flags() {
        let mut r = record(Level::Error, "boom");
        r.timestamp_ns = Some(5);
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        r.parse_failed = true;
        r.attributes = vec![("shard".into(), "3".into())];
        let o = to_otlp(r);
        assert_eq!(o.time_unix_nano, 5);
        assert_eq!(o.severity_number, SeverityNumber::Error as i32);
        assert_eq!(o.trace_id.len(), 16);
        assert!(o.attributes.iter().any(|kv| kv.key == "edge.parse_failed"));
        let mut bad = record(Level::Info, "x");
        bad.trace_id = Some("not-hex".into());
        let o = to_otlp(bad);
        assert!(o.trace_id.is_empty());
        assert!(o.attributes.iter().any(|kv| kv.key == "trace_id"));
    }
}
