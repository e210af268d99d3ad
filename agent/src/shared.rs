//! The state the receiver, the collection cycle, the statsd flush and the sender share:
//! the metrics pipeline (gate and batch), self-metrics, the cadence, readiness, and the
//! traces pipeline the OTLP receivers hand spans to.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cadence::Cadence;
use crate::metrics::Pipeline;
use crate::telemetry::Telemetry;
use crate::traces::TracesPipeline;

/// State the receiver, the loop and the sender share.
#[derive(Debug)]
pub struct Shared {
    pipeline: Mutex<Pipeline>,
    /// Self-metrics.
    pub telemetry: Arc<Telemetry>,
    /// The cadence in force.
    pub cadence: Arc<Cadence>,
    /// Whether the agent is ready (queue open, first cycle done).
    pub ready: AtomicBool,
    /// The traces pipeline, when `output.traces_url` is set: what the OTLP receivers
    /// hand spans to.
    traces: Option<Arc<TracesPipeline>>,
}

impl Shared {
    /// Shared state around `pipeline`; not ready until the first cycle has run.
    pub fn new(pipeline: Pipeline, telemetry: Arc<Telemetry>, cadence: Arc<Cadence>) -> Self {
        Shared {
            pipeline: Mutex::new(pipeline),
            telemetry,
            cadence,
            ready: AtomicBool::new(false),
            traces: None,
        }
    }

    /// With the traces pipeline the receivers hand spans to.
    pub fn with_traces(mut self, traces: Option<Arc<TracesPipeline>>) -> Self {
        self.traces = traces;
        self
    }

    /// The traces pipeline, or `None` when traces have nowhere to go (no
    /// `output.traces_url`).
    pub fn traces(&self) -> Option<&Arc<TracesPipeline>> {
        self.traces.as_ref()
    }

    /// The pipeline, locked. Holders do no I/O while they hold it.
    pub fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
