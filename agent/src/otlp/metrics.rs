//! OTLP metrics as remote_write series, by the OpenTelemetry → Prometheus compatibility
//! rules:
//!
//! | OTLP | series |
//! |---|---|
//! | Sum, monotonic, cumulative | counter `<name>[_<unit>]_total` |
//! | Sum, delta (monotonic or not) | accumulated here into a cumulative series |
//! | Sum, not monotonic | gauge `<name>[_<unit>]` |
//! | Gauge | gauge `<name>[_<unit>]` (`_ratio` for unit `1`) |
//! | Exponential histogram | one native histogram `<name>[_<unit>]` (scale clamped to −4..=8) |
//! | Histogram (explicit buckets) | classic: `_bucket{le}` per bound and `+Inf`, `_count`, `_sum` |
//! | Summary | `<name>{quantile}`, `_count`, `_sum` |
//!
//! Names: characters Prometheus does not allow become `_` (runs of `_` collapse), the
//! unit becomes a suffix (`s` → `_seconds`, `ms` → `_milliseconds`, `By` → `_bytes`,
//! `1` → nothing, `{…}` annotations dropped, `a/b` → `_a_per_b`) unless the name ends
//! with it already. Attributes become labels the same way (`player.id` → `player_id`;
//! two attributes that sanitize to one name have their values joined with `;`).
//! Resource and scope attributes are not labels: the host labels come from the agent.
//! Exemplars are dropped and counted.
//!
//! **Delta temporality.** Delta points are added into a cumulative value per series,
//! kept here: a point whose end time is not after the last one taken for its series
//! (a retried or reordered request) is refused as `out_of_order`, so nothing is counted
//! twice. A restarted game simply goes on adding (its deltas start again after its
//! restart). **Cumulative** points pass as they are: a game that restarts sends a new
//! start time and values from zero, which Prometheus reads as a counter reset; a point
//! older than the last one of the same start, or of an earlier start, is `out_of_order`.
//! Series not seen for [`IDLE`] are forgotten (at most [`MAX_TRACKED`] are tracked).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use edge_exporter::export::native_to_proto;
use edge_exporter::histogram::{
    ExpHistogram, MAX_NATIVE_SCHEMA, MIN_SCALE, NATIVE_MAX_GAP, NativeHistogram, encode_spans,
};
use edge_schema::exposition::format_value;
use edge_schema::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use edge_schema::proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use edge_schema::proto::opentelemetry::proto::metrics::v1 as m;
use edge_schema::proto::prometheus::{self as pb, Label, Sample};

/// How long a tracked series lives without a point.
pub const IDLE: Duration = Duration::from_secs(300);

/// The most series whose temporality state is kept (memory stays bounded when a client
/// invents attributes without end; past it, delta points are refused as `invalid`).
pub const MAX_TRACKED: usize = 20_000;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: a point that only says "no value".
const NO_RECORDED_VALUE: u32 = 1;

/// What the kind of instrument adds to a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic sum: `_total`.
    Counter,
    /// A gauge (or non-monotonic sum): `_ratio` for unit `1`.
    Gauge,
    /// Histograms and summaries: the unit only.
    Distribution,
}

/// One OTLP data point as the series it becomes.
#[derive(Debug)]
pub struct DataPoint {
    /// The exported name (a family name: without `_bucket`, `_count`, `_sum`).
    pub metric: String,
    /// Series to offer to the gate (labels include `__name__`).
    pub series: Vec<pb::TimeSeries>,
    /// Each label made from an attribute, with the attribute's key.
    pub renamed: Vec<(String, String)>,
}

/// A data point refused before the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `out_of_order` or `invalid`.
    pub reason: &'static str,
    /// What to tell the client.
    pub message: String,
}

