//! The local receiver, on loopback only:
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/push` (also `/api/v1/write`) | remote_write 1.0, snappy: the exporter and any remote_write client |
//! | `GET /metrics` | the agent's own metrics, Prometheus text |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /ready` | 200 once the queue is open and the first cycle has run, else 503 |
//! | `POST`/`DELETE`/`GET /api/v1/incident` | set, clear, read local incident mode (5 s cadence) |
//! | `GET /tap?signal=logs\|metrics\|traces&source=NAME&limit=N` | what leaves the pipelines, live: NDJSON, chunked ([`crate::tap`]); `429` past [`crate::tap::MAX_TAPS`] |
//!
//! Every answer to a push carries the cadence in force (`Edge-Cadence: 10s`, `5s` in
//! incident mode), which the exporter's pusher follows.
//!
//! A push answers 204 once its series have passed the gate, even when some were
//! refused: a refusal is the agent's to count and log, and the client must not retry
//! it. A series a store would refuse (bad name, duplicate labels, a timestamp more than
//! 10 minutes ahead, an inconsistent native histogram) is dropped alone, counted in
//! `edge_series_invalid_total`, and named in a 200 answer's body. A remote_write 2.0 body
//! (by its `Content-Type`) answers 415 naming the version spoken, never 2xx. A body that does not decode answers 400 with the reason; a body over
//! [`MAX_PUSH_BYTES`] answers 413. Pushing never waits on the network or the disk.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use edge_daemon_kit::snappy::{SnappyError, decompress_bounded};
use edge_schema::proto::prometheus::WriteRequest;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Bytes, Incoming};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cadence::CADENCE_HINT_HEADER;
use crate::metrics::now_ms;
use crate::shared::Shared;
use crate::tap::{TapBody, TapRequest};
use crate::telemetry::render_text;
use edge_daemon_kit::serve::text as answer;

/// The largest compressed push accepted.
pub const MAX_PUSH_BYTES: usize = 8 << 20;

/// The largest push once decompressed.
pub const MAX_PUSH_DECODED_BYTES: usize = 64 << 20;

/// An answer: a whole body, or a tap's stream.
type Body = Either<Full<Bytes>, TapBody>;

/// Serves `listener` until `stop` turns true; then ends the open taps (other
/// connections finish on their own).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let taps = shared.telemetry.taps().clone();
    edge_daemon_kit::serve::serve_http1(listener, stop, "receiver", move |req, _peer| {
        let shared = shared.clone();
        async move { answer_request(req, &shared).await }
    })
    .await;
    taps.close_all();
}

async fn answer_request(req: http::Request<Incoming>, shared: &Shared) -> Response<Body> {
    if req.uri().path() != "/tap" {
        return route(req, shared).await.map(Either::Left);
    }
    if req.method() != Method::GET {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").map(Either::Left);
    }
    let request = match TapRequest::from_query(req.uri().query()) {
        Ok(r) => r,
        Err(why) => return answer(StatusCode::BAD_REQUEST, format!("{why}\n")).map(Either::Left),
    };
    match shared.telemetry.taps().subscribe(request) {
        Ok(body) => {
            let mut r = Response::new(Either::Right(body));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-ndjson"),
            );
            r
        }
        Err(e) => answer(StatusCode::TOO_MANY_REQUESTS, format!("{e}\n")).map(Either::Left),
    }
}

async fn route(req: http::Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/api/v1/push" | "/api/v1/write") => {
            let mut r = push(req, shared).await;
            // The cadence in force, so the exporter's pusher follows incident mode.
            if let Ok(v) = http::HeaderValue::from_str(&cadence_hint(shared.cadence.current())) {
                r.headers_mut().insert(CADENCE_HINT_HEADER, v);
            }
            r
        }
        (Method::GET, "/metrics") => {
            let series = shared.telemetry.snapshot(now_ms());
            let mut r = answer(StatusCode::OK, render_text(&series));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (Method::GET, "/healthz") => answer(StatusCode::OK, "ok\n"),
        (Method::GET, "/ready") => {
            if shared.ready.load(Ordering::Relaxed) {
                answer(StatusCode::OK, "ready\n")
            } else {
                answer(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            }
        }
        (Method::POST, "/api/v1/incident") => {
            shared.cadence.set_local_incident(true);
            answer(StatusCode::OK, incident_body(shared))
        }
        (Method::DELETE, "/api/v1/incident") => {
            shared.cadence.set_local_incident(false);
            answer(StatusCode::OK, incident_body(shared))
        }
        (Method::GET, "/api/v1/incident") => answer(StatusCode::OK, incident_body(shared)),
        (
            _,
            "/api/v1/push" | "/api/v1/write" | "/metrics" | "/healthz" | "/ready"
            | "/api/v1/incident",
        ) => answer(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => answer(StatusCode::NOT_FOUND, format!("no route {path}\n")),
    }
}

/// `10s`, or `500ms` when not whole seconds (as `parse_duration` reads it).
fn cadence_hint(cadence: std::time::Duration) -> String {
    if cadence.subsec_millis() == 0 && cadence.as_secs() > 0 {
        format!("{}s", cadence.as_secs())
    } else {
        format!("{}ms", cadence.as_millis().max(1))
    }
}

fn incident_body(shared: &Shared) -> String {
    format!(
        "{{\"incident\":{},\"cadence_seconds\":{}}}\n",
        shared.cadence.local_incident(),
        shared.cadence.current().as_secs_f64()
    )
}

async fn push(req: http::Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    if let Err(why) = edge_schema::remote_write::check_content_type(content_type) {
        return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{why}\n"));
    }
    let snappy = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("snappy"));
    if !snappy {
        return answer(
            StatusCode::BAD_REQUEST,
            "remote_write bodies must be snappy-compressed (Content-Encoding: snappy)\n",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_PUSH_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("push larger than {MAX_PUSH_BYTES} bytes\n"),
                );
            }
            return answer(StatusCode::BAD_REQUEST, format!("reading the body: {e}\n"));
        }
    };
    let raw = match decompress_bounded(&body, MAX_PUSH_DECODED_BYTES) {
        Ok(raw) => raw,
        Err(SnappyError::TooLarge { declared, max }) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("push decompresses to {declared} bytes, over {max}\n"),
            );
        }
        Err(SnappyError::Header(e) | SnappyError::Body(e)) => {
            return answer(StatusCode::BAD_REQUEST, format!("snappy: {e}\n"));
        }
    };
    let request = match WriteRequest::decode(raw.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("not a remote_write WriteRequest: {e}\n"),
            );
        }
    };
    let ingested = shared.pipeline().ingest(request, Instant::now());
    if ingested.unnamed > 0 || ingested.invalid > 0 {
        // Dropped series are named in the answer; the client must not retry them (a
        // retry would be dropped again), so this is a success with a body.
        let first = ingested
            .first_invalid
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default();
        return answer(
            StatusCode::OK,
            format!(
                "{} series without __name__ and {} invalid series dropped{first}; {} points accepted, {} refused by policy or budget\n",
                ingested.unnamed, ingested.invalid, ingested.accepted, ingested.refused
            ),
        );
    }
    answer(StatusCode::NO_CONTENT, Bytes::new())
}
