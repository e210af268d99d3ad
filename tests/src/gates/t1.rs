//! T1, soak: a simulated region pushes at 1.3× its baseline into the real gateway
//! (mTLS, file sink) for a while; then every push the gateway answered 2xx must be in
//! the sink, every one of its series, counted exactly. Reported beside the verdict:
//! TTFB p99, the sample age at ingest, duplicates, and the gateway's view over time.
//!
//! Accounting: every push of a host carries one timestamp on all its series, so the
//! sink is indexed by `(host, timestamp)` → series found, and each acknowledged push
//! `(host, timestamp, n)` must find `n` there. More than `n` is duplication (allowed by
//! the at-least-once guarantee, reported); fewer is loss (fails the gate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::WriteRequest;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use prost::Message;

use super::{GateResult, Plot, metric_sum};
use crate::fleet::{Acked, LoadReport, SimHost, client_tls, connect, drive_fleet};
use crate::pki::Pki;
use crate::procs::{Proc, free_port};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Simulated hosts (a region is 1,700).
    pub hosts: usize,
    /// How long they push.
    pub duration: Duration,
    /// The baseline cadence (10 s in production; shorter compresses time).
    pub cadence: Duration,
    /// Load as a multiple of the baseline: the cadence is divided by it.
    pub load: f64,
    /// Where the gateway's config, certificates, log and spool go.
    pub dir: PathBuf,
}

/// What a soak produced.
#[derive(Debug)]
pub struct SoakRun {
    /// What the fleet saw.
    pub load: LoadReport,
    /// The gateway's spool.
    pub spool: PathBuf,
    /// The gateway's view, once a second.
    pub plots: Vec<Plot>,
    /// Mean sample age at ingest over the run (s), from the gateway's histogram.
    pub mean_sample_age: f64,
}

/// Loss and duplication, counted exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Pushes answered 2xx.
    pub acked_requests: u64,
    /// Series in them.
    pub acked_samples: u64,
    /// Acknowledged pushes with a series missing from the sink.
    pub lost_requests: u64,
    /// Acknowledged series missing from the sink.
    pub lost_samples: u64,
    /// Series found more often than acknowledged.
    pub duplicated_samples: u64,
}

/// `(host, timestamp)` → series found in the sink.
pub type Found = HashMap<(String, i64), u64>;

/// `(host, timestamp)` → series found in the spool's metrics records, read one segment
/// at a time (a 30-minute soak spools tens of GB). `keep(i)` can leave record `i` out:
/// a sink that lost it. Also returns how many records were read.
pub fn index_spool(
    spool: &Path,
    mut keep: impl FnMut(usize) -> bool,
) -> Result<(Found, usize), String> {
    let mut found = Found::new();
    let mut n = 0usize;
    let mut bad = None;
    edge_gateway::sink::file::for_each_record(spool, "metrics", |key, data| {
        let i = n;
        n += 1;
        if !keep(i) || bad.is_some() {
            return;
        }
        let host = key.rsplit('/').next().unwrap_or(key);
        let request = match WriteRequest::decode(data) {
            Ok(r) => r,
            Err(e) => {
                bad = Some(format!("a record of {key} is not a WriteRequest: {e}"));
                return;
            }
        };
        for series in request.timeseries {
            let ts = series
                .samples
                .first()
                .map(|s| s.timestamp)
                .or_else(|| series.histograms.first().map(|h| h.timestamp));
            if let Some(ts) = ts {
                *found.entry((host.to_string(), ts)).or_default() += 1;
            }
        }
    })
    .map_err(|e| format!("{}: {e}", spool.display()))?;
    match bad {
        Some(e) => Err(e),
        None => Ok((found, n)),
    }
}

/// Compares what was acknowledged with what the sink holds.
pub fn account(acked: &[Acked], found: &Found) -> Accounting {
    let mut out = Accounting::default();
    let mut expected: HashMap<(String, i64), u64> = HashMap::new();
    for a in acked {
        out.acked_requests += 1;
        out.acked_samples += u64::from(a.series);
        *expected.entry((a.host.clone(), a.ts_ms)).or_default() += u64::from(a.series);
    }
    for (key, want) in &expected {
        let got = found.get(key).copied().unwrap_or(0);
        if got < *want {
            out.lost_requests += 1;
            out.lost_samples += want - got;
        } else {
            out.duplicated_samples += got - want;
        }
    }
    out
}

/// The verdict: zero loss, and the run did push.
pub fn verdict(acc: &Accounting, run: &SoakRun) -> GateResult {
    let statuses: Vec<String> = run
        .load
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    GateResult {
        gate: "T1 soak".into(),
        criterion: "every series of every push answered 2xx is in the sink (zero loss)".into(),
        measured: format!(
            "{} pushes / {} series acknowledged; {} series lost in {} pushes; {} duplicated; \
             TTFB p99 {:.1} ms; mean sample age at ingest {:.2} s; answers {{{}}}, {} transport errors",
            acc.acked_requests,
            acc.acked_samples,
            acc.lost_samples,
            acc.lost_requests,
            acc.duplicated_samples,
            run.load.ttfb_quantile(0.99).as_secs_f64() * 1000.0,
            run.mean_sample_age,
            statuses.join(", "),
            run.load.errors
        ),
        pass: acc.acked_samples > 0 && acc.lost_samples == 0,
    }
}

