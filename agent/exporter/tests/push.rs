//! Pushes a snapshot to a loopback receiver, decodes the `WriteRequest` it sent, and
//! checks the native histogram's spans and deltas against the recorded values.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use edge_exporter::histogram::{BucketSpan, decode_spans, lower_boundary};
use edge_exporter::push::{PushConfig, Pusher, push_once};
use edge_exporter::registry::Registry;
use edge_schema::proto::prometheus::{WriteRequest, histogram::Count};
use prost::Message;

/// One HTTP request received by the fake agent: its headers and decompressed body.
struct Received {
    head: String,
    request: WriteRequest,
}

fn receive(listener: &TcpListener, status: &str) -> Received {
    let (conn, _) = listener.accept().expect("accept");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reader = BufReader::new(&conn);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("body");
    (&conn)
        .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
        .expect("answer");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block format");
    Received {
        head,
        request: WriteRequest::decode(raw.as_slice()).expect("a WriteRequest"),
    }
}

fn label<'a>(ts: &'a edge_schema::proto::prometheus::TimeSeries, name: &str) -> Option<&'a str> {
    ts.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

#[test]
fn pushed_native_histogram_matches_the_recorded_values() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/v1/push",
        listener.local_addr().expect("addr")
    );

    let registry = Registry::new();
    let tick = registry
        .histogram("game_tick_duration_seconds", "Tick time.")
        .expect("family")
        .with(&[("shard_id", "3")])
        .expect("allowed series");
    let values = [0.001, 0.0015, 0.004, 0.004, 0.0041, 0.016, 0.25, 0.0];
    for v in values {
        tick.record(v);
    }
    let actions = registry
        .counter("game_actions_total", "Actions.")
        .expect("family")
        .with(&[("action", "move")])
        .expect("allowed series");
    actions.add(7);
    let cpu = registry
        .float_counter("edge_agent_cpu_seconds_total", "CPU seconds.")
        .expect("family")
        .with(&[])
        .expect("allowed series");
    cpu.add(1.25).expect("finite, positive");

    let server = std::thread::spawn(move || receive(&listener, "204 No Content"));
    push_once(&registry, &url, Duration::from_secs(5)).expect("push accepted");
    let got = server.join().expect("receiver");

    let head = got.head.to_ascii_lowercase();
    assert!(head.starts_with("post /api/v1/push http/1.1"));
    assert!(head.contains("content-type: application/x-protobuf"));
    assert!(head.contains("content-encoding: snappy"));
    assert!(head.contains("x-prometheus-remote-write-version: 0.1.0"));

    let series = got
        .request
        .timeseries
        .iter()
        .find(|ts| label(ts, "__name__") == Some("game_tick_duration_seconds"))
        .expect("the histogram series was sent");
    assert_eq!(label(series, "shard_id"), Some("3"));
    assert!(
        series.labels.windows(2).all(|w| w[0].name < w[1].name),
        "labels sorted"
    );
    assert!(series.samples.is_empty());
    assert_eq!(
        series.histograms.len(),
        1,
        "one native histogram, not one series per bucket"
    );
    let h = &series.histograms[0];
    assert_eq!(h.schema, 2);
    assert_eq!(h.count, Some(Count::CountInt(values.len() as u64)));
    assert!((h.sum - values.iter().sum::<f64>()).abs() < 1e-12);

    // Decode spans + deltas and check each recorded value lands in its bucket.
    let spans: Vec<BucketSpan> = h
        .positive_spans
        .iter()
        .map(|s| BucketSpan {
            offset: s.offset,
            length: s.length,
        })
        .collect();
    let buckets = decode_spans(&spans, &h.positive_deltas).expect("valid spans and deltas");
    let mut expected: std::collections::BTreeMap<i32, u64> = Default::default();
    for v in values.iter().filter(|v| **v > h.zero_threshold) {
        // Prometheus bucket i at schema s covers (2^((i-1)/2^s), 2^(i/2^s)]: OpenTelemetry
        // bucket i − 1, whose exact bounds `lower_boundary` gives.
        let i = (v.log2() * 4.0).ceil() as i32;
        assert!(lower_boundary(i - 1, 2) < *v && *v <= lower_boundary(i, 2));
        *expected.entry(i).or_default() += 1;
    }
    let got_buckets: std::collections::BTreeMap<i32, u64> =
        buckets.into_iter().filter(|(_, c)| *c > 0).collect();
    assert_eq!(got_buckets, expected);
    let zero = match h.zero_count {
        Some(edge_schema::proto::prometheus::histogram::ZeroCount::ZeroCountInt(n)) => n,
        other => panic!("integer zero count expected, got {other:?}"),
    };
    assert_eq!(zero, 1, "the 0.0 observation is in the zero bucket");

    let counter = got
        .request
        .timeseries
        .iter()
        .find(|ts| label(ts, "__name__") == Some("game_actions_total"))
        .expect("counter sent");
    assert_eq!(counter.samples[0].value, 7.0);
    let cpu = got
        .request
        .timeseries
        .iter()
        .find(|ts| label(ts, "__name__") == Some("edge_agent_cpu_seconds_total"))
        .expect("float counter sent");
    assert_eq!(cpu.samples[0].value, 1.25);
    assert!(
        got.request
            .metadata
            .iter()
            .any(|m| m.metric_family_name == "game_tick_duration_seconds")
    );
}

