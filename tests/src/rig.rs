//! The rig the cross-binary tests share: the test PKI with one host's client
//! certificate, a real gateway (mTLS) writing to file sinks or to Kinesis with a relay
//! beside it, a real agent shipping to it, and the gateway's spool read back.
//!
//! Everything lives in one directory the test owns (usually a `tempfile::tempdir()`):
//!
//! ```text
//! ca.crt server.crt server.key   the CA and the gateway's certificate (crate::pki)
//! agent.crt agent.key            the host's client certificate
//! tokenize.key                   crate::pki::TEST_TOKENIZE_KEY
//! gateway.yaml gateway.log       relay.log (Kinesis only)
//! agent.yaml agent.log queue/    and the agent's log sources, e.g. game.log
//! spool/                         the gateway's file sinks
//! ```
//!
//! ```no_run
//! # use edge_tests::rig::{AgentOptions, AgentRig, Certs, GatewayOptions, GatewayRig};
//! # let dir = std::env::temp_dir();
//! let certs = Certs::generate(&dir);
//! let gateway = GatewayRig::start(&certs, GatewayOptions::files());
//! let agent = AgentRig::start(&certs, &gateway, AgentOptions::new().log_source("game.log", "game"));
//! let docs = gateway.documents("logs");
//! ```
//!
//! The rig panics with what failed and where (a test helper: a rig that cannot start
//! is a failed test); the daemons are killed when their handles drop.

use std::path::{Path, PathBuf};

use crate::moto::AWS_TEST_ENV;
use crate::pki::{Pki, gateway_yaml_head, write_test_tokenize_key};
use crate::procs::{Proc, free_port};

/// The tokenization detectors the rig's agents use by default, the ones
/// [`gateway_yaml_head`] gives the gateway: a value gets the same token on both.
pub const DETECTORS: &str =
    "[email, ipv4, ipv6, { name: player_id, pattern: 'p-[0-9]{6,}', action: tokenize }]";

/// The host labels every rig agent carries.
pub const HOST_LABELS: &str = "{ region: eu-test-1, cluster: c1, build_id: b1 }";

/// The rig's certificates, as files in its directory: the test CA, the gateway's
/// certificate for `localhost`, and one host's client certificate (`agent.crt`,
/// `agent.key`) whose SPIFFE identity names its tenant.
#[allow(missing_debug_implementations)]
pub struct Certs {
    /// The CA, to issue more certificates.
    pub pki: Pki,
}

impl Certs {
    /// The certificates for host `gs-1` of tenant `game`, written into `dir`.
    pub fn generate(dir: &Path) -> Certs {
        Self::generate_for(dir, "gs-1", "game")
    }

    /// The certificates for host `host` of tenant `tenant`, written into `dir`.
    pub fn generate_for(dir: &Path, host: &str, tenant: &str) -> Certs {
        let pki =
            Pki::new(dir).unwrap_or_else(|e| panic!("the test PKI in {}: {e}", dir.display()));
        pki.write_client(dir, host, tenant)
            .unwrap_or_else(|e| panic!("the client certificate in {}: {e}", dir.display()));
        Certs { pki }
    }

    /// The rig's directory.
    pub fn dir(&self) -> &Path {
        &self.pki.dir
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    /// The host's client certificate (PEM).
    pub fn client_cert(&self) -> PathBuf {
        self.dir().join("agent.crt")
    }

    /// The host's client key (PEM).
    pub fn client_key(&self) -> PathBuf {
        self.dir().join("agent.key")
    }
}

/// Where a rig gateway writes.
#[derive(Clone, Debug)]
enum Sinks {
    /// Every signal to the file spool in `spool/`; traces only if asked.
    Files { traces: bool },
    /// Metrics to the Kinesis stream `metrics` on the local AWS API at `aws_url`, logs to
    /// the file spool, and `edge-gateway relay` from the stream to the remote-write
    /// `target`, its admin port on `relay_port`.
    KinesisRelay {
        aws_url: String,
        target: String,
        relay_port: Option<u16>,
    },
}

/// What a rig gateway is: [`GatewayOptions::files`] or
/// [`GatewayOptions::kinesis_relay`], then the parts a test sets.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    port: Option<u16>,
    sinks: Sinks,
}

impl GatewayOptions {
    /// Metrics and logs to the file spool.
    pub fn files() -> GatewayOptions {
        GatewayOptions {
            port: None,
            sinks: Sinks::Files { traces: false },
        }
    }

    /// Metrics to the Kinesis stream `metrics` on the local AWS API at `aws_url` (the
    /// stream must exist), logs to the file spool, and a relay from the stream to the
    /// remote-write URL `target`. Both daemons get [`AWS_TEST_ENV`].
    pub fn kinesis_relay(aws_url: &str, target: &str) -> GatewayOptions {
        GatewayOptions {
            port: None,
            sinks: Sinks::KinesisRelay {
                aws_url: aws_url.to_string(),
                target: target.to_string(),
                relay_port: None,
            },
        }
    }

