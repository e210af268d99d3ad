//! OTLP/HTTP: `POST /v1/metrics`, `/v1/logs`, `/v1/traces`.
//!
//! | request | answer |
//! |---|---|
//! | `application/x-protobuf` or `application/json`, identity or `gzip` | 200, the `Export*ServiceResponse` in the request's encoding (`partial_success` when items were refused) |
//! | a body that does not decode | 400, a `google.rpc.Status` |
//! | over [`MAX_BODY`](super::MAX_BODY), compressed or not | 413, a `google.rpc.Status` |
//! | the agent shedding the signal | 503, `Retry-After` and a `google.rpc.Status` with `RetryInfo` |
//! | another content type or encoding | 415 |
//! | another path / method | 404 / 405 |

use std::io::Read as _;
use std::sync::Arc;

use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::answer::{self, Outcome, RpcStatus, code};
use super::{MAX_BODY, Receivers, json};

/// Serves `listener` until `stop`.
pub async fn serve(listener: TcpListener, receivers: Arc<Receivers>, stop: watch::Receiver<bool>) {
    edge_daemon_kit::serve::serve_http1(listener, stop, "otlp http", move |req, _peer| {
        let receivers = receivers.clone();
        async move { route(req, receivers).await }
    })
    .await;
}

/// The body encoding, from `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The encoding a `Content-Type` names (parameters such as `charset` ignored).
pub fn encoding(content_type: Option<&str>) -> Option<Encoding> {
    let main = content_type?.split(';').next()?.trim();
    if main.eq_ignore_ascii_case("application/x-protobuf") {
        Some(Encoding::Protobuf)
    } else if main.eq_ignore_ascii_case("application/json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

async fn route(req: http::Request<Incoming>, receivers: Arc<Receivers>) -> Response<Full<Bytes>> {
    let signal = match req.uri().path() {
        "/v1/metrics" => "metrics",
        "/v1/logs" => "logs",
        "/v1/traces" => "traces",
        other => {
            return edge_daemon_kit::serve::text(
                StatusCode::NOT_FOUND,
                format!(
                    "no route {other}: OTLP/HTTP takes POST /v1/metrics, /v1/logs, /v1/traces\n"
                ),
            );
        }
    };
    if req.method() != Method::POST {
        return edge_daemon_kit::serve::text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
    }
    let telemetry = receivers.shared().telemetry.clone();
    let (result, answer) = export(req, signal, receivers).await;
    telemetry.otlp_request(result);
    answer
}

async fn export(
    req: http::Request<Incoming>,
    signal: &'static str,
    receivers: Arc<Receivers>,
) -> (&'static str, Response<Full<Bytes>>) {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let Some(enc) = encoding(content_type) else {
        return (
            "unsupported",
            edge_daemon_kit::serve::text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {:?}: OTLP/HTTP takes application/x-protobuf or application/json\n",
                    content_type.unwrap_or("(none)")
                ),
            ),
        );
    };
    let gzip = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return (
                "unsupported",
                edge_daemon_kit::serve::text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Encoding {other:?}: OTLP/HTTP takes identity or gzip\n"),
                ),
            );
        }
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return fail(
                enc,
                StatusCode::PAYLOAD_TOO_LARGE,
                &answer::status(
                    code::RESOURCE_EXHAUSTED,
                    &format!("the body is larger than {MAX_BODY} bytes; send smaller batches"),
                ),
            );
        }
        Err(e) => {
            return fail(
                enc,
                StatusCode::BAD_REQUEST,
                &answer::status(code::INVALID_ARGUMENT, &format!("reading the body: {e}")),
            );
        }
    };
    let body = if gzip {
        match gunzip(&body) {
            Ok(b) => Bytes::from(b),
            Err(Gunzip::TooLarge) => {
                return fail(
                    enc,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &answer::status(
                        code::RESOURCE_EXHAUSTED,
                        &format!(
                            "the body decompresses to more than {MAX_BODY} bytes; send smaller batches"
                        ),
                    ),
                );
            }
            Err(Gunzip::Bad(e)) => {
                return fail(
                    enc,
                    StatusCode::BAD_REQUEST,
                    &answer::status(code::INVALID_ARGUMENT, &format!("gzip: {e}")),
                );
            }
        }
    } else {
        body
    };
    let bad = |what: &str, e: String| {
        fail(
            enc,
            StatusCode::BAD_REQUEST,
            &answer::status(code::INVALID_ARGUMENT, &format!("not an {what}: {e}")),
        )
    };
    match signal {
        "metrics" => {
            let request = match enc {
                Encoding::Protobuf => {
                    edge_schema::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest::decode(body)
                        .map_err(|e| e.to_string())
                }
                Encoding::Json => json::metrics_request(&body),
            };
            match request {
                Ok(r) => respond(enc, receivers.metrics(&r), json::metrics_response),
                Err(e) => bad("ExportMetricsServiceRequest", e),
            }
        }
        "logs" => {
            let request = match enc {
                Encoding::Protobuf => {
                    edge_schema::proto::opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest::decode(body)
                        .map_err(|e| e.to_string())
                }
                Encoding::Json => json::logs_request(&body),
            };
            match request {
                Ok(r) => {
                    let outcome = tokio::task::spawn_blocking(move || receivers.logs(r)).await;
                    match outcome {
                        Ok(o) => respond(enc, o, json::logs_response),
                        Err(e) => fail(
                            enc,
                            StatusCode::SERVICE_UNAVAILABLE,
                            &answer::unavailable(
                                &format!("the logs path failed: {e}"),
                                super::LOGS_RETRY_AFTER,
                            ),
                        ),
                    }
                }
                Err(e) => bad("ExportLogsServiceRequest", e),
            }
        }
        _ => {
            let request = match enc {
                Encoding::Protobuf => {
                    edge_schema::proto::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                        .map_err(|e| e.to_string())
                }
                Encoding::Json => json::traces_request(&body),
            };
            match request {
                Ok(r) => respond(enc, receivers.traces(r), json::traces_response),
                Err(e) => bad("ExportTraceServiceRequest", e),
            }
        }
    }
}