/// The series one request becomes.
#[derive(Debug, Default)]
pub struct Converted {
    /// Points to offer.
    pub points: Vec<DataPoint>,
    /// Points refused here.
    pub refused: Vec<Refusal>,
    /// Exemplars dropped.
    pub exemplars: u64,
    /// Points carrying no value (`FLAG_NO_RECORDED_VALUE`), skipped.
    pub no_value: u64,
}

#[derive(Debug)]
enum Accumulated {
    Sum(f64),
    Exponential(Box<ExpHistogram>),
    Classic {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
    },
    /// Cumulative: nothing to add, only the order to check.
    Cumulative,
}

#[derive(Debug)]
struct Track {
    start: u64,
    last: u64,
    seen: Instant,
    value: Accumulated,
}

/// The conversion and the delta state it keeps (see the module docs).
#[derive(Debug, Default)]
pub struct Converter {
    tracks: HashMap<(String, Vec<(String, String)>), Track>,
}

enum Taken<'s> {
    Track(&'s mut Track),
    /// Cumulative, past [`MAX_TRACKED`]: passes unchecked.
    Untracked,
    /// Refused (recorded in the context).
    Refused,
}

struct Ctx<'a> {
    name: &'a str,
    now_ms: i64,
    now: Instant,
    out: &'a mut Converted,
}

impl Converter {
    /// Series tracked now.
    pub fn tracked(&self) -> usize {
        self.tracks.len()
    }

