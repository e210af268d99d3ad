//! The agent's own metrics, in one place: every name the agent reports about itself is
//! here, next to the counter behind it. They are sent with the host's other series (and
//! pass the same gate) and served as text on `GET /metrics`.
//!
//! Host-level figures the agent already reads from procfs (its CPU and RSS) come from
//! [`crate::host`]; the gate's and the queue's figures are read from them when a
//! snapshot is taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use edge_exporter::export::native_to_proto;
use edge_exporter::instruments::Histogram;

use crate::logs::record::Level;
use crate::metrics::gate::{POLICY_REASONS, REJECT_REASONS};
use crate::metrics::{Point, SeriesKey};
use crate::queue::figures::QueueFigures;
use crate::queue::{CLASSES, Class};

/// Delivery streams, as the `stream` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// remote_write to `output.metrics_url`.
    Metrics,
    /// OTLP logs to `output.logs_url`.
    Logs,
    /// OTLP traces to `output.traces_url`.
    Traces,
}

/// Every stream, in label order.
pub const STREAMS: [Stream; 3] = [Stream::Metrics, Stream::Logs, Stream::Traces];

impl Stream {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Metrics => "metrics",
            Stream::Logs => "logs",
            Stream::Traces => "traces",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Answer classes, as the `code` label of `edge_send_responses_total`.
pub const CODES: [&str; 5] = ["2xx", "429", "4xx", "5xx", "error"];

/// The `code` label of an HTTP status (`None`: a transport error).
pub fn code_class(status: Option<u16>) -> &'static str {
    match status {
        None => "error",
        Some(200..=299) => "2xx",
        Some(429) => "429",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
    }
}

#[derive(Debug)]
struct StreamStats {
    responses: [AtomicU64; CODES.len()],
    dropped: AtomicU64,
    duration: Histogram,
}

impl Default for StreamStats {
    fn default() -> Self {
        StreamStats {
            responses: Default::default(),
            dropped: AtomicU64::new(0),
            duration: Histogram::with_scale(edge_exporter::registry::DEFAULT_SCALE),
        }
    }
}

/// Counters the agent's tasks update.
#[derive(Debug, Default)]
pub struct Telemetry {
    streams: [StreamStats; STREAMS.len()],
    scrape_failures: AtomicU64,
    cadence_ms: AtomicU64,
    queue_bytes: [AtomicU64; CLASSES],
    queue_records: [AtomicU64; CLASSES],
    queue_shed: [AtomicU64; CLASSES],
    queue_shed_batches: [AtomicU64; CLASSES],
    queue_lost_bytes: [AtomicU64; CLASSES],
    /// Spans offered to the traces pipeline, by [`SPAN_RESULTS`].
    spans: [AtomicU64; SPAN_RESULTS.len()],
    /// By origin (file, OTLP) and level.
    logs_records: [[AtomicU64; LEVELS.len()]; 2],
    logs_dropped: [[AtomicU64; 3]; DROP_REASONS.len()],
    logs_parse_failures: AtomicU64,
    logs_truncated: AtomicU64,
    logs_lost_bytes: AtomicU64,
    logs_pii_replaced: AtomicU64,
    active_series: AtomicU64,
    budget: AtomicU64,
    rejected: [AtomicU64; REJECT_REASONS.len()],
    /// statsd lines accepted and malformed.
    statsd_lines: [AtomicU64; 2],
    /// OTLP requests by transport and result.
    otlp_requests: [AtomicU64; OTLP_RESULTS.len()],
    /// OTLP items (data points, log records) by signal and result.
    otlp_items: [[AtomicU64; OTLP_ITEM_RESULTS.len()]; OTLP_SIGNALS.len()],
    /// OTLP exemplars dropped.
    otlp_exemplars: AtomicU64,
    /// The client certificate's expiry (Unix seconds); 0 without TLS.
    cert_expiry: Arc<AtomicI64>,
    /// Config reloads (SIGHUP), applied and refused.
    reloads: [AtomicU64; 2],
    /// Whether the last reload was applied (or there was none).
    reload_failed: std::sync::atomic::AtomicBool,
    /// When the config in force was loaded (Unix seconds).
    config_loaded_at: AtomicI64,
    /// The first 48 bits of the SHA-256 of the config set in force (`agent.yaml`,
    /// policy, catalog): exact in an f64.
    config_hash: AtomicU64,
    /// Open `edge-agent tap`s, and the records dropped for them.
    taps: crate::tap::Taps,
}

