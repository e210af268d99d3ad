//! The gateway: mTLS ingest, identity, policy and quotas, sinks, reload, overload.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use edge_schema::policy::LabelPolicy;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::config::{GatewayConfig, OverloadAction, SinkConfig, TenantLimits};
use crate::decode::{self, BodyError};
use crate::identity::{self, Identity, TENANT_HEADER};
use crate::quota::{Quotas, RateCheck, retry_after_secs};
use crate::sink::file::FileSink;
use crate::sink::{Record, Sink, SinkError};
use crate::telemetry::{AGE_BUCKETS, LATENCY_BUCKETS, Telemetry, labels};
use crate::validate::{KnownNames, check_labels, check_samples, labels_hash};

/// The answer header carrying the fleet cadence (the agent's `Edge-Cadence`).
pub const CADENCE_HEADER: &str = "edge-cadence";
/// The answer header asking agents to shed verbose logs.
pub const SHED_HEADER: &str = "edge-shed-logs";

/// Everything a reload replaces, swapped in whole.
#[derive(Debug)]
pub struct Live {
    /// The config.
    pub config: GatewayConfig,
    /// The label policy.
    pub policy: LabelPolicy,
    /// The TLS server config (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// SHA-256 of the config file, hex.
    pub hash: String,
    stamps: Vec<Stamp>,
}

type Stamp = (PathBuf, Option<SystemTime>, u64);

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok();
    (
        path.to_path_buf(),
        meta.as_ref().and_then(|m| m.modified().ok()),
        meta.map_or(0, |m| m.len()),
    )
}

fn watched_files(path: &Path, config: &GatewayConfig) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    if let Some(t) = &config.tls {
        files.extend([t.cert.clone(), t.key.clone(), t.client_ca.clone()]);
    }
    files.extend(config.policy.clone());
    files
}

/// Loads the config, its policy and its TLS files; any failure leaves nothing built.
pub fn load_live(path: &Path) -> Result<Live, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let config = crate::config::load(path).map_err(|e| e.to_string())?;
    let policy = match &config.policy {
        Some(p) => LabelPolicy::from_file(p).map_err(|e| e.to_string())?,
        None => LabelPolicy::shipped(),
    };
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(build_tls(files)?)),
        None => None,
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &text);
    let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let stamps = watched_files(path, &config)
        .iter()
        .map(|p| stamp(p))
        .collect();
    Ok(Live {
        config,
        policy,
        tls,
        hash,
        stamps,
    })
}

