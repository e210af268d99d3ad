//! The local pipeline, on loopback, with nothing faked: a throwaway CA and certificates
//! made now, `edge-gateway` (mTLS, `file` sink) and `edge-agent` as real processes, a
//! synthetic game pushing gameplay histograms and counters through `edge-exporter`,
//! and a synthetic game log with PII being written and rotated. A summary line every
//! second; at the end, where the spool is and whether any PII value reached it.
//!
//! `scripts/demo [--seconds N] [--dir DIR]` (Ctrl-C stops it without `--seconds`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_exporter::registry::Registry;
use edge_tests::fleet;
use edge_tests::gates::edge::PII;
use edge_tests::gates::{metric_sum, pii_in_spool, scrape_gateway};
use edge_tests::pki::{Pki, gateway_yaml_head};
use edge_tests::procs::{Proc, free_port, http_get};

struct Args {
    seconds: Option<u64>,
    dir: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        seconds: None,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a number")?;
                out.seconds = Some(
                    v.parse()
                        .map_err(|_| format!("--seconds {v:?}: not a number"))?,
                );
            }
            "--dir" => out.dir = Some(PathBuf::from(it.next().ok_or("--dir needs a path")?)),
            "-h" | "--help" => {
                return Err("usage: demo [--seconds N] [--dir DIR]".into());
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("edgepipe-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(dir.join("game")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let d = dir.display().to_string();
    let io = |e: std::io::Error| e.to_string();

    // A throwaway CA; the gateway's certificate; the agent's, naming tenant `game`.
    let pki = Pki::new(&dir).map_err(io)?;
    pki.write_client(&dir, "gs-demo-1", "game").map_err(io)?;
    // A fresh tokenization key: 32 random hex digits.
    let key: String = (0..32).map(|_| fastrand::digit(16)).collect();
    std::fs::write(dir.join("tokenize.key"), format!("{key}\n")).map_err(io)?;

    let gateway_port = free_port();
    let agent_port = free_port();
    let statsd_port = free_port();
    let otlp_port = free_port();
    println!("edgepipe demo in {d}");
    let gateway = Proc::configured(
        "edge-gateway",
        &dir,
        "gateway",
        &format!(
            "{}tenants:\n  default: {{ samples_rate_limit: 20000, burst: 40000, max_series: 2000000, log_bytes_rate_limit: 10MiB }}\n\
             fleet: {{ cadence: 1s }}\n\
             sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }} }}\n",
            gateway_yaml_head(gateway_port, &dir)
        ),
        &[],
        gateway_port,
    )?;
    let agent = Proc::configured(
        "edge-agent",
        &dir,
        "agent",
        &format!(
            "host_labels: {{ region: local, cluster: demo, build_id: dev }}\n\
             cadence: 1s\nincident_cadence: 1s\n\
             listen: 127.0.0.1:{agent_port}\n\
             statsd: {{ listen: 127.0.0.1:{statsd_port} }}\n\
             otlp: {{ grpc: off, http: 127.0.0.1:{otlp_port} }}\n\
             host_metrics: {{ enabled: true, filesystems: [/], disks: [], interfaces: [lo] }}\n\
             logs:\n  - {{ path: \"{d}/game/*.log\", service: game, parser: json, read_from: beginning }}\n\
             tokenize: {{ key_file: {d}/tokenize.key, detectors: {detectors} }}\n\
             output:\n  metrics_url: https://localhost:{gateway_port}/api/v1/push\n  logs_url: https://localhost:{gateway_port}/v1/logs\n  \
             tls: {{ cert: {d}/agent.crt, key: {d}/agent.key, ca: {d}/ca.crt }}\n\
             queue: {{ dir: {d}/queue }}\n",
            detectors = edge_tests::rig::DETECTORS,
        ),
        &[],
        agent_port,
    )?;
    println!(
        "gateway https://127.0.0.1:{gateway_port} (mTLS, file sink) and agent 127.0.0.1:{agent_port} are up; \
         logs: {d}/gateway.log, {d}/agent.log"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let game = std::thread::spawn({
        let stop = stop.clone();
        let url = format!("http://127.0.0.1:{agent_port}/api/v1/push");
        let statsd = format!("127.0.0.1:{statsd_port}");
        let otlp = format!("127.0.0.1:{otlp_port}");
        move || synthetic_game(&url, &statsd, &otlp, &stop)
    });
    let logger = std::thread::spawn({
        let stop = stop.clone();
        let dir = dir.join("game");
        move || synthetic_log(&dir, &stop)
    });

    let client = pki.client("demo-observer", "game").map_err(io)?;
    let tls = fleet::client_tls(&pki.ca_der, &client)?;
    let started = Instant::now();
    let until = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut observer = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let gw = scrape_gateway(&mut observer, gateway_port, &tls)
            .await
            .unwrap_or_default();
        let ag = match http_get(agent_port, "/metrics").await {
            Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
            _ => String::new(),
        };
        println!(
            "t={:>3}s  samples accepted {:>7}  series {:>4}  log lines shipped {:>5}  tokens {:>5}  429s {:>3}  queue {:>3} records",
            started.elapsed().as_secs(),
            metric_sum(&gw, "edge_gateway_samples_accepted_total", "") as u64,
            metric_sum(&gw, "edge_gateway_active_series", "") as u64,
            metric_sum(&gw, "edge_gateway_log_records_accepted_total", "") as u64,
            metric_sum(&ag, "edge_logs_pii_replaced_total", "") as u64,
            metric_sum(&gw, "edge_gateway_requests_total", "code=\"429\"") as u64,
            metric_sum(&ag, "edge_queue_records", "") as u64,
        );
        let _ = std::io::stdout().flush();
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = game.join();
    let _ = logger.join();
    drop(agent);
    drop(gateway);

    let spool = dir.join("spool");
    let (leaked, bytes) = pii_in_spool(&spool, PII);
    println!(
        "spool: {} ({bytes} bytes in metrics/ and logs/)",
        spool.display()
    );
    if leaked.is_empty() {
        println!(
            "PII check: none of the {} PII values written to the game log is in the spool",
            PII.len()
        );
        Ok(true)
    } else {
        println!("PII check FAILED: found {leaked:?} in the spool");
        Ok(false)
    }
}

/// A game server's metrics: tick times, action latencies, counters, pushed each second;
/// as many engines' scripts do, one statsd timer (a match's length) over UDP; and, as a
/// game instrumented with an OpenTelemetry SDK does, one exponential histogram (the
/// queue wait) over OTLP/HTTP.
fn synthetic_game(url: &str, statsd: &str, otlp: &str, stop: &AtomicBool) {
    let mut queue_wait = OtlpHistogram::default();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0");
    let registry = Registry::new();
    let (Ok(ticks), Ok(acks), Ok(actions), Ok(players)) = (
        registry.histogram("game_tick_duration_seconds", "Duration of one server tick."),
        registry.histogram(
            "game_action_ack_latency_seconds",
            "Time from a player action arriving to its acknowledgement leaving.",
        ),
        registry.counter("game_actions_total", "Player actions handled."),
        registry.gauge(
            "game_players_connected",
            "Players connected, per shard (instance density).",
        ),
    ) else {
        eprintln!("demo: the synthetic game's metrics are not in the catalog");
        return;
    };
    let mut rng = fastrand::Rng::with_seed(7);
    while !stop.load(Ordering::SeqCst) {
        for shard in ["1", "2", "3"] {
            if let Ok(h) = ticks.with(&[("shard_id", shard)]) {
                for _ in 0..30 {
                    // A 16 ms tick budget, mostly met.
                    h.record(0.004 + 0.012 * rng.f64() + if rng.u8(..) < 3 { 0.02 } else { 0.0 });
                }
            }
            if let Ok(g) = players.with(&[("shard_id", shard)]) {
                g.set(f64::from(rng.u32(40..64)));
            }
        }
        for action in ["move", "attack", "ability", "chat"] {
            if let Ok(h) = acks.with(&[("action", action)]) {
                for _ in 0..20 {
                    h.record(0.010 + 0.060 * rng.f64() * rng.f64());
                }
            }
            if let Ok(c) = actions.with(&[("action", action)]) {
                c.add(u64::from(rng.u32(50..200)));
            }
        }
        if let Err(e) = edge_exporter::push::push_once(&registry, url, Duration::from_secs(2)) {
            eprintln!("demo: push to the agent failed: {e}");
        }
        if let Ok(udp) = &udp {
            let line = format!(
                "game.match.duration:{}|ms|#shard_id:1",
                rng.u32(60_000..900_000)
            );
            if let Err(e) = udp.send_to(line.as_bytes(), statsd) {
                eprintln!("demo: statsd send failed: {e}");
            }
        }
        for _ in 0..25 {
            queue_wait.record(0.05 + 3.0 * rng.f64() * rng.f64());
        }
        if let Err(e) = queue_wait.export(otlp) {
            eprintln!("demo: OTLP export failed: {e}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A cumulative exponential histogram (scale 0: bucket `i` holds (2^i, 2^(i+1)]) of
/// seconds, exported as OTLP `game.queue.wait` with `queue=ranked`.
#[derive(Default)]
struct OtlpHistogram {
    counts: std::collections::BTreeMap<i32, u64>,
    count: u64,
    sum: f64,
    start_ns: u64,
}

impl OtlpHistogram {
    fn record(&mut self, seconds: f64) {
        let index = seconds.log2().ceil() as i32 - 1;
        *self.counts.entry(index).or_default() += 1;
        self.count += 1;
        self.sum += seconds;
    }

    /// POSTs the histogram as it stands to the agent's OTLP/HTTP receiver.
    fn export(&mut self, addr: &str) -> std::io::Result<()> {
        use edge_schema::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
        use edge_schema::proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
        use edge_schema::proto::opentelemetry::proto::metrics::v1 as m;
        use prost::Message;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        if self.start_ns == 0 {
            self.start_ns = now;
        }
        let offset = self.counts.keys().next().copied().unwrap_or(0);
        let last = self.counts.keys().last().copied().unwrap_or(0);
        let bucket_counts = (offset..=last)
            .map(|i| self.counts.get(&i).copied().unwrap_or(0))
            .collect();
        let point = m::ExponentialHistogramDataPoint {
            attributes: vec![KeyValue {
                key: "queue".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("ranked".into())),
                }),
            }],
            start_time_unix_nano: self.start_ns,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            scale: 0,
            positive: Some(m::exponential_histogram_data_point::Buckets {
                offset,
                bucket_counts,
            }),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![m::ResourceMetrics {
                scope_metrics: vec![m::ScopeMetrics {
                    metrics: vec![m::Metric {
                        name: "game.queue.wait".into(),
                        unit: "s".into(),
                        data: Some(m::metric::Data::ExponentialHistogram(
                            m::ExponentialHistogram {
                                data_points: vec![point],
                                aggregation_temporality: m::AggregationTemporality::Cumulative
                                    as i32,
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = request.encode_to_vec();
        let mut conn = std::net::TcpStream::connect(addr)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            conn,
            "POST /v1/metrics HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        conn.write_all(&body)?;
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut conn, &mut answer)?;
        if answer.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(std::io::Error::other(
                answer.lines().next().unwrap_or("no answer").to_string(),
            ))
        }
    }
}

/// A game log with PII in messages and fields, 50 lines a second, rotated (renamed to
/// `game.log.1` and started again) every 5 seconds.
fn synthetic_log(dir: &Path, stop: &AtomicBool) {
    let path = dir.join("game.log");
    let mut file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("demo: {}: {e}", path.display());
            return;
        }
    };
    let started = Instant::now();
    let mut rotated = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        for _ in 0..5 {
            let pii = PII[(n % PII.len() as u64) as usize];
            let player = PII[5 + (n % 2) as usize];
            let level = ["info", "info", "warn", "debug", "error"][(n % 5) as usize];
            let _ = writeln!(
                file,
                r#"{{"level":"{level}","msg":"line {n}: session from {pii}","player_id":"{player}","shard":"{}"}}"#,
                n % 3 + 1
            );
            n += 1;
        }
        let _ = file.flush();
        if started.elapsed() >= Duration::from_secs(5 * (rotated + 1)) {
            rotated += 1;
            let _ = std::fs::rename(&path, dir.join("game.log.1"));
            match std::fs::File::create(&path) {
                Ok(f) => file = f,
                Err(e) => {
                    eprintln!("demo: {}: {e}", path.display());
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
