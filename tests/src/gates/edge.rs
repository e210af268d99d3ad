//! The gates that need the agent's own behaviour: T4 chaos, T5 replay, T6
//! completeness, T7 cardinality guard and the privacy sweep. Real `edge-agent`s, each
//! fed by a synthetic game (pushes to its local receiver) and a game log full of PII,
//! send over mTLS to one or two real `edge-gateway`s; the gateways write metrics to
//! Kinesis on a local AWS API server (moto, behind a [`Cutoff`] proxy that can make it
//! unreachable) and logs to a file spool. A rogue client with a valid certificate
//! pushes a forbidden label straight to a gateway.
//!
//! Accounting is exact. Every game push carries its own timestamp, so a sample is
//! identified by `(host, timestamp)`; every push the agent answered 2xx must be found
//! in the stream with all its points. Every log line carries `lid=<host>#<n>;`, and
//! every line written must be in a spool. Kinesis's arrival time of each record gives
//! the write→sink age of each sample (freshness).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_exporter::export::native_to_proto;
use edge_exporter::histogram::ExpHistogram;
use edge_schema::policy::LabelPolicy;
use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use prost::Message;

use super::t1::{Accounting, Found, account};
use super::{GateResult, Plot, find_pii, metric_sum, scrape_gateway};
use crate::fleet::{Acked, client_tls, connect, now_ms, quantile};
use crate::moto::{AWS_TEST_ENV, Moto};
use crate::pki::{Pki, gateway_yaml_head};
use crate::procs::{Proc, free_port, http_get, remote_write_post};
use crate::proxy::Cutoff;

/// PII the game writes into its log and tries to put in a metric label; none may reach
/// a sink.
pub const PII: &[&str] = &[
    "ana.silva@example.com",
    "bo.chen@example.net",
    "203.0.113.77",
    "198.51.100.4",
    "2001:db8::1f",
    "p-10042017",
    "p-77810364",
];

/// The player id the bad metric and the rogue client put in a forbidden label.
const BAD_PLAYER: &str = "p-99912345";

/// What to run.
#[derive(Clone, Debug)]
pub struct EdgeOptions {
    /// The gate it is run for (`T4`, `T5`): plot titles.
    pub name: String,
    /// Agents (game hosts), each with its game and log.
    pub agents: usize,
    /// How long the games push and log.
    pub duration: Duration,
    /// The agents' and games' cadence.
    pub cadence: Duration,
    /// Gateway replicas (the agents list them all, in order).
    pub gateways: usize,
    /// T4: when the first gateway is killed (SIGKILL).
    pub kill_at: Option<Duration>,
    /// T5: when Kinesis is made unreachable, and for how long.
    pub cut: Option<(Duration, Duration)>,
    /// Log lines each game writes per second.
    pub log_lines_per_second: u32,
    /// How long after the games stop everything may take to arrive.
    pub drain_bound: Duration,
    /// Where configs, certificates, queues, logs and spools go.
    pub dir: PathBuf,
}

/// A record read back from the metrics stream.
#[derive(Clone, Debug)]
pub struct SinkRecord {
    /// The host (the partition key's last part).
    pub host: String,
    /// When Kinesis took it (ms since the epoch).
    pub arrival_ms: i64,
    /// The request it holds.
    pub request: WriteRequest,
    /// Its uncompressed bytes, for the privacy sweep.
    pub raw: Vec<u8>,
}

/// The cardinality guard's observations.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// When the first push with a forbidden label reached an agent (ms since epoch).
    pub agent_bad_first_ms: Option<i64>,
    /// When an agent's `edge_series_rejected_total{reason="forbidden_label"}` was
    /// first seen above zero.
    pub agent_counted_ms: Option<i64>,
    /// When the rogue client's first push reached the gateway.
    pub gateway_bad_first_ms: Option<i64>,
    /// When the gateway's `edge_gateway_discarded_samples_total{reason="forbidden_label"}`
    /// was first seen above zero.
    pub gateway_counted_ms: Option<i64>,
    /// The gateway's answers to the rogue client, by status.
    pub rogue_answers: BTreeMap<u16, u64>,
}

/// What a run produced.
#[derive(Debug)]
pub struct EdgeRun {
    /// What was run.
    pub opts: EdgeOptions,
    /// Wall clock at the start (ms since the epoch): plots count from here.
    pub start_ms: i64,
    /// Every game push an agent answered 2xx.
    pub acked: Vec<Acked>,
    /// The metrics stream, shard by shard in sequence order.
    pub records: Vec<SinkRecord>,
    /// Log lines written, per host.
    pub logs_written: BTreeMap<String, u64>,
    /// `(host, line)` → times found in the log spools.
    pub logs_found: HashMap<(String, u64), u32>,
    /// PII values found in the log spools, and where.
    pub pii_in_logs: Vec<(String, String)>,
    /// Bytes of log spool searched.
    pub log_bytes: u64,
    /// Tokens (`tok_`) found in the log spools: the PII was there, and replaced.
    pub tokens: u64,
    /// Log lines the agents shed when the gateway asked them to (its `edge-shed-logs`
    /// hint under overload), as they counted them.
    pub logs_shed: u64,
    /// The cardinality guard's observations.
    pub guard: Guard,
    /// The agents' queues at their fullest (records, summed).
    pub queue_peak: f64,
    /// From the games' stop until every queue was empty and every line read; `None`
    /// if that did not happen within the drain bound.
    pub drained_after: Option<Duration>,
    /// Samples each gateway accepted, as last seen (a killed one: before it died).
    pub gateway_accepted: Vec<f64>,
    /// 503 answers the gateways gave (the sink down), summed.
    pub gateway_503: f64,
    /// Requests the cut-off proxy refused.
    pub cut_refused: u64,
    /// Over time: accepted samples/s, agent queues, freshness.
    pub plots: Vec<Plot>,
}

