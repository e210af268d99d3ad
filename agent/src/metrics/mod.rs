//! The metrics path: series from every source (host metrics, the game's pushes, scrape
//! targets, the agent's own metrics) pass the [`gate`] into a [`Batch`], which each
//! cycle becomes one remote_write request with the host labels on every series.

pub mod gate;
pub mod key;
pub mod scrape;

pub use key::{Point, SeriesKey};

use std::collections::HashMap;

use edge_schema::proto::prometheus::{self as pb, WriteRequest};
use edge_schema::series::{self, SeriesFault, TimeWindow};
use prost::Message;

fn push_bounded(points: &mut Vec<Point>, point: Point) {
    if points.len() >= MAX_POINTS_PER_SERIES {
        points.remove(0);
    }
    points.push(point);
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
    pub fn add(&mut self, key: SeriesKey, point: Point) {
        push_bounded(self.series.entry(key).or_default(), point);
    }

    /// Series waiting.
    pub fn len(&self) -> usize {
        self.series.values().filter(|p| !p.is_empty()).count()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.series.values().all(Vec::is_empty)
    }

    /// Takes everything as one encoded (not yet compressed) remote_write
    /// `WriteRequest`, `host_labels` (sorted by name) on every series, replacing any
    /// label of the same name; returns the bytes and the number of series.
    ///
    /// Encoded by hand rather than through the generated types: building those would
    /// copy every host label into every series, thousands of small allocations a
    /// cycle, for bytes that are identical.
    pub fn take_encoded(&mut self, host_labels: &[(String, String)]) -> (Vec<u8>, usize) {
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
        // Entries stay from cycle to cycle, so a series that reports every cycle keeps
        // its key and its points' buffer; one idle for a whole cycle is dropped here.
        self.series.retain(|_, points| !points.is_empty());
        let mut series: Vec<(&SeriesKey, &mut Vec<Point>)> = self.series.iter_mut().collect();
        series.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(series.len() * 160);
        let mut ts = Vec::with_capacity(1024);
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(16);
        let n = series.len();
        for (key, points) in series {
            ts.clear();
            labels.clear();
            let own = key
                .labels
                .iter()
                .filter(|(k, _)| host_labels.binary_search_by(|(h, _)| h.cmp(k)).is_err())
                .map(|(k, v)| (k.as_str(), v.as_str()));
            let host = host_labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            labels.extend(
                std::iter::once(("__name__", key.name.as_str()))
                    .chain(own)
                    .chain(host),
            );
            labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for &(name, value) in &labels {
                let len = 2
                    + encoded_len_varint(name.len() as u64)
                    + name.len()
                    + encoded_len_varint(value.len() as u64)
                    + value.len();
                encode_key(1, WireType::LengthDelimited, &mut ts);
                encode_varint(len as u64, &mut ts);
                encode_key(1, WireType::LengthDelimited, &mut ts);
                encode_varint(name.len() as u64, &mut ts);
                ts.extend_from_slice(name.as_bytes());
                encode_key(2, WireType::LengthDelimited, &mut ts);
                encode_varint(value.len() as u64, &mut ts);
                ts.extend_from_slice(value.as_bytes());
            }
            // Remote write wants each series' points in time order.
            points.sort_by_key(Point::timestamp);
            for point in points.iter() {
                if let Point::Float { value, timestamp } = point {
                    let len = 9 + if *timestamp == 0 {
                        0
                    } else {
                        1 + encoded_len_varint(*timestamp as u64)
                    };
                    encode_key(2, WireType::LengthDelimited, &mut ts);
                    encode_varint(len as u64, &mut ts);
                    prost::encoding::double::encode(1, value, &mut ts);
                    if *timestamp != 0 {
                        prost::encoding::int64::encode(2, timestamp, &mut ts);
                    }
                }
            }
            for point in points.iter() {
                if let Point::Histogram(h) = point {
                    prost::encoding::message::encode(4, h.as_ref(), &mut ts);
                }
            }
            points.clear();
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(ts.len() as u64, &mut out);
            out.extend_from_slice(&ts);
        }
        (out, n)
    }

    /// Takes everything as one remote_write request (see [`Batch::take_encoded`]).
    pub fn take(&mut self, host_labels: &[(String, String)]) -> WriteRequest {
        let (bytes, _) = self.take_encoded(host_labels);
        WriteRequest::decode(bytes.as_slice())
            .unwrap_or_else(|e| unreachable!("the batch encoder writes a valid WriteRequest: {e}"))
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
    /// Where `edge-agent tap` sees the series leave and the refused points (the
    /// telemetry's [`crate::telemetry::Telemetry::taps`]; a default one has no taps).
    pub taps: crate::tap::Taps,
}

/// What became of one series offered with [`Pipeline::offer_series`].
#[derive(Clone, Debug, PartialEq)]
pub enum Offered {
    /// Every point passed.
    Accepted(usize),
    /// Refused by the policy or the budget (values folded into the overflow series).
    Refused {
        /// Points refused.
        points: usize,
        /// Points that passed before the series was refused (none, usually).
        accepted: usize,
        /// One of [`gate::REJECT_REASONS`].
        reason: &'static str,
        /// The policy's words, naming metric and label (`None` for the budget).
        detail: Option<String>,
    },
    /// No `__name__`.
    Unnamed,
    /// What a store would refuse; dropped and counted.
    Invalid(SeriesFault),
}

/// What one push brought.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Points accepted as they were.
    pub accepted: usize,
    /// Points of refused series (folded into overflow series).
    pub refused: usize,
    /// Series without a `__name__`, dropped.
    pub unnamed: usize,
    /// Series a store would refuse (bad name, duplicate labels, a timestamp outside the
    /// window, an inconsistent histogram), dropped and counted.
    pub invalid: usize,
    /// What was wrong with the first invalid series, for the answer.
    pub first_invalid: Option<String>,
}

