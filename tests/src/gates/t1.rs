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
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::WriteRequest;
use prost::Message;

use super::{GateResult, Plot, Sampler};
use crate::fleet::{Acked, LoadReport, SimHost, client_tls, drive_fleet};
use crate::pki::{Pki, gateway_yaml_head};
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
    index_spool_keyed(spool, |i, _| keep(i))
}

/// [`index_spool`], where `keep(i, key)` also sees record `i`'s key (`tenant/host`).
pub fn index_spool_keyed(
    spool: &Path,
    mut keep: impl FnMut(usize, &str) -> bool,
) -> Result<(Found, usize), String> {
    let mut found = Found::new();
    let mut n = 0usize;
    let mut bad = None;
    edge_gateway::sink::file::for_each_record(spool, "metrics", |key, data| {
        let i = n;
        n += 1;
        if !keep(i, key) || bad.is_some() {
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
    let gateway = Proc::configured(
        "edge-gateway",
        d,
        "gateway",
        &format!(
            "{}tenants:\n  default: {{ samples_rate_limit: 10000000, burst: 20000000, max_series: 10000000 }}\n\
             sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }} }}\n",
            gateway_yaml_head(port, d),
            d = d.display()
        ),
        &[],
        port,
    )?;

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
    let sampler = Sampler::new("T1", port, observer, start).spawn();
    let load = drive_fleet(hosts, port, cadence, measure_from, until).await;
    let sampled = sampler.finish().await?;
    drop(gateway);
    Ok(SoakRun {
        load,
        spool: d.join("spool"),
        plots: sampled.plots,
        mean_sample_age: sampled.mean_sample_age,
    })
}
