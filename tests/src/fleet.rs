//! A simulated fleet: game hosts that each push 300 series (host-metric shapes, game
//! counters and gauges, native histograms of tick time and action→ack latency) over
//! their own mTLS connection with keep-alive, at a cadence; every answer's status and
//! time to first byte is recorded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_exporter::export::native_to_proto;
use edge_exporter::histogram::ExpHistogram;
use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

/// Series every simulated host pushes.
pub const SERIES_PER_HOST: usize = 300;

/// The labels the simulated fleet sends that the shipped policy neither allows everywhere
/// nor the shipped catalog declares for their metric: the simulator stands for hosts
/// whose own catalog declares them (and `host` tells hosts apart in the spool).
pub const FLEET_EXTRA_LABELS: [&str; 7] = [
    "host",
    "cpu",
    "shard",
    "device",
    "mountpoint",
    "event",
    "action",
];

/// The label policy a gateway fed by the simulated fleet uses: the shipped one, with
/// [`FLEET_EXTRA_LABELS`] allowed everywhere.
pub fn fleet_policy_yaml() -> String {
    let shipped = edge_schema::policy::SHIPPED_POLICY_YAML;
    let allow = "  - allow_labels: [";
    match shipped.find(allow) {
        Some(at) => {
            let start = at + allow.len();
            format!(
                "{}{}, {}",
                &shipped[..start],
                FLEET_EXTRA_LABELS.join(", "),
                &shipped[start..]
            )
        }
        None => panic!("the shipped policy has no `allow_labels: [` line to extend"),
    }
}

const CPU_MODES: [&str; 8] = [
    "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
];
const ACTIONS: [&str; 5] = ["move", "attack", "ability", "item", "chat"];
const SHARDS: usize = 16;

/// One game host.
#[derive(Debug)]
pub struct SimHost {
    /// Its name (`gs-<n>`, or `<prefix>-<n>`), the certificate's CN.
    pub name: String,
    labels: Vec<(String, String)>,
    counters: Vec<f64>,
    tick: Vec<ExpHistogram>,
    ack: Vec<ExpHistogram>,
    rng: fastrand::Rng,
}

/// A log-normal-ish draw: `median * e^(sigma * z)`, z from a sum of uniforms.
fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64) -> f64 {
    let z: f64 = (0..6).map(|_| rng.f64()).sum::<f64>() - 3.0;
    median * (sigma * z * std::f64::consts::SQRT_2).exp()
}

impl SimHost {
    /// Host `index` of a region, named `gs-<index>`.
    pub fn new(index: usize, region: &str) -> SimHost {
        SimHost::named("gs", index, region)
    }

    /// Host `index` of a region, named `<prefix>-<index>` (its name is also its `host`
    /// label): fleets of different tenants need different names, since the sink's
    /// accounting keys records by host.
    pub fn named(prefix: &str, index: usize, region: &str) -> SimHost {
        let name = format!("{prefix}-{index}");
        let labels = vec![
            ("region".to_string(), region.to_string()),
            (
                "az".to_string(),
                format!("{region}{}", ["a", "b", "c"][index % 3]),
            ),
            ("cluster".to_string(), format!("c{}", index % 8)),
            ("instance_type".to_string(), "c7g.2xlarge".to_string()),
            ("build_id".to_string(), "4.2.1".to_string()),
            ("host".to_string(), name.clone()),
        ];
        SimHost {
            name,
            labels,
            counters: vec![0.0; SERIES_PER_HOST],
            tick: (0..SHARDS).map(|_| ExpHistogram::new(2)).collect(),
            ack: (0..ACTIONS.len()).map(|_| ExpHistogram::new(2)).collect(),
            rng: fastrand::Rng::with_seed(index as u64),
        }
    }

    fn series(&self, name: &str, extra: &[(&str, String)]) -> Vec<Label> {
        let mut labels: Vec<Label> = Vec::with_capacity(self.labels.len() + extra.len() + 1);
        labels.push(Label {
            name: "__name__".into(),
            value: name.into(),
        });
        labels.extend(self.labels.iter().map(|(k, v)| Label {
            name: k.clone(),
            value: v.clone(),
        }));
        labels.extend(extra.iter().map(|(k, v)| Label {
            name: (*k).into(),
            value: v.clone(),
        }));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }

