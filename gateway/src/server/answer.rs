//! The one place where an outcome becomes an HTTP answer: its status, its
//! `Retry-After` and its body text. Quota, policy, sink, body and overload outcomes
//! are named in [`Outcome`]; the routes in `ingest.rs` only say which one happened.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;

use edge_schema::proto::otlp::trace::{ExportTracePartialSuccess, ExportTraceServiceResponse};

use crate::decode::BodyError;
use crate::identity::IdentityError;
use crate::quota::retry_after_secs;
use crate::sink::SinkError;

/// The answer header carrying the fleet cadence (the agent's `Edge-Cadence`).
pub const CADENCE_HEADER: &str = "edge-cadence";
/// The answer header asking agents to shed verbose logs.
pub const SHED_HEADER: &str = "edge-shed-logs";

/// How long a client waits after the gateway is overloaded, or a sink failed.
const RETRY_OVERLOADED: Duration = Duration::from_secs(5);
/// How long a client waits when this gateway has no traces sink: a config fix and
/// reload away, but not seconds away.
const RETRY_NO_TRACES_SINK: Duration = Duration::from_secs(60);
/// How long a client refused by admission control waits (plus jitter): the box was
/// saturated a moment ago, and may not be a second from now.
const RETRY_NOT_ADMITTED: Duration = Duration::from_secs(1);
/// How long a tenant throttled by the overload controller waits at the least (plus
/// jitter): its rate cut has room again within a second or so; the wait it is told is
/// longer when the cut is deeper in debt.
const RETRY_THROTTLED: Duration = Duration::from_secs(1);
/// How long a client waits when the budget of decompressed bytes in flight is full: the
/// bodies holding it are decoded and committed within a second or two.
const RETRY_DECOMPRESS_BUDGET: Duration = Duration::from_secs(2);

/// What became of a request, before it is an HTTP answer.
#[derive(Debug)]
pub enum Outcome {
    /// `GET /healthz`: 200.
    Healthy,
    /// `GET /ready`: 200 when every sink answers, 503 otherwise.
    Ready(bool),
    /// `GET /metrics`: 200 with the exposition text.
    Metrics(String),
    /// No such path: 404.
    NoSuchEndpoint(String),
    /// A known path with the wrong method: 405.
    MethodNotAllowed {
        /// The method asked.
        method: http::Method,
        /// The path.
        path: String,
    },
    /// No identity (401) or an identity that may not do this (403).
    Identity(IdentityError),
    /// The overload controller's last stage: 503 to everyone.
    Overloaded,
    /// Admission control could not start the request's work in time, or its queue was
    /// full (`reason`): 503 + a jittered `Retry-After`, nothing done.
    NotAdmitted {
        /// `queue_timeout` or `queue_full`.
        reason: &'static str,
    },
    /// The overload controller cut this tenant's rate and the cut has no room now:
    /// 429, with the wait until it has (at least [`RETRY_THROTTLED`]).
    Throttled {
        /// The tenant.
        tenant: String,
        /// When the cut has room again.
        wait: Duration,
    },
    /// The body is over `limits.max_body_bytes`: 413, and the connection closed when
    /// the rest of the body was not drained (the client is still sending).
    BodyOverLimit {
        /// The limit.
        max: usize,
        /// Whether the rest of the body was read and dropped.
        drained: bool,
    },
    /// A remote_write body of a version this gateway does not speak: 415 (a 2.0 body
    /// scans as zero series: answering 2xx would lose it).
    UnsupportedContentType(String),
    /// The body could not be read off the connection: 400.
    BodyUnreadable(String),
    /// The body did not arrive within `limits.body_read_timeout`: 408, and the
    /// connection closed (a body that trickles in must not hold a connection forever).
    BodyTimeout(Duration),
    /// The body does not decode (413, 400 or 415, see [`BodyError::status`]).
    Body(BodyError),
    /// The budget of decompressed bytes in flight
    /// (`limits.max_decompressed_bytes_in_flight`) has no room for this body now: 503
    /// with `Retry-After`.
    DecompressBudget(String),
    /// A JSON log batch that is not one: 400 with a JSON body.
    MalformedJsonLogs(String),
    /// The tenant is over its sample rate: 429.
    SampleRate {
        /// The tenant.
        tenant: String,
        /// This replica's share of the rate, samples/s.
        per_second: f64,
        /// When it would fit.
        wait: Duration,
    },
    /// More samples at once than the tenant's burst: 413.
    SampleBurst {
        /// The tenant.
        tenant: String,
        /// Samples asked.
        asked: u64,
        /// The burst (this replica's share).
        burst: u64,
    },
    /// The tenant is over its log byte rate: 429.
    LogRate {
        /// The tenant.
        tenant: String,
        /// When it would fit.
        wait: Duration,
    },
    /// More log bytes at once than the tenant's burst: 413.
    LogBurst {
        /// The tenant.
        tenant: String,
        /// Bytes asked.
        asked: u64,
        /// The burst (this replica's share).
        burst: u64,
    },
    /// The tenant is over its span rate: 429.
    SpanRate {
        /// The tenant.
        tenant: String,
        /// This replica's share of the rate, spans/s.
        per_second: f64,
        /// When it would fit.
        wait: Duration,
    },
    /// More spans at once than the tenant's burst: 413.
    SpanBurst {
        /// The tenant.
        tenant: String,
        /// Spans asked.
        asked: u64,
        /// The burst (this replica's share).
        burst: u64,
    },
    /// This gateway has no `sinks.traces`: 503 with `Retry-After` (a config to fix
    /// here; agents keep their spans queued meanwhile).
    NoTracesSink,
    /// The spans committed: 200 with an `ExportTraceServiceResponse`, empty, or with a
    /// `partial_success` when some spans were refused (a PII drop detector).
    SpansCommitted {
        /// Spans refused.
        rejected_spans: u64,
        /// Why, when some were.
        error_message: String,
    },
    /// The sink did not commit: 503 with `Retry-After`, or 400 for a record it can
    /// never take.
    Sink(SinkError),
    /// Every sample committed: 204.
    SamplesCommitted,
    /// Some series broke the policy or a limit: 400 with the reasons (the rest is
    /// committed).
    SamplesPartlyRefused(String),
    /// The log records committed: 200 (an empty OTLP answer, or the JSON count).
    LogsCommitted {
        /// How many.
        records: u64,
        /// OTLP (protobuf) rather than the JSON endpoint.
        otlp: bool,
    },
}

