//! The OTLP receivers end to end, on the real binary.
//!
//! - The OpenTelemetry Python SDK (from PyPI) exports metrics (an exponential-histogram
//!   view) and logs over HTTP and over gRPC, gzip-compressed; a stock Prometheus has
//!   the counters, the gauge and the histogram (its median within the bucket bound of
//!   the true one), the forbidden attribute's value is in the overflow series and
//!   nowhere else; the logs gateway has every record, tokenized, with no PII byte.
//! - Hand-built requests get the exact answers: delta sums accumulated and a retried
//!   one refused as out of order, a restarted game's counter reset passed, a malformed
//!   body (400 with a `google.rpc.Status`), a 10 MB body and a gzip bomb (413), a
//!   forbidden attribute (`partial_success` naming metric, label and attribute), JSON
//!   in and out, another content type (415); each with its self-metric.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use edge_schema::proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use edge_schema::proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use edge_schema::proto::opentelemetry::proto::metrics::v1 as m;
use edge_schema::proto::otlp::{ExportLogsServiceRequest, any_value as log_value};
use edge_tests::prometheus::Prometheus;
use prost::Message;
use support::{Agent, Gateway, Received, free_port, label};

/// Generous: every wait returns as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(120);

const PII: &[&str] = &[
    "alice.smith+game@example.com",
    "bob_99@mail.example.co.uk",
    "203.0.113.77",
    "10.1.2.3",
    "p-4242",
];

