//! The gateway's YAML (shape in `DESIGN.md`), with `${VAR}` expansion.
//!
//! As with the agent: parse into a raw form (unknown keys and wrong types refused with
//! their line), then validate into [`GatewayConfig`], collecting every problem with its
//! key path. A reload goes through the same function, so a file that would not start
//! the gateway is never swapped in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_schema::config::Number;
use serde::Deserialize;

/// The tenant whose limits every tenant inherits where its own entry is silent.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<String>,
    admin_listen: Option<String>,
    tls: Option<RawTls>,
    replicas: Option<Number<u32>>,
    #[serde(default)]
    identities: RawIdentities,
    policy: Option<String>,
    catalog: Option<String>,
    tokenize: Option<edge_tokenize::config::RawTokenize>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    fleet: RawFleet,
    overload: Option<RawOverload>,
    sinks: Option<RawSinks>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    admission: RawAdmission,
    /// Read by `edge-gateway relay`; `validate` checks it too.
    relay: Option<RawRelay>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    stream: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    checkpoint: Option<String>,
    leases: Option<RawLeases>,
    target: Option<RawTarget>,
    max_batch_bytes: Option<String>,
    /// Refused (with a message naming `leases`): the static split is gone.
    instance_index: Option<Number<u32>>,
    /// Refused, as `instance_index`.
    instance_count: Option<Number<u32>>,
    start: Option<String>,
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeases {
    table: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: String,
    sigv4: Option<RawSigv4>,
    tls: Option<RawClientTls>,
}

