//! Wire types generated from the `.proto` files in `schemas/proto/`.
//!
//! The generated code is checked in (under `src/proto/`, pulled in with `include!` so
//! `rustfmt` leaves it as generated) and kept current by the `generated_code` test, so a
//! fresh machine needs no `protoc`. The module nesting mirrors the protobuf packages
//! because the generated code refers across packages by relative paths.
//!
//! ```
//! use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
//! use prost::Message;
//!
//! let request = WriteRequest {
//!     timeseries: vec![TimeSeries {
//!         labels: vec![Label { name: "__name__".into(), value: "up".into() }],
//!         samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! let bytes = request.encode_to_vec();
//! assert_eq!(WriteRequest::decode(bytes.as_slice()).unwrap(), request);
//! ```

// Generated code documents what the .proto files document; field-level docs live there.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// Prometheus remote_write 1.0 with native histograms.
pub mod prometheus {
    include!("proto/prometheus.rs");
}

/// OpenTelemetry protocol types (logs, metrics, traces).
pub mod opentelemetry {
    /// OTLP packages.
    pub mod proto {
        /// Shared OTLP types.
        pub mod common {
            /// Version 1.
            pub mod v1 {
                include!("proto/opentelemetry.proto.common.v1.rs");
            }
        }
        /// The OTLP resource.
        pub mod resource {
            /// Version 1.
            pub mod v1 {
                include!("proto/opentelemetry.proto.resource.v1.rs");
            }
        }
        /// OTLP log records.
        pub mod logs {
            /// Version 1.
            pub mod v1 {
                include!("proto/opentelemetry.proto.logs.v1.rs");
            }
        }
        /// OTLP metrics.
        pub mod metrics {
            /// Version 1.
            pub mod v1 {
                include!("proto/opentelemetry.proto.metrics.v1.rs");
            }
        }
        /// OTLP spans.
        pub mod trace {
            /// Version 1.
            pub mod v1 {
                include!("proto/opentelemetry.proto.trace.v1.rs");
            }
        }
        /// OTLP request and response bodies.
        pub mod collector {
            /// Logs export.
            pub mod logs {
                /// Version 1.
                pub mod v1 {
                    include!("proto/opentelemetry.proto.collector.logs.v1.rs");
                }
            }
            /// Metrics export.
            pub mod metrics {
                /// Version 1.
                pub mod v1 {
                    include!("proto/opentelemetry.proto.collector.metrics.v1.rs");
                }
            }
            /// Trace export.
            pub mod trace {
                /// Version 1.
                pub mod v1 {
                    include!("proto/opentelemetry.proto.collector.trace.v1.rs");
                }
            }
        }
    }
}

/// Short paths to the OTLP types (logs at the top, metrics and traces in submodules).
pub mod otlp {
    pub use super::opentelemetry::proto::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    pub use super::opentelemetry::proto::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
    };
    pub use super::opentelemetry::proto::logs::v1::{
        LogRecord, LogsData, ResourceLogs, ScopeLogs, SeverityNumber,
    };
    pub use super::opentelemetry::proto::resource::v1::Resource;

    /// Short paths to the OTLP metrics types.
    pub mod metrics {
        pub use crate::proto::opentelemetry::proto::collector::metrics::v1::{
            ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        };
        pub use crate::proto::opentelemetry::proto::metrics::v1::{
            AggregationTemporality, DataPointFlags, Exemplar, ExponentialHistogram,
            ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
            MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
            SummaryDataPoint, exponential_histogram_data_point, metric, number_data_point,
            summary_data_point,
        };
    }

    /// Short paths to the OTLP trace types.
    pub mod trace {
        pub use crate::proto::opentelemetry::proto::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
        };
        pub use crate::proto::opentelemetry::proto::trace::v1::{
            ResourceSpans, ScopeSpans, Span, SpanFlags, Status, TracesData, span, status,
        };
    }
}
