//! The seed's acceptance gates, runnable on one machine against the real binaries: each
//! gate runs a scenario, measures, and says pass or fail against its criterion. A run
//! writes a report: a Markdown table (gate, criterion, measured, pass/fail) and SVG
//! plots of what the gateway saw over time.
//!
//! - [`t1`]: soak; [`t2`]: 1×/3×/5× bursts (backpressure, backlog drain). Simulated
//!   hosts straight into a gateway; they plot the gateway's view through [`Sampler`].
//! - [`edge`]: T4 chaos, T5 replay, T6 completeness, T7 cardinality guard and privacy,
//!   through real agents with their games and logs, into Kinesis (moto).
//!
//! The short forms run in the test suite (`tests/tests/gates.rs`,
//! `tests/tests/gates_agents.rs`); the long form is `cargo run --release -p edge-tests
//! --bin gates -- --gate all --duration 30m`.

pub mod edge;
pub mod t1;
pub mod t2;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use crate::fleet::{Answered, connect, quantile};

/// One gate's verdict.
#[derive(Clone, Debug)]
pub struct GateResult {
    /// `T1`, `T2`, …
    pub gate: String,
    /// What must hold, in words.
    pub criterion: String,
    /// What was measured, in words.
    pub measured: String,
    /// Whether the criterion held.
    pub pass: bool,
}

/// A series over time: `(seconds since start, value)`.
#[derive(Clone, Debug, Default)]
pub struct Plot {
    /// File stem and title.
    pub name: String,
    /// The value's unit, for the axis.
    pub unit: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// A run's report.
#[derive(Debug, Default)]
pub struct Report {
    /// A heading: what was run, where, with which parameters.
    pub title: String,
    /// Lines under the heading (machine, command, duration).
    pub notes: Vec<String>,
    /// Verdicts.
    pub results: Vec<GateResult>,
    /// Plots.
    pub plots: Vec<Plot>,
}

impl Report {
    /// Whether every gate passed.
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.pass)
    }

    /// Writes `report.md` and one SVG per plot into `dir`; the Markdown's path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let mut md = format!("# {}\n\n", self.title);
        for n in &self.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push_str("\n| gate | criterion | measured | result |\n|---|---|---|---|\n");
        for r in &self.results {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.gate,
                r.criterion,
                r.measured,
                if r.pass { "**pass**" } else { "**FAIL**" }
            );
        }
        for p in &self.plots {
            let file = format!("{}.svg", file_stem(&p.name));
            std::fs::write(dir.join(&file), svg(p))?;
            let _ = write!(md, "\n![{}]({file})\n", p.name);
        }
        let path = dir.join("report.md");
        std::fs::write(&path, md)?;
        Ok(path)
    }
}

/// A plot's file name: its name with every run of characters other than ASCII letters,
/// digits and `-` made one `_`, so that a Markdown link to it needs no escaping.
fn file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// A line chart, 720×240, with the axes' ranges written on them.
pub fn svg(plot: &Plot) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 240.0, 70.0, 30.0, 28.0, 12.0);
    let max_x = plot.points.iter().map(|p| p.0).fold(1e-9, f64::max);
    let max_y = plot.points.iter().map(|p| p.1).fold(1e-9, f64::max) * 1.1;
    let x = |v: f64| left + (w - left - right) * v / max_x;
    let y = |v: f64| h - bottom - (h - bottom - top) * v / max_y;
    let points: Vec<String> = plot
        .points
        .iter()
        .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="#fff"/>
<text x="{left}" y="18" font-weight="bold">{title}</text>
<line x1="{left}" y1="{by}" x2="{rx}" y2="{by}" stroke="#888"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{by}" stroke="#888"/>
<text x="{lx}" y="{ty}" text-anchor="end">{ymax:.1}</text>
<text x="{lx}" y="{by}" text-anchor="end">0</text>
<text x="{left}" y="{xy}">0 s</text>
<text x="{rx}" y="{xy}" text-anchor="end">{xmax:.0} s</text>
<text x="12" y="{my}" transform="rotate(-90 12 {my})" text-anchor="middle">{unit}</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>
</svg>
"##,
        title = escape(&plot.name),
        unit = escape(&plot.unit),
        by = h - bottom,
        rx = w - right,
        lx = left - 4.0,
        ty = top + 4.0,
        xy = h - 10.0,
        my = (h - bottom + top) / 2.0,
        ymax = max_y,
        xmax = max_x,
        points = points.join(" "),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The sum of `name`'s series (those whose labels contain `with`) in Prometheus text.
pub fn metric_sum(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && l.contains(with)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // Not `sum()`: an empty float sum is -0.0, which prints as "-0".
        .fold(0.0, |a, b| a + b)
}