fn build_tls(files: &crate::config::TlsFiles) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("TLS key {}: {e}", files.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.client_ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS client CA {}: {e}", files.client_ca.display()))?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("TLS client CA {}: {e}", files.client_ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "TLS client CA {}: no certificate in it",
            files.client_ca.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let verifier = if files.client_cert_required {
        builder.build()
    } else {
        builder.allow_unauthenticated().build()
    }
    .map_err(|e| format!("TLS client CA {}: {e}", files.client_ca.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key {}: {e}", files.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The overload controller's state: stage 0 is normal; stage k ≤ actions applies the
/// first k actions; one past the last answers 503 to everyone.
#[derive(Debug, Default)]
struct OverloadState {
    stage: AtomicU8,
    since: Mutex<Option<Instant>>,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    config_path: PathBuf,
    live: RwLock<Arc<Live>>,
    /// Per-tenant quotas.
    pub quotas: Quotas,
    /// Self-metrics.
    pub telemetry: Telemetry,
    metrics_sink: Arc<dyn Sink>,
    logs_sink: Arc<dyn Sink>,
    overload: OverloadState,
    in_flight: AtomicI64,
    /// The files as they were when a reload was last refused: the same refused files
    /// seen again (a poll, then a SIGHUP) are one refusal, counted once.
    refused_stamps: std::sync::Mutex<Option<Vec<Stamp>>>,
}

/// Bytes of commits that may wait on an AWS sink before it answers `Busy`.
pub const AWS_IN_FLIGHT_BYTES: u64 = 64 << 20;

async fn open_sink(config: &SinkConfig, stream: &str) -> anyhow::Result<Arc<dyn Sink>> {
    match config {
        SinkConfig::File { dir } => Ok(Arc::new(FileSink::open(dir, stream)?)),
        SinkConfig::Kinesis {
            stream,
            region,
            endpoint_url,
        } => Ok(Arc::new(
            crate::sink::kinesis::KinesisSink::new(crate::sink::kinesis::KinesisConfig {
                stream: stream.clone(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                max_in_flight_bytes: AWS_IN_FLIGHT_BYTES,
            })
            .await,
        )),
        SinkConfig::Firehose {
            delivery_stream,
            region,
            endpoint_url,
        } => Ok(Arc::new(
            crate::sink::firehose::FirehoseSink::new(crate::sink::firehose::FirehoseConfig {
                delivery_stream: delivery_stream.clone(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                max_in_flight_bytes: AWS_IN_FLIGHT_BYTES,
            })
            .await,
        )),
        SinkConfig::RemoteWrite(target) if stream == "metrics" => Ok(Arc::new(
            crate::sink::remote_write::RemoteWriteSink::new(target, AWS_IN_FLIGHT_BYTES).await?,
        )),
        SinkConfig::RemoteWrite(_) => {
            anyhow::bail!("sinks.logs: remote_write carries metrics only; use firehose or file")
        }
    }
}

impl Gateway {
    /// Loads `config_path` and opens the sinks (on the current runtime).
    pub async fn new(config_path: &Path) -> anyhow::Result<Arc<Gateway>> {
        let live = load_live(config_path).map_err(anyhow::Error::msg)?;
        if live.config.tls.is_none() {
            tracing::warn!(
                "TLS is off: plain HTTP, identity only from bearer tokens; for loopback tests and the local demo only"
            );
        }
        let metrics_sink = open_sink(&live.config.metrics_sink, "metrics").await?;
        let logs_sink = open_sink(&live.config.logs_sink, "logs").await?;
        let gw = Arc::new(Gateway {
            config_path: config_path.to_path_buf(),
            live: RwLock::new(Arc::new(live)),
            quotas: Quotas::default(),
            telemetry: Telemetry::default(),
            metrics_sink,
            logs_sink,
            overload: OverloadState::default(),
            in_flight: AtomicI64::new(0),
            refused_stamps: std::sync::Mutex::new(None),
        });
        gw.reloaded(true);
        Ok(gw)
    }

    /// What is in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn reloaded(&self, ok: bool) {
        let t = &self.telemetry;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        t.set(
            "edge_gateway_config_last_reload_successful",
            "Whether the last config reload succeeded.",
            String::new(),
            if ok { 1.0 } else { 0.0 },
        );
        t.add(
            "edge_gateway_config_reloads_total",
            "Config reloads by result.",
            labels(&[("result", if ok { "success" } else { "failure" })]),
            1.0,
        );
        if ok {
            t.set(
                "edge_gateway_config_last_reload_success_timestamp_seconds",
                "When the config was last loaded.",
                String::new(),
                now,
            );
            let live = self.live();
            crate::telemetry::set_build_info(t, "gateway");
            if let Some(files) = &live.config.tls {
                crate::telemetry::set_cert_expiry(t, "gateway", "server", &files.cert);
            }
            let mut infos = std::collections::BTreeMap::new();
            infos.insert(labels(&[("sha256", &live.hash)]), 1.0);
            t.set_only(
                "edge_gateway_config_info",
                "The config in force (its SHA-256).",
                infos,
            );
        }
    }

    /// Reloads if any watched file changed (or always, with `force`: SIGHUP). A config
    /// that does not load is refused, logged and counted; the old one stays.
    pub fn reload(&self, force: bool) -> Result<bool, String> {
        let current = self.live();
        let changed = current.stamps.iter().any(|(p, m, l)| {
            let (_, m2, l2) = stamp(p);
            m2 != *m || l2 != *l
        });
        if !force && !changed {
            return Ok(false);
        }
        match load_live(&self.config_path) {
            Ok(new) => {
                if new.config.listen != current.config.listen
                    || new.config.metrics_sink != current.config.metrics_sink
                    || new.config.logs_sink != current.config.logs_sink
                {
                    tracing::warn!(
                        "listen and sinks changed in the config: they take effect at the next restart; the rest applies now"
                    );
                }
                let hash = new.hash.clone();
                *self
                    .live
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
                *self
                    .refused_stamps
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                self.reloaded(true);
                tracing::info!(sha256 = %hash, "config reloaded");
                Ok(true)
            }
            Err(e) => {
                // Stamp the broken files, so they are not re-read every poll; the
                // config in force stays as it is.
                let stamps: Vec<Stamp> = current.stamps.iter().map(|(p, _, _)| stamp(p)).collect();
                let kept = Live {
                    config: current.config.clone(),
                    policy: current.policy.clone(),
                    tls: current.tls.clone(),
                    hash: current.hash.clone(),
                    stamps: stamps.clone(),
                };
                *self
                    .live
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(kept);
                let again = {
                    let mut refused = self
                        .refused_stamps
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let again = refused.as_ref() == Some(&stamps);
                    *refused = Some(stamps);
                    again
                };
                if again {
                    tracing::warn!(error = %e, "the config files are unchanged and still refused; the old one stays in force");
                } else {
                    self.reloaded(false);
                    tracing::error!(error = %e, "the new config is refused; the old one stays in force");
                }
                Err(e)
            }
        }
    }

    /// The overload stage now, and what it means.
    fn overload_now(&self, live: &Live) -> (u8, Option<&'static str>, Vec<String>) {
        let stage = self.overload.stage.load(Ordering::Relaxed);
        let actions = &live.config.overload.actions;
        let applied = &actions[..usize::from(stage).min(actions.len())];
        let mut shed = None;
        let mut throttled = Vec::new();
        for a in applied {
            match a {
                OverloadAction::ReduceLogSampling(p) => {
                    shed = Some(if *p > 50 { "info" } else { "debug" });
                }
                OverloadAction::ThrottleTenants(t) => throttled.extend(t.iter().cloned()),
            }
        }
        (stage, shed, throttled)
    }

    /// One step of the overload controller (every second): escalates after 5 s over
    /// the threshold, steps back after 15 s under it.
    pub fn overload_tick(&self) {
        let live = self.live();
        let threshold = live.config.overload.freshness_threshold_p99;
        let over = self.telemetry.commit_p99() > threshold;
        let max = live.config.overload.actions.len() as u8 + 1;
        let stage = self.overload.stage.load(Ordering::Relaxed);
        let mut since = self
            .overload
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let held = since.map_or(Duration::MAX, |s| now.saturating_duration_since(s));
        let next = next_stage(stage, over, held, max);
        if next != stage {
            *since = Some(now);
            self.overload.stage.store(next, Ordering::Relaxed);
            tracing::warn!(stage = next, p99 = ?self.telemetry.commit_p99(), "overload stage changed");
        }
        self.telemetry.set(
            "edge_gateway_overload_stage",
            "0 normal; k applies the first k overload actions; one past them answers 503.",
            String::new(),
            f64::from(next),
        );
        for (name, sink) in [("metrics", &self.metrics_sink), ("logs", &self.logs_sink)] {
            let (records, bytes) = sink.backlog();
            self.telemetry.set(
                "edge_gateway_sink_backlog_records",
                "Records handed to a sink, not yet committed.",
                labels(&[("sink", name)]),
                records as f64,
            );
            self.telemetry.set(
                "edge_gateway_sink_backlog_bytes",
                "Bytes handed to a sink, not yet committed.",
                labels(&[("sink", name)]),
                bytes as f64,
            );
        }
        for (tenant, n) in self.quotas.active_series() {
            self.telemetry.set(
                "edge_gateway_active_series",
                "Series of a tenant written in the last 5 minutes, on this replica.",
                labels(&[("tenant", &tenant)]),
                n as f64,
            );
        }
    }
}

/// How long the sink must be over the threshold before the next action, and under it
/// before stepping back.
pub const ESCALATE_AFTER: Duration = Duration::from_secs(5);
/// See [`ESCALATE_AFTER`].
pub const RECOVER_AFTER: Duration = Duration::from_secs(15);

/// The overload stage after one tick: up one stage (to at most `max`) after
/// [`ESCALATE_AFTER`] over the threshold in this stage, down one after
/// [`RECOVER_AFTER`] under it.
pub fn next_stage(stage: u8, over: bool, held: Duration, max: u8) -> u8 {
    if over && stage < max && held >= ESCALATE_AFTER {
        stage + 1
    } else if !over && stage > 0 && held >= RECOVER_AFTER {
        stage - 1
    } else {
        stage
    }
}

/// A response under construction.
#[derive(Debug)]
pub struct Answer {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    retry_after: Option<u64>,
    close: bool,
}

impl Answer {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            body: body.into(),
            content_type: "text/plain; charset=utf-8",
            retry_after: None,
            close: false,
        }
    }

    /// Ask an HTTP/1.1 client to close the connection after this answer (hyper leaves
    /// the header out of HTTP/2, where the stream ends on its own).
    fn close(mut self) -> Answer {
        self.close = true;
        self
    }

    fn retry(mut self, secs: u64) -> Answer {
        self.retry_after = Some(secs);
        self
    }

    fn typed(mut self, content_type: &'static str) -> Answer {
        self.content_type = content_type;
        self
    }
}

/// What the connection knows of its client.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's leaf certificate (DER).
    pub cert: Option<Vec<u8>>,
    /// The peer address.
    pub peer: SocketAddr,
}

fn header<'a>(req: &'a http::Request<hyper::body::Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Handles one request.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    gw.in_flight.fetch_add(1, Ordering::Relaxed);
    let live = gw.live();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let endpoint: &'static str = match path.as_str() {
        "/api/v1/push" => "push",
        "/v1/logs" => "otlp_logs",
        "/api/v1/logs" => "json_logs",
        "/metrics" => "metrics",
        "/healthz" => "healthz",
        "/ready" => "ready",
        _ => "other",
    };
    let answer = match (endpoint, &method) {
        ("healthz", &http::Method::GET) => Answer::new(200, "ok\n"),
        ("ready", &http::Method::GET) => {
            if gw.metrics_sink.ready().await && gw.logs_sink.ready().await {
                Answer::new(200, "ready\n")
            } else {
                Answer::new(503, "a sink does not answer\n")
            }
        }
        ("metrics", &http::Method::GET) => Answer::new(200, gw.telemetry.render())
            .typed("text/plain; version=0.0.4; charset=utf-8"),
        ("push" | "otlp_logs" | "json_logs", &http::Method::POST) => {
            ingest(&gw, &live, &conn, endpoint, req).await
        }
        ("other", _) => Answer::new(404, format!("no such endpoint: {path}\n")),
        _ => Answer::new(405, format!("{method} is not allowed on {path}\n")),
    };
    gw.in_flight.fetch_sub(1, Ordering::Relaxed);
    let took = started.elapsed();
    let code = answer.status.to_string();
    gw.telemetry.add(
        "edge_gateway_requests_total",
        "Requests by endpoint and status.",
        labels(&[("endpoint", endpoint), ("code", &code)]),
        1.0,
    );
    gw.telemetry.observe(
        "edge_gateway_ttfb_seconds",
        "Time from a request's arrival to its answer (which waits for the sink's commit).",
        LATENCY_BUCKETS,
        labels(&[("endpoint", endpoint)]),
        took.as_secs_f64(),
    );
    let (_, shed, _) = gw.overload_now(&live);
    let mut response = http::Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = http::StatusCode::from_u16(answer.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(answer.content_type),
    );
    if let Some(secs) = answer.retry_after {
        h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    if answer.close {
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    if let Ok(v) =
        http::HeaderValue::from_str(&format!("{}s", live.config.fleet_cadence.as_secs().max(1)))
    {
        h.insert(CADENCE_HEADER, v);
    }
    if let Some(level) = shed {
        h.insert(SHED_HEADER, http::HeaderValue::from_static(level));
    }
    Ok(response)
}

fn over_limit(gw: &Gateway, tenant: &str, limit: &str) {
    gw.telemetry.add(
        "tenant_over_limit_total",
        "Requests refused because a tenant was over a limit.",
        labels(&[("tenant", tenant), ("limit", limit)]),
        1.0,
    );
}

fn discarded(gw: &Gateway, what: &str, tenant: &str, reason: &str, n: u64) {
    if n == 0 {
        return;
    }
    let (name, help) = if what == "samples" {
        (
            "edge_gateway_discarded_samples_total",
            "Samples refused, by tenant and reason.",
        )
    } else {
        (
            "edge_gateway_discarded_log_records_total",
            "Log records refused, by tenant and reason.",
        )
    };
    gw.telemetry.add(
        name,
        help,
        labels(&[("tenant", tenant), ("reason", reason)]),
        n as f64,
    );
}

async fn ingest(
    gw: &Gateway,
    live: &Live,
    conn: &ConnInfo,
    endpoint: &'static str,
    req: http::Request<hyper::body::Incoming>,
) -> Answer {
    let identity = match identity::identify(
        &live.config.identities,
        conn.cert.as_deref(),
        header(&req, "authorization"),
        header(&req, TENANT_HEADER),
    ) {
        Ok(id) => id,
        Err(e @ identity::IdentityError::Unknown) => return Answer::new(401, format!("{e}\n")),
        Err(e) => return Answer::new(403, format!("{e}\n")),
    };
    let limits = live.config.limits_of(&identity.tenant).clone();
    let (stage, _, throttled) = gw.overload_now(live);
    if usize::from(stage) > live.config.overload.actions.len() {
        over_limit(gw, &identity.tenant, "overload");
        return Answer::new(
            503,
            "the gateway is overloaded; retry after the time given\n",
        )
        .retry(retry_after_secs(Duration::from_secs(5)));
    }
    if throttled.contains(&identity.tenant) {
        over_limit(gw, &identity.tenant, "overload_throttle");
        return Answer::new(
            429,
            format!(
                "tenant {} is throttled while the gateway is overloaded\n",
                identity.tenant
            ),
        )
        .retry(retry_after_secs(Duration::from_secs(10)));
    }
    if endpoint == "push"
        && let Err(why) =
            edge_schema::remote_write::check_content_type(header(&req, "content-type"))
    {
        // A 2.0 body scans as zero series: answering 2xx would lose it.
        return Answer::new(415, format!("{why}\n"));
    }
    let encoding = header(&req, "content-encoding").map(str::to_string);
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max_body = live.config.limits.max_body_bytes;
    let body = match crate::body::read(req.into_body(), declared, max_body).await {
        Ok(b) => b,
        Err(crate::body::ReadError::TooLarge { drained }) => {
            let answer = Answer::new(
                413,
                format!("the body is over the limit of {max_body} bytes\n"),
            );
            // Not drained: the client is still sending; close rather than reset later.
            return if drained { answer } else { answer.close() };
        }
        Err(crate::body::ReadError::Failed(e)) => {
            return Answer::new(400, format!("the body could not be read: {e}\n"));
        }
    };
    let max = live.config.limits.max_decompressed_bytes;
    match endpoint {
        "push" => push(gw, live, &identity, &limits, &body, max).await,
        "otlp_logs" => match decode::logs_request(&body, encoding.as_deref(), max) {
            Ok((request, raw_len)) => {
                let docs = crate::docs::from_otlp(&request, &identity.tenant);
                logs(gw, live, &identity, &limits, docs, raw_len as u64, true).await
            }
            Err(e) => body_error(gw, &identity, "log_records", e),
        },
        _ => match decode::by_encoding(&body, encoding.as_deref(), max) {
            Ok(raw) => match crate::docs::from_json_batch(&raw, &identity.tenant) {
                Ok(docs) => logs(gw, live, &identity, &limits, docs, raw.len() as u64, false).await,
                Err(e) => {
                    discarded(gw, "log_records", &identity.tenant, "malformed", 1);
                    Answer::new(
                        400,
                        serde_json::json!({"status": "rejected", "error": e.0}).to_string(),
                    )
                    .typed("application/json")
                }
            },
            Err(e) => body_error(gw, &identity, "log_records", e),
        },
    }
}

fn body_error(gw: &Gateway, identity: &Identity, what: &str, e: BodyError) -> Answer {
    discarded(
        gw,
        what,
        &identity.tenant,
        if e.status() == 413 {
            "too_large"
        } else {
            "malformed"
        },
        1,
    );
    Answer::new(e.status(), format!("{e}\n"))
}

fn sink_error(e: SinkError) -> Answer {
    match e {
        SinkError::Busy { retry_after } => {
            Answer::new(503, "the sink is saturated; retry after the time given\n")
                .retry(retry_after_secs(retry_after))
        }
        SinkError::Failed(why) => {
            tracing::warn!(error = %why, "sink commit failed");
            Answer::new(
                503,
                "the sink is unavailable; nothing was committed, retry after the time given\n",
            )
            .retry(retry_after_secs(Duration::from_secs(5)))
        }
        SinkError::Refused(why) => Answer::new(400, format!("{why}\n")),
    }
}

/// The series still kept.
fn kept<'s>(
    series: &'s [crate::remote_write::SeriesView],
    keep: &'s [bool],
) -> impl Iterator<Item = &'s crate::remote_write::SeriesView> {
    series.iter().zip(keep).filter(|(_, k)| **k).map(|(s, _)| s)
}

