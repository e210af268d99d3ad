//! The gateway: mTLS ingest, identity, policy and quotas, sinks, reload, overload.
//!
//! Rooms: `live.rs` (config, policy and TLS, reloaded whole), `overload.rs` (the
//! overload controller), `admission.rs` (the work in progress, its adaptive limit and
//! its queue by tenant priority), `ingest.rs` (request handling per route, the admin
//! port's three checks), `admin.rs` and `tap.rs` (the admin listener and its live
//! `/tap`), `answer.rs` (the one
//! place where an outcome becomes an HTTP status, `Retry-After` and body), `conn.rs`
//! (accepting and serving connections). This file holds the [`Gateway`] and its sinks.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};

use crate::config::SinkConfig;
use crate::quota::Quotas;
use crate::sink::Sink;
use crate::sink::file::FileSink;
use crate::sink::traces::TracesSink;
use crate::telemetry::Telemetry;

mod admin;
pub mod admission;
mod answer;
mod conn;
mod head_deadline;
mod ingest;
mod live;
mod overload;
pub mod tap;

pub use admin::serve as serve_admin;
pub use answer::{Answer, CADENCE_HEADER, Outcome, SHED_HEADER};
pub use conn::serve;
pub use ingest::{ConnInfo, handle, handle_admin};
pub use live::{Live, load_live};
use overload::OverloadState;
pub use overload::{
    ESCALATE_AFTER, MIN_COMMITS_JUDGED, MIN_REQUESTS_JUDGED, RECOVER_AFTER, REFUSED_RATIO,
    next_stage,
};

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    config_path: PathBuf,
    live: RwLock<Arc<Live>>,
    /// Per-tenant quotas.
    pub quotas: Quotas,
    /// Self-metrics.
    pub telemetry: Telemetry,
    metrics_sink: Arc<dyn Sink>,
    logs_sink: Arc<dyn Sink>,
    /// `None` without `sinks.traces`: `POST /v1/traces` answers 503.
    traces_sink: Option<TracesSink>,
    overload: OverloadState,
    /// Decompressed bytes in flight (`limits.max_decompressed_bytes_in_flight`).
    decompress_budget: crate::decode::budget::Budget,
    /// Admission control: the work in progress and its queue.
    pub admission: admission::Admission,
    in_flight: AtomicI64,
    /// The files as they were when a reload was last refused: the same refused files
    /// seen again (a poll, then a SIGHUP) are one refusal, counted once.
    refused_stamps: std::sync::Mutex<Option<edge_daemon_kit::stamp::Stamps>>,
    /// The taps open on the admin port.
    taps: tap::Taps,
}

/// Bytes of commits that may wait on an AWS sink before it answers `Busy`.
pub const AWS_IN_FLIGHT_BYTES: u64 = 64 << 20;

async fn open_sink(config: &SinkConfig, stream: &str) -> anyhow::Result<Arc<dyn Sink>> {
    match config {
        SinkConfig::File { dir } => Ok(Arc::new(FileSink::open(dir, stream)?)),
        SinkConfig::Kinesis {
            stream,
            region,
            endpoint_url,
        } => Ok(Arc::new(
            crate::sink::kinesis::KinesisSink::new(crate::sink::kinesis::KinesisConfig {
                stream: stream.clone(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                max_in_flight_bytes: AWS_IN_FLIGHT_BYTES,
            })
            .await,
        )),
        SinkConfig::Firehose {
            delivery_stream,
            region,
            endpoint_url,
        } => Ok(Arc::new(
            crate::sink::firehose::FirehoseSink::new(crate::sink::firehose::FirehoseConfig {
                delivery_stream: delivery_stream.clone(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                max_in_flight_bytes: AWS_IN_FLIGHT_BYTES,
            })
            .await,
        )),
        SinkConfig::RemoteWrite(target) if stream == "metrics" => Ok(Arc::new(
            crate::sink::remote_write::RemoteWriteSink::new(target, AWS_IN_FLIGHT_BYTES).await?,
        )),
        SinkConfig::RemoteWrite(_) => {
            anyhow::bail!("sinks.logs: remote_write carries metrics only; use firehose or file")
        }
        SinkConfig::Otlp(_) => {
            anyhow::bail!("sinks.{stream}: otlp carries traces only (sinks.traces)")
        }
    }
}

impl Gateway {
    /// Loads `config_path` and opens the sinks (on the current runtime).
    pub async fn new(config_path: &Path) -> anyhow::Result<Arc<Gateway>> {
        let live = load_live(config_path).map_err(anyhow::Error::msg)?;
        if live.config.tls.is_none() {
            tracing::warn!(
                "TLS is off: plain HTTP, identity only from bearer tokens; for loopback tests and the local demo only"
            );
        }
        let metrics_sink = open_sink(&live.config.metrics_sink, "metrics").await?;
        let logs_sink = open_sink(&live.config.logs_sink, "logs").await?;
        let traces_sink = match &live.config.traces_sink {
            Some(config) => Some(TracesSink::open(config, AWS_IN_FLIGHT_BYTES).await?),
            None => None,
        };
        let admission = admission::Admission::new(&live.config.admission);
        let gw = Arc::new(Gateway {
            config_path: config_path.to_path_buf(),
            live: RwLock::new(Arc::new(live)),
            quotas: Quotas::default(),
            telemetry: Telemetry::default(),
            metrics_sink,
            logs_sink,
            traces_sink,
            overload: OverloadState::default(),
            decompress_budget: crate::decode::budget::Budget::default(),
            admission,
            in_flight: AtomicI64::new(0),
            refused_stamps: std::sync::Mutex::new(None),
            taps: tap::Taps::default(),
        });
        gw.reloaded(true);
        tokio::spawn(admission::Admission::lag_probe(Arc::downgrade(&gw)));
        Ok(gw)
    }

    /// What is in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