/// What `edge-gateway relay` reads of the file: the `relay` block only, so a relay host
/// needs none of the gateway's files.
#[derive(Deserialize)]
struct RawRelayFile {
    relay: Option<RawRelay>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTls {
    /// `tls: off` (YAML may read the word as a boolean).
    Switch(bool),
    /// `tls: "off"`
    Off(String),
    Files(RawTlsFiles),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsFiles {
    cert: String,
    key: String,
    client_ca: String,
    client_auth: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdentities {
    spiffe_trust_domain: Option<String>,
    #[serde(default)]
    subjects: BTreeMap<String, String>,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    sha256: String,
    tenant: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    samples_rate_limit: Option<Number<f64>>,
    burst: Option<Number<u64>>,
    max_series: Option<Number<u64>>,
    max_label_names: Option<Number<usize>>,
    max_label_value_length: Option<Number<usize>>,
    max_label_name_length: Option<Number<usize>>,
    log_bytes_rate_limit: Option<String>,
    log_bytes_burst: Option<String>,
    span_rate_limit: Option<f64>,
    span_burst: Option<u64>,
    priority: Option<Number<u32>>,
    catch_up: Option<String>,
    creation_grace_period: Option<String>,
    past_grace_period: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    cadence: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverload {
    freshness_threshold_p99: Option<String>,
    ttfb_threshold_p99: Option<String>,
    #[serde(default)]
    actions: Vec<RawAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    reduce_log_sampling: Option<String>,
    throttle_tenants: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSinks {
    metrics: RawSink,
    logs: RawSink,
    traces: Option<RawSink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: String,
    dir: Option<String>,
    stream: Option<String>,
    delivery_stream: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    url: Option<String>,
    sigv4: Option<RawSigv4>,
    tls: Option<RawClientTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigv4 {
    region: String,
    service: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientTls {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<String>,
    max_decompressed_bytes: Option<String>,
    max_decompressed_bytes_in_flight: Option<String>,
    max_connection_age: Option<String>,
    shutdown_grace: Option<String>,
    max_connections: Option<Number<usize>>,
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    idle_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmission {
    max_queue_wait: Option<String>,
    min_limit: Option<Number<usize>>,
    max_limit: Option<Number<usize>>,
    initial_limit: Option<Number<usize>>,
    smoothing: Option<Number<f64>>,
    latency_tolerance: Option<Number<f64>>,
    max_queued: Option<Number<usize>>,
}

/// Where the certificate, key and client CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Whether a client certificate is required at the handshake (the default), or
    /// optional so that bearer-token clients can connect.
    pub client_cert_required: bool,
}

/// How a request's tenant is found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identities {
    /// URI SAN `spiffe://<this>/tenant/<tenant>/…` names the tenant.
    pub spiffe_trust_domain: Option<String>,
    /// `(pattern, tenant)`: a subject like `CN=gs-*` (`*` matches any run) → tenant.
    pub subjects: Vec<(String, String)>,
    /// `(sha256 of the token, tenant)`.
    pub tokens: Vec<([u8; 32], String)>,
}

/// A tenant's limits, as configured for the region (before dividing by replicas).
#[derive(Clone, Debug, PartialEq)]
pub struct TenantLimits {
    /// Samples (and histograms) per second.
    pub samples_rate_limit: f64,
    /// Samples one request, or a burst of requests, may carry at once.
    pub burst: u64,
    /// Active series (seen in the last 5 minutes).
    pub max_series: u64,
    /// Labels per series, `__name__` included.
    pub max_label_names: usize,
    /// Bytes of a label value.
    pub max_label_value_length: usize,
    /// Bytes of a label name.
    pub max_label_name_length: usize,
    /// Log bytes (decompressed) per second.
    pub log_bytes_rate_limit: u64,
    /// Log bytes at once.
    pub log_bytes_burst: u64,
    /// Spans per second.
    pub span_rate_limit: f64,
    /// Spans one request, or a burst of requests, may carry at once.
    pub span_burst: u64,
    /// Higher is more important: under overload, tenants are throttled from the lowest
    /// priority up, after the configured actions (`server/overload.rs`).
    pub priority: u32,
    /// The catch-up allowance: how much of its rates (as a duration of each) a tenant
    /// saves while under them, to spend over them when it resends a backlog
    /// (`quota.rs`). Zero: none.
    pub catch_up: Duration,
    /// How far ahead of the gateway's clock a timestamp may be (Mimir's
    /// `creation_grace_period`), in milliseconds.
    pub creation_grace_period_ms: i64,
    /// How far behind it may be, in milliseconds; 0 is no limit (Mimir's
    /// `past_grace_period`). Set it to the store's out-of-order window.
    pub past_grace_period_ms: i64,
}

impl TenantLimits {
    /// The timestamps this tenant's series may carry, around now.
    pub fn time_window(&self) -> edge_schema::series::TimeWindow {
        edge_schema::series::TimeWindow {
            max_future_ms: self.creation_grace_period_ms,
            max_past_ms: (self.past_grace_period_ms > 0).then_some(self.past_grace_period_ms),
        }
    }
}

/// Spans per second a tenant may send to the region when its entry and `default` are
/// silent: 20,000 spans/s is 4 per second from each of 5,000 hosts, which head-sampled
/// game tracing stays well under; the burst is two seconds' worth, as for samples.
pub const DEFAULT_SPAN_RATE_LIMIT: f64 = 20_000.0;

/// The default `tenants.<t>.catch_up`: a minute of the tenant's rate. An agent pushed
/// back for a few minutes resends a backlog of minutes; within its quota, a minute saved
/// while under its rate lets a tenant resend it at several times its steady load without
/// a 429 (a tenant at 1/6 of its quota refills it in 12 s), and the quota over any few
/// minutes stays within a minute's worth of its rate.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(60);
/// The longest `catch_up`: an hour of a tenant's rate at once is no longer a quota.
pub const MAX_CATCH_UP: Duration = Duration::from_secs(3600);

/// The built-in limits, the design's `default` tenant.
pub const BUILTIN_LIMITS: TenantLimits = TenantLimits {
    samples_rate_limit: 20_000.0,
    burst: 40_000,
    max_series: 2_000_000,
    max_label_names: 30,
    max_label_value_length: 128,
    max_label_name_length: 128,
    log_bytes_rate_limit: 10 << 20,
    log_bytes_burst: 20 << 20,
    span_rate_limit: DEFAULT_SPAN_RATE_LIMIT,
    span_burst: DEFAULT_SPAN_RATE_LIMIT as u64 * 2,
    priority: 100,
    catch_up: DEFAULT_CATCH_UP,
    creation_grace_period_ms: 10 * 60 * 1000,
    past_grace_period_ms: 0,
};

/// One overload action, applied in order while the sink is slow.
#[derive(Clone, Debug, PartialEq)]
pub enum OverloadAction {
    /// Ask agents to shed verbose logs (the percentage says how much: up to 50% sheds
    /// debug, more sheds info too).
    ReduceLogSampling(u8),
    /// Answer 429 to these tenants.
    ThrottleTenants(Vec<String>),
}

/// When the gateway counts itself overloaded and what it does about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Overload {
    /// The sink commit latency p99 (or the oldest backlog) above which actions start,
    /// judged per tenant (`server/overload.rs`).
    pub freshness_threshold_p99: Duration,
    /// The p99 of the gateway's own time per request (admission wait, work, and the
    /// commit while it holds its admission slot) above which the box counts as saturated.
    pub ttfb_threshold_p99: Duration,
    /// In the seed's shed order; after the last, 503 for everyone.
    pub actions: Vec<OverloadAction>,
}

/// A sink, as configured.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkConfig {
    /// A spool directory of append-only segments.
    File {
        /// The directory.
        dir: PathBuf,
    },
    /// Amazon Kinesis Data Streams.
    Kinesis {
        /// Stream name.
        stream: String,
        /// AWS region.
        region: String,
        /// A local AWS API server, for tests.
        endpoint_url: Option<String>,
    },
    /// Amazon Data Firehose.
    Firehose {
        /// Delivery stream name.
        delivery_stream: String,
        /// AWS region.
        region: String,
        /// A local AWS API server, for tests.
        endpoint_url: Option<String>,
    },
    /// A Prometheus remote_write endpoint.
    RemoteWrite(Target),
    /// An OTLP/HTTP traces endpoint (`…/v1/traces`), e.g. AWS X-Ray's with SigV4
    /// (service `xray`). Traces only.
    Otlp(Target),
}

/// A remote_write endpoint: a stock Prometheus, Mimir, or Amazon Managed Prometheus.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `http://` or `https://` URL of the write endpoint.
    pub url: String,
    /// SigV4 signing with the default AWS credential chain (AMP: service `aps`).
    pub sigv4: Option<Sigv4>,
    /// TLS towards the endpoint: a private CA and/or a client certificate.
    pub tls: Option<ClientTls>,
}

/// Where and as what requests are signed.
#[derive(Clone, Debug, PartialEq)]
pub struct Sigv4 {
    /// AWS region.
    pub region: String,
    /// Service name (`aps` for Amazon Managed Prometheus).
    pub service: String,
}

/// Client-side TLS files.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientTls {
    /// CA bundle to verify the endpoint (default: the system's roots).
    pub ca: Option<PathBuf>,
    /// Client certificate chain (mTLS), with `key`.
    pub cert: Option<PathBuf>,
    /// Client private key, with `cert`.
    pub key: Option<PathBuf>,
}

/// `edge-gateway relay`: Kinesis → remote_write.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayConfig {
    /// The Kinesis stream to read.
    pub stream: String,
    /// AWS region.
    pub region: String,
    /// A local AWS API server, for tests.
    pub endpoint_url: Option<String>,
    /// Where the shards' checkpoints are, and so how many relays may share the stream.
    pub checkpoints: Checkpoints,
    /// Where records go.
    pub target: Target,
    /// The most a remote_write request carries, uncompressed: records read together
    /// are merged into as few requests as this allows.
    pub max_batch_bytes: usize,
    /// Where a shard without a checkpoint starts.
    pub start: StartAt,
    /// `/metrics`, `/healthz` and `/ready`.
    pub listen: SocketAddr,
}

/// Where the relay keeps its checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub enum Checkpoints {
    /// A local file: one relay reads every shard.
    File(PathBuf),
    /// A DynamoDB lease table: any number of relays share the shards.
    Leases(LeaseConfig),
}