    /// Traces to the file spool too (file sinks only).
    pub fn traces(mut self) -> GatewayOptions {
        if let Sinks::Files { traces } = &mut self.sinks {
            *traces = true;
        } else {
            panic!("traces go to a file sink: only GatewayOptions::files() has them");
        }
        self
    }

    /// Listens on `127.0.0.1:port` (a free port unless set: set it when something must
    /// know it before the gateway starts).
    pub fn port(mut self, port: u16) -> GatewayOptions {
        self.port = Some(port);
        self
    }

    /// The relay's admin port (a free port unless set).
    pub fn relay_port(mut self, port: u16) -> GatewayOptions {
        if let Sinks::KinesisRelay { relay_port, .. } = &mut self.sinks {
            *relay_port = Some(port);
        } else {
            panic!("only GatewayOptions::kinesis_relay() has a relay");
        }
        self
    }
}

/// A running gateway (and its relay, for Kinesis), killed on drop.
#[derive(Debug)]
pub struct GatewayRig {
    /// Its mTLS listener on 127.0.0.1.
    pub port: u16,
    /// The gateway.
    pub proc: Proc,
    /// The relay, for [`GatewayOptions::kinesis_relay`].
    pub relay: Option<Proc>,
    /// Where its file sinks write.
    pub spool: PathBuf,
}

impl GatewayRig {
    /// Writes `gateway.yaml` (the head from [`gateway_yaml_head`], a one-second fleet
    /// cadence, the sinks) into the certificates' directory, starts the gateway (and the
    /// relay) and waits until they listen.
    pub fn start(certs: &Certs, options: GatewayOptions) -> GatewayRig {
        let d = certs.dir();
        let port = options.port.unwrap_or_else(free_port);
        let spool = d.join("spool");
        let s = spool.display();
        let (sinks, env, relay_port) = match &options.sinks {
            Sinks::Files { traces } => {
                let traces = traces
                    .then(|| format!(", traces: {{ kind: file, dir: {s} }}"))
                    .unwrap_or_default();
                (
                    format!(
                        "sinks: {{ metrics: {{ kind: file, dir: {s} }}, logs: {{ kind: file, dir: {s} }}{traces} }}\n"
                    ),
                    &[][..],
                    None,
                )
            }
            Sinks::KinesisRelay {
                aws_url,
                target,
                relay_port,
            } => {
                let relay_port = relay_port.unwrap_or_else(free_port);
                (
                    format!(
                        "sinks:\n  metrics: {{ kind: kinesis, stream: metrics, region: us-east-1, endpoint_url: \"{aws_url}\" }}\n  \
                         logs: {{ kind: file, dir: {s} }}\n\
                         relay: {{ stream: metrics, region: us-east-1, endpoint_url: \"{aws_url}\", checkpoint: {d}/checkpoints.json, \
                         target: {{ url: \"{target}\" }}, listen: 127.0.0.1:{relay_port} }}\n",
                        d = d.display()
                    ),
                    AWS_TEST_ENV,
                    Some(relay_port),
                )
            }
        };
        let yaml = format!(
            "{}fleet: {{ cadence: 1s }}\n{sinks}",
            gateway_yaml_head(port, d)
        );
        let proc = Proc::configured("edge-gateway", d, "gateway", &yaml, env, port)
            .unwrap_or_else(|e| panic!("starting the gateway: {e}"));
        let relay = relay_port.map(|relay_port| {
            let config = d.join("gateway.yaml").display().to_string();
            let relay = Proc::start(
                "edge-gateway",
                &["relay", "--config", &config],
                env,
                d.join("relay.log"),
            );
            relay.wait_for_port(relay_port);
            relay
        });
        GatewayRig {
            port,
            proc,
            relay,
            spool,
        }
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// What the gateway logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The gateway's log and the relay's, each under its name, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = format!("\ngateway:\n{}", self.proc.log());
        if let Some(relay) = &self.relay {
            text.push_str(&format!("\nrelay:\n{}", relay.log()));
        }
        text
    }

