//! The daemon's lifecycle: [`build`] (load the policy, resolve host labels, open the
//! queue, bind the receiver and statsd, load certificates: everything that can fail, fails here)
//! then [`Agent::run`] (spawn the receiver, the collection loop and the sender; wait
//! for a signal; flush and drain with a deadline).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_daemon_kit::signals::Signals;
use http::header::{HeaderName, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::cadence::Cadence;
use crate::config::{AgentConfig, LabelSource};
use crate::cycle::Cycle;
use crate::host::{self, HostConfig};
use crate::metrics::gate::Gate;
use crate::metrics::{Batch, Pipeline};
use crate::queue::{Class, DiskQueue, SharedQueue};
use crate::reload::{CycleRequest, Reloader};
use crate::sender::tls::ReloadingTls;
use crate::sender::{Sender, SenderConfig};
use crate::shared::Shared;
use crate::telemetry::{Stream, Telemetry};
use edge_daemon_kit::notify::Notifier;

/// After SIGTERM, how long queued batches may still be sent before the agent exits
/// (they stay queued either way; this only saves a replay on the next start).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// How long tasks get to stop before the agent names them and exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// A built agent, ready to run.
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    listener: TcpListener,
    queue: SharedQueue,
    sender: Sender,
    wake: Arc<Notify>,
    host: Option<HostConfig>,
    scrape: Vec<String>,
    notifier: Notifier,
    logs: Option<(Arc<Mutex<crate::logs::pipeline::LogsPipeline>>, Sender)>,
    traces: Option<(Arc<crate::traces::TracesPipeline>, Sender)>,
    statsd: Option<crate::statsd::Statsd>,
    otlp: Option<(crate::otlp::Otlp, crate::otlp::LogsSink)>,
}

/// Everything that can fail at startup.
pub async fn build(config: AgentConfig) -> anyhow::Result<Agent> {
    let schema = config.load_schema()?;
    let host_labels = resolve_host_labels(&config).await;
    tracing::info!(labels = ?host_labels, "host labels");

    let (queue, report) = DiskQueue::open(config.queue.clone())
        .with_context(|| format!("opening the disk queue in {}", config.queue.dir.display()))?;
    for class in Class::ALL {
        let i = class as usize;
        if report.truncated_bytes[i] > 0 {
            tracing::warn!(
                class = class.name(),
                lost_bytes = report.truncated_bytes[i],
                "disk queue had a torn or corrupt tail; cut back to the last good record"
            );
        }
        if report.pending_records[i] > 0 {
            tracing::info!(
                class = class.name(),
                records = report.pending_records[i],
                "replaying queued batches"
            );
        }
    }
    let telemetry = Arc::new(Telemetry::default());
    telemetry.set_queue(&queue.figures());
    let queue: SharedQueue = Arc::new(Mutex::new(queue));

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the local receiver to {}", config.listen))?;

    let tls = match &config.tls {
        Some(files) => {
            Some(ReloadingTls::load(files.clone())?.reporting_expiry_to(telemetry.cert_expiry()))
        }
        None => None,
    };
    let cadence = Arc::new(Cadence::new(config.cadence, config.incident_cadence));
    telemetry.set_cadence(cadence.current());
    let wake = Arc::new(Notify::new());
    let sender = Sender::new(
        SenderConfig {
            stream: Stream::Metrics,
            urls: config.metrics_urls.clone(),
            classes: vec![Class::Metrics],
            headers: remote_write_headers(),
        },
        tls,
        queue.clone(),
        wake.clone(),
        telemetry.clone(),
        cadence.clone(),
    )?;
    // The logs pipeline runs for file sources, and for OTLP records when a receiver is on
    // and a tokenization key is configured (no key, no logs: PII never ships untokenized).
    let otlp_logs = config.otlp.any() && config.tokenize_key_file.is_some();
    let logs = match (
        config.logs_urls.is_empty(),
        config.logs.is_empty() && !otlp_logs,
    ) {
        (false, false) => {
            let logs_wake = Arc::new(Notify::new());
            let tls = match &config.tls {
                Some(files) => Some(ReloadingTls::load(files.clone())?),
                None => None,
            };
            let sender = Sender::new(
                SenderConfig {
                    stream: Stream::Logs,
                    urls: config.logs_urls.clone(),
                    // Highest priority first.
                    classes: vec![Class::LogsWarn, Class::LogsInfo, Class::LogsDebug],
                    headers: otlp_headers(),
                },
                tls,
                queue.clone(),
                logs_wake.clone(),
                telemetry.clone(),
                cadence.clone(),
            )?;
            let host_labels = host_labels.clone();
            let pipeline = crate::logs::pipeline::LogsPipeline::new(
                &config,
                &host_labels,
                queue.clone(),
                logs_wake,
                telemetry.clone(),
                sender.shed_hint(),
            )?;
            Some((Arc::new(Mutex::new(pipeline)), sender))
        }
        _ => None,
    };
    let traces = if config.traces_urls.is_empty() {
        None
    } else {
        let traces_wake = Arc::new(Notify::new());
        let tls = match &config.tls {
            Some(files) => Some(ReloadingTls::load(files.clone())?),
            None => None,
        };
        let sender = Sender::new(
            SenderConfig {
                stream: Stream::Traces,
                urls: config.traces_urls.clone(),
                classes: vec![Class::Traces],
                headers: otlp_headers(),
            },
            tls,
            queue.clone(),
            traces_wake.clone(),
            telemetry.clone(),
            cadence.clone(),
        )?;
        let pipeline = crate::traces::TracesPipeline::new(
            &config,
            &crate::logs::pipeline::host_name(),
            &host_labels,
            queue.clone(),
            traces_wake,
            telemetry.clone(),
            sender.shed_hint(),
        )?;
        Some((Arc::new(pipeline), sender))
    };
    let otlp = if config.otlp.any() {
        let sink = match (&logs, config.logs_urls.is_empty()) {
            (Some((pipeline, _)), _) => crate::otlp::LogsSink::Pipeline(pipeline.clone()),
            (None, true) => crate::otlp::LogsSink::None(
                "this agent ships no logs (output.logs_url is not set); log records are not kept",
            ),
            (None, false) => crate::otlp::LogsSink::None(
                "this agent has no tokenization key (tokenize.key_file), so it keeps no logs; log records are not kept",
            ),
        };
        Some((crate::otlp::Otlp::bind(config.otlp).await?, sink))
    } else {
        None
    };
    let gate = Gate::new(schema, config.series_budget);
    let shared = Arc::new(
        Shared::new(
            Pipeline {
                gate,
                batch: Batch::default(),
                host_labels,
                taps: telemetry.taps().clone(),
            },
            telemetry,
            cadence,
        )
        .with_traces(traces.as_ref().map(|(p, _)| p.clone())),
    );
    let host = crate::reload::host_config(&config);
    let statsd = match config.statsd.clone() {
        Some(c) => Some(crate::statsd::Statsd::bind(c).await?),
        None => None,
    };
    Ok(Agent {
        shared,
        listener,
        queue,
        sender,
        wake,
        host,
        scrape: config.scrape.clone(),
        notifier: Notifier::from_env(),
        logs,
        traces,
        statsd,
        otlp,
    })
}

