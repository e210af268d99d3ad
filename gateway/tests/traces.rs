//! `POST /v1/traces` on the real gateway over real mTLS: OTLP/HTTP protobuf in zstd,
//! gzip or identity, the tenant's span quota (429 + Retry-After, 413 past the burst),
//! and the spans in the `file` traces sink after a 200.

mod support;

use std::io::Write as _;
use std::time::Duration;

use edge_schema::proto::otlp::trace::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span};
use edge_schema::proto::otlp::{AnyValue, KeyValue, any_value};
use prost::Message;
use support::{Client, Gateway, Pki, free_port, tls_config};

fn config(dir: &std::path::Path, port: u16, traces: Option<&str>) -> String {
    let d = dir.display();
    let traces = traces.map_or(String::new(), |t| format!(", traces: {t}"));
    format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/test-server.crt, key: {d}/test-server.key, client_ca: {d}/test-ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal, subjects: {{ \"CN=gs-*\": game }} }}\n\
         tenants:\n  default: {{ span_rate_limit: 100000 }}\n  game: {{ span_rate_limit: 10, span_burst: 20 }}\n\
         sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }}{traces} }}\n"
    )
}

fn request(n: usize, tag: u8) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![tag; 16],
                        span_id: vec![i as u8 + 1; 8],
                        name: format!("tick-{tag}-{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_001_000_000,
                        attributes: vec![KeyValue {
                            key: "shard".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(i as i64)),
                            }),
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn encoded(request: &ExportTraceServiceRequest, encoding: &str) -> Vec<u8> {
    let raw = request.encode_to_vec();
    match encoding {
        "zstd" => zstd::bulk::compress(&raw, 1).expect("zstd"),
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).expect("gzip");
            e.finish().expect("gzip")
        }
        _ => raw,
    }
}

async fn post(
    c: &mut Client,
    request: &ExportTraceServiceRequest,
    encoding: &str,
) -> support::Answer {
    let mut headers = vec![("content-type", "application/x-protobuf")];
    if encoding != "identity" {
        headers.push(("content-encoding", encoding));
    }
    c.request("POST", "/v1/traces", &headers, encoded(request, encoding))
        .await
        .expect("post")
}

