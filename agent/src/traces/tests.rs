use std::sync::atomic::AtomicU8;

use edge_schema::proto::otlp::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use edge_schema::proto::otlp::{ArrayValue, KeyValueList};
use prost::Message;

use super::*;
use crate::queue::{DiskQueue, QueueConfig};
use edge_tokenize::{Action, DetectorSpec, Tokenizer};

const EMAIL: &str = "jane.doe@example.com";
const IP: &str = "203.0.113.77";

fn s(v: &str) -> Option<AnyValue> {
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

/// A span with PII in every place a string can hold it.
fn pii_span(i: u8) -> Span {
    Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        name: format!("login {EMAIL}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes: vec![
            kv("user.email", s(EMAIL)),
            kv("player_id", s("plr-12345")),
            kv(
                "count",
                Some(AnyValue {
                    value: Some(any_value::Value::IntValue(7)),
                }),
            ),
            kv(
                "nested",
                Some(AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("peer", s(&format!("from {IP}")))],
                    })),
                }),
            ),
            kv(
                "list",
                Some(AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![s("plain").unwrap_or_default(), s(EMAIL).unwrap_or_default()],
                    })),
                }),
            ),
            kv(
                "raw",
                Some(AnyValue {
                    value: Some(any_value::Value::BytesValue(EMAIL.as_bytes().to_vec())),
                }),
            ),
        ],
        events: vec![span::Event {
            name: format!("mail to {EMAIL}"),
            attributes: vec![kv("to", s(EMAIL))],
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            attributes: vec![kv("from", s(IP))],
            ..Default::default()
        }],
        status: Some(Status {
            message: format!("failed for {EMAIL}"),
            code: 2,
        }),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("game")), kv("owner", s(EMAIL))],
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

struct Rig {
    _dir: tempfile::TempDir,
    pipeline: Arc<TracesPipeline>,
    queue: SharedQueue,
    telemetry: Arc<Telemetry>,
    hint: Arc<AtomicU8>,
}

fn rig(limits: BatchLimits, extra: Vec<DetectorSpec>) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("tokenize.key");
    std::fs::write(&key_path, "a test key that is long enough to use").expect("key");
    let key = KeyFile::open(&key_path).expect("key file");
    let mut specs = vec![DetectorSpec {
        name: "player_id".into(),
        pattern: Some("plr-[0-9]+".into()),
        action: Action::Tokenize,
    }];
    specs.extend(extra);
    let tokenizer = Tokenizer::new(key.key().clone(), &specs).expect("tokenizer");
    let mut config = QueueConfig::new(dir.path().join("queue"));
    config.count_items = crate::queue::items::count;
    config.max_bytes = 10 << 20;
    let (q, _) = DiskQueue::open(config).expect("queue");
    let queue: SharedQueue = Arc::new(Mutex::new(q));
    let telemetry = Arc::new(Telemetry::default());
    let hint = Arc::new(AtomicU8::new(0));
    let pipeline = Arc::new(TracesPipeline::with_tokenizer(
        tokenizer,
        key,
        limits,
        "gs-1",
        &[("region".into(), "eu-west-1".into())],
        queue.clone(),
        10 << 20,
        Arc::new(Notify::new()),
        telemetry.clone(),
        hint.clone(),
    ));
    Rig {
        _dir: dir,
        pipeline,
        queue,
        telemetry,
        hint,
    }
}

fn queued(queue: &SharedQueue) -> Vec<ExportTraceServiceRequest> {
    let mut q = queue.lock().expect("queue");
    q.peek(Class::Traces, usize::MAX)
        .expect("peek")
        .into_iter()
        .map(|e| {
            let raw = zstd::bulk::decompress(&e.payload, 64 << 20).expect("zstd");
            ExportTraceServiceRequest::decode(raw.as_slice()).expect("OTLP")
        })
        .collect()
}

fn spans_of(requests: &[ExportTraceServiceRequest]) -> Vec<Span> {
    requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.clone()) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