    /// One push of [`SERIES_PER_HOST`] series, stamped `now_ms`; counters and histograms
    /// advance as a game's would over one cadence.
    pub fn write_request(&mut self, now_ms: i64) -> WriteRequest {
        let mut out: Vec<TimeSeries> = Vec::with_capacity(SERIES_PER_HOST);
        let mut slot = 0usize;
        let mut sample =
            |host: &mut SimHost, name: &str, extra: &[(&str, String)], inc: f64, gauge: bool| {
                let value = if gauge {
                    inc
                } else {
                    host.counters[slot] += inc;
                    host.counters[slot]
                };
                slot += 1;
                let labels = host.series(name, extra);
                out.push(TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value,
                        timestamp: now_ms,
                    }],
                    ..Default::default()
                });
            };
        for cpu in 0..8 {
            for mode in CPU_MODES {
                let inc = self.rng.f64() * 2.0;
                sample(
                    self,
                    "node_cpu_seconds_total",
                    &[("cpu", cpu.to_string()), ("mode", mode.into())],
                    inc,
                    false,
                );
            }
        }
        for name in [
            "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes",
            "node_memory_Cached_bytes",
            "node_memory_Buffers_bytes",
            "node_memory_SwapTotal_bytes",
            "node_memory_SwapFree_bytes",
        ] {
            let v = 16e9 * self.rng.f64();
            sample(self, name, &[], v, true);
        }
        for name in [
            "node_filesystem_avail_bytes",
            "node_filesystem_size_bytes",
            "node_filesystem_free_bytes",
        ] {
            let v = 100e9 * self.rng.f64();
            sample(self, name, &[("mountpoint", "/".into())], v, true);
        }
        for name in [
            "node_disk_read_bytes_total",
            "node_disk_written_bytes_total",
            "node_disk_io_time_seconds_total",
        ] {
            let inc = 1e6 * self.rng.f64();
            sample(self, name, &[("device", "nvme0n1".into())], inc, false);
        }
        for name in [
            "node_network_receive_bytes_total",
            "node_network_transmit_bytes_total",
            "node_network_receive_packets_total",
            "node_network_transmit_packets_total",
        ] {
            let inc = 1e7 * self.rng.f64();
            sample(self, name, &[("device", "ens5".into())], inc, false);
        }
        for name in ["node_load1", "node_load5", "node_load15"] {
            let v = 4.0 * self.rng.f64();
            sample(self, name, &[], v, true);
        }
        for shard in 0..SHARDS {
            let players = (self.rng.f64() * 64.0).round();
            sample(
                self,
                "game_players",
                &[("shard", shard.to_string())],
                players,
                true,
            );
            for action in ACTIONS {
                let inc = (self.rng.f64() * 200.0).round();
                sample(
                    self,
                    "game_actions_total",
                    &[("shard", shard.to_string()), ("action", action.into())],
                    inc,
                    false,
                );
            }
        }
        for queue in 0..10 {
            for stat in [
                "enqueued",
                "dequeued",
                "timeouts",
                "cancelled",
                "matched",
                "backfilled",
                "rejected",
                "retried",
                "expired",
                "merged",
            ] {
                let inc = (self.rng.f64() * 20.0).round();
                sample(
                    self,
                    "game_queue_events_total",
                    &[("queue", format!("q{queue}")), ("event", stat.into())],
                    inc,
                    false,
                );
            }
        }
        // Native histograms: tick time by shard (about 15 ms), action→ack by action
        // (about 40 ms, a long tail).
        for shard in 0..SHARDS {
            for _ in 0..30 {
                let v = lognormal(&mut self.rng, 0.015, 0.3);
                let _ = self.tick[shard].record(v);
            }
            let labels = self.series(
                "game_tick_duration_seconds",
                &[("shard", shard.to_string())],
            );
            out.push(TimeSeries {
                labels,
                histograms: vec![native_to_proto(&self.tick[shard].to_native(), now_ms)],
                ..Default::default()
            });
        }
        for (i, action) in ACTIONS.iter().enumerate() {
            for _ in 0..30 {
                let v = lognormal(&mut self.rng, 0.04, 0.6);
                let _ = self.ack[i].record(v);
            }
            let labels = self.series(
                "game_action_ack_seconds",
                &[("action", (*action).to_string())],
            );
            out.push(TimeSeries {
                labels,
                histograms: vec![native_to_proto(&self.ack[i].to_native(), now_ms)],
                ..Default::default()
            });
        }
        WriteRequest {
            timeseries: out,
            ..Default::default()
        }
    }
}