/// `relay.leases`: shard leases and checkpoints in DynamoDB (same region and endpoint
/// as the stream).
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseConfig {
    /// The table (created on demand).
    pub table: String,
    /// A lease not renewed for this long is taken over by another relay.
    pub timeout: Duration,
}

/// The default lease timeout.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `max_batch_bytes`: 4 MiB uncompressed per remote_write request.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 4 << 20;

/// Where a shard without a checkpoint starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record kept (nothing lost; the default).
    TrimHorizon,
    /// Only records written from now on.
    Latest,
}

/// Request limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Compressed body bytes (413 above).
    pub max_body_bytes: usize,
    /// Bytes a body may decompress to (413 above).
    pub max_decompressed_bytes: usize,
    /// Decompressed bytes held at once by every request together (503 above).
    pub max_decompressed_bytes_in_flight: u64,
    /// A connection older than this is asked to go (HTTP/2 GOAWAY, HTTP/1.1
    /// `Connection: close`), so the load balancer can rebalance.
    pub max_connection_age: Duration,
    /// SIGTERM: how long in-flight requests get.
    pub shutdown_grace: Duration,
    /// Connections open at once; past it a new connection is closed at once (counted).
    pub max_connections: usize,
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this (HTTP/1.1; slowloris).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this: 408 otherwise.
    pub body_read_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
}

