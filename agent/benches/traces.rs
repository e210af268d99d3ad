//! Spans per CPU-second through the traces path as a receiver drives it: `offer` (scrub
//! every string with the built-in detectors and a player-id pattern, batch) and the
//! pipeline's task (zstd, fsync into the disk queue's traces class).
//!
//! `cargo bench -p edge-agent --bench traces [-- --spans N]`
//!
//! The requests: 512 spans each (an OpenTelemetry SDK's default export batch), each
//! span with 8 attributes (strings, ints, a nested list), one event and one in ten
//! carrying an email, an IP address or a player id. CPU is this process's on-CPU time
//! (`/proc/self/task/*/schedstat`) around the run, the queue's fsyncs included.

use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_agent::queue::{Class, DiskQueue, QueueConfig, SharedQueue};
use edge_agent::telemetry::Telemetry;
use edge_agent::traces::TracesPipeline;
use edge_agent::traces::batch::DEFAULT_LIMITS;
use edge_schema::proto::otlp::trace::{
    ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span, span,
};
use edge_schema::proto::otlp::{AnyValue, ArrayValue, KeyValue, Resource, any_value};
use edge_tokenize::{Action, DetectorSpec, KeyFile, Tokenizer};
use tokio::sync::Notify;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn s(v: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v)),
    })
}

fn kv(k: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value,
    }
}

fn request(r: u64) -> ExportTraceServiceRequest {
    let spans = (0..512u64)
        .map(|i| {
            let n = r * 512 + i;
            let pii = match n % 30 {
                0 => format!("player{n}@example.com"),
                10 => format!("10.1.{}.{}", n % 250, i % 250),
                20 => format!("plr-{n}"),
                _ => format!("match-{}", n % 97),
            };
            Span {
                trace_id: n.to_be_bytes().repeat(2),
                span_id: n.to_be_bytes().to_vec(),
                name: format!("game.tick {}", i % 16),
                kind: span::SpanKind::Internal as i32,
                start_time_unix_nano: 1_700_000_000_000_000_000 + n,
                end_time_unix_nano: 1_700_000_000_001_000_000 + n,
                attributes: vec![
                    kv("game.map", s("dust".into())),
                    kv("game.mode", s("ranked".into())),
                    kv("game.session", s(pii)),
                    kv(
                        "net.peer.port",
                        Some(AnyValue {
                            value: Some(any_value::Value::IntValue(7777)),
                        }),
                    ),
                    kv(
                        "tick.budget_ms",
                        Some(AnyValue {
                            value: Some(any_value::Value::DoubleValue(16.6)),
                        }),
                    ),
                    kv("shard_id", s(format!("{}", n % 4))),
                    kv("build_id", s("2026.12.1".into())),
                    kv(
                        "tags",
                        Some(AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue {
                                        value: Some(any_value::Value::StringValue("a".into())),
                                    },
                                    AnyValue {
                                        value: Some(any_value::Value::StringValue("b".into())),
                                    },
                                ],
                            })),
                        }),
                    ),
                ],
                events: vec![span::Event {
                    name: "overrun".into(),
                    attributes: vec![kv(
                        "by_ms",
                        Some(AnyValue {
                            value: Some(any_value::Value::IntValue(3)),
                        }),
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("game".into()))],
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

fn main() {
    let spans = arg("--spans", 1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("key"), "a benchmark key, long enough").expect("key");
    let key = KeyFile::open(dir.path().join("key")).expect("key");
    let tokenizer = Tokenizer::new(
        key.key().clone(),
        &[DetectorSpec {
            name: "player_id".into(),
            pattern: Some("plr-[0-9]+".into()),
            action: Action::Tokenize,
        }],
    )
    .expect("tokenizer");
    let mut config = QueueConfig::new(dir.path().join("queue"));
    config.max_bytes = 4 << 30;
    let (queue, _) = DiskQueue::open(config).expect("queue");
    let queue: SharedQueue = Arc::new(Mutex::new(queue));
    let telemetry = Arc::new(Telemetry::default());
    let pipeline = Arc::new(TracesPipeline::with_tokenizer(
        tokenizer,
        key,
        DEFAULT_LIMITS,
        "gs-bench",
        &[("region".into(), "eu-west-1".into())],
        queue.clone(),
        4 << 30,
        Arc::new(Notify::new()),
        telemetry.clone(),
        Arc::new(AtomicU8::new(0)),
    ));
    // Requests are built before the clock starts: a receiver gets them decoded.
    let requests: Vec<ExportTraceServiceRequest> = (0..spans.div_ceil(512)).map(request).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pid = std::process::id();
    let cpu_before = edge_tests::procstat::cpu(pid);
    let started = Instant::now();
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(pipeline.clone().run(stop_rx));
        for r in requests {
            let _ = pipeline.offer(r);
            tokio::task::yield_now().await;
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    });
    let wall = started.elapsed();
    let cpu = edge_tests::procstat::cpu(pid).saturating_sub(cpu_before);
    let accepted = telemetry.spans_counted("accepted");
    let queued = queue
        .lock()
        .map(|mut q| q.pending(Class::Traces).unwrap_or(0))
        .unwrap_or(0);
    println!(
        "{accepted} spans in {queued} batches: {:.0} spans per CPU-second ({:.2} CPU-s, {:.2} s wall)",
        accepted as f64 / cpu.as_secs_f64(),
        cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
}
