//! Interop with a stock Prometheus (Debian's `prometheus` package, remote-write
//! receiver and native histograms enabled): the agent sends straight into it, and PromQL
//! reads back host metrics under node_exporter's names and a pushed native histogram.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_exporter::registry::Registry;
use support::{Agent, free_port};

struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &std::path::Path) -> Prometheus {
    let binary = std::env::var("EDGE_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global: { scrape_interval: 15s }\n").expect("write config");
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--enable-feature=native-histograms")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{binary}` ({e}): this test needs a stock Prometheus; install \
                 Debian's package (apt-get install prometheus) or set EDGE_PROMETHEUS, as \
                 scripts/test does"
            )
        });
    Prometheus { child, port }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query until it returns a sample; the value of the first one.
async fn query(port: u16, promql: &str, timeout: Duration) -> (f64, serde_json::Value) {
    let deadline = Instant::now() + timeout;
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        encode(promql)
    );
    let mut last = String::new();
    loop {
        if let Ok((200, body)) = edge_agent::plain_http::request(
            http::Method::GET,
            &url,
            &[],
            Duration::from_secs(5),
            1 << 20,
        )
        .await
        {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
            if let Some(first) = v["data"]["result"].as_array().and_then(|r| r.first()) {
                let value = first["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .expect("a numeric value");
                return (value, first["metric"].clone());
            }
            last = String::from_utf8_lossy(&body).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no result for {promql} within {timeout:?}; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_stock_prometheus_reads_the_agents_metrics_and_native_histograms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = start_prometheus(dir.path());
    // Wait for Prometheus to be up.
    let ready = format!("http://127.0.0.1:{}/-/ready", prometheus.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(
        edge_agent::plain_http::request(
            http::Method::GET,
            &ready,
            &[],
            Duration::from_secs(1),
            4096
        )
        .await,
        Ok((200, _))
    ) {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not become ready; see its log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("http://127.0.0.1:{}/api/v1/write", prometheus.port);
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
    let (load, labels) = query(prometheus.port, "node_load1", wait).await;
    assert!(load >= 0.0);
    assert_eq!(labels["region"], "test-1", "host labels: {labels}");
    let (cpu_modes, _) = query(prometheus.port, "count(node_cpu_seconds_total)", wait).await;
    assert_eq!(cpu_modes, 8.0, "CPU summed over cores, one series per mode");
    let (count, _) = query(
        prometheus.port,
        "histogram_count(game_tick_duration_seconds{shard_id=\"1\"})",
        wait,
    )
    .await;
    assert_eq!(count, 1000.0);
    let (median, _) = query(
        prometheus.port,
        "histogram_quantile(0.5, game_tick_duration_seconds{shard_id=\"1\"})",
        wait,
    )
    .await;
    // Scale 2 buckets are within 9% of any value: the true median is 0.5 s.
    assert!((median - 0.5).abs() < 0.05, "median {median}");
    let (p99, _) = query(
        prometheus.port,
        "histogram_quantile(0.99, game_tick_duration_seconds{shard_id=\"1\"})",
        wait,
    )
    .await;
    assert!((p99 - 0.99).abs() < 0.09, "p99 {p99}");
    let (active, _) = query(prometheus.port, "edge_active_series", wait).await;
    assert!(
        active > 50.0 && active <= 300.0,
        "edge_active_series {active}"
    );
}
