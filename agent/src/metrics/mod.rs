//! The metrics path: series from every source (host metrics, the game's pushes, scrape
//! targets, the agent's own metrics) pass the [`gate`] into a [`Batch`], which each
//! cycle becomes one remote_write request with the host labels on every series.

pub mod gate;
pub mod scrape;

use std::collections::HashMap;

use edge_exporter::export::{native_to_proto, proto_to_native};
use edge_exporter::histogram::ExpHistogram;
use edge_schema::proto::prometheus::{self as pb, Label, Sample, TimeSeries, WriteRequest};

/// A series: its name and its labels (sorted by name, without `__name__` and without
/// host labels, which the agent sets).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The metric name.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    /// A key from a name and labels in any order.
    pub fn new(name: impl Into<String>, mut labels: Vec<(String, String)>) -> Self {
        labels.sort();
        SeriesKey {
            name: name.into(),
            labels,
        }
    }

    /// The key of a remote_write series, host label names dropped (the agent's own
    /// values replace them); `None` without a `__name__`.
    pub fn from_proto(labels: &[Label], host_labels: &[(String, String)]) -> Option<Self> {
        let mut name = None;
        let mut rest = Vec::with_capacity(labels.len());
        for l in labels {
            if l.name == "__name__" {
                name = Some(l.value.clone());
            } else if !host_labels.iter().any(|(k, _)| *k == l.name) {
                rest.push((l.name.clone(), l.value.clone()));
            }
        }
        Some(SeriesKey::new(name?, rest))
    }
}

/// One value of a series.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// A float sample.
    Float {
        /// The value.
        value: f64,
        /// Milliseconds since the epoch.
        timestamp: i64,
    },
    /// A native histogram (boxed: it is twenty times a float's size).
    Histogram(Box<pb::Histogram>),
}

impl Point {
    fn timestamp(&self) -> i64 {
        match self {
            Point::Float { timestamp, .. } => *timestamp,
            Point::Histogram(h) => h.timestamp,
        }
    }

    /// Adds `other` into `self` (folding into an overflow series): floats add, native
    /// histograms merge; the newer timestamp is kept. Mixed kinds, and float-count
    /// histograms, leave `self` as it is.
    pub fn add(&mut self, other: &Point) {
        let timestamp = self.timestamp().max(other.timestamp());
        match (self, other) {
            (
                Point::Float {
                    value,
                    timestamp: t,
                },
                Point::Float { value: v, .. },
            ) => {
                *value += v;
                *t = timestamp;
            }
            (Point::Histogram(a), Point::Histogram(b)) => {
                let merged = (|| {
                    let mut x = ExpHistogram::from_native(&proto_to_native(a)?).ok()?;
                    let y = ExpHistogram::from_native(&proto_to_native(b)?).ok()?;
                    x.merge(&y);
                    Some(x)
                })();
                if let Some(h) = merged {
                    **a = native_to_proto(&h.to_native(), timestamp);
                }
            }
            _ => {}
        }
    }
}

/// The most points one series keeps between two cycles; older ones are replaced by the
/// newest (cumulative values lose nothing by it).
pub const MAX_POINTS_PER_SERIES: usize = 16;

/// Series waiting for the next cycle.
#[derive(Debug, Default)]
pub struct Batch {
    series: HashMap<SeriesKey, Vec<Point>>,
}

impl Batch {
    /// Adds a point to a series that passed the gate.
    pub fn add(&mut self, key: &SeriesKey, point: Point) {
        let points = match self.series.get_mut(key) {
            Some(points) => points,
            None => self.series.entry(key.clone()).or_default(),
        };
        if points.len() >= MAX_POINTS_PER_SERIES {
            points.remove(0);
        }
        points.push(point);
    }

    /// Series waiting.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Takes everything as one remote_write request, `host_labels` on every series (in
    /// name order; they replace any label of the same name).
    pub fn take(&mut self, host_labels: &[(String, String)]) -> WriteRequest {
        let mut series: Vec<_> = self.series.drain().collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut request = WriteRequest::default();
        for (key, points) in series {
            let mut labels = Vec::with_capacity(key.labels.len() + host_labels.len() + 1);
            labels.push(Label {
                name: "__name__".into(),
                value: key.name,
            });
            for (k, v) in key.labels.into_iter().chain(host_labels.iter().cloned()) {
                labels.push(Label { name: k, value: v });
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            let mut ts = TimeSeries {
                labels,
                ..Default::default()
            };
            for point in points {
                match point {
                    Point::Float { value, timestamp } => {
                        ts.samples.push(Sample { value, timestamp })
                    }
                    Point::Histogram(h) => ts.histograms.push(*h),
                }
            }
            // Remote write wants each series' points in time order.
            ts.samples.sort_by_key(|s| s.timestamp);
            ts.histograms.sort_by_key(|h| h.timestamp);
            request.timeseries.push(ts);
        }
        request
    }
}

/// The gate, the batch it fills, and the host labels every series gets.
#[derive(Debug)]
pub struct Pipeline {
    /// Policy and budget.
    pub gate: gate::Gate,
    /// What the next cycle sends.
    pub batch: Batch,
    /// Host labels, sorted by name.
    pub host_labels: Vec<(String, String)>,
}

/// What one push brought.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Points accepted as they were.
    pub accepted: usize,
    /// Points of refused series (folded into overflow series).
    pub refused: usize,
    /// Series without a `__name__`, dropped.
    pub unnamed: usize,
}

impl Pipeline {
    /// Passes one point through the gate into the batch; `false` if it was refused.
    pub fn offer(&mut self, key: &SeriesKey, point: Point, now: std::time::Instant) -> bool {
        match self.gate.admit(key, &point, now) {
            gate::Verdict::Pass => {
                self.batch.add(key, point);
                true
            }
            gate::Verdict::Refused { .. } => false,
        }
    }

    /// Takes in a remote_write request.
    pub fn ingest(&mut self, request: WriteRequest, now: std::time::Instant) -> Ingested {
        let mut out = Ingested::default();
        for ts in request.timeseries {
            let Some(key) = SeriesKey::from_proto(&ts.labels, &self.host_labels) else {
                out.unnamed += 1;
                continue;
            };
            let points = ts
                .samples
                .into_iter()
                .map(|s| Point::Float {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .chain(
                    ts.histograms
                        .into_iter()
                        .map(|h| Point::Histogram(Box::new(h))),
                );
            for point in points {
                if self.offer(&key, point, now) {
                    out.accepted += 1;
                } else {
                    out.refused += 1;
                }
            }
        }
        out
    }

    /// Ends a cycle: folds overflow series in, forgets idle series, and returns the
    /// request to send (empty when there is nothing).
    pub fn take(&mut self, now: std::time::Instant) -> WriteRequest {
        for (key, point) in self.gate.drain_overflow(now) {
            self.batch.add(&key, point);
        }
        self.gate.expire(now);
        self.batch.take(&self.host_labels)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