async fn push(
    gw: &Gateway,
    live: &Live,
    id: &Identity,
    limits: &TenantLimits,
    body: &[u8],
    max: usize,
) -> Answer {
    let raw = match decode::snappy(body, max) {
        Ok(r) => r,
        Err(e) => return body_error(gw, id, "samples", e),
    };
    let scanned = match crate::remote_write::scan(&raw) {
        Ok(s) => s,
        Err(e) => return body_error(gw, id, "samples", BodyError::Malformed(e.to_string())),
    };
    let tenant = id.tenant.as_str();
    // reason → (samples, first messages)
    let mut refused: BTreeMap<&'static str, (u64, Vec<String>)> = BTreeMap::new();
    let mut keep = vec![false; scanned.series.len()];
    let mut known = KnownNames::default();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for (i, series) in scanned.series.iter().enumerate() {
        let labels = scanned.labels_of(series);
        let checked = check_labels(labels, &live.policy, limits, &mut known).and_then(|()| {
            let metric = crate::validate::metric_name(labels);
            check_samples(&scanned, series, &raw, metric, now_ms, limits)
        });
        match checked {
            Ok(()) => keep[i] = true,
            Err(d) => {
                let entry = refused.entry(d.reason).or_default();
                entry.0 += series.samples;
                if entry.1.len() < 3 {
                    entry.1.push(d.message);
                }
            }
        }
    }
    let samples: u64 = kept(&scanned.series, &keep).map(|s| s.samples).sum();
    match gw
        .quotas
        .check_samples(tenant, limits, live.config.replicas, samples)
    {
        RateCheck::Ok => {}
        RateCheck::Wait(wait) => {
            over_limit(gw, tenant, "ingestion_rate");
            discarded(gw, "samples", tenant, "rate_limited", samples);
            return Answer::new(
                429,
                format!(
                    "tenant {tenant} is over its rate of {} samples/s (this replica's share); retry after the time given\n",
                    limits.samples_rate_limit / f64::from(live.config.replicas)
                ),
            )
            .retry(retry_after_secs(wait));
        }
        RateCheck::TooLarge { asked, burst } => {
            over_limit(gw, tenant, "ingestion_burst");
            discarded(gw, "samples", tenant, "rate_limited", samples);
            return Answer::new(
                413,
                format!(
                    "a request of {asked} samples can never fit tenant {tenant}'s burst of {burst} on this replica: send smaller requests\n"
                ),
            );
        }
    }
    let now = Instant::now();
    let mut scratch = Vec::new();
    let hashes: Vec<u64> = kept(&scanned.series, &keep)
        .map(|s| labels_hash(scanned.labels_of(s), &mut scratch))
        .collect();
    let admitted = gw
        .quotas
        .admit_series(tenant, limits, live.config.replicas, &hashes, now);
    let mut over_series = 0u64;
    let mut admitted = admitted.into_iter();
    for (i, series) in scanned.series.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        if admitted.next() == Some(false) {
            keep[i] = false;
            over_series += series.samples;
            let entry = refused.entry("per_user_series_limit").or_default();
            entry.0 += series.samples;
            if entry.1.is_empty() {
                entry.1.push(format!(
                    "tenant {tenant} is at its limit of {} active series (this replica's share); new series are refused",
                    limits.max_series / u64::from(live.config.replicas)
                ));
            }
        }
    }
    if over_series > 0 {
        over_limit(gw, tenant, "max_series");
    }
    let accepted_samples: u64 = kept(&scanned.series, &keep).map(|s| s.samples).sum();
    let accepted_series = kept(&scanned.series, &keep).count();
    if accepted_series > 0 {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let ages: Vec<f64> = kept(&scanned.series, &keep)
            .filter_map(|s| s.newest_ms)
            .map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
            .collect();
        // All accepted: the bytes as they came. Otherwise the accepted series' fields.
        let data = if accepted_series == scanned.series.len() {
            drop(scanned);
            raw
        } else {
            crate::remote_write::select(&raw, &scanned, &keep)
        };
        let record = Record {
            key: format!("{tenant}/{}", id.host),
            data,
        };
        let timer = gw.telemetry.commit_begins("metrics");
        let result = gw.metrics_sink.commit(vec![record]).await;
        timer.done();
        if let Err(e) = result {
            return sink_error(e);
        }
        gw.telemetry.add(
            "edge_gateway_samples_accepted_total",
            "Samples (and histograms) committed, by tenant.",
            labels(&[("tenant", tenant)]),
            accepted_samples as f64,
        );
        gw.telemetry.observe_many(
            "edge_gateway_sample_age_seconds",
            "Age at ingest of each series' newest sample (freshness).",
            AGE_BUCKETS,
            String::new(),
            &ages,
        );
    }
    if refused.is_empty() {
        return Answer::new(204, Vec::new());
    }
    let mut body = String::new();
    for (reason, (n, messages)) in &refused {
        discarded(gw, "samples", tenant, reason, *n);
        body.push_str(&format!("{reason}: {n} samples refused"));
        for m in messages {
            body.push_str(&format!("; {m}"));
        }
        body.push('\n');
    }
    body.push_str(&format!(
        "{accepted_samples} samples of the other series were accepted\n"
    ));
    Answer::new(400, body)
}