/// A game server's metrics: 20 series of the catalog, pushed to the agent with a
/// timestamp each time.
#[derive(Debug)]
struct Game {
    actions: [f64; 6],
    ticks: Vec<ExpHistogram>,
    rng: fastrand::Rng,
}

const ACTIONS: [&str; 6] = ["move", "attack", "ability", "item", "chat", "other"];

fn series(name: &str, labels: &[(&str, &str)]) -> Vec<Label> {
    let mut out = vec![Label {
        name: "__name__".into(),
        value: name.into(),
    }];
    out.extend(labels.iter().map(|(k, v)| Label {
        name: (*k).into(),
        value: (*v).into(),
    }));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn float(labels: Vec<Label>, value: f64, ts: i64) -> TimeSeries {
    TimeSeries {
        labels,
        samples: vec![Sample {
            value,
            timestamp: ts,
        }],
        ..Default::default()
    }
}

impl Game {
    fn new(seed: u64) -> Game {
        Game {
            actions: [0.0; 6],
            ticks: (0..4).map(|_| ExpHistogram::new(2)).collect(),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// One push: tick histograms and player gauges per shard, action counters, queue
    /// depths, instances and capacity.
    fn request(&mut self, ts: i64) -> WriteRequest {
        let mut out = Vec::with_capacity(EXPECTED_SERIES);
        for (shard, tick) in self.ticks.iter_mut().enumerate() {
            let shard = (shard + 1).to_string();
            for _ in 0..30 {
                let _ = tick.record(0.004 + 0.012 * self.rng.f64());
            }
            out.push(TimeSeries {
                labels: series("game_tick_duration_seconds", &[("shard_id", &shard)]),
                histograms: vec![native_to_proto(&tick.to_native(), ts)],
                ..Default::default()
            });
            out.push(float(
                series("game_players_connected", &[("shard_id", &shard)]),
                f64::from(self.rng.u32(40..64)),
                ts,
            ));
        }
        for (i, action) in ACTIONS.iter().enumerate() {
            self.actions[i] += f64::from(self.rng.u32(10..200));
            out.push(float(
                series("game_actions_total", &[("action", action)]),
                self.actions[i],
                ts,
            ));
        }
        for q in 1..=4 {
            out.push(float(
                series("game_queue_depth", &[("queue", &format!("q{q}"))]),
                f64::from(self.rng.u32(0..30)),
                ts,
            ));
        }
        out.push(float(series("game_instances_active", &[]), 4.0, ts));
        out.push(float(series("game_player_capacity", &[]), 256.0, ts));
        WriteRequest {
            timeseries: out,
            ..Default::default()
        }
    }
}

/// Series every game pushes, every cycle.
pub const EXPECTED_SERIES: usize = 20;

/// A push carrying a forbidden label (a player id), as a careless game might.
fn bad_request(ts: i64) -> WriteRequest {
    WriteRequest {
        timeseries: vec![float(
            series(
                "game_actions_total",
                &[("action", "move"), ("player_id", BAD_PLAYER)],
            ),
            1.0,
            ts,
        )],
        ..Default::default()
    }
}

fn snappy(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap_or_default()
}

/// A series' identity without host labels: `name{k=v,…}`.
fn series_key(labels: &[Label], host_labels: &[&str]) -> String {
    let name = labels
        .iter()
        .find(|l| l.name == "__name__")
        .map_or("", |l| l.value.as_str());
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| l.name != "__name__" && !host_labels.contains(&l.name.as_str()))
        .map(|l| format!("{}={}", l.name, l.value))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

const HOST_LABELS: [&str; 5] = ["region", "az", "cluster", "instance_type", "build_id"];

/// Whether a series is one the game pushed (not an overflow fold, not host metrics).
fn is_game(ts: &TimeSeries) -> bool {
    ts.labels
        .iter()
        .any(|l| l.name == "__name__" && l.value.starts_with("game_"))
        && !ts.labels.iter().any(|l| l.name == "edge_overflow")
}

fn points(ts: &TimeSeries) -> impl Iterator<Item = i64> + '_ {
    ts.samples
        .iter()
        .map(|s| s.timestamp)
        .chain(ts.histograms.iter().map(|h| h.timestamp))
}

/// `(host, timestamp)` → game points found in the stream.
pub fn index(records: &[SinkRecord]) -> Found {
    let mut found = Found::new();
    for r in records {
        for s in r.request.timeseries.iter().filter(|s| is_game(s)) {
            for t in points(s) {
                *found.entry((r.host.clone(), t)).or_default() += 1;
            }
        }
    }
    found
}

/// Metric loss and duplication, counted exactly.
pub fn metrics_accounting(run: &EdgeRun) -> Accounting {
    account(&run.acked, &index(&run.records))
}

/// The level of log line `n`, as [`write_log`] writes it.
fn level_of(n: u64) -> &'static str {
    ["info", "info", "warn", "debug", "error"][(n % 5) as usize]
}

/// The log lines, accounted for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogAccounting {
    /// Lines written.
    pub written: u64,
    /// Lines in no spool and not explained by shedding: debug lines beyond what the
    /// agents counted as shed, and every missing line of a higher level.
    pub lost: u64,
    /// Debug lines in no spool, which the agents may have shed when told to.
    pub missing_debug: u64,
    /// Lines found more than once.
    pub duplicated: u64,
}

/// Every log line written must be in a spool, unless it was a debug line the agents
/// shed (and counted) when the gateway asked.
pub fn logs_accounting(run: &EdgeRun) -> LogAccounting {
    let mut out = LogAccounting::default();
    let mut missing_other = 0;
    for (host, n) in &run.logs_written {
        out.written += n;
        for i in 0..*n {
            match run.logs_found.get(&(host.clone(), i)).copied().unwrap_or(0) {
                0 if level_of(i) == "debug" => out.missing_debug += 1,
                0 => missing_other += 1,
                c => out.duplicated += u64::from(c - 1),
            }
        }
    }
    out.lost = missing_other + out.missing_debug.saturating_sub(run.logs_shed);
    out
}

