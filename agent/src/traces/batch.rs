//! Batches of spans as OTLP/HTTP bodies (`ExportTraceServiceRequest`, protobuf, zstd),
//! the traces class's records in the disk queue.
//!
//! A batch closes at [`BatchLimits`]: encoded bytes, spans, or the age of its oldest
//! span (default 1 s), like a logs batch. Requests are kept as their clients grouped
//! them (one `ResourceSpans` per resource); a request larger than the byte bound is one
//! batch on its own, never split across two.

use std::time::{Duration, Instant};

use edge_schema::proto::otlp::trace::{ExportTraceServiceRequest, ResourceSpans};
use prost::Message;

/// When a batch closes.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Encoded (uncompressed) bytes.
    pub max_bytes: usize,
    /// Spans.
    pub max_spans: usize,
    /// Age of the oldest span.
    pub max_age: Duration,
}

/// The logs path's bounds: 1 s, and well under the gateway's body limit. 4,096 spans
/// is eight exports of an OpenTelemetry SDK's default batch span processor (512).
pub const DEFAULT_LIMITS: BatchLimits = BatchLimits {
    max_bytes: 1 << 20,
    max_spans: 4096,
    max_age: Duration::from_secs(1),
};

/// zstd level: the fast end, as for logs.
pub const ZSTD_LEVEL: i32 = 1;

/// A closed batch.
#[derive(Debug)]
pub struct Closed {
    /// zstd-compressed `ExportTraceServiceRequest`.
    pub body: Vec<u8>,
    /// Spans in it.
    pub spans: u64,
}

/// The open batch.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    open: Vec<ResourceSpans>,
    spans: u64,
    bytes: usize,
    since: Option<Instant>,
    /// Spans of batches that could not be compressed, until [`Batcher::take_lost`].
    lost: u64,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits,
            open: Vec::new(),
            spans: 0,
            bytes: 0,
            since: None,
            lost: 0,
        }
    }

    /// Spans lost since the last call (a batch that could not be compressed).
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// The limits in force.
    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    /// Adds one resource's spans (`spans` of them); returns the batch this closed, if
    /// any: the open one when `rs` would take it past its byte bound (so a batch stays
    /// under it), and the new one when it reaches a bound.
    pub fn add(&mut self, rs: ResourceSpans, spans: u64, now: Instant) -> Vec<Closed> {
        let mut out = Vec::new();
        if spans == 0 {
            return out;
        }
        // Field 1 tag, length, message.
        let len = rs.encoded_len();
        let size = 1 + prost::length_delimiter_len(len) + len;
        if self.spans > 0 && self.bytes + size > self.limits.max_bytes {
            out.extend(self.close());
        }
        self.open.push(rs);
        self.spans += spans;
        self.bytes += size;
        self.since.get_or_insert(now);
        if self.spans >= self.limits.max_spans as u64 || self.bytes >= self.limits.max_bytes {
            out.extend(self.close());
        }
        out
    }

    /// The open batch if its oldest span has waited `max_age`.
    pub fn due(&mut self, now: Instant) -> Option<Closed> {
        let due = self
            .since
            .is_some_and(|s| now.saturating_duration_since(s) >= self.limits.max_age);
        if due { self.close() } else { None }
    }

    /// How long until the open batch is due by age (zero if it is); `None` when no
    /// batch is open.
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        self.since
            .map(|s| (s + self.limits.max_age).saturating_duration_since(now))
    }

    /// Spans waiting in the open batch.
    pub fn open_spans(&self) -> u64 {
        self.spans
    }

    /// The open batch, now.
    pub fn close(&mut self) -> Option<Closed> {
        if self.spans == 0 {
            return None;
        }
        let request = ExportTraceServiceRequest {
            resource_spans: std::mem::take(&mut self.open),
        };
        let spans = std::mem::take(&mut self.spans);
        self.bytes = 0;
        self.since = None;
        match zstd::bulk::compress(&request.encode_to_vec(), ZSTD_LEVEL) {
            Ok(body) => Some(Closed { body, spans }),
            Err(e) => {
                tracing::error!(error = %e, spans, "cannot compress a trace batch; it is lost");
                self.lost += spans;
                None
            }
        }
    }
}