/// The load over time: a base cadence and phases of a load multiplier.
///
/// A phase `(offset, m)` puts the load at `m`× from `offset` (counted from the drive's
/// start) until the next phase; before the first phase the load is 1×, so no phases is
/// a steady 1×. At load `m` a host pushes every `base / m`. Pushes follow the load
/// exactly: a host's k-th push falls where the pushes due so far (the integral of
/// `m / base` over time) reach `k` plus the host's random phase, so a phase of `m`× for
/// `d` brings `m · d / base` pushes per host, whatever the cadence before it. A load of
/// 0 is a pause.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The cadence at 1× load.
    pub base: Duration,
    /// `(offset from the start, load multiplier)`, in order of offset.
    pub phases: Vec<(Duration, f64)>,
}

impl Schedule {
    /// One push per `base`, all along.
    pub fn steady(base: Duration) -> Schedule {
        Schedule {
            base,
            phases: Vec::new(),
        }
    }

    /// Phases of `phase` each, starting at zero, at the given loads.
    pub fn phases(base: Duration, phase: Duration, loads: &[f64]) -> Schedule {
        Schedule {
            base,
            phases: loads
                .iter()
                .enumerate()
                .map(|(i, m)| (phase.saturating_mul(i as u32), *m))
                .collect(),
        }
    }

    /// `(start in s, pushes per second per host)` of each stretch of constant load, in
    /// order; the last one lasts forever.
    fn segments(&self) -> Vec<(f64, f64)> {
        let per_push = self.base.as_secs_f64().max(1e-6);
        let mut phases = self.phases.clone();
        phases.sort_by_key(|(at, _)| *at);
        let mut out = vec![(0.0, 1.0 / per_push)];
        for (at, m) in phases {
            let rate = if m.is_finite() { m.max(0.0) } else { 0.0 } / per_push;
            let at = at.as_secs_f64();
            match out.last_mut() {
                Some(last) if last.0 == at => last.1 = rate,
                _ => out.push((at, rate)),
            }
        }
        out
    }

    /// The load multiplier in force `t` after the start.
    pub fn load_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        let rate = self
            .segments()
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or(0.0, |(_, r)| *r);
        rate * self.base.as_secs_f64().max(1e-6)
    }

    /// The cadence `t` after the start: the base divided by the load in force (`None`
    /// during a pause).
    pub fn cadence_at(&self, t: Duration) -> Option<Duration> {
        let m = self.load_at(t);
        (m > 0.0).then(|| self.base.div_f64(m))
    }

    /// Pushes due per host from the start to `t` after it (a real number).
    pub fn pushes_by(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        let segments = self.segments();
        let mut n = 0.0;
        for (i, (from, rate)) in segments.iter().enumerate() {
            if *from >= t {
                break;
            }
            let to = segments.get(i + 1).map_or(t, |s| s.0.min(t));
            n += (to - from) * rate;
        }
        n
    }

    /// When, after the start, the pushes due reach `n`: the inverse of
    /// [`Schedule::pushes_by`]. `None` if they never do (a pause that lasts forever).
    pub fn time_of(&self, n: f64) -> Option<Duration> {
        let segments = self.segments();
        let mut done = 0.0;
        for (i, (from, rate)) in segments.iter().enumerate() {
            let next = segments.get(i + 1).map(|s| s.0);
            let here = next.map_or(f64::INFINITY, |to| (to - from) * rate);
            if *rate > 0.0 && done + here >= n {
                let t = from + (n - done).max(0.0) / rate;
                return Some(Duration::from_secs_f64(t.max(0.0)));
            }
            done += here;
        }
        None
    }
}

/// Pending pushes one host keeps at most; past it the oldest is shed.
pub const MAX_PENDING: usize = 10_000;