/// Every span in the traces spool, with the tenant it was committed under.
fn spooled(dir: &std::path::Path) -> Vec<(String, Span)> {
    let (records, torn) =
        edge_gateway::sink::file::read_spool(&dir.join("spool"), "traces").expect("spool");
    assert_eq!(torn, 0);
    records
        .into_iter()
        .flat_map(|r| {
            let req = ExportTraceServiceRequest::decode(r.data.as_slice())
                .expect("an ExportTraceServiceRequest in the spool");
            let key = r.key.clone();
            req.resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .map(move |s| (key.clone(), s))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn spans_land_in_the_file_sink_under_the_tenant_and_the_span_quota_answers_429() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let _gw = Gateway::start(
        dir.path(),
        port,
        &config(
            dir.path(),
            port,
            Some(&format!(
                "{{ kind: file, dir: {}/spool }}",
                dir.path().display()
            )),
        ),
    );
    let cert = pki.client("gs-1", None);
    let mut c = Client::connect(port, tls_config(&pki.ca_der, Some(&cert)))
        .await
        .expect("connect");
    // Tenant game: 10 spans/s, burst 20.
    let a = post(&mut c, &request(15, 1), "zstd").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    assert!(a.body.is_empty(), "an empty ExportTraceServiceResponse");
    let spans = spooled(dir.path());
    assert_eq!(spans.len(), 15, "committed before the answer");
    assert!(spans.iter().all(|(tenant, _)| tenant == "game"));
    assert_eq!(spans[3].1.name, "tick-1-3");
    // Over the rate: 429 with a Retry-After the client can obey.
    let refused = post(&mut c, &request(10, 2), "gzip").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("spans/s"), "{}", refused.body);
    let retry: u64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        spooled(dir.path()).len(),
        15,
        "nothing of a refused request"
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let a = post(&mut c, &request(10, 2), "gzip").await;
    assert_eq!(a.status, 200, "after Retry-After: {}", a.body);
    // More than the burst at once can never fit: 413, not a 429 loop.
    let too_big = post(&mut c, &request(21, 3), "zstd").await;
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    assert!(too_big.body.contains("never fit"), "{}", too_big.body);
    // Identity encoding; then a body that is not OTLP.
    let a = post(&mut c, &request(1, 4), "identity").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let bad = c
        .request(
            "POST",
            "/v1/traces",
            &[("content-encoding", "zstd")],
            b"not zstd at all".to_vec(),
        )
        .await
        .expect("post");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let spans = spooled(dir.path());
    assert_eq!(spans.len(), 26);
    assert_eq!(
        spans
            .iter()
            .filter(|(_, s)| s.trace_id == vec![2; 16])
            .count(),
        10,
        "the retried request once"
    );
    assert_eq!(
        c.metric("edge_gateway_spans_accepted_total{tenant=\"game\"}")
            .await,
        Some(26.0)
    );
    assert_eq!(
        c.metric("edge_gateway_discarded_spans_total{tenant=\"game\",reason=\"rate_limited\"}")
            .await,
        Some(31.0),
        "10 over the rate, 21 over the burst"
    );
    assert_eq!(
        c.metric("tenant_over_limit_total{tenant=\"game\",limit=\"span_rate\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        c.metric("tenant_over_limit_total{tenant=\"game\",limit=\"span_burst\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        c.metric("edge_gateway_discarded_spans_total{tenant=\"game\",reason=\"malformed\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        c.metric("edge_gateway_requests_total{endpoint=\"otlp_traces\",code=\"200\"}")
            .await,
        Some(3.0)
    );
}

#[tokio::test]
async fn without_a_traces_sink_the_gateway_answers_503_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let _gw = Gateway::start(dir.path(), port, &config(dir.path(), port, None));
    let cert = pki.client("gs-1", None);
    let mut c = Client::connect(port, tls_config(&pki.ca_der, Some(&cert)))
        .await
        .expect("connect");
    let a = post(&mut c, &request(3, 1), "zstd").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(a.body.contains("sinks.traces"), "{}", a.body);
    assert!(a.headers.get("retry-after").is_some());
    assert_eq!(
        c.metric("edge_gateway_discarded_spans_total{tenant=\"game\",reason=\"no_sink\"}")
            .await,
        Some(3.0)
    );
    // The other endpoints are not affected.
    let ready = c
        .request("GET", "/ready", &[], Vec::new())
        .await
        .expect("ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
}

/// A Python OTLP/HTTP endpoint that checks SigV4 with botocore (see the script), on a
/// free port; killed on drop.
struct Receiver {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(dir: &std::path::Path, name: &str, secret: &str, fail_first: u32) -> Receiver {
        let probe = std::process::Command::new("python3")
            .args([
                "-c",
                "import botocore, opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            ])
            .status()
            .expect("python3");
        assert!(
            probe.success(),
            "the receiver needs botocore and opentelemetry-proto: pip install 'moto[server]' \
             opentelemetry-exporter-otlp-proto-http (scripts/test installs them)"
        );
        let port = free_port();
        let out = dir.join(format!("{name}.jsonl"));
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/otlp_receiver.py"
        );
        let child = std::process::Command::new("python3")
            .args([
                script,
                &port.to_string(),
                &out.display().to_string(),
                secret,
                &fail_first.to_string(),
            ])
            .spawn()
            .expect("start the OTLP receiver");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the OTLP receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver { child, port, out }
    }

    fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

/// Static credentials for SigV4 (the receiver knows the secret), no IMDS.
const SIGV4_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDEDGETRACES"),
    ("AWS_SECRET_ACCESS_KEY", "edge-traces-test-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

#[tokio::test]
async fn the_otlp_sink_signs_for_xray_and_answers_only_after_the_endpoint_took_the_spans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    // The first answer is a 503 with Retry-After: the sink waits and sends again, and the
    // client's 200 comes only after the endpoint's.
    let receiver = Receiver::start(dir.path(), "xray", "edge-traces-test-secret", 1);
    let port = free_port();
    let sink = format!(
        "{{ kind: otlp, url: \"http://127.0.0.1:{}/v1/traces\", sigv4: {{ region: us-east-1 }} }}",
        receiver.port
    );
    let gw = Gateway::start_with_env(
        dir.path(),
        port,
        &config(dir.path(), port, Some(&sink)),
        SIGV4_ENV,
    );
    let cert = pki.client("gs-1", None);
    let mut c = Client::connect(port, tls_config(&pki.ca_der, Some(&cert)))
        .await
        .expect("connect");
    let a = post(&mut c, &request(4, 1), "zstd").await;
    assert_eq!(a.status, 200, "{}\n{}", a.body, gw.log_text());
    let seen = receiver.seen();
    assert_eq!(
        seen.len(),
        2,
        "a 503, then the same request again: {seen:?}"
    );
    assert_eq!(seen[0]["status"], 503);
    assert_eq!(seen[1]["status"], 200);
    assert_eq!(seen[0]["sha256"], seen[1]["sha256"]);
    for s in &seen {
        assert_eq!(s["signed"], true, "{s}");
        assert_eq!(
            s["signature_ok"], true,
            "botocore recomputed another signature: {s}"
        );
        assert_eq!(s["service"], "xray");
        assert_eq!(s["region"], "us-east-1");
        assert_eq!(s["spans"], 4);
        assert_eq!(s["content_type"], "application/x-protobuf");
    }
    assert_eq!(seen[1]["names"][2], "tick-1-2");
    assert_eq!(
        c.metric("edge_gateway_spans_accepted_total{tenant=\"game\"}")
            .await,
        Some(4.0)
    );

    // An endpoint that holds another secret refuses the signature: the sink does not
    // retry a 403 forever, and the client is told (400), not answered 2xx.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let pki2 = Pki::new(dir2.path(), "test");
    let wrong = Receiver::start(dir2.path(), "wrong", "not-the-secret", 0);
    let port2 = free_port();
    let sink2 = format!(
        "{{ kind: otlp, url: \"http://127.0.0.1:{}/v1/traces\", sigv4: {{ region: us-east-1, service: xray }} }}",
        wrong.port
    );
    let _gw2 = Gateway::start_with_env(
        dir2.path(),
        port2,
        &config(dir2.path(), port2, Some(&sink2)),
        SIGV4_ENV,
    );
    let cert2 = pki2.client("gs-1", None);
    let mut c2 = Client::connect(port2, tls_config(&pki2.ca_der, Some(&cert2)))
        .await
        .expect("connect");
    let refused = post(&mut c2, &request(2, 2), "gzip").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("403"), "{}", refused.body);
    let seen = wrong.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["signature_ok"], false);
}

#[tokio::test]
async fn spans_without_an_agent_are_tokenized_here_and_an_agents_are_left_alone() {
    use edge_schema::proto::otlp::Resource;
    use edge_schema::proto::otlp::trace::ExportTraceServiceResponse;
    const EMAIL: &str = "dana.lee@example.net";
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let text = config(
        dir.path(),
        port,
        Some(&format!(
            "{{ kind: file, dir: {}/spool }}",
            dir.path().display()
        )),
    )
    .replace(
        "tokenize.key }",
        "tokenize.key, detectors: [{ name: secret, pattern: 'sk_live_[a-z0-9]+', action: drop }] }",
    );
    let _gw = Gateway::start(dir.path(), port, &text);
    let cert = pki.client("gs-1", None);
    let mut c = Client::connect(port, tls_config(&pki.ca_der, Some(&cert)))
        .await
        .expect("connect");
    let attr = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    };
    // Two resources: one as an SDK sends it, one marked by an agent (already tokenized,
    // so a value that looks like PII there is left as it is).
    let mut sdk = request(3, 7).resource_spans.remove(0);
    for (i, s) in sdk.scope_spans[0].spans.iter_mut().enumerate() {
        s.name = format!("login {EMAIL}");
        s.attributes.push(attr("user.email", EMAIL));
        if i == 2 {
            s.attributes.push(attr("card", "sk_live_abc123"));
        }
    }
    let mut agent = request(1, 8).resource_spans.remove(0);
    agent.resource = Some(Resource {
        attributes: vec![attr("edgepipe.tokenized", "true")],
        ..Default::default()
    });
    agent.scope_spans[0].spans[0].name = "kept as sent".into();
    let a = post(
        &mut c,
        &ExportTraceServiceRequest {
            resource_spans: vec![sdk, agent],
        },
        "zstd",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let answer = ExportTraceServiceResponse::decode(a.body.as_bytes()).expect("an OTLP answer");
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("\"secret\""),
        "{}",
        partial.error_message
    );
    let spans = spooled(dir.path());
    assert_eq!(spans.len(), 3, "two SDK spans and the agent's");
    let sdk_spans: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.trace_id == vec![7; 16])
        .collect();
    assert_eq!(sdk_spans.len(), 2);
    for s in &sdk_spans {
        assert!(s.name.starts_with("login tok_"), "{}", s.name);
    }
    assert!(spans.iter().any(|(_, s)| s.name == "kept as sent"));
    for entry in std::fs::read_dir(dir.path().join("spool/traces")).expect("spool") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("segment");
        for pii in [EMAIL.as_bytes(), b"sk_live_abc123"] {
            assert!(
                !bytes.windows(pii.len()).any(|w| w == pii),
                "PII in the spool"
            );
        }
    }
    assert_eq!(
        c.metric("edge_gateway_spans_tokenized_total{tenant=\"game\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        c.metric(
            "edge_gateway_discarded_spans_total{tenant=\"game\",reason=\"pii_drop_detector\"}"
        )
        .await,
        Some(1.0)
    );
}