    /// Converts one request; `now_ms` stamps points without a time.
    pub fn convert(
        &mut self,
        request: &ExportMetricsServiceRequest,
        now_ms: i64,
        now: Instant,
    ) -> Converted {
        self.tracks
            .retain(|_, t| now.saturating_duration_since(t.seen) < IDLE);
        let mut out = Converted::default();
        for rm in &request.resource_metrics {
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    self.metric(metric, now_ms, now, &mut out);
                }
            }
        }
        out
    }

    fn metric(&mut self, metric: &m::Metric, now_ms: i64, now: Instant, out: &mut Converted) {
        use m::metric::Data;
        let Some(data) = &metric.data else {
            return;
        };
        let mut ctx = Ctx {
            name: &metric.name,
            now_ms,
            now,
            out,
        };
        match data {
            Data::Gauge(g) => {
                let name = metric_name(&metric.name, &metric.unit, Kind::Gauge);
                for p in &g.data_points {
                    self.number(&mut ctx, &name, p, false);
                }
            }
            Data::Sum(s) => {
                let kind = if s.is_monotonic {
                    Kind::Counter
                } else {
                    Kind::Gauge
                };
                let name = metric_name(&metric.name, &metric.unit, kind);
                let delta = s.aggregation_temporality == m::AggregationTemporality::Delta as i32;
                for p in &s.data_points {
                    self.number(&mut ctx, &name, p, delta);
                }
            }
            Data::Histogram(h) => {
                let name = metric_name(&metric.name, &metric.unit, Kind::Distribution);
                let delta = h.aggregation_temporality == m::AggregationTemporality::Delta as i32;
                for p in &h.data_points {
                    self.classic(&mut ctx, &name, p, delta);
                }
            }
            Data::ExponentialHistogram(h) => {
                let name = metric_name(&metric.name, &metric.unit, Kind::Distribution);
                let delta = h.aggregation_temporality == m::AggregationTemporality::Delta as i32;
                for p in &h.data_points {
                    self.exponential(&mut ctx, &name, p, delta);
                }
            }
            Data::Summary(s) => {
                let name = metric_name(&metric.name, &metric.unit, Kind::Distribution);
                for p in &s.data_points {
                    summary(&mut ctx, &name, p);
                }
            }
        }
    }

    /// Checks the order of a point of series `key` and returns its track, new or known.
    fn track<'s>(
        &'s mut self,
        ctx: &mut Ctx<'_>,
        key: (String, Vec<(String, String)>),
        start: u64,
        time: u64,
        delta: bool,
        fresh: impl FnOnce() -> Accumulated,
    ) -> Taken<'s> {
        let known = self.tracks.contains_key(&key);
        if !known && self.tracks.len() >= MAX_TRACKED {
            if !delta {
                // Cumulative points need no state: they pass unchecked.
                return Taken::Untracked;
            }
            ctx.out.refused.push(Refusal {
                reason: "invalid",
                message: format!(
                    "metric `{}`: more than {MAX_TRACKED} delta series on this host; point dropped",
                    ctx.name
                ),
            });
            return Taken::Refused;
        }
        let now = ctx.now;
        let track = self.tracks.entry(key).or_insert_with(|| Track {
            start,
            last: 0,
            seen: now,
            value: fresh(),
        });
        let out_of_order = if delta {
            known && time <= track.last
        } else {
            known
                && (start < track.start
                    || (start == track.start && time <= track.last && time != 0))
        };
        if out_of_order {
            ctx.out.refused.push(Refusal {
                reason: "out_of_order",
                message: format!(
                    "metric `{}`: a point not newer than the last one taken for its series (time {time}, last {}); a retry of a delivered request, or points out of order",
                    ctx.name, track.last
                ),
            });
            return Taken::Refused;
        }
        track.start = start;
        track.last = time;
        track.seen = now;
        Taken::Track(track)
    }

    fn number(&mut self, ctx: &mut Ctx<'_>, name: &str, p: &m::NumberDataPoint, delta: bool) {
        ctx.out.exemplars += p.exemplars.len() as u64;
        if p.flags & NO_RECORDED_VALUE != 0 {
            ctx.out.no_value += 1;
            return;
        }
        let value = match p.value {
            Some(m::number_data_point::Value::AsDouble(v)) => v,
            Some(m::number_data_point::Value::AsInt(v)) => v as f64,
            None => 0.0,
        };
        let (labels, renamed) = labels(&p.attributes);
        let timestamp = millis(p.time_unix_nano, ctx.now_ms);
        let key = (name.to_string(), labels.clone());
        let value = match self.track(
            ctx,
            key,
            p.start_time_unix_nano,
            p.time_unix_nano,
            delta,
            || {
                if delta {
                    Accumulated::Sum(0.0)
                } else {
                    Accumulated::Cumulative
                }
            },
        ) {
            Taken::Refused => return,
            Taken::Untracked => value,
            Taken::Track(track) => match &mut track.value {
                Accumulated::Sum(total) if delta => {
                    *total += value;
                    *total
                }
                _ => value,
            },
        };
        ctx.out
            .points
            .push(float_point(name, &labels, renamed, value, timestamp));
    }

    fn exponential(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        p: &m::ExponentialHistogramDataPoint,
        delta: bool,
    ) {
        ctx.out.exemplars += p.exemplars.len() as u64;
        if p.flags & NO_RECORDED_VALUE != 0 {
            ctx.out.no_value += 1;
            return;
        }
        let native = match exponential_to_native(p) {
            Ok(n) => n,
            Err(why) => {
                ctx.out.refused.push(Refusal {
                    reason: "invalid",
                    message: format!("metric `{}`: {why}", ctx.name),
                });
                return;
            }
        };
        let (labels, renamed) = labels(&p.attributes);
        let timestamp = millis(p.time_unix_nano, ctx.now_ms);
        let native = if delta {
            let Ok(add) = ExpHistogram::from_native(&native) else {
                ctx.out.refused.push(Refusal {
                    reason: "invalid",
                    message: format!(
                        "metric `{}`: bucket counts do not add up to the point's count",
                        ctx.name
                    ),
                });
                return;
            };
            let schema = native.schema;
            let key = (name.to_string(), labels.clone());
            let Taken::Track(track) = self.track(
                ctx,
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                true,
                || Accumulated::Exponential(Box::new(ExpHistogram::new(schema))),
            ) else {
                return;
            };
            match &mut track.value {
                Accumulated::Exponential(total) => {
                    total.merge(&add);
                    total.to_native()
                }
                other => {
                    // The metric changed its type: it starts over.
                    let native = add.to_native();
                    *other = Accumulated::Exponential(Box::new(add));
                    native
                }
            }
        } else {
            let key = (name.to_string(), labels.clone());
            let taken = self.track(
                ctx,
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                false,
                || Accumulated::Cumulative,
            );
            if matches!(taken, Taken::Refused) {
                return;
            }
            native
        };
        let histogram = native_to_proto(&native, timestamp);
        ctx.out.points.push(DataPoint {
            metric: name.to_string(),
            series: vec![pb::TimeSeries {
                labels: with_name(name, &labels),
                histograms: vec![histogram],
                ..Default::default()
            }],
            renamed,
        });
    }

    fn classic(&mut self, ctx: &mut Ctx<'_>, name: &str, p: &m::HistogramDataPoint, delta: bool) {
        ctx.out.exemplars += p.exemplars.len() as u64;
        if p.flags & NO_RECORDED_VALUE != 0 {
            ctx.out.no_value += 1;
            return;
        }
        if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            ctx.out.refused.push(Refusal {
                reason: "invalid",
                message: format!(
                    "metric `{}`: {} bucket counts for {} bounds (want bounds + 1)",
                    ctx.name,
                    p.bucket_counts.len(),
                    p.explicit_bounds.len()
                ),
            });
            return;
        }
        let (labels, renamed) = labels(&p.attributes);
        let timestamp = millis(p.time_unix_nano, ctx.now_ms);
        let mut counts = p.bucket_counts.clone();
        let mut sum = p.sum.unwrap_or(0.0);
        let key = (name.to_string(), labels.clone());
        let bounds = p.explicit_bounds.clone();
        let tracked = self.track(
            ctx,
            key,
            p.start_time_unix_nano,
            p.time_unix_nano,
            delta,
            || {
                if delta {
                    Accumulated::Classic {
                        bounds: Vec::new(),
                        counts: Vec::new(),
                        sum: 0.0,
                    }
                } else {
                    Accumulated::Cumulative
                }
            },
        );
        match tracked {
            Taken::Refused => return,
            Taken::Untracked => {}
            Taken::Track(track) => {
                if let Accumulated::Classic {
                    bounds: b,
                    counts: c,
                    sum: s,
                } = &mut track.value
                {
                    if *b != bounds || c.len() != counts.len() {
                        // New bounds: the series starts over (a reset).
                        *b = bounds.clone();
                        *c = vec![0; counts.len()];
                        *s = 0.0;
                    }
                    for (total, n) in c.iter_mut().zip(&counts) {
                        *total += n;
                    }
                    *s += sum;
                    counts.clone_from(c);
                    sum = *s;
                }
            }
        }
        let count: u64 = counts.iter().sum();
        let mut series = Vec::with_capacity(bounds.len() + 3);
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, n) in counts.iter().enumerate() {
            cumulative += n;
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_value(*b));
            let mut l = labels.clone();
            l.push(("le".to_string(), le));
            series.push(float_series(&bucket, &l, cumulative as f64, timestamp));
        }
        series.push(float_series(
            &format!("{name}_count"),
            &labels,
            count.max(p.count) as f64,
            timestamp,
        ));
        if p.sum.is_some() {
            series.push(float_series(
                &format!("{name}_sum"),
                &labels,
                sum,
                timestamp,
            ));
        }
        ctx.out.points.push(DataPoint {
            metric: name.to_string(),
            series,
            renamed,
        });
    }
}

