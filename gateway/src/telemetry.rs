//! The gateway's and the relay's own metrics, in one place: every name they report
//! about themselves is declared here once, typed (a [`Counter`] can only be added to, a
//! [`Gauge`] only set, a [`HistogramDef`] only observed), and served as Prometheus text
//! at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Buckets (seconds) for request and commit latencies.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets (seconds) for sample age at ingest.
pub const AGE_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

/// Buckets (seconds) for the relay's freshness.
pub const RELAY_FRESHNESS_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// A counter family: its name and help.
#[derive(Debug)]
pub struct Counter {
    /// The metric name.
    pub name: &'static str,
    /// Its `# HELP`.
    pub help: &'static str,
}

/// A gauge family: its name and help.
#[derive(Debug)]
pub struct Gauge {
    /// The metric name.
    pub name: &'static str,
    /// Its `# HELP`.
    pub help: &'static str,
}

/// A histogram family: its name, help and buckets.
#[derive(Debug)]
pub struct HistogramDef {
    /// The metric name.
    pub name: &'static str,
    /// Its `# HELP`.
    pub help: &'static str,
    /// Its bucket bounds.
    pub buckets: &'static [f64],
}

// Every metric the gateway and the relay report about themselves, declared once.

/// `edge_gateway_overload_stage` (gauge).
pub const GATEWAY_OVERLOAD_STAGE: Gauge = Gauge {
    name: "edge_gateway_overload_stage",
    help: "0 normal; k applies the first k overload actions; one past them answers 503.",
};
/// `edge_gateway_admission_limit` (gauge).
pub const GATEWAY_ADMISSION_LIMIT: Gauge = Gauge {
    name: "edge_gateway_admission_limit",
    help: "Requests that may do their work at once now (the adaptive limit).",
};
/// `edge_gateway_admission_in_flight` (gauge).
pub const GATEWAY_ADMISSION_IN_FLIGHT: Gauge = Gauge {
    name: "edge_gateway_admission_in_flight",
    help: "Requests doing their work now (decoding, checking, building records).",
};
/// `edge_gateway_admission_queued` (gauge).
pub const GATEWAY_ADMISSION_QUEUED: Gauge = Gauge {
    name: "edge_gateway_admission_queued",
    help: "Requests waiting for a slot now.",
};
/// `edge_gateway_admission_refused_total` (counter).
pub const GATEWAY_ADMISSION_REFUSED_TOTAL: Counter = Counter {
    name: "edge_gateway_admission_refused_total",
    help: "Requests answered 503 by admission control, by reason (queue_timeout, queue_full, shed_early) and tenant priority.",
};
/// `edge_gateway_sink_backlog_records` (gauge).
pub const GATEWAY_SINK_BACKLOG_RECORDS: Gauge = Gauge {
    name: "edge_gateway_sink_backlog_records",
    help: "Records handed to a sink, not yet committed.",
};
/// `edge_gateway_sink_backlog_bytes` (gauge).
pub const GATEWAY_SINK_BACKLOG_BYTES: Gauge = Gauge {
    name: "edge_gateway_sink_backlog_bytes",
    help: "Bytes handed to a sink, not yet committed.",
};
/// `edge_gateway_active_series` (gauge).
pub const GATEWAY_ACTIVE_SERIES: Gauge = Gauge {
    name: "edge_gateway_active_series",
    help: "Series of a tenant written in the last 5 minutes, on this replica.",
};
/// `edge_gateway_tls_handshake_failures_total` (counter).
pub const GATEWAY_TLS_HANDSHAKE_FAILURES_TOTAL: Counter = Counter {
    name: "edge_gateway_tls_handshake_failures_total",
    help: "TLS handshakes refused or failed.",
};
/// `edge_gateway_connections_closed_total` (counter).
pub const GATEWAY_CONNECTIONS_CLOSED_TOTAL: Counter = Counter {
    name: "edge_gateway_connections_closed_total",
    help: "Connections the gateway closed itself, by reason (over_cap, handshake_timeout, idle).",
};
/// `edge_gateway_open_connections` (gauge).
pub const GATEWAY_OPEN_CONNECTIONS: Gauge = Gauge {
    name: "edge_gateway_open_connections",
    help: "Connections open on the data port.",
};
/// `edge_gateway_requests_total` (counter).
pub const GATEWAY_REQUESTS_TOTAL: Counter = Counter {
    name: "edge_gateway_requests_total",
    help: "Requests by endpoint and status.",
};
/// `edge_gateway_ttfb_seconds` (histogram).
pub const GATEWAY_TTFB_SECONDS: HistogramDef = HistogramDef {
    name: "edge_gateway_ttfb_seconds",
    help: "Time from a request's arrival to its answer (which waits for the sink's commit).",
    buckets: LATENCY_BUCKETS,
};
/// `tenant_over_limit_total` (counter).
pub const TENANT_OVER_LIMIT_TOTAL: Counter = Counter {
    name: "tenant_over_limit_total",
    help: "Requests refused because a tenant was over a limit.",
};
/// `edge_gateway_decompressed_bytes_total` (counter).
pub const GATEWAY_DECOMPRESSED_BYTES_TOTAL: Counter = Counter {
    name: "edge_gateway_decompressed_bytes_total",
    help: "Bytes of request bodies after their Content-Encoding, for the bodies that decoded.",
};
/// `edge_gateway_samples_accepted_total` (counter).
pub const GATEWAY_SAMPLES_ACCEPTED_TOTAL: Counter = Counter {
    name: "edge_gateway_samples_accepted_total",
    help: "Samples (and histograms) committed, by tenant.",
};
/// `edge_gateway_sample_age_seconds` (histogram).
pub const GATEWAY_SAMPLE_AGE_SECONDS: HistogramDef = HistogramDef {
    name: "edge_gateway_sample_age_seconds",
    help: "Age at ingest of each series' newest sample (freshness).",
    buckets: AGE_BUCKETS,
};
/// `edge_gateway_log_records_accepted_total` (counter).
pub const GATEWAY_LOG_RECORDS_ACCEPTED_TOTAL: Counter = Counter {
    name: "edge_gateway_log_records_accepted_total",
    help: "Log records committed, by tenant.",
};
/// `edge_gateway_spans_accepted_total` (counter).
pub const GATEWAY_SPANS_ACCEPTED_TOTAL: Counter = Counter {
    name: "edge_gateway_spans_accepted_total",
    help: "Spans committed to the traces sink, by tenant.",
};
/// `edge_gateway_config_last_reload_successful` (gauge).
pub const GATEWAY_CONFIG_LAST_RELOAD_SUCCESSFUL: Gauge = Gauge {
    name: "edge_gateway_config_last_reload_successful",
    help: "Whether the last config reload succeeded.",
};
/// `edge_gateway_config_reloads_total` (counter).
pub const GATEWAY_CONFIG_RELOADS_TOTAL: Counter = Counter {
    name: "edge_gateway_config_reloads_total",
    help: "Config reloads by result.",
};
/// `edge_gateway_config_last_reload_success_timestamp_seconds` (gauge).
pub const GATEWAY_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: Gauge = Gauge {
    name: "edge_gateway_config_last_reload_success_timestamp_seconds",
    help: "When the config was last loaded.",
};
/// `edge_gateway_config_info` (gauge).
pub const GATEWAY_CONFIG_INFO: Gauge = Gauge {
    name: "edge_gateway_config_info",
    help: "The config in force (its SHA-256).",
};
/// `edge_relay_shards_reading` (gauge).
pub const RELAY_SHARDS_READING: Gauge = Gauge {
    name: "edge_relay_shards_reading",
    help: "Shards this relay is reading now.",
};
/// `edge_relay_retries_total` (counter).
pub const RELAY_RETRIES_TOTAL: Counter = Counter {
    name: "edge_relay_retries_total",
    help: "Calls retried, by reason.",
};
/// `edge_relay_millis_behind_latest` (gauge).
pub const RELAY_MILLIS_BEHIND_LATEST: Gauge = Gauge {
    name: "edge_relay_millis_behind_latest",
    help: "How far the shard's reader is behind the tip (GetRecords' MillisBehindLatest).",
};
/// `edge_relay_records_skipped_total` (counter).
pub const RELAY_RECORDS_SKIPPED_TOTAL: Counter = Counter {
    name: "edge_relay_records_skipped_total",
    help: "Records not forwarded, by reason.",
};
/// `edge_relay_records_forwarded_total` (counter).
pub const RELAY_RECORDS_FORWARDED_TOTAL: Counter = Counter {
    name: "edge_relay_records_forwarded_total",
    help: "Records the target accepted.",
};
/// `edge_relay_bytes_forwarded_total` (counter).
pub const RELAY_BYTES_FORWARDED_TOTAL: Counter = Counter {
    name: "edge_relay_bytes_forwarded_total",
    help: "Bytes (snappy) of the records the target accepted.",
};
/// `edge_relay_requests_total` (counter).
pub const RELAY_REQUESTS_TOTAL: Counter = Counter {
    name: "edge_relay_requests_total",
    help: "remote_write requests the target accepted (records are merged into few).",
};
/// `edge_relay_leases_held` (gauge).
pub const RELAY_LEASES_HELD: Gauge = Gauge {
    name: "edge_relay_leases_held",
    help: "Shard leases this relay holds in the lease table.",
};
/// `edge_relay_lease_steals_total` (counter).
pub const RELAY_LEASE_STEALS_TOTAL: Counter = Counter {
    name: "edge_relay_lease_steals_total",
    help: "Leases this relay took from a live relay holding more than its share.",
};
/// `edge_relay_leases_lost_total` (counter).
pub const RELAY_LEASES_LOST_TOTAL: Counter = Counter {
    name: "edge_relay_leases_lost_total",
    help: "Leases this relay gave up at renewal, by reason.",
};
/// `edge_relay_checkpoint_conflicts_total` (counter).
pub const RELAY_CHECKPOINT_CONFLICTS_TOTAL: Counter = Counter {
    name: "edge_relay_checkpoint_conflicts_total",
    help: "Checkpoints refused because another relay holds the lease now (the shard is given up).",
};
/// `edge_relay_freshness_seconds` (histogram).
pub const RELAY_FRESHNESS_SECONDS: HistogramDef = HistogramDef {
    name: "edge_relay_freshness_seconds",
    help: "Now minus the newest sample timestamp of each forwarded record.",
    buckets: RELAY_FRESHNESS_BUCKETS,
};
/// `edge_gateway_sink_commit_seconds` (histogram).
pub const GATEWAY_SINK_COMMIT_SECONDS: HistogramDef = HistogramDef {
    name: "edge_gateway_sink_commit_seconds",
    help: "Time from handing records to a sink to their commit.",
    buckets: LATENCY_BUCKETS,
};
/// `edge_gateway_discarded_samples_total` (counter).
pub const GATEWAY_DISCARDED_SAMPLES_TOTAL: Counter = Counter {
    name: "edge_gateway_discarded_samples_total",
    help: "Samples refused, by tenant and reason.",
};
/// `edge_gateway_discarded_log_records_total` (counter).
pub const GATEWAY_DISCARDED_LOG_RECORDS_TOTAL: Counter = Counter {
    name: "edge_gateway_discarded_log_records_total",
    help: "Log records refused, by tenant and reason.",
};
/// `edge_gateway_log_records_tokenized_total` (counter).
pub const GATEWAY_LOG_RECORDS_TOKENIZED_TOTAL: Counter = Counter {
    name: "edge_gateway_log_records_tokenized_total",
    help: "Log records that arrived without an agent and were tokenized by the gateway, by tenant.",
};
/// `edge_gateway_spans_tokenized_total` (counter).
pub const GATEWAY_SPANS_TOKENIZED_TOTAL: Counter = Counter {
    name: "edge_gateway_spans_tokenized_total",
    help: "Spans tokenized at the gateway because they arrived without an agent, by tenant.",
};
/// `edge_gateway_discarded_spans_total` (counter).
pub const GATEWAY_DISCARDED_SPANS_TOTAL: Counter = Counter {
    name: "edge_gateway_discarded_spans_total",
    help: "Spans refused, by tenant and reason.",
};
/// `edge_gateway_tap_dropped_total` (counter).
pub const GATEWAY_TAP_DROPPED_TOTAL: Counter = Counter {
    name: "edge_gateway_tap_dropped_total",
    help: "Committed records a tap on the admin port had no room for (its reader is slow), by signal; ingest is never held up for a tap.",
};