impl Pipeline {
    /// Passes one point through the gate into the batch; `false` if it was refused.
    pub fn offer(&mut self, key: SeriesKey, point: Point, now: std::time::Instant) -> bool {
        match self.gate.admit(&key, &point, now) {
            gate::Verdict::Pass => {
                self.batch.add(key, point);
                true
            }
            gate::Verdict::Refused { reason } => {
                self.taps.refused(&key, &point, reason);
                false
            }
        }
    }

    /// Takes in a remote_write request.
    pub fn ingest(&mut self, request: WriteRequest, now: std::time::Instant) -> Ingested {
        let mut out = Ingested::default();
        let now_ms = now_ms();
        for ts in request.timeseries {
            match self.offer_series(ts, now_ms, now) {
                Offered::Accepted(n) => out.accepted += n,
                Offered::Refused {
                    points, accepted, ..
                } => {
                    out.refused += points;
                    out.accepted += accepted;
                }
                Offered::Unnamed => out.unnamed += 1,
                Offered::Invalid(fault) => {
                    out.invalid += 1;
                    out.first_invalid.get_or_insert_with(|| fault.to_string());
                }
            }
        }
        out
    }

    /// Passes one remote_write series (all its points) through the checks a store
    /// makes and the gate. A refused series says why, naming the label the policy
    /// refused (`None` for the budget).
    pub fn offer_series(
        &mut self,
        mut ts: pb::TimeSeries,
        now_ms: i64,
        now: std::time::Instant,
    ) -> Offered {
        match series::check(&mut ts, now_ms, &TimeWindow::default()) {
            Ok(()) => {}
            Err(SeriesFault::MissingMetricName) => return Offered::Unnamed,
            Err(fault) => {
                self.gate.count_invalid(&fault);
                return Offered::Invalid(fault);
            }
        }
        let Some(key) = SeriesKey::from_proto(ts.labels, &self.host_labels) else {
            return Offered::Unnamed;
        };
        let mut points: Vec<Point> = ts
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
            )
            .collect();
        let mut accepted = 0;
        let mut refused = 0;
        let mut why: Option<(&'static str, Option<String>)> = None;
        // Usually one point: the key moves into the batch with the last one.
        let last = points.pop();
        let mut offered: Vec<(SeriesKey, Point)> = points
            .into_iter()
            .map(|point| (key.clone(), point))
            .collect();
        offered.extend(last.map(|point| (key, point)));
        for (key, point) in offered {
            match self.gate.admit(&key, &point, now) {
                gate::Verdict::Pass => {
                    self.batch.add(key, point);
                    accepted += 1;
                }
                gate::Verdict::Refused { reason } => {
                    self.taps.refused(&key, &point, reason);
                    refused += 1;
                    if why.is_none() {
                        let label = self.gate.violation(&key).map(|v| v.to_string());
                        why = Some((reason, label));
                    }
                }
            }
        }
        match why {
            Some((reason, detail)) => Offered::Refused {
                points: refused,
                accepted,
                reason,
                detail,
            },
            None => Offered::Accepted(accepted),
        }
    }