fn summary(ctx: &mut Ctx<'_>, name: &str, p: &m::SummaryDataPoint) {
    if p.flags & NO_RECORDED_VALUE != 0 {
        ctx.out.no_value += 1;
        return;
    }
    let (labels, renamed) = labels(&p.attributes);
    let timestamp = millis(p.time_unix_nano, ctx.now_ms);
    let mut series = Vec::with_capacity(p.quantile_values.len() + 2);
    for q in &p.quantile_values {
        let mut l = labels.clone();
        l.push(("quantile".to_string(), format_value(q.quantile)));
        series.push(float_series(name, &l, q.value, timestamp));
    }
    series.push(float_series(
        &format!("{name}_count"),
        &labels,
        p.count as f64,
        timestamp,
    ));
    series.push(float_series(
        &format!("{name}_sum"),
        &labels,
        p.sum,
        timestamp,
    ));
    ctx.out.points.push(DataPoint {
        metric: name.to_string(),
        series,
        renamed,
    });
}

fn millis(nanos: u64, now_ms: i64) -> i64 {
    if nanos == 0 {
        now_ms
    } else {
        i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
    }
}

fn with_name(name: &str, labels: &[(String, String)]) -> Vec<Label> {
    let mut out = Vec::with_capacity(labels.len() + 1);
    out.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    out.extend(labels.iter().map(|(k, v)| Label {
        name: k.clone(),
        value: v.clone(),
    }));
    out
}

