//! The gateway's own metrics, served as Prometheus text at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets (seconds) for request and commit latencies.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets (seconds) for sample age at ingest.
pub const AGE_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

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

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `a="x",b="y"`.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
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

/// The registry.
#[derive(Debug, Default)]
pub struct Telemetry {
    families: Mutex<Families>,
    /// Recent sink commit latencies (for the overload p99), newest last.
    recent_commits: Mutex<std::collections::VecDeque<(std::time::Instant, Duration)>>,
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
    pub fn add(&self, name: &'static str, help: &'static str, labels: String, by: f64) {
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
    pub fn set(&self, name: &'static str, help: &'static str, labels: String, value: f64) {
        self.with(|f| {
            f.gauges
                .entry(name)
                .or_insert_with(|| (help, BTreeMap::new()))
                .1
                .insert(labels, value);
        });
    }

    /// Replaces every series of a gauge family (an info metric whose label changes).
    pub fn set_only(&self, name: &'static str, help: &'static str, series: BTreeMap<String, f64>) {
        self.with(|f| {
            f.gauges.insert(name, (help, series));
        });
    }

    /// Records into a histogram.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        bounds: &'static [f64],
        labels: String,
        seconds: f64,
    ) {
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
    pub fn observe_many(
        &self,
        name: &'static str,
        help: &'static str,
        bounds: &'static [f64],
        labels: String,
        values: &[f64],
    ) {
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
    pub fn counter(&self, name: &str, labels: &str) -> f64 {
        self.with(|f| {
            f.counters
                .get(name)
                .and_then(|(_, m)| m.get(labels))
                .copied()
                .unwrap_or(0.0)
        })
    }

    /// A sink commit took `took`: kept for the overload p99.
    pub fn commit_took(&self, sink: &str, took: Duration) {
        self.observe(
            "edge_gateway_sink_commit_seconds",
            "Time from handing records to a sink to their commit.",
            LATENCY_BUCKETS,
            labels(&[("sink", sink)]),
            took.as_secs_f64(),
        );
        let now = std::time::Instant::now();
        let mut recent = self
            .recent_commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.push_back((now, took));
        while recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > Duration::from_secs(10))
            || recent.len() > 10_000
        {
            recent.pop_front();
        }
    }

    /// The p99 of sink commit latencies over the last 10 s (zero when none).
    pub fn commit_p99(&self) -> Duration {
        let recent = self
            .recent_commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut took: Vec<Duration> = recent.iter().map(|(_, d)| *d).collect();
        if took.is_empty() {
            return Duration::ZERO;
        }
        took.sort_unstable();
        took[(took.len() * 99 / 100).min(took.len() - 1)]
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
        t.add("x_total", "X.", labels(&[("tenant", "a\"b")]), 2.0);
        t.set("g", "G.", String::new(), 3.0);
        t.observe(
            "h_seconds",
            "H.",
            LATENCY_BUCKETS,
            labels(&[("e", "push")]),
            0.003,
        );
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
        assert_eq!(t.counter("x_total", "tenant=\"a\\\"b\""), 2.0);
    }
}