/// New samples that arrived after a later one of the same host: for each host, in
/// stream order, a record's timestamps not seen before must not be older than the
/// newest seen (a resent batch, all seen, is a duplicate, not disorder).
pub fn order_violations(records: &[SinkRecord]) -> u64 {
    let mut seen: HashMap<&str, (HashSet<i64>, i64)> = HashMap::new();
    let mut violations = 0;
    for r in records {
        let (set, newest) = seen.entry(&r.host).or_default();
        let mut fresh: Vec<i64> = r
            .request
            .timeseries
            .iter()
            .filter(|s| is_game(s))
            .flat_map(points)
            .filter(|t| !set.contains(t))
            .collect();
        fresh.sort_unstable();
        fresh.dedup();
        if fresh.first().is_some_and(|t| t < newest) {
            violations += 1;
        }
        for t in fresh {
            set.insert(t);
            *newest = (*newest).max(t);
        }
    }
    violations
}

/// Write→sink age of every game sample: `(arrival, age)` in ms.
fn ages(records: &[SinkRecord]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for r in records {
        for s in r.request.timeseries.iter().filter(|s| is_game(s)) {
            out.extend(points(s).map(|t| (r.arrival_ms, r.arrival_ms - t)));
        }
    }
    out
}

/// Freshness around a fault starting `from` ms after the start and ending `to`: the
/// normal age (2× the p99 before the fault, at least two cycles), and how long after
/// the fault ended samples kept arriving older than that.
pub fn recovery(run: &EdgeRun, from: Duration, to: Duration) -> (Duration, Duration, i64) {
    let ages = ages(&run.records);
    let fault = run.start_ms + from.as_millis() as i64;
    let end = run.start_ms + to.as_millis() as i64;
    let before: Vec<i64> = ages
        .iter()
        .filter(|(at, _)| *at < fault)
        .map(|a| a.1)
        .collect();
    let p99 = quantile(before, 0.99);
    let normal = (2 * p99).max(2 * run.opts.cadence.as_millis() as i64);
    let last_stale = ages
        .iter()
        .filter(|(at, age)| *at >= fault && *age > normal)
        .map(|a| a.0)
        .max();
    let recovered = last_stale.map_or(Duration::ZERO, |t| {
        Duration::from_millis((t - end).max(0) as u64)
    });
    (Duration::from_millis(normal as u64), recovered, p99)
}

fn freshness_plot(run: &EdgeRun) -> Plot {
    let mut per_second: BTreeMap<i64, i64> = BTreeMap::new();
    for (at, age) in ages(&run.records) {
        let slot = per_second.entry((at - run.start_ms) / 1000).or_default();
        *slot = (*slot).max(age);
    }
    Plot {
        name: format!(
            "{} freshness (oldest sample arriving, per second)",
            run.opts.name
        ),
        unit: "seconds".into(),
        points: per_second
            .into_iter()
            .map(|(t, age)| (t as f64, age as f64 / 1000.0))
            .collect(),
    }
}

fn loss_text(acc: &Accounting, logs: LogAccounting, shed: u64) -> String {
    format!(
        "{} game pushes / {} points acknowledged by agents: {} lost, {} duplicated; \
         {} log lines written: {} lost, {} duplicated, {} debug lines shed on the gateway's hint \
         ({} counted by the agents)",
        acc.acked_requests,
        acc.acked_samples,
        acc.lost_samples,
        acc.duplicated_samples,
        logs.written,
        logs.lost,
        logs.duplicated,
        logs.missing_debug,
        shed
    )
}

/// T4: a gateway killed under load; zero loss, and freshness back to normal within
/// 12 cycles (the seed's 2 minutes at a 10 s cadence).
pub fn t4_verdict(run: &EdgeRun) -> GateResult {
    let acc = metrics_accounting(run);
    let logs = logs_accounting(run);
    let kill = run.opts.kill_at.unwrap_or_default();
    let (normal, recovered, p99) = recovery(run, kill, kill);
    let bound = run.opts.cadence * 12;
    let both_used =
        run.gateway_accepted.len() >= 2 && run.gateway_accepted.iter().all(|a| *a > 0.0);
    GateResult {
        gate: "T4 chaos".into(),
        criterion: format!(
            "one of {} gateways killed at {:?}: zero loss (metrics and logs); freshness back under \
             normal within {bound:?} (12 cycles; the seed's 2 min at 10 s)",
            run.opts.gateways, kill
        ),
        measured: format!(
            "{}; freshness p99 before {:.1} s, normal ≤ {:.1} s, back to normal {:.1} s after the kill; \
             samples accepted per gateway {:?}",
            loss_text(&acc, logs, run.logs_shed),
            p99 as f64 / 1000.0,
            normal.as_secs_f64(),
            recovered.as_secs_f64(),
            run.gateway_accepted
        ),
        pass: acc.acked_samples > 0
            && acc.lost_samples == 0
            && logs.written > 0
            && logs.lost == 0
            && recovered <= bound
            && both_used,
    }
}

/// T5: the sink unreachable for a while; agents and gateway buffer, then catch up in
/// per-host order with nothing lost.
pub fn t5_verdict(run: &EdgeRun) -> GateResult {
    let acc = metrics_accounting(run);
    let logs = logs_accounting(run);
    let (from, length) = run.opts.cut.unwrap_or_default();
    let (normal, caught_up, _) = recovery(run, from, from + length);
    let disorder = order_violations(&run.records);
    GateResult {
        gate: "T5 replay".into(),
        criterion: format!(
            "Kinesis unreachable for {length:?}: agents buffer and, told by the gateway's overload \
             hint, shed debug logs first (counted); nothing else lost; per-host order kept; caught up \
             (queues empty, freshness normal) within {:?} of the sink's return",
            run.opts.drain_bound
        ),
        measured: format!(
            "{}; {} records out of per-host order; agent queues peaked at {} records; gateways answered \
             503 {} times; {} calls refused while cut; freshness back under {:.1} s {:.1} s after the \
             sink returned; queues drained {}",
            loss_text(&acc, logs, run.logs_shed),
            disorder,
            run.queue_peak,
            run.gateway_503,
            run.cut_refused,
            normal.as_secs_f64(),
            caught_up.as_secs_f64(),
            run.drained_after.map_or("never".to_string(), |d| format!(
                "{:.1} s after the games stopped",
                d.as_secs_f64()
            ))
        ),
        pass: acc.acked_samples > 0
            && acc.lost_samples == 0
            && logs.lost == 0
            && run.logs_shed > 0
            && disorder == 0
            && run.queue_peak > 0.0
            && run.cut_refused > 0
            && caught_up <= run.opts.drain_bound
            && run.drained_after.is_some(),
    }
}