/// `admission`: the work in progress and its queue (`server/admission.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionConfig {
    /// A request that cannot start its work within this is answered 503 + `Retry-After`.
    pub max_queue_wait: Duration,
    /// The limit never goes below this.
    pub min_limit: usize,
    /// Nor above this.
    pub max_limit: usize,
    /// Where it starts.
    pub initial_limit: usize,
    /// How far one window's verdict moves the limit down (0..1].
    pub smoothing: f64,
    /// Hold times up to this multiple of the baseline are not queueing (≥ 1).
    pub latency_tolerance: f64,
    /// Requests waiting at most; past it the worst-ranked is refused at once.
    pub max_queued: usize,
}

/// The default `admission.max_queue_wait`: a few tens of milliseconds, a small part of
/// the seed's 350 ms TTFB p99, and long enough that a burst of pushes arriving together
/// queues rather than being refused.
pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_millis(30);

/// The default admission settings. The limit starts at 16 and moves within 8..=1024.
/// The floor: a slot is held through the request's sink commit (up to 4×
/// `max_queue_wait`), and a commit to Kinesis or Firehose waits tens of milliseconds on
/// the network: at a region's 1× (170 pushes a second) about 9 commits are in flight, so
/// a floor of 2 turned a CPU hiccup that halved the limit into refusals of a load the box
/// carries easily (seen on a test machine starved by other processes: six hosts posting
/// logs through a Firehose sink got 503s). The start: the limit grows only while
/// requests wait, and a gateway restarted into a storm with a high start ran that many
/// decodes at once on two cores and starved the async workers that send every answer
/// (it started at 32: refusals up to 120 ms in the release saturation test); the lag
/// probe halves it within the first tens of milliseconds of a storm.
/// Smoothing 0.2 and a tolerance of 2 are the gradient limiters' usual figures; 1,000
/// waiters is about a second of work at 5× regional load, most of which would time out.
pub const DEFAULT_ADMISSION: AdmissionConfig = AdmissionConfig {
    max_queue_wait: DEFAULT_MAX_QUEUE_WAIT,
    min_limit: 8,
    max_limit: 1024,
    initial_limit: 16,
    smoothing: 0.2,
    latency_tolerance: 2.0,
    max_queued: 1000,
};

