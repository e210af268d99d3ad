//! The daemon's lifecycle: [`build`] (load the policy, resolve host labels, open the
//! queue, bind the receiver and statsd, load certificates: everything that can fail, fails here)
//! then [`Agent::run`] (spawn the receiver, the collection loop and the sender; wait
//! for a signal; flush and drain with a deadline).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_schema::catalog::Catalog;
use edge_schema::check::Schema;
use edge_schema::policy::LabelPolicy;
use http::header::{HeaderName, HeaderValue};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::cadence::Cadence;
use crate::config::{AgentConfig, LabelSource};
use crate::host::{self, HostConfig};
use crate::metrics::gate::Gate;
use crate::metrics::{Batch, Pipeline, Point, SeriesKey, now_ms, scrape};
use crate::queue::{Class, DiskQueue, SharedQueue, with_queue};
use crate::sender::tls::ReloadingTls;
use crate::sender::{Sender, SenderConfig, figures};
use crate::telemetry::{Stream, Telemetry};
use edge_daemon_kit::notify::Notifier;

/// After SIGTERM, how long queued batches may still be sent before the agent exits
/// (they stay queued either way; this only saves a replay on the next start).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// How long tasks get to stop before the agent names them and exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// The longest a scrape may take, whatever the cadence.
pub const MAX_SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The pipeline, locked. Holders do no I/O while they hold it.
    pub fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

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
    logs: Option<(crate::logs::pipeline::LogsPipeline, Sender)>,
    statsd: Option<crate::statsd::Statsd>,
}

/// Everything that can fail at startup.
pub async fn build(config: AgentConfig) -> anyhow::Result<Agent> {
    let policy = match &config.policy {
        Some(path) => LabelPolicy::from_file(path)?,
        None => LabelPolicy::shipped(),
    };
    // A configured catalog adds to the shipped one and may redefine its families; the
    // families the agent itself reports (host and self metrics) are never missing.
    let catalog = match &config.catalog {
        Some(path) => {
            let mut catalog = Catalog::from_file(path)?;
            catalog.merge(Catalog::shipped());
            catalog
        }
        None => Catalog::shipped(),
    };
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
    telemetry.set_queue(&figures(&queue));
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
    let logs = match (config.logs_urls.is_empty(), config.logs.is_empty()) {
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
            Some((pipeline, sender))
        }
        _ => None,
    };
    let gate = Gate::new(Schema::new(policy, catalog), config.series_budget);
    let shared = Arc::new(Shared {
        pipeline: Mutex::new(Pipeline {
            gate,
            batch: Batch::default(),
            host_labels,
        }),
        telemetry,
        cadence,
        ready: AtomicBool::new(false),
    });
    let host = config.host_metrics.then(|| HostConfig {
        proc_root: "/proc".into(),
        filesystems: config.filesystems.clone(),
        disks: config.disks.clone(),
        interfaces: config.interfaces.clone(),
    });
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
        statsd,
    })
}

/// The OTLP/HTTP logs request headers.
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
            statsd,
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
        let logs_stop = Arc::new(AtomicBool::new(false));
        let logs_thread = match logs {
            Some((pipeline, logs_sender)) => {
                tasks.push(("logs sender", tokio::spawn(logs_sender.run(send_stop_rx))));
                Some(spawn_logs(pipeline, logs_stop.clone())?)
            }
            None => None,
        };
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

        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut usr1 =
            signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = usr1.recv() => {
                    let on = shared.cadence.toggle_local_incident();
                    tracing::info!(incident = on, "SIGUSR1: incident mode toggled");
                }
            }
        }
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

/// Runs the logs pipeline on its own thread. It reads its files every
/// [`POLL_INTERVAL`](crate::logs::pipeline::POLL_INTERVAL), and at once when inotify
/// reports a change to a source's directory (a file created, renamed or deleted, or the
/// kernel's event queue overflowing).
///
/// Writes are not watched: a game that writes line by line would make one event per
/// line, and waking for each costs more than the reading (at 2,000 lines/s in 100
/// writes/s, notify's write events made the logs path cost ten times the reading).
fn spawn_logs(
    pipeline: crate::logs::pipeline::LogsPipeline,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    watch_dirs(&pipeline.dirs(), tx);
    std::thread::Builder::new()
        .name("edge-logs".into())
        .spawn(move || pipeline.run(&stop, &rx))
        .context("starting the logs thread")
}

