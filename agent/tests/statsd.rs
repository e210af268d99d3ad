//! statsd from a stock client (Datadog's `datadog` Python package, DogStatsD over UDP)
//! into a real agent, read back from a stock Prometheus: counters, gauges and a timer as
//! a native histogram; a forbidden tag folded into overflow; a datagram of garbage
//! counted while the next line passes.

mod support;

use std::process::Command;
use std::time::Duration;

use edge_tests::prometheus::Prometheus;
use support::{Agent, free_port};

/// Generous: every query returns as soon as its answer is there.
const WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_stock_dogstatsd_client_reaches_prometheus_through_the_gate() {
    let probe = Command::new("python3")
        .args(["-c", "import datadog"])
        .status()
        .expect("python3");
    assert!(
        probe.success(),
        "the `datadog` Python package is missing: pip install datadog (scripts/test installs it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path()).await;
    let port = free_port();
    let agent = Agent::start(
        dir.path(),
        &[prometheus.write_url()],
        &format!("statsd: {{ listen: 127.0.0.1:{port} }}\n"),
    );
    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/statsd_client.py"
    );
    let out = Command::new("python3")
        .args([client, "127.0.0.1", &port.to_string()])
        .output()
        .expect("run the client");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each query waits for the full figure: a cycle's flush may fall mid-stream.
    let labels = prometheus
        .query_until("game_kills_total{shard_id=\"3\"}", 7.0, WAIT)
        .await;
    assert_eq!(labels["region"], "test-1", "host labels: {labels}");
    prometheus.query_until("game_players", 42.0, WAIT).await;
    prometheus
        .query_until(
            "histogram_count(game_tick_seconds{shard_id=\"1\"})",
            1000.0,
            WAIT,
        )
        .await;
    let (median, _) = prometheus
        .query(
            "histogram_quantile(0.5, game_tick_seconds{shard_id=\"1\"})",
            WAIT,
        )
        .await;
    // Within the bucket bound of the true median (0.5 s): scale 3 buckets are 9% wide.
    assert!((median - 0.5).abs() <= 0.5 * 0.09, "median {median}");
    let labels = prometheus.query_until("game_errors_total", 1.0, WAIT).await;
    assert_eq!(labels["edge_overflow"], "true", "{labels}");
    let leaked = prometheus.query_once("{player_id!=\"\"}").await;
    assert_eq!(
        leaked.as_array().map(Vec::len),
        Some(0),
        "a forbidden tag left the host: {leaked}"
    );
    // The line after the garbage passes.
    prometheus
        .query_until("after_garbage_total", 1.0, WAIT)
        .await;
    assert_eq!(
        agent.metric("edge_statsd_lines_total{result=\"malformed\"}"),
        Some(1.0)
    );
    assert!(
        agent.log_text().contains("statsd line refused"),
        "the malformed line is logged"
    );
}
