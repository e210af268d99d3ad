//! The agent's traces path end to end, up to the receivers: spans handed to the real
//! [`TracesPipeline`] (the interface the OTLP receivers call) are tokenized, batched into
//! the real disk queue and delivered by the real sender over mTLS to the real
//! `edge-gateway` binary, which commits them to its `file` traces sink. The gateway's
//! span quota is small, so the sender meets 429 + Retry-After and must hold and retry:
//! every span arrives once, and no PII byte reaches the gateway.
//!
//! Once the OTLP receivers are merged, this test should offer the spans through the
//! agent binary's `:4318/v1/traces` from the OpenTelemetry Python SDK instead of calling
//! `offer` (see the README's traces section).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_agent::cadence::Cadence;
use edge_agent::config::TlsFiles;
use edge_agent::queue::{DiskQueue, QueueConfig, SharedQueue};
use edge_agent::sender::tls::ReloadingTls;
use edge_agent::sender::{Sender, SenderConfig};
use edge_agent::telemetry::{Stream, Telemetry};
use edge_agent::traces::batch::BatchLimits;
use edge_agent::traces::{TraceVerdict, TracesPipeline};
use edge_schema::proto::otlp::trace::{
    ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span, span,
};
use edge_schema::proto::otlp::{AnyValue, KeyValue, KeyValueList, Resource, any_value};
use edge_tests::procs::{Proc, free_port};
use edge_tokenize::{Action, DetectorSpec, KeyFile, Tokenizer};
use prost::Message;
use tokio::sync::{Notify, watch};

const PII: &[&str] = &[
    "carol.jones@example.org",
    "198.51.100.23",
    "2001:db8:85a3::8a2e:370:7334",
    "p-55501234",
];

/// Requests offered, and spans in each: a batch closes at each request, and the
/// gateway's burst (100 spans) takes one batch of 60 at a time.
const REQUESTS: usize = 5;
const SPANS_PER_REQUEST: usize = 60;

fn text(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn kv(k: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value,
    }
}