/// `edge_build_info` (gauge).
pub const BUILD_INFO: Gauge = Gauge {
    name: "edge_build_info",
    help: "Always 1; the daemon and its version as labels.",
};
/// `edge_tls_cert_expiry_timestamp_seconds` (gauge).
pub const TLS_CERT_EXPIRY_TIMESTAMP_SECONDS: Gauge = Gauge {
    name: "edge_tls_cert_expiry_timestamp_seconds",
    help: "When the certificate the daemon presents expires (Unix time).",
};

/// A classic histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one value (seconds).
    pub fn observe(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// `a="x",b="y"`.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    edge_schema::exposition::label_pairs(pairs)
}

/// A histogram family: help, buckets, and a histogram per label set.
type HistogramFamily = (&'static str, &'static [f64], BTreeMap<String, Histogram>);

#[derive(Debug, Default)]
struct Families {
    /// name → (help, type, series labels → value)
    counters: BTreeMap<&'static str, (&'static str, BTreeMap<String, f64>)>,
    gauges: BTreeMap<&'static str, (&'static str, BTreeMap<String, f64>)>,
    histograms: BTreeMap<&'static str, HistogramFamily>,
}

/// A commit that ended: when, when it began, how long it took, and whose it was.
type EndedCommit = (Instant, Instant, Duration, Arc<str>);

