//! The state the receiver, the collection cycle, the statsd flush and the sender share:
//! the metrics pipeline (gate and batch), self-metrics, the cadence, readiness.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cadence::Cadence;
use crate::metrics::Pipeline;
use crate::telemetry::Telemetry;

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
}

impl Shared {
    /// Shared state around `pipeline`; not ready until the first cycle has run.
    pub fn new(pipeline: Pipeline, telemetry: Arc<Telemetry>, cadence: Arc<Cadence>) -> Self {
        Shared {
            pipeline: Mutex::new(pipeline),
            telemetry,
            cadence,
            ready: AtomicBool::new(false),
        }
    }

    /// The pipeline, locked. Holders do no I/O while they hold it.
    pub fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
