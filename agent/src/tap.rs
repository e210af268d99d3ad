//! `edge-agent tap`: a live view of what leaves the agent's pipelines, after
//! tokenization and the series gate, served on the loopback API as `GET /tap` (NDJSON,
//! chunked) and printed by the `tap` subcommand (its client is [`crate::tap_client`]).
//!
//! **A tap never slows or blocks the pipeline.** Each tap has its own bounded queue of
//! [`TAP_QUEUE`] items; the pipelines only `try_send` into it, and look at one atomic
//! count per signal first, so with nobody tapping a hook costs one relaxed load. A record
//! that does not fit a tap's queue (its reader is slow or stalled) is dropped for that tap
//! alone and counted in `edge_tap_dropped_total`; what ships is untouched. Everything
//! costly (protobuf decoding, JSON, finding tokens) happens in the tap's own task, never
//! on the pipeline's thread. At most [`MAX_TAPS`] taps are open at once (`429` beyond).
//!
//! What each signal shows, one JSON object per line:
//!
//! - `logs`: each record as it is batched for the gateway (after parse, filters and
//!   tokenization): `service`, `level`, `time`, `message`, `trace_id`, `attributes`, and
//!   `tokens`, the fields holding tokens or redactions with the token as shipped (never
//!   the value it replaced). Taken in [`crate::logs::pipeline`].
//! - `metrics`: each series of a cycle's remote_write request as it is queued (host
//!   labels, overflow series and the agent's own metrics included), and each point the
//!   gate refuses, marked `"refused": REASON` (its values go to the overflow series);
//!   a series the policy refused shows its label values as `[withheld]`, since they may
//!   be what the policy keeps on the host.
//! - `traces`: each span after scrubbing, with its resource's attributes as shipped.
//!
//! `source` filters: a log record's `service` (the `service` of its `logs:` entry, or an
//! OTLP record's `service.name`), a span's resource `service.name`, or for metrics the
//! start of the metric name (`node_load` shows `node_load1`, `node_load5`, `node_load15`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use edge_schema::proto::otlp::trace::ResourceSpans;
use edge_schema::proto::otlp::{AnyValue, KeyValue, any_value};
use edge_schema::proto::prometheus::{self as pb, WriteRequest};
use hyper::body::{Body, Bytes, Frame};
use prost::Message;
use regex::Regex;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::logs::record::LogRecord;
use crate::metrics::key::{Point, SeriesKey};

/// Taps open at once; one more is answered `429`. A tap is a person at a terminal or a
/// script; a handful is plenty, and each costs a queue and a copy of what it watches.
pub const MAX_TAPS: usize = 4;

/// Items (a log record, a span's resource, a cycle's metrics batch) one tap's queue
/// holds. Past it the tap misses records (counted); the pipeline never waits.
pub const TAP_QUEUE: usize = 1024;

/// The most bytes of NDJSON one body frame carries.
const FRAME_BYTES: usize = 64 << 10;

/// A tap's signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Log records.
    Logs,
    /// Metric series.
    Metrics,
    /// Spans.
    Traces,
}

impl Signal {
    /// `logs`, `metrics`, `traces`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }

    pub fn parse(text: &str) -> Option<Signal> {
        match text {
            "logs" => Some(Signal::Logs),
            "metrics" => Some(Signal::Metrics),
            "traces" => Some(Signal::Traces),
            _ => None,
        }
    }
}

