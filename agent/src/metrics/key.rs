//! A series' key and one of its values: what every source hands the gate.

use edge_exporter::export::{native_to_proto, proto_to_native};
use edge_exporter::histogram::ExpHistogram;
use edge_schema::proto::prometheus::{self as pb, Label};

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
    pub fn from_proto(labels: Vec<Label>, host_labels: &[(String, String)]) -> Option<Self> {
        let mut name = None;
        let mut rest = Vec::with_capacity(labels.len());
        for l in labels {
            if l.name == "__name__" {
                name = Some(l.value);
            } else if !host_labels.iter().any(|(k, _)| *k == l.name) {
                rest.push((l.name, l.value));
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
    /// Milliseconds since the epoch.
    pub fn timestamp(&self) -> i64 {
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
