//! The gateway under a simulated region: 1,700 hosts, each on its own mTLS HTTP/2
//! connection with keep-alive, pushing 300 series (native histograms included) every
//! cadence, at the seed's 1×, 3× and 5× regional loads (about 50k, 150k and 250k
//! samples/s), into the file sink. Reports the gateway's CPU per million samples
//! accepted and the time to first byte at p50 and p99.
//!
//! `cargo bench -p edge-gateway --bench ingest_load [-- --hosts 1700 --seconds 30 --loads 1,3,5 --sink file|kinesis]`
//!
//! With `--sink kinesis` the gateway writes to a Kinesis stream (2 shards) on a local
//! AWS API server (`moto_server`, started here), which then shares the machine too.
//!
//! The gateway's CPU is its threads' on-CPU time (`/proc/<pid>/task/*/schedstat`) over
//! each run, after every host has connected; the load generator runs in this
//! process, on the same machine.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_tests::fleet::{SimHost, client_tls, drive_fleet};
use edge_tests::pki::Pki;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

use edge_tests::procstat::cpu;

fn rss_mib(pid: u32) -> f64 {
    edge_tests::procstat::peak_rss(pid) as f64 / (1 << 20) as f64
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
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = Pki::new(d).expect("pki");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let sink = arg("--sink", "file");
    let mut moto = None;
    let metrics_sink = match sink.as_str() {
        "file" => format!("{{ kind: file, dir: {}/spool }}", d.display()),
        "kinesis" => {
            let moto_port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("port")
                .port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server (pip install 'moto[server]')");
            moto = Some(child);
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", moto_port)).is_err() {
                assert!(Instant::now() < deadline, "moto_server did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            let url = format!("http://127.0.0.1:{moto_port}");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async {
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
            format!(
                "{{ kind: kinesis, stream: metrics, region: us-east-1, endpoint_url: \"{url}\" }}"
            )
        }
        other => panic!("--sink {other}: file or kinesis"),
    };
    std::fs::write(
        d.join("fleet-labels.yaml"),
        edge_tests::fleet::fleet_policy_yaml(),
    )
    .expect("policy");
    let config = format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/server.crt, key: {d}/server.key, client_ca: {d}/ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal }}\n\
         policy: {d}/fleet-labels.yaml\n\
         tenants:\n  default: {{ samples_rate_limit: 100000000, burst: 100000000 }}\n\
         sinks: {{ metrics: {metrics_sink}, logs: {{ kind: file, dir: {d}/spool }} }}\n",
        d = d.display()
    );
    std::fs::write(d.join("gateway.yaml"), config).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
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
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("issuing {hosts} client certificates…");
    let certs: Vec<_> = (0..hosts)
        .map(|i| {
            let cert = pki.client(&format!("gs-{i}"), "game").expect("client cert");
            client_tls(&pki.ca_der, &cert).expect("client tls")
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| load | samples/s offered | samples/s accepted | gateway CPU-s per 1M samples | TTFB p50 | TTFB p99 | non-2xx | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for load in loads {
        let cadence = Duration::from_secs_f64(10.0 / load);
        let fleet: Vec<_> = certs
            .iter()
            .enumerate()
            .map(|(i, tls)| (SimHost::new(i, "eu-west-1"), tls.clone()))
            .collect();
        // Connections and handshakes first (a real fleet makes them once per connection
        // age), then `seconds` measured.
        let warmup = cadence + Duration::from_secs(2);
        let measure_from = Instant::now() + warmup;
        let until = measure_from + Duration::from_secs(seconds);
        let before = std::thread::spawn(move || {
            std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
            cpu(pid)
        });
        let report = runtime.block_on(drive_fleet(fleet, port, cadence, measure_from, until));
        let used = cpu(pid) - before.join().expect("cpu sampler");
        let wall = Duration::from_secs(seconds);
        let not_ok: u64 = report
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        let offered = hosts as f64 * 300.0 / cadence.as_secs_f64();
        println!(
            "| {load}× | {offered:.0} | {:.0} | {:.3} | {:.1} ms | {:.1} ms | {not_ok} | {} |",
            report.samples_accepted as f64 / wall.as_secs_f64(),
            used.as_secs_f64() / (report.samples_accepted as f64 / 1e6),
            report.ttfb_quantile(0.5).as_secs_f64() * 1e3,
            report.ttfb_quantile(0.99).as_secs_f64() * 1e3,
            report.errors
        );
    }
    println!("sink: {sink}; gateway peak RSS: {:.1} MiB", rss_mib(pid));
    let _ = child.kill();
    let _ = child.wait();
    if let Some(mut m) = moto {
        let _ = m.kill();
        let _ = m.wait();
    }
}