/// What a tap's queue carries: taken as it leaves a pipeline, rendered in the tap's task.
#[derive(Debug)]
enum Item {
    Log {
        service: String,
        record: LogRecord,
    },
    /// A cycle's encoded (uncompressed) remote_write request, shared by every tap.
    Batch(Arc<Vec<u8>>),
    Refused {
        key: SeriesKey,
        point: Point,
        reason: &'static str,
    },
    Spans(Box<ResourceSpans>),
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    signal: Signal,
    source: Option<String>,
    tx: mpsc::Sender<Item>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Open taps per signal: what the pipelines look at first.
    active: [AtomicUsize; 3],
    subscribers: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

/// The taps of one agent (cheap to clone: every clone is the same set). Its
/// [`Taps::dropped`] is `edge_tap_dropped_total`.
#[derive(Clone, Debug, Default)]
pub struct Taps {
    inner: Arc<Inner>,
}

/// `429`: [`MAX_TAPS`] taps are open already.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_TAPS} taps are open already; close one and try again")]
pub struct TooManyTaps;

/// What one tap asked for (`GET /tap?signal=…&source=…&limit=…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRequest {
    /// The signal; `logs` by default.
    pub signal: Signal,
    /// Only records of this source (see the module docs).
    pub source: Option<String>,
    /// End the stream after this many records.
    pub limit: Option<u64>,
}

impl TapRequest {
    /// Reads a query string; a bad one says which parameter and why.
    pub fn from_query(query: Option<&str>) -> Result<TapRequest, String> {
        let mut out = TapRequest {
            signal: Signal::Logs,
            source: None,
            limit: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)
                .ok_or_else(|| format!("query parameter {name}: bad percent-encoding"))?;
            match name {
                "signal" => {
                    out.signal = Signal::parse(&value).ok_or_else(|| {
                        format!("signal={value}: expected logs, metrics or traces")
                    })?;
                }
                "source" if !value.is_empty() => out.source = Some(value),
                "source" => {}
                "limit" => {
                    out.limit = Some(value.parse::<u64>().map_err(|_| {
                        format!("limit={value}: expected a whole number of records")
                    })?);
                }
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?} (expected signal, source, limit)"
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The query string for this request.
    pub fn to_query(&self) -> String {
        let mut q = format!("signal={}", self.signal.name());
        if let Some(s) = &self.source {
            q.push_str("&source=");
            q.push_str(&percent_encode(s));
        }
        if let Some(n) = self.limit {
            q.push_str(&format!("&limit={n}"));
        }
        q
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `name` (a service, or a metric name for metrics) passes the filter `want`.
fn matches(signal: Signal, want: Option<&str>, name: &str) -> bool {
    let Some(want) = want else { return true };
    match signal {
        Signal::Metrics => name.starts_with(want),
        Signal::Logs | Signal::Traces => name == want,
    }
}

impl Taps {
    /// Records dropped for taps that did not keep up, so far.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Relaxed)
    }

    /// Whether a tap of `signal` is open: one relaxed load, the hooks' first step.
    #[inline]
    pub fn active(&self, signal: Signal) -> bool {
        self.inner.active[signal as usize].load(Relaxed) > 0
    }

    /// Hands `make()` to every tap of `signal` whose filter passes `source` (`None`: the
    /// filter is applied when rendering); `records` counts as dropped for a full queue.
    fn publish(&self, signal: Signal, source: Option<&str>, records: u64, make: impl Fn() -> Item) {
        let subscribers = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in subscribers.iter().filter(|s| {
            s.signal == signal
                && source.is_none_or(|name| matches(signal, s.source.as_deref(), name))
        }) {
            // A full queue is seen before the record is copied: a stalled tap costs the
            // pipeline no copy.
            if s.tx.capacity() == 0 {
                self.inner.dropped.fetch_add(records, Relaxed);
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(make()) {
                self.inner.dropped.fetch_add(records, Relaxed);
            }
            // Closed: the tap is ending; its guard takes it out of the list.
        }
    }

    /// The logs hook: `record` of `service`, as it is batched.
    #[inline]
    pub fn log(&self, service: &str, record: &LogRecord) {
        if self.active(Signal::Logs) {
            self.publish(Signal::Logs, Some(service), 1, || Item::Log {
                service: service.to_owned(),
                record: record.clone(),
            });
        }
    }

    /// The metrics hook: a cycle's encoded request of `series` series, as it is queued.
    #[inline]
    pub fn metrics_batch(&self, encoded: &[u8], series: usize) {
        if self.active(Signal::Metrics) && series > 0 {
            let batch = Arc::new(encoded.to_vec());
            self.publish(Signal::Metrics, None, series as u64, || {
                Item::Batch(batch.clone())
            });
        }
    }

    /// The metrics hook for a point the gate refused, and why.
    #[inline]
    pub fn refused(&self, key: &SeriesKey, point: &Point, reason: &'static str) {
        if self.active(Signal::Metrics) {
            self.publish(Signal::Metrics, Some(&key.name), 1, || Item::Refused {
                key: key.clone(),
                point: point.clone(),
                reason,
            });
        }
    }

    /// The traces hook: one resource's spans (`spans` of them) after scrubbing, as
    /// batched.
    #[inline]
    pub fn spans(&self, rs: &ResourceSpans, spans: u64) {
        if self.active(Signal::Traces) {
            let service = resource_service(rs);
            self.publish(Signal::Traces, Some(&service), spans, || {
                Item::Spans(Box::new(rs.clone()))
            });
        }
    }

    /// Opens a tap.
    pub fn subscribe(&self, request: TapRequest) -> Result<TapBody, TooManyTaps> {
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        {
            let mut subscribers = self
                .inner
                .subscribers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if subscribers.len() >= MAX_TAPS {
                return Err(TooManyTaps);
            }
            subscribers.push(Subscriber {
                id,
                signal: request.signal,
                source: request.source.clone(),
                tx,
            });
            self.recount(&subscribers);
        }
        Ok(TapBody {
            _guard: Guard {
                taps: self.clone(),
                id,
            },
            rx,
            request,
            lines: VecDeque::new(),
            sent: 0,
        })
    }

    /// Ends every open tap (the receiver is stopping): their streams end.
    pub fn close_all(&self) {
        let mut subscribers = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subscribers.clear();
        self.recount(&subscribers);
    }

    fn recount(&self, subscribers: &[Subscriber]) {
        for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
            let n = subscribers.iter().filter(|s| s.signal == signal).count();
            self.inner.active[signal as usize].store(n, Relaxed);
        }
    }
}

/// Takes a tap out of the list when its stream ends or its reader goes away.
#[derive(Debug)]
struct Guard {
    taps: Taps,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut subscribers = self
            .taps
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subscribers.retain(|s| s.id != self.id);
        self.taps.recount(&subscribers);
    }
}

/// One tap's response body: NDJSON, one record a line, until the limit, the agent
/// stopping, or the reader going away.
#[derive(Debug)]
pub struct TapBody {
    _guard: Guard,
    rx: mpsc::Receiver<Item>,
    request: TapRequest,
    /// Rendered lines not yet sent.
    lines: VecDeque<String>,
    /// Lines sent.
    sent: u64,
}

impl TapBody {
    fn room(&self) -> u64 {
        self.request
            .limit
            .map_or(u64::MAX, |l| l.saturating_sub(self.sent))
    }