async fn logs(
    gw: &Gateway,
    live: &Live,
    id: &Identity,
    limits: &TenantLimits,
    docs: Vec<Vec<u8>>,
    bytes: u64,
    otlp: bool,
) -> Answer {
    let tenant = id.tenant.as_str();
    let n = docs.len() as u64;
    match gw
        .quotas
        .check_log_bytes(tenant, limits, live.config.replicas, bytes)
    {
        RateCheck::Ok => {}
        RateCheck::Wait(wait) => {
            over_limit(gw, tenant, "log_bytes_rate");
            discarded(gw, "log_records", tenant, "rate_limited", n);
            return Answer::new(
                429,
                format!("tenant {tenant} is over its log byte rate; retry after the time given\n"),
            )
            .retry(retry_after_secs(wait));
        }
        RateCheck::TooLarge { asked, burst } => {
            over_limit(gw, tenant, "log_bytes_burst");
            discarded(gw, "log_records", tenant, "rate_limited", n);
            return Answer::new(
                413,
                format!(
                    "a request of {asked} log bytes can never fit tenant {tenant}'s burst of {burst} on this replica: send smaller batches\n"
                ),
            );
        }
    }
    if !docs.is_empty() {
        let records = docs
            .into_iter()
            .map(|data| Record {
                key: tenant.to_string(),
                data,
            })
            .collect();
        let timer = gw.telemetry.commit_begins("logs");
        let result = gw.logs_sink.commit(records).await;
        timer.done();
        if let Err(e) = result {
            return sink_error(e);
        }
        gw.telemetry.add(
            "edge_gateway_log_records_accepted_total",
            "Log records committed, by tenant.",
            labels(&[("tenant", tenant)]),
            n as f64,
        );
    }
    if otlp {
        // An empty ExportLogsServiceResponse: full success.
        Answer::new(200, Vec::new()).typed("application/x-protobuf")
    } else {
        Answer::new(
            200,
            serde_json::json!({"status": "accepted", "ingestedCount": n}).to_string(),
        )
        .typed("application/json")
    }
}

