use super::*;
use crate::proto::prometheus::{Label, Sample};

const NOW: i64 = 1_800_000_000_000;

fn series(labels: &[(&str, &str)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: vec![Sample {
            value: 1.0,
            timestamp: NOW,
        }],
        ..Default::default()
    }
}

fn reason(mut s: TimeSeries) -> Result<(), &'static str> {
    check(&mut s, NOW, &TimeWindow::default()).map_err(|f| f.reason())
}

/// A consistent integer histogram: 3 positive buckets (2, 3, 1), zero bucket 1, count 7.
fn histogram() -> Histogram {
    Histogram {
        count: Some(Count::CountInt(7)),
        sum: 3.5,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: Some(ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![
            BucketSpan {
                offset: -2,
                length: 2,
            },
            BucketSpan {
                offset: 4,
                length: 1,
            },
        ],
        positive_deltas: vec![2, 1, -2],
        timestamp: NOW,
        ..Default::default()
    }
}

fn with_histogram(h: Histogram) -> TimeSeries {
    let mut s = series(&[("__name__", "game_tick_duration_seconds")]);
    s.samples.clear();
    s.histograms.push(h);
    s
}

#[test]
fn a_sound_series_passes_and_unsorted_labels_are_sorted() {
    let mut s = series(&[("region", "eu"), ("__name__", "up"), ("az", "a")]);
    assert_eq!(check(&mut s, NOW, &TimeWindow::default()), Ok(()));
    let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["__name__", "az", "region"]);
    assert_eq!(reason(with_histogram(histogram())), Ok(()));
}

#[test]
fn names_and_duplicates_anywhere_in_the_list() {
    assert_eq!(
        reason(series(&[("region", "eu")])),
        Err("missing_metric_name")
    );
    assert_eq!(
        reason(series(&[("__name__", "game.tick")])),
        Err("metric_name_invalid")
    );
    // Not adjacent as sent: the sort brings them together.
    assert_eq!(
        reason(series(&[
            ("region", "eu"),
            ("__name__", "up"),
            ("region", "us")
        ])),
        Err("duplicate_label_names")
    );
    assert_eq!(
        reason(series(&[("__name__", "up"), ("__name__", "down")])),
        Err("duplicate_label_names")
    );
}

#[test]
fn the_year_3000_is_refused_and_now_passes() {
    let mut s = series(&[("__name__", "up")]);
    s.samples[0].timestamp = 32_503_680_000_000; // 3000-01-01
    let fault = check(&mut s, NOW, &TimeWindow::default()).expect_err("refused");
    assert_eq!(fault.reason(), "too_far_in_future");
    assert!(fault.to_string().contains("600 s in the future"), "{fault}");
    // Nine minutes ahead (a skewed clock) passes.
    let mut s = series(&[("__name__", "up")]);
    s.samples[0].timestamp = NOW + 9 * 60 * 1000;
    assert_eq!(check(&mut s, NOW, &TimeWindow::default()), Ok(()));
    // The past is open by default and closes when configured.
    let mut old = series(&[("__name__", "up")]);
    old.samples[0].timestamp = NOW - 3 * 3600 * 1000;
    assert_eq!(check(&mut old.clone(), NOW, &TimeWindow::default()), Ok(()));
    let window = TimeWindow {
        max_past_ms: Some(3600 * 1000),
        ..TimeWindow::default()
    };
    assert_eq!(
        check(&mut old, NOW, &window).map_err(|f| f.reason()),
        Err("too_far_in_past")
    );
    // A histogram's timestamp counts too.
    let mut h = histogram();
    h.timestamp = 32_503_680_000_000;
    assert_eq!(reason(with_histogram(h)), Err("too_far_in_future"));
}

#[test]
fn inconsistent_native_histograms_are_refused_with_what_is_wrong() {
    let cases: Vec<(Histogram, &str)> = vec![
        (
            Histogram {
                positive_deltas: vec![2, 1],
                ..histogram()
            },
            "positive spans cover 3 buckets but 2 are sent",
        ),
        (
            Histogram {
                positive_deltas: vec![2, -3, 1],
                count: Some(Count::CountInt(100)),
                ..histogram()
            },
            "positive bucket 1 has a negative count (-1)",
        ),
        (
            Histogram {
                schema: 9,
                ..histogram()
            },
            "schema 9 is outside -4..=8",
        ),
        (
            Histogram {
                schema: -5,
                ..histogram()
            },
            "schema -5 is outside -4..=8",
        ),
        (
            Histogram {
                count: Some(Count::CountInt(6)),
                ..histogram()
            },
            "count 6 is less than the zero bucket and buckets together (7)",
        ),
        (
            Histogram {
                zero_threshold: f64::INFINITY,
                ..histogram()
            },
            "zero threshold inf is not a finite non-negative number",
        ),
        (
            Histogram {
                positive_spans: vec![
                    BucketSpan {
                        offset: 0,
                        length: 2,
                    },
                    BucketSpan {
                        offset: -1,
                        length: 1,
                    },
                ],
                ..histogram()
            },
            "positive span 1 has a negative offset (-1)",
        ),
        (
            Histogram {
                negative_spans: vec![BucketSpan {
                    offset: 0,
                    length: 1,
                }],
                ..histogram()
            },
            "negative spans cover 1 buckets but 0 are sent",
        ),
        (
            Histogram {
                count: Some(Count::CountFloat(1.0)),
                positive_deltas: vec![],
                positive_counts: vec![2.0, 3.0, 1.0],
                zero_count: Some(ZeroCount::ZeroCountFloat(1.0)),
                ..histogram()
            },
            "count 1 is less than the zero bucket and buckets together (7)",
        ),
        (
            Histogram {
                count: Some(Count::CountFloat(7.0)),
                positive_deltas: vec![],
                positive_counts: vec![2.0, -3.0, 1.0],
                zero_count: Some(ZeroCount::ZeroCountFloat(1.0)),
                ..histogram()
            },
            "positive bucket 1 has a negative count (-3)",
        ),
    ];
    for (h, what) in cases {
        let mut s = with_histogram(h);
        let fault = check(&mut s, NOW, &TimeWindow::default()).expect_err("refused");
        assert_eq!(fault.reason(), "invalid_native_histogram");
        assert_eq!(fault.metric(), "game_tick_duration_seconds");
        assert_eq!(
            fault.to_string(),
            format!("native histogram `game_tick_duration_seconds`: {what}")
        );
    }
    // A consistent float histogram passes.
    let float = Histogram {
        count: Some(Count::CountFloat(7.0)),
        positive_deltas: vec![],
        positive_counts: vec![2.0, 3.0, 1.0],
        zero_count: Some(ZeroCount::ZeroCountFloat(1.0)),
        ..histogram()
    };
    assert_eq!(reason(with_histogram(float)), Ok(()));
}