/// T6: the share of expected series present in each window of `window`, per host:
/// `(present, expected, worst window's share)`.
pub fn completeness(run: &EdgeRun, window: Duration) -> (u64, u64, f64) {
    let w = window.as_millis().max(1) as i64;
    let mut present: HashMap<(String, i64), HashSet<String>> = HashMap::new();
    for r in &run.records {
        for s in r.request.timeseries.iter().filter(|s| is_game(s)) {
            let key = series_key(&s.labels, &HOST_LABELS);
            for t in points(s) {
                present
                    .entry((r.host.clone(), t.div_euclid(w)))
                    .or_default()
                    .insert(key.clone());
            }
        }
    }
    // The windows wholly inside what each host's game pushed.
    let mut span: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for a in &run.acked {
        let s = span.entry(&a.host).or_insert((a.ts_ms, a.ts_ms));
        s.0 = s.0.min(a.ts_ms);
        s.1 = s.1.max(a.ts_ms);
    }
    let (mut got, mut expected, mut worst) = (0u64, 0u64, 1.0f64);
    for (host, (first, last)) in span {
        let (a, b) = (first.div_euclid(w) + 1, last.div_euclid(w));
        for slot in a..b {
            let n = present
                .get(&(host.to_string(), slot))
                .map_or(0, |s| s.len().min(EXPECTED_SERIES)) as u64;
            got += n;
            expected += EXPECTED_SERIES as u64;
            worst = worst.min(n as f64 / EXPECTED_SERIES as f64);
        }
    }
    (got, expected, worst)
}

/// T6: ≥ 99.9% of expected series present per window, in every run given.
pub fn t6_verdict(runs: &[&EdgeRun], window: Duration) -> GateResult {
    let mut parts = Vec::new();
    let mut pass = !runs.is_empty();
    for run in runs {
        let (got, expected, worst) = completeness(run, window);
        let share = if expected == 0 {
            0.0
        } else {
            got as f64 / expected as f64
        };
        pass &= expected > 0 && share >= 0.999;
        parts.push(format!(
            "{} run: {got} of {expected} series-windows present ({:.3}%), worst window {:.1}%",
            run.opts.name,
            share * 100.0,
            worst * 100.0
        ));
    }
    GateResult {
        gate: "T6 completeness".into(),
        criterion: format!(
            "≥ 99.9% of the {EXPECTED_SERIES} series each game emits present in every {window:?} window \
             (the seed's 5 min, scaled), through the faults of T4 and T5"
        ),
        measured: parts.join("; "),
        pass,
    }
}

/// Series in the stream with a label the policy forbids.
pub fn forbidden_in_sink(records: &[SinkRecord]) -> u64 {
    let policy = LabelPolicy::shipped();
    records
        .iter()
        .flat_map(|r| &r.request.timeseries)
        .filter(|s| {
            s.labels
                .iter()
                .any(|l| policy.forbidden_match(&l.name).is_some())
        })
        .count() as u64
}

/// T7: a metric with a forbidden label refused at the agent and at the gateway,
/// counted within one cycle at each, none in the sink, its neighbours through.
pub fn t7_verdict(runs: &[&EdgeRun]) -> GateResult {
    let mut parts = Vec::new();
    let mut pass = !runs.is_empty();
    for run in runs {
        let g = &run.guard;
        // The agent publishes its counters once a cycle, and the sampler looks every
        // SAMPLE_EVERY: the bound is one cycle at the resolution of the measurement.
        let cycle = (run.opts.cadence + SAMPLE_EVERY).as_millis() as i64;
        let lag = |first: Option<i64>, counted: Option<i64>| match (first, counted) {
            (Some(f), Some(c)) => Some((c - f).max(0)),
            _ => None,
        };
        let agent = lag(g.agent_bad_first_ms, g.agent_counted_ms);
        let gateway = lag(g.gateway_bad_first_ms, g.gateway_counted_ms);
        let in_sink = forbidden_in_sink(&run.records);
        let rogue_passed: u64 = g
            .rogue_answers
            .iter()
            .filter(|(c, _)| (200..300).contains(*c))
            .map(|(_, n)| n)
            .sum();
        let neighbour = run.records.iter().any(|r| {
            r.host == "rogue-1"
                && r.request
                    .timeseries
                    .iter()
                    .any(|s| s.labels.iter().any(|l| l.value == "game_instances_active"))
        });
        pass &= agent.is_some_and(|l| l <= cycle)
            && gateway.is_some_and(|l| l <= cycle)
            && in_sink == 0
            && rogue_passed == 0
            && neighbour;
        let ms = |l: Option<i64>| l.map_or("never".to_string(), |l| format!("{l} ms"));
        parts.push(format!(
            "{} run: counted by the agent {} and by the gateway {} after the first bad push; \
             rogue answers {:?}; valid neighbour stored: {neighbour}; forbidden series in the sink: {in_sink}",
            run.opts.name,
            ms(agent),
            ms(gateway),
            g.rogue_answers
        ));
    }
    GateResult {
        gate: "T7 cardinality guard".into(),
        criterion: "a metric labelled player_id is refused by the agent (from the game) and by the gateway \
                    (from a client that skips the agent), counted within one cycle at each (+ the 250 ms the \
                    sampler looks every); 0 such series in the sink; its valid neighbours stored"
            .into(),
        measured: parts.join("; "),
        pass,
    }
}

