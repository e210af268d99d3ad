//! `edge-gateway relay` against a real local AWS API server (moto) and a stock
//! Prometheus: records put into the stream are counted in Prometheus with PromQL.
//! The relay is killed mid-stream and restarted, its target answers 503 for a while
//! (a proxy wrapping Prometheus), and the stream is split under it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::primitives::Blob;
use edge_gateway::relay::sequence_cmp;
use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use edge_tests::gates::metric_sum;
use edge_tests::moto::Moto;
use edge_tests::procs::{Proc, free_port, http_get};
use edge_tests::prometheus::Prometheus;
use http_body_util::Full;
use hyper::body::Bytes;
use prost::Message;
use support::AWS_TEST_ENV;

/// A record as the gateway writes them: a snappy `WriteRequest`, here with one sample
/// of `relay_seq_total{host}` whose value is its number `i` and whose timestamp is
/// `base + i` seconds, so a host's samples are in order.
fn record(host: &str, i: u32, base_ms: i64) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "relay_seq_total".into(),
                },
                Label {
                    name: "host".into(),
                    value: host.into(),
                },
            ],
            samples: vec![Sample {
                value: f64::from(i),
                timestamp: base_ms + i64::from(i) * 1000,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy")
}

/// Puts records `from..to`, spread over `hosts` hosts (partition key `game/hN`), and
/// returns where each went: (shard, sequence number).
async fn put(moto: &Moto, from: u32, to: u32, hosts: u32, base_ms: i64) -> Vec<(String, String)> {
    let k = moto.kinesis();
    let mut placed = Vec::new();
    for i in from..to {
        let host = format!("h{}", i % hosts);
        let out = k
            .put_record()
            .stream_name("metrics")
            .partition_key(format!("game/{host}"))
            .data(Blob::new(record(&host, i, base_ms)))
            .send()
            .await
            .expect("put record");
        placed.push((
            out.shard_id().to_string(),
            out.sequence_number().to_string(),
        ));
    }
    placed
}

fn base_ms() -> i64 {
    // Ten minutes ago, so 600 one-second steps stay in the past.
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        - 600_000
}

/// Samples of `relay_seq_total` in Prometheus.
async fn count(prometheus: &Prometheus) -> u64 {
    let result = prometheus
        .query_once("sum(count_over_time(relay_seq_total[1h]))")
        .await;
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn wait_for_count(prometheus: &Prometheus, want: u64, relay: &Proc, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let n = count(prometheus).await;
        if n == want {
            return;
        }
        assert!(n < want, "{n} samples, more than the {want} sent");
        assert!(
            Instant::now() < deadline,
            "{n} of {want} samples in Prometheus after {within:?}; relay log:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn relay_config(
    dir: &std::path::Path,
    moto: &Moto,
    target: &str,
    listen: u16,
) -> std::path::PathBuf {
    let file = dir.join("relay.yaml");
    std::fs::write(
        &file,
        format!(
            "relay:\n  stream: metrics\n  region: us-east-1\n  endpoint_url: \"{}\"\n  \
             checkpoint: {}/checkpoints.json\n  target: {{ url: \"{target}\" }}\n  \
             listen: 127.0.0.1:{listen}\n",
            moto.url(),
            dir.display()
        ),
    )
    .expect("relay config");
    file
}

fn start_relay(dir: &std::path::Path, config: &std::path::Path, run: u32) -> Proc {
    Proc::start(
        "edge-gateway",
        &["relay", "--config", &config.display().to_string()],
        AWS_TEST_ENV,
        dir.join(format!("relay-{run}.log")),
    )
}

/// The relay's `/metrics`: the sum of `name`'s series whose labels contain `with`.
async fn relay_metric(port: u16, name: &str, with: &str) -> f64 {
    match http_get(port, "/metrics").await {
        Ok((200, body)) => metric_sum(&String::from_utf8_lossy(&body), name, with),
        _ => 0.0,
    }
}

/// A proxy in front of Prometheus: 503 + `Retry-After: 1` while `failing`, and every
/// forwarded request held `delay`, so the relay is slow enough to be killed midway.
async fn flaky_proxy(
    listener: tokio::net::TcpListener,
    upstream: u16,
    failing: Arc<AtomicBool>,
    delay: Duration,
) {
    support::serve_fn(listener, move |parts, body| {
        let failing = failing.clone();
        async move {
            if failing.load(Ordering::SeqCst) {
                let mut resp = http::Response::new(Full::new(Bytes::from("unavailable")));
                *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                resp.headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("1"));
                return Ok(resp);
            }
            tokio::time::sleep(delay).await;
            Ok(support::forward(upstream, parts, body.to_vec()).await)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_midway_and_a_target_down_for_a_while_lose_no_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start();
    moto.create_stream("metrics", 2).await;
    let prometheus = Prometheus::start(dir.path()).await;
    let failing = Arc::new(AtomicBool::new(true));
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_port = proxy.local_addr().expect("addr").port();
    tokio::spawn(flaky_proxy(
        proxy,
        prometheus.port,
        failing.clone(),
        Duration::from_millis(40),
    ));
    let base = base_ms();
    let mut placed = put(&moto, 0, 40, 8, base).await;

    let metrics_port = free_port();
    let config = relay_config(
        dir.path(),
        &moto,
        &format!("http://127.0.0.1:{proxy_port}/api/v1/write"),
        metrics_port,
    );
    let mut relay = start_relay(dir.path(), &config, 1);

    // The target answers 503: the relay retries and nothing is skipped or lost.
    let deadline = Instant::now() + Duration::from_secs(120);
    while relay_metric(
        metrics_port,
        "edge_relay_retries_total",
        "reason=\"target\"",
    )
    .await
        < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "no retries against the 503 target; log:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&prometheus).await, 0, "nothing passes a 503");
    failing.store(false, Ordering::SeqCst);

    // The relay merges what one GetRecords returns into one request: the first 40
    // arrive together. The rest trickle in, so the relay is killed while records are
    // still arriving.
    wait_for_count(&prometheus, 40, &relay, Duration::from_secs(120)).await;
    let trickle = async {
        let mut placed = Vec::new();
        for from in (40..100).step_by(5) {
            placed.extend(put(&moto, from, from + 5, 8, base).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        placed
    };
    let (trickled, ()) = tokio::join!(trickle, async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = count(&prometheus).await;
            if n >= 55 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{n} samples while records trickle in; log:\n{}",
                relay.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let skipped = relay_metric(metrics_port, "edge_relay_records_skipped_total", "").await;
        assert_eq!(skipped, 0.0, "records skipped; log:\n{}", relay.log());
        relay.kill();
    });
    placed.extend(trickled);

    // A request the proxy held at the kill still reaches Prometheus: count once the
    // count stands still.
    let mut at_kill = count(&prometheus).await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = count(&prometheus).await;
        if now == at_kill {
            break;
        }
        at_kill = now;
    }
    assert!(at_kill < 100, "{at_kill}");
    // What the killed relay delivered past its checkpoints: the request in flight at
    // the kill, which the restarted relay sends again.
    let checkpoints: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("checkpoints.json")).expect("checkpoint file"),
    )
    .expect("checkpoint JSON");
    let checkpointed = placed
        .iter()
        .filter(|(shard, seq)| {
            checkpoints["shards"][shard]["after"]
                .as_str()
                .is_some_and(|after| sequence_cmp(seq, after).is_le())
        })
        .count() as u64;
    let in_flight = at_kill.saturating_sub(checkpointed);

    // More records arrive while it is down; the restarted relay resumes.
    put(&moto, 100, 150, 8, base).await;
    let relay = start_relay(dir.path(), &config, 2);
    wait_for_count(&prometheus, 150, &relay, Duration::from_secs(60)).await;
    // Sent again, a record Prometheus already has may be refused (`out of order
    // sample`: the host has newer ones) and skipped. Only those: every other record
    // was taken, as the exact count shows.
    let skipped = relay_metric(metrics_port, "edge_relay_records_skipped_total", "").await;
    eprintln!(
        "killed at {at_kill} delivered, {checkpointed} checkpointed: {in_flight} in flight, \
         {skipped} skipped after the restart"
    );
    assert!(
        skipped <= in_flight as f64,
        "{skipped} records skipped, {in_flight} were in flight at the kill \
         ({checkpointed} of {at_kill} delivered were checkpointed); log:\n{}",
        relay.log()
    );
    let freshness = relay_metric(metrics_port, "edge_relay_freshness_seconds_count", "").await;
    assert!(freshness > 0.0, "no freshness observed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_shard_is_followed_into_its_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start();
    moto.create_stream("metrics", 1).await;
    let prometheus = Prometheus::start(dir.path()).await;
    let base = base_ms();
    put(&moto, 0, 20, 10, base).await;
    let metrics_port = free_port();
    let config = relay_config(dir.path(), &moto, &prometheus.write_url(), metrics_port);
    let relay = start_relay(dir.path(), &config, 1);
    wait_for_count(&prometheus, 20, &relay, Duration::from_secs(30)).await;
    // A load balancer's health check and a scraper reach the relay's plain port.
    for (path, want) in [
        ("/ready", "ready"),
        ("/metrics", "edge_relay_records_forwarded_total"),
    ] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{metrics_port}{path}"))
            .output()
            .expect("run curl (Debian package curl)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.ends_with("\n200") && text.contains(want),
            "{path}: {text}"
        );
    }

    let k = moto.kinesis();
    k.split_shard()
        .stream_name("metrics")
        .shard_to_split("shardId-000000000000")
        // Half of the 128-bit hash key space.
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("split the shard");
    let shards = k
        .list_shards()
        .stream_name("metrics")
        .send()
        .await
        .expect("list shards");
    let children: Vec<String> = shards
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some("shardId-000000000000"))
        .map(|s| s.shard_id().to_string())
        .collect();
    assert_eq!(children.len(), 2, "{shards:?}");

    put(&moto, 20, 60, 10, base).await;
    wait_for_count(&prometheus, 60, &relay, Duration::from_secs(60)).await;

    let checkpoints: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("checkpoints.json")).expect("checkpoint file"),
    )
    .expect("JSON");
    assert_eq!(
        checkpoints["shards"]["shardId-000000000000"], "finished",
        "{checkpoints}"
    );
    for child in &children {
        assert!(
            checkpoints["shards"][child]["after"].is_string(),
            "{child} not checkpointed: {checkpoints}"
        );
        let forwarded = relay_metric(
            metrics_port,
            "edge_relay_records_forwarded_total",
            &format!("shard=\"{child}\""),
        )
        .await;
        assert!(forwarded > 0.0, "nothing forwarded from {child}");
    }
}