/// The default `overload.ttfb_threshold_p99`: the gateway's own time per request is
/// milliseconds when it is not saturated (admission keeps it near `max_queue_wait` when
/// it is); 250 ms is well inside the seed's 350 ms TTFB p99.
pub const DEFAULT_TTFB_THRESHOLD_P99: Duration = Duration::from_millis(250);

/// The validated gateway config.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// The admin port (plain HTTP: `/healthz`, `/ready`, `/metrics`), or `None`: then the
    /// data port serves those paths too.
    pub admin_listen: Option<SocketAddr>,
    /// TLS files, or `None` for `tls: off`.
    pub tls: Option<TlsFiles>,
    /// Replicas in the region: each enforces `limit / replicas`.
    pub replicas: u32,
    /// Tenant identity.
    pub identities: Identities,
    /// The label policy (`None`: the one shipped with `schemas/`).
    pub policy: Option<PathBuf>,
    /// The metric catalog (`None`: the one shipped with `schemas/`): labels declared for
    /// a metric are allowed on it.
    pub catalog: Option<PathBuf>,
    /// The tokenizer for log records that arrive without an agent (`key_file` required).
    pub tokenize: edge_tokenize::config::TokenizeConfig,
    /// Limits of every named tenant, `default` among them, resolved.
    pub tenants: BTreeMap<String, TenantLimits>,
    /// The cadence agents are told to use (`Edge-Cadence`).
    pub fleet_cadence: Duration,
    /// Overload detection and actions.
    pub overload: Overload,
    /// Where metrics go.
    pub metrics_sink: SinkConfig,
    /// Where logs go.
    pub logs_sink: SinkConfig,
    /// Where traces go (`otlp`, `file` or `firehose`); `None` when the file has no
    /// `sinks.traces`: `POST /v1/traces` then answers 503.
    pub traces_sink: Option<SinkConfig>,
    /// Request limits.
    pub limits: Limits,
    /// Admission control.
    pub admission: AdmissionConfig,
    /// The `relay` block, if the file has one.
    pub relay: Option<RelayConfig>,
}

impl GatewayConfig {
    /// The limits of `tenant`: its own entry, else `default`'s.
    pub fn limits_of(&self, tenant: &str) -> &TenantLimits {
        self.tenants
            .get(tenant)
            .or_else(|| self.tenants.get(DEFAULT_TENANT))
            .unwrap_or(&BUILTIN_LIMITS)
    }
}

pub use edge_schema::config::ConfigError;

/// Loads and validates `file`, expanding variables from the process environment.
pub fn load(file: &Path) -> Result<GatewayConfig, ConfigError> {
    edge_schema::config::load_with(file, Validator, |v, raw: Raw| v.validate(raw))
}

/// Parses and validates config text; `env` resolves `${VAR}`.
pub fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, ConfigError> {
    edge_schema::config::parse_with(file, text, env, Validator, |v, raw: Raw| v.validate(raw))
}

/// Loads the `relay` block of `file` (other keys are the gateway's and not read).
pub fn load_relay(file: &Path) -> Result<RelayConfig, ConfigError> {
    let text = edge_schema::config::read_config(file)?;
    parse_relay(file, &text, &edge_schema::config::process_env)
}

/// Parses and validates the `relay` block of config text.
pub fn parse_relay(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RelayConfig, ConfigError> {
    let relay = |v: &mut Validator<'_>, raw: RawRelayFile| match raw.relay {
        Some(relay) => Some(v.relay(relay)),
        None => {
            v.problem("relay", "missing: the relay reads the `relay:` block");
            None
        }
    };
    edge_schema::config::parse_with(file, text, env, Validator, relay)?
        .ok_or_else(|| unreachable_without_problem(file))
}

/// A `None` from a check always comes with a problem; this is the error should one not.
fn unreachable_without_problem(file: &Path) -> ConfigError {
    ConfigError::new(file, vec![("relay".into(), "missing".into())])
}

mod check;
#[cfg(test)]
mod tests;

use check::Validator;