/// The registry.
#[derive(Debug, Default)]
pub struct Telemetry {
    families: Mutex<Families>,
    /// Recent sink commits (for the overload p99), newest last: when each ended,
    /// when it began, how long it took, and whose it was.
    recent_commits: Mutex<std::collections::VecDeque<EndedCommit>>,
    /// Commits under way: id → when each began, and whose it is.
    in_flight: Mutex<std::collections::HashMap<u64, (Instant, Arc<str>)>>,
    next_commit: AtomicU64,
}

/// How far back the overload p99 looks.
pub const COMMIT_WINDOW: Duration = Duration::from_secs(10);

/// A sink commit being timed (see [`Telemetry::commit_begins`]). It counts as under way
/// until [`CommitTimer::done`] or until it is dropped (its request went away first).
#[derive(Debug)]
pub struct CommitTimer<'a> {
    telemetry: &'a Telemetry,
    sink: &'static str,
    tenant: Arc<str>,
    id: u64,
    began: Instant,
}

impl CommitTimer<'_> {
    /// The commit ended (either way): its latency goes into the sink's histogram and
    /// the overload p99.
    pub fn done(self) {
        self.telemetry.commit_took(
            self.sink,
            self.tenant.clone(),
            self.began,
            self.began.elapsed(),
        );
    }
}

