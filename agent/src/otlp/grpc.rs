//! OTLP/gRPC: the three collector services' `Export`, over HTTP/2 on hyper, framed by
//! tonic's server (gzip accepted and answered in kind).
//!
//! The glue is written here rather than generated: three unary methods whose request
//! arrives as raw bytes ([`RawCodec`]) and is decoded by the agent itself, so a body
//! that does not decode answers `InvalidArgument` as OTLP asks (tonic's own decoding
//! answers `Internal`). Codes:
//!
//! | case | code |
//! |---|---|
//! | taken (items refused are named in `partial_success`) | `OK` |
//! | the message does not decode | `InvalidArgument` |
//! | over [`MAX_BODY`](super::MAX_BODY), compressed or not | `ResourceExhausted` |
//! | the agent shedding the signal | `Unavailable`, with `RetryInfo` |
//! | another method | `Unimplemented` |

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use edge_schema::proto::opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest;
use edge_schema::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use edge_schema::proto::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use super::answer::{self, Outcome};
use super::{MAX_BODY, Receivers};

/// The metrics service's method path.
pub const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// The logs service's method path.
pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
/// The trace service's method path.
pub const TRACES_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Messages as bytes both ways: the handlers decode and encode.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// See [`RawCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCoder;
    type Decoder = RawCoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawCoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCoder
    }
}

impl Encoder for RawCoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Which export a method is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Metrics,
    Logs,
    Traces,
}

/// One method's handler.
struct Export {
    signal: Signal,
    receivers: Arc<Receivers>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let signal = self.signal;
        let receivers = self.receivers.clone();
        Box::pin(async move {
            let body = request.into_inner();
            let invalid = |what: &str, e: prost::DecodeError| {
                Status::invalid_argument(format!("not an {what}: {e}"))
            };
            let telemetry = receivers.shared().telemetry.clone();
            let (result, answer) = match signal {
                Signal::Metrics => match ExportMetricsServiceRequest::decode(body) {
                    Ok(r) => to_status(receivers.metrics(&r)),
                    Err(e) => (
                        "bad_request",
                        Err(invalid("ExportMetricsServiceRequest", e)),
                    ),
                },
                Signal::Logs => match ExportLogsServiceRequest::decode(body) {
                    Ok(r) => match tokio::task::spawn_blocking(move || receivers.logs(r)).await {
                        Ok(o) => to_status(o),
                        Err(e) => (
                            "unavailable",
                            Err(unavailable(
                                &format!("the logs path failed: {e}"),
                                super::LOGS_RETRY_AFTER,
                            )),
                        ),
                    },
                    Err(e) => ("bad_request", Err(invalid("ExportLogsServiceRequest", e))),
                },
                Signal::Traces => match ExportTraceServiceRequest::decode(body) {
                    Ok(r) => to_status(receivers.traces(r)),
                    Err(e) => ("bad_request", Err(invalid("ExportTraceServiceRequest", e))),
                },
            };
            telemetry.otlp_request(result);
            answer.map(tonic::Response::new)
        })
    }
}

fn unavailable(message: &str, retry_after: std::time::Duration) -> Status {
    let details = answer::unavailable(message, retry_after).encode_to_vec();
    Status::with_details(Code::Unavailable, message, Bytes::from(details))
}

fn to_status<R: Message>(outcome: Outcome<R>) -> (&'static str, Result<Bytes, Status>) {
    let result = outcome.result();
    let answer = match outcome {
        Outcome::Taken { response, .. } => Ok(Bytes::from(response.encode_to_vec())),
        Outcome::BadRequest(m) => Err(Status::invalid_argument(m)),
        Outcome::TooLarge(m) => Err(Status::resource_exhausted(m)),
        Outcome::Unavailable {
            message,
            retry_after,
        } => Err(unavailable(&message, retry_after)),
    };
    (result, answer)
}

async fn handle(
    req: http::Request<Incoming>,
    receivers: Arc<Receivers>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let signal = match req.uri().path() {
        METRICS_EXPORT => Signal::Metrics,
        LOGS_EXPORT => Signal::Logs,
        TRACES_EXPORT => Signal::Traces,
        other => {
            return Ok(Status::unimplemented(format!(
                "{other}: this agent serves the OTLP collector services' Export"
            ))
            .into_http());
        }
    };
    let telemetry = receivers.shared().telemetry.clone();
    let mut grpc = tonic::server::Grpc::new(RawCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY)
        .max_encoding_message_size(MAX_BODY);
    let mut response = grpc.unary(Export { signal, receivers }, req).await;
    // Framing errors never reach the handler: count them here. An uncompressed
    // message over the limit is tonic's `OutOfRange` (it refuses it from the frame
    // header, before reading it); OTLP says `ResourceExhausted`, so it is renamed.
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    match code.map(Code::from) {
        Some(Code::OutOfRange) => {
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("8"));
            telemetry.otlp_request("too_large");
        }
        Some(Code::ResourceExhausted) => {
            telemetry.otlp_request("too_large");
        }
        Some(Code::Internal | Code::Unimplemented) => {
            telemetry.otlp_request("bad_request");
        }
        _ => {}
    }
    Ok(response)
}

/// Serves `listener` (HTTP/2, cleartext) until `stop`.
pub async fn serve(
    listener: TcpListener,
    receivers: Arc<Receivers>,
    mut stop: watch::Receiver<bool>,
) {
    edge_daemon_kit::serve::accept_loop(&listener, &mut stop, "otlp grpc", |stream, _| {
        let receivers = receivers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, receivers.clone()));
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    })
    .await;
}