fn key_and_tokenize(dir: &std::path::Path) -> String {
    std::fs::write(
        dir.join("tokenize.key"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .expect("key");
    format!(
        "tokenize: {{ key_file: {}/tokenize.key, detectors: [email, ipv4] }}\n",
        dir.display()
    )
}

/// Every OTLP log record the gateway got: body and string attributes in one line.
fn log_records(received: &[Received]) -> Vec<String> {
    let mut out = Vec::new();
    for r in received {
        let raw = zstd::bulk::decompress(&r.body, 64 << 20).expect("zstd body");
        let req = ExportLogsServiceRequest::decode(raw.as_slice()).expect("OTLP logs");
        for rl in req.resource_logs {
            for sl in rl.scope_logs {
                for r in sl.log_records {
                    let mut text = match r.body.and_then(|b| b.value) {
                        Some(log_value::Value::StringValue(s)) => s,
                        _ => String::new(),
                    };
                    for kv in r.attributes {
                        if let Some(log_value::Value::StringValue(v)) =
                            kv.value.and_then(|v| v.value)
                        {
                            text.push_str(&format!(" {}={v}", kv.key));
                        }
                    }
                    out.push(text);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_python_sdk_over_http_and_grpc_reaches_prometheus_and_the_gateway() {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
        ])
        .status()
        .expect("python3");
    assert!(
        probe.success(),
        "the OpenTelemetry Python SDK is missing: pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http (scripts/test installs them)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path()).await;
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let traces = Gateway::start("127.0.0.1:0", vec![]).await;
    let (grpc, http) = (free_port(), free_port());
    let extra = format!(
        "otlp: {{ grpc: 127.0.0.1:{grpc}, http: 127.0.0.1:{http} }}\n{}",
        key_and_tokenize(dir.path())
    );
    let agent = Agent::start_with_output(
        dir.path(),
        &[prometheus.write_url()],
        &extra,
        &format!(
            ", logs_url: \"{}\", traces_url: \"{}\"",
            logs.url("http"),
            traces.url("http")
        ),
    );
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/otlp_client.py");
    for (transport, port, shard) in [("http", http, "3"), ("grpc", grpc, "4")] {
        let out = Command::new("python3")
            .args([client, transport, &port.to_string(), shard])
            .output()
            .expect("run the client");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sent"),
            "{transport} client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Failed to export"),
            "{transport}: the SDK reports a failed export: {stderr}"
        );
    }

    for shard in ["3", "4"] {
        let labels = prometheus
            .query_until(
                &format!("game_kills_total{{shard_id=\"{shard}\"}}"),
                7.0,
                WAIT,
            )
            .await;
        assert_eq!(labels["region"], "test-1", "host labels: {labels}");
        assert!(
            labels.get("service_name").is_none() && labels.get("service_instance_id").is_none(),
            "resource attributes are not labels: {labels}"
        );
        prometheus
            .query_until(&format!("game_players{{shard_id=\"{shard}\"}}"), 42.0, WAIT)
            .await;
        prometheus
            .query_until(
                &format!("histogram_count(game_tick_duration_seconds{{shard_id=\"{shard}\"}})"),
                1000.0,
                WAIT,
            )
            .await;
        let (median, _) = prometheus
            .query(
                &format!(
                    "histogram_quantile(0.5, game_tick_duration_seconds{{shard_id=\"{shard}\"}})"
                ),
                WAIT,
            )
            .await;
        // The SDK picks scale 4 for 0.001..1 s in 160 buckets: buckets 4.4% wide; the
        // agent keeps its scale. Within one bucket of the true median, 0.5 s.
        assert!(
            (median - 0.5).abs() <= 0.5 * 0.05,
            "{shard}: median {median}"
        );
        let (sum, _) = prometheus
            .query(
                &format!("histogram_sum(game_tick_duration_seconds{{shard_id=\"{shard}\"}})"),
                WAIT,
            )
            .await;
        assert!((sum - 500.5).abs() < 1e-6, "{shard}: sum {sum}");
    }
    // The errors, folded: the forbidden attribute never left the host. (Both clients
    // send the same series, game_errors_total{player_id="p-4242"} = 1, cumulative: the
    // overflow series holds its latest value.)
    let labels = prometheus.query_until("game_errors_total", 1.0, WAIT).await;
    assert_eq!(labels["edge_overflow"], "true", "{labels}");
    let leaked = prometheus.query_once("{player_id!=\"\"}").await;
    assert_eq!(leaked.as_array().map(Vec::len), Some(0), "leaked: {leaked}");

    // gRPC's exact answers, from the stock grpc client: a message that does not decode,
    // and one over the limit.
    let script = format!(
        "import grpc\n\
         f = grpc.insecure_channel('127.0.0.1:{grpc}').unary_unary('/opentelemetry.proto.collector.metrics.v1.MetricsService/Export')\n\
         for body in [b'\\x0a\\xff\\xff\\xff\\x0f', b'\\x0a' * (10 << 20)]:\n\
         \x20   try:\n\
         \x20       f(body, timeout=60)\n\
         \x20       print('OK')\n\
         \x20   except grpc.RpcError as e:\n\
         \x20       print(e.code().name)\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "INVALID_ARGUMENT\nRESOURCE_EXHAUSTED\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        agent.metric("edge_otlp_requests_total{result=\"refused\"}"),
        Some(2.0)
    );

    // Three records per client, every one tokenized, none with a PII byte.
    let got = logs
        .wait_for("six OTLP records", WAIT, |r| log_records(r).len() >= 6)
        .await;
    let records = log_records(&got);
    assert_eq!(records.len(), 6, "{records:#?}");
    for transport in ["http", "grpc"] {
        let joined = records
            .iter()
            .find(|r| r.contains("joined") && r.contains(&format!("transport={transport}")))
            .unwrap_or_else(|| panic!("{transport}: no join record in {records:#?}"));
        assert!(joined.contains("source=otlp"), "{joined}");
        assert!(joined.contains("player.ip="), "{joined}");
    }
    for r in &got {
        let raw = zstd::bulk::decompress(&r.body, 64 << 20).expect("zstd");
        for pii in PII {
            assert!(
                !raw.windows(pii.len()).any(|w| w == pii.as_bytes()),
                "{pii} reached the gateway"
            );
        }
        let resource = String::from_utf8_lossy(&raw);
        assert!(resource.contains("game-server"), "the records' service");
    }
    assert_eq!(
        agent.metric("edge_logs_records_total{level=\"warn\",source=\"otlp\"}"),
        Some(2.0)
    );
    assert_eq!(
        agent.metric("edge_otlp_items_total{result=\"accepted\",signal=\"logs\"}"),
        Some(6.0)
    );
    // One span per transport, through the agent's traces path, tokenized.
    let got = traces
        .wait_for("two spans", WAIT, |r| span_names(r).len() >= 2)
        .await;
    assert_eq!(span_names(&got), ["match.join", "match.join"]);
    for r in &got {
        let raw = zstd::bulk::decompress(&r.body, 64 << 20).expect("zstd");
        for pii in PII {
            assert!(
                !raw.windows(pii.len()).any(|w| w == pii.as_bytes()),
                "{pii} reached the traces gateway"
            );
        }
        assert!(
            String::from_utf8_lossy(&raw).contains("tok_"),
            "tokens in the spans"
        );
    }
    assert_eq!(
        agent.metric("edge_traces_spans_total{result=\"accepted\"}"),
        Some(2.0)
    );

    // Both transports count in one series per result.
    let ok = agent
        .metric("edge_otlp_requests_total{result=\"ok\"}")
        .unwrap_or(0.0);
    assert!(
        ok >= 2.0,
        "{ok} requests taken whole over the two transports"
    );
    assert_eq!(
        agent.metric("edge_otlp_requests_total{result=\"partial\"}"),
        Some(2.0),
        "the metrics export with the forbidden attribute, once per transport"
    );
}

/// The names of the spans in the traces batches received.
fn span_names(received: &[Received]) -> Vec<String> {
    use edge_schema::proto::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
    let mut names = Vec::new();
    for r in received {
        let Ok(raw) = zstd::bulk::decompress(&r.body, 64 << 20) else {
            continue;
        };
        let Ok(req) = ExportTraceServiceRequest::decode(raw.as_slice()) else {
            continue;
        };
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                names.extend(ss.spans.into_iter().map(|s| s.name));
            }
        }
    }
    names
}

/// One HTTP/1.1 POST: status, headers (lower-case names) and body.
fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    // The agent may answer 413 before it reads the whole body: a failed write then is
    // fine, the answer is what counts.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

fn text(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn sum(
    name: &str,
    delta: bool,
    start: u64,
    time: u64,
    value: i64,
    attrs: &[(&str, &str)],
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![m::ResourceMetrics {
            scope_metrics: vec![m::ScopeMetrics {
                metrics: vec![m::Metric {
                    name: name.into(),
                    data: Some(m::metric::Data::Sum(m::Sum {
                        data_points: vec![m::NumberDataPoint {
                            attributes: attrs
                                .iter()
                                .map(|(k, v)| KeyValue {
                                    key: (*k).into(),
                                    value: text(v),
                                })
                                .collect(),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            value: Some(m::number_data_point::Value::AsInt(value)),
                            ..Default::default()
                        }],
                        aggregation_temporality: if delta { 1 } else { 2 },
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

fn export(addr: SocketAddr, request: &ExportMetricsServiceRequest) -> ExportMetricsServiceResponse {
    let (status, headers, body) = post(addr, "/v1/metrics", &[PROTOBUF], &request.encode_to_vec());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/x-protobuf"),
        "{headers:?}"
    );
    ExportMetricsServiceResponse::decode(body.as_slice()).expect("a response")
}

/// The latest value of `name` (with `want` labels) the metrics gateway received.
fn latest(received: &[Received], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    support::all_series(received)
        .into_iter()
        .filter(|ts| {
            label(ts, "__name__") == Some(name)
                && want.iter().all(|(k, v)| label(ts, k) == Some(*v))
        })
        .flat_map(|ts| ts.samples.iter().map(|s| (s.timestamp, s.value)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn every_case_gets_its_exact_answer_and_self_metric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::start("127.0.0.1:0", vec![]).await;
    let http = free_port();
    let agent = Agent::start(
        dir.path(),
        &[gateway.url("http")],
        &format!("otlp: {{ grpc: off, http: 127.0.0.1:{http} }}\n"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().expect("addr");
    let t0 = now_ns() - 60_000_000_000;
    let s = 1_000_000_000;
    let shard = [("shard_id", "5")];

    // Delta sums: accumulated; the same request again (a retry) is refused, not added.
    for (i, v) in [(1, 5), (2, 2)] {
        let r = export(
            addr,
            &sum("game.kills", true, t0 + (i - 1) * s, t0 + i * s, v, &shard),
        );
        assert_eq!(r.partial_success, None);
    }
    let retry = export(
        addr,
        &sum("game.kills", true, t0 + s, t0 + 2 * s, 2, &shard),
    );
    let p = retry.partial_success.expect("partial success");
    assert_eq!(p.rejected_data_points, 1);
    assert!(
        p.error_message.contains("`game.kills`") && p.error_message.contains("not newer"),
        "{}",
        p.error_message
    );
    assert_eq!(
        agent.metric("edge_otlp_items_total{result=\"refused\",signal=\"metrics\"}"),
        Some(1.0)
    );
    gateway
        .wait_for("the accumulated delta sum", WAIT, |r| {
            latest(r, "game_kills_total", &shard) == Some(7.0)
        })
        .await;

    // A game restart: cumulative from a new start, a lower value. Passed (Prometheus
    // reads a reset), never dropped.
    let restart = [("shard_id", "6")];
    assert_eq!(
        export(
            addr,
            &sum("game.deaths", false, t0, t0 + 5 * s, 40, &restart)
        )
        .partial_success,
        None
    );
    assert_eq!(
        export(
            addr,
            &sum("game.deaths", false, t0 + 8 * s, t0 + 9 * s, 2, &restart)
        )
        .partial_success,
        None
    );
    gateway
        .wait_for("the counter after the restart", WAIT, |r| {
            latest(r, "game_deaths_total", &restart) == Some(2.0)
        })
        .await;

    // A forbidden attribute: named, and its value folded into the overflow series.
    let forbidden = export(
        addr,
        &sum(
            "game.errors",
            false,
            t0,
            t0 + s,
            3,
            &[("player.id", "p-4242")],
        ),
    );
    let p = forbidden.partial_success.expect("partial success");
    assert_eq!(p.rejected_data_points, 1);
    for needle in [
        "game_errors_total",
        "`player_id`",
        "`player.id`",
        "forbidden",
        "overflow",
    ] {
        assert!(
            p.error_message.contains(needle),
            "{needle} in {}",
            p.error_message
        );
    }
    assert!(
        !p.error_message.contains("p-4242"),
        "the value is never repeated"
    );
    assert_eq!(
        agent.metric("edge_otlp_items_total{result=\"refused\",signal=\"metrics\"}"),
        Some(2.0)
    );
    let got = gateway
        .wait_for("the overflow series", WAIT, |r| {
            latest(r, "game_errors_total", &[("edge_overflow", "true")]) == Some(3.0)
        })
        .await;
    assert!(
        support::all_series(&got)
            .iter()
            .all(|ts| label(ts, "player_id").is_none()),
        "a forbidden label left the host"
    );

    // A malformed body: 400 with a google.rpc.Status (INVALID_ARGUMENT).
    let (status, _, body) = post(
        addr,
        "/v1/metrics",
        &[PROTOBUF],
        b"\x0a\xff\xff\xff\x0fgarbage",
    );
    assert_eq!(status, 400);
    let st = agent_status(&body);
    assert_eq!(st.0, 3);
    assert!(st.1.contains("ExportMetricsServiceRequest"), "{}", st.1);
    assert_eq!(
        agent.metric("edge_otlp_requests_total{result=\"refused\"}"),
        Some(1.0)
    );

    // 10 MB: 413, plain and as a gzip bomb (small compressed, 10 MB inside).
    let big = vec![0x0au8; 10 << 20];
    let (status, _, body) = post(addr, "/v1/logs", &[PROTOBUF], &big);
    assert_eq!(status, 413);
    assert_eq!(agent_status(&body).0, 8, "RESOURCE_EXHAUSTED");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&big).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 1 << 20);
    let (status, _, _) = post(
        addr,
        "/v1/metrics",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &bomb,
    );
    assert_eq!(status, 413);
    assert_eq!(
        agent.metric("edge_otlp_requests_total{result=\"refused\"}"),
        Some(3.0),
        "the malformed body and the two over the limit"
    );

    // JSON in, JSON out: int64 as strings, enum names, the forbidden attribute named.
    let json = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[
            {{"name":"game.players","unit":"","gauge":{{"dataPoints":[{{"asInt":"12","timeUnixNano":"{t}","attributes":[{{"key":"shard.id","value":{{"stringValue":"7"}}}}]}}]}}}},
            {{"name":"game.errors","sum":{{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
              "dataPoints":[{{"asDouble":1,"startTimeUnixNano":"{t0}","timeUnixNano":"{t}","attributes":[{{"key":"player.id","value":{{"stringValue":"p-1"}}}}]}}]}}}}
        ]}}]}}]}}"#,
        t = t0 + 3 * s,
    );
    let (status, headers, body) = post(
        addr,
        "/v1/metrics",
        &[("Content-Type", "application/json")],
        json.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        answer["partialSuccess"]["rejectedDataPoints"], "1",
        "{answer}"
    );
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("player_id"))
    );
    gateway
        .wait_for("the JSON gauge", WAIT, |r| {
            latest(r, "game_players", &[("shard_id", "7")]) == Some(12.0)
        })
        .await;
    let (status, _, body) = post(
        addr,
        "/v1/metrics",
        &[("Content-Type", "application/json")],
        b"{\"resourceMetrics\": 5}",
    );
    assert_eq!(status, 400);
    let st: serde_json::Value = serde_json::from_slice(&body).expect("a JSON status");
    assert_eq!(st["code"], 3);
    assert_eq!(
        st["message"],
        "not an ExportMetricsServiceRequest: resourceMetrics: 5 is not an array"
    );

    // Another content type: 415. No logs output: records refused, named, counted.
    let (status, _, _) = post(addr, "/v1/metrics", &[("Content-Type", "text/plain")], b"x");
    assert_eq!(status, 415);
    let (status, _, body) = post(
        addr,
        "/v1/logs",
        &[PROTOBUF],
        &log_request().encode_to_vec(),
    );
    assert_eq!(status, 200);
    let r = edge_schema::proto::otlp::ExportLogsServiceResponse::decode(body.as_slice())
        .expect("response");
    let p = r.partial_success.expect("partial");
    assert_eq!(p.rejected_log_records, 1);
    assert!(
        p.error_message.contains("output.logs_url"),
        "{}",
        p.error_message
    );
    assert_eq!(
        agent.metric("edge_otlp_items_total{result=\"dropped\",signal=\"logs\"}"),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("edge_otlp_requests_total{result=\"refused\"}"),
        Some(5.0),
        "and the JSON body of the wrong shape, and the text/plain one"
    );
    assert_eq!(
        agent.metric("edge_otlp_requests_total{result=\"partial\"}"),
        Some(4.0),
        "the retry, the forbidden attribute, the JSON one, the logs without output"
    );
}

fn log_request() -> ExportLogsServiceRequest {
    use edge_schema::proto::opentelemetry::proto::logs::v1 as l;
    ExportLogsServiceRequest {
        resource_logs: vec![l::ResourceLogs {
            scope_logs: vec![l::ScopeLogs {
                log_records: vec![l::LogRecord {
                    body: text("hello"),
                    severity_number: 9,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `google.rpc.Status` code and message, decoded by hand (fields 1 and 2).
fn agent_status(body: &[u8]) -> (i32, String) {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let s = Status::decode(body).expect("a google.rpc.Status");
    (s.code, s.message)
}
