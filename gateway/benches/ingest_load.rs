//! The gateway under a simulated region: 1,700 hosts, each on its own connection with
//! keep-alive, pushing 300 series (native histograms included) every cadence, at the
//! seed's 1×, 3× and 5× regional loads (about 50k, 150k and 250k samples/s). Reports
//! each server's CPU per million samples accepted, the time to first byte at p50 and p99
//! and the samples accepted.
//!
//! `cargo bench -p edge-gateway --bench ingest_load [-- --hosts 1700 --seconds 30 --loads 1,3,5 --sink file|kinesis --rounds 1 --perf FILE]`
//!
//! By default each host holds an mTLS HTTP/2 connection and the gateway writes to the
//! file sink (the production shape). With `--sink kinesis` it writes to a Kinesis stream
//! (2 shards) on a local AWS API server (`moto_server`, started here), which then shares
//! the machine too.
//!
//! `--peer vmagent` compares the gateway with VictoriaMetrics' `vmagent` (Debian's
//! package `victoria-metrics`) on the same generator: both over plain HTTP/1.1 with
//! keep-alive, the gateway with `tls: off` and the file sink, vmagent with its defaults
//! (on-disk buffer directory, forwarding by remote_write to a sink in this process that
//! answers 204). Runs alternate, gateway then vmagent, `--rounds` times per load, so the
//! machine's noise falls on both; the per-run rows come first, then both side by side.
//!
//! CPU is each server process's `utime` + `stime` (`/proc/<pid>/stat`) from the moment
//! every host is connected to the end of the run plus a settling pause (vmagent flushes
//! what it buffered within a second). The load generator (and vmagent's sink) run in this
//! process, on the same machine, and are not counted.
//!
//! `--perf FILE` attaches `perf record -g` to the gateway over the measured part of the
//! first gateway run of each load, into `FILE.<load>x` (perf's own cost then lands in
//! that run's figure).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edge_tests::fleet::{
    LoadReport, SEND_TIMEOUT, SERIES_PER_HOST, SimHost, client_tls, drive_fleet, now_ms,
};
use edge_tests::pki::Pki;
use edge_tests::procstat::{clock_ticks, cpu_stat};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prost::Message;

/// The bearer token the plain-HTTP hosts present (the gateway maps it to `game`).
const TOKEN: &str = "ingest-load-bench";

/// After the last answer, before CPU is read: vmagent sends what it buffered within its
/// 1 s flush interval.
const SETTLE: Duration = Duration::from_secs(2);

