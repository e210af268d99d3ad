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

use edge_schema::config::{expand_vars, parse_duration, parse_size};
use serde::Deserialize;

/// The tenant whose limits every tenant inherits where its own entry is silent.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<String>,
    tls: Option<RawTls>,
    replicas: Option<u32>,
    #[serde(default)]
    identities: RawIdentities,
    policy: Option<String>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    fleet: RawFleet,
    overload: Option<RawOverload>,
    sinks: Option<RawSinks>,
    #[serde(default)]
    limits: RawLimits,
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
    target: Option<RawTarget>,
    instance_index: Option<u32>,
    instance_count: Option<u32>,
    start: Option<String>,
    listen: Option<String>,
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
    samples_rate_limit: Option<f64>,
    burst: Option<u64>,
    max_series: Option<u64>,
    max_label_names: Option<usize>,
    max_label_value_length: Option<usize>,
    max_label_name_length: Option<usize>,
    log_bytes_rate_limit: Option<String>,
    log_bytes_burst: Option<String>,
    priority: Option<u32>,
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
    max_connection_age: Option<String>,
    shutdown_grace: Option<String>,
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
    /// Higher is more important; overload throttles the listed low-priority tenants.
    pub priority: u32,
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
    priority: 100,
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
    /// The sink commit latency p99 (or the oldest backlog) above which actions start.
    pub freshness_threshold_p99: Duration,
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
    /// The checkpoint file (last forwarded sequence number per shard).
    pub checkpoint: PathBuf,
    /// Where records go.
    pub target: Target,
    /// This relay's index among `instance_count` relays of the stream.
    pub instance_index: u32,
    /// Relays sharing the stream (shards split statically).
    pub instance_count: u32,
    /// Where a shard without a checkpoint starts.
    pub start: StartAt,
    /// `/metrics`, `/healthz` and `/ready`.
    pub listen: SocketAddr,
}

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
    /// A connection older than this is asked to go (HTTP/2 GOAWAY, HTTP/1.1
    /// `Connection: close`), so the load balancer can rebalance.
    pub max_connection_age: Duration,
    /// SIGTERM: how long in-flight requests get.
    pub shutdown_grace: Duration,
}

/// The validated gateway config.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS files, or `None` for `tls: off`.
    pub tls: Option<TlsFiles>,
    /// Replicas in the region: each enforces `limit / replicas`.
    pub replicas: u32,
    /// Tenant identity.
    pub identities: Identities,
    /// The label policy (`None`: the one shipped with `schemas/`).
    pub policy: Option<PathBuf>,
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
    /// Request limits.
    pub limits: Limits,
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
    let text = edge_schema::config::read_config(file)?;
    parse(file, &text, &|name| std::env::var(name).ok())
}

/// Parses and validates config text; `env` resolves `${VAR}`.
pub fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, ConfigError> {
    let raw: Raw = edge_schema::config::parse_raw(file, text)?;
    validated(file, env, |v| v.validate(raw))
}

/// Runs `check` with a fresh validator: its result, or every problem it found.
fn validated<T>(
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    check: impl FnOnce(&mut Validator<'_>) -> T,
) -> Result<T, ConfigError> {
    let mut v = Validator {
        problems: Vec::new(),
        env,
    };
    let config = check(&mut v);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(file, v.problems))
    }
}

/// Loads the `relay` block of `file` (other keys are the gateway's and not read).
pub fn load_relay(file: &Path) -> Result<RelayConfig, ConfigError> {
    let text = edge_schema::config::read_config(file)?;
    parse_relay(file, &text, &|name| std::env::var(name).ok())
}

