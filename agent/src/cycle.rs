//! One collection cycle: host metrics, scrapes and the agent's own figures through the
//! gate, the batch encoded and queued, the sender woken.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::host;
use crate::metrics::{Point, SeriesKey, now_ms, scrape};
use crate::queue::{Class, SharedQueue, with_queue};
use crate::shared::Shared;

/// The longest a scrape may take, whatever the cadence.
pub const MAX_SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The collection loop's state.
#[derive(Debug)]
pub struct Cycle {
    /// What the receiver and the sender share.
    pub shared: Arc<Shared>,
    /// The disk queue.
    pub queue: SharedQueue,
    /// Wakes the sender.
    pub wake: Arc<Notify>,
    /// Host metrics, when on.
    pub host: Option<host::Collector>,
    /// Prometheus text endpoints to scrape.
    pub scrape: Vec<String>,
}

/// What a config reload changes in the collection loop; applied between two cycles.
#[derive(Debug)]
pub struct CycleChange {
    /// The new policy and catalog.
    pub schema: edge_schema::check::Schema,
    /// The new series budget.
    pub budget: u32,
    /// The new steady and incident cadences.
    pub cadence: (Duration, Duration),
    /// Host metrics: `Some(new)` when their settings changed (`Some(None)`: now off).
    pub host: Option<Option<host::HostConfig>>,
    /// The new scrape targets.
    pub scrape: Vec<String>,
}

impl Cycle {
    /// Applies a reload's change (between two cycles).
    pub fn reconfigure(&mut self, change: CycleChange) {
        self.shared
            .pipeline()
            .gate
            .reconfigure(change.schema, change.budget);
        self.shared
            .cadence
            .set_periods(change.cadence.0, change.cadence.1);
        if let Some(host) = change.host {
            self.host = host.map(host::Collector::new);
        }
        self.scrape = change.scrape;
    }

    /// One collection cycle: collect, gate, encode, queue, wake the sender.
    pub async fn run_once(&mut self) {
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
            (r, q.figures())
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
