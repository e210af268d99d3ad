//! The Firehose sink against a real local AWS API server (moto) delivering to its S3:
//! the documents the gateway accepts are read back from the bucket, once each, as
//! NDJSON; spans committed to a `firehose` traces sink arrive as one document each; and a
//! delivery stream that fails half the records of a call (a proxy
//! wrapping moto) ends with every document delivered once.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_firehose::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
use support::{
    AWS_TEST_ENV, Client, FIREHOSE_PUT, Gateway, Moto, Pki, free_port, half_failing_proxy,
    tls_config,
};

fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(moto.url())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn setup_stream(moto: &Moto, bucket: &str) {
    setup_named_stream(moto, "logs", bucket).await;
}

async fn setup_named_stream(moto: &Moto, stream: &str, bucket: &str) {
    s3(moto)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create the bucket in moto");
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto.url())
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    let fh = aws_sdk_firehose::Client::from_conf(config);
    fh.create_delivery_stream()
        .delivery_stream_name(stream)
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose")
                .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                .build()
                .expect("destination"),
        )
        .send()
        .await
        .expect("create the delivery stream in moto");
}

/// Every line of every object in the bucket (what Firehose delivered).
async fn delivered(moto: &Moto, bucket: &str) -> Vec<String> {
    let s3 = s3(moto);
    let listing = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    let mut lines = Vec::new();
    for object in listing.contents() {
        let key = object.key().unwrap_or_default();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("object body")
            .into_bytes();
        let text = String::from_utf8(body.to_vec()).expect("NDJSON is UTF-8");
        assert!(text.ends_with('\n'), "every document ends its line: {key}");
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

fn gateway_config(dir: &std::path::Path, port: u16, endpoint: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/test-server.crt, key: {d}/test-server.key, client_ca: {d}/test-ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal }}\n\
         sinks:\n  metrics: {{ kind: file, dir: {d}/spool }}\n  \
         logs: {{ kind: firehose, delivery_stream: logs, region: us-east-1, endpoint_url: \"{endpoint}\" }}\n",
        d = dir.display()
    )
}

async fn post_logs(pki: &Pki, port: u16, hosts: usize, per_host: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for h in 0..hosts {
        let cert = pki.client(
            "x",
            Some(&format!("spiffe://obs.internal/tenant/game/gs-{h}")),
        );
        let tls = tls_config(&pki.ca_der, Some(&cert));
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(port, tls).await.expect("connect");
            let mut sent = Vec::new();
            for r in 0..per_host {
                let messages: Vec<String> = (0..5).map(|i| format!("fh {h} {r} {i}")).collect();
                let body = serde_json::Value::Array(
                    messages
                        .iter()
                        .map(|m| serde_json::json!({"message": m, "level": "info", "service": "lobby"}))
                        .collect(),
                );
                let a = c
                    .request("POST", "/api/v1/logs", &[("content-type", "application/json")], body.to_string().into_bytes())
                    .await
                    .expect("post");
                assert_eq!(a.status, 200, "{}", a.body);
                sent.extend(messages);
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await.expect("host"));
    }
    sent.sort();
    sent
}

fn messages(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line a JSON document");
            assert_eq!(v["tenant"], "game");
            v["message"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_documents_are_delivered_once_as_ndjson() {
    let moto = Moto::start();
    setup_stream(&moto, "edge-logs").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let _gw = Gateway::start_with_env(
        dir.path(),
        port,
        &gateway_config(dir.path(), port, &moto.url()),
        AWS_TEST_ENV,
    );
    let sent = post_logs(&pki, port, 4, 3).await;
    assert_eq!(messages(&delivered(&moto, "edge-logs").await), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_half_the_records_of_a_call_delivers_every_document_once() {
    let moto = Moto::start();
    setup_stream(&moto, "edge-logs").await;
    let proxy_port = free_port();
    let injected = Arc::new(AtomicU32::new(0));
    tokio::spawn(half_failing_proxy(
        proxy_port,
        moto.port,
        FIREHOSE_PUT,
        Arc::new(AtomicU32::new(4)),
        injected.clone(),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let gw = Gateway::start_with_env(
        dir.path(),
        port,
        &gateway_config(dir.path(), port, &proxy),
        AWS_TEST_ENV,
    );
    let sent = post_logs(&pki, port, 6, 2).await;
    assert!(
        injected.load(Ordering::Relaxed) > 0,
        "the proxy failed no record: {}",
        gw.log_text()
    );
    assert_eq!(messages(&delivered(&moto, "edge-logs").await), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_to_a_firehose_traces_sink_arrive_as_one_document_each() {
    use edge_schema::proto::otlp::trace::{
        ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span, Status,
    };
    use edge_schema::proto::otlp::{AnyValue, KeyValue, Resource, any_value};
    use prost::Message;

    let moto = Moto::start();
    setup_named_stream(&moto, "spans", "edge-spans").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let config = format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/test-server.crt, key: {d}/test-server.key, client_ca: {d}/test-ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal }}\n\
         sinks:\n  metrics: {{ kind: file, dir: {d}/spool }}\n  logs: {{ kind: file, dir: {d}/spool }}\n  \
         traces: {{ kind: firehose, delivery_stream: spans, region: us-east-1, endpoint_url: \"{endpoint}\" }}\n",
        d = dir.path().display(),
        endpoint = moto.url()
    );
    let gw = Gateway::start_with_env(dir.path(), port, &config, AWS_TEST_ENV);
    let text = |v: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        })
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    KeyValue {
                        key: "service.name".into(),
                        value: text("lobby"),
                    },
                    KeyValue {
                        key: "host.name".into(),
                        value: text("gs-9"),
                    },
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..7u8)
                    .map(|i| Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![i + 1; 8],
                        parent_span_id: if i == 0 { Vec::new() } else { vec![1; 8] },
                        name: format!("queue.admit {i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_040_000_000,
                        attributes: vec![KeyValue {
                            key: "queue".into(),
                            value: text("ranked"),
                        }],
                        status: Some(Status {
                            code: 1,
                            message: String::new(),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let cert = pki.client("x", Some("spiffe://obs.internal/tenant/game/gs-9"));
    let mut c = Client::connect(port, tls_config(&pki.ca_der, Some(&cert)))
        .await
        .expect("connect");
    let body = zstd::bulk::compress(&request.encode_to_vec(), 1).expect("zstd");
    let a = c
        .request(
            "POST",
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "zstd"),
            ],
            body,
        )
        .await
        .expect("post");
    assert_eq!(a.status, 200, "{}\n{}", a.body, gw.log_text());
    let lines = delivered(&moto, "edge-spans").await;
    assert_eq!(lines.len(), 7, "one document per span: {lines:?}");
    let mut names = Vec::new();
    for line in &lines {
        let doc: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(doc["tenant"], "game");
        assert_eq!(doc["service"], "lobby");
        assert_eq!(doc["host"], "gs-9");
        assert_eq!(doc["trace_id"], "abababababababababababababababab");
        assert_eq!(doc["duration_ms"], 40.0);
        assert_eq!(doc["status"]["code"], "ok");
        assert_eq!(doc["attributes"]["queue"], "ranked");
        names.push(doc["name"].as_str().unwrap_or_default().to_string());
    }
    names.sort();
    assert_eq!(
        names,
        (0..7)
            .map(|i| format!("queue.admit {i}"))
            .collect::<Vec<_>>()
    );
}