/// Time allowed for one attempt (connect, or send and answer), as the agent's sender.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The wait after a 429 or 503 that gives no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest `Retry-After` obeyed (the agent's cap).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How a fleet is driven: where, at what load over time, and what a host does with a
/// push that is refused or fails.
#[derive(Clone, Debug)]
pub struct Drive {
    /// Gateways (ports on 127.0.0.1) in failover order: a host starts on the first and,
    /// after a transport error, reconnects to the next one (wrapping round).
    pub ports: Vec<u16>,
    /// The load over time, from [`Drive::start`].
    pub schedule: Schedule,
    /// The run's zero: the schedule's offsets and the report's times count from it.
    pub start: Instant,
    /// Answers to requests sent before this are not counted in `statuses`, `answers`,
    /// `samples_accepted` and the hint counts (connections and handshakes happen
    /// first). `acked` holds every 2xx regardless.
    pub measure_from: Instant,
    /// No push is generated from this instant on.
    pub until: Instant,
    /// Like the agent's sender: keep every push until a 2xx (or a refusal that can never
    /// succeed), resending it after a 429/503 (waiting its `Retry-After`) or a transport
    /// error. Off: each push is sent once, at its tick, as a plain load generator does.
    pub resend: bool,
    /// With `resend`, pushes still pending after [`Drive::until`] are sent until this
    /// deadline; what is left then is counted as `unsent`.
    pub drain_until: Instant,
    /// Pending pushes a host keeps at most ([`MAX_PENDING`]); past it the oldest is
    /// dropped and counted as `shed`.
    pub max_pending: usize,
    /// Pushes pending fleet-wide (generated, not yet answered for good), kept current
    /// by every host; what a host gives up at the deadline leaves it.
    pub backlog: Option<Arc<AtomicU64>>,
    /// From this instant on each host notes when it first has nothing pending; the
    /// report's `drained_at` is the latest of those (the fleet's backlog drained).
    pub drained_from: Option<Instant>,
    /// Once true, hosts generate no more pushes, as after [`Drive::until`] (a run that
    /// has seen what it came for can end early).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Drive {
    /// Today's plain load: one port, a steady cadence, each push sent once.
    pub fn steady(port: u16, cadence: Duration, measure_from: Instant, until: Instant) -> Drive {
        Drive {
            ports: vec![port],
            schedule: Schedule::steady(cadence),
            start: Instant::now(),
            measure_from,
            until,
            resend: false,
            drain_until: until,
            max_pending: MAX_PENDING,
            backlog: None,
            drained_from: None,
            stop: None,
        }
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests answered, by status (every attempt, resends included).
    pub statuses: BTreeMap<u16, u64>,
    /// Attempts that got no answer (connection errors, timeouts).
    pub errors: u64,
    /// Samples in requests answered 2xx.
    pub samples_accepted: u64,
    /// Every answer: when its request was sent, its time to first byte, its status.
    pub answers: Vec<Answered>,
    /// Every request answered 2xx, measured or not: what the sink must hold.
    pub acked: Vec<Acked>,
    /// Answers carrying the gateway's `edge-shed-logs` hint.
    pub shed_hints: u64,
    /// 429 and 503 answers carrying `Retry-After`.
    pub retry_after: u64,
    /// Pushes dropped, oldest first, because a host's pending pushes were at the cap.
    pub shed: u64,
    /// Pushes refused for good (a 4xx other than 408 and 429) and dropped.
    pub refused: u64,
    /// Pushes still pending at the deadline.
    pub unsent: u64,
    /// The latest of the hosts' first moments with nothing pending after
    /// [`Drive::drained_from`], in seconds since [`Drive::start`].
    pub drained_at: Option<f32>,
    /// Hosts that never had nothing pending after [`Drive::drained_from`].
    pub undrained: u64,
}

/// One answer, as the host saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Answered {
    /// When the request was sent, in seconds since the drive's start.
    pub at: f32,
    /// Time to first byte.
    pub ttfb: Duration,
    /// The status.
    pub status: u16,
}

/// A request the gateway answered 2xx: host `host` pushed `series` series stamped
/// `ts_ms` (every series of one push carries the same timestamp).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The host's name (`gs-<n>`).
    pub host: String,
    /// The push's sample timestamp.
    pub ts_ms: i64,
    /// Series in the push.
    pub series: u32,
    /// When the 2xx came (ms since the Unix epoch, the clock of `ts_ms`).
    pub acked_ms: i64,
}

impl LoadReport {
    /// The `q` quantile of TTFB.
    pub fn ttfb_quantile(&self, q: f64) -> Duration {
        quantile(self.answers.iter().map(|a| a.ttfb).collect(), q)
    }

