use super::*;
use edge_exporter::histogram::decode_spans;
use m::exponential_histogram_data_point::Buckets;

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

fn request(metric: m::Metric) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![m::ResourceMetrics {
            resource: Some(
                edge_schema::proto::opentelemetry::proto::resource::v1::Resource {
                    attributes: vec![attr("service.name", "game"), attr("host.id", "i-123")],
                    dropped_attributes_count: 0,
                },
            ),
            scope_metrics: vec![m::ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn sum(name: &str, delta: bool, points: Vec<m::NumberDataPoint>) -> m::Metric {
    m::Metric {
        name: name.into(),
        unit: "1".into(),
        data: Some(m::metric::Data::Sum(m::Sum {
            data_points: points,
            aggregation_temporality: if delta {
                m::AggregationTemporality::Delta as i32
            } else {
                m::AggregationTemporality::Cumulative as i32
            },
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn point(start: u64, time: u64, v: i64) -> m::NumberDataPoint {
    m::NumberDataPoint {
        attributes: vec![attr("shard.id", "3")],
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(m::number_data_point::Value::AsInt(v)),
        ..Default::default()
    }
}

fn value(c: &Converted) -> Vec<f64> {
    c.points
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| &s.samples)
        .map(|s| s.value)
        .collect()
}

const S: u64 = 1_000_000_000;

#[test]
fn names_and_labels_follow_the_prometheus_compatibility_rules() {
    let cases = [
        (
            "game.tick.duration",
            "s",
            Kind::Distribution,
            "game_tick_duration_seconds",
        ),
        ("game.kills", "1", Kind::Counter, "game_kills_total"),
        ("game.kills", "{kill}", Kind::Counter, "game_kills_total"),
        ("requests_total", "", Kind::Counter, "requests_total"),
        ("cpu.utilization", "1", Kind::Gauge, "cpu_utilization_ratio"),
        ("net.io", "By/s", Kind::Gauge, "net_io_bytes_per_second"),
        ("heap", "By", Kind::Gauge, "heap_bytes"),
        ("rtt", "ms", Kind::Distribution, "rtt_milliseconds"),
        ("load_seconds", "s", Kind::Gauge, "load_seconds"),
        ("sent.bytes", "By", Kind::Counter, "sent_bytes_total"),
        ("sent.total", "By", Kind::Counter, "sent_bytes_total"),
        ("2fast..4you", "", Kind::Gauge, "_2fast_4you"),
    ];
    for (name, unit, kind, want) in cases {
        assert_eq!(metric_name(name, unit, kind), want, "{name} in {unit}");
    }
    let (labels, renamed) = labels(&[attr("player.id", "p-1"), attr("shard_id", "3")]);
    assert_eq!(
        labels,
        [
            ("player_id".to_string(), "p-1".to_string()),
            ("shard_id".to_string(), "3".to_string())
        ]
    );
    assert_eq!(
        renamed,
        [("player_id".to_string(), "player.id".to_string())]
    );
    let (labels, _) = labels_of(&[attr("a.b", "1"), attr("a_b", "2")]);
    assert_eq!(
        labels,
        [("a_b".to_string(), "1;2".to_string())],
        "collisions join"
    );
}

fn labels_of(a: &[KeyValue]) -> (Labels, Labels) {
    labels(a)
}

#[test]
fn resource_attributes_are_not_labels() {
    let mut c = Converter::default();
    let got = c.convert(
        &request(sum("game.kills", false, vec![point(S, 2 * S, 4)])),
        1,
        Instant::now(),
    );
    let labels: Vec<&str> = got.points[0].series[0]
        .labels
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(labels, ["__name__", "shard_id"]);
}

#[test]
fn delta_sums_are_accumulated_a_retry_is_out_of_order_and_a_restart_goes_on() {
    let mut c = Converter::default();
    let now = Instant::now();
    let mut got = Vec::new();
    for (start, time, v) in [(S, 2 * S, 5), (2 * S, 3 * S, 2), (3 * S, 4 * S, 3)] {
        got.extend(value(&c.convert(
            &request(sum("game.kills", true, vec![point(start, time, v)])),
            1,
            now,
        )));
    }
    assert_eq!(got, [5.0, 7.0, 10.0]);
    // The same request again (a client's retry after a lost answer): not counted twice.
    let retry = c.convert(
        &request(sum("game.kills", true, vec![point(3 * S, 4 * S, 3)])),
        1,
        now,
    );
    assert!(retry.points.is_empty());
    assert_eq!(retry.refused.len(), 1);
    assert_eq!(retry.refused[0].reason, "out_of_order");
    assert!(
        retry.refused[0].message.contains("game.kills"),
        "{:?}",
        retry.refused
    );
    // The game restarts: its deltas start from its new start, and add on.
    let restarted = c.convert(
        &request(sum("game.kills", true, vec![point(10 * S, 11 * S, 1)])),
        1,
        now,
    );
    assert_eq!(value(&restarted), [11.0]);
    assert_eq!(restarted.points[0].metric, "game_kills_total");
}

#[test]
fn a_restarted_game_is_a_counter_reset_and_a_stale_point_is_out_of_order() {
    let mut c = Converter::default();
    let now = Instant::now();
    let first = c.convert(
        &request(sum("game.kills", false, vec![point(S, 5 * S, 40)])),
        1,
        now,
    );
    assert_eq!(value(&first), [40.0]);
    // Restart: a new start time, the count from zero. It passes as it is (Prometheus
    // reads the drop as a reset), never dropped.
    let after = c.convert(
        &request(sum("game.kills", false, vec![point(8 * S, 9 * S, 2)])),
        1,
        now,
    );
    assert_eq!(value(&after), [2.0]);
    assert!(after.refused.is_empty());
    // A late point of the old process is out of order.
    let late = c.convert(
        &request(sum("game.kills", false, vec![point(S, 6 * S, 41)])),
        1,
        now,
    );
    assert!(late.points.is_empty());
    assert_eq!(late.refused[0].reason, "out_of_order");
}

fn exp_point(
    scale: i32,
    offset: i32,
    counts: Vec<u64>,
    zero: u64,
) -> m::ExponentialHistogramDataPoint {
    let count = counts.iter().sum::<u64>() + zero;
    m::ExponentialHistogramDataPoint {
        scale,
        count,
        sum: Some(12.5),
        zero_count: zero,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts,
        }),
        time_unix_nano: 2 * S,
        start_time_unix_nano: S,
        ..Default::default()
    }
}

#[test]
fn exponential_histograms_become_native_ones_with_the_scale_clamped_by_merging() {
    // In range: Prometheus index = OpenTelemetry index + 1.
    let n = exponential_to_native(&exp_point(3, -2, vec![1, 0, 4], 2)).expect("converts");
    assert_eq!(n.schema, 3);
    assert_eq!((n.count, n.zero_count, n.sum), (7, 2, 12.5));
    let b = decode_spans(&n.positive_spans, &n.positive_deltas).expect("valid");
    let b: Vec<(i32, u64)> = b.into_iter().filter(|(_, c)| *c > 0).collect();
    assert_eq!(b, [(-1, 1), (1, 4)]);
    // Scale 10: four neighbours merge into one schema-8 bucket (index >> 2).
    let n = exponential_to_native(&exp_point(10, 4, vec![1, 1, 1, 1, 5], 0)).expect("converts");
    assert_eq!(n.schema, 8);
    let b: Vec<(i32, u64)> = decode_spans(&n.positive_spans, &n.positive_deltas)
        .expect("valid")
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .collect();
    assert_eq!(b, [(2, 4), (3, 5)], "otel 4..=7 → 1, 8 → 2; +1 each");
    assert_eq!(n.count, 9);
    // Scale −6: each bucket goes to the schema −4 bucket with the same upper bound.
    let n = exponential_to_native(&exp_point(-6, 0, vec![3], 0)).expect("converts");
    assert_eq!(n.schema, -4);
    let b = decode_spans(&n.positive_spans, &n.positive_deltas).expect("valid");
    assert_eq!(
        b,
        [(4, 3)],
        "(1, 2^64] is schema −4's bucket 4: (2^48, 2^64]"
    );
    // Counts that do not add up are refused.
    let mut bad = exp_point(3, 0, vec![1], 0);
    bad.count = 5;
    assert!(exponential_to_native(&bad).is_err());
}

#[test]
fn delta_exponential_histograms_accumulate_into_one_native_series() {
    let mut c = Converter::default();
    let now = Instant::now();
    let metric = |p: m::ExponentialHistogramDataPoint| m::Metric {
        name: "game.tick.duration".into(),
        unit: "s".into(),
        data: Some(m::metric::Data::ExponentialHistogram(
            m::ExponentialHistogram {
                data_points: vec![p],
                aggregation_temporality: m::AggregationTemporality::Delta as i32,
            },
        )),
        ..Default::default()
    };
    c.convert(&request(metric(exp_point(3, 0, vec![2], 0))), 1, now);
    let mut second = exp_point(3, 0, vec![3], 1);
    second.start_time_unix_nano = 2 * S;
    second.time_unix_nano = 3 * S;
    let got = c.convert(&request(metric(second)), 1, now);
    let series = &got.points[0].series[0];
    assert_eq!(series.labels[0].value, "game_tick_duration_seconds");
    let h = &series.histograms[0];
    assert_eq!(h.count, Some(pb::histogram::Count::CountInt(6)));
    assert_eq!(
        h.zero_count,
        Some(pb::histogram::ZeroCount::ZeroCountInt(1))
    );
    assert_eq!(h.sum, 25.0);
}

#[test]
fn explicit_bucket_histograms_are_classic_and_summaries_keep_their_quantiles() {
    let mut c = Converter::default();
    let h = m::Metric {
        name: "game.rtt".into(),
        unit: "s".into(),
        data: Some(m::metric::Data::Histogram(m::Histogram {
            data_points: vec![m::HistogramDataPoint {
                count: 6,
                sum: Some(1.0),
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![0.1, 0.5],
                time_unix_nano: 2 * S,
                exemplars: vec![m::Exemplar::default(), m::Exemplar::default()],
                ..Default::default()
            }],
            aggregation_temporality: m::AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let got = c.convert(&request(h), 1, Instant::now());
    assert_eq!(got.exemplars, 2, "exemplars are dropped and counted");
    let series: Vec<(String, String, f64)> = got.points[0]
        .series
        .iter()
        .map(|s| {
            let le = s
                .labels
                .iter()
                .find(|l| l.name == "le")
                .map(|l| l.value.clone())
                .unwrap_or_default();
            (s.labels[0].value.clone(), le, s.samples[0].value)
        })
        .collect();
    let want = [
        ("game_rtt_seconds_bucket", "0.1", 1.0),
        ("game_rtt_seconds_bucket", "0.5", 3.0),
        ("game_rtt_seconds_bucket", "+Inf", 6.0),
        ("game_rtt_seconds_count", "", 6.0),
        ("game_rtt_seconds_sum", "", 1.0),
    ];
    let want: Vec<(String, String, f64)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    assert_eq!(series, want, "buckets + 2 series");
    let s = m::Metric {
        name: "gc.pause".into(),
        unit: "ms".into(),
        data: Some(m::metric::Data::Summary(m::Summary {
            data_points: vec![m::SummaryDataPoint {
                count: 10,
                sum: 40.0,
                quantile_values: vec![m::summary_data_point::ValueAtQuantile {
                    quantile: 0.99,
                    value: 9.0,
                }],
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let got = c.convert(&request(s), 7, Instant::now());
    let names: Vec<&str> = got.points[0]
        .series
        .iter()
        .map(|s| s.labels[0].value.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "gc_pause_milliseconds",
            "gc_pause_milliseconds_count",
            "gc_pause_milliseconds_sum"
        ]
    );
    assert_eq!(
        got.points[0].series[0].samples[0].timestamp, 7,
        "no time: now"
    );
}