#[tokio::test]
async fn every_string_of_a_span_is_tokenized_nested_values_too_and_nothing_else_changes() {
    let r = rig(batch::DEFAULT_LIMITS, Vec::new());
    let verdict = r.pipeline.offer(request(vec![pii_span(1), pii_span(2)]));
    assert_eq!(
        verdict,
        TraceVerdict::Accepted {
            rejected_spans: 0,
            error_message: String::new()
        }
    );
    r.pipeline.flush().await;
    let requests = queued(&r.queue);
    assert_eq!(requests.len(), 1, "one batch");
    let spans = spans_of(&requests);
    assert_eq!(spans.len(), 2);
    let raw = requests[0].encode_to_vec();
    for pii in [EMAIL.as_bytes(), IP.as_bytes(), b"plr-12345"] {
        assert!(
            !raw.windows(pii.len()).any(|w| w == pii),
            "{} left in the batch",
            String::from_utf8_lossy(pii)
        );
    }
    // Nor anywhere in the queue's files.
    for entry in std::fs::read_dir(r._dir.path().join("queue/traces")).expect("dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let plain = zstd::bulk::decompress(&bytes[8..], 64 << 20).unwrap_or_default();
        assert!(!plain.windows(EMAIL.len()).any(|w| w == EMAIL.as_bytes()));
    }
    let span = &spans[0];
    let token_prefix = "tok_";
    assert!(span.name.starts_with("login tok_"), "{}", span.name);
    let attr = |k: &str| span.attributes.iter().find(|a| a.key == k).expect(k);
    assert!(text(&attr("user.email").value).starts_with(token_prefix));
    // A key that names a configured detector is tokenized whole, as in logs.
    assert!(text(&attr("player_id").value).starts_with(token_prefix));
    // The same value gives the same token (correlation survives).
    assert_eq!(
        text(&attr("user.email").value),
        text(&spans[1].attributes[0].value)
    );
    assert_eq!(
        attr("count").value,
        Some(AnyValue {
            value: Some(any_value::Value::IntValue(7))
        })
    );
    match attr("nested").value.as_ref().and_then(|v| v.value.clone()) {
        Some(any_value::Value::KvlistValue(list)) => {
            assert!(text(&list.values[0].value).starts_with("from tok_"));
        }
        other => panic!("{other:?}"),
    }
    match attr("list").value.as_ref().and_then(|v| v.value.clone()) {
        Some(any_value::Value::ArrayValue(a)) => {
            assert_eq!(text(&Some(a.values[0].clone())), "plain");
            assert!(text(&Some(a.values[1].clone())).starts_with(token_prefix));
        }
        other => panic!("{other:?}"),
    }
    assert!(span.events[0].name.starts_with("mail to tok_"));
    assert!(text(&span.events[0].attributes[0].value).starts_with(token_prefix));
    assert!(text(&span.links[0].attributes[0].value).starts_with(token_prefix));
    assert!(
        span.status
            .as_ref()
            .expect("status")
            .message
            .starts_with("failed for tok_")
    );
    // Ids, kind and times pass untouched.
    assert_eq!(span.trace_id, vec![1; 16]);
    assert_eq!(span.end_time_unix_nano, 1_700_000_000_100_000_000);
    // The resource keeps the client's attributes (scrubbed) and gains the host's.
    let resource = requests[0].resource_spans[0]
        .resource
        .as_ref()
        .expect("resource");
    let rattr = |k: &str| {
        resource
            .attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| text(&a.value))
    };
    assert_eq!(rattr("service.name").as_deref(), Some("game"));
    assert!(rattr("owner").expect("owner").starts_with(token_prefix));
    assert_eq!(rattr("host.name").as_deref(), Some("gs-1"));
    assert_eq!(rattr("region").as_deref(), Some("eu-west-1"));
    assert_eq!(r.telemetry.spans_counted("accepted"), 2);
}