fn float_series(name: &str, labels: &[(String, String)], value: f64, ts: i64) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: with_name(name, labels),
        samples: vec![Sample {
            value,
            timestamp: ts,
        }],
        ..Default::default()
    }
}

fn float_point(
    name: &str,
    labels: &[(String, String)],
    renamed: Vec<(String, String)>,
    value: f64,
    timestamp: i64,
) -> DataPoint {
    DataPoint {
        metric: name.to_string(),
        series: vec![float_series(name, labels, value, timestamp)],
        renamed,
    }
}

/// An OTLP exponential histogram point as a Prometheus native histogram, the way the
/// exporter exports its own: Prometheus index = OpenTelemetry index + 1; a scale above 8
/// merges `2^(scale−8)` neighbouring buckets into one; a scale below −4 (wider buckets
/// than the native range has) puts each bucket's count in the schema −4 bucket with the
/// same upper bound. Zero bucket, count and sum are kept.
pub fn exponential_to_native(
    p: &m::ExponentialHistogramDataPoint,
) -> Result<NativeHistogram, String> {
    let (schema, down, up) = if p.scale > MAX_NATIVE_SCHEMA {
        (MAX_NATIVE_SCHEMA, (p.scale - MAX_NATIVE_SCHEMA) as u32, 0)
    } else if p.scale < MIN_SCALE {
        (MIN_SCALE, 0, (MIN_SCALE - p.scale) as u32)
    } else {
        (p.scale, 0, 0)
    };
    if up > 20 {
        return Err(format!("scale {} is below any native histogram's", p.scale));
    }
    let map = |b: &Option<m::exponential_histogram_data_point::Buckets>| {
        let mut out: Vec<(i32, u64)> = Vec::new();
        let Some(b) = b else {
            return Ok(out);
        };
        for (j, &n) in b.bucket_counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let otel = i64::from(b.offset) + j as i64;
            let prom = if up > 0 {
                (otel + 1) << up
            } else {
                (otel >> down) + 1
            };
            let prom = i32::try_from(prom)
                .map_err(|_| format!("bucket index {otel} at scale {} is out of range", p.scale))?;
            match out.last_mut() {
                Some((i, c)) if *i == prom => *c += n,
                _ => out.push((prom, n)),
            }
        }
        Ok::<_, String>(out)
    };
    let positive = map(&p.positive)?;
    let negative = map(&p.negative)?;
    let listed: u64 = positive
        .iter()
        .chain(&negative)
        .map(|(_, n)| n)
        .sum::<u64>()
        + p.zero_count;
    if listed != p.count {
        return Err(format!(
            "the buckets hold {listed} observations but the point's count is {}",
            p.count
        ));
    }
    let (positive_spans, positive_deltas) = encode_spans(&positive, NATIVE_MAX_GAP);
    let (negative_spans, negative_deltas) = encode_spans(&negative, NATIVE_MAX_GAP);
    Ok(NativeHistogram {
        schema,
        zero_threshold: p.zero_threshold,
        zero_count: p.zero_count,
        count: p.count,
        sum: p.sum.unwrap_or(0.0),
        positive_spans,
        positive_deltas,
        negative_spans,
        negative_deltas,
    })
}

