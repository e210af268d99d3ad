use std::path::Path;
use std::time::{Duration, Instant};

use edge_schema::catalog::Catalog;
use edge_schema::check::Schema;
use edge_schema::policy::LabelPolicy;

use super::*;
use crate::metrics::{Point, SeriesKey};

const CATALOG: &str = "\
metrics:
  - name: test_items_total
    type: counter
    help: Items.
    labels:
      n: { max_cardinality: 1000 }
  - name: test_latency_seconds
    type: histogram
    buckets: native
    unit: seconds
    help: Latency.
    labels:
      n: { max_cardinality: 1000 }
";

fn gate(budget: u32) -> Gate {
    let catalog = Catalog::from_yaml(Path::new("test.yaml"), CATALOG).expect("test catalog");
    Gate::new(Schema::new(LabelPolicy::shipped(), catalog), budget)
}

fn item(n: usize) -> SeriesKey {
    SeriesKey::new("test_items_total", vec![("n".into(), n.to_string())])
}

fn float(value: f64) -> Point {
    Point::Float {
        value,
        timestamp: 1_000,
    }
}

#[test]
fn a_forbidden_label_is_refused_and_folded_without_its_labels() {
    let mut g = gate(300);
    let now = Instant::now();
    let bad = SeriesKey::new(
        "test_items_total",
        vec![("player_id".into(), "p-42".into())],
    );
    assert_eq!(
        g.admit(&bad, &float(5.0), now),
        Verdict::Refused {
            reason: "forbidden_label"
        }
    );
    // Seen again: still refused, not counted twice.
    g.admit(&bad, &float(7.0), now);
    assert_eq!(rejected(&g, "forbidden_label"), 1);
    let overflow = g.drain_overflow(now);
    assert_eq!(overflow.len(), 1);
    let (key, point) = &overflow[0];
    assert_eq!(
        key.labels,
        vec![("edge_overflow".to_string(), "true".to_string())]
    );
    assert_eq!(*point, float(7.0));
}

#[test]
fn past_the_budget_new_series_fold_into_overflow_while_old_ones_flow() {
    let budget = 40;
    let mut g = gate(budget);
    let now = Instant::now();
    let ordinary = budget as usize - overflow_reserve(budget as usize);
    for n in 0..ordinary {
        assert_eq!(
            g.admit(&item(n), &float(1.0), now),
            Verdict::Pass,
            "series {n}"
        );
    }
    for n in ordinary..ordinary + 5 {
        assert_eq!(
            g.admit(&item(n), &float(2.0), now),
            Verdict::Refused { reason: "budget" }
        );
    }
    // The first ones keep flowing.
    assert_eq!(g.admit(&item(0), &float(3.0), now), Verdict::Pass);
    let overflow = g.drain_overflow(now);
    assert_eq!(overflow.len(), 1);
    assert_eq!(
        overflow[0].1,
        float(10.0),
        "the sum of the five refused series"
    );
    assert_eq!(g.active_series(), ordinary + 1);
    assert!(g.active_series() <= g.budget());
    assert_eq!(rejected(&g, "budget"), 5);
    // Nothing changed: nothing to send for the overflow series.
    assert!(g.drain_overflow(now).is_empty());
}

#[test]
fn expired_series_free_room_for_refused_ones() {
    let mut g = gate(21); // one slot of reserve, 20 ordinary
    let start = Instant::now();
    for n in 0..20 {
        g.admit(&item(n), &float(1.0), start);
    }
    assert_ne!(g.admit(&item(99), &float(1.0), start), Verdict::Pass);
    // Only series 99 keeps reporting.
    let later = start + ACTIVE_WINDOW - Duration::from_secs(1);
    g.admit(&item(99), &float(1.0), later);
    g.expire(start + ACTIVE_WINDOW + Duration::from_secs(1));
    assert_eq!(g.admit(&item(99), &float(2.0), later), Verdict::Pass);
}