    /// Up to [`FRAME_BYTES`] of waiting lines, within the limit.
    fn take_frame(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        while self.room() > 0 && out.len() < FRAME_BYTES {
            let Some(line) = self.lines.pop_front() else {
                break;
            };
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            self.sent += 1;
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

impl Body for TapBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.room() == 0 {
                return Poll::Ready(None);
            }
            // Take what waits, so one frame carries many lines.
            let (mut waiting, mut ended) = (false, false);
            while this.lines.len() < 512 {
                match this.rx.poll_recv(cx) {
                    Poll::Ready(Some(item)) => render(item, &this.request, &mut this.lines),
                    Poll::Ready(None) => {
                        ended = true;
                        break;
                    }
                    Poll::Pending => {
                        waiting = true;
                        break;
                    }
                }
            }
            if let Some(bytes) = this.take_frame() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if ended {
                return Poll::Ready(None);
            }
            if waiting {
                // `poll_recv` keeps the waker.
                return Poll::Pending;
            }
        }
    }
}

/// What a refused series' label values show when the policy refused it.
pub const WITHHELD: &str = "[withheld]";

/// Tokens and redactions as the tokenizer writes them.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"tok_[0-9a-f]{8}_[0-9a-f]{16}|\[REDACTED:[^\]]*\]")
        .unwrap_or_else(|e| unreachable!("a constant pattern: {e}"))
});

