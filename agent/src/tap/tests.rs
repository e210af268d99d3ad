use super::*;
use crate::logs::record::Level;
use http_body_util::BodyExt as _;

fn request(signal: Signal, source: Option<&str>, limit: Option<u64>) -> TapRequest {
    TapRequest {
        signal,
        source: source.map(str::to_owned),
        limit,
    }
}

fn record(message: &str) -> LogRecord {
    LogRecord {
        observed_ns: 1_700_000_000_000_000_000,
        level: Level::Warn,
        message: message.to_owned(),
        attributes: vec![("peer".into(), "tok_0123abcd_0123456789abcdef".into())],
        ..Default::default()
    }
}

/// Every line the body yields until it ends, parsed.
async fn lines(mut body: TapBody) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame
            .expect("infallible")
            .into_data()
            .expect("data frames only");
        for line in String::from_utf8(data.to_vec()).expect("utf-8").lines() {
            out.push(serde_json::from_str(line).expect("one JSON object a line"));
        }
    }
    out
}

#[test]
fn the_query_is_read_with_defaults_and_bad_parameters_are_named() {
    assert_eq!(
        TapRequest::from_query(None),
        Ok(request(Signal::Logs, None, None))
    );
    assert_eq!(
        TapRequest::from_query(Some("signal=metrics&source=node%5Fcpu&limit=5")),
        Ok(request(Signal::Metrics, Some("node_cpu"), Some(5)))
    );
    let r = request(Signal::Traces, Some("game server"), Some(3));
    assert_eq!(TapRequest::from_query(Some(&r.to_query())), Ok(r));
    let bad = |q: &str| TapRequest::from_query(Some(q)).expect_err("refused");
    assert!(bad("signal=events").contains("signal=events"));
    assert!(bad("limit=ten").contains("limit=ten"));
    assert!(bad("sorce=game").contains("\"sorce\""));
    assert!(bad("source=%zz").contains("source"));
}

#[test]
fn with_nobody_tapping_the_hooks_do_nothing() {
    let taps = Taps::default();
    assert!(!taps.active(Signal::Logs));
    taps.log("game", &record("x"));
    taps.metrics_batch(b"", 3);
    assert_eq!(taps.dropped(), 0);
    let _metrics = taps
        .subscribe(request(Signal::Metrics, None, None))
        .expect("open");
    assert!(taps.active(Signal::Metrics));
    assert!(!taps.active(Signal::Logs), "only the signal tapped");
    taps.log("game", &record("x"));
    assert_eq!(taps.dropped(), 0);
}

#[tokio::test]
async fn a_stalled_tap_drops_what_does_not_fit_and_counts_it() {
    let taps = Taps::default();
    let body = taps
        .subscribe(request(Signal::Logs, None, None))
        .expect("open");
    // Nobody reads: the hook neither waits nor fails, whatever comes.
    let extra = 37;
    for i in 0..TAP_QUEUE + extra {
        taps.log("game", &record(&format!("line {i}")));
    }
    assert_eq!(taps.dropped(), extra as u64);
    taps.close_all();
    assert!(!taps.active(Signal::Logs));
    let got = lines(body).await;
    assert_eq!(got.len(), TAP_QUEUE, "the queue's worth, then the end");
    assert_eq!(got[0]["message"], "line 0");
    assert_eq!(
        got[TAP_QUEUE - 1]["message"],
        format!("line {}", TAP_QUEUE - 1)
    );
}

#[tokio::test]
async fn a_tap_ends_at_its_limit_and_leaves_the_list() {
    let taps = Taps::default();
    let body = taps
        .subscribe(request(Signal::Logs, None, Some(3)))
        .expect("open");
    for i in 0..10 {
        taps.log("game", &record(&format!("line {i}")));
    }
    let got = lines(body).await;
    assert_eq!(got.len(), 3);
    assert!(!taps.active(Signal::Logs), "the ended tap is gone");
    assert_eq!(taps.dropped(), 0);
}