/// The agent's version, as `edge_build_info{version}`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Log levels, as the `level` label.
pub const LEVELS: [Level; 7] = [
    Level::Unknown,
    Level::Trace,
    Level::Debug,
    Level::Info,
    Level::Warn,
    Level::Error,
    Level::Fatal,
];

/// OTLP signals, as the `signal` label (spans count in `edge_traces_spans_total`).
pub const OTLP_SIGNALS: [&str; 2] = ["metrics", "logs"];

/// What became of an OTLP request, as the `result` label of `edge_otlp_requests_total`:
/// taken whole, taken with some items refused (`partial_success`), refused (a body that
/// does not decode, over the size limit, a content type not spoken: 400 / 413 / 415,
/// `InvalidArgument` / `ResourceExhausted`), or the agent shedding the signal (503 /
/// `Unavailable`). The signal and the finer reason are in the client's answer: the
/// catalog's estimate must stay within the host's 300 series.
pub const OTLP_RESULTS: [&str; 4] = ["ok", "partial", "refused", "unavailable"];

/// What became of OTLP items, as the `result` label of `edge_otlp_items_total`:
/// accepted; refused (by the label policy or the budget, with values folded into
/// overflow series and the reason in `edge_series_rejected_total`; invalid, with the
/// reason in `edge_series_invalid_total` when a store would refuse it; or a point not
/// newer than the last one of its series); dropped (log records a filter, the sampler or
/// a detector dropped, reason in `edge_logs_dropped_total`, or with nowhere to go;
/// spans the traces path refused).
pub const OTLP_ITEM_RESULTS: [&str; 3] = ["accepted", "refused", "dropped"];

/// The `result` of [`OTLP_RESULTS`] a finer outcome counts under.
fn otlp_request_slot(result: &str) -> Option<usize> {
    let r = match result {
        "bad_request" | "too_large" | "unsupported" => "refused",
        other => other,
    };
    OTLP_RESULTS.iter().position(|x| *x == r)
}

/// The `result` of [`OTLP_ITEM_RESULTS`] a finer reason counts under.
fn otlp_item_slot(result: &str) -> Option<usize> {
    let r = match result {
        "policy" | "budget" | "invalid" | "out_of_order" => "refused",
        other => other,
    };
    OTLP_ITEM_RESULTS.iter().position(|x| *x == r)
}

/// Why a log record was dropped, as the `reason` label of `edge_logs_dropped_total`.
pub const DROP_REASONS: [&str; 5] = ["min_level", "drop_rule", "sampled", "shed", "pii_drop"];

/// What became of a span offered to the agent, as the `result` label of
/// `edge_traces_spans_total`: queued for the gateway; refused (a PII detector whose
/// action is drop matched it; the client is told in `rejected_spans`); shed (the agent
/// was shedding traces and the client was told to retry); lost (accepted, then its
/// batch could not be compressed or written to the disk queue, logged: a subset of
/// accepted).
pub const SPAN_RESULTS: [&str; 4] = ["accepted", "refused", "shed", "lost"];

fn class_slot(class: Class) -> usize {
    match class {
        Class::LogsDebug => 0,
        Class::LogsInfo => 1,
        // Only log classes are counted here; traces count in `edge_traces_spans_total`.
        Class::LogsWarn | Class::Traces | Class::Metrics => 2,
    }
}

const LOG_CLASSES: [Class; 3] = [Class::LogsDebug, Class::LogsInfo, Class::LogsWarn];

