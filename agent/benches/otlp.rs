//! The OTLP receivers' cost, measured in this process's on-CPU time
//! (`/proc/self/task/*/schedstat`) around the work, without the network:
//!
//! - `logs`: OTLP log records per CPU-second from the encoded `ExportLogsServiceRequest`
//!   (512 records a request, as an SDK's batch processor sends them; body and four
//!   attributes each, one in ten with an email or an IP address, a nested map on every
//!   fifth) through decoding, mapping, the filters, tokenization (the built-in detectors)
//!   and batching into the disk queue (zstd, fdatasync per request).
//! - `metrics`: the CPU of one 10 s cycle's export of 250 OTLP series, 20 of them
//!   exponential histograms (160 buckets), from the encoded request through decoding,
//!   mapping, the gate and the batch's remote_write encoding.
//!
//! `cargo bench -p edge-agent --bench otlp [-- --records N --cycles N]`

use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_agent::cadence::Cadence;
use edge_agent::logs::pipeline::LogsPipeline;
use edge_agent::metrics::gate::Gate;
use edge_agent::metrics::{Batch, Pipeline};
use edge_agent::otlp::{LogsSink, Receivers};
use edge_agent::queue::DiskQueue;
use edge_agent::shared::Shared;
use edge_agent::telemetry::Telemetry;
use edge_schema::proto::opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest;
use edge_schema::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use edge_schema::proto::opentelemetry::proto::common::v1::{
    AnyValue, KeyValue, KeyValueList, any_value,
};
use edge_schema::proto::opentelemetry::proto::logs::v1 as l;
use edge_schema::proto::opentelemetry::proto::metrics::v1 as m;
use edge_schema::proto::opentelemetry::proto::resource::v1::Resource;
use prost::Message;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: s(v),
    }
}