/// `{"field": …, "token": …}` for each token or redaction in `text`.
fn tokens_in(field: &str, text: &str, out: &mut Vec<Value>) {
    for m in TOKEN.find_iter(text) {
        out.push(json!({ "field": field, "token": m.as_str() }));
    }
}

fn time(nanos: i64) -> Value {
    Value::String(edge_schema::calendar::rfc3339_millis(
        u64::try_from(nanos).unwrap_or(0),
    ))
}

/// `item` as NDJSON lines (without their newline) for `request`, into `out`.
fn render(item: Item, request: &TapRequest, out: &mut VecDeque<String>) {
    let want = request.source.as_deref();
    match item {
        Item::Log { service, record } => {
            let mut tokens = Vec::new();
            tokens_in("message", &record.message, &mut tokens);
            let mut attributes = Map::new();
            for (k, v) in &record.attributes {
                tokens_in(&format!("attributes.{k}"), k, &mut tokens);
                tokens_in(&format!("attributes.{k}"), v, &mut tokens);
                attributes.insert(k.clone(), Value::String(v.clone()));
            }
            if let Some(t) = &record.trace_id {
                tokens_in("trace_id", t, &mut tokens);
            }
            let mut line = json!({
                "signal": "logs",
                "service": service,
                "level": record.level.name(),
                "time": time(record.timestamp_ns.unwrap_or(record.observed_ns)),
                "observed_time": time(record.observed_ns),
                "message": record.message,
                "attributes": attributes,
                "tokens": tokens,
            });
            if let Some(t) = record.trace_id {
                line["trace_id"] = Value::String(t);
            }
            if record.parse_failed {
                line["parse_failed"] = Value::Bool(true);
            }
            if record.truncated {
                line["truncated"] = Value::Bool(true);
            }
            out.push_back(line.to_string());
        }
        Item::Batch(encoded) => {
            let Ok(request) = WriteRequest::decode(encoded.as_slice()) else {
                return;
            };
            for ts in request.timeseries {
                let name = ts
                    .labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .map(|l| l.value.clone())
                    .unwrap_or_default();
                if !matches(Signal::Metrics, want, &name) {
                    continue;
                }
                let labels: Map<String, Value> = ts
                    .labels
                    .into_iter()
                    .filter(|l| l.name != "__name__")
                    .map(|l| (l.name, Value::String(l.value)))
                    .collect();
                let mut line = json!({ "signal": "metrics", "name": name, "labels": labels });
                if !ts.samples.is_empty() {
                    line["samples"] = ts
                        .samples
                        .iter()
                        .map(|s| json!({ "value": number(s.value), "timestamp_ms": s.timestamp }))
                        .collect();
                }
                if !ts.histograms.is_empty() {
                    line["histograms"] = ts.histograms.iter().map(histogram).collect();
                }
                out.push_back(line.to_string());
            }
        }
        Item::Refused { key, point, reason } => {
            if !matches(Signal::Metrics, want, &key.name) {
                return;
            }
            // A series the policy refused may hold what must not leave the host (a
            // forbidden label, a PII value): its values are withheld; a series the budget
            // refused is shown whole.
            let show = reason == edge_schema::reasons::BUDGET;
            let labels: Map<String, Value> = key
                .labels
                .into_iter()
                .map(|(k, v)| {
                    let v = if show { v } else { WITHHELD.to_owned() };
                    (k, Value::String(v))
                })
                .collect();
            let mut line = json!({
                "signal": "metrics",
                "refused": reason,
                "name": key.name,
                "labels": labels,
            });
            match point {
                Point::Float { value, timestamp } => {
                    line["samples"] =
                        json!([{ "value": number(value), "timestamp_ms": timestamp }]);
                }
                Point::Histogram(h) => line["histograms"] = json!([histogram(&h)]),
            }
            out.push_back(line.to_string());
        }
        Item::Spans(rs) => {
            let service = resource_service(&rs);
            if !matches(Signal::Traces, want, &service) {
                return;
            }
            let mut resource_tokens = Vec::new();
            let resource = rs
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes, "resource", &mut resource_tokens))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let mut tokens = resource_tokens.clone();
                    tokens_in("name", &span.name, &mut tokens);
                    let attrs = attributes(&span.attributes, "attributes", &mut tokens);
                    let events: Vec<Value> = span
                        .events
                        .iter()
                        .map(|e| {
                            tokens_in("events.name", &e.name, &mut tokens);
                            json!({
                                "name": e.name,
                                "time": time(i64::try_from(e.time_unix_nano).unwrap_or(0)),
                                "attributes": attributes(&e.attributes, "events.attributes", &mut tokens),
                            })
                        })
                        .collect();
                    let status = span.status.as_ref().map(|status| {
                        tokens_in("status.message", &status.message, &mut tokens);
                        json!({ "code": status.code, "message": status.message })
                    });
                    let mut line = json!({
                        "signal": "traces",
                        "service": service,
                        "name": span.name,
                        "trace_id": hex(&span.trace_id),
                        "span_id": hex(&span.span_id),
                        "kind": span.kind,
                        "start_time": time(i64::try_from(span.start_time_unix_nano).unwrap_or(0)),
                        "end_time": time(i64::try_from(span.end_time_unix_nano).unwrap_or(0)),
                        "attributes": attrs,
                        "resource": resource,
                        "tokens": tokens,
                    });
                    if !span.parent_span_id.is_empty() {
                        line["parent_span_id"] = Value::String(hex(&span.parent_span_id));
                    }
                    if !events.is_empty() {
                        line["events"] = Value::Array(events);
                    }
                    if let Some(status) = status {
                        line["status"] = status;
                    }
                    out.push_back(line.to_string());
                }
            }
        }
    }
}

