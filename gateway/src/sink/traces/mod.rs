//! The `traces` sink: where `POST /v1/traces` commits spans (`sinks.traces`).
//!
//! - `otlp` ([`otlp::OtlpSink`]): each request's `ExportTraceServiceRequest`, as it
//!   came (decompressed), POSTed to an OTLP/HTTP endpoint; with `sigv4` signed for AWS
//!   X-Ray's OTLP endpoint (service `xray`).
//! - `file`: the spool of the `file` sink under `<dir>/traces/`, one record per request
//!   (key: the tenant, data: the `ExportTraceServiceRequest`), read back with
//!   [`crate::sink::file::read_spool`].
//! - `firehose`: one JSON document per span ([`document`]), NDJSON in Firehose
//!   records, through the logs' Firehose sink.
//!
//! Every kind commits before the gateway answers 2xx.

pub mod document;
pub mod otlp;

use std::sync::Arc;

use edge_schema::proto::otlp::trace::ExportTraceServiceRequest;

use super::file::FileSink;
use super::{Record, Sink};
use crate::config::SinkConfig;

/// What the sink takes: a request as it came, or one document per span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The decompressed `ExportTraceServiceRequest`, one record per request.
    Request,
    /// One JSON document per span.
    SpanDocuments,
}

/// The traces sink and the shape of its records.
#[derive(Debug, Clone)]
pub struct TracesSink {
    format: Format,
    sink: Arc<dyn Sink>,
}

impl TracesSink {
    /// Opens the sink `config` names (on the current runtime).
    pub async fn open(config: &SinkConfig, in_flight_bytes: u64) -> anyhow::Result<TracesSink> {
        let (format, sink): (Format, Arc<dyn Sink>) = match config {
            SinkConfig::File { dir } => (Format::Request, Arc::new(FileSink::open(dir, "traces")?)),
            SinkConfig::Otlp(target) => (
                Format::Request,
                Arc::new(otlp::OtlpSink::new(target, in_flight_bytes).await?),
            ),
            SinkConfig::Firehose {
                delivery_stream,
                region,
                endpoint_url,
            } => (
                Format::SpanDocuments,
                Arc::new(
                    super::firehose::FirehoseSink::new(super::firehose::FirehoseConfig {
                        delivery_stream: delivery_stream.clone(),
                        region: region.clone(),
                        endpoint_url: endpoint_url.clone(),
                        max_in_flight_bytes: in_flight_bytes,
                    })
                    .await,
                ),
            ),
            SinkConfig::Kinesis { .. } | SinkConfig::RemoteWrite(_) => {
                anyhow::bail!(
                    "sinks.traces: kinesis and remote_write carry metrics only; use otlp, file or firehose"
                )
            }
        };
        Ok(TracesSink { format, sink })
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    /// The records for one request of `tenant` (`raw`: its decompressed bytes).
    pub fn records(
        &self,
        tenant: &str,
        request: &ExportTraceServiceRequest,
        raw: Vec<u8>,
    ) -> Vec<Record> {
        match self.format {
            Format::Request => vec![Record {
                key: tenant.to_string(),
                data: raw,
            }],
            Format::SpanDocuments => document::from_otlp(request, tenant)
                .into_iter()
                .map(|data| Record {
                    key: tenant.to_string(),
                    data,
                })
                .collect(),
        }
    }
}

/// What [`tokenize_unmarked`] did.
#[derive(Debug, Default)]
pub struct Tokenized {
    /// Spans that arrived without an agent's mark and were scrubbed here.
    pub tokenized: u64,
    /// Of those, spans a drop detector refused (removed from the request).
    pub dropped: u64,
    /// The detector that refused the first of them.
    pub first_drop: Option<String>,
}

/// Tokenizes, with the agent's scrub, every `ResourceSpans` whose resource does not carry
/// the agent's mark ([`crate::log_document::TOKENIZED_BY_AGENT`]): spans from an SDK
/// pointed straight at the gateway get the same tokens an agent would have given them.
pub fn tokenize_unmarked(
    tokenizer: &edge_tokenize::Tokenizer,
    request: &mut ExportTraceServiceRequest,
) -> Tokenized {
    let mut out = Tokenized::default();
    for rs in &mut request.resource_spans {
        let marked = rs.resource.as_ref().is_some_and(|r| {
            r.attributes
                .iter()
                .any(|a| a.key == crate::log_document::TOKENIZED_BY_AGENT)
        });
        if marked {
            continue;
        }
        let s = edge_tokenize::spans::scrub_resource_spans(tokenizer, rs);
        out.tokenized += s.kept + s.dropped;
        out.dropped += s.dropped;
        if out.first_drop.is_none() {
            out.first_drop = s.first_drop;
        }
    }
    request
        .resource_spans
        .retain(|rs| !rs.scope_spans.is_empty());
    out
}

/// Spans in a request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}
