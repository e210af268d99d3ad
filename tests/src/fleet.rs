//! A simulated fleet: game hosts that each push 300 series (host-metric shapes, game
//! counters and gauges, native histograms of tick time and action→ack latency) over
//! their own mTLS connection with keep-alive, at a cadence; every answer's status and
//! time to first byte is recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_exporter::export::native_to_proto;
use edge_exporter::histogram::ExpHistogram;
use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

/// Series every simulated host pushes.
pub const SERIES_PER_HOST: usize = 300;

const CPU_MODES: [&str; 8] = [
    "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
];
const ACTIONS: [&str; 5] = ["move", "attack", "ability", "item", "chat"];
const SHARDS: usize = 16;

/// One game host.
#[derive(Debug)]
pub struct SimHost {
    /// Its name (`gs-<n>`), the certificate's CN.
    pub name: String,
    labels: Vec<(String, String)>,
    counters: Vec<f64>,
    tick: Vec<ExpHistogram>,
    ack: Vec<ExpHistogram>,
    rng: fastrand::Rng,
}

/// A log-normal-ish draw: `median * e^(sigma * z)`, z from a sum of uniforms.
fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64) -> f64 {
    let z: f64 = (0..6).map(|_| rng.f64()).sum::<f64>() - 3.0;
    median * (sigma * z * std::f64::consts::SQRT_2).exp()
}

impl SimHost {
    /// Host `index` of a region.
    pub fn new(index: usize, region: &str) -> SimHost {
        let labels = vec![
            ("region".to_string(), region.to_string()),
            (
                "az".to_string(),
                format!("{region}{}", ["a", "b", "c"][index % 3]),
            ),
            ("cluster".to_string(), format!("c{}", index % 8)),
            ("instance_type".to_string(), "c7g.2xlarge".to_string()),
            ("build_id".to_string(), "4.2.1".to_string()),
            ("host".to_string(), format!("gs-{index}")),
        ];
        SimHost {
            name: format!("gs-{index}"),
            labels,
            counters: vec![0.0; SERIES_PER_HOST],
            tick: (0..SHARDS).map(|_| ExpHistogram::new(2)).collect(),
            ack: (0..ACTIONS.len()).map(|_| ExpHistogram::new(2)).collect(),
            rng: fastrand::Rng::with_seed(index as u64),
        }
    }

    fn series(&self, name: &str, extra: &[(&str, String)]) -> Vec<Label> {
        let mut labels: Vec<Label> = Vec::with_capacity(self.labels.len() + extra.len() + 1);
        labels.push(Label {
            name: "__name__".into(),
            value: name.into(),
        });
        labels.extend(self.labels.iter().map(|(k, v)| Label {
            name: k.clone(),
            value: v.clone(),
        }));
        labels.extend(extra.iter().map(|(k, v)| Label {
            name: (*k).into(),
            value: v.clone(),
        }));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }

    /// One push of [`SERIES_PER_HOST`] series, stamped `now_ms`; counters and histograms
    /// advance as a game's would over one cadence.
    pub fn write_request(&mut self, now_ms: i64) -> WriteRequest {
        let mut out: Vec<TimeSeries> = Vec::with_capacity(SERIES_PER_HOST);
        let mut slot = 0usize;
        let mut sample =
            |host: &mut SimHost, name: &str, extra: &[(&str, String)], inc: f64, gauge: bool| {
                let value = if gauge {
                    inc
                } else {
                    host.counters[slot] += inc;
                    host.counters[slot]
                };
                slot += 1;
                let labels = host.series(name, extra);
                out.push(TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value,
                        timestamp: now_ms,
                    }],
                    ..Default::default()
                });
            };
        for cpu in 0..8 {
            for mode in CPU_MODES {
                let inc = self.rng.f64() * 2.0;
                sample(
                    self,
                    "node_cpu_seconds_total",
                    &[("cpu", cpu.to_string()), ("mode", mode.into())],
                    inc,
                    false,
                );
            }
        }
        for name in [
            "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes",
            "node_memory_Cached_bytes",
            "node_memory_Buffers_bytes",
            "node_memory_SwapTotal_bytes",
            "node_memory_SwapFree_bytes",
        ] {
            let v = 16e9 * self.rng.f64();
            sample(self, name, &[], v, true);
        }
        for name in [
            "node_filesystem_avail_bytes",
            "node_filesystem_size_bytes",
            "node_filesystem_free_bytes",
        ] {
            let v = 100e9 * self.rng.f64();
            sample(self, name, &[("mountpoint", "/".into())], v, true);
        }
        for name in [
            "node_disk_read_bytes_total",
            "node_disk_written_bytes_total",
            "node_disk_io_time_seconds_total",
        ] {
            let inc = 1e6 * self.rng.f64();
            sample(self, name, &[("device", "nvme0n1".into())], inc, false);
        }
        for name in [
            "node_network_receive_bytes_total",
            "node_network_transmit_bytes_total",
            "node_network_receive_packets_total",
            "node_network_transmit_packets_total",
        ] {
            let inc = 1e7 * self.rng.f64();
            sample(self, name, &[("device", "ens5".into())], inc, false);
        }
        for name in ["node_load1", "node_load5", "node_load15"] {
            let v = 4.0 * self.rng.f64();
            sample(self, name, &[], v, true);
        }
        for shard in 0..SHARDS {
            let players = (self.rng.f64() * 64.0).round();
            sample(
                self,
                "game_players",
                &[("shard", shard.to_string())],
                players,
                true,
            );
            for action in ACTIONS {
                let inc = (self.rng.f64() * 200.0).round();
                sample(
                    self,
                    "game_actions_total",
                    &[("shard", shard.to_string()), ("action", action.into())],
                    inc,
                    false,
                );
            }
        }
        for queue in 0..10 {
            for stat in [
                "enqueued",
                "dequeued",
                "timeouts",
                "cancelled",
                "matched",
                "backfilled",
                "rejected",
                "retried",
                "expired",
                "merged",
            ] {
                let inc = (self.rng.f64() * 20.0).round();
                sample(
                    self,
                    "game_queue_events_total",
                    &[("queue", format!("q{queue}")), ("event", stat.into())],
                    inc,
                    false,
                );
            }
        }
        // Native histograms: tick time by shard (about 15 ms), action→ack by action
        // (about 40 ms, a long tail).
        for shard in 0..SHARDS {
            for _ in 0..30 {
                let v = lognormal(&mut self.rng, 0.015, 0.3);
                let _ = self.tick[shard].record(v);
            }
            let labels = self.series(
                "game_tick_duration_seconds",
                &[("shard", shard.to_string())],
            );
            out.push(TimeSeries {
                labels,
                histograms: vec![native_to_proto(&self.tick[shard].to_native(), now_ms)],
                ..Default::default()
            });
        }
        for (i, action) in ACTIONS.iter().enumerate() {
            for _ in 0..30 {
                let v = lognormal(&mut self.rng, 0.04, 0.6);
                let _ = self.ack[i].record(v);
            }
            let labels = self.series(
                "game_action_ack_seconds",
                &[("action", (*action).to_string())],
            );
            out.push(TimeSeries {
                labels,
                histograms: vec![native_to_proto(&self.ack[i].to_native(), now_ms)],
                ..Default::default()
            });
        }
        WriteRequest {
            timeseries: out,
            ..Default::default()
        }
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests answered, by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors).
    pub errors: u64,
    /// Samples in requests answered 2xx.
    pub samples_accepted: u64,
    /// Time to first byte of every answer.
    pub ttfb: Vec<Duration>,
    /// Every request answered 2xx, measured or not: what the sink must hold.
    pub acked: Vec<Acked>,
}

/// A request the gateway answered 2xx: host `host` pushed `series` series stamped
/// `ts_ms` (every series of one push carries the same timestamp).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The host's name (`gs-<n>`).
    pub host: String,
    /// The push's sample timestamp.
    pub ts_ms: i64,
    /// Series in the push.
    pub series: u32,
}