/// Watches `dirs` for files appearing, moving and going, on a thread of its own that
/// sends one wake per read of events. Without inotify the pipeline polls alone.
fn watch_dirs(dirs: &[std::path::PathBuf], wake: std::sync::mpsc::Sender<()>) {
    use inotify::{Inotify, WatchMask};
    let mut inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling log directories");
            return;
        }
    };
    let mask = WatchMask::CREATE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF;
    let mut watched = 0;
    for dir in dirs {
        match inotify.watches().add(dir, mask) {
            Ok(_) => watched += 1,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a log directory; polling it")
            }
        }
    }
    if watched == 0 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("edge-logs-watch".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // Any event, the queue's overflow among them, means "look again": the
                // pipeline lists every directory on each round anyway.
                match inotify.read_events_blocking(&mut buf) {
                    Ok(_) => {
                        if wake.send(()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "inotify stopped; polling log directories");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the inotify thread; polling log directories");
    }
}

struct Cycle {
    shared: Arc<Shared>,
    queue: SharedQueue,
    wake: Arc<Notify>,
    host: Option<host::Collector>,
    scrape: Vec<String>,
}

impl Cycle {
    /// One collection cycle: collect, gate, encode, queue, wake the sender.
    async fn run_once(&mut self) {
        // procfs is generated from kernel memory and never waits on a disk: read in
        // place, which costs less than handing ~0.2 ms of work to another thread.
        let host_samples = self
            .host
            .as_mut()
            .map(host::Collector::collect)
            .unwrap_or_default();
        let timeout = (self.shared.cadence.current() / 2).min(MAX_SCRAPE_TIMEOUT);
        let mut scraped = Vec::new();
        for url in &self.scrape {
            match scrape::fetch(url, timeout).await {
                Ok(text) => {
                    let exposition = scrape::parse(&text);
                    if let Some((line, why)) = exposition.bad_lines.first() {
                        tracing::warn!(url = %url, line, why = %why, bad_lines = exposition.bad_lines.len(), "scrape has lines that do not parse; they are skipped");
                    }
                    scraped.extend(exposition.samples);
                }
                Err(e) => {
                    self.shared.telemetry.scrape_failed();
                    tracing::warn!(error = %e, "scrape failed");
                }
            }
        }
        let now = Instant::now();
        let ts = now_ms();
        let (encoded, series) = {
            let mut p = self.shared.pipeline();
            for s in host_samples {
                let labels = s
                    .labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                let key = SeriesKey::new(s.name, labels);
                p.offer(
                    key,
                    Point::Float {
                        value: s.value,
                        timestamp: ts,
                    },
                    now,
                );
            }
            for (key, value, at) in scraped {
                let timestamp = at.unwrap_or(ts);
                p.offer(key, Point::Float { value, timestamp }, now);
            }
            let t = &self.shared.telemetry;
            t.set_gate(p.gate.active_series(), p.gate.budget(), &p.gate.rejected());
            for (key, point) in t.snapshot(ts) {
                p.offer(key, point, now);
            }
            let taken = p.take(now);
            t.set_gate(p.gate.active_series(), p.gate.budget(), &p.gate.rejected());
            taken
        };
        if series == 0 {
            return;
        }
        let body = match edge_exporter::export::compress(&encoded) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot compress the batch; it is lost");
                return;
            }
        };
        let result = with_queue(&self.queue, move |q| {
            let r = q.push(Class::Metrics, &body);
            (r, figures(q))
        })
        .await;
        self.shared.telemetry.set_queue(&result.1);
        match result.0 {
            Ok(shed) if shed.records > 0 => {
                tracing::warn!(
                    records = shed.records,
                    bytes = shed.bytes,
                    "disk queue at its bound: oldest data shed"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot queue the batch; it is lost"),
        }
        self.wake.notify_one();
    }
}