/// Parses and validates the `relay` block of config text.
pub fn parse_relay(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RelayConfig, ConfigError> {
    let raw: RawRelayFile = edge_schema::config::parse_raw(file, text)?;
    let Some(relay) = raw.relay else {
        return Err(ConfigError::new(
            file,
            vec![(
                "relay".into(),
                "missing: the relay reads the `relay:` block".into(),
            )],
        ));
    };
    validated(file, env, |v| v.relay(relay))
}

struct Validator<'a> {
    problems: Vec<(String, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push((path.into(), message.into()));
    }

    fn expand(&mut self, path: &str, value: &str) -> String {
        let (out, problems) = expand_vars(value, self.env);
        for p in problems {
            self.problem(path, p);
        }
        out
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        let value = self.expand(path, value);
        match parse_duration(&value) {
            Some(d) if !d.is_zero() => d,
            _ => {
                self.problem(
                    path,
                    format!("{value:?} is not a duration: use e.g. 10s, 500ms, 1m"),
                );
                default
            }
        }
    }

    fn size(&mut self, path: &str, value: Option<&str>, default: u64) -> u64 {
        let Some(value) = value else { return default };
        let value = self.expand(path, value);
        match parse_size(&value) {
            Some(n) if n > 0 => n,
            _ => {
                self.problem(
                    path,
                    format!("{value:?} is not a size: use e.g. 10MiB, 512KiB, 1GB"),
                );
                default
            }
        }
    }

    fn validate(&mut self, raw: Raw) -> GatewayConfig {
        // Without TLS the gateway only listens on loopback (a test, the local demo): the
        // default follows, and a network address is refused below.
        let tls_off = matches!(raw.tls, Some(RawTls::Switch(false) | RawTls::Off(_)));
        let listen_given = raw.listen.is_some();
        let listen_text = raw
            .listen
            .as_deref()
            .map(|l| self.expand("listen", l))
            .unwrap_or_else(|| {
                if tls_off {
                    "127.0.0.1:8443"
                } else {
                    "0.0.0.0:8443"
                }
                .into()
            });
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    "listen",
                    format!("{listen_text:?} is not an address like 0.0.0.0:8443"),
                );
                SocketAddr::from(([0, 0, 0, 0], 8443))
            }
        };
        if tls_off && listen_given && !listen.ip().is_loopback() {
            self.problem(
                "tls",
                format!(
                    "`tls: off` with listen {listen}, which is not a loopback address: agents' \
                     data and credentials would cross the network in clear text; give \
                     {{ cert, key, client_ca }}, or listen on 127.0.0.1"
                ),
            );
        }
        let tls = match raw.tls {
            None => {
                self.problem(
                    "tls",
                    "missing: give { cert, key, client_ca }, or `tls: off` for a loopback test or the local demo",
                );
                None
            }
            Some(RawTls::Switch(on)) => {
                if on {
                    self.problem("tls", "give { cert, key, client_ca } to turn TLS on");
                }
                None
            }
            Some(RawTls::Off(word)) => {
                if word != "off" {
                    self.problem(
                        "tls",
                        format!("{word:?}: give {{ cert, key, client_ca }} or `off`"),
                    );
                }
                None
            }
            Some(RawTls::Files(f)) => {
                let client_cert_required = match f.client_auth.as_deref() {
                    None | Some("required") => true,
                    Some("optional") => false,
                    Some(other) => {
                        self.problem(
                            "tls.client_auth",
                            format!("{other:?}: use required or optional"),
                        );
                        true
                    }
                };
                Some(TlsFiles {
                    cert: PathBuf::from(self.expand("tls.cert", &f.cert)),
                    key: PathBuf::from(self.expand("tls.key", &f.key)),
                    client_ca: PathBuf::from(self.expand("tls.client_ca", &f.client_ca)),
                    client_cert_required,
                })
            }
        };
        let replicas = raw.replicas.unwrap_or(1);
        if replicas == 0 {
            self.problem("replicas", "must be at least 1");
        }
        let identities = self.identities(raw.identities);
        let policy = raw
            .policy
            .as_deref()
            .map(|p| PathBuf::from(self.expand("policy", p)));
        let tenants = self.tenants(&raw.tenants);
        let fleet_cadence = self.duration(
            "fleet.cadence",
            raw.fleet.cadence.as_deref(),
            Duration::from_secs(10),
        );
        let overload = self.overload(raw.overload, &tenants);
        let (metrics_sink, logs_sink) = match raw.sinks {
            Some(s) => (
                self.sink("sinks.metrics", s.metrics, "metrics"),
                self.sink("sinks.logs", s.logs, "logs"),
            ),
            None => {
                self.problem("sinks", "missing: give sinks.metrics and sinks.logs (kind: kinesis, firehose, remote_write or file)");
                let dir = PathBuf::from("/var/lib/edge-gateway/spool");
                (
                    SinkConfig::File { dir: dir.clone() },
                    SinkConfig::File { dir },
                )
            }
        };
        if matches!(logs_sink, SinkConfig::RemoteWrite(_)) {
            self.problem(
                "sinks.logs.kind",
                "remote_write carries metrics only: use firehose or file for logs",
            );
        }
        let relay = raw.relay.map(|r| self.relay(r));
        let l = raw.limits;
        let limits = Limits {
            max_body_bytes: self.size(
                "limits.max_body_bytes",
                l.max_body_bytes.as_deref(),
                16 << 20,
            ) as usize,
            max_decompressed_bytes: self.size(
                "limits.max_decompressed_bytes",
                l.max_decompressed_bytes.as_deref(),
                64 << 20,
            ) as usize,
            max_connection_age: self.duration(
                "limits.max_connection_age",
                l.max_connection_age.as_deref(),
                Duration::from_secs(300),
            ),
            shutdown_grace: self.duration(
                "limits.shutdown_grace",
                l.shutdown_grace.as_deref(),
                Duration::from_secs(20),
            ),
        };
        GatewayConfig {
            listen,
            tls,
            replicas: replicas.max(1),
            identities,
            policy,
            tenants,
            fleet_cadence,
            overload,
            metrics_sink,
            logs_sink,
            limits,
            relay,
        }
    }

    fn relay(&mut self, raw: RawRelay) -> RelayConfig {
        let stream = raw
            .stream
            .map_or_else(|| "metrics".into(), |s| self.expand("relay.stream", &s));
        let region = raw
            .region
            .map_or_else(|| "us-east-1".into(), |s| self.expand("relay.region", &s));
        let endpoint_url = raw
            .endpoint_url
            .map(|e| self.expand("relay.endpoint_url", &e));
        let checkpoint = match raw.checkpoint {
            Some(c) => PathBuf::from(self.expand("relay.checkpoint", &c)),
            None => {
                self.problem(
                    "relay.checkpoint",
                    "missing: a file for the shards' checkpoints",
                );
                PathBuf::new()
            }
        };
        let target = match raw.target {
            Some(t) => {
                let url = self.expand("relay.target.url", &t.url);
                self.target("relay.target", url, t.sigv4, t.tls)
            }
            None => {
                self.problem(
                    "relay.target",
                    "missing: { url: …, sigv4: { region, service: aps } }",
                );
                Target {
                    url: String::new(),
                    sigv4: None,
                    tls: None,
                }
            }
        };
        let instance_count = raw.instance_count.unwrap_or(1);
        let instance_index = raw.instance_index.unwrap_or(0);
        if instance_count == 0 {
            self.problem("relay.instance_count", "must be at least 1");
        } else if instance_index >= instance_count {
            self.problem(
                "relay.instance_index",
                format!("{instance_index} is not below instance_count ({instance_count})"),
            );
        }
        let start = match raw.start.as_deref() {
            None | Some("trim_horizon") => StartAt::TrimHorizon,
            Some("latest") => StartAt::Latest,
            Some(other) => {
                self.problem(
                    "relay.start",
                    format!("{other:?}: use trim_horizon or latest"),
                );
                StartAt::TrimHorizon
            }
        };
        let listen = raw.listen.map_or_else(
            || SocketAddr::from(([127, 0, 0, 1], 9742)),
            |l| {
                let l = self.expand("relay.listen", &l);
                l.parse().unwrap_or_else(|_| {
                    self.problem("relay.listen", format!("{l:?} is not an address:port"));
                    SocketAddr::from(([127, 0, 0, 1], 9742))
                })
            },
        );
        RelayConfig {
            stream,
            region,
            endpoint_url,
            checkpoint,
            target,
            instance_index,
            instance_count: instance_count.max(1),
            start,
            listen,
        }
    }

    fn identities(&mut self, raw: RawIdentities) -> Identities {
        let mut tokens = Vec::new();
        for (i, t) in raw.tokens.into_iter().enumerate() {
            let path = format!("identities.tokens[{i}].sha256");
            let hex = self.expand(&path, &t.sha256);
            match decode_sha256(&hex) {
                Some(h) => tokens.push((h, t.tenant)),
                None => self.problem(
                    path,
                    "not a SHA-256: 64 hex digits (sha256sum of the token)",
                ),
            }
        }
        let mut subjects = Vec::new();
        for (pattern, tenant) in raw.subjects {
            if !pattern.contains('=') {
                self.problem(
                    format!("identities.subjects.{pattern}"),
                    "a subject pattern names its attribute, like CN=gs-*",
                );
            }
            subjects.push((pattern, tenant));
        }
        Identities {
            spiffe_trust_domain: raw.spiffe_trust_domain,
            subjects,
            tokens,
        }
    }

    fn tenants(&mut self, raw: &BTreeMap<String, RawTenant>) -> BTreeMap<String, TenantLimits> {
        let default_raw = raw.get(DEFAULT_TENANT).cloned().unwrap_or_default();
        let default = self.tenant(DEFAULT_TENANT, &default_raw, &BUILTIN_LIMITS);
        let mut out = BTreeMap::new();
        for (name, t) in raw {
            if name == DEFAULT_TENANT {
                continue;
            }
            let limits = self.tenant(name, t, &default);
            out.insert(name.clone(), limits);
        }
        out.insert(DEFAULT_TENANT.to_string(), default);
        out
    }

    fn tenant(&mut self, name: &str, t: &RawTenant, base: &TenantLimits) -> TenantLimits {
        let path = |key: &str| format!("tenants.{name}.{key}");
        let mut l = base.clone();
        if let Some(r) = t.samples_rate_limit {
            if r.is_finite() && r > 0.0 {
                l.samples_rate_limit = r;
            } else {
                self.problem(path("samples_rate_limit"), format!("{r}: must be above 0"));
            }
        }
        if let Some(b) = t.burst {
            l.burst = b;
        } else if t.samples_rate_limit.is_some() {
            // A tenant that sets its rate but not its burst gets two seconds' worth, as
            // the design's default does (20,000/s, 40,000).
            l.burst = (l.samples_rate_limit * 2.0) as u64;
        }
        if l.burst == 0 || l.burst > u64::from(u32::MAX) {
            self.problem(
                path("burst"),
                format!("{}: must be between 1 and {}", l.burst, u32::MAX),
            );
            l.burst = base.burst;
        }
        if let Some(m) = t.max_series {
            l.max_series = m;
        }
        if let Some(m) = t.max_label_names {
            l.max_label_names = m;
        }
        if let Some(m) = t.max_label_value_length {
            l.max_label_value_length = m;
        }
        if let Some(m) = t.max_label_name_length {
            l.max_label_name_length = m;
        }
        if let Some(p) = t.priority {
            l.priority = p;
        }
        if t.creation_grace_period.is_some() {
            let d = self.duration(
                &path("creation_grace_period"),
                t.creation_grace_period.as_deref(),
                Duration::from_millis(l.creation_grace_period_ms as u64),
            );
            l.creation_grace_period_ms = d.as_millis() as i64;
        }
        match t.past_grace_period.as_deref() {
            None => {}
            Some("off" | "0" | "0s") => l.past_grace_period_ms = 0,
            Some(v) => {
                let d = self.duration(&path("past_grace_period"), Some(v), Duration::ZERO);
                l.past_grace_period_ms = d.as_millis() as i64;
            }
        }
        let rate_set = t.log_bytes_rate_limit.is_some();
        l.log_bytes_rate_limit = self.size(
            &path("log_bytes_rate_limit"),
            t.log_bytes_rate_limit.as_deref(),
            l.log_bytes_rate_limit,
        );
        let burst_default = if rate_set {
            l.log_bytes_rate_limit.saturating_mul(2)
        } else {
            l.log_bytes_burst
        };
        l.log_bytes_burst = self.size(
            &path("log_bytes_burst"),
            t.log_bytes_burst.as_deref(),
            burst_default,
        );
        if l.log_bytes_burst > u64::from(u32::MAX) {
            self.problem(path("log_bytes_burst"), "must be under 4GiB");
            l.log_bytes_burst = base.log_bytes_burst;
        }
        l
    }

    fn overload(
        &mut self,
        raw: Option<RawOverload>,
        tenants: &BTreeMap<String, TenantLimits>,
    ) -> Overload {
        let Some(raw) = raw else {
            return Overload {
                freshness_threshold_p99: Duration::from_secs(10),
                actions: Vec::new(),
            };
        };
        let freshness_threshold_p99 = self.duration(
            "overload.freshness_threshold_p99",
            raw.freshness_threshold_p99.as_deref(),
            Duration::from_secs(10),
        );
        let mut actions = Vec::new();
        for (i, a) in raw.actions.into_iter().enumerate() {
            let path = format!("overload.actions[{i}]");
            match (a.reduce_log_sampling, a.throttle_tenants) {
                (Some(p), None) => {
                    let n = p.trim().trim_end_matches('%').trim().parse::<u8>().ok();
                    match n {
                        Some(n) if (1..=100).contains(&n) => {
                            actions.push(OverloadAction::ReduceLogSampling(n))
                        }
                        _ => self.problem(
                            format!("{path}.reduce_log_sampling"),
                            format!("{p:?}: a percentage, like 50%"),
                        ),
                    }
                }
                (None, Some(list)) => {
                    for t in &list {
                        if !tenants.contains_key(t) {
                            self.problem(
                                format!("{path}.throttle_tenants"),
                                format!("{t:?} is not a tenant under `tenants`"),
                            );
                        }
                    }
                    actions.push(OverloadAction::ThrottleTenants(list));
                }
                _ => self.problem(path, "one of reduce_log_sampling or throttle_tenants"),
            }
        }
        Overload {
            freshness_threshold_p99,
            actions,
        }
    }

    fn sink(&mut self, path: &str, raw: RawSink, default_stream: &str) -> SinkConfig {
        let need = |v: &mut Self, key: &str, value: Option<String>| -> String {
            match value {
                Some(s) => v.expand(&format!("{path}.{key}"), &s),
                None => {
                    v.problem(
                        format!("{path}.{key}"),
                        format!("missing for kind {}", raw.kind),
                    );
                    String::new()
                }
            }
        };
        let region = |v: &mut Self, r: Option<String>| -> String {
            r.map(|r| v.expand(&format!("{path}.region"), &r))
                .unwrap_or_else(|| "us-east-1".into())
        };
        let endpoint = |v: &mut Self, e: Option<String>| {
            e.map(|e| v.expand(&format!("{path}.endpoint_url"), &e))
        };
        match raw.kind.as_str() {
            "file" => SinkConfig::File {
                dir: PathBuf::from(need(self, "dir", raw.dir)),
            },
            "kinesis" => SinkConfig::Kinesis {
                stream: raw.stream.map_or_else(
                    || default_stream.to_string(),
                    |s| self.expand(&format!("{path}.stream"), &s),
                ),
                region: region(self, raw.region),
                endpoint_url: endpoint(self, raw.endpoint_url),
            },
            "firehose" => SinkConfig::Firehose {
                delivery_stream: need(self, "delivery_stream", raw.delivery_stream),
                region: region(self, raw.region),
                endpoint_url: endpoint(self, raw.endpoint_url),
            },
            "remote_write" => {
                let url = need(self, "url", raw.url);
                SinkConfig::RemoteWrite(self.target(path, url, raw.sigv4, raw.tls))
            }
            other => {
                self.problem(
                    format!("{path}.kind"),
                    format!("{other:?}: use kinesis, firehose, remote_write or file"),
                );
                SinkConfig::File {
                    dir: PathBuf::new(),
                }
            }
        }
    }
}