/// A response under construction.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
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

    fn retry(mut self, wait: Duration) -> Answer {
        self.retry_after = Some(retry_after_secs(wait));
        self
    }

    fn typed(mut self, content_type: &'static str) -> Answer {
        self.content_type = content_type;
        self
    }

    /// The HTTP response, with the fleet cadence and (under overload) the level
    /// agents should shed.
    pub fn into_response(
        self,
        cadence: Duration,
        shed: Option<&'static str>,
    ) -> http::Response<Full<Bytes>> {
        let mut response = http::Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let h = response.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(self.content_type),
        );
        if let Some(secs) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if self.close {
            h.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        if let Ok(v) = http::HeaderValue::from_str(&format!("{}s", cadence.as_secs().max(1))) {
            h.insert(CADENCE_HEADER, v);
        }
        if let Some(level) = shed {
            h.insert(SHED_HEADER, http::HeaderValue::from_static(level));
        }
        response
    }
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Answer {
        match outcome {
            Outcome::Healthy => Answer::new(200, "ok\n"),
            Outcome::Ready(true) => Answer::new(200, "ready\n"),
            Outcome::Ready(false) => Answer::new(503, "a sink does not answer\n"),
            Outcome::Metrics(text) => {
                Answer::new(200, text).typed("text/plain; version=0.0.4; charset=utf-8")
            }
            Outcome::NoSuchEndpoint(path) => {
                Answer::new(404, format!("no such endpoint: {path}\n"))
            }
            Outcome::MethodNotAllowed { method, path } => {
                Answer::new(405, format!("{method} is not allowed on {path}\n"))
            }
            Outcome::Identity(e @ IdentityError::Unknown) => Answer::new(401, format!("{e}\n")),
            Outcome::Identity(e) => Answer::new(403, format!("{e}\n")),
            Outcome::Overloaded => Answer::new(
                503,
                "the gateway is overloaded; retry after the time given\n",
            )
            .retry(RETRY_OVERLOADED),
            Outcome::NotAdmitted { reason } => Answer::new(
                503,
                format!(
                    "the gateway is saturated ({reason}): nothing was done; retry after the time given\n"
                ),
            )
            .retry(RETRY_NOT_ADMITTED),
            Outcome::Throttled { tenant, wait } => Answer::new(
                429,
                format!("tenant {tenant} is throttled while the gateway is overloaded\n"),
            )
            .retry(wait.max(RETRY_THROTTLED)),
            Outcome::BodyOverLimit { max, drained } => {
                let answer =
                    Answer::new(413, format!("the body is over the limit of {max} bytes\n"));
                if drained { answer } else { answer.close() }
            }
            Outcome::UnsupportedContentType(why) => Answer::new(415, format!("{why}\n")),
            Outcome::BodyUnreadable(e) => {
                Answer::new(400, format!("the body could not be read: {e}\n"))
            }
            Outcome::BodyTimeout(limit) => Answer::new(
                408,
                format!(
                    "the body did not arrive within {} s (limits.body_read_timeout)\n",
                    limit.as_secs()
                ),
            )
            .close(),
            Outcome::Body(e) => Answer::new(e.status(), format!("{e}\n")),
            Outcome::DecompressBudget(why) => Answer::new(
                503,
                format!("{why}; retry after the time given\n"),
            )
            .retry(RETRY_DECOMPRESS_BUDGET),
            Outcome::MalformedJsonLogs(e) => Answer::new(
                400,
                serde_json::json!({"status": "rejected", "error": e}).to_string(),
            )
            .typed("application/json"),
            Outcome::SampleRate {
                tenant,
                per_second,
                wait,
            } => Answer::new(
                429,
                format!(
                    "tenant {tenant} is over its rate of {per_second} samples/s (this replica's share); retry after the time given\n"
                ),
            )
            .retry(wait),
            Outcome::SampleBurst {
                tenant,
                asked,
                burst,
            } => Answer::new(
                413,
                format!(
                    "a request of {asked} samples can never fit tenant {tenant}'s burst of {burst} on this replica: send smaller requests\n"
                ),
            ),
            Outcome::LogRate { tenant, wait } => Answer::new(
                429,
                format!("tenant {tenant} is over its log byte rate; retry after the time given\n"),
            )
            .retry(wait),
            Outcome::LogBurst {
                tenant,
                asked,
                burst,
            } => Answer::new(
                413,
                format!(
                    "a request of {asked} log bytes can never fit tenant {tenant}'s burst of {burst} on this replica: send smaller batches\n"
                ),
            ),
            Outcome::SpanRate {
                tenant,
                per_second,
                wait,
            } => Answer::new(
                429,
                format!(
                    "tenant {tenant} is over its rate of {per_second} spans/s (this replica's share); retry after the time given\n"
                ),
            )
            .retry(wait),
            Outcome::SpanBurst {
                tenant,
                asked,
                burst,
            } => Answer::new(
                413,
                format!(
                    "a request of {asked} spans can never fit tenant {tenant}'s span burst of {burst} on this replica: send smaller batches\n"
                ),
            ),
            Outcome::NoTracesSink => Answer::new(
                503,
                "this gateway has no traces sink (sinks.traces in its config); retry after the time given\n",
            )
            .retry(RETRY_NO_TRACES_SINK),
            // An empty ExportTraceServiceResponse: full success.
            Outcome::SpansCommitted {
                rejected_spans,
                error_message,
            } => {
                let body = if rejected_spans == 0 {
                    Vec::new()
                } else {
                    prost::Message::encode_to_vec(&ExportTraceServiceResponse {
                        partial_success: Some(ExportTracePartialSuccess {
                            rejected_spans: i64::try_from(rejected_spans).unwrap_or(i64::MAX),
                            error_message,
                        }),
                    })
                };
                Answer::new(200, body).typed("application/x-protobuf")
            }
            Outcome::Sink(SinkError::Busy { retry_after }) => {
                Answer::new(503, "the sink is saturated; retry after the time given\n")
                    .retry(retry_after)
            }
            Outcome::Sink(SinkError::Failed(why)) => {
                tracing::warn!(error = %why, "sink commit failed");
                Answer::new(
                    503,
                    "the sink is unavailable; nothing was committed, retry after the time given\n",
                )
                .retry(RETRY_OVERLOADED)
            }
            Outcome::Sink(SinkError::Refused(why)) => Answer::new(400, format!("{why}\n")),
            Outcome::SamplesCommitted => Answer::new(204, Vec::new()),
            Outcome::SamplesPartlyRefused(reasons) => Answer::new(400, reasons),
            // An empty ExportLogsServiceResponse: full success.
            Outcome::LogsCommitted { otlp: true, .. } => {
                Answer::new(200, Vec::new()).typed("application/x-protobuf")
            }
            Outcome::LogsCommitted {
                records,
                otlp: false,
            } => Answer::new(
                200,
                serde_json::json!({"status": "accepted", "ingestedCount": records}).to_string(),
            )
            .typed("application/json"),
        }
    }
}
