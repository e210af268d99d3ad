//! The OTLP receivers: gRPC ([`grpc`], `127.0.0.1:4317`) and HTTP ([`http`],
//! `127.0.0.1:4318`, protobuf or [`json`]) for metrics, logs and traces. Both transports
//! hand decoded requests to one [`Receivers`], so an export means the same whichever
//! way it came:
//!
//! - metrics become remote_write series ([`metrics`]) and pass the gate every source
//!   passes (policy, catalog, budget, overflow, host labels);
//! - logs enter the logs pipeline after its parse stage ([`logs`]) and are queued (on
//!   disk) before the answer;
//! - traces go to the traces path ([`crate::traces`]).
//!
//! Answers ([`answer`]) follow the OTLP specification: success with `partial_success`
//! naming what was refused and why; `InvalidArgument` / 400 for a body that does not
//! decode; `ResourceExhausted` / 413 over [`MAX_BODY`]; `Unavailable` / 503 with
//! `RetryInfo` / `Retry-After` while the agent sheds the signal.
//!
//! A default address that is taken (the collector being replaced still running) is
//! tried again every [`RETRY_BIND`]; an address given in the config that cannot be
//! bound stops the start.

pub mod answer;
pub mod grpc;
pub mod http;
pub mod json;
pub mod logs;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_schema::proto::opentelemetry::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use edge_schema::proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use edge_schema::proto::opentelemetry::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::config::otlp::{DEFAULT_GRPC, DEFAULT_HTTP, Endpoint, OtlpConfig};
use crate::logs::pipeline::LogsPipeline;
use crate::metrics::{Offered, now_ms};
use crate::shared::Shared;
use crate::traces::TraceVerdict;
pub use answer::Outcome;

/// How often a taken default address is tried again.
pub const RETRY_BIND: Duration = Duration::from_secs(30);

/// The largest export taken, decompressed (and, for HTTP, compressed): 8 MiB, twice
/// what an SDK's default batch of 512 records or spans comes to with large attributes.
/// Decompression stops at the bound, so a small gzip bomb costs no more than this.
pub const MAX_BODY: usize = 8 << 20;

/// How long a client is told to wait when the agent sheds log records.
pub const LOGS_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The most distinct refusals an answer names (the count covers them all).
const MAX_MESSAGES: usize = 3;

/// Where OTLP log records go: the logs pipeline, or why there is none.
#[derive(Debug, Clone)]
pub enum LogsSink {
    /// The pipeline (shared with the file tailer's thread).
    Pipeline(Arc<Mutex<LogsPipeline>>),
    /// No pipeline runs; records are refused with this reason.
    None(&'static str),
}

/// What both transports share: the signal handlers.
#[derive(Debug)]
pub struct Receivers {
    shared: Arc<Shared>,
    converter: Mutex<metrics::Converter>,
    logs: LogsSink,
}

/// Refusals gathered over one export.
#[derive(Default)]
struct Refused {
    count: i64,
    messages: Vec<String>,
}

impl Refused {
    fn add(&mut self, n: i64, message: String) {
        self.count += n;
        if self.messages.len() < MAX_MESSAGES && !self.messages.contains(&message) {
            self.messages.push(message);
        }
    }

