//! The real agent into the real gateway over mTLS (certificates made here), with the
//! file sink: host metrics arrive under the agent's tenant and host, the game's log
//! lines arrive as documents, logs posted straight to the gateway (no agent) arrive
//! tokenized with the agent's tokens, and no PII value is anywhere in the spool.
//!
//! Both binaries come from the workspace's target directory (`cargo test --workspace`
//! builds them).

use std::io::Write;
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::WriteRequest;
use edge_tests::rig::{AgentOptions, AgentRig, Certs, DETECTORS, GatewayOptions, GatewayRig};
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
    let certs = Certs::generate(d);
    let gateway = GatewayRig::start(&certs, GatewayOptions::files());
    let agent = AgentRig::start(
        &certs,
        &gateway,
        AgentOptions::new()
            .log_source("game.log", "game")
            .tokenize(DETECTORS),
    );

    let log = d.join("game.log");
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
    let spool = &gateway.spool;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (metrics, logs) = loop {
        let metrics = gateway.records("metrics");
        let logs = gateway.records("logs");
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
    let agents_token = doc["message"]
        .as_str()
        .and_then(|m| m.strip_prefix("e2e line 0: login from "))
        .expect("the agent's token for the address")
        .to_string();
    assert!(agents_token.starts_with("tok_"), "{agents_token}");

    // Logs that skip the agent, posted straight to the gateway by curl with the host's
    // certificate: a JSON batch and an OTLP protobuf body. They arrive tokenized, and the
    // same address gets the same token the agent gave it.
    let json = d.join("direct.json");
    std::fs::write(
        &json,
        format!(
            r#"[{{"level":"info","service":"ops-script","message":"direct json: login from {}","metadata":{{"peer":"{}","player_id":"{}"}}}}]"#,
            PII[0], PII[1], PII[3]
        ),
    )
    .expect("json body");
    let otlp = d.join("direct.pb");
    std::fs::write(
        &otlp,
        direct_otlp_body(&format!("direct otlp: login from {}", PII[0])),
    )
    .expect("otlp body");
    for (path, file, content_type) in [
        ("/api/v1/logs", &json, "application/json"),
        ("/v1/logs", &otlp, "application/x-protobuf"),
    ] {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(certs.ca())
            .arg("--cert")
            .arg(certs.client_cert())
            .arg("--key")
            .arg(certs.client_key())
            .args(["-H", &format!("Content-Type: {content_type}")])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(gateway.url(path))
            .output()
            .expect("run curl (Debian package curl)");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            code.starts_with('2'),
            "{path}: {code} {}\ngateway: {}",
            String::from_utf8_lossy(&out.stderr),
            gateway.log()
        );
    }
    let direct: Vec<serde_json::Value> = gateway
        .documents("logs")
        .into_iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("direct "))
        })
        .collect();
    assert_eq!(direct.len(), 2, "{direct:?}");
    for doc in &direct {
        let message = doc["message"].as_str().unwrap_or_default();
        assert!(
            message.ends_with(&format!("login from {agents_token}")),
            "the gateway gave another token than the agent: {message} vs {agents_token}"
        );
    }
    let json_doc = direct
        .iter()
        .find(|d| d["service"] == "ops-script")
        .expect("the JSON record");
    assert!(
        json_doc["attributes"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("tok_"))
            && json_doc["attributes"]["player_id"]
                .as_str()
                .is_some_and(|p| p.starts_with("tok_")),
        "{json_doc}"
    );
    let (leaked, _) = edge_tests::gates::pii_in_spool(spool, PII);
    assert!(leaked.is_empty(), "{leaked:?} reached the gateway's spool");
}

/// An OTLP logs request with one record whose body is `message`, from a client that is
/// not an agent (its resource does not say the records are tokenized).
fn direct_otlp_body(message: &str) -> Vec<u8> {
    use edge_schema::proto::otlp::{
        AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord, Resource, ResourceLogs, ScopeLogs,
        any_value,
    };
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("ops-otlp"),
                }],
                dropped_attributes_count: 0,
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_number: 9,
                    body: text(message),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}