impl Telemetry {
    /// One answer (or a transport error) and how long it took.
    pub fn response(&self, stream: Stream, status: Option<u16>, took: Duration) {
        let s = &self.streams[stream.index()];
        let code = code_class(status);
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            s.responses[i].fetch_add(1, Relaxed);
        }
        s.duration.record(took.as_secs_f64());
    }

    /// Answers of class `code` so far.
    pub fn responses(&self, stream: Stream, code: &str) -> u64 {
        CODES.iter().position(|c| *c == code).map_or(0, |i| {
            self.streams[stream.index()].responses[i].load(Relaxed)
        })
    }

    /// The config set in force: its hash, loaded now (at start, or by a reload).
    pub fn config_loaded(&self, sha256: &str) {
        let hash = sha256
            .get(..12)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        self.config_hash.store(hash, Relaxed);
        self.config_loaded_at.store(unix_now(), Relaxed);
    }

    /// A reload applied (`true`) or refused.
    pub fn reloaded(&self, applied: bool) {
        self.reloads[usize::from(!applied)].fetch_add(1, Relaxed);
        self.reload_failed.store(!applied, Relaxed);
    }

    /// Reloads so far: `(applied, refused)`.
    pub fn reloads(&self) -> (u64, u64) {
        (self.reloads[0].load(Relaxed), self.reloads[1].load(Relaxed))
    }

    /// A batch refused for good.
    pub fn dropped(&self, stream: Stream) {
        self.streams[stream.index()].dropped.fetch_add(1, Relaxed);
    }

    /// Log records queued, by origin and level.
    pub fn logs_queued(&self, origin: crate::logs::record::Origin, level: Level, n: u64) {
        let o = match origin {
            crate::logs::record::Origin::File => 0,
            crate::logs::record::Origin::Otlp => 1,
        };
        if let Some(i) = LEVELS.iter().position(|l| *l == level) {
            self.logs_records[o][i].fetch_add(n, Relaxed);
        }
    }

    /// One OTLP request answered (either transport): `result` is one of
    /// [`OTLP_RESULTS`] or a finer one (`bad_request`, `too_large`, `unsupported`) that
    /// counts as `refused`.
    pub fn otlp_request(&self, result: &str) {
        if let Some(r) = otlp_request_slot(result) {
            self.otlp_requests[r].fetch_add(1, Relaxed);
        }
    }

    /// OTLP items of `signal` with `result` (one of [`OTLP_ITEM_RESULTS`], or a finer
    /// reason, `policy`, `budget`, `invalid`, `out_of_order`, that counts as `refused`).
    pub fn otlp_items(&self, signal: &str, result: &str, n: u64) {
        let s = OTLP_SIGNALS.iter().position(|x| *x == signal);
        if let (Some(s), Some(r)) = (s, otlp_item_slot(result))
            && n > 0
        {
            self.otlp_items[s][r].fetch_add(n, Relaxed);
        }
    }

    /// OTLP exemplars dropped.
    pub fn otlp_exemplars_dropped(&self, n: u64) {
        self.otlp_exemplars.fetch_add(n, Relaxed);
    }

    /// A log record dropped for `reason` (one of [`DROP_REASONS`]) from `class`.
    pub fn log_dropped(&self, reason: &str, class: Class) {
        if let Some(i) = DROP_REASONS.iter().position(|r| *r == reason) {
            self.logs_dropped[i][class_slot(class)].fetch_add(1, Relaxed);
        }
    }

    /// Log records dropped for `reason` from `class` so far.
    pub fn logs_dropped(&self, reason: &str, class: Class) -> u64 {
        DROP_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.logs_dropped[i][class_slot(class)].load(Relaxed))
    }

    /// A line kept as plain text because it did not parse.
    pub fn log_parse_failed(&self) {
        self.logs_parse_failures.fetch_add(1, Relaxed);
    }

    /// A piece of a line over the maximum.
    pub fn log_truncated(&self) {
        self.logs_truncated.fetch_add(1, Relaxed);
    }

    /// Bytes of log files that had a position but were gone at restart.
    pub fn logs_lost_bytes(&self, n: u64) {
        self.logs_lost_bytes.fetch_add(n, Relaxed);
    }

    /// PII values replaced.
    pub fn pii_replaced(&self, n: u64) {
        self.logs_pii_replaced.fetch_add(n, Relaxed);
    }

    /// `n` spans with `result` (one of [`SPAN_RESULTS`]).
    pub fn spans(&self, result: &str, n: u64) {
        if let Some(i) = SPAN_RESULTS.iter().position(|r| *r == result) {
            self.spans[i].fetch_add(n, Relaxed);
        }
    }

    /// Spans with `result` so far.
    pub fn spans_counted(&self, result: &str) -> u64 {
        SPAN_RESULTS
            .iter()
            .position(|r| *r == result)
            .map_or(0, |i| self.spans[i].load(Relaxed))
    }

    /// A failed scrape.
    pub fn scrape_failed(&self) {
        self.scrape_failures.fetch_add(1, Relaxed);
    }

    /// The cadence now in force.
    pub fn set_cadence(&self, cadence: Duration) {
        self.cadence_ms.store(
            u64::try_from(cadence.as_millis()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// The queue's figures.
    pub fn set_queue(&self, q: &QueueFigures) {
        for i in 0..CLASSES {
            self.queue_bytes[i].store(q.bytes[i], Relaxed);
            self.queue_records[i].store(q.records[i], Relaxed);
            self.queue_shed[i].store(q.shed[i], Relaxed);
            self.queue_shed_batches[i].store(q.shed_batches[i], Relaxed);
            self.queue_lost_bytes[i].store(q.lost_bytes[i], Relaxed);
        }
    }

    /// Records waiting in `class`.
    pub fn queue_records(&self, class: Class) -> u64 {
        self.queue_records[class as usize].load(Relaxed)
    }

    /// Bytes in the disk queue, all classes, as of the last queue operation (read
    /// without touching the queue's lock).
    pub fn queue_total_bytes(&self) -> u64 {
        self.queue_bytes.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The open taps, which the pipelines' hooks hand records to (see [`crate::tap`]).
    pub fn taps(&self) -> &crate::tap::Taps {
        &self.taps
    }

    /// Where the TLS client reports its certificate's expiry.
    pub fn cert_expiry(&self) -> Arc<AtomicI64> {
        self.cert_expiry.clone()
    }

    /// statsd lines taken and refused.
    pub fn statsd_lines(&self, accepted: u64, malformed: u64) {
        self.statsd_lines[0].fetch_add(accepted, Relaxed);
        self.statsd_lines[1].fetch_add(malformed, Relaxed);
    }

    /// The gate's figures.
    pub fn set_gate(&self, active: usize, budget: usize, rejected: &[u64; REJECT_REASONS.len()]) {
        self.active_series.store(active as u64, Relaxed);
        self.budget.store(budget as u64, Relaxed);
        for (slot, n) in self.rejected.iter().zip(rejected) {
            slot.store(*n, Relaxed);
        }
    }

    /// Every self-metric series with its value, stamped `timestamp`.
    #[allow(clippy::cast_precision_loss)] // counters stay far below 2^53
    pub fn snapshot(&self, timestamp: i64) -> Vec<(SeriesKey, Point)> {
        let mut out = Vec::with_capacity(64);
        let mut push = |name: &str, labels: &[(&str, &str)], value: f64| {
            out.push((
                SeriesKey::new(
                    name,
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                ),
                Point::Float { value, timestamp },
            ));
        };
        let load = |a: &AtomicU64| a.load(Relaxed) as f64;
        push(
            "edge_build_info",
            &[("daemon", "agent"), ("version", VERSION)],
            1.0,
        );
        let expiry = self.cert_expiry.load(Relaxed);
        if expiry > 0 {
            push(
                "edge_tls_cert_expiry_timestamp_seconds",
                &[("daemon", "agent"), ("cert", "client")],
                expiry as f64,
            );
        }
        push(
            "edge_config_last_reload_successful",
            &[],
            if self.reload_failed.load(Relaxed) {
                0.0
            } else {
                1.0
            },
        );
        push(
            "edge_config_last_reload_success_timestamp_seconds",
            &[],
            self.config_loaded_at.load(Relaxed) as f64,
        );
        for (result, n) in ["success", "failure"].iter().zip(&self.reloads) {
            push("edge_config_reloads_total", &[("result", result)], load(n));
        }
        let hash = self.config_hash.load(Relaxed);
        if hash > 0 {
            push("edge_config_hash", &[], hash as f64);
        }
        push("edge_active_series", &[], load(&self.active_series));
        push("edge_series_budget", &[], load(&self.budget));
        for (i, (reason, n)) in REJECT_REASONS.iter().zip(&self.rejected).enumerate() {
            if i < POLICY_REASONS {
                push(
                    "edge_series_rejected_total",
                    &[("reason", reason), ("stage", "agent")],
                    load(n),
                );
            } else {
                push("edge_series_invalid_total", &[("reason", reason)], load(n));
            }
        }
        push("edge_cadence_seconds", &[], load(&self.cadence_ms) / 1000.0);
        for (result, n) in ["accepted", "malformed"].iter().zip(&self.statsd_lines) {
            push("edge_statsd_lines_total", &[("result", result)], load(n));
        }
        for class in Class::ALL {
            let i = class as usize;
            let l = [("class", class.name())];
            push("edge_queue_bytes", &l, load(&self.queue_bytes[i]));
            push("edge_queue_records", &l, load(&self.queue_records[i]));
            push(
                "edge_queue_shed_records_total",
                &l,
                load(&self.queue_shed[i]),
            );
        }
        // Bytes lost to torn or corrupt records, all classes together (which segment and
        // offset is logged).
        push(
            "edge_queue_lost_bytes_total",
            &[],
            self.queue_lost_bytes.iter().map(load).sum(),
        );
        // Batches shed, all classes together (the records shed are per class above).
        push(
            "edge_queue_shed_batches_total",
            &[],
            self.queue_shed_batches.iter().map(load).sum(),
        );
        push(
            "edge_scrape_failures_total",
            &[],
            load(&self.scrape_failures),
        );
        for (level, n) in LEVELS.iter().zip(&self.logs_records[0]) {
            push(
                "edge_logs_records_total",
                &[("level", level.name()), ("source", "file")],
                load(n),
            );
        }
        // The OTLP receivers' series appear once they have something to say: a host
        // whose game sends no OTLP spends none of its budget on them.
        for (level, n) in LEVELS.iter().zip(&self.logs_records[1]) {
            if load(n) > 0.0 {
                push(
                    "edge_logs_records_total",
                    &[("level", level.name()), ("source", "otlp")],
                    load(n),
                );
            }
        }
        for (result, n) in OTLP_RESULTS.iter().zip(&self.otlp_requests) {
            if load(n) > 0.0 {
                push("edge_otlp_requests_total", &[("result", result)], load(n));
            }
        }
        for (signal, by_result) in OTLP_SIGNALS.iter().zip(&self.otlp_items) {
            for (result, n) in OTLP_ITEM_RESULTS.iter().zip(by_result) {
                if load(n) > 0.0 {
                    push(
                        "edge_otlp_items_total",
                        &[("signal", signal), ("result", result)],
                        load(n),
                    );
                }
            }
        }
        if load(&self.otlp_exemplars) > 0.0 {
            push(
                "edge_otlp_exemplars_dropped_total",
                &[],
                load(&self.otlp_exemplars),
            );
        }
        for (reason, by_class) in DROP_REASONS.iter().zip(&self.logs_dropped) {
            for (class, n) in LOG_CLASSES.iter().zip(by_class) {
                push(
                    "edge_logs_dropped_total",
                    &[("reason", reason), ("class", class.name())],
                    load(n),
                );
            }
        }
        push(
            "edge_logs_parse_failures_total",
            &[],
            load(&self.logs_parse_failures),
        );
        push(
            "edge_logs_truncated_lines_total",
            &[],
            load(&self.logs_truncated),
        );
        push(
            "edge_logs_lost_bytes_total",
            &[],
            load(&self.logs_lost_bytes),
        );
        push(
            "edge_logs_pii_replaced_total",
            &[],
            load(&self.logs_pii_replaced),
        );
        for (result, n) in SPAN_RESULTS.iter().zip(&self.spans) {
            push("edge_traces_spans_total", &[("result", result)], load(n));
        }
        push("edge_tap_dropped_total", &[], self.taps.dropped() as f64);
        for stream in STREAMS {
            let s = &self.streams[stream.index()];
            for (code, n) in CODES.iter().zip(&s.responses) {
                push(
                    "edge_send_responses_total",
                    &[("stream", stream.name()), ("code", code)],
                    load(n),
                );
            }
            push(
                "edge_send_dropped_batches_total",
                &[("stream", stream.name())],
                load(&s.dropped),
            );
        }
        for stream in STREAMS {
            let h = self.streams[stream.index()].duration.snapshot();
            out.push((
                SeriesKey::new(
                    "edge_send_duration_seconds",
                    vec![("stream".into(), stream.name().into())],
                ),
                Point::Histogram(Box::new(native_to_proto(&h.to_native(), timestamp))),
            ));
        }
        out
    }
}

/// Renders series as Prometheus text (native histograms as their count and sum).
pub fn render_text(series: &[(SeriesKey, Point)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (key, point) in series {
        let labels = edge_schema::exposition::label_set(&key.labels);
        match point {
            Point::Float { value, .. } => {
                let _ = writeln!(out, "{}{labels} {value}", key.name);
            }
            Point::Histogram(h) => {
                let count = match h.count {
                    Some(edge_schema::proto::prometheus::histogram::Count::CountInt(n)) => n as f64,
                    Some(edge_schema::proto::prometheus::histogram::Count::CountFloat(f)) => f,
                    None => 0.0,
                };
                let _ = writeln!(out, "{}_count{labels} {count}", key.name);
                let _ = writeln!(out, "{}_sum{labels} {}", key.name, h.sum);
            }
        }
    }
    out
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