/// Scrapes the gateway's `/metrics` once a second while a gate runs and turns what it
/// saw into plots: accepted samples/s, 429 answers/s, the sink's backlog and the mean
/// sample age at ingest (in that order, always); then one plot per client backlog
/// given, and the overload stage if asked.
#[derive(Clone, Debug)]
pub struct Sampler {
    /// Plot titles begin with it (`T1`).
    pub prefix: String,
    /// The gateway's port on 127.0.0.1.
    pub port: u16,
    /// A client identity the gateway accepts.
    pub tls: Arc<rustls::ClientConfig>,
    /// Time zero of the plots.
    pub start: Instant,
    /// Client-side backlogs (pushes pending, e.g. [`crate::fleet::Drive::backlog`]) to
    /// plot as `<prefix> client backlog (<name>)`.
    pub client_backlogs: Vec<(String, Arc<AtomicU64>)>,
    /// Whether to plot `edge_gateway_overload_stage` as `<prefix> overload stage`.
    pub overload_stage: bool,
}

/// What a [`Sampler`] saw.
#[derive(Clone, Debug, Default)]
pub struct Sampled {
    /// The plots, in the order [`Sampler`] gives.
    pub plots: Vec<Plot>,
    /// Mean sample age at ingest over the run (s), from the gateway's histogram.
    pub mean_sample_age: f64,
    /// The highest overload stage seen.
    pub max_overload_stage: f64,
    /// The sink's largest backlog seen (records, every sink).
    pub max_sink_backlog: f64,
    /// The sink's backlog at the last scrape.
    pub last_sink_backlog: f64,
    /// The last scrape's text: the gateway's counters at the end.
    pub last_scrape: String,
}

/// A running [`Sampler`]; [`SamplerTask::finish`] stops it.
#[derive(Debug)]
pub struct SamplerTask {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Sampled>,
}

impl SamplerTask {
    /// Stops sampling (after the scrape under way) and returns what was seen.
    pub async fn finish(self) -> Result<Sampled, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.map_err(|e| e.to_string())
    }
}

impl Sampler {
    /// The four plots every gate has, titled `<prefix> …`.
    pub fn new(prefix: &str, port: u16, tls: Arc<rustls::ClientConfig>, start: Instant) -> Sampler {
        Sampler {
            prefix: prefix.to_string(),
            port,
            tls,
            start,
            client_backlogs: Vec::new(),
            overload_stage: false,
        }
    }

    /// Starts scraping on the current runtime.
    pub fn spawn(self) -> SamplerTask {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(self.run(stop.clone()));
        SamplerTask { stop, task }
    }

    async fn run(self, stop: Arc<AtomicBool>) -> Sampled {
        let p = &self.prefix;
        let plot = |name: String, unit: &str| Plot {
            name,
            unit: unit.into(),
            ..Plot::default()
        };
        let mut accepted = plot(format!("{p} accepted samples per second"), "samples/s");
        let mut throttled = plot(format!("{p} 429 answers per second"), "429/s");
        let mut backlog = plot(format!("{p} sink backlog"), "records");
        let mut age = plot(format!("{p} mean sample age at ingest"), "seconds");
        let mut clients: Vec<Plot> = self
            .client_backlogs
            .iter()
            .map(|(name, _)| plot(format!("{p} client backlog ({name})"), "pushes pending"))
            .collect();
        let mut stage = plot(format!("{p} overload stage"), "stage");
        let mut out = Sampled::default();
        let mut send = None;
        let mut last: Option<(f64, f64, f64, f64)> = None;
        let mut first: Option<(f64, f64)> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let Some(text) = scrape_gateway(&mut send, self.port, &self.tls).await else {
                continue;
            };
            let t = self.start.elapsed().as_secs_f64();
            let now = (
                metric_sum(&text, "edge_gateway_samples_accepted_total", ""),
                metric_sum(&text, "edge_gateway_requests_total", "code=\"429\""),
                metric_sum(&text, "edge_gateway_sample_age_seconds_sum", ""),
                metric_sum(&text, "edge_gateway_sample_age_seconds_count", ""),
            );
            let sink = metric_sum(&text, "edge_gateway_sink_backlog_records", "");
            backlog.points.push((t, sink));
            out.max_sink_backlog = out.max_sink_backlog.max(sink);
            out.last_sink_backlog = sink;
            if let Some(prev) = last {
                accepted.points.push((t, now.0 - prev.0));
                throttled.points.push((t, now.1 - prev.1));
                let n = now.3 - prev.3;
                age.points
                    .push((t, if n > 0.0 { (now.2 - prev.2) / n } else { 0.0 }));
            }
            for (plot, (_, gauge)) in clients.iter_mut().zip(&self.client_backlogs) {
                plot.points.push((t, gauge.load(Ordering::Relaxed) as f64));
            }
            let s = metric_sum(&text, "edge_gateway_overload_stage", "");
            stage.points.push((t, s));
            out.max_overload_stage = out.max_overload_stage.max(s);
            first.get_or_insert((now.2, now.3));
            last = Some(now);
            out.last_scrape = text;
        }
        out.mean_sample_age = match (first, last) {
            (Some(f), Some(l)) if l.3 > f.1 => (l.2 - f.0) / (l.3 - f.1),
            _ => 0.0,
        };
        out.plots = vec![accepted, throttled, backlog, age];
        out.plots.extend(clients);
        if self.overload_stage {
            out.plots.push(stage);
        }
        out
    }
}