fn request(r: usize) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| {
            let pii = PII[i % PII.len()];
            Span {
                trace_id: vec![r as u8 + 1; 16],
                span_id: [r as u32, i as u32]
                    .iter()
                    .flat_map(|n| n.to_be_bytes())
                    .collect(),
                name: format!("login {pii}"),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_002_000_000,
                attributes: vec![
                    kv("user.email", text(PII[0])),
                    kv("player_id", text(PII[3])),
                    kv("request", text(&format!("GET /login?from={}", PII[1]))),
                    kv(
                        "peer",
                        Some(AnyValue {
                            value: Some(any_value::Value::KvlistValue(KeyValueList {
                                values: vec![kv("addr", text(PII[2]))],
                            })),
                        }),
                    ),
                    kv(
                        "shard",
                        Some(AnyValue {
                            value: Some(any_value::Value::IntValue(i as i64)),
                        }),
                    ),
                ],
                events: vec![span::Event {
                    name: "mail".into(),
                    attributes: vec![kv("to", text(PII[0]))],
                    ..Default::default()
                }],
                links: vec![span::Link {
                    trace_id: vec![0xee; 16],
                    span_id: vec![0xee; 8],
                    attributes: vec![kv("from", text(PII[1]))],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", text("game"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn spool_spans(spool: &std::path::Path) -> Vec<(String, ResourceSpans)> {
    let (records, _) = edge_gateway::sink::file::read_spool(spool, "traces").unwrap_or_default();
    records
        .into_iter()
        .flat_map(|r| {
            let req = ExportTraceServiceRequest::decode(r.data.as_slice())
                .expect("an ExportTraceServiceRequest in the spool");
            let key = r.key.clone();
            req.resource_spans
                .into_iter()
                .map(move |rs| (key.clone(), rs))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_spans_reach_the_gateways_traces_sink_tokenized_through_429s_once_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = edge_tests::pki::Pki::new(d).expect("pki");
    pki.write_client(d, "gs-1", "game").expect("client cert");
    let port = free_port();
    let yaml = format!(
        "{head}tenants:\n  default: {{ span_rate_limit: 50, span_burst: 100 }}\n\
         sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }}, traces: {{ kind: file, dir: {d}/spool }} }}\n",
        head = edge_tests::pki::gateway_yaml_head(port, d),
        d = d.display()
    );
    let gateway =
        Proc::configured("edge-gateway", d, "gateway", &yaml, &[], port).expect("gateway");

    // The agent's side, as the daemon builds it for `output.traces_url`.
    std::fs::write(d.join("tokenize.key"), "e2e-key-0123456789abcdef\n").expect("key");
    let key = KeyFile::open(d.join("tokenize.key")).expect("key file");
    let tokenizer = Tokenizer::new(
        key.key().clone(),
        &[DetectorSpec {
            name: "player_id".into(),
            pattern: Some("p-[0-9]{6,}".into()),
            action: Action::Tokenize,
        }],
    )
    .expect("tokenizer");
    let mut queue_config = QueueConfig::new(d.join("queue"));
    queue_config.count_items = edge_agent::queue::items::count;
    let max_bytes = queue_config.max_bytes;
    let (queue, _) = DiskQueue::open(queue_config).expect("queue");
    let queue: SharedQueue = Arc::new(Mutex::new(queue));
    let telemetry = Arc::new(Telemetry::default());
    let wake = Arc::new(Notify::new());
    let tls = ReloadingTls::load(TlsFiles {
        cert: d.join("agent.crt"),
        key: d.join("agent.key"),
        ca: d.join("ca.crt"),
    })
    .expect("tls");
    let sender = Sender::new(
        SenderConfig {
            stream: Stream::Traces,
            urls: vec![format!("https://localhost:{port}/v1/traces")],
            classes: vec![edge_agent::queue::Class::Traces],
            headers: edge_agent::daemon::otlp_headers(),
        },
        Some(tls),
        queue.clone(),
        wake.clone(),
        telemetry.clone(),
        Arc::new(Cadence::new(
            Duration::from_secs(10),
            Duration::from_secs(5),
        )),
    )
    .expect("sender");
    let pipeline = Arc::new(TracesPipeline::with_tokenizer(
        tokenizer,
        key,
        BatchLimits {
            max_bytes: 1 << 20,
            max_spans: SPANS_PER_REQUEST,
            max_age: Duration::from_millis(200),
        },
        "gs-1",
        &[("region".into(), "eu-test-1".into())],
        queue.clone(),
        max_bytes,
        wake,
        telemetry.clone(),
        sender.shed_hint(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(pipeline.clone().run(stop_rx.clone()));
    let send = tokio::spawn(sender.run(stop_rx));

    for r in 0..REQUESTS {
        assert_eq!(
            pipeline.offer(request(r)),
            TraceVerdict::Accepted {
                rejected_spans: 0,
                error_message: String::new()
            }
        );
    }

    let total = REQUESTS * SPANS_PER_REQUEST;
    let spool = d.join("spool");
    let deadline = Instant::now() + Duration::from_secs(180);
    let delivered = loop {
        let got = spool_spans(&spool);
        let n: usize = got
            .iter()
            .flat_map(|(_, rs)| &rs.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        if n >= total {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {total} spans arrived\ngateway: {}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), send).await;

    // Every span once, under the agent's tenant, with the host on its resource.
    let mut ids: Vec<Vec<u8>> = Vec::new();
    for (tenant, rs) in &delivered {
        assert_eq!(tenant, "game");
        let resource = rs.resource.as_ref().expect("resource");
        let attr = |k: &str| {
            resource
                .attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
        };
        assert_eq!(attr("host.name"), text("gs-1"));
        assert_eq!(attr("region"), text("eu-test-1"));
        assert_eq!(attr("service.name"), text("game"));
        // The mark that spares these spans a second scrub at the gateway.
        assert_eq!(attr("edgepipe.tokenized"), text("true"));
        for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            ids.push(s.span_id.clone());
            assert!(s.name.starts_with("login tok_"), "{}", s.name);
            assert_eq!(s.end_time_unix_nano, 1_700_000_000_002_000_000);
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((n, ids.len()), (total, total), "each span exactly once");
    // The quota held the sender back at least once; nothing was dropped for it.
    assert!(
        telemetry.responses(Stream::Traces, "429") >= 1,
        "the gateway's span quota never answered 429"
    );
    assert_eq!(telemetry.responses(Stream::Traces, "2xx"), REQUESTS as u64);
    assert_eq!(telemetry.spans_counted("accepted"), total as u64);
    assert!(telemetry.snapshot(0).iter().any(|(k, p)| {
        k.name == "edge_send_dropped_batches_total"
            && k.labels.iter().any(|(_, v)| v == "traces")
            && matches!(p, edge_agent::metrics::Point::Float { value, .. } if *value == 0.0)
    }));
    // No PII byte anywhere in the gateway's spool.
    for entry in std::fs::read_dir(spool.join("traces")).expect("spool dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("segment");
        for pii in PII {
            assert!(
                !bytes.windows(pii.len()).any(|w| w == pii.as_bytes()),
                "{pii} reached the gateway"
            );
        }
    }
    // The queue is empty: every batch was acknowledged.
    assert_eq!(telemetry.queue_records(edge_agent::queue::Class::Traces), 0);
}