impl Drop for CommitTimer<'_> {
    fn drop(&mut self) {
        self.telemetry
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Telemetry {
    fn with<R>(&self, f: impl FnOnce(&mut Families) -> R) -> R {
        let mut g = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// Adds `by` to a counter.
    pub fn add(&self, metric: &Counter, labels: String, by: f64) {
        let (name, help) = (metric.name, metric.help);
        self.with(|f| {
            *f.counters
                .entry(name)
                .or_insert_with(|| (help, BTreeMap::new()))
                .1
                .entry(labels)
                .or_insert(0.0) += by;
        });
    }

    /// Sets a gauge.
    pub fn set(&self, metric: &Gauge, labels: String, value: f64) {
        let (name, help) = (metric.name, metric.help);
        self.with(|f| {
            f.gauges
                .entry(name)
                .or_insert_with(|| (help, BTreeMap::new()))
                .1
                .insert(labels, value);
        });
    }

    /// Replaces every series of a gauge family (an info metric whose label changes).
    pub fn set_only(&self, metric: &Gauge, series: BTreeMap<String, f64>) {
        self.with(|f| {
            f.gauges.insert(metric.name, (metric.help, series));
        });
    }

    /// Records into a histogram.
    pub fn observe(&self, metric: &HistogramDef, labels: String, seconds: f64) {
        let (name, help, bounds) = (metric.name, metric.help, metric.buckets);
        self.with(|f| {
            f.histograms
                .entry(name)
                .or_insert_with(|| (help, bounds, BTreeMap::new()))
                .2
                .entry(labels)
                .or_insert_with(|| Histogram::new(bounds))
                .observe(seconds);
        });
    }

    /// Records many values into one histogram series at once.
    pub fn observe_many(&self, metric: &HistogramDef, labels: String, values: &[f64]) {
        let (name, help, bounds) = (metric.name, metric.help, metric.buckets);
        if values.is_empty() {
            return;
        }
        self.with(|f| {
            let h = f
                .histograms
                .entry(name)
                .or_insert_with(|| (help, bounds, BTreeMap::new()))
                .2
                .entry(labels)
                .or_insert_with(|| Histogram::new(bounds));
            for v in values {
                h.observe(*v);
            }
        });
    }

    /// A counter's value (tests and the summary).
    pub fn counter(&self, metric: &Counter, labels: &str) -> f64 {
        self.with(|f| {
            f.counters
                .get(metric.name)
                .and_then(|(_, m)| m.get(labels))
                .copied()
                .unwrap_or(0.0)
        })
    }

    /// A commit of `tenant`'s records to `sink` begins; time it with the returned timer.
    pub fn commit_begins(&self, sink: &'static str, tenant: &str) -> CommitTimer<'_> {
        let id = self.next_commit.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let tenant: Arc<str> = Arc::from(tenant);
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, (began, tenant.clone()));
        CommitTimer {
            telemetry: self,
            sink,
            tenant,
            id,
            began,
        }
    }

    fn commit_took(&self, sink: &str, tenant: Arc<str>, began: Instant, took: Duration) {
        self.observe(
            &GATEWAY_SINK_COMMIT_SECONDS,
            labels(&[("sink", sink)]),
            took.as_secs_f64(),
        );
        let now = Instant::now();
        let mut recent = self
            .recent_commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.push_back((now, began, took, tenant));
        while recent
            .front()
            .is_some_and(|(at, _, _, _)| now.saturating_duration_since(*at) > COMMIT_WINDOW)
            || recent.len() > 10_000
        {
            recent.pop_front();
        }
    }

    /// The commits that describe the sinks now, with their tenants: those that began
    /// within the last [`COMMIT_WINDOW`] and ended, and every commit still under way with
    /// its age. A commit that began before the window describes the sink as it was:
    /// after an outage, the commits that waited it out end all at once with long
    /// latencies while the sink is healthy again, and counting them would shed load just
    /// when the backlog should drain.
    fn recent_commit_latencies(&self) -> Vec<(Arc<str>, Duration)> {
        let now = Instant::now();
        let mut took: Vec<(Arc<str>, Duration)> = self
            .recent_commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, began, _, _)| now.saturating_duration_since(*began) <= COMMIT_WINDOW)
            .map(|(_, _, d, t)| (t.clone(), *d))
            .collect();
        took.extend(
            self.in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .map(|(began, t)| (t.clone(), now.saturating_duration_since(*began))),
        );
        took
    }

    /// How slow the sinks are now: the p99 over the recent commits of every tenant
    /// (see [`Telemetry::commit_p99_by_tenant`] for what the overload controller judges).
    pub fn commit_p99(&self) -> Duration {
        p99(self
            .recent_commit_latencies()
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    /// Per tenant, the p99 of its recent commits and how many there were: one tenant's
    /// slow or failing commits (a poison series its store refuses and the sink retries)
    /// say nothing about the sink for the others.
    pub fn commit_p99_by_tenant(&self) -> BTreeMap<String, (Duration, usize)> {
        let mut by: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        for (tenant, d) in self.recent_commit_latencies() {
            by.entry(tenant.to_string()).or_default().push(d);
        }
        by.into_iter()
            .map(|(t, v)| {
                let n = v.len();
                (t, (p99(v), n))
            })
            .collect()
    }

    /// Whether the sinks' commits are stuck: one has been under way longer than `after`
    /// and none ended within the last [`COMMIT_WINDOW`] (slow commits that end, even
    /// failing, are progress).
    pub fn commits_stuck(&self, after: Duration) -> bool {
        let now = Instant::now();
        let oldest = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|(began, _)| now.saturating_duration_since(*began))
            .max();
        if oldest.is_none_or(|age| age <= after) {
            return false;
        }
        self.recent_commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .back()
            .is_none_or(|(ended, _, _, _)| now.saturating_duration_since(*ended) > COMMIT_WINDOW)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|f| {
            for (name, (help, series)) in &f.counters {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (labels, value) in series {
                    let _ = writeln!(out, "{name}{} {value}", braces(labels));
                }
            }
            for (name, (help, series)) in &f.gauges {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (labels, value) in series {
                    let _ = writeln!(out, "{name}{} {value}", braces(labels));
                }
            }
            for (name, (help, _, series)) in &f.histograms {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
                for (labels, h) in series {
                    h.render(&mut out, name, labels);
                }
            }
        });
        out
    }
}