/// Accepts connections until `shutdown` turns true, then asks every connection to
/// finish (HTTP/2 GOAWAY) and waits up to the grace period for them.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicI64::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((tcp, peer)) = accepted else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let gw = gw.clone();
        let open = open.clone();
        let shutdown = shutdown.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(gw, tcp, peer, shutdown).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let grace = gw.live().config.limits.shutdown_grace;
    let deadline = Instant::now() + grace;
    while open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = open.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            connections = left,
            "connections still open at the end of the grace period"
        );
    }
}

async fn connection(
    gw: Arc<Gateway>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let live = gw.live();
    let max_age = live.config.limits.max_connection_age;
    match live.tls.clone() {
        Some(config) => {
            let handshake = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_rustls::TlsAcceptor::from(config).accept(tcp),
            )
            .await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    gw.telemetry.add(
                        "edge_gateway_tls_handshake_failures_total",
                        "TLS handshakes refused or failed.",
                        String::new(),
                        1.0,
                    );
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            drive(
                gw,
                TokioIo::new(stream),
                ConnInfo { cert, peer },
                max_age,
                shutdown,
            )
            .await;
        }
        None => {
            drive(
                gw,
                TokioIo::new(tcp),
                ConnInfo { cert: None, peer },
                max_age,
                shutdown,
            )
            .await
        }
    }
}

