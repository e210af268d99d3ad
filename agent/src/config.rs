//! The agent's YAML config (shape in `DESIGN.md`), with `${VAR}` expansion.
//!
//! Loading is two steps, as in the house style: parse into a raw form (unknown keys and
//! wrong types are refused with their line), then validate into [`AgentConfig`],
//! collecting **every** problem with its key path (`output.metrics_url: …`). Environment
//! variables are expanded in string values (`${VAR}`, or `${VAR:-default}`); an unset
//! variable without a default is a problem at the key that uses it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::logs::parse::ParserKind;
use crate::logs::record::Level;
use crate::queue::{DEFAULT_MAX_BYTES, QueueConfig};

/// The steady cadence of the design.
pub const DEFAULT_CADENCE: Duration = Duration::from_secs(10);
/// The incident cadence of the design.
pub const DEFAULT_INCIDENT_CADENCE: Duration = Duration::from_secs(5);
/// The local receiver's address: loopback only, the exporter's default push target.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9740";
/// Where the queue lives under systemd's `StateDirectory`.
pub const DEFAULT_QUEUE_DIR: &str = "/var/lib/edge-agent/queue";

/// Host label sources: a literal (after `${VAR}` expansion) or the instance metadata
/// service (`imds`).
const IMDS: &str = "imds";
/// The labels IMDSv2 can answer.
const IMDS_LABELS: &[&str] = &["region", "az", "instance_type"];
/// Log parsers.
const PARSERS: &[&str] = &["json", "regex", "logfmt", "none"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    host_labels: BTreeMap<String, String>,
    policy: Option<String>,
    catalog: Option<String>,
    series_budget: Option<u32>,
    cadence: Option<String>,
    incident_cadence: Option<String>,
    listen: Option<String>,
    #[serde(default)]
    host_metrics: RawHostMetrics,
    #[serde(default)]
    scrape: Vec<RawScrape>,
    #[serde(default)]
    logs: Vec<RawLog>,
    tokenize: Option<edge_tokenize::config::RawTokenize>,
    output: Option<RawOutput>,
    #[serde(default)]
    queue: RawQueue,
    statsd: Option<statsd::RawStatsd>,
    otlp: Option<otlp::RawOtlp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostMetrics {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    filesystems: Vec<String>,
    #[serde(default)]
    disks: Vec<String>,
    #[serde(default)]
    interfaces: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for RawHostMetrics {
    fn default() -> Self {
        RawHostMetrics {
            enabled: true,
            filesystems: vec!["/".into()],
            disks: Vec::new(),
            interfaces: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrape {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    path: String,
    service: String,
    #[serde(default = "parser_none")]
    parser: String,
    pattern: Option<String>,
    multiline: Option<RawMultiline>,
    min_level: Option<String>,
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    sample: BTreeMap<String, f64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    read_from: Option<String>,
    max_line_bytes: Option<String>,
}

fn parser_none() -> String {
    "none".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMultiline {
    start: String,
    max_lines: Option<usize>,
    timeout: Option<String>,
}

/// One URL, or several gateways to fail over between.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    metrics_url: Option<OneOrMany>,
    logs_url: Option<OneOrMany>,
    traces_url: Option<OneOrMany>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    ca: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    dir: Option<String>,
    max_bytes: Option<String>,
}

/// Where a host label's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelSource {
    /// A fixed value (after `${VAR}` expansion).
    Value(String),
    /// The instance metadata service (IMDSv2).
    Imds,
}

/// A log source.
#[derive(Clone, Debug, PartialEq)]
pub struct LogSource {
    /// The glob of files to tail.
    pub path: String,
    /// The `service` field of every record.
    pub service: String,
    /// How lines are parsed.
    pub parser: ParserKind,
    /// The regex of a `regex` parser.
    pub pattern: Option<String>,
    /// The start pattern of a multi-line record.
    pub multiline_start: Option<String>,
    /// Lines a multi-line record may join.
    pub multiline_max_lines: usize,
    /// How long a multi-line record waits for its next line.
    pub multiline_timeout: Duration,
    /// Records below this level are dropped (`None`: keep all).
    pub min_level: Option<Level>,
    /// Records whose message matches one of these patterns are dropped.
    pub drop: Vec<String>,
    /// Fraction of records kept per level (`debug: 0.1`); levels not named keep all.
    pub sample: BTreeMap<Level, f64>,
    /// Static attributes added to every record.
    pub tags: BTreeMap<String, String>,
    /// Files present at the agent's first start are read from their start (`true`) or
    /// their end (`false`, the default).
    pub read_existing_from_start: bool,
    /// Longer lines are split into flagged pieces.
    pub max_line_bytes: usize,
}

/// Lines a multi-line record joins at most (a stack trace of 500 frames fits).
pub const DEFAULT_MULTILINE_MAX_LINES: usize = 500;

/// How long a multi-line record waits for its next line before it is complete.
pub const DEFAULT_MULTILINE_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest line kept whole: OpenSearch documents and Firehose records stay small.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Levels a `min_level` or `sample` key may name.
const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "fatal"];

/// Client certificate, key and CA for mTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA bundle that signs the gateway (PEM).
    pub ca: PathBuf,
}

/// A validated agent config.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Host labels and where their values come from.
    pub host_labels: BTreeMap<String, LabelSource>,
    /// The label policy file; `None` means the shipped one.
    pub policy: Option<PathBuf>,
    /// The metric catalog file; `None` means the shipped one.
    pub catalog: Option<PathBuf>,
    /// Active series allowed on this host.
    pub series_budget: u32,
    /// Steady cadence.
    pub cadence: Duration,
    /// Incident cadence.
    pub incident_cadence: Duration,
    /// The local receiver's address (loopback).
    pub listen: SocketAddr,
    /// Whether host metrics are collected.
    pub host_metrics: bool,
    /// Mount points whose space is reported.
    pub filesystems: Vec<String>,
    /// Block devices reported.
    pub disks: Vec<String>,
    /// Network interfaces reported.
    pub interfaces: Vec<String>,
    /// Prometheus text endpoints to scrape.
    pub scrape: Vec<String>,
    /// Log sources.
    pub logs: Vec<LogSource>,
    /// The tokenization key file.
    pub tokenize_key_file: Option<PathBuf>,
    /// PII detectors, in order.
    pub detectors: Vec<edge_tokenize::DetectorSpec>,
    /// Where metrics go (remote_write): one URL, or several gateways tried in order,
    /// a failed one skipped until it answers again.
    pub metrics_urls: Vec<String>,
    /// Where logs go (OTLP/HTTP): like `metrics_urls`, one or several gateways tried
    /// in order; empty when logs have nowhere to go.
    pub logs_urls: Vec<String>,
    /// Where traces go (OTLP/HTTP): like `logs_urls`; empty when traces have nowhere to
    /// go (the traces pipeline is then not built).
    pub traces_urls: Vec<String>,
    /// mTLS files, required for `https` outputs.
    pub tls: Option<TlsFiles>,
    /// The disk queue.
    pub queue: QueueConfig,
    /// The statsd receiver, or `None` when `statsd: off`.
    pub statsd: Option<statsd::StatsdConfig>,
    /// The OTLP receivers (each `None` when off).
    pub otlp: otlp::OtlpConfig,
}

impl AgentConfig {
    /// The label policy and the catalog the config names (the shipped ones by default).
    /// A configured catalog adds to the shipped one and may redefine its families; the
    /// families the agent itself reports (host and self metrics) are never missing.
    pub fn load_schema(&self) -> anyhow::Result<edge_schema::check::Schema> {
        use edge_schema::catalog::Catalog;
        use edge_schema::policy::LabelPolicy;
        let policy = match &self.policy {
            Some(path) => LabelPolicy::from_file(path)?,
            None => LabelPolicy::shipped(),
        };
        let catalog = match &self.catalog {
            Some(path) => {
                let mut catalog = Catalog::from_file(path)?;
                catalog.merge(Catalog::shipped());
                catalog
            }
            None => Catalog::shipped(),
        };
        Ok(edge_schema::check::Schema::new(policy, catalog))
    }

    /// The tokenization key and the tokenizer built on it, for the logs or traces path
    /// (`what`): no key, no such path (PII must never ship untokenized).
    pub fn load_tokenizer(
        &self,
        what: &str,
    ) -> anyhow::Result<(edge_tokenize::KeyFile, edge_tokenize::Tokenizer)> {
        use anyhow::Context as _;
        let key_path = self
            .tokenize_key_file
            .clone()
            .with_context(|| format!("{what} are configured but tokenize.key_file is not"))?;
        let key = edge_tokenize::KeyFile::open(key_path.clone())
            .with_context(|| format!("loading the tokenization key {}", key_path.display()))?;
        let tokenizer = edge_tokenize::Tokenizer::new(key.key().clone(), &self.detectors)
            .context("building the PII detectors")?;
        Ok((key, tokenizer))
    }
}

pub use edge_schema::config::ConfigError;

/// Loads and validates `file`, expanding variables from the process environment.
pub fn load(file: &Path) -> Result<AgentConfig, ConfigError> {
    edge_schema::config::load_with(file, Validator, |v, raw: Raw| v.validate(raw))
}

/// Parses and validates config text; `env` resolves `${VAR}`.
pub fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, ConfigError> {
    edge_schema::config::parse_with(file, text, env, Validator, |v, raw: Raw| v.validate(raw))
}

edge_schema::daemon_validator! {
    /// The agent's validator: the shared core (problems, variables, durations, sizes) and
    /// the agent's own keys.
    struct Validator;
}

impl Validator<'_> {
    fn url(&mut self, path: &str, value: &str) -> String {
        let before = self.problems.len();
        let value = self.expand(path, value);
        // An unset variable is the problem; the broken URL it leaves is not another.
        if self.problems.len() == before
            && !(value.starts_with("https://") || value.starts_with("http://"))
        {
            self.problem(path, format!("{value:?} is not an http:// or https:// URL"));
        }
        value
    }

    /// One URL, or a non-empty list of them (gateways tried in order).
    fn urls(&mut self, path: &str, urls: OneOrMany) -> Vec<String> {
        match urls {
            OneOrMany::One(u) => vec![self.url(path, &u)],
            OneOrMany::Many(urls) => {
                if urls.is_empty() {
                    self.problem(path, "is an empty list");
                }
                urls.iter()
                    .enumerate()
                    .map(|(i, u)| self.url(&format!("{path}[{i}]"), u))
                    .collect()
            }
        }
    }

    fn validate(&mut self, raw: Raw) -> AgentConfig {
        let mut host_labels = BTreeMap::new();
        for (name, value) in raw.host_labels {
            let path = format!("host_labels.{name}");
            if !edge_schema::names::is_valid_label_name(&name) {
                self.problem(&path, "not a valid label name");
                continue;
            }
            let source = if value == IMDS {
                if !IMDS_LABELS.contains(&name.as_str()) {
                    self.problem(
                        &path,
                        format!("imds can give only {}", IMDS_LABELS.join(", ")),
                    );
                }
                LabelSource::Imds
            } else {
                LabelSource::Value(self.expand(&path, &value))
            };
            host_labels.insert(name, source);
        }

        let listen_text = raw
            .listen
            .map_or_else(|| DEFAULT_LISTEN.to_string(), |l| self.expand("listen", &l));
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => addr,
            Ok(_) => {
                self.problem("listen", format!("{listen_text} is not a loopback address: the local receiver must not be reachable from the network"));
                default_listen()
            }
            Err(_) => {
                self.problem("listen", format!("{listen_text:?} is not an address:port"));
                default_listen()
            }
        };

        let cadence = self.duration("cadence", raw.cadence.as_deref(), DEFAULT_CADENCE);
        // The default follows a shorter cadence (`cadence: 1s` alone is fine); only an
        // explicit longer value is a mistake.
        let explicit_incident = raw.incident_cadence.is_some();
        let incident_cadence = self.duration(
            "incident_cadence",
            raw.incident_cadence.as_deref(),
            DEFAULT_INCIDENT_CADENCE.min(cadence),
        );
        if explicit_incident && incident_cadence > cadence {
            self.problem(
                "incident_cadence",
                format!(
                    "{} s is longer than cadence ({} s): incident mode must not slow collection down",
                    incident_cadence.as_secs_f64(),
                    cadence.as_secs_f64()
                ),
            );
        }
        let series_budget = raw
            .series_budget
            .unwrap_or(edge_schema::policy::DEFAULT_MAX_SERIES_PER_HOST);
        if series_budget == 0 {
            self.problem("series_budget", "must be at least 1");
        }

        let scrape = raw
            .scrape
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.url(&format!("scrape[{i}].url"), &s.url))
            .collect();

        let mut logs = Vec::new();
        for (i, log) in raw.logs.into_iter().enumerate() {
            let base = format!("logs[{i}]");
            let path = self.expand(&format!("{base}.path"), &log.path);
            if path.is_empty() {
                self.problem(format!("{base}.path"), "must name files to tail");
            }
            if log.service.is_empty() {
                self.problem(format!("{base}.service"), "must not be empty");
            }
            let parser = match log.parser.parse::<ParserKind>() {
                Ok(kind) if PARSERS.contains(&log.parser.as_str()) => kind,
                _ => {
                    self.problem(
                        format!("{base}.parser"),
                        format!("{:?} is not one of {}", log.parser, PARSERS.join(", ")),
                    );
                    ParserKind::None
                }
            };
            if parser == ParserKind::Regex && log.pattern.is_none() {
                self.problem(
                    format!("{base}.pattern"),
                    "a regex parser needs a pattern with named captures",
                );
            }
            let min_level = match &log.min_level {
                None => None,
                Some(level) if LEVELS.contains(&level.as_str()) => Some(Level::parse(level)),
                Some(level) => {
                    self.problem(
                        format!("{base}.min_level"),
                        format!("{level:?} is not one of {}", LEVELS.join(", ")),
                    );
                    None
                }
            };
            let mut sample = BTreeMap::new();
            for (level, fraction) in &log.sample {
                if !LEVELS.contains(&level.as_str()) {
                    self.problem(
                        format!("{base}.sample.{level}"),
                        format!("not a level: use one of {}", LEVELS.join(", ")),
                    );
                    continue;
                }
                if !(0.0..=1.0).contains(fraction) {
                    self.problem(
                        format!("{base}.sample.{level}"),
                        format!("{fraction} is not a fraction between 0 and 1"),
                    );
                    continue;
                }
                sample.insert(Level::parse(level), *fraction);
            }
            for (i, pattern) in log.drop.iter().enumerate() {
                if let Err(e) = regex::Regex::new(pattern) {
                    self.problem(
                        format!("{base}.drop[{i}]"),
                        format!("not a valid regex: {e}"),
                    );
                }
            }
            if let Some(m) = &log.multiline
                && let Err(e) = regex::Regex::new(&m.start)
            {
                self.problem(
                    format!("{base}.multiline.start"),
                    format!("not a valid regex: {e}"),
                );
            }
            if let Some(p) = &log.pattern
                && let Err(e) = regex::Regex::new(p)
            {
                self.problem(format!("{base}.pattern"), format!("not a valid regex: {e}"));
            }
            let read_existing_from_start = match log.read_from.as_deref() {
                None | Some("end") => false,
                Some("beginning") => true,
                Some(other) => {
                    self.problem(
                        format!("{base}.read_from"),
                        format!("{other:?} is not `end` or `beginning`"),
                    );
                    false
                }
            };
            let max_line_bytes = match log.max_line_bytes.as_deref().map(parse_size) {
                None => DEFAULT_MAX_LINE_BYTES,
                Some(Some(n)) if n >= 256 => n as usize,
                Some(_) => {
                    self.problem(
                        format!("{base}.max_line_bytes"),
                        "must be a size of at least 256 bytes, e.g. 64KiB",
                    );
                    DEFAULT_MAX_LINE_BYTES
                }
            };
            let multiline_timeout = self.duration(
                &format!("{base}.multiline.timeout"),
                log.multiline.as_ref().and_then(|m| m.timeout.as_deref()),
                DEFAULT_MULTILINE_TIMEOUT,
            );
            logs.push(LogSource {
                path,
                service: log.service,
                parser,
                pattern: log.pattern,
                multiline_max_lines: log
                    .multiline
                    .as_ref()
                    .and_then(|m| m.max_lines)
                    .unwrap_or(DEFAULT_MULTILINE_MAX_LINES)
                    .max(1),
                multiline_timeout,
                multiline_start: log.multiline.map(|m| m.start),
                min_level,
                drop: log.drop,
                sample,
                tags: log.tags,
                read_existing_from_start,
                max_line_bytes,
            });
        }

        let tokenize = raw
            .tokenize
            .map(|t| t.validate(&mut self.0, "tokenize"))
            .unwrap_or_default();
        let (tokenize_key_file, detectors) = (tokenize.key_file, tokenize.detectors);
        if !logs.is_empty() && tokenize_key_file.is_none() {
            self.problem("tokenize.key_file", "logs are configured but no tokenization key is: the agent will not ship logs that may carry PII untokenized");
        }

        let (metrics_urls, logs_urls, traces_urls, tls) = match raw.output {
            None => {
                self.problem("output.metrics_url", "is required");
                (Vec::new(), Vec::new(), Vec::new(), None)
            }
            Some(o) => {
                let metrics_urls = match o.metrics_url {
                    Some(urls) => self.urls("output.metrics_url", urls),
                    None => {
                        self.problem("output.metrics_url", "is required");
                        Vec::new()
                    }
                };
                let logs_urls = o
                    .logs_url
                    .map(|urls| self.urls("output.logs_url", urls))
                    .unwrap_or_default();
                let traces_urls = o
                    .traces_url
                    .map(|urls| self.urls("output.traces_url", urls))
                    .unwrap_or_default();
                if !traces_urls.is_empty() && tokenize_key_file.is_none() {
                    self.problem(
                        "output.traces_url",
                        "traces are configured but no tokenization key is (tokenize.key_file): span attributes may carry PII and are never shipped untokenized",
                    );
                }
                if !logs.is_empty() && logs_urls.is_empty() {
                    self.problem(
                        "output.logs_url",
                        "logs are configured but have nowhere to go",
                    );
                }
                let tls = o.tls.map(|t| TlsFiles {
                    cert: PathBuf::from(self.expand("output.tls.cert", &t.cert)),
                    key: PathBuf::from(self.expand("output.tls.key", &t.key)),
                    ca: PathBuf::from(self.expand("output.tls.ca", &t.ca)),
                });
                let https = metrics_urls
                    .iter()
                    .chain(&logs_urls)
                    .chain(&traces_urls)
                    .any(|u| u.starts_with("https://"));
                if https && tls.is_none() {
                    self.problem(
                        "output.tls",
                        "an https output needs a client certificate, key and CA (mTLS)",
                    );
                }
                (metrics_urls, logs_urls, traces_urls, tls)
            }
        };

        let dir = raw.queue.dir.map_or_else(
            || DEFAULT_QUEUE_DIR.to_string(),
            |d| self.expand("queue.dir", &d),
        );
        let max_bytes = match raw.queue.max_bytes {
            None => DEFAULT_MAX_BYTES,
            Some(text) => match parse_size(&self.expand("queue.max_bytes", &text)) {
                Some(n) if n >= 1024 * 1024 => n,
                Some(_) => {
                    self.problem("queue.max_bytes", "must be at least 1MiB");
                    DEFAULT_MAX_BYTES
                }
                None => {
                    self.problem(
                        "queue.max_bytes",
                        format!("{text:?} is not a size: use e.g. 256MiB, 1GiB"),
                    );
                    DEFAULT_MAX_BYTES
                }
            },
        };
        let mut queue = QueueConfig::new(dir);
        queue.count_items = crate::queue::items::count;
        queue.max_bytes = max_bytes;
        let statsd = self.statsd(raw.statsd);
        let otlp = self.otlp(raw.otlp);

        AgentConfig {
            host_labels,
            policy: raw.policy.map(|p| PathBuf::from(self.expand("policy", &p))),
            catalog: raw
                .catalog
                .map(|c| PathBuf::from(self.expand("catalog", &c))),
            series_budget,
            cadence,
            incident_cadence,
            listen,
            host_metrics: raw.host_metrics.enabled,
            filesystems: raw.host_metrics.filesystems,
            disks: raw.host_metrics.disks,
            interfaces: raw.host_metrics.interfaces,
            scrape,
            logs,
            tokenize_key_file,
            detectors,
            metrics_urls,
            logs_urls,
            traces_urls,
            tls,
            queue,
            statsd,
            otlp,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9740))
}

pub use edge_schema::config::{parse_duration, parse_size};

pub mod otlp;
pub mod statsd;

#[cfg(test)]
mod tests;