    /// Kills the gateway at once (SIGKILL), as a crash would; the relay runs on.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// The records of `stream` in the spool so far, as `(key, data)`; none while the
    /// spool cannot be read yet.
    pub fn records(&self, stream: &str) -> Vec<(String, Vec<u8>)> {
        match edge_gateway::sink::file::read_spool(&self.spool, stream) {
            Ok((records, _)) => records.into_iter().map(|r| (r.key, r.data)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The records of `stream` in the spool so far that are JSON documents (log
    /// documents), parsed.
    pub fn documents(&self, stream: &str) -> Vec<serde_json::Value> {
        self.records(stream)
            .iter()
            .filter_map(|(_, data)| serde_json::from_slice(data).ok())
            .collect()
    }
}

/// What a rig agent is besides what every one has (host labels [`HOST_LABELS`], a
/// one-second cadence, host metrics, metrics to the gateway over mTLS, a queue in
/// `queue/`): start from [`AgentOptions::new`].
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    listen: Option<u16>,
    log_sources: Vec<(String, String)>,
    tokenize: Option<String>,
    otlp_http: Option<u16>,
    statsd_off: bool,
}

impl AgentOptions {
    /// No log sources, no tokenization; OTLP and StatsD receivers as the agent's
    /// defaults have them.
    pub fn new() -> AgentOptions {
        AgentOptions::default()
    }

    /// Its API (push receiver, `/metrics`, tap) on `127.0.0.1:port` (a free port unless
    /// set).
    pub fn listen(mut self, port: u16) -> AgentOptions {
        self.listen = Some(port);
        self
    }

    /// Tails the JSON log `file` (in the rig's directory; created empty if missing),
    /// from its beginning, as service `service`; logs then go to the gateway too.
    pub fn log_source(mut self, file: &str, service: &str) -> AgentOptions {
        self.log_sources
            .push((file.to_string(), service.to_string()));
        self
    }

    /// Tokenizes with the shared test key and `detectors` (a YAML list; [`DETECTORS`]
    /// gives the gateway's).
    pub fn tokenize(mut self, detectors: &str) -> AgentOptions {
        self.tokenize = Some(detectors.to_string());
        self
    }

    /// Takes OTLP over HTTP (plain) on `127.0.0.1:port`, no gRPC, and ships traces to
    /// the gateway.
    pub fn otlp_http(mut self, port: u16) -> AgentOptions {
        self.otlp_http = Some(port);
        self
    }

    /// No StatsD receiver.
    pub fn statsd_off(mut self) -> AgentOptions {
        self.statsd_off = true;
        self
    }
}

/// A running agent, killed on drop.
#[derive(Debug)]
pub struct AgentRig {
    /// Its API port on 127.0.0.1.
    pub listen: u16,
    /// Its config file.
    pub config: PathBuf,
    /// The agent.
    pub proc: Proc,
}

impl AgentRig {
    /// Writes `agent.yaml` into the certificates' directory (and the log sources, empty,
    /// and the tokenization key if missing), starts the agent shipping to `gateway` with
    /// the host's client certificate, and waits until its API listens.
    pub fn start(certs: &Certs, gateway: &GatewayRig, options: AgentOptions) -> AgentRig {
        let d = certs.dir();
        let listen = options.listen.unwrap_or_else(free_port);
        let mut yaml = format!(
            "host_labels: {HOST_LABELS}\n\
             cadence: 1s\nincident_cadence: 1s\n\
             listen: 127.0.0.1:{listen}\n"
        );
        if let Some(port) = options.otlp_http {
            yaml.push_str(&format!("otlp: {{ grpc: off, http: 127.0.0.1:{port} }}\n"));
        }
        if options.statsd_off {
            yaml.push_str("statsd: off\n");
        }
        yaml.push_str(
            "host_metrics: { enabled: true, filesystems: [/], disks: [], interfaces: [lo] }\n",
        );
        if !options.log_sources.is_empty() {
            yaml.push_str("logs:\n");
        }
        for (file, service) in &options.log_sources {
            let path = d.join(file);
            if !path.exists() {
                std::fs::write(&path, "")
                    .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
            }
            yaml.push_str(&format!(
                "  - {{ path: \"{}\", service: {service}, parser: json, read_from: beginning }}\n",
                path.display()
            ));
        }
        if let Some(detectors) = &options.tokenize {
            write_test_tokenize_key(d)
                .unwrap_or_else(|e| panic!("the tokenization key in {}: {e}", d.display()));
            yaml.push_str(&format!(
                "tokenize: {{ key_file: {}, detectors: {detectors} }}\n",
                d.join("tokenize.key").display()
            ));
        }
        yaml.push_str(&format!(
            "output:\n  metrics_url: {}\n",
            gateway.url("/api/v1/push")
        ));
        if !options.log_sources.is_empty() {
            yaml.push_str(&format!("  logs_url: {}\n", gateway.url("/v1/logs")));
        }
        if options.otlp_http.is_some() {
            yaml.push_str(&format!("  traces_url: {}\n", gateway.url("/v1/traces")));
        }
        yaml.push_str(&format!(
            "  tls: {{ cert: {}, key: {}, ca: {} }}\nqueue: {{ dir: {} }}\n",
            certs.client_cert().display(),
            certs.client_key().display(),
            certs.ca().display(),
            d.join("queue").display()
        ));
        let proc = Proc::configured("edge-agent", d, "agent", &yaml, &[], listen)
            .unwrap_or_else(|e| panic!("starting the agent: {e}"));
        AgentRig {
            listen,
            config: d.join("agent.yaml"),
            proc,
        }
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The agent's log under its name, for a failure message.
    pub fn logs(&self) -> String {
        format!("\nagent:\n{}", self.proc.log())
    }
}

/// The OpenTelemetry Python SDK client the trace tests run (`clients/otel_traces.py`).
/// Panics, saying how to install it, when the SDK is missing: a test that needs it
/// fails then, it does not skip (`scripts/test` installs it).
pub fn otel_python_client() -> &'static str {
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .status()
        .expect("python3");
    assert!(
        probe.success(),
        "the OpenTelemetry Python SDK is missing: pip install opentelemetry-sdk \
         opentelemetry-exporter-otlp-proto-http (scripts/test installs them)"
    );
    concat!(env!("CARGO_MANIFEST_DIR"), "/clients/otel_traces.py")
}