/// The Debian package that ships `vmagent`.
const VMAGENT_PACKAGE: &str = "victoria-metrics";

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn rss_mib(pid: u32) -> f64 {
    edge_tests::procstat::peak_rss(pid) as f64 / (1 << 20) as f64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not start in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server under load: how the hosts reach it and how its CPU is read.
struct Server {
    name: &'static str,
    child: Child,
    pid: u32,
    port: u16,
    /// The remote_write path it takes pushes on.
    path: &'static str,
    /// vmagent: its counters (`/metrics` on `port`) and the sink it forwards to.
    vmagent: Option<Arc<SinkCounts>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the hosts connect.
enum Clients {
    /// One mTLS HTTP/2 connection each, with these client configs (one per host).
    Tls(Vec<Arc<rustls::ClientConfig>>),
    /// One plain HTTP/1.1 connection each, presenting [`TOKEN`].
    Plain,
}

/// One measured run.
struct Run {
    server: &'static str,
    load: f64,
    accepted_per_s: f64,
    cpu_per_million: f64,
    p50_ms: f64,
    p99_ms: f64,
    not_ok: u64,
    errors: u64,
    /// What the server itself counted (vmagent: rows in and forwarded).
    note: String,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("ingest_load: benchmark");
        return;
    }
    let hosts: usize = arg("--hosts", "1700").parse().expect("--hosts N");
    let seconds: u64 = arg("--seconds", "30").parse().expect("--seconds N");
    let loads: Vec<f64> = arg("--loads", "1,3,5")
        .split(',')
        .map(|l| l.parse().expect("--loads 1,3,5"))
        .collect();
    let peer = arg("--peer", "");
    let rounds: usize = arg("--rounds", if peer.is_empty() { "1" } else { "2" })
        .parse()
        .expect("--rounds N");
    let perf = arg("--perf", "");
    let sink = arg("--sink", "file");
    match peer.as_str() {
        "" => {}
        "vmagent" => {
            if sink != "file" {
                panic!("--peer vmagent compares the gateway's file sink; drop --sink {sink}");
            }
            check_vmagent();
        }
        other => panic!("--peer {other}: the only peer is vmagent"),
    }
    let tps = clock_ticks().expect("the clock tick");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let mut moto = None;
    let (gateway, clients) = if peer.is_empty() {
        let pki = Pki::new(d).expect("pki");
        let metrics_sink = match sink.as_str() {
            "file" => format!("{{ kind: file, dir: {}/spool }}", d.display()),
            "kinesis" => {
                let (child, sink) = start_moto(&runtime);
                moto = Some(child);
                sink
            }
            other => panic!("--sink {other}: file or kinesis"),
        };
        let port = free_port();
        let head = format!(
            "listen: 127.0.0.1:{port}\n\
             tls: {{ cert: {d}/server.crt, key: {d}/server.key, client_ca: {d}/ca.crt }}\n\
             identities: {{ spiffe_trust_domain: obs.internal }}\n",
            d = d.display()
        );
        let gateway = start_gateway(d, port, &head, &metrics_sink);
        eprintln!("issuing {hosts} client certificates…");
        let certs: Vec<_> = (0..hosts)
            .map(|i| {
                let cert = pki.client(&format!("gs-{i}"), "game").expect("client cert");
                client_tls(&pki.ca_der, &cert).expect("client tls")
            })
            .collect();
        (gateway, Clients::Tls(certs))
    } else {
        let port = free_port();
        let sha = ring::digest::digest(&ring::digest::SHA256, TOKEN.as_bytes());
        let sha: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let head = format!(
            "listen: 127.0.0.1:{port}\n\
             tls: off\n\
             identities: {{ tokens: [ {{ sha256: \"{sha}\", tenant: game }} ] }}\n"
        );
        let metrics_sink = format!("{{ kind: file, dir: {}/spool }}", d.display());
        (start_gateway(d, port, &head, &metrics_sink), Clients::Plain)
    };
    let mut servers = vec![gateway];
    if !peer.is_empty() {
        servers.push(start_vmagent(d));
    }
    eprintln!(
        "pids: {}",
        servers
            .iter()
            .map(|s| format!("{} {}", s.name, s.pid))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!(
        "| server | load | samples/s offered | samples/s accepted | CPU-s per 1M samples | TTFB p50 | TTFB p99 | non-2xx | errors | load average | server's count |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut runs = Vec::new();
    for &load in &loads {
        for round in 0..rounds {
            for server in &servers {
                let perf_file = (!perf.is_empty() && round == 0 && server.name == "gateway")
                    .then(|| format!("{perf}.{load}x"));
                let run = measure(
                    &runtime,
                    server,
                    &clients,
                    hosts,
                    load,
                    seconds,
                    tps,
                    perf_file.as_deref(),
                );
                runs.push(run);
            }
        }
    }
    if servers.len() > 1 {
        side_by_side(&runs, &loads);
    }
    let transport = match clients {
        Clients::Tls(_) => "mTLS HTTP/2",
        Clients::Plain => "plain HTTP/1.1",
    };
    println!(
        "transport: {transport}; gateway sink: {sink}; peak RSS: {}",
        servers
            .iter()
            .map(|s| format!("{} {:.1} MiB", s.name, rss_mib(s.pid)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(servers);
    if let Some(mut m) = moto {
        let _ = m.kill();
        let _ = m.wait();
    }
}

/// Fails the run at once, naming the package, when `vmagent` is not installed.
fn check_vmagent() {
    match Command::new("vmagent")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => {
            eprintln!(
                "error: --peer vmagent needs the `vmagent` binary ({e}); install Debian's \
                 package `{VMAGENT_PACKAGE}`: apt-get install -y {VMAGENT_PACKAGE}"
            );
            std::process::exit(2);
        }
    }
}

fn start_gateway(d: &std::path::Path, port: u16, head: &str, metrics_sink: &str) -> Server {
    edge_tests::pki::write_test_tokenize_key(d).expect("tokenize key");
    std::fs::write(
        d.join("fleet-labels.yaml"),
        edge_tests::fleet::fleet_policy_yaml(),
    )
    .expect("policy");
    let config = format!(
        "{head}\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         policy: {d}/fleet-labels.yaml\n\
         tenants:\n  default: {{ samples_rate_limit: 100000000, burst: 100000000 }}\n\
         sinks: {{ metrics: {metrics_sink}, logs: {{ kind: file, dir: {d}/spool }} }}\n",
        d = d.display()
    );
    std::fs::write(d.join("gateway.yaml"), config).expect("config");
    // EDGE_BENCH_GATEWAY runs another build of the gateway (an A/B of two commits on the
    // same generator and machine); by default, the one built with this bench.
    let binary = std::env::var_os("EDGE_BENCH_GATEWAY")
        .map_or_else(|| env!("CARGO_BIN_EXE_edge-gateway").into(), PathBuf::from);
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(d.join("gateway.yaml"))
        .env("EDGE_GATEWAY_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start edge-gateway");
    wait_for_port(port, "the gateway", &mut child);
    Server {
        name: "gateway",
        pid: child.id(),
        child,
        port,
        path: "/api/v1/push",
        vmagent: None,
    }
}

/// Starts `vmagent` with its defaults, forwarding to a 204 sink in this process.
fn start_vmagent(d: &std::path::Path) -> Server {
    let counts = Arc::new(SinkCounts::default());
    let sink_port = start_sink(counts.clone());
    let port = free_port();
    let log = std::fs::File::create(d.join("vmagent.log")).expect("vmagent log");
    let mut child = Command::new("vmagent")
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!(
            "-remoteWrite.url=http://127.0.0.1:{sink_port}/api/v1/write"
        ))
        .arg(format!(
            "-remoteWrite.tmpDataPath={}",
            d.join("vmagent-buffer").display()
        ))
        .arg("-loggerLevel=WARN")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start vmagent (apt-get install -y {VMAGENT_PACKAGE}): {e}"));
    wait_for_port(port, "vmagent", &mut child);
    Server {
        name: "vmagent",
        pid: child.id(),
        child,
        port,
        path: "/api/v1/write",
        vmagent: Some(counts),
    }
}

/// What vmagent's remote_write target received.
#[derive(Default)]
struct SinkCounts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// A remote_write target that reads each body and answers 204: the cheapest store
/// there is, on its own thread in this process (its CPU is not vmagent's).
fn start_sink(counts: Arc<SinkCounts>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sink port");
    let port = listener.local_addr().expect("sink addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("sink runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("sink listener");
            while let Ok((tcp, _)) = listener.accept().await {
                let counts = counts.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let counts = counts.clone();
                        async move {
                            let body = BodyExt::collect(req.into_body()).await?.to_bytes();
                            counts.requests.fetch_add(1, Ordering::Relaxed);
                            counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                            let mut answer = http::Response::new(Empty::<Bytes>::new());
                            *answer.status_mut() = http::StatusCode::NO_CONTENT;
                            Ok::<_, hyper::Error>(answer)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
    });
    port
}

/// vmagent's counters: rows taken in by remote_write, rows handed to its forwarding
/// queue, and bytes written to its on-disk buffer.
fn vmagent_counters(port: u16) -> [f64; 3] {
    let mut text = String::new();
    if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let _ = conn.read_to_string(&mut text);
    }
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    [
        sum("vmagent_rows_inserted_total{type=\"promremotewrite\"}"),
        sum("vmagent_remotewrite_rows_pushed_after_relabel_total{"),
        sum("vm_persistentqueue_bytes_written_total{"),
    ]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Starts `perf record -g` on `pid`, writing `file`.
fn start_perf(pid: u32, file: &str) -> Option<Child> {
    match Command::new("perf")
        .args(["record", "-g", "-o", file, "-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("perf record could not start ({e}); apt-get install -y linux-perf");
            None
        }
    }
}

fn stop_perf(mut perf: Child) {
    // perf writes its file on SIGINT.
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let _ = perf.wait();
}

#[allow(clippy::too_many_arguments)]
fn measure(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    clients: &Clients,
    hosts: usize,
    load: f64,
    seconds: u64,
    tps: u64,
    perf_file: Option<&str>,
) -> Run {
    let cadence = Duration::from_secs_f64(10.0 / load);
    // Connections and handshakes first (a real fleet makes them once per connection
    // age), then `seconds` measured.
    let warmup = cadence + Duration::from_secs(2);
    let measure_from = Instant::now() + warmup;
    let until = measure_from + Duration::from_secs(seconds);
    let (pid, counters_port) = (server.pid, server.vmagent.as_ref().map(|_| server.port));
    let perf_file = perf_file.map(str::to_string);
    let before = std::thread::spawn(move || {
        std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
        let perf = perf_file.and_then(|f| start_perf(pid, &f));
        let counters = counters_port.map(vmagent_counters);
        (cpu_stat(pid, tps), counters, perf)
    });
    let report = match clients {
        Clients::Tls(certs) => {
            let fleet: Vec<_> = certs
                .iter()
                .enumerate()
                .map(|(i, tls)| (SimHost::new(i, "eu-west-1"), tls.clone()))
                .collect();
            runtime.block_on(drive_fleet(
                fleet,
                server.port,
                cadence,
                measure_from,
                until,
            ))
        }
        Clients::Plain => runtime.block_on(drive_plain(
            hosts,
            server.port,
            server.path,
            cadence,
            measure_from,
            until,
        )),
    };
    let loadavg = load_average();
    let (cpu_before, counters_before, perf) = before.join().expect("cpu sampler");
    if let Some(p) = perf {
        stop_perf(p);
    }
    std::thread::sleep(SETTLE);
    let cpu_after = cpu_stat(server.pid, tps);
    let (Some(cpu_before), Some(cpu_after)) = (cpu_before, cpu_after) else {
        panic!("{} (pid {}) is gone", server.name, server.pid);
    };
    let used = cpu_after - cpu_before;
    let note = match (server.vmagent.as_ref(), counters_before) {
        (Some(sink), Some(b)) => {
            let a = vmagent_counters(server.port);
            format!(
                "rows in {:.0}, forwarded {:.0}, on-disk buffer {:.0} B; sink so far {} requests, {:.1} MiB",
                a[0] - b[0],
                a[1] - b[1],
                a[2] - b[2],
                sink.requests.load(Ordering::Relaxed),
                sink.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
            )
        }
        _ => String::new(),
    };
    let wall = Duration::from_secs(seconds);
    let not_ok: u64 = report
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let offered = hosts as f64 * SERIES_PER_HOST as f64 / cadence.as_secs_f64();
    let run = Run {
        server: server.name,
        load,
        accepted_per_s: report.samples_accepted as f64 / wall.as_secs_f64(),
        cpu_per_million: used.as_secs_f64() / (report.samples_accepted as f64 / 1e6),
        p50_ms: report.ttfb_quantile(0.5).as_secs_f64() * 1e3,
        p99_ms: report.ttfb_quantile(0.99).as_secs_f64() * 1e3,
        not_ok,
        errors: report.errors,
        note,
    };
    println!(
        "| {} | {load}× | {offered:.0} | {:.0} | {:.3} | {:.1} ms | {:.1} ms | {} | {} | {loadavg} | {} |",
        run.server,
        run.accepted_per_s,
        run.cpu_per_million,
        run.p50_ms,
        run.p99_ms,
        run.not_ok,
        run.errors,
        run.note
    );
    run
}

/// Both servers per load: the mean over the rounds (the range in brackets).
fn side_by_side(runs: &[Run], loads: &[f64]) {
    println!();
    println!(
        "| load | gateway CPU-s per 1M | vmagent CPU-s per 1M | gateway ÷ vmagent | gateway TTFB p50 / p99 | vmagent TTFB p50 / p99 | gateway samples/s accepted | vmagent samples/s accepted |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &load in loads {
        let of = |name: &str| -> Vec<&Run> {
            runs.iter()
                .filter(|r| r.server == name && r.load == load)
                .collect()
        };
        let (g, v) = (of("gateway"), of("vmagent"));
        let mean = |rs: &[&Run], f: fn(&Run) -> f64| -> f64 {
            rs.iter().map(|r| f(r)).sum::<f64>() / rs.len().max(1) as f64
        };
        let range = |rs: &[&Run], f: fn(&Run) -> f64| -> String {
            let lo = rs.iter().map(|r| f(r)).fold(f64::INFINITY, f64::min);
            let hi = rs.iter().map(|r| f(r)).fold(f64::NEG_INFINITY, f64::max);
            format!("{:.2} ({lo:.2}–{hi:.2})", mean(rs, f))
        };
        let cpu = |r: &Run| r.cpu_per_million;
        let ttfb = |rs: &[&Run]| {
            format!(
                "{:.1} / {:.1} ms",
                mean(rs, |r| r.p50_ms),
                mean(rs, |r| r.p99_ms)
            )
        };
        println!(
            "| {load}× | {} | {} | {:.2} | {} | {} | {:.0} | {:.0} |",
            range(&g, cpu),
            range(&v, cpu),
            mean(&g, cpu) / mean(&v, cpu),
            ttfb(&g),
            ttfb(&v),
            mean(&g, |r| r.accepted_per_s),
            mean(&v, |r| r.accepted_per_s)
        );
    }
}

/// Every host at once over plain HTTP/1.1 with keep-alive, each push sent once at its
/// tick (or at once after the previous answer if that came late), as
/// [`edge_tests::fleet::drive_fleet`] does over mTLS.
async fn drive_plain(
    hosts: usize,
    port: u16,
    path: &'static str,
    cadence: Duration,
    measure_from: Instant,
    until: Instant,
) -> LoadReport {
    let tasks: Vec<_> = (0..hosts)
        .map(|i| {
            let host = SimHost::new(i, "eu-west-1");
            tokio::spawn(plain_host(host, port, path, cadence, measure_from, until))
        })
        .collect();
    let mut report = LoadReport::default();
    for t in tasks {
        if let Ok(r) = t.await {
            for (k, v) in r.statuses {
                *report.statuses.entry(k).or_default() += v;
            }
            report.errors += r.errors;
            report.samples_accepted += r.samples_accepted;
            report.answers.extend(r.answers);
        }
    }
    report
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect_plain(port: u16) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

async fn plain_host(
    mut host: SimHost,
    port: u16,
    path: &'static str,
    cadence: Duration,
    measure_from: Instant,
    until: Instant,
) -> LoadReport {
    let mut report = LoadReport::default();
    let start = Instant::now();
    let mut send: Option<Sender> = None;
    let mut due = start + cadence.mul_f64(fastrand::f64());
    while due < until {
        tokio::time::sleep_until(due.into()).await;
        // A connection the server closed while idle is opened again first.
        if send.as_ref().is_some_and(|s| s.is_closed()) {
            send = None;
        }
        if send.is_none() {
            send = tokio::time::timeout(SEND_TIMEOUT, connect_plain(port))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let request = host.write_request(now_ms());
        let series = request.timeseries.len() as u64;
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap_or_default();
        let sent = Instant::now();
        let reply = match send.as_mut() {
            Some(s) => tokio::time::timeout(SEND_TIMEOUT, push(s, port, path, Bytes::from(body)))
                .await
                .unwrap_or_else(|_| Err("no answer in time".into())),
            None => Err("no connection".into()),
        };
        match reply {
            Ok((status, ttfb)) => {
                if sent >= measure_from {
                    report.answers.push(edge_tests::fleet::Answered {
                        at: sent.saturating_duration_since(start).as_secs_f32(),
                        ttfb,
                        status,
                    });
                    *report.statuses.entry(status).or_default() += 1;
                    if (200..300).contains(&status) {
                        report.samples_accepted += series;
                    }
                }
            }
            Err(_) => {
                report.errors += 1;
                send = None;
            }
        }
        due += cadence;
        due = due.max(Instant::now());
    }
    report
}

/// One remote_write push; its status and time to first byte.
async fn push(
    send: &mut Sender,
    port: u16,
    path: &str,
    body: Bytes,
) -> Result<(u16, Duration), String> {
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .header(http::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    send.ready().await.map_err(|e| e.to_string())?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let ttfb = sent.elapsed();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok((status, ttfb))
}

/// Starts `moto_server` with a 2-shard stream `metrics`; the child and the sink's YAML.
fn start_moto(runtime: &tokio::runtime::Runtime) -> (Child, String) {
    let moto_port = free_port();
    let mut child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    wait_for_port(moto_port, "moto_server", &mut child);
    let url = format!("http://127.0.0.1:{moto_port}");
    runtime.block_on(async {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .build();
        aws_sdk_kinesis::Client::from_conf(config)
            .create_stream()
            .stream_name("metrics")
            .shard_count(2)
            .send()
            .await
            .expect("create stream");
    });
    (
        child,
        format!("{{ kind: kinesis, stream: metrics, region: us-east-1, endpoint_url: \"{url}\" }}"),
    )
}