/// Privacy: no PII value written to the game logs (or put in a label) is in any sink:
/// the metrics stream (every record, uncompressed) and every log spool.
pub fn privacy_verdict(runs: &[&EdgeRun]) -> GateResult {
    let mut leaks: Vec<String> = Vec::new();
    let (mut bytes, mut tokens) = (0u64, 0u64);
    let mut pii: Vec<&str> = PII.to_vec();
    pii.push(BAD_PLAYER);
    for run in runs {
        for (place, value) in &run.pii_in_logs {
            leaks.push(format!("{value} in {place}"));
        }
        bytes += run.log_bytes;
        tokens += run.tokens;
        for r in &run.records {
            bytes += r.raw.len() as u64;
            for value in find_pii(&r.raw, &pii) {
                leaks.push(format!("{value} in the metrics stream under {}", r.host));
            }
        }
    }
    leaks.sort();
    leaks.dedup();
    GateResult {
        gate: "Privacy".into(),
        criterion:
            "none of the PII values the games wrote into their logs or labels is in any sink \
                    (metrics stream, log spools), across the T4–T7 runs"
                .into(),
        measured: format!(
            "{:.1} MB searched for {} values; {} tokens in the log spools; found: {}",
            bytes as f64 / 1e6,
            pii.len(),
            tokens,
            if leaks.is_empty() {
                "none".to_string()
            } else {
                leaks.join(", ")
            }
        ),
        pass: bytes > 0 && tokens > 0 && leaks.is_empty(),
    }
}

/// Runs the scenario and reads every sink back.
pub async fn run(opts: &EdgeOptions) -> Result<EdgeRun, String> {
    let d = &opts.dir;
    let io = |e: std::io::Error| format!("{}: {e}", d.display());
    std::fs::create_dir_all(d).map_err(io)?;
    let pki = Pki::new(d).map_err(io)?;
    let moto = Moto::start();
    moto.create_stream("metrics", 2).await;
    let cutoff = Cutoff::start(moto.port).await?;

    let (mut gateways, gateway_ports) = start_gateways(opts, cutoff.port)?;

    let mut agents = Vec::new();
    let mut agent_ports = Vec::new();
    for i in 0..opts.agents {
        let (agent, port) = start_agent(opts, &pki, i, &gateway_ports)?;
        agents.push(agent);
        agent_ports.push(port);
    }

    let observer = client_tls(&pki.ca_der, &pki.client("observer", "game").map_err(io)?)?;
    let rogue = client_tls(&pki.ca_der, &pki.client("rogue-1", "game").map_err(io)?)?;
    let start = Instant::now();
    let start_ms = now_ms();
    let until = start + opts.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let guard = Arc::new(std::sync::Mutex::new(Guard::default()));

    let games: Vec<_> = agent_ports
        .iter()
        .enumerate()
        .map(|(i, port)| tokio::spawn(game(i, *port, opts.cadence, until, guard.clone())))
        .collect();
    let loggers: Vec<_> = (0..opts.agents)
        .map(|i| {
            let dir = d.join(format!("agent{i}/game"));
            let (rate, host) = (opts.log_lines_per_second, format!("gs-{i}"));
            std::thread::spawn(move || write_log(&dir, &host, rate, until))
        })
        .collect();
    let rogue_port = *gateway_ports.last().ok_or("no gateway")?;
    let rogue_task = tokio::spawn(rogue_client(
        rogue_port,
        rogue,
        opts.cadence,
        until,
        guard.clone(),
    ));
    let sampler = tokio::spawn(sample(
        Sampling {
            name: opts.name.clone(),
            agents: agent_ports.clone(),
            gateways: gateway_ports.clone(),
            tls: observer,
            start,
        },
        stop.clone(),
        guard.clone(),
    ));

    // The faults, on schedule.
    let mut faults: Vec<(Duration, Fault)> = Vec::new();
    if let Some(k) = opts.kill_at {
        faults.push((k, Fault::KillFirstGateway));
    }
    if let Some((from, length)) = opts.cut {
        faults.push((from, Fault::CutSink));
        faults.push((from + length, Fault::RestoreSink));
    }
    faults.sort_by_key(|f| f.0);
    for (at, fault) in faults {
        tokio::time::sleep_until((start + at).into()).await;
        match fault {
            Fault::KillFirstGateway => {
                if let Some(mut g) = gateways.first_mut().and_then(Option::take) {
                    g.kill();
                }
            }
            Fault::CutSink => cutoff.set(true),
            Fault::RestoreSink => cutoff.set(false),
        }
    }

    let mut acked = Vec::new();
    for g in games {
        acked.extend(g.await.map_err(|e| e.to_string())?);
    }
    let mut logs_written = BTreeMap::new();
    for (i, l) in loggers.into_iter().enumerate() {
        logs_written.insert(
            format!("gs-{i}"),
            l.join().map_err(|_| "a log writer panicked")??,
        );
    }
    let _ = rogue_task.await;

    let (drained_after, logs_shed) = drain(&agent_ports, &logs_written, opts).await;
    stop.store(true, Ordering::SeqCst);
    let sampled = sampler.await.map_err(|e| e.to_string())?;
    drop(agents);
    drop(gateways);

    let records = read_back(&moto).await?;

    let logs = LogSpools::read(opts)?;
    let guard = guard.lock().map(|g| g.clone()).unwrap_or_default();

    let mut run = EdgeRun {
        opts: opts.clone(),
        start_ms,
        acked,
        records,
        logs_written,
        logs_found: logs.found,
        pii_in_logs: logs.pii,
        log_bytes: logs.bytes,
        tokens: logs.tokens,
        logs_shed,
        guard,
        queue_peak: sampled.queue_peak,
        drained_after,
        gateway_accepted: sampled.accepted,
        gateway_503: sampled.unavailable,
        cut_refused: cutoff.refused.load(Ordering::Relaxed),
        plots: sampled.plots,
    };
    run.plots.push(freshness_plot(&run));
    Ok(run)
}