fn respond<R: Message>(
    enc: Encoding,
    outcome: Outcome<R>,
    to_json: fn(&R) -> serde_json::Value,
) -> (&'static str, Response<Full<Bytes>>) {
    let result = outcome.result();
    let (_, r) = match outcome {
        Outcome::Taken { response, .. } => {
            let body = match enc {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => to_json(&response).to_string().into_bytes(),
            };
            (result, with_type(StatusCode::OK, enc, body))
        }
        Outcome::BadRequest(m) => fail(
            enc,
            StatusCode::BAD_REQUEST,
            &answer::status(code::INVALID_ARGUMENT, &m),
        ),
        Outcome::TooLarge(m) => fail(
            enc,
            StatusCode::PAYLOAD_TOO_LARGE,
            &answer::status(code::RESOURCE_EXHAUSTED, &m),
        ),
        Outcome::Unavailable {
            message,
            retry_after,
        } => {
            let (_, mut r) = fail(
                enc,
                StatusCode::SERVICE_UNAVAILABLE,
                &answer::unavailable(&message, retry_after),
            );
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(v) = http::HeaderValue::from_str(&secs) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            (result, r)
        }
    };
    (result, r)
}

fn with_type(status: StatusCode, enc: Encoding, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(enc.content_type()),
    );
    r
}

/// An error answer: the status in the request's encoding.
fn fail(enc: Encoding, status: StatusCode, s: &RpcStatus) -> (&'static str, Response<Full<Bytes>>) {
    let result = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "unsupported",
    };
    let body = match enc {
        Encoding::Protobuf => s.encode_to_vec(),
        Encoding::Json => answer::status_json(s).to_string().into_bytes(),
    };
    (result, with_type(status, enc, body))
}

/// Why a gzip body was refused.
#[derive(Debug)]
pub enum Gunzip {
    /// It decompresses to more than [`MAX_BODY`].
    TooLarge,
    /// It is not gzip.
    Bad(std::io::Error),
}

/// Decompresses `body`, stopping past [`MAX_BODY`] bytes.
pub fn gunzip(body: &[u8]) -> Result<Vec<u8>, Gunzip> {
    let mut out = Vec::with_capacity((body.len() * 4).min(MAX_BODY));
    let mut d = flate2::read::MultiGzDecoder::new(body).take(MAX_BODY as u64 + 1);
    d.read_to_end(&mut out).map_err(Gunzip::Bad)?;
    if out.len() > MAX_BODY {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}