/// Runs the soak: a gateway, the fleet, a scrape of the gateway each second.
pub async fn run(opts: &SoakOptions) -> Result<SoakRun, String> {
    let d = &opts.dir;
    std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    let pki = Pki::new(d).map_err(|e| e.to_string())?;
    let port = free_port();
    std::fs::write(
        d.join("gateway.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\n\
             tls: {{ cert: {d}/server.crt, key: {d}/server.key, client_ca: {d}/ca.crt }}\n\
             identities: {{ spiffe_trust_domain: obs.internal }}\n\
             tenants:\n  default: {{ samples_rate_limit: 10000000, burst: 20000000, max_series: 10000000 }}\n\
             sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }} }}\n",
            d = d.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let gateway = Proc::start(
        "edge-gateway",
        &["--config", &d.join("gateway.yaml").display().to_string()],
        &[],
        d.join("gateway.log"),
    );
    gateway.wait_for_port(port);

    let mut hosts = Vec::with_capacity(opts.hosts);
    for i in 0..opts.hosts {
        let host = SimHost::new(i, "sim-1");
        let cert = pki.client(&host.name, "game").map_err(|e| e.to_string())?;
        hosts.push((host, client_tls(&pki.ca_der, &cert)?));
    }
    let observer = client_tls(
        &pki.ca_der,
        &pki.client("observer", "game").map_err(|e| e.to_string())?,
    )?;
    let cadence = opts.cadence.div_f64(opts.load.max(0.01));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(2).min(cadence);
    let until = start + opts.duration;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(sample(port, observer, start, stop.clone()));
    let load = drive_fleet(hosts, port, cadence, measure_from, until).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (plots, mean_sample_age) = sampler.await.map_err(|e| e.to_string())?;
    drop(gateway);
    Ok(SoakRun {
        load,
        spool: d.join("spool"),
        plots,
        mean_sample_age,
    })
}

/// Scrapes the gateway once a second until `stop`: accepted samples/s, 429s/s, the
/// sink's backlog, and the mean sample age per second; and the mean age overall.
async fn sample(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    start: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<Plot>, f64) {
    let mut accepted = Plot {
        name: "T1 accepted samples per second".into(),
        unit: "samples/s".into(),
        ..Plot::default()
    };
    let mut throttled = Plot {
        name: "T1 429 answers per second".into(),
        unit: "429/s".into(),
        ..Plot::default()
    };
    let mut backlog = Plot {
        name: "T1 sink backlog".into(),
        unit: "records".into(),
        ..Plot::default()
    };
    let mut age = Plot {
        name: "T1 mean sample age at ingest".into(),
        unit: "seconds".into(),
        ..Plot::default()
    };
    let mut send = None;
    let mut last: Option<(f64, f64, f64, f64)> = None;
    let mut first: Option<(f64, f64)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tick.tick().await;
        if send.is_none() {
            send = connect(port, tls.clone()).await.ok();
        }
        let Some(s) = send.as_mut() else { continue };
        let Ok(request) =
            http::Request::get("https://localhost/metrics").body(Full::new(Bytes::new()))
        else {
            continue;
        };
        let text = match s.send_request(request).await {
            Ok(r) => match r.into_body().collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                Err(_) => continue,
            },
            Err(_) => {
                send = None;
                continue;
            }
        };
        let t = start.elapsed().as_secs_f64();
        let now = (
            metric_sum(&text, "edge_gateway_samples_accepted_total", ""),
            metric_sum(&text, "edge_gateway_requests_total", "code=\"429\""),
            metric_sum(&text, "edge_gateway_sample_age_seconds_sum", ""),
            metric_sum(&text, "edge_gateway_sample_age_seconds_count", ""),
        );
        backlog.points.push((
            t,
            metric_sum(&text, "edge_gateway_sink_backlog_records", ""),
        ));
        if let Some(prev) = last {
            accepted.points.push((t, now.0 - prev.0));
            throttled.points.push((t, now.1 - prev.1));
            let n = now.3 - prev.3;
            age.points
                .push((t, if n > 0.0 { (now.2 - prev.2) / n } else { 0.0 }));
        }
        first.get_or_insert((now.2, now.3));
        last = Some(now);
    }
    let mean = match (first, last) {
        (Some(f), Some(l)) if l.3 > f.1 => (l.2 - f.0) / (l.3 - f.1),
        _ => 0.0,
    };
    (vec![accepted, throttled, backlog, age], mean)
}