/// The faults a run can inject.
#[derive(Clone, Copy, Debug)]
enum Fault {
    KillFirstGateway,
    CutSink,
    RestoreSink,
}

/// The gateways: Kinesis (through the cut-off proxy on `sink_port`) for metrics, a
/// spool each for logs; the seed's overload threshold scaled to the cadence, with the
/// log shed as its action.
fn start_gateways(
    opts: &EdgeOptions,
    sink_port: u16,
) -> Result<(Vec<Option<Proc>>, Vec<u16>), String> {
    let d = &opts.dir;
    let io = |e: std::io::Error| format!("{}: {e}", d.display());
    let mut gateways = Vec::new();
    let mut gateway_ports = Vec::new();
    for g in 0..opts.gateways {
        let port = free_port();
        let gd = d.join(format!("gw{g}"));
        std::fs::create_dir_all(&gd).map_err(io)?;
        let p = Proc::configured(
            "edge-gateway",
            &gd,
            "gateway",
            &format!(
                "{head}tenants:\n  default: {{ samples_rate_limit: 1000000, burst: 2000000, max_series: 1000000, log_bytes_rate_limit: 100MiB }}\n\
                 fleet: {{ cadence: {}ms }}\n\
                 overload: {{ freshness_threshold_p99: {}ms, actions: [ {{ reduce_log_sampling: 50% }} ] }}\n\
                 sinks:\n  metrics: {{ kind: kinesis, stream: metrics, region: us-east-1, endpoint_url: \"http://127.0.0.1:{}\" }}\n  \
                 logs: {{ kind: file, dir: {gd}/spool }}\n",
                opts.cadence.as_millis(),
                // The seed's 10 s at a 10 s cadence, scaled.
                opts.cadence.as_millis(),
                sink_port,
                head = gateway_yaml_head(port, d),
                gd = gd.display(),
            ),
            AWS_TEST_ENV,
            port,
        )?;
        gateways.push(Some(p));
        gateway_ports.push(port);
    }
    Ok((gateways, gateway_ports))
}

/// Agent `i` (host `gs-<i>`): its certificate, tokenization key, game log directory
/// and config, listing every gateway in order for metrics and logs.
fn start_agent(
    opts: &EdgeOptions,
    pki: &Pki,
    i: usize,
    gateway_ports: &[u16],
) -> Result<(Proc, u16), String> {
    let d = &opts.dir;
    let io = |e: std::io::Error| format!("{}: {e}", d.display());
    let urls = |path: &str| {
        let list: Vec<String> = gateway_ports
            .iter()
            .map(|p| format!("\"https://localhost:{p}{path}\""))
            .collect();
        format!("[{}]", list.join(", "))
    };
    let ad = d.join(format!("agent{i}"));
    std::fs::create_dir_all(ad.join("game")).map_err(io)?;
    pki.write_client(&ad, &format!("gs-{i}"), "game")
        .map_err(io)?;
    let key: String = (0..32).map(|_| fastrand::digit(16)).collect();
    std::fs::write(ad.join("tokenize.key"), format!("{key}\n")).map_err(io)?;
    let port = free_port();
    let p = Proc::configured(
        "edge-agent",
        &ad,
        "agent",
        &format!(
            "host_labels: {{ region: sim-1, az: sim-1a, cluster: c{c}, instance_type: c7g.2xlarge, build_id: b1 }}\n\
             cadence: {ms}ms\nincident_cadence: {ms}ms\n\
             listen: 127.0.0.1:{port}\n\
             host_metrics: {{ enabled: true, filesystems: [/], disks: [], interfaces: [lo] }}\n\
             logs:\n  - {{ path: \"{ad}/game/*.log\", service: game, parser: json, read_from: beginning }}\n\
             tokenize: {{ key_file: {ad}/tokenize.key, detectors: {detectors} }}\n\
             output:\n  metrics_url: {m}\n  logs_url: {l}\n  \
             tls: {{ cert: {ad}/agent.crt, key: {ad}/agent.key, ca: {d}/ca.crt }}\n\
             queue: {{ dir: {ad}/queue }}\n",
            c = i % 4,
            ms = opts.cadence.as_millis(),
            ad = ad.display(),
            d = d.display(),
            m = urls("/api/v1/push"),
            l = urls("/v1/logs"),
            detectors = crate::rig::DETECTORS,
        ),
        &[],
        port,
    )?;
    Ok((p, port))
}

/// Waits until every agent's queue is empty and every log line is read (queued or
/// dropped), twice in a row, within the drain bound: how long it took from now, and the
/// log lines the agents shed on the gateway's hint.
async fn drain(
    agent_ports: &[u16],
    logs_written: &BTreeMap<String, u64>,
    opts: &EdgeOptions,
) -> (Option<Duration>, u64) {
    let stopped = Instant::now();
    let mut drained_after = None;
    let mut calm = 0;
    let mut shed = vec![0.0; opts.agents];
    while stopped.elapsed() < opts.drain_bound {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut empty = true;
        for (i, port) in agent_ports.iter().enumerate() {
            let text = match http_get(*port, "/metrics").await {
                Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
                _ => String::new(),
            };
            let queued = metric_sum(&text, "edge_queue_records", "");
            // Every line is either queued or dropped (counted, with its reason).
            let read = metric_sum(&text, "edge_logs_records_total", "")
                + metric_sum(&text, "edge_logs_dropped_total", "");
            if !text.is_empty() {
                shed[i] = metric_sum(&text, "edge_logs_dropped_total", "reason=\"shed\"");
            }
            let written = logs_written.get(&format!("gs-{i}")).copied().unwrap_or(0);
            empty &= !text.is_empty() && queued == 0.0 && read >= written as f64;
        }
        calm = if empty { calm + 1 } else { 0 };
        if calm >= 2 && stopped.elapsed() >= opts.cadence * 2 {
            drained_after = Some(stopped.elapsed());
            break;
        }
    }
    (drained_after, shed.iter().sum::<f64>() as u64)
}