    /// Answers with `status` sent in `[from, to)` seconds since the drive's start.
    pub fn count(&self, status: u16, from: f32, to: f32) -> u64 {
        self.answers
            .iter()
            .filter(|a| a.status == status && a.at >= from && a.at < to)
            .count() as u64
    }

    fn merge(&mut self, other: LoadReport) {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.errors += other.errors;
        self.samples_accepted += other.samples_accepted;
        self.answers.extend(other.answers);
        self.acked.extend(other.acked);
        self.shed_hints += other.shed_hints;
        self.retry_after += other.retry_after;
        self.shed += other.shed;
        self.refused += other.refused;
        self.unsent += other.unsent;
        self.drained_at = match (self.drained_at, other.drained_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.undrained += other.undrained;
    }
}

/// The `q` quantile of `values` (zero when there are none).
pub fn quantile<T: Ord + Copy + Default>(mut values: Vec<T>, q: f64) -> T {
    if values.is_empty() {
        return T::default();
    }
    values.sort_unstable();
    let i = ((values.len() as f64 * q) as usize).min(values.len() - 1);
    values[i]
}

/// A TLS client config presenting `cert` and trusting `ca_der`, offering HTTP/2.
pub fn client_tls(
    ca_der: &[u8],
    cert: &crate::pki::ClientCert,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca_der.to_vec().into())
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert.cert.clone().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key.clone().into()),
        )
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A push waiting for its answer: the encoded body and what the accounting needs.
#[derive(Debug)]
struct Pending {
    body: Bytes,
    ts_ms: i64,
    series: u32,
}

/// What one attempt got back.
#[derive(Debug)]
struct Reply {
    status: u16,
    ttfb: Duration,
    retry_after: Option<Duration>,
    shed_hint: bool,
}