impl LoadReport {
    /// The `q` quantile of TTFB.
    pub fn ttfb_quantile(&self, q: f64) -> Duration {
        if self.ttfb.is_empty() {
            return Duration::ZERO;
        }
        let mut t = self.ttfb.clone();
        t.sort_unstable();
        t[((t.len() as f64 * q) as usize).min(t.len() - 1)]
    }

    fn merge(&mut self, other: LoadReport) {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.errors += other.errors;
        self.samples_accepted += other.samples_accepted;
        self.ttfb.extend(other.ttfb);
        self.acked.extend(other.acked);
    }
}

/// A TLS client config presenting `cert` and trusting `ca_der`, offering HTTP/2.
pub fn client_tls(
    ca_der: &[u8],
    cert: &crate::pki::ClientCert,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca_der.to_vec().into())
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert.cert.clone().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key.clone().into()),
        )
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Runs `host` against `127.0.0.1:port` until `until`: one push per `cadence`, the
/// first at a random point of the first cadence (as real hosts are spread out). Only
/// requests sent from `measure_from` on are counted (connections and TLS handshakes
/// happen before it, as they do once per connection age in a real fleet).
pub async fn drive_host(
    mut host: SimHost,
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    cadence: Duration,
    measure_from: Instant,
    until: Instant,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut send = connect(port, tls.clone()).await.ok();
    let offset = cadence.mul_f64(fastrand::f64());
    tokio::time::sleep(offset).await;
    let mut next = Instant::now();
    while Instant::now() < until {
        if send.is_none() {
            send = connect(port, tls.clone()).await.ok();
            if send.is_none() {
                report.errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let request = host.write_request(now_ms);
        let samples = request.timeseries.len() as u64;
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap_or_default();
        let req = http::Request::builder()
            .method("POST")
            .uri("https://localhost/api/v1/push")
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else { break };
        let sent = Instant::now();
        let counted = sent >= measure_from;
        let answer = match send.as_mut() {
            Some(s) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
            None => break,
        };
        match answer {
            Ok(resp) => {
                let ttfb = sent.elapsed();
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                if (200..300).contains(&status) {
                    report.acked.push(Acked {
                        host: host.name.clone(),
                        ts_ms: now_ms,
                        series: samples as u32,
                    });
                }
                if counted {
                    report.ttfb.push(ttfb);
                    *report.statuses.entry(status).or_default() += 1;
                    if (200..300).contains(&status) {
                        report.samples_accepted += samples;
                    }
                }
            }
            Err(_) => {
                report.errors += 1;
                send = None;
            }
        }
        next += cadence;
        tokio::time::sleep_until(next.into()).await;
    }
    report
}

/// One mTLS HTTP/2 connection to `127.0.0.1:port` (server name `localhost`).
pub async fn connect(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

/// Drives every host at once and merges their reports (see [`drive_host`]).
pub async fn drive_fleet(
    hosts: Vec<(SimHost, Arc<rustls::ClientConfig>)>,
    port: u16,
    cadence: Duration,
    measure_from: Instant,
    until: Instant,
) -> LoadReport {
    let tasks: Vec<_> = hosts
        .into_iter()
        .map(|(host, tls)| tokio::spawn(drive_host(host, tls, port, cadence, measure_from, until)))
        .collect();
    let mut report = LoadReport::default();
    for t in tasks {
        if let Ok(r) = t.await {
            report.merge(r);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_pushes_300_series_with_native_histograms() {
        let mut h = SimHost::new(7, "eu-west-1");
        let r = h.write_request(1_000);
        assert_eq!(r.timeseries.len(), SERIES_PER_HOST);
        let hist = r
            .timeseries
            .iter()
            .filter(|s| !s.histograms.is_empty())
            .count();
        assert_eq!(hist, SHARDS + ACTIONS.len());
        let r2 = h.write_request(2_000);
        // Counters only go up.
        assert!(r2.timeseries[0].samples[0].value >= r.timeseries[0].samples[0].value);
        // Every series is distinct.
        let mut keys: Vec<String> = r
            .timeseries
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), SERIES_PER_HOST);
    }
}