    /// Ends a cycle: folds overflow series in, forgets idle series, and returns the
    /// encoded request to send and its number of series (0: nothing to send).
    pub fn take(&mut self, now: std::time::Instant) -> (Vec<u8>, usize) {
        for (key, point) in self.gate.drain_overflow(now) {
            self.batch.add(key, point);
        }
        self.gate.expire(now);
        let (encoded, series) = self.batch.take_encoded(&self.host_labels);
        self.taps.metrics_batch(&encoded, series);
        (encoded, series)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_schema::proto::prometheus::Label;
    use edge_schema::proto::prometheus::{Sample, TimeSeries};

    #[test]
    fn a_series_a_store_would_refuse_is_dropped_alone_and_counted() {
        let schema = edge_schema::check::Schema::new(
            edge_schema::policy::LabelPolicy::shipped(),
            edge_schema::catalog::Catalog::shipped(),
        );
        let mut pipeline = Pipeline {
            gate: gate::Gate::new(schema, 300),
            batch: Batch::default(),
            host_labels: Vec::new(),
            taps: Default::default(),
        };
        let now = now_ms();
        let series = |name: &str, timestamp: i64| TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp,
            }],
            ..Default::default()
        };
        let mut bad_histogram = series("game_tick_duration_seconds", now);
        bad_histogram.samples.clear();
        bad_histogram.histograms.push(pb::Histogram {
            schema: 3,
            count: Some(pb::histogram::Count::CountInt(1)),
            positive_spans: vec![pb::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_deltas: vec![1],
            timestamp: now,
            ..Default::default()
        });
        let mut duplicate = series("game_player_capacity", now);
        duplicate.labels.extend([
            Label {
                name: "shard_id".into(),
                value: "1".into(),
            },
            Label {
                name: "__name__".into(),
                value: "game_player_capacity".into(),
            },
        ]);
        // Unsorted labels are sorted, not refused: the agent re-encodes every series.
        let mut unsorted = series("game_queue_depth", now);
        unsorted.labels.insert(
            0,
            Label {
                name: "shard_id".into(),
                value: "2".into(),
            },
        );
        let request = WriteRequest {
            timeseries: vec![
                series("game_players_connected", now),
                series("game_instances_active", 32_503_680_000_000), // year 3000
                bad_histogram,
                series("game.tick.bad", now),
                duplicate,
                unsorted,
            ],
            ..Default::default()
        };
        let ingested = pipeline.ingest(request, std::time::Instant::now());
        assert_eq!(
            ingested.accepted, 2,
            "the valid neighbours, the unsorted one sorted"
        );
        assert_eq!(ingested.invalid, 4);
        let first = ingested.first_invalid.expect("named");
        assert!(first.contains("game_instances_active"), "{first}");
        let counted = |reason: &str| {
            let i = gate::REJECT_REASONS
                .iter()
                .position(|r| *r == reason)
                .expect("known");
            pipeline.gate.rejected()[i]
        };
        assert_eq!(counted("too_far_in_future"), 1);
        assert_eq!(counted("invalid_native_histogram"), 1);
        assert_eq!(counted("metric_name_invalid"), 1);
        assert_eq!(counted("duplicate_label_names"), 1);
        assert_eq!(pipeline.batch.len(), 2, "the valid neighbours are batched");
    }

    #[test]
    fn the_hand_encoded_batch_decodes_to_the_expected_request() {
        let mut batch = Batch::default();
        let cpu = SeriesKey::new(
            "node_cpu_seconds_total",
            vec![
                ("mode".into(), "user".into()),
                ("region".into(), "client-set".into()),
            ],
        );
        batch.add(
            cpu.clone(),
            Point::Float {
                value: 2.5,
                timestamp: 2_000,
            },
        );
        batch.add(
            cpu.clone(),
            Point::Float {
                value: 1.5,
                timestamp: 1_000,
            },
        );
        let hist = pb::Histogram {
            sum: 3.0,
            schema: 2,
            timestamp: 1_000,
            count: Some(pb::histogram::Count::CountInt(2)),
            ..Default::default()
        };
        let tick = SeriesKey::new("game_tick_duration_seconds", vec![]);
        batch.add(tick, Point::Histogram(Box::new(hist.clone())));
        let host = vec![
            ("build_id".to_string(), "b1".to_string()),
            ("region".to_string(), "us-east-1".to_string()),
        ];
        let (bytes, n) = batch.take_encoded(&host);
        assert_eq!(n, 2);
        assert!(batch.is_empty());
        let got = WriteRequest::decode(bytes.as_slice()).expect("decodes");
        let label = |name: &str, value: &str| Label {
            name: name.into(),
            value: value.into(),
        };
        let want = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        label("__name__", "game_tick_duration_seconds"),
                        label("build_id", "b1"),
                        label("region", "us-east-1"),
                    ],
                    histograms: vec![hist],
                    ..Default::default()
                },
                TimeSeries {
                    labels: vec![
                        label("__name__", "node_cpu_seconds_total"),
                        label("build_id", "b1"),
                        label("mode", "user"),
                        label("region", "us-east-1"),
                    ],
                    samples: vec![
                        Sample {
                            value: 1.5,
                            timestamp: 1_000,
                        },
                        Sample {
                            value: 2.5,
                            timestamp: 2_000,
                        },
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(got, want);
    }
}