/// The metrics stream, every record decompressed and decoded.
async fn read_back(moto: &Moto) -> Result<Vec<SinkRecord>, String> {
    moto.read_stream("metrics")
        .await?
        .into_iter()
        .map(|r| {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&r.data)
                .map_err(|e| format!("a record of {} is not snappy: {e}", r.key))?;
            let request = WriteRequest::decode(raw.as_slice())
                .map_err(|e| format!("a record of {} is not a WriteRequest: {e}", r.key))?;
            Ok(SinkRecord {
                host: r.key.rsplit('/').next().unwrap_or(&r.key).to_string(),
                arrival_ms: r.arrival_ms,
                request,
                raw,
            })
        })
        .collect()
}

/// What the log spools hold.
struct LogSpools {
    found: HashMap<(String, u64), u32>,
    pii: Vec<(String, String)>,
    bytes: u64,
    tokens: u64,
}

impl LogSpools {
    /// Reads every gateway's log spool: the line ids, PII and tokens in it.
    fn read(opts: &EdgeOptions) -> Result<LogSpools, String> {
        let d = &opts.dir;
        let mut pii: Vec<&str> = PII.to_vec();
        pii.push(BAD_PLAYER);
        let mut found = HashMap::new();
        let (mut in_logs, mut bytes, mut tokens) = (Vec::new(), 0u64, 0u64);
        for g in 0..opts.gateways {
            let spool = d.join(format!("gw{g}/spool"));
            edge_gateway::sink::file::for_each_record(&spool, "logs", |key, data| {
                bytes += data.len() as u64;
                tokens += count(data, b"tok_");
                for (host, n) in line_ids(data) {
                    *found.entry((host, n)).or_insert(0u32) += 1;
                }
                for value in find_pii(data, &pii) {
                    in_logs.push((format!("gw{g}'s log spool under {key}"), value.to_string()));
                }
            })
            .map_err(|e| format!("{}: {e}", spool.display()))?;
        }
        Ok(LogSpools {
            found,
            pii: in_logs,
            bytes,
            tokens,
        })
    }
}

fn count(hay: &[u8], needle: &[u8]) -> u64 {
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

/// The `lid=<host>#<n>;` ids in a spooled log record.
fn line_ids(data: &[u8]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(4).position(|w| w == b"lid=") {
        rest = &rest[at + 4..];
        let end = rest.iter().position(|b| *b == b';').unwrap_or(0);
        if let Ok(text) = std::str::from_utf8(&rest[..end])
            && let Some((host, n)) = text.split_once('#')
            && let Ok(n) = n.parse()
        {
            out.push((host.to_string(), n));
        }
    }
    out
}

/// A game: one push of its [`EXPECTED_SERIES`] series per cycle to its agent, and one
/// push of the bad metric; the pushes the agent answered 2xx.
async fn game(
    i: usize,
    port: u16,
    cadence: Duration,
    until: Instant,
    guard: Arc<std::sync::Mutex<Guard>>,
) -> Vec<Acked> {
    let mut g = Game::new(i as u64);
    let host = format!("gs-{i}");
    let mut acked = Vec::new();
    let mut next = Instant::now() + cadence.mul_f64(fastrand::f64());
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        next += cadence;
        let ts = now_ms();
        let request = g.request(ts);
        let points = request.timeseries.len() as u32;
        if let Ok((status, _)) = remote_write_post(port, "/api/v1/push", snappy(&request)).await
            && (200..300).contains(&status)
        {
            acked.push(Acked {
                host: host.clone(),
                ts_ms: ts,
                series: points,
                acked_ms: now_ms(),
            });
        }
        let sent = now_ms();
        if remote_write_post(port, "/api/v1/push", snappy(&bad_request(ts)))
            .await
            .is_ok()
            && let Ok(mut g) = guard.lock()
        {
            g.agent_bad_first_ms.get_or_insert(sent);
        }
    }
    acked
}

/// A client with a valid certificate that skips the agent: a valid series and one
/// labelled with a player id, straight to the gateway, every cycle.
async fn rogue_client(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    cadence: Duration,
    until: Instant,
    guard: Arc<std::sync::Mutex<Guard>>,
) {
    let mut send = None;
    while Instant::now() < until {
        tokio::time::sleep(cadence).await;
        if send.is_none() {
            send = connect(port, tls.clone()).await.ok();
        }
        let Some(s) = send.as_mut() else { continue };
        let ts = now_ms();
        let mut request = bad_request(ts);
        request.timeseries.push(float(
            series("game_instances_active", &[("region", "sim-1")]),
            1.0,
            ts,
        ));
        let Ok(req) = http::Request::post("https://localhost/api/v1/push")
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .body(Full::new(Bytes::from(snappy(&request))))
        else {
            continue;
        };
        let sent = now_ms();
        match s.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                if let Ok(mut g) = guard.lock() {
                    g.gateway_bad_first_ms.get_or_insert(sent);
                    *g.rogue_answers.entry(status).or_default() += 1;
                }
            }
            Err(_) => send = None,
        }
    }
}