impl Validator<'_> {
    /// A remote_write target at `path` (`url` already expanded).
    fn target(
        &mut self,
        path: &str,
        url: String,
        sigv4: Option<RawSigv4>,
        tls: Option<RawClientTls>,
    ) -> Target {
        match url.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                if uri.scheme_str() == Some("http") && tls.is_some() {
                    self.problem(
                        format!("{path}.tls"),
                        "given for an http:// URL: use https://",
                    );
                }
            }
            _ if url.is_empty() => {}
            _ => self.problem(
                format!("{path}.url"),
                format!("{url:?} is not an http:// or https:// URL"),
            ),
        }
        let sigv4 = sigv4.map(|s| Sigv4 {
            region: self.expand(&format!("{path}.sigv4.region"), &s.region),
            service: s.service.map_or_else(
                || "aps".into(),
                |v| self.expand(&format!("{path}.sigv4.service"), &v),
            ),
        });
        let tls = tls.map(|t| {
            let mut file = |key: &str, v: Option<String>| {
                v.map(|v| PathBuf::from(self.expand(&format!("{path}.tls.{key}"), &v)))
            };
            let tls = ClientTls {
                ca: file("ca", t.ca),
                cert: file("cert", t.cert),
                key: file("key", t.key),
            };
            if tls.cert.is_some() != tls.key.is_some() {
                self.problem(format!("{path}.tls"), "cert and key go together");
            }
            tls
        });
        Target { url, sigv4, tls }
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let t = hex.trim().as_bytes();
    if t.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (nibble(t[2 * i])? << 4) | nibble(t[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
