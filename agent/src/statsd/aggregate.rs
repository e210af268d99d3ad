//! Per-cycle aggregation of statsd lines: never a series per event.
//!
//! | statsd | exported as |
//! |---|---|
//! | `c` | `<name>_total`, a counter: the sum of value / rate since the agent started |
//! | `g` | `<name>`, a gauge: the last value, `+N`/`-N` moving it |
//! | `ms` | `<name>_seconds`, a native exponential histogram of the durations in seconds |
//! | `h`, `d` | `<name>`, a native exponential histogram |
//! | `s` | `<name>`, a gauge of the distinct values seen in the cycle |
//!
//! Names: an optional mapping renames by glob first; then every character Prometheus
//! does not allow becomes `_` (`game.tick` → `game_tick`). DogStatsD tags become labels
//! (names sanitized the same way). The exported series then pass the same gate as any
//! other source: policy, catalog, budget, overflow.
//!
//! A series not updated for [`IDLE`] is forgotten (a counter that comes back starts from
//! zero, which Prometheus reads as a reset).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use edge_exporter::export::native_to_proto;
use edge_exporter::histogram::ExpHistogram;

use super::parse::{Kind, Line, Value};
use crate::metrics::{Point, SeriesKey};

/// How long a series lives without an update.
pub const IDLE: Duration = Duration::from_secs(300);

/// The most observations one sampled value stands for (`@0.0001` is not 10,000
/// records of the same value).
const MAX_WEIGHT: u32 = 1000;

/// The native histogram scale statsd histograms start at (downscaled as they widen).
const SCALE: i32 = 8;

/// A rename: statsd names matching `pattern` (a glob: `*` any run, `?` one character)
/// are exported as `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The glob over the statsd name.
    pub pattern: String,
    /// The exported name (before the type's suffix).
    pub name: String,
}

#[derive(Debug)]
enum State {
    Counter(f64),
    Gauge(f64),
    Histogram(Box<ExpHistogram>),
    Set(HashSet<String>),
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    state: State,
    updated: Instant,
}

/// The aggregates of one agent.
#[derive(Debug, Default)]
pub struct Aggregator {
    mappings: Vec<Mapping>,
    series: HashMap<SeriesKey, Entry>,
}