/// A game log: `rate` JSON lines a second, each with its id and PII in the message and
/// fields; renamed away (`game.log.<k>`) and started again every 10 s. Lines written.
fn write_log(dir: &Path, host: &str, rate: u32, until: Instant) -> Result<u64, String> {
    use std::io::Write as _;
    let path = dir.join("game.log");
    let open = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut file = open(&path)?;
    let started = Instant::now();
    let mut rotated = 0u32;
    let mut n = 0u64;
    let tick = Duration::from_millis(100);
    let mut next = Instant::now();
    while Instant::now() < until {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while n < due {
            let pii = PII[(n % 5) as usize];
            let player = PII[5 + (n % 2) as usize];
            let level = level_of(n);
            writeln!(
                file,
                r#"{{"level":"{level}","msg":"lid={host}#{n}; session from {pii}","player_id":"{player}","client_ip":"{}"}}"#,
                PII[2 + (n % 3) as usize]
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
            n += 1;
        }
        let _ = file.flush();
        if started.elapsed() >= Duration::from_secs(10 * (u64::from(rotated) + 1)) {
            rotated += 1;
            let to = dir.join(format!("game.log.{rotated}"));
            std::fs::rename(&path, &to).map_err(|e| format!("{}: {e}", to.display()))?;
            file = open(&path)?;
        }
        next += tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(n)
}

struct Sampling {
    name: String,
    agents: Vec<u16>,
    gateways: Vec<u16>,
    tls: Arc<rustls::ClientConfig>,
    start: Instant,
}

struct Sampled {
    plots: Vec<Plot>,
    queue_peak: f64,
    accepted: Vec<f64>,
    unavailable: f64,
}

/// How often the agents and gateways are scraped.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Every [`SAMPLE_EVERY`]: the agents' queues and refusals, the gateways' acceptances, refusals
/// and 503s; a plot point each second.
async fn sample(
    s: Sampling,
    stop: Arc<AtomicBool>,
    guard: Arc<std::sync::Mutex<Guard>>,
) -> Sampled {
    let mut queue = Plot {
        name: format!("{} agent queues (records waiting, all agents)", s.name),
        unit: "records".into(),
        ..Plot::default()
    };
    let mut accepted = Plot {
        name: format!("{} accepted samples per second (all gateways)", s.name),
        unit: "samples/s".into(),
        ..Plot::default()
    };
    let mut conns = vec![None; s.gateways.len()];
    let mut last_accepted = vec![0.0; s.gateways.len()];
    let mut last_503 = vec![0.0; s.gateways.len()];
    let mut peak = 0.0f64;
    let mut prev_total: Option<f64> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(SAMPLE_EVERY).await;
        n += 1;
        // A refusal counts from the answer that first showed it.
        let mark = |counted: fn(&mut Guard) -> &mut Option<i64>| {
            let now = now_ms();
            if let Ok(mut g) = guard.lock() {
                counted(&mut g).get_or_insert(now);
            }
        };
        let mut queued = 0.0;
        for port in &s.agents {
            if let Ok((200, body)) = http_get(*port, "/metrics").await {
                let text = String::from_utf8_lossy(&body);
                queued += metric_sum(&text, "edge_queue_records", "");
                let refused = metric_sum(
                    &text,
                    "edge_series_rejected_total",
                    "reason=\"forbidden_label\"",
                );
                if refused > 0.0 {
                    mark(|g| &mut g.agent_counted_ms);
                }
            }
        }
        for (i, port) in s.gateways.iter().enumerate() {
            if let Some(text) = scrape_gateway(&mut conns[i], *port, &s.tls).await {
                last_accepted[i] = metric_sum(&text, "edge_gateway_samples_accepted_total", "");
                last_503[i] = metric_sum(&text, "edge_gateway_requests_total", "code=\"503\"");
                let refused = metric_sum(
                    &text,
                    "edge_gateway_discarded_samples_total",
                    "reason=\"forbidden_label\"",
                );
                if refused > 0.0 {
                    mark(|g| &mut g.gateway_counted_ms);
                }
            }
        }
        peak = peak.max(queued);
        if n.is_multiple_of(4) {
            let t = s.start.elapsed().as_secs_f64();
            queue.points.push((t, queued));
            let total: f64 = last_accepted.iter().sum();
            if let Some(p) = prev_total {
                accepted.points.push((t, (total - p).max(0.0)));
            }
            prev_total = Some(total);
        }
    }
    Sampled {
        plots: vec![accepted, queue],
        queue_peak: peak,
        accepted: last_accepted,
        unavailable: last_503.iter().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, arrival_ms: i64, ts: &[i64]) -> SinkRecord {
        let mut request = WriteRequest::default();
        for t in ts {
            request.timeseries.push(float(
                series("game_players_connected", &[("shard_id", "1")]),
                1.0,
                *t,
            ));
        }
        SinkRecord {
            host: host.into(),
            arrival_ms,
            raw: request.encode_to_vec(),
            request,
        }
    }

    #[test]
    fn order_allows_resends_but_not_new_samples_behind_newer_ones() {
        let ok = [
            record("a", 0, &[1, 2]),
            record("a", 0, &[1, 2]),
            record("b", 0, &[1]),
            record("a", 0, &[3]),
        ];
        assert_eq!(order_violations(&ok), 0);
        let bad = [record("a", 0, &[3]), record("a", 0, &[1])];
        assert_eq!(order_violations(&bad), 1);
    }

    #[test]
    fn a_game_pushes_its_expected_series_and_the_bad_one_is_forbidden() {
        let r = Game::new(1).request(5);
        assert_eq!(r.timeseries.len(), EXPECTED_SERIES);
        let keys: HashSet<String> = r
            .timeseries
            .iter()
            .map(|s| series_key(&s.labels, &HOST_LABELS))
            .collect();
        assert_eq!(keys.len(), EXPECTED_SERIES);
        let bad = SinkRecord {
            host: "x".into(),
            arrival_ms: 0,
            raw: Vec::new(),
            request: bad_request(5),
        };
        assert_eq!(forbidden_in_sink(&[bad]), 1);
    }

    #[test]
    fn line_ids_are_read_from_raw_records() {
        let data = b"\x0a\x10lid=gs-1#7; x\x12lid=gs-12#130; y lid=junk;";
        assert_eq!(
            line_ids(data),
            vec![("gs-1".to_string(), 7), ("gs-12".to_string(), 130)]
        );
    }
}
