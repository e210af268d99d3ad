//! What a user counts in a queued batch, for the shed figures: the series of a metrics
//! batch (snappy `WriteRequest`) and the log records of a logs batch (zstd OTLP
//! `ExportLogsServiceRequest`) and the spans of a traces batch (zstd OTLP
//! `ExportTraceServiceRequest`). Only read when a batch is shed, so its cost does not
//! matter; a batch that does not decode counts as one.

use edge_schema::proto::otlp::ExportLogsServiceRequest;
use edge_schema::proto::otlp::trace::ExportTraceServiceRequest;
use prost::Message;

use super::Class;

/// The largest batch decoded to count it.
const MAX_DECODED: usize = 64 << 20;

/// Series, log records or spans in `payload` of `class`.
pub fn count(class: Class, payload: &[u8]) -> u64 {
    let counted = match class {
        Class::Metrics => series(payload),
        Class::Traces => spans(payload),
        Class::LogsDebug | Class::LogsInfo | Class::LogsWarn => log_records(payload),
    };
    counted.unwrap_or(1)
}

fn series(payload: &[u8]) -> Option<u64> {
    let raw = edge_daemon_kit::snappy::decompress_bounded(payload, MAX_DECODED).ok()?;
    // Count the top-level `timeseries` fields (1, length-delimited) without decoding them.
    let mut at = 0;
    let mut n = 0u64;
    while at < raw.len() {
        let (key, used) = varint(&raw[at..])?;
        at += used;
        match key & 7 {
            0 => at += varint(&raw[at..])?.1,
            1 => at += 8,
            2 => {
                let (len, used) = varint(&raw[at..])?;
                at += used + usize::try_from(len).ok()?;
                n += u64::from(key >> 3 == 1);
            }
            5 => at += 4,
            _ => return None,
        }
    }
    (at == raw.len()).then_some(n)
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn log_records(payload: &[u8]) -> Option<u64> {
    let raw = zstd::bulk::decompress(payload, MAX_DECODED).ok()?;
    let request = ExportLogsServiceRequest::decode(raw.as_slice()).ok()?;
    Some(
        request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum(),
    )
}

fn spans(payload: &[u8]) -> Option<u64> {
    let raw = zstd::bulk::decompress(payload, MAX_DECODED).ok()?;
    let request = ExportTraceServiceRequest::decode(raw.as_slice()).ok()?;
    Some(
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use edge_schema::proto::otlp::{LogRecord, ResourceLogs, ScopeLogs};
    use edge_schema::proto::prometheus::{TimeSeries, WriteRequest};

    use super::*;

    #[test]
    fn series_and_log_records_are_counted_and_garbage_is_one() {
        let write = WriteRequest {
            timeseries: vec![TimeSeries::default(); 7],
            ..Default::default()
        };
        let metrics = snap::raw::Encoder::new()
            .compress_vec(&write.encode_to_vec())
            .expect("snappy");
        assert_eq!(count(Class::Metrics, &metrics), 7);
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 5],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = zstd::bulk::compress(&logs.encode_to_vec(), 1).expect("zstd");
        assert_eq!(count(Class::LogsInfo, &body), 5);
        assert_eq!(count(Class::LogsDebug, b"not zstd"), 1);
        use edge_schema::proto::otlp::trace::{ResourceSpans, ScopeSpans, Span};
        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); 4],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = zstd::bulk::compress(&traces.encode_to_vec(), 1).expect("zstd");
        assert_eq!(count(Class::Traces, &body), 4);
        assert_eq!(count(Class::Metrics, b"\xff\xff\xff\xff\x0f"), 1);
    }
}
