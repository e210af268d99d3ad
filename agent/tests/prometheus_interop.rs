//! Interop with a stock Prometheus (Debian's `prometheus` package, remote-write
//! receiver and native histograms enabled): the agent sends straight into it, and PromQL
//! reads back host metrics under node_exporter's names and a pushed native histogram.

mod support;

use std::time::Duration;

use edge_exporter::registry::Registry;
use edge_tests::prometheus::Prometheus;
use support::Agent;

#[tokio::test]
async fn a_stock_prometheus_reads_the_agents_metrics_and_native_histograms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path()).await;
    let url = prometheus.write_url();
    let agent = Agent::start(
        dir.path(),
        &[url],
        "host_metrics: { enabled: true, filesystems: [/], interfaces: [lo] }\n",
    );

    // The game records tick durations of 1..=1000 ms and pushes through the agent.
    let registry = Registry::new();
    let ticks = registry
        .histogram("game_tick_duration_seconds", "Duration of one server tick.")
        .expect("catalog family");
    let tick = ticks.with(&[("shard_id", "1")]).expect("allowed series");
    for ms in 1..=1000 {
        tick.record(f64::from(ms) / 1000.0);
    }
    let push_url = format!("http://{}/api/v1/push", agent.listen);
    edge_exporter::push::push_once(&registry, &push_url, Duration::from_secs(5)).expect("push");

    let wait = Duration::from_secs(30);
    let (load, labels) = prometheus.query("node_load1", wait).await;
    assert!(load >= 0.0);
    assert_eq!(labels["region"], "test-1", "host labels: {labels}");
    let (cpu_modes, _) = prometheus
        .query("count(node_cpu_seconds_total)", wait)
        .await;
    assert_eq!(cpu_modes, 8.0, "CPU summed over cores, one series per mode");
    let (count, _) = prometheus
        .query(
            "histogram_count(game_tick_duration_seconds{shard_id=\"1\"})",
            wait,
        )
        .await;
    assert_eq!(count, 1000.0);
    let (median, _) = prometheus
        .query(
            "histogram_quantile(0.5, game_tick_duration_seconds{shard_id=\"1\"})",
            wait,
        )
        .await;
    // Scale 2 buckets are within 9% of any value: the true median is 0.5 s.
    assert!((median - 0.5).abs() < 0.05, "median {median}");
    let (p99, _) = prometheus
        .query(
            "histogram_quantile(0.99, game_tick_duration_seconds{shard_id=\"1\"})",
            wait,
        )
        .await;
    assert!((p99 - 0.99).abs() < 0.09, "p99 {p99}");
    let (active, _) = prometheus.query("edge_active_series", wait).await;
    assert!(
        active > 50.0 && active <= 300.0,
        "edge_active_series {active}"
    );
}