/// Wall-clock time in ms since the Unix epoch (the clock of sample timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn gauge(backlog: &Option<Arc<AtomicU64>>, add: bool, n: u64) {
    if let Some(g) = backlog {
        if add {
            g.fetch_add(n, Ordering::Relaxed);
        } else {
            g.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// What happens to a push after an answer, as the agent's sender decides it.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Acked,
    RetryAfter(Duration),
    Refused,
}

fn next_for(status: u16, retry_after: Option<Duration>) -> Next {
    match status {
        200..=299 => Next::Acked,
        408 | 429 | 500..=599 => Next::RetryAfter(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
        _ => Next::Refused,
    }
}

/// Sends `body` on `send` and reads the answer, within `limit`.
async fn attempt(
    send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    body: Bytes,
    limit: Instant,
) -> Result<Reply, String> {
    let request = http::Request::builder()
        .method("POST")
        .uri("https://localhost/api/v1/push")
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let exchange = async {
        send.ready().await.map_err(|e| e.to_string())?;
        let response = send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let ttfb = sent.elapsed();
        let status = response.status().as_u16();
        let headers = response.headers();
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let shed_hint = headers.contains_key(edge_gateway::server::SHED_HEADER);
        let _ = response.into_body().collect().await;
        Ok::<_, String>(Reply {
            status,
            ttfb,
            retry_after,
            shed_hint,
        })
    };
    tokio::time::timeout_at(limit.into(), exchange)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// Runs `host` as `drive` says (see [`Drive`] and [`Schedule`]): connects to the first
/// port, then pushes on the schedule, the first push at a random point of the first
/// cadence (as real hosts are spread out). Without `resend` each push is sent once, at
/// its tick (or at once after the previous answer if that came late), stamped when it
/// is made; with it, pushes are stamped with their tick, queue in a FIFO and are sent
/// front first, one at a time: a 2xx pops it, a 429/503 (or 408, 5xx) waits the
/// answer's `Retry-After` (1 s without one) and resends the same bytes, any other 4xx
/// pops it as refused, a transport error drops the connection, moves to the next port
/// and resends after 100–200 ms.
pub async fn drive_host(
    mut host: SimHost,
    tls: Arc<rustls::ClientConfig>,
    drive: &Drive,
) -> LoadReport {
    let mut report = LoadReport::default();
    if drive.ports.is_empty() {
        return report;
    }
    let mut port = 0usize;
    let mut send = tokio::time::timeout(SEND_TIMEOUT, connect(drive.ports[port], tls.clone()))
        .await
        .ok()
        .and_then(Result::ok);
    let now = Instant::now();
    // The wall clock at the start (which may lie ahead: time to connect first).
    let start_ms = if drive.start > now {
        now_ms() + (drive.start - now).as_millis() as i64
    } else {
        now_ms() - (now - drive.start).as_millis() as i64
    };
    let phase = drive.schedule.pushes_by(drive.start.elapsed()) + fastrand::f64();
    let due = |k: u64| {
        drive
            .schedule
            .time_of(phase + k as f64)
            .map(|d| drive.start + d)
    };
    let mut k = 0u64;
    let mut next_due = due(k);
    let deadline = drive.drain_until.max(drive.until);
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut retry_at = Instant::now();
    let mut drained: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if drive
            .drained_from
            .is_some_and(|mark| drained.is_none() && now >= mark && queue.is_empty())
        {
            drained = Some(now);
        }
        let stopped = drive
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed));
        // Make what is due (without resend, one at a time, as it is sent).
        while let Some(at) = next_due {
            if at > now || at >= drive.until || stopped || (!drive.resend && !queue.is_empty()) {
                break;
            }
            let ts_ms = if drive.resend {
                start_ms + at.saturating_duration_since(drive.start).as_millis() as i64
            } else {
                now_ms()
            };
            let request = host.write_request(ts_ms);
            let series = request.timeseries.len() as u32;
            let body = snap::raw::Encoder::new()
                .compress_vec(&request.encode_to_vec())
                .unwrap_or_default();
            queue.push_back(Pending {
                body: Bytes::from(body),
                ts_ms,
                series,
            });
            gauge(&drive.backlog, true, 1);
            if queue.len() > drive.max_pending.max(1) {
                queue.pop_front();
                report.shed += 1;
                gauge(&drive.backlog, false, 1);
            }
            k += 1;
            next_due = due(k);
        }
        let generating = !stopped && next_due.is_some_and(|at| at < drive.until);
        if queue.is_empty() && !generating {
            break;
        }
        if drive.resend && now >= deadline && !queue.is_empty() {
            report.unsent += queue.len() as u64;
            gauge(&drive.backlog, false, queue.len() as u64);
            queue.clear();
            break;
        }
        if !queue.is_empty() && now >= retry_at {
            let limit = if drive.resend {
                deadline.min(now + SEND_TIMEOUT)
            } else {
                now + SEND_TIMEOUT
            };
            let mut reply = Err(String::new());
            // A connection the gateway closed (idle past `limits.idle_timeout`, or a
            // GOAWAY at its maximum age) is opened again first, as the agent does.
            if send.as_ref().is_some_and(|s| s.is_closed()) {
                send = None;
            }
            if send.is_none() {
                match tokio::time::timeout_at(limit.into(), connect(drive.ports[port], tls.clone()))
                    .await
                {
                    Ok(Ok(s)) => send = Some(s),
                    Ok(Err(e)) => reply = Err(e),
                    Err(_) => reply = Err("no connection in time".into()),
                }
            }
            let Some(front) = queue.front() else { continue };
            let sent = Instant::now();
            if let Some(s) = send.as_mut() {
                reply = attempt(s, front.body.clone(), limit).await;
            }
            let counted = sent >= drive.measure_from;
            match reply {
                Ok(r) => {
                    if counted {
                        report.answers.push(Answered {
                            at: sent.saturating_duration_since(drive.start).as_secs_f32(),
                            ttfb: r.ttfb,
                            status: r.status,
                        });
                        *report.statuses.entry(r.status).or_default() += 1;
                        report.shed_hints += u64::from(r.shed_hint);
                        if matches!(r.status, 429 | 503) && r.retry_after.is_some() {
                            report.retry_after += 1;
                        }
                    }
                    match next_for(r.status, r.retry_after) {
                        Next::Acked => {
                            report.acked.push(Acked {
                                host: host.name.clone(),
                                ts_ms: front.ts_ms,
                                series: front.series,
                                acked_ms: now_ms(),
                            });
                            if counted {
                                report.samples_accepted += u64::from(front.series);
                            }
                            queue.pop_front();
                            gauge(&drive.backlog, false, 1);
                        }
                        Next::RetryAfter(wait) if drive.resend => {
                            retry_at = Instant::now() + wait;
                        }
                        Next::RetryAfter(_) => {
                            queue.pop_front();
                            gauge(&drive.backlog, false, 1);
                        }
                        Next::Refused => {
                            report.refused += 1;
                            queue.pop_front();
                            gauge(&drive.backlog, false, 1);
                        }
                    }
                }
                Err(_) => {
                    report.errors += 1;
                    send = None;
                    port = (port + 1) % drive.ports.len();
                    retry_at = Instant::now() + Duration::from_millis(fastrand::u64(100..=200));
                    if !drive.resend {
                        queue.pop_front();
                        gauge(&drive.backlog, false, 1);
                    }
                }
            }
            continue;
        }
        // Nothing to do now: sleep until something is.
        let mut wake: Option<Instant> = None;
        let mut consider = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
        if let Some(at) = next_due.filter(|_| generating) {
            consider(at);
        }
        if !queue.is_empty() {
            consider(retry_at);
            if drive.resend {
                consider(deadline);
            }
        }
        if let Some(mark) = drive.drained_from.filter(|m| drained.is_none() && *m > now) {
            consider(mark);
        }
        match wake {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => break,
        }
    }
    if let Some(mark) = drive.drained_from {
        if drained.is_none() && queue.is_empty() && report.unsent == 0 {
            drained = Some(Instant::now().max(mark));
        }
        match drained {
            Some(at) => {
                report.drained_at = Some(at.saturating_duration_since(drive.start).as_secs_f32())
            }
            None => report.undrained = 1,
        }
    }
    report
}