impl Aggregator {
    /// An aggregator renaming by `mappings` (first match wins).
    pub fn new(mappings: Vec<Mapping>) -> Self {
        Aggregator {
            mappings,
            series: HashMap::new(),
        }
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Adds one parsed line. `Err` when the name is already a series of another type.
    pub fn add(&mut self, line: &Line<'_>, now: Instant) -> Result<(), String> {
        let key = self.key(line);
        let entry = self.series.entry(key).or_insert_with(|| Entry {
            kind: line.kind,
            state: match line.kind {
                Kind::Counter => State::Counter(0.0),
                Kind::Gauge => State::Gauge(0.0),
                Kind::Timer | Kind::Histogram => {
                    State::Histogram(Box::new(ExpHistogram::new(SCALE)))
                }
                Kind::Set => State::Set(HashSet::new()),
            },
            updated: now,
        });
        if entry.kind != line.kind {
            return Err(format!(
                "`{}` is already a {:?}, not a {:?}",
                line.name, entry.kind, line.kind
            ));
        }
        entry.updated = now;
        let weight = (1.0 / line.rate).round().clamp(1.0, f64::from(MAX_WEIGHT)) as u32;
        for value in &line.values {
            match (&mut entry.state, value) {
                (State::Counter(total), Value::Number(n)) => *total += n / line.rate,
                (State::Gauge(g), Value::Number(n)) => *g = *n,
                (State::Gauge(g), Value::Delta(d)) => *g += d,
                (State::Histogram(h), Value::Number(n)) => {
                    let v = if line.kind == Kind::Timer {
                        n / 1000.0
                    } else {
                        *n
                    };
                    for _ in 0..weight {
                        // Finite by parsing; a record error cannot happen here.
                        let _ = h.record(v);
                    }
                }
                (State::Set(members), Value::Member(m)) if !members.contains(*m) => {
                    members.insert((*m).to_string());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every series with its value now, stamped `timestamp_ms`; sets start over, idle
    /// series are forgotten.
    pub fn snapshot(&mut self, now: Instant, timestamp_ms: i64) -> Vec<(SeriesKey, Point)> {
        self.series
            .retain(|_, e| now.saturating_duration_since(e.updated) < IDLE);
        let mut out = Vec::with_capacity(self.series.len());
        for (key, entry) in &mut self.series {
            let point = match &mut entry.state {
                State::Counter(v) | State::Gauge(v) => Point::Float {
                    value: *v,
                    timestamp: timestamp_ms,
                },
                State::Histogram(h) => {
                    Point::Histogram(Box::new(native_to_proto(&h.to_native(), timestamp_ms)))
                }
                State::Set(members) => {
                    let n = members.len();
                    members.clear();
                    Point::Float {
                        value: n as f64,
                        timestamp: timestamp_ms,
                    }
                }
            };
            out.push((key.clone(), point));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn key(&self, line: &Line<'_>) -> SeriesKey {
        let base = self
            .mappings
            .iter()
            .find(|m| glob(&m.pattern, line.name))
            .map_or(line.name, |m| m.name.as_str());
        let mut name = sanitize(base, true);
        let suffix = match line.kind {
            Kind::Counter => "_total",
            Kind::Timer => "_seconds",
            _ => "",
        };
        if !name.ends_with(suffix) {
            name.push_str(suffix);
        }
        let labels = line
            .tags
            .iter()
            .map(|(k, v)| (sanitize(k, false), (*v).to_string()))
            .collect();
        SeriesKey::new(name, labels)
    }
}

/// A Prometheus name from a statsd one: characters outside `[a-zA-Z0-9_]` (and `:` in
/// metric names) become `_`, and a leading digit gets a `_` before it.
pub fn sanitize(s: &str, metric: bool) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

/// Whether `text` matches `pattern` (`*` any run, `?` one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn feed(a: &mut Aggregator, lines: &[&str], now: Instant) {
        for l in lines {
            a.add(&parse(l).expect("parses"), now).expect("adds");
        }
    }

    fn value(points: &[(SeriesKey, Point)], name: &str) -> Option<f64> {
        points
            .iter()
            .find(|(k, _)| k.name == name)
            .and_then(|(_, p)| match p {
                Point::Float { value, .. } => Some(*value),
                Point::Histogram(h) => match h.count {
                    Some(edge_schema::proto::prometheus::histogram::Count::CountInt(c)) => {
                        Some(c as f64)
                    }
                    _ => None,
                },
            })
    }

    #[test]
    fn each_type_is_aggregated_into_one_series_per_cycle() {
        let mut a = Aggregator::new(vec![]);
        let now = Instant::now();
        feed(
            &mut a,
            &[
                "game.kills:1|c",
                "game.kills:2|c|@0.5",
                "game.players:10|g",
                "game.players:+5|g",
                "game.players:-3|g",
                "game.tick:16|ms",
                "game.tick:33|ms|@0.1",
                "game.rtt:0.02:0.03|d",
                "game.unique:p1|s",
                "game.unique:p2|s",
                "game.unique:p1|s",
            ],
            now,
        );
        assert_eq!(a.len(), 5, "one series per name, never per event");
        let p = a.snapshot(now, 1_000);
        assert_eq!(value(&p, "game_kills_total"), Some(5.0));
        assert_eq!(value(&p, "game_players"), Some(12.0));
        assert_eq!(
            value(&p, "game_tick_seconds"),
            Some(11.0),
            "1 + 10 for @0.1"
        );
        assert_eq!(value(&p, "game_rtt"), Some(2.0));
        assert_eq!(value(&p, "game_unique"), Some(2.0));
        // Counters and histograms stay cumulative; sets start over each cycle.
        feed(&mut a, &["game.kills:1|c"], now);
        let p = a.snapshot(now, 2_000);
        assert_eq!(value(&p, "game_kills_total"), Some(6.0));
        assert_eq!(value(&p, "game_tick_seconds"), Some(11.0));
        assert_eq!(value(&p, "game_unique"), Some(0.0));
        // Idle series are forgotten.
        assert!(a.snapshot(now + IDLE, 3_000).is_empty());
    }

    #[test]
    fn tags_become_labels_mappings_rename_and_a_type_clash_is_refused() {
        let mut a = Aggregator::new(vec![Mapping {
            pattern: "srv.*.latency".into(),
            name: "game_action_ack_latency".into(),
        }]);
        let now = Instant::now();
        feed(
            &mut a,
            &["srv.eu-3.latency:12|ms|#shard_id:3,player.id:p-9"],
            now,
        );
        let p = a.snapshot(now, 1);
        assert_eq!(p[0].0.name, "game_action_ack_latency_seconds");
        assert_eq!(
            p[0].0.labels,
            [
                ("player_id".to_string(), "p-9".to_string()),
                ("shard_id".to_string(), "3".to_string())
            ]
        );
        let clash = a.add(&parse("srv.x.latency:1|g").expect("parses"), now);
        assert!(clash.is_ok(), "a gauge has no suffix: another name");
        let clash = a.add(
            &parse("game_action_ack_latency_seconds:1|h|#shard_id:3,player.id:p-9")
                .expect("parses"),
            now,
        );
        assert!(clash.is_err(), "same series, another type");
    }

    #[test]
    fn globs_and_names() {
        assert!(glob("a.*.c", "a.b.c"));
        assert!(glob("a.*", "a."));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a.*.c", "a.b.d"));
        assert_eq!(sanitize("game.tick-time", true), "game_tick_time");
        assert_eq!(sanitize("9lives", true), "_9lives");
        assert_eq!(sanitize("a:b", false), "a_b");
    }
}