fn logs_request(n: usize, base: usize) -> Vec<u8> {
    let records = (0..n)
        .map(|i| {
            let i = base + i;
            let body = match i % 10 {
                0 => format!(
                    "player {i} joined from 203.0.113.{} as p{i}@example.com",
                    i % 250
                ),
                _ => format!("tick {i} took {} ms on shard {}", i % 17, i % 4),
            };
            let mut attributes = vec![
                kv("shard.id", &(i % 4).to_string()),
                kv("match.id", &format!("m-{}", i / 100)),
                kv("code.function", "GameLoop::tick"),
                kv("thread.name", "main"),
            ];
            if i.is_multiple_of(5) {
                attributes.push(KeyValue {
                    key: "player".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![kv("region", "eu"), kv("ip", "10.1.2.3")],
                        })),
                    }),
                });
            }
            l::LogRecord {
                time_unix_nano: 1_764_000_000_000_000_000 + i as u64,
                severity_number: 9 + 4 * i32::from(i.is_multiple_of(3)),
                body: s(&body),
                attributes,
                trace_id: vec![7; 16],
                span_id: vec![9; 8],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![l::ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "game-server")],
                dropped_attributes_count: 0,
            }),
            scope_logs: vec![l::ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn metrics_request(cycle: u64) -> Vec<u8> {
    let time = 1_764_000_000_000_000_000 + cycle * 10_000_000_000;
    let start = 1_764_000_000_000_000_000 - 1;
    let attrs = |i: usize| vec![kv("shard.id", &(i % 4).to_string())];
    let mut metrics = Vec::new();
    // 230 counters and gauges: 115 names with 2 shards each.
    for i in 0..115 {
        let points = (0..2)
            .map(|j| m::NumberDataPoint {
                attributes: attrs(j),
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(m::number_data_point::Value::AsDouble(
                    (cycle * 3 + i) as f64,
                )),
                ..Default::default()
            })
            .collect();
        let data = if i % 2 == 0 {
            m::metric::Data::Sum(m::Sum {
                data_points: points,
                aggregation_temporality: 2,
                is_monotonic: true,
            })
        } else {
            m::metric::Data::Gauge(m::Gauge {
                data_points: points,
            })
        };
        metrics.push(m::Metric {
            name: format!("game.bench.metric{i}"),
            data: Some(data),
            ..Default::default()
        });
    }
    // 20 exponential histograms: 5 names × 4 shards, 160 populated buckets at scale 4.
    for i in 0..5 {
        let points = (0..4)
            .map(|j| {
                let counts: Vec<u64> = (0..160).map(|b| 1 + cycle + (b % 7) as u64).collect();
                let count = counts.iter().sum::<u64>() + 3;
                m::ExponentialHistogramDataPoint {
                    attributes: attrs(j),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum: Some(count as f64 * 0.02),
                    scale: 4,
                    zero_count: 3,
                    positive: Some(m::exponential_histogram_data_point::Buckets {
                        offset: -120,
                        bucket_counts: counts,
                    }),
                    ..Default::default()
                }
            })
            .collect();
        metrics.push(m::Metric {
            name: format!("game.bench.latency{i}"),
            unit: "s".into(),
            data: Some(m::metric::Data::ExponentialHistogram(
                m::ExponentialHistogram {
                    data_points: points,
                    aggregation_temporality: 2,
                },
            )),
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![m::ResourceMetrics {
            scope_metrics: vec![m::ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn main() {
    let records = arg("--records", 1_000_000) as usize;
    let cycles = arg("--cycles", 2_000);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("key"), "0123456789abcdef0123456789abcdef\n").expect("key");
    let yaml = format!(
        "queue: {{ dir: {0}/queue, max_bytes: 8GiB }}\n\
         tokenize: {{ key_file: {0}/key, detectors: [email, ipv4, ipv6] }}\n\
         output: {{ metrics_url: http://127.0.0.1:1/api/v1/push, logs_url: http://127.0.0.1:1/v1/logs }}\n",
        dir.path().display()
    );
    let config = edge_agent::config::parse(std::path::Path::new("bench.yaml"), &yaml, &|_| None)
        .expect("config");
    let (queue, _) = DiskQueue::open(config.queue.clone()).expect("queue");
    let queue = Arc::new(Mutex::new(queue));
    let telemetry = Arc::new(Telemetry::default());
    let logs = LogsPipeline::new(
        &config,
        &[],
        queue,
        Arc::new(tokio::sync::Notify::new()),
        telemetry.clone(),
        Arc::new(AtomicU8::new(0)),
    )
    .expect("logs pipeline");
    let schema = edge_schema::check::Schema::new(
        edge_schema::policy::LabelPolicy::shipped(),
        edge_schema::catalog::Catalog::shipped(),
    );
    let shared = Arc::new(Shared::new(
        Pipeline {
            gate: Gate::new(schema, 300),
            batch: Batch::default(),
            host_labels: vec![("region".into(), "eu-west-1".into())],
            taps: telemetry.taps().clone(),
        },
        telemetry.clone(),
        Arc::new(Cadence::new(
            Duration::from_secs(10),
            Duration::from_secs(5),
        )),
    ));
    let receivers = Receivers::new(
        shared.clone(),
        LogsSink::Pipeline(Arc::new(Mutex::new(logs))),
    );

    // Logs.
    let bodies: Vec<Vec<u8>> = (0..8).map(|k| logs_request(512, k * 512)).collect();
    let pid = std::process::id();
    let before = edge_tests::procstat::cpu(pid);
    let started = Instant::now();
    let mut done = 0usize;
    let mut k = 0;
    while done < records {
        let request =
            ExportLogsServiceRequest::decode(bodies[k % bodies.len()].as_slice()).expect("decodes");
        let _ = receivers.logs(request);
        done += 512;
        k += 1;
    }
    let cpu = edge_tests::procstat::cpu(pid).saturating_sub(before);
    println!(
        "otlp logs: {done} records in {:.2} CPU-s ({:.2} s wall): {:.0} records per CPU-second",
        cpu.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        done as f64 / cpu.as_secs_f64()
    );

    // Metrics: one export per cycle, then the cycle's batch encoding. The requests are
    // encoded beforehand (the game's work, not the agent's).
    let bodies: Vec<Vec<u8>> = (0..cycles).map(metrics_request).collect();
    let mut series = 0;
    let before = edge_tests::procstat::cpu(pid);
    for body in &bodies {
        let request = ExportMetricsServiceRequest::decode(body.as_slice()).expect("decodes");
        let _ = receivers.metrics(&request);
        let (_, n) = shared.pipeline().take(Instant::now());
        series = n;
    }
    let cpu = edge_tests::procstat::cpu(pid).saturating_sub(before);
    println!(
        "otlp metrics: {cycles} cycles of {series} series (20 exponential histograms): {:.3} ms CPU per cycle",
        cpu.as_secs_f64() * 1000.0 / cycles as f64
    );
}