/// A float as JSON: NaN and infinities as strings (JSON has no such numbers).
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}

fn histogram(h: &pb::Histogram) -> Value {
    let count = match h.count {
        Some(pb::histogram::Count::CountInt(n)) => json!(n),
        Some(pb::histogram::Count::CountFloat(f)) => number(f),
        None => json!(0),
    };
    json!({
        "count": count,
        "sum": number(h.sum),
        "schema": h.schema,
        "zero_count": match h.zero_count {
            Some(pb::histogram::ZeroCount::ZeroCountInt(n)) => json!(n),
            Some(pb::histogram::ZeroCount::ZeroCountFloat(f)) => number(f),
            None => json!(0),
        },
        "buckets": h.positive_deltas.len() + h.negative_deltas.len()
            + h.positive_counts.len() + h.negative_counts.len(),
        "timestamp_ms": h.timestamp,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn resource_service(rs: &ResourceSpans) -> String {
    rs.resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref())
        .map(any_text)
        .unwrap_or_default()
}

/// Key-values as a JSON object, tokens found noted under `prefix.key`.
fn attributes(kvs: &[KeyValue], prefix: &str, tokens: &mut Vec<Value>) -> Value {
    let mut map = Map::new();
    for kv in kvs {
        let field = format!("{prefix}.{}", kv.key);
        tokens_in(&field, &kv.key, tokens);
        let value = kv
            .value
            .as_ref()
            .map_or(Value::Null, |v| any_json(v, &field, tokens));
        map.insert(kv.key.clone(), value);
    }
    Value::Object(map)
}

fn any_json(v: &AnyValue, field: &str, tokens: &mut Vec<Value>) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => {
            tokens_in(field, s, tokens);
            Value::String(s.clone())
        }
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => number(*d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(
            a.values
                .iter()
                .map(|x| any_json(x, field, tokens))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(l)) => attributes(&l.values, field, tokens),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        None => Value::Null,
    }
}

fn any_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => any_json(v, "", &mut Vec::new()).to_string(),
    }
}

#[cfg(test)]
mod tests;
