//! The real agent into the real gateway over mTLS (certificates made here), with the
//! file sink: host metrics arrive under the agent's tenant and host, the game's log
//! lines arrive as documents, and no PII value from the log is anywhere in the spool.
//!
//! Both binaries come from the workspace's target directory (`cargo test --workspace`
//! builds them).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::WriteRequest;
use edge_tests::pki::{file_sinks_yaml, gateway_yaml_head};
use edge_tests::procs::{Proc, free_port};
use prost::Message;

const PII: &[&str] = &[
    "carol.jones@example.org",
    "198.51.100.23",
    "2001:db8:85a3::8a2e:370:7334",
    "p-55501234",
];

#[test]
fn agent_metrics_and_tokenized_logs_reach_the_gateway_spool_over_mtls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = edge_tests::pki::Pki::new(d).expect("pki");
    pki.write_client(d, "gs-1", "game").expect("client cert");
    let port = free_port();
    let gateway_yaml = d.join("gateway.yaml");
    std::fs::write(
        &gateway_yaml,
        format!("{}{}", gateway_yaml_head(port, d), file_sinks_yaml(d)),
    )
    .expect("gateway config");
    let gateway = Proc::start(
        "edge-gateway",
        &["--config", &gateway_yaml.display().to_string()],
        &[],
        d.join("gateway.log"),
    );
    gateway.wait_for_port(port);

    let log = d.join("game.log");
    std::fs::write(&log, "").expect("log");
    std::fs::write(d.join("tokenize.key"), "e2e-key-0123456789abcdef\n").expect("key");
    let agent_yaml = d.join("agent.yaml");
    std::fs::write(
        &agent_yaml,
        format!(
            "host_labels: {{ region: eu-test-1, cluster: c1, build_id: b1 }}\n\
             cadence: 1s\nincident_cadence: 1s\n\
             listen: 127.0.0.1:{listen}\n\
             host_metrics: {{ enabled: true, filesystems: [/], disks: [], interfaces: [lo] }}\n\
             logs:\n  - {{ path: \"{d}/game.log\", service: game, parser: json, read_from: beginning }}\n\
             tokenize: {{ key_file: {d}/tokenize.key, detectors: [email, ipv4, ipv6, {{ name: player_id, pattern: 'p-[0-9]{{6,}}', action: tokenize }}] }}\n\
             output:\n  metrics_url: https://localhost:{port}/api/v1/push\n  logs_url: https://localhost:{port}/v1/logs\n  \
             tls: {{ cert: {d}/agent.crt, key: {d}/agent.key, ca: {d}/ca.crt }}\n\
             queue: {{ dir: {d}/queue }}\n",
            listen = free_port(),
            d = d.display()
        ),
    )
    .expect("agent config");
    let agent = Proc::start(
        "edge-agent",
        &["--config", &agent_yaml.display().to_string()],
        &[],
        d.join("agent.log"),
    );

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open log");
    for (i, pii) in PII.iter().enumerate() {
        writeln!(
            f,
            r#"{{"level":"warn","msg":"e2e line {i}: login from {pii}","player_id":"{}"}}"#,
            PII[3]
        )
        .expect("write");
    }
    f.flush().expect("flush");

    // Wait for the metrics and every log line to be in the spool.
    let spool = d.join("spool");
    let deadline = Instant::now() + Duration::from_secs(120);
    let (metrics, logs) = loop {
        let metrics = edge_gateway_spool(&spool, "metrics");
        let logs = edge_gateway_spool(&spool, "logs");
        let lines = logs
            .iter()
            .filter(|(_, d)| String::from_utf8_lossy(d).contains("e2e line"))
            .count();
        let cpu = metrics.iter().any(|(_, d)| {
            WriteRequest::decode(d.as_slice())
                .map(|r| {
                    r.timeseries.iter().any(|s| {
                        s.labels
                            .iter()
                            .any(|l| l.name == "__name__" && l.value == "node_cpu_seconds_total")
                    })
                })
                .unwrap_or(false)
        });
        if cpu && lines >= PII.len() {
            break (metrics, logs);
        }
        assert!(
            Instant::now() < deadline,
            "not everything arrived ({} metrics records, {lines} log lines)\nagent: {}\ngateway: {}",
            metrics.len(),
            agent.log(),
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Metrics are keyed by the certificate's tenant and host and carry the host labels.
    assert!(
        metrics.iter().all(|(k, _)| k == "game/gs-1"),
        "keys: {:?}",
        metrics.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let first = WriteRequest::decode(metrics[0].1.as_slice()).expect("WriteRequest");
    assert!(
        first.timeseries[0]
            .labels
            .iter()
            .any(|l| l.name == "region" && l.value == "eu-test-1"),
        "{:?}",
        first.timeseries[0].labels
    );
    // Log documents: the design's shape, tenant from the certificate, PII tokenized.
    let doc: serde_json::Value = logs
        .iter()
        .find_map(|(_, d)| {
            let v: serde_json::Value = serde_json::from_slice(d).ok()?;
            v["message"]
                .as_str()?
                .starts_with("e2e line 0")
                .then_some(v)
        })
        .expect("the first line as a document");
    assert_eq!(doc["level"], "warn");
    assert_eq!(doc["service"], "game");
    assert_eq!(doc["tenant"], "game");
    assert_eq!(doc["attributes"]["region"], "eu-test-1");
    assert!(
        doc["message"].as_str().is_some_and(|m| m.contains("tok_")),
        "{doc}"
    );
    let (leaked, _) = edge_tests::gates::pii_in_spool(&spool, PII);
    assert!(leaked.is_empty(), "{leaked:?} reached the gateway's spool");
}

fn edge_gateway_spool(dir: &Path, stream: &str) -> Vec<(String, Vec<u8>)> {
    match edge_gateway::sink::file::read_spool(dir, stream) {
        Ok((records, _)) => records.into_iter().map(|r| (r.key, r.data)).collect(),
        Err(_) => Vec::new(),
    }
}