/// The exported name of an OTLP metric (see the module docs).
pub fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut out = sanitize(name, true);
    let suffix = unit_suffix(unit);
    if !suffix.is_empty() && !out.ends_with(&format!("_{suffix}")) && out != suffix {
        let total = kind == Kind::Counter && out.ends_with("_total");
        if total {
            out.truncate(out.len() - "_total".len());
        }
        if !out.ends_with(&format!("_{suffix}")) {
            out.push('_');
            out.push_str(&suffix);
        }
    }
    if kind == Kind::Gauge && unit_main(unit) == "1" && !out.ends_with("_ratio") {
        out.push_str("_ratio");
    }
    if kind == Kind::Counter && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

fn unit_main(unit: &str) -> String {
    // `{packets}` and other annotations carry no unit.
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = (depth as i32 - 1).max(0) as usize,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

fn unit_word(unit: &str, per: bool) -> String {
    let word = match unit {
        "d" if per => "day",
        "h" if per => "hour",
        "min" if per => "minute",
        "s" if per => "second",
        "w" if per => "week",
        "mo" if per => "month",
        "y" if per => "year",
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        other => return sanitize(other, false).trim_matches('_').to_string(),
    };
    word.to_string()
}

fn unit_suffix(unit: &str) -> String {
    let main = unit_main(unit);
    if main.is_empty() {
        return String::new();
    }
    match main.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (unit_word(a.trim(), false), unit_word(b.trim(), true));
            match (a.is_empty(), b.is_empty()) {
                (_, true) => a,
                (true, false) => format!("per_{b}"),
                (false, false) => format!("{a}_per_{b}"),
            }
        }
        None => unit_word(&main, false),
    }
}

/// A Prometheus name: characters outside `[a-zA-Z0-9_]` (and `:` in metric names)
/// become `_`, runs of `_` collapse to one, a leading digit gets a `_` before it.
pub fn sanitize(s: &str, metric: bool) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || (metric && c == ':') {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Name-value (or label-attribute) pairs.
pub type Labels = Vec<(String, String)>;

/// Attributes as labels (sorted by name), and each label with the attribute it came
/// from when the name changed.
pub fn labels(attributes: &[KeyValue]) -> (Labels, Labels) {
    let mut labels: Vec<(String, String)> = Vec::with_capacity(attributes.len());
    let mut renamed = Vec::new();
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in sorted {
        let name = sanitize(&kv.key, false);
        let value = any_text(kv.value.as_ref());
        if name != kv.key {
            renamed.push((name.clone(), kv.key.clone()));
        }
        match labels.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => {
                v.push(';');
                v.push_str(&value);
            }
            None => labels.push((name, value)),
        }
    }
    labels.sort();
    (labels, renamed)
}

/// An attribute value as text: strings as they are, numbers and booleans as written,
/// bytes in hex, arrays and maps as compact JSON.
pub fn any_text(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => format_value(*d),
        Some(Value::BytesValue(b)) => hex(b),
        Some(other) => any_json(other).to_string(),
    }
}

fn any_json(value: &any_value::Value) -> serde_json::Value {
    use any_value::Value;
    use serde_json::Value as J;
    match value {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::BytesValue(b) => J::String(hex(b)),
        Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, any_json))
                .collect(),
        ),
        Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map_or(J::Null, any_json),
                    )
                })
                .collect(),
        ),
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests;