#[test]
fn a_forbidden_label_is_refused_counted_and_folded_into_overflow() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/v1/push",
        listener.local_addr().expect("addr")
    );
    let registry = Registry::new();
    let actions = registry
        .counter("game_actions_total", "Actions.")
        .expect("family");
    let ok = actions.with(&[("action", "move")]).expect("allowed");
    ok.inc();
    let refused = actions
        .with(&[("action", "move"), ("player_id", "88213")])
        .expect_err("player_id is forbidden");
    let message = refused.to_string();
    assert!(
        message.contains("game_actions_total") && message.contains("player_id"),
        "{message}"
    );
    assert_eq!(refused.error.reason(), "forbidden_label");
    refused.overflow.add(3);
    // The same metric's other refusals share the one overflow series.
    actions.with_or_overflow(&[("action", "bogus")]).add(2);
    assert_eq!(registry.rejected("forbidden_label"), 1);
    assert_eq!(registry.rejected("label_value_not_declared"), 1);

    let server = std::thread::spawn(move || receive(&listener, "200 OK"));
    push_once(&registry, &url, Duration::from_secs(5)).expect("pushed");
    let got = server.join().expect("receiver");
    let all: Vec<String> = got
        .request
        .timeseries
        .iter()
        .flat_map(|ts| ts.labels.iter().map(|l| format!("{}={}", l.name, l.value)))
        .collect();
    assert!(
        !all.iter()
            .any(|l| l.contains("player_id") || l.contains("88213")),
        "{all:?}"
    );
    let overflow = got
        .request
        .timeseries
        .iter()
        .find(|ts| {
            label(ts, "__name__") == Some("game_actions_total")
                && label(ts, "edge_overflow") == Some("true")
        })
        .expect("overflow series");
    assert_eq!(overflow.samples[0].value, 5.0);
    let rejected = got
        .request
        .timeseries
        .iter()
        .find(|ts| {
            label(ts, "__name__") == Some("edge_series_rejected_total")
                && label(ts, "reason") == Some("forbidden_label")
        })
        .expect("the refusal is counted in the exporter's own metrics");
    assert_eq!(label(rejected, "stage"), Some("exporter"));
    assert_eq!(rejected.samples[0].value, 1.0);
}

#[test]
fn budget_refuses_new_series_but_keeps_existing_ones_and_room_for_overflow() {
    let schema = edge_schema::check::Schema::new(
        edge_schema::policy::LabelPolicy::shipped(),
        edge_schema::catalog::Catalog::shipped(),
    );
    let registry = Registry::with_schema_and_budget(schema, 4);
    let fam = registry
        .gauge("game_queue_depth", "Depth.")
        .expect("family");
    // Budget 4, one slot reserved for this family's overflow: 3 regular series fit.
    for q in ["a", "b", "c"] {
        fam.with(&[("queue", q)]).expect("within budget").set(1.0);
    }
    let refused = fam.with(&[("queue", "d")]).expect_err("over budget");
    assert_eq!(refused.error.reason(), "budget");
    refused.overflow.set(9.0);
    assert_eq!(
        registry.series_count(),
        4,
        "3 regular + 1 overflow = the budget"
    );
    assert!(
        fam.with(&[("queue", "a")]).is_ok(),
        "existing series keep flowing"
    );
    assert_eq!(registry.rejected("budget"), 1);
}

#[test]
fn a_dead_agent_costs_a_counted_drop_not_a_stall() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/v1/push",
        listener.local_addr().expect("addr")
    );
    drop(listener);
    let registry = Registry::new();
    let pusher = Pusher::spawn(
        registry.clone(),
        PushConfig {
            url,
            cadence: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
            ..PushConfig::default()
        },
    )
    .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    pusher.stop();
    assert!(
        registry.push_failures("refused") >= 2,
        "each failed push is counted"
    );
}