/// The OTLP/HTTP request headers (logs and traces batches: protobuf, zstd).
pub fn otlp_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        ),
        (
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("zstd"),
        ),
        (
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("edge-agent/", env!("CARGO_PKG_VERSION"))),
        ),
    ]
}

/// The remote_write request headers.
pub fn remote_write_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        ),
        (
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("snappy"),
        ),
        (
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static("0.1.0"),
        ),
        (
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("edge-agent/", env!("CARGO_PKG_VERSION"))),
        ),
    ]
}

async fn resolve_host_labels(config: &AgentConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut from_imds = Vec::new();
    for (name, source) in &config.host_labels {
        match source {
            LabelSource::Value(v) => out.push((name.clone(), v.clone())),
            LabelSource::Imds => from_imds.push(name.clone()),
        }
    }
    if !from_imds.is_empty() {
        out.extend(crate::imds::lookup(&from_imds).await);
    }
    out.sort();
    out
}

impl Agent {
    /// The receiver's address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until SIGTERM or SIGINT, then flushes and drains.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_with(None).await
    }

    /// Like [`Agent::run`], and SIGHUP reloads the config set in `file` (see
    /// [`crate::reload`]): a valid set is swapped in live, a broken one is refused with
    /// every problem logged and the running config stays.
    pub async fn run_reloading(
        self,
        file: std::path::PathBuf,
        running: AgentConfig,
    ) -> anyhow::Result<()> {
        self.run_with(Some((file, running))).await
    }

    async fn run_with(
        self,
        reload: Option<(std::path::PathBuf, AgentConfig)>,
    ) -> anyhow::Result<()> {
        let Agent {
            shared,
            listener,
            queue,
            sender,
            wake,
            host,
            scrape,
            notifier,
            logs,
            traces,
            statsd,
            otlp,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (send_stop_tx, send_stop_rx) = watch::channel(false);
        let receiver = crate::receiver::serve(listener, shared.clone(), stop_rx.clone());
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = vec![
            ("receiver", tokio::spawn(receiver)),
            ("sender", tokio::spawn(sender.run(send_stop_rx.clone()))),
        ];
        if let Some(statsd) = statsd {
            tasks.extend(statsd.spawn(shared.clone(), stop_rx.clone()));
        }
        // The traces pipeline stops with the receivers (its last batch is queued then);
        // its sender with the other senders.
        let traces_pipeline = traces.as_ref().map(|(p, _)| p.clone());
        if let Some((pipeline, traces_sender)) = traces {
            tasks.push(("traces", tokio::spawn(pipeline.run(stop_rx.clone()))));
            tasks.push((
                "traces sender",
                tokio::spawn(traces_sender.run(send_stop_rx.clone())),
            ));
        }
        if let Some((otlp, sink)) = otlp {
            let receivers = Arc::new(crate::otlp::Receivers::new(shared.clone(), sink));
            tasks.extend(otlp.spawn(receivers, stop_rx.clone()));
        }
        let logs_stop = Arc::new(AtomicBool::new(false));
        let (logs_thread, logs_live) = match logs {
            Some((pipeline, logs_sender)) => {
                tasks.push(("logs sender", tokio::spawn(logs_sender.run(send_stop_rx))));
                let (thread, watcher) =
                    crate::logs::watch::spawn_logs(pipeline.clone(), logs_stop.clone())?;
                (Some(thread), Some((pipeline, watcher)))
            }
            None => (None, None),
        };
        let (cycle_tx, mut cycle_rx) = tokio::sync::mpsc::channel::<CycleRequest>(1);
        let mut reloader = reload.map(|(file, running)| {
            if let Ok(sha256) = crate::reload::sha256_of_set(&file, &running) {
                shared.telemetry.config_loaded(&sha256);
            }
            Reloader {
                file,
                running,
                logs: logs_live,
                traces: traces_pipeline,
                cycle: cycle_tx,
                telemetry: shared.telemetry.clone(),
            }
        });
        let mut cycle = Cycle {
            shared: shared.clone(),
            queue: queue.clone(),
            wake: wake.clone(),
            host: host.map(host::Collector::new),
            scrape,
        };
        let watchdog = notifier.watchdog_interval();
        let notifier = Arc::new(notifier);
        let loop_notifier = notifier.clone();
        let mut loop_stop = stop_rx.clone();
        let collector = tokio::spawn(async move {
            let mut cadence = cycle.shared.cadence.subscribe();
            let mut next = Instant::now() + *cadence.borrow_and_update();
            let mut last_ping = Instant::now();
            cycle.run_once().await;
            cycle.shared.ready.store(true, Ordering::Relaxed);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next.into()) => {
                        cycle.run_once().await;
                        next = Instant::now() + *cadence.borrow();
                    }
                    Ok(()) = cadence.changed() => {
                        let c = *cadence.borrow_and_update();
                        cycle.shared.telemetry.set_cadence(c);
                        next = next.min(Instant::now() + c);
                    }
                    Some((change, done)) = cycle_rx.recv() => {
                        // A reload, between two cycles.
                        cycle.reconfigure(change);
                        let _ = done.send(());
                    }
                    _ = loop_stop.changed() => break,
                }
                if let Some(every) = watchdog
                    && last_ping.elapsed() >= every
                {
                    loop_notifier.notify("WATCHDOG=1");
                    last_ping = Instant::now();
                }
            }
            // The batch being collected goes to the queue before the agent exits.
            cycle.run_once().await;
        });
        notifier.notify("READY=1");
        tracing::info!("edge-agent running");

        let mut signals =
            Signals::install(reloader.is_some(), true).context("installing the signal handlers")?;
        signals
            .until_stop(async |asked| match (asked, reloader.as_mut()) {
                (edge_daemon_kit::signals::Asked::Hangup, Some(reloader)) => {
                    reloader.reload().await;
                }
                _ => {
                    let on = shared.cadence.toggle_local_incident();
                    tracing::info!(incident = on, "SIGUSR1: incident mode toggled");
                }
            })
            .await;
        tracing::info!("shutting down: flushing the current batch to the queue");
        notifier.notify("STOPPING=1");
        let _ = stop_tx.send(true);
        let flushed = tokio::time::timeout(SHUTDOWN_DEADLINE, collector).await;
        if flushed.is_err() {
            tracing::error!(task = "collector", "did not stop within the deadline");
        }
        logs_stop.store(true, Ordering::Relaxed);
        if let Some(thread) = logs_thread {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            if tokio::time::timeout(SHUTDOWN_DEADLINE, joined)
                .await
                .is_err()
            {
                tracing::error!(task = "logs", "did not stop within the deadline");
            }
        }
        // Give the sender a moment to deliver what is queued; what it cannot stays
        // queued for the next start.
        let drain_until = Instant::now() + SHUTDOWN_DRAIN;
        while Instant::now() < drain_until && shared.telemetry.queue_records(Class::Metrics) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = send_stop_tx.send(true);
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        for (name, task) in tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, task).await.is_err() {
                tracing::error!(task = name, "did not stop within the deadline");
            }
        }
        tracing::info!("edge-agent stopped");
        Ok(())
    }
}