#[tokio::test]
async fn a_drop_detector_refuses_the_span_and_says_so() {
    let r = rig(
        batch::DEFAULT_LIMITS,
        vec![DetectorSpec {
            name: "secret".into(),
            pattern: Some("sk_live_[a-z0-9]+".into()),
            action: Action::Drop,
        }],
    );
    let mut bad = pii_span(3);
    bad.events[0]
        .attributes
        .push(kv("card", s("key sk_live_abc123")));
    let verdict = r
        .pipeline
        .offer(request(vec![pii_span(1), bad, pii_span(2)]));
    match verdict {
        TraceVerdict::Accepted {
            rejected_spans,
            error_message,
        } => {
            assert_eq!(rejected_spans, 1);
            assert!(error_message.contains("\"secret\""), "{error_message}");
        }
        other => panic!("{other:?}"),
    }
    r.pipeline.flush().await;
    let spans = spans_of(&queued(&r.queue));
    assert_eq!(
        spans.iter().map(|s| s.trace_id[0]).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(r.telemetry.spans_counted("refused"), 1);
    assert_eq!(r.telemetry.spans_counted("accepted"), 2);
}

#[tokio::test]
async fn batches_close_by_spans_by_bytes_and_by_age() {
    let limits = BatchLimits {
        max_bytes: 1 << 20,
        max_spans: 3,
        max_age: Duration::from_secs(3600),
    };
    let r = rig(limits, Vec::new());
    for i in 0..7 {
        r.pipeline.offer(request(vec![pii_span(i)]));
    }
    // Two full batches wait for the task; the seventh span is open.
    let (closed, _) = r.pipeline.take(Instant::now(), false);
    assert_eq!(
        closed.iter().map(|c| c.spans).collect::<Vec<_>>(),
        vec![3, 3]
    );
    // By age: nothing is due before max_age, the open batch is after it.
    let mut b = Batcher::new(BatchLimits {
        max_bytes: 1 << 20,
        max_spans: 100,
        max_age: Duration::from_secs(1),
    });
    let t0 = Instant::now();
    assert!(
        b.add(request(vec![pii_span(1)]).resource_spans.remove(0), 1, t0)
            .is_empty()
    );
    assert_eq!(
        b.due_in(t0 + Duration::from_millis(400)),
        Some(Duration::from_millis(600))
    );
    assert!(b.due(t0 + Duration::from_millis(999)).is_none());
    assert_eq!(b.due(t0 + Duration::from_secs(1)).map(|c| c.spans), Some(1));
    // By bytes: a request that would pass the bound closes the open batch first.
    let one = request(vec![pii_span(1)])
        .resource_spans
        .remove(0)
        .encoded_len();
    let mut b = Batcher::new(BatchLimits {
        max_bytes: one * 2 + one / 2,
        max_spans: 100,
        max_age: Duration::from_secs(3600),
    });
    let mut sizes = Vec::new();
    for i in 0..5 {
        let rs = request(vec![pii_span(i)]).resource_spans.remove(0);
        sizes.extend(b.add(rs, 1, t0).into_iter().map(|c| c.spans));
    }
    sizes.extend(b.close().map(|c| c.spans));
    assert_eq!(sizes, vec![2, 2, 1]);
}

#[tokio::test]
async fn traces_are_shed_after_debug_logs_and_before_info_logs() {
    let r = rig(batch::DEFAULT_LIMITS, Vec::new());
    // The gateway's `debug` hint sheds debug logs only.
    r.hint.store(1, Ordering::Relaxed);
    assert!(matches!(
        r.pipeline.offer(request(vec![pii_span(1)])),
        TraceVerdict::Accepted { .. }
    ));
    // `info` sheds traces too.
    r.hint.store(2, Ordering::Relaxed);
    assert_eq!(
        r.pipeline.offer(request(vec![pii_span(2), pii_span(3)])),
        TraceVerdict::Shedding {
            retry_after: SHED_RETRY_AFTER
        }
    );
    r.hint.store(0, Ordering::Relaxed);
    // A queue filled past the debug threshold (0.8) but not the traces one: taken.
    let mut figures = crate::queue::figures::QueueFigures::default();
    figures.bytes[Class::Metrics as usize] = (10 << 20) * 82 / 100;
    r.telemetry.set_queue(&figures);
    assert!(matches!(
        r.pipeline.offer(request(vec![pii_span(4)])),
        TraceVerdict::Accepted { .. }
    ));
    // Past the traces threshold, below the info one (0.9): shed.
    figures.bytes[Class::Metrics as usize] = (10 << 20) * 87 / 100;
    r.telemetry.set_queue(&figures);
    assert!(matches!(
        r.pipeline.offer(request(vec![pii_span(5)])),
        TraceVerdict::Shedding { .. }
    ));
    assert_eq!(r.telemetry.spans_counted("shed"), 3);
    assert_eq!(r.telemetry.spans_counted("accepted"), 2);
}

#[tokio::test]
async fn the_task_queues_an_open_batch_when_it_is_due_not_before() {
    let r = rig(
        BatchLimits {
            max_bytes: 1 << 20,
            max_spans: 100,
            max_age: Duration::from_millis(300),
        },
        Vec::new(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(r.pipeline.clone().run(stop_rx));
    // Let the task go idle first: the offer must wake it to set the deadline.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let offered = Instant::now();
    r.pipeline.offer(request(vec![pii_span(1)]));
    let deadline = offered + Duration::from_secs(30);
    loop {
        if !queued(&r.queue).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the open batch was never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        offered.elapsed() >= Duration::from_millis(300),
        "queued before it was due"
    );
    assert_eq!(spans_of(&queued(&r.queue)).len(), 1);
    // A span offered just before the stop is queued by the final flush.
    r.pipeline.offer(request(vec![pii_span(2)]));
    let _ = stop_tx.send(true);
    task.await.expect("task");
    assert_eq!(spans_of(&queued(&r.queue)).len(), 2);
}