    fn message(&self) -> String {
        let mut m = self.messages.join("; ");
        if self.messages.len() == MAX_MESSAGES {
            m.push_str("; …");
        }
        m
    }
}

impl Receivers {
    /// Handlers over the agent's shared state (the traces path among it) and logs sink.
    pub fn new(shared: Arc<Shared>, logs: LogsSink) -> Self {
        Receivers {
            shared,
            converter: Mutex::new(metrics::Converter::default()),
            logs,
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Takes one metrics export.
    pub fn metrics(
        &self,
        request: &ExportMetricsServiceRequest,
    ) -> Outcome<ExportMetricsServiceResponse> {
        let telemetry = &self.shared.telemetry;
        let now = Instant::now();
        let now_ms = now_ms();
        let converted = self
            .converter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .convert(request, now_ms, now);
        telemetry.otlp_exemplars_dropped(converted.exemplars);
        let mut refused = Refused::default();
        for r in &converted.refused {
            telemetry.otlp_items("metrics", r.reason, 1);
            refused.add(1, r.message.clone());
        }
        let mut accepted = 0u64;
        {
            let mut pipeline = self.shared.pipeline();
            for point in converted.points {
                // A point becomes several series (a classic histogram, a summary); it
                // is refused if any of them is, for the first reason met.
                let mut why: Option<(&'static str, String)> = None;
                for ts in point.series {
                    match pipeline.offer_series(ts, now_ms, now) {
                        Offered::Accepted(_) => {}
                        Offered::Refused { reason, detail, .. } => {
                            if why.is_none() {
                                let result = if reason == edge_schema::reasons::BUDGET {
                                    "budget"
                                } else {
                                    "policy"
                                };
                                let mut text = detail.unwrap_or_else(|| {
                                    format!(
                                        "metric `{}`: the host's series budget is full",
                                        point.metric
                                    )
                                });
                                if let Some((label, attr)) = point
                                    .renamed
                                    .iter()
                                    .find(|(l, _)| text.contains(&format!("`{l}`")))
                                {
                                    text.push_str(&format!(
                                        " (label `{label}` is the OTLP attribute `{attr}`)"
                                    ));
                                }
                                text.push_str("; its values go to the overflow series");
                                why = Some((result, text));
                            }
                        }
                        Offered::Unnamed => {
                            why.get_or_insert_with(|| {
                                ("invalid", "a series without a name".into())
                            });
                        }
                        Offered::Invalid(fault) => {
                            why.get_or_insert_with(|| ("invalid", fault.to_string()));
                        }
                    }
                }
                match why {
                    None => accepted += 1,
                    Some((result, text)) => {
                        telemetry.otlp_items("metrics", result, 1);
                        refused.add(1, text);
                    }
                }
            }
        }
        telemetry.otlp_items("metrics", "accepted", accepted);
        let partial = refused.count > 0;
        Outcome::Taken {
            response: ExportMetricsServiceResponse {
                partial_success: partial.then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: refused.count,
                    error_message: refused.message(),
                }),
            },
            partial,
        }
    }

    /// Takes one logs export: tokenized and queued on disk when this returns. Blocking
    /// (tokenization and the queue's fsync): run it off the async workers.
    pub fn logs(&self, request: ExportLogsServiceRequest) -> Outcome<ExportLogsServiceResponse> {
        let telemetry = &self.shared.telemetry;
        let groups = logs::records(request, now_ns());
        let total: usize = groups.iter().map(|g| g.records.len()).sum();
        let pipeline = match &self.logs {
            LogsSink::Pipeline(p) => p,
            LogsSink::None(why) => {
                telemetry.otlp_items("logs", "dropped", total as u64);
                let partial = total > 0;
                return Outcome::Taken {
                    response: ExportLogsServiceResponse {
                        partial_success: partial.then(|| ExportLogsPartialSuccess {
                            rejected_log_records: total as i64,
                            error_message: (*why).to_string(),
                        }),
                    },
                    partial,
                };
            }
        };
        let mut queued = 0;
        let mut dropped = 0;
        let mut refused = Refused::default();
        {
            let mut p = pipeline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            for group in groups {
                let n = group.records.len();
                let got = p.offer_structured(&group.service, group.records, now);
                if got.shedding {
                    if queued == 0 && dropped == 0 && refused.count == 0 {
                        return Outcome::Unavailable {
                            message: "the agent is shedding log records of this level (its disk queue is nearly full or the gateway asked it to); retry later".into(),
                            retry_after: LOGS_RETRY_AFTER,
                        };
                    }
                    refused.add(
                        n as i64,
                        format!(
                            "service `{}`: records shed (the agent's queue is nearly full)",
                            group.service
                        ),
                    );
                    continue;
                }
                queued += got.queued;
                dropped += got.dropped;
            }
        }
        telemetry.otlp_items("logs", "accepted", queued as u64);
        telemetry.otlp_items("logs", "dropped", (dropped as u64) + refused.count as u64);
        let partial = refused.count > 0;
        Outcome::Taken {
            response: ExportLogsServiceResponse {
                partial_success: partial.then(|| ExportLogsPartialSuccess {
                    rejected_log_records: refused.count,
                    error_message: refused.message(),
                }),
            },
            partial,
        }
    }

    /// Takes one traces export.
    pub fn traces(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Outcome<ExportTraceServiceResponse> {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let telemetry = &self.shared.telemetry;
        let verdict = match self.shared.traces() {
            Some(pipeline) => pipeline.offer(request),
            None => TraceVerdict::Accepted {
                rejected_spans: i64::try_from(spans).unwrap_or(i64::MAX),
                error_message:
                    "this agent ships no traces (output.traces_url is not set); spans are not kept"
                        .into(),
            },
        };
        match verdict {
            TraceVerdict::Accepted {
                rejected_spans,
                error_message,
            } => {
                let rejected = rejected_spans.max(0);
                if self.shared.traces().is_none() {
                    // The traces path counts what it takes; spans with nowhere to go
                    // are counted here.
                    telemetry.spans("refused", rejected as u64);
                }
                let partial = rejected > 0 || !error_message.is_empty();
                Outcome::Taken {
                    response: ExportTraceServiceResponse {
                        partial_success: partial.then_some(ExportTracePartialSuccess {
                            rejected_spans: rejected,
                            error_message,
                        }),
                    },
                    partial,
                }
            }
            TraceVerdict::Shedding { retry_after } => Outcome::Unavailable {
                message: "the agent is shedding spans (its disk queue is nearly full or the gateway asked it to); retry later".into(),
                retry_after,
            },
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The bound receivers, before they run.
#[derive(Debug)]
pub struct Otlp {
    config: OtlpConfig,
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
}

async fn bind(what: &str, endpoint: Endpoint) -> anyhow::Result<Option<TcpListener>> {
    match TcpListener::bind(endpoint.addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !endpoint.explicit => {
            tracing::warn!(
                address = %endpoint.addr,
                error = %e,
                "the default OTLP {what} address is taken; trying again every {}s",
                RETRY_BIND.as_secs()
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("otlp.{what} {}", endpoint.addr)),
    }
}

impl Otlp {
    /// Binds what the config turns on (see the module docs for a taken address).
    pub async fn bind(config: OtlpConfig) -> anyhow::Result<Otlp> {
        let grpc = match config.grpc {
            Some(e) => bind("grpc", e).await?,
            None => None,
        };
        let http = match config.http {
            Some(e) => bind("http", e).await?,
            None => None,
        };
        Ok(Otlp { config, grpc, http })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `stop`.
    pub fn spawn(
        self,
        receivers: Arc<Receivers>,
        stop: watch::Receiver<bool>,
    ) -> Vec<(&'static str, JoinHandle<()>)> {
        let mut tasks = Vec::new();
        if let Some(endpoint) = self.config.grpc {
            let receivers = receivers.clone();
            let stop = stop.clone();
            let listener = self.grpc;
            tasks.push((
                "otlp grpc",
                tokio::spawn(async move {
                    if let Some(l) = listen(listener, endpoint, "grpc", stop.clone()).await {
                        grpc::serve(l, receivers, stop).await;
                    }
                }),
            ));
        }
        if let Some(endpoint) = self.config.http {
            let listener = self.http;
            tasks.push((
                "otlp http",
                tokio::spawn(async move {
                    if let Some(l) = listen(listener, endpoint, "http", stop.clone()).await {
                        http::serve(l, receivers, stop).await;
                    }
                }),
            ));
        }
        tasks
    }
}

/// The listener, or (a taken default address) one bound later; `None` when stopped
/// first.
async fn listen(
    bound: Option<TcpListener>,
    endpoint: Endpoint,
    what: &str,
    mut stop: watch::Receiver<bool>,
) -> Option<TcpListener> {
    if let Some(l) = bound {
        return Some(l);
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(RETRY_BIND) => {}
            _ = stop.changed() => return None,
        }
        if let Ok(l) = TcpListener::bind(endpoint.addr).await {
            tracing::info!(address = %endpoint.addr, "OTLP {what} listening");
            return Some(l);
        }
    }
}