#[test]
fn refused_native_histograms_merge_in_the_overflow_series() {
    use edge_exporter::export::native_to_proto;
    use edge_exporter::histogram::ExpHistogram;
    let mut g = gate(21);
    let now = Instant::now();
    let key = |n: usize| SeriesKey::new("test_latency_seconds", vec![("n".into(), n.to_string())]);
    let point = |values: &[f64]| {
        let mut h = ExpHistogram::new(2);
        for v in values {
            h.record(*v).expect("finite");
        }
        Point::Histogram(Box::new(native_to_proto(&h.to_native(), 1_000)))
    };
    for n in 0..20 {
        g.admit(&key(n), &point(&[0.1]), now);
    }
    g.admit(&key(20), &point(&[0.5, 0.7]), now);
    g.admit(&key(21), &point(&[3.0]), now);
    let overflow = g.drain_overflow(now);
    let Point::Histogram(h) = &overflow[0].1 else {
        panic!("not a histogram: {overflow:?}");
    };
    assert_eq!(
        h.count,
        Some(edge_schema::proto::prometheus::histogram::Count::CountInt(
            3
        ))
    );
    assert!((h.sum - 4.2).abs() < 1e-9);
}

fn rejected(g: &Gate, reason: &str) -> u64 {
    let i = REJECT_REASONS
        .iter()
        .position(|r| *r == reason)
        .expect("a known reason");
    g.rejected()[i]
}

#[test]
fn a_label_value_that_looks_like_personal_data_folds_into_overflow() {
    let mut g = gate(40);
    let now = Instant::now();
    let key = SeriesKey::new(
        "test_items_total",
        vec![("n".to_string(), "203.0.113.7".to_string())],
    );
    assert_eq!(
        g.admit(&key, &float(4.0), now),
        Verdict::Refused {
            reason: "pii_label_value"
        }
    );
    assert_eq!(rejected(&g, "pii_label_value"), 1);
    let overflow = g.drain_overflow(now);
    assert_eq!(overflow.len(), 1);
    assert!(
        !format!("{:?}", overflow[0].0).contains("203.0.113.7"),
        "the value never leaves the host: {:?}",
        overflow[0].0
    );
    assert_eq!(overflow[0].1, float(4.0));
}

#[test]
fn a_reload_judges_active_series_again_under_the_new_catalog() {
    let mut g = gate(300);
    let now = Instant::now();
    let kept = item(1);
    let going = SeriesKey::new("test_latency_seconds", vec![("n".into(), "1".into())]);
    let refused = SeriesKey::new("test_new_total", vec![("kind".into(), "a".into())]);
    assert_eq!(g.admit(&kept, &float(1.0), now), Verdict::Pass);
    assert_eq!(g.admit(&going, &float(1.0), now), Verdict::Pass);
    assert!(matches!(
        g.admit(&refused, &float(1.0), now),
        Verdict::Refused { .. }
    ));
    let before = g.rejected().iter().sum::<u64>();

    // The new catalog drops test_latency_seconds and declares test_new_total.
    let catalog = Catalog::from_yaml(
        Path::new("new.yaml"),
        "metrics:\n  - name: test_items_total\n    type: counter\n    help: Items.\n    labels:\n      n: { max_cardinality: 1000 }\n  - name: test_new_total\n    type: counter\n    help: New.\n    labels:\n      kind: { values: [a, b] }\n",
    )
    .expect("new catalog");
    g.reconfigure(Schema::new(LabelPolicy::shipped(), catalog), 200);
    assert_eq!(g.budget(), 200);
    assert_eq!(g.admit(&kept, &float(2.0), now), Verdict::Pass);
    assert_eq!(g.admit(&refused, &float(2.0), now), Verdict::Pass);
    assert!(matches!(
        g.admit(&going, &float(2.0), now),
        Verdict::Refused { .. }
    ));
    assert_eq!(g.rejected().iter().sum::<u64>(), before + 1);
}