async fn drive<I>(
    gw: Arc<Gateway>,
    io: I,
    info: ConnInfo,
    max_age: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = hyper::service::service_fn(move |req| handle(gw.clone(), info.clone(), req));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(max_age);
    tokio::pin!(age);
    let mut asked = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut age, if !asked => {
                // Old enough: ask the client to reconnect so the load balancer can
                // spread connections (and per-replica limits stay fair).
                conn.as_mut().graceful_shutdown();
                asked = true;
            }
            _ = shutdown.changed(), if !asked => {
                conn.as_mut().graceful_shutdown();
                asked = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_escalates_in_order_and_recovers_slowly() {
        let s = Duration::from_secs;
        // Over the threshold: one stage per ESCALATE_AFTER, up to one past the actions.
        assert_eq!(next_stage(0, true, Duration::MAX, 3), 1);
        assert_eq!(next_stage(1, true, s(4), 3), 1, "not yet");
        assert_eq!(next_stage(1, true, s(5), 3), 2);
        assert_eq!(next_stage(3, true, s(60), 3), 3, "the last stage holds");
        // Under it: back one stage per RECOVER_AFTER.
        assert_eq!(next_stage(3, false, s(14), 3), 3);
        assert_eq!(next_stage(3, false, s(15), 3), 2);
        assert_eq!(next_stage(0, false, s(60), 3), 0);
    }
}