/// One mTLS HTTP/2 connection to `127.0.0.1:port` (server name `localhost`).
pub async fn connect(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

/// Drives every host at once, steadily, each push sent once (see [`Drive::steady`]),
/// and merges their reports.
pub async fn drive_fleet(
    hosts: Vec<(SimHost, Arc<rustls::ClientConfig>)>,
    port: u16,
    cadence: Duration,
    measure_from: Instant,
    until: Instant,
) -> LoadReport {
    drive_fleet_with(hosts, &Drive::steady(port, cadence, measure_from, until)).await
}

/// Drives every host at once as `drive` says (see [`drive_host`]) and merges their
/// reports.
pub async fn drive_fleet_with(
    hosts: Vec<(SimHost, Arc<rustls::ClientConfig>)>,
    drive: &Drive,
) -> LoadReport {
    let tasks: Vec<_> = hosts
        .into_iter()
        .map(|(host, tls)| {
            let drive = drive.clone();
            tokio::spawn(async move { drive_host(host, tls, &drive).await })
        })
        .collect();
    let mut report = LoadReport::default();
    for t in tasks {
        if let Ok(r) = t.await {
            report.merge(r);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_of_the_simulated_fleet_passes_the_gateways_allowlist_under_the_fleet_policy() {
        let policy = edge_schema::policy::LabelPolicy::from_yaml(
            std::path::Path::new("fleet-labels.yaml"),
            &fleet_policy_yaml(),
        )
        .expect("the fleet policy loads");
        let schema =
            edge_schema::check::Schema::new(policy, edge_schema::catalog::Catalog::shipped());
        let mut host = SimHost::new(3, "eu-west-1");
        let request = host.write_request(now_ms());
        assert_eq!(request.timeseries.len(), SERIES_PER_HOST);
        for series in &request.timeseries {
            let name = &series
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .expect("name")
                .value;
            let labels = series
                .labels
                .iter()
                .map(|l| l.name.as_str())
                .filter(|n| *n != "__name__");
            assert_eq!(schema.check_label_names(name, labels), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_host_pushes_300_series_with_native_histograms() {
        let mut h = SimHost::new(7, "eu-west-1");
        let r = h.write_request(1_000);
        assert_eq!(r.timeseries.len(), SERIES_PER_HOST);
        let hist = r
            .timeseries
            .iter()
            .filter(|s| !s.histograms.is_empty())
            .count();
        assert_eq!(hist, SHARDS + ACTIONS.len());
        let r2 = h.write_request(2_000);
        // Counters only go up.
        assert!(r2.timeseries[0].samples[0].value >= r.timeseries[0].samples[0].value);
        // Every series is distinct.
        let mut keys: Vec<String> = r
            .timeseries
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), SERIES_PER_HOST);
    }
    #[test]
    fn a_steady_schedule_is_one_push_per_cadence() {
        let s = Schedule::steady(Duration::from_secs(10));
        assert_eq!(s.load_at(Duration::from_secs(1_000)), 1.0);
        assert_eq!(s.cadence_at(Duration::ZERO), Some(Duration::from_secs(10)));
        assert!((s.pushes_by(Duration::from_secs(35)) - 3.5).abs() < 1e-9);
        assert_eq!(s.time_of(0.0), Some(Duration::ZERO));
        assert_eq!(s.time_of(2.5), Some(Duration::from_secs(25)));
    }

    #[test]
    fn phases_set_the_cadence_and_the_pushes_due() {
        let s = Schedule::phases(
            Duration::from_secs(1),
            Duration::from_secs(5),
            &[1.0, 3.0, 5.0, 1.0],
        );
        let at = Duration::from_secs_f64;
        assert_eq!(s.load_at(at(4.99)), 1.0);
        assert_eq!(s.load_at(at(5.0)), 3.0);
        assert_eq!(s.load_at(at(12.0)), 5.0);
        assert_eq!(s.load_at(at(99.0)), 1.0, "the last phase lasts");
        assert_eq!(s.cadence_at(at(12.0)), Some(Duration::from_millis(200)));
        // 5 at 1×, 15 at 3×, 25 at 5×, then one a second.
        for (t, n) in [
            (5.0, 5.0),
            (10.0, 20.0),
            (15.0, 45.0),
            (20.0, 50.0),
            (7.0, 11.0),
        ] {
            assert!(
                (s.pushes_by(at(t)) - n).abs() < 1e-9,
                "{t}: {}",
                s.pushes_by(at(t))
            );
            let back = s.time_of(n).expect("due").as_secs_f64();
            assert!((back - t).abs() < 1e-6, "{n}: {back}");
        }
        // A host's pushes in each phase: load × phase / base, wherever its phase falls.
        for phase in [0.0, 0.3, 0.99] {
            let times: Vec<f64> = (0..60)
                .filter_map(|k| s.time_of(phase + k as f64))
                .map(|d| d.as_secs_f64())
                .collect();
            let within = |a: f64, b: f64| times.iter().filter(|t| **t >= a && **t < b).count();
            assert_eq!(
                [
                    within(0.0, 5.0),
                    within(5.0, 10.0),
                    within(10.0, 15.0),
                    within(15.0, 20.0)
                ],
                [5, 15, 25, 5],
                "phase {phase}"
            );
        }
        // Unsorted phases are taken in order of offset; a phase at zero replaces the
        // implicit 1×.
        let mut shuffled = s.clone();
        shuffled.phases.reverse();
        assert!((shuffled.pushes_by(at(15.0)) - 45.0).abs() < 1e-9);
    }

    #[test]
    fn a_pause_brings_no_pushes_and_one_forever_never_ends() {
        let secs = Duration::from_secs;
        let s = Schedule {
            base: secs(2),
            phases: vec![(secs(4), 0.0), (secs(10), 2.0)],
        };
        assert_eq!(s.cadence_at(secs(5)), None);
        assert!((s.pushes_by(secs(10)) - 2.0).abs() < 1e-9);
        // The third push (n = 2) is due at the end of the first phase; the next after
        // the pause, one a second at 2×.
        assert_eq!(s.time_of(2.0), Some(secs(4)));
        assert_eq!(s.time_of(2.5), Some(Duration::from_millis(10_500)));
        let stop = Schedule {
            base: secs(1),
            phases: vec![(secs(3), 0.0)],
        };
        assert_eq!(stop.time_of(3.5), None);
        assert!((stop.pushes_by(secs(100)) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn answers_become_the_agents_decisions() {
        let s = Duration::from_secs;
        assert_eq!(next_for(204, None), Next::Acked);
        assert_eq!(next_for(429, Some(s(3))), Next::RetryAfter(s(3)));
        assert_eq!(next_for(503, None), Next::RetryAfter(DEFAULT_RETRY_AFTER));
        assert_eq!(next_for(500, None), Next::RetryAfter(DEFAULT_RETRY_AFTER));
        assert_eq!(next_for(400, None), Next::Refused);
        assert_eq!(next_for(413, Some(s(1))), Next::Refused);
    }
}