#[tokio::test]
async fn log_lines_show_the_record_as_shipped_and_its_tokens() {
    let taps = Taps::default();
    let body = taps
        .subscribe(request(Signal::Logs, Some("game"), Some(1)))
        .expect("open");
    taps.log("other", &record("not this one"));
    let mut r = record("login from tok_0123abcd_fedcba9876543210 as [REDACTED:email]");
    r.timestamp_ns = Some(1_000_000_000);
    r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    taps.log("game", &r);
    let got = lines(body).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let line = &got[0];
    assert_eq!(line["signal"], "logs");
    assert_eq!(line["service"], "game");
    assert_eq!(line["level"], "warn");
    assert_eq!(line["time"], "1970-01-01T00:00:01.000Z");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["attributes"]["peer"], "tok_0123abcd_0123456789abcdef");
    assert_eq!(
        line["tokens"],
        json!([
            { "field": "message", "token": "tok_0123abcd_fedcba9876543210" },
            { "field": "message", "token": "[REDACTED:email]" },
            { "field": "attributes.peer", "token": "tok_0123abcd_0123456789abcdef" },
        ])
    );
}

#[tokio::test]
async fn metric_taps_show_the_batch_by_name_prefix_and_refused_points() {
    use crate::metrics::Batch;
    let taps = Taps::default();
    let node = taps
        .subscribe(request(Signal::Metrics, Some("node_"), Some(3)))
        .expect("open");
    let mut batch = Batch::default();
    for (name, value) in [
        ("node_load1", 0.5),
        ("node_cpu_seconds_total", 12.0),
        ("nodes_other", 1.0),
        ("game_node_count", 1.0),
        ("edge_active_series", 40.0),
    ] {
        batch.add(
            SeriesKey::new(name, vec![]),
            Point::Float {
                value,
                timestamp: 1_000,
            },
        );
    }
    let (encoded, n) = batch.take_encoded(&[("region".into(), "eu-test-1".into())]);
    taps.metrics_batch(&encoded, n);
    taps.refused(
        &SeriesKey::new("node_bad", vec![("player_id".into(), "p-1".into())]),
        &Point::Float {
            value: 2.0,
            timestamp: 2_000,
        },
        "forbidden_label",
    );
    let got = lines(node).await;
    let names: Vec<&str> = got.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(
        names,
        ["node_cpu_seconds_total", "node_load1", "node_bad"],
        "node_* only, in the batch's order, then the refused point"
    );
    assert_eq!(
        got[1]["labels"]["region"], "eu-test-1",
        "host labels as sent"
    );
    assert_eq!(
        got[1]["samples"],
        json!([{ "value": 0.5, "timestamp_ms": 1000 }])
    );
    assert!(got[0].get("refused").is_none());
    assert_eq!(got[2]["refused"], "forbidden_label");
    assert_eq!(
        got[2]["labels"]["player_id"], WITHHELD,
        "a value the policy refused never shows"
    );
}

#[tokio::test]
async fn at_most_max_taps_are_open_and_a_closed_one_makes_room() {
    let taps = Taps::default();
    let mut open: Vec<TapBody> = (0..MAX_TAPS)
        .map(|_| {
            taps.subscribe(request(Signal::Logs, None, None))
                .expect("within the cap")
        })
        .collect();
    assert!(taps.subscribe(request(Signal::Logs, None, None)).is_err());
    drop(open.pop());
    open.push(
        taps.subscribe(request(Signal::Traces, None, None))
            .expect("room again"),
    );
    assert!(taps.active(Signal::Traces));
}

#[tokio::test]
async fn span_taps_filter_by_service_and_show_scrubbed_values() {
    use edge_schema::proto::otlp::Resource;
    use edge_schema::proto::otlp::trace::{ScopeSpans, Span};
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    };
    let rs = |service: &str| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                name: "match.join".into(),
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                attributes: vec![kv("player.email", "tok_0123abcd_0123456789abcdef")],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let taps = Taps::default();
    let body = taps
        .subscribe(request(Signal::Traces, Some("matchmaker"), Some(1)))
        .expect("open");
    taps.spans(&rs("lobby"), 1);
    taps.spans(&rs("matchmaker"), 1);
    let got = lines(body).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["service"], "matchmaker");
    assert_eq!(got[0]["trace_id"], "ab".repeat(16));
    assert_eq!(
        got[0]["tokens"],
        json!([{ "field": "attributes.player.email", "token": "tok_0123abcd_0123456789abcdef" }])
    );
}