/// The gateway's `/metrics` over `send`, an mTLS HTTP/2 connection to `127.0.0.1:port`
/// made first if there is none and dropped when it fails (the next call reconnects).
pub async fn scrape_gateway(
    send: &mut Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
) -> Option<String> {
    if send.is_none() {
        *send = connect(port, tls.clone()).await.ok();
    }
    let s = send.as_mut()?;
    let request = http::Request::get("https://localhost/metrics")
        .body(Full::new(Bytes::new()))
        .ok()?;
    match s.send_request(request).await {
        Ok(r) => {
            let body = r.into_body().collect().await.ok()?.to_bytes();
            Some(String::from_utf8_lossy(&body).into_owned())
        }
        Err(_) => {
            *send = None;
            None
        }
    }
}

/// The p99 of the answers' time to first byte in each second (by when the request was
/// sent), in milliseconds; seconds without answers are left out.
pub fn ttfb_p99_per_second<'a>(
    name: &str,
    answers: impl IntoIterator<Item = &'a Answered>,
) -> Plot {
    let mut by_second: std::collections::BTreeMap<u32, Vec<Duration>> = Default::default();
    for a in answers {
        by_second
            .entry(a.at.max(0.0) as u32)
            .or_default()
            .push(a.ttfb);
    }
    Plot {
        name: name.to_string(),
        unit: "ms".into(),
        points: by_second
            .into_iter()
            .map(|(s, v)| (f64::from(s) + 1.0, quantile(v, 0.99).as_secs_f64() * 1000.0))
            .collect(),
    }
}

/// The values of `pii` that appear anywhere in the file sink's spool under `spool`
/// (every segment of `metrics/` and `logs/`, read as raw bytes, so a value counts
/// wherever it is: key, label, message or attribute), and the bytes searched.
pub fn pii_in_spool<'a>(spool: &Path, pii: &[&'a str]) -> (Vec<&'a str>, usize) {
    let mut all = Vec::new();
    for stream in ["metrics", "logs"] {
        if let Ok(entries) = std::fs::read_dir(spool.join(stream)) {
            for e in entries.flatten() {
                all.extend(std::fs::read(e.path()).unwrap_or_default());
            }
        }
    }
    (find_pii(&all, pii), all.len())
}

/// The values of `pii` that appear in `hay`, byte for byte.
pub fn find_pii<'a>(hay: &[u8], pii: &[&'a str]) -> Vec<&'a str> {
    pii.iter()
        .copied()
        .filter(|p| hay.windows(p.len()).any(|w| w == p.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_has_its_table_and_plots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = Report {
            title: "gates".into(),
            notes: vec!["2 cores".into()],
            results: vec![GateResult {
                gate: "T1".into(),
                criterion: "zero loss".into(),
                measured: "0 lost".into(),
                pass: true,
            }],
            plots: vec![Plot {
                name: "accepted samples per s".into(),
                unit: "samples/s".into(),
                points: vec![(0.0, 1.0), (1.0, 3.0)],
            }],
        };
        assert!(report.passed());
        let md = std::fs::read_to_string(report.write(dir.path()).expect("write")).expect("md");
        assert!(
            md.contains("| T1 | zero loss | 0 lost | **pass** |"),
            "{md}"
        );
        assert!(md.contains("![accepted samples per s](accepted_samples_per_s.svg)"));
        let svg =
            std::fs::read_to_string(dir.path().join("accepted_samples_per_s.svg")).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{svg}"
        );
        assert_eq!(
            metric_sum("a{x=\"1\"} 2\na{x=\"2\"} 3\nab 9\na 1\n", "a", ""),
            6.0
        );
        assert_eq!(format!("{}", metric_sum("", "a", "")), "0", "not -0");
        assert_eq!(
            file_stem("T4 agent queues (records waiting, all agents)"),
            "T4_agent_queues_records_waiting_all_agents"
        );
    }
}
