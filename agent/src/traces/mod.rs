//! OTLP traces (placeholder for the `traces` branch, which replaces this file): the
//! interface the OTLP receivers call. This version accepts every request and keeps
//! nothing.

use std::time::Duration;

use edge_schema::proto::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;

/// What became of an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceVerdict {
    /// Taken; `rejected_spans` of them refused (named in `error_message`).
    Accepted {
        /// Spans refused.
        rejected_spans: i64,
        /// Why, for the client.
        error_message: String,
    },
    /// The agent is shedding spans: the client should retry after `retry_after`.
    Shedding {
        /// When to retry.
        retry_after: Duration,
    },
}

/// The traces path.
#[derive(Debug, Default)]
pub struct TracesPipeline {}

impl TracesPipeline {
    /// Takes one export.
    pub fn offer(&self, request: ExportTraceServiceRequest) -> TraceVerdict {
        drop(request);
        TraceVerdict::Accepted {
            rejected_spans: 0,
            error_message: String::new(),
        }
    }
}
