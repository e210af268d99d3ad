//! The whole metrics path with real parts: the game's exporter → `edge-agent` → mTLS →
//! `edge-gateway` → Kinesis on a local AWS API server (moto) → `edge-gateway relay` → a
//! stock Prometheus. PromQL then returns the host metrics under the host's labels, and
//! the p99 of a native histogram recorded at the edge, within the histogram's error.

use std::time::{Duration, Instant};

use edge_exporter::histogram::ExpHistogram;
use edge_exporter::registry::Registry;
use edge_tests::moto::Moto;
use edge_tests::prometheus::Prometheus;
use edge_tests::rig::{AgentOptions, AgentRig, Certs, GatewayOptions, GatewayRig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_to_gateway_to_kinesis_to_relay_to_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let certs = Certs::generate(d);
    let moto = Moto::start();
    moto.create_stream("metrics", 2).await;
    let prom_dir = d.join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("dir");
    let prometheus = Prometheus::start(&prom_dir).await;

    let gateway = GatewayRig::start(
        &certs,
        GatewayOptions::kinesis_relay(&moto.url(), &prometheus.write_url()),
    );
    let agent = AgentRig::start(&certs, &gateway, AgentOptions::new());
    let agent_listen = agent.listen;

    // The game records tick durations of 1..=1000 ms and pushes them to the agent.
    let registry = Registry::new();
    let ticks = registry
        .histogram("game_tick_duration_seconds", "Duration of one server tick.")
        .expect("catalog family");
    let tick = ticks.with(&[("shard_id", "1")]).expect("allowed series");
    for ms in 1..=1000 {
        tick.record(f64::from(ms) / 1000.0);
    }
    let push_url = format!("http://127.0.0.1:{agent_listen}/api/v1/push");
    let pushed = tokio::task::spawn_blocking(move || {
        edge_exporter::push::push_once(&registry, &push_url, Duration::from_secs(5))
            .map(|()| registry)
    })
    .await
    .expect("push task")
    .expect("push to the agent");

    // What the edge recorded: the histogram as the exporter sent it.
    let sent = pushed.write_request(0);
    let proto = sent
        .timeseries
        .iter()
        .find(|s| {
            s.labels
                .iter()
                .any(|l| l.value == "game_tick_duration_seconds")
        })
        .and_then(|s| s.histograms.first())
        .expect("the pushed native histogram");
    let edge = ExpHistogram::from_native(
        &edge_exporter::export::proto_to_native(proto).expect("integer native histogram"),
    )
    .expect("a valid histogram");
    let edge_p99 = edge.quantile(0.99).expect("p99");
    // One bucket's relative width at this scale bounds both estimates' error.
    let bound = 2f64.powf(2f64.powi(-edge.scale())) - 1.0;

    let logs = || format!("{}{}", agent.logs(), gateway.logs());
    let deadline = Instant::now() + Duration::from_secs(120);
    let query = async |promql: &str| loop {
        let result = prometheus.query_once(promql).await;
        if let Some(first) = result.as_array().and_then(|r| r.first()) {
            let value = first["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a number");
            return (value, first["metric"].clone());
        }
        assert!(
            Instant::now() < deadline,
            "no result for {promql} within 120 s{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let (load, labels) = query("node_load1").await;
    assert!(load >= 0.0);
    assert_eq!(labels["region"], "eu-test-1", "host labels: {labels}");
    assert_eq!(labels["cluster"], "c1", "host labels: {labels}");
    let (modes, _) = query("count(node_cpu_seconds_total)").await;
    assert_eq!(modes, 8.0, "one CPU series per mode");
    let (count, _) = query("histogram_count(game_tick_duration_seconds{shard_id=\"1\"})").await;
    assert_eq!(count, 1000.0);
    let (p99, _) =
        query("histogram_quantile(0.99, game_tick_duration_seconds{shard_id=\"1\"})").await;
    assert!(
        (p99 - 0.99).abs() <= 0.99 * bound && (p99 - edge_p99).abs() <= edge_p99 * bound,
        "PromQL p99 {p99}, edge p99 {edge_p99}, true 0.99, bound {:.1}% (scale {})",
        bound * 100.0,
        edge.scale()
    );
}