/// Sets `edge_build_info{daemon,version}` (always 1) for `daemon` (gateway or relay).
pub fn set_build_info(t: &Telemetry, daemon: &str) {
    t.set(
        &BUILD_INFO,
        labels(&[("daemon", daemon), ("version", env!("CARGO_PKG_VERSION"))]),
        1.0,
    );
}

/// Sets `edge_tls_cert_expiry_timestamp_seconds{daemon,cert}` from the first certificate
/// of the PEM file `path`; a file that does not read or parse is logged and the gauge
/// keeps its last value.
pub fn set_cert_expiry(t: &Telemetry, daemon: &str, cert: &str, path: &std::path::Path) {
    let expiry = edge_daemon_kit::pem::first_not_after(path);
    match expiry {
        #[allow(clippy::cast_precision_loss)] // Unix seconds stay far below 2^53
        Ok(at) => t.set(
            &TLS_CERT_EXPIRY_TIMESTAMP_SECONDS,
            labels(&[("daemon", daemon), ("cert", cert)]),
            at as f64,
        ),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the certificate's expiry");
        }
    }
}

/// The 99th percentile (zero of nothing).
fn p99(mut took: Vec<Duration>) -> Duration {
    if took.is_empty() {
        return Duration::ZERO;
    }
    took.sort_unstable();
    took[(took.len() * 99 / 100).min(took.len() - 1)]
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_histograms() {
        let t = Telemetry::default();
        const X: Counter = Counter {
            name: "x_total",
            help: "X.",
        };
        const G: Gauge = Gauge {
            name: "g",
            help: "G.",
        };
        const H: HistogramDef = HistogramDef {
            name: "h_seconds",
            help: "H.",
            buckets: LATENCY_BUCKETS,
        };
        t.add(&X, labels(&[("tenant", "a\"b")]), 2.0);
        t.set(&G, String::new(), 3.0);
        t.observe(&H, labels(&[("e", "push")]), 0.003);
        let text = t.render();
        assert!(text.contains("x_total{tenant=\"a\\\"b\"} 2"), "{text}");
        assert!(text.contains("g 3"), "{text}");
        assert!(
            text.contains("h_seconds_bucket{e=\"push\",le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{e=\"push\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("h_seconds_count{e=\"push\"} 1"), "{text}");
        assert_eq!(t.counter(&X, "tenant=\"a\\\"b\""), 2.0);
    }

    #[test]
    fn build_info_and_certificate_expiry() {
        let t = Telemetry::default();
        set_build_info(&t, "relay");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let cert = params.self_signed(&key).expect("cert");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.crt");
        std::fs::write(&path, cert.pem()).expect("write");
        set_cert_expiry(&t, "gateway", "server", &path);
        // A file that is not a certificate leaves the gauge as it was.
        std::fs::write(&path, "garbage").expect("write");
        set_cert_expiry(&t, "gateway", "server", &path);
        let text = t.render();
        assert!(
            text.contains(&format!(
                "edge_build_info{{daemon=\"relay\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        // 2031-05-17T00:00:00Z
        assert!(
            text.contains(
                "edge_tls_cert_expiry_timestamp_seconds{daemon=\"gateway\",cert=\"server\"} 1936742400"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_overload_p99_counts_commits_under_way_but_not_those_from_before_the_window() {
        let t = Telemetry::default();
        assert_eq!(t.commit_p99(), Duration::ZERO);
        // A commit that waited out an outage ends now, long after it began: it does
        // not count.
        let long_ago = Instant::now() - Duration::from_secs(30);
        t.commit_took("metrics", "a".into(), long_ago, Duration::from_secs(30));
        assert_eq!(t.commit_p99(), Duration::ZERO);
        // One that began within the window counts.
        t.commit_took(
            "metrics",
            "a".into(),
            Instant::now(),
            Duration::from_millis(40),
        );
        assert_eq!(t.commit_p99(), Duration::from_millis(40));
        // A commit still under way counts with its age; done or dropped, it leaves.
        let stuck = t.commit_begins("logs", "b");
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.commit_p99() >= Duration::from_millis(60));
        drop(stuck);
        assert_eq!(t.commit_p99(), Duration::from_millis(40));
        assert_eq!(
            t.commit_p99_by_tenant(),
            BTreeMap::from([("a".to_string(), (Duration::from_millis(40), 1))])
        );
        t.commit_begins("logs", "b").done();
        let text = t.render();
        assert!(
            text.contains("edge_gateway_sink_commit_seconds_count{sink=\"logs\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn commits_are_stuck_when_one_is_old_and_none_ended_lately() {
        let t = Telemetry::default();
        assert!(!t.commits_stuck(Duration::ZERO), "none under way");
        let under_way = t.commit_begins("metrics", "t");
        std::thread::sleep(Duration::from_millis(20));
        assert!(t.commits_stuck(Duration::from_millis(10)));
        assert!(!t.commits_stuck(Duration::from_secs(60)), "not old enough");
        // Another commit ends: the sinks make progress, slow as that one is.
        t.commit_begins("logs", "t").done();
        assert!(!t.commits_stuck(Duration::from_millis(10)));
        drop(under_way);
    }
}
