//! Relay catch-up: a regional backlog already in the stream, drained by one relay into a
//! local counting remote_write endpoint. Reports records/s, samples/s and the relay's
//! CPU-seconds per million samples.
//!
//! `cargo bench -p edge-gateway --bench relay_catchup [-- --samples 3000000 --shards 4 --hosts 1700]`
//!
//! The backlog is what a region's gateways write: each record one host's push of 300
//! series (counters, gauges and native histograms, `edge_tests::fleet::SimHost`), a
//! snappy `WriteRequest`, spread over the hosts' partition keys. It is put into a
//! Kinesis stream on a local AWS API server (`moto_server`, started here; it also holds
//! the relay's lease table) before the relay starts; then the relay, built in release,
//! runs with `leases` and the default `max_batch_bytes` until the endpoint has counted
//! every sample. The relay's CPU is its threads' on-CPU time (`/proc/<pid>/task/*/schedstat`);
//! moto and the endpoint share the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use edge_schema::proto::prometheus::WriteRequest;
use edge_tests::fleet::SimHost;
use edge_tests::moto::{AWS_TEST_ENV, Moto};
use edge_tests::procstat::cpu;
use http_body_util::Full;
use hyper::body::Bytes;
use prost::Message;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn samples_of(request: &WriteRequest) -> u64 {
    request
        .timeseries
        .iter()
        .map(|t| (t.samples.len() + t.histograms.len()) as u64)
        .sum()
}

/// Counts the samples and requests it is sent; answers 204.
async fn counting_endpoint(
    listener: tokio::net::TcpListener,
    samples: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
) {
    edge_tests::proxy::serve_fn(listener, move |_parts, body| {
        let (samples, requests) = (samples.clone(), requests.clone());
        async move {
            let n = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .ok()
                .and_then(|raw| WriteRequest::decode(raw.as_slice()).ok())
                .map_or(0, |r| samples_of(&r));
            samples.fetch_add(n, Ordering::SeqCst);
            requests.fetch_add(1, Ordering::SeqCst);
            let mut resp = http::Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = http::StatusCode::NO_CONTENT;
            Ok(resp)
        }
    })
    .await;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("relay_catchup: benchmark");
        return;
    }
    let want: u64 = arg("--samples", "3000000").parse().expect("--samples N");
    let shards: i32 = arg("--shards", "4").parse().expect("--shards N");
    let hosts: usize = arg("--hosts", "1700").parse().expect("--hosts N");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start();
    runtime.block_on(moto.create_stream("metrics", shards));

    // The backlog: pushes of every host in turn, 10 s apart, until `want` samples.
    eprintln!("putting a backlog of {want} samples into a {shards}-shard stream…");
    let started = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut fleet: Vec<SimHost> = (0..hosts).map(|i| SimHost::new(i, "eu-west-1")).collect();
    let (mut total_samples, mut records, mut bytes) = (0u64, 0u64, 0u64);
    let kinesis = moto.kinesis();
    let mut round = 0i64;
    runtime.block_on(async {
        let mut batch: Vec<PutRecordsRequestEntry> = Vec::new();
        let mut batch_bytes = 0usize;
        'fill: loop {
            for host in fleet.iter_mut() {
                let request = host.write_request(now_ms - 600_000 + round * 10_000);
                total_samples += samples_of(&request);
                let data = snap::raw::Encoder::new()
                    .compress_vec(&request.encode_to_vec())
                    .expect("snappy");
                records += 1;
                bytes += data.len() as u64;
                batch_bytes += data.len();
                batch.push(
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("game/{}", host.name))
                        .data(Blob::new(data))
                        .build()
                        .expect("entry"),
                );
                // PutRecords: at most 500 records and 5 MiB.
                if batch.len() == 500 || batch_bytes > (4 << 20) {
                    let out = kinesis
                        .put_records()
                        .stream_name("metrics")
                        .set_records(Some(std::mem::take(&mut batch)))
                        .send()
                        .await
                        .expect("PutRecords");
                    assert_eq!(out.failed_record_count(), Some(0));
                    batch_bytes = 0;
                }
                if total_samples >= want {
                    break 'fill;
                }
            }
            round += 1;
        }
        if !batch.is_empty() {
            kinesis
                .put_records()
                .stream_name("metrics")
                .set_records(Some(batch))
                .send()
                .await
                .expect("PutRecords");
        }
    });
    eprintln!(
        "backlog: {records} records, {total_samples} samples, {:.1} MiB, put in {:.0?}",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed()
    );

    let samples = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    runtime.spawn(counting_endpoint(
        listener,
        samples.clone(),
        requests.clone(),
    ));
    let metrics = edge_tests::procs::free_port();
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        format!(
            "relay:\n  stream: metrics\n  region: us-east-1\n  endpoint_url: \"{}\"\n  \
             leases: {{ table: edge-relay-leases }}\n  \
             target: {{ url: \"http://127.0.0.1:{port}/api/v1/write\" }}\n  \
             listen: 127.0.0.1:{metrics}\n",
            moto.url()
        ),
    )
    .expect("config");
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["relay", "--config"])
        .arg(&config)
        .envs(AWS_TEST_ENV.iter().copied())
        .env("EDGE_GATEWAY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start edge-gateway relay");
    let pid = child.id();
    let deadline = started + Duration::from_secs(3600);
    let mut last_report = Instant::now();
    while samples.load(Ordering::SeqCst) < total_samples {
        assert!(Instant::now() < deadline, "not drained within an hour");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the relay exited: {status}");
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {:.0?}: {} of {total_samples} samples",
                started.elapsed(),
                samples.load(Ordering::SeqCst)
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed();
    let used = cpu(pid);
    let got = samples.load(Ordering::SeqCst);
    let posts = requests.load(Ordering::SeqCst);
    println!(
        "| backlog samples | records | MiB (snappy) | shards | drained in | records/s | samples/s | relay CPU-s per 1M samples | requests | samples/request |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {total_samples} | {records} | {:.1} | {shards} | {:.1} s | {:.0} | {:.0} | {:.3} | {posts} | {:.0} |",
        bytes as f64 / (1 << 20) as f64,
        wall.as_secs_f64(),
        records as f64 / wall.as_secs_f64(),
        got as f64 / wall.as_secs_f64(),
        used.as_secs_f64() / (got as f64 / 1e6),
        got as f64 / posts.max(1) as f64
    );
    println!(
        "relay CPU {:.1} s over {:.1} s wall; peak RSS {:.1} MiB",
        used.as_secs_f64(),
        wall.as_secs_f64(),
        edge_tests::procstat::peak_rss(pid) as f64 / (1 << 20) as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}
