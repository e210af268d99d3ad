use proptest::prelude::*;

use super::*;

/// `(base-1)/(base+1)`: the relative error bound of the `2LU/(L+U)` estimate.
fn alpha(scale: i32) -> f64 {
    let base = (-f64::from(scale)).exp2().exp2();
    (base - 1.0) / (base + 1.0)
}

/// The exact quantile under the rank definition the estimate uses: rank ⌈q·n⌉.
fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

fn record_all(values: &[f64], scale: i32) -> ExpHistogram {
    let mut h = ExpHistogram::new(scale);
    for v in values {
        h.record(*v).expect("finite");
    }
    h
}

/// Every value is in the bucket whose bounds contain it at the histogram's final scale.
fn assert_buckets_hold(h: &ExpHistogram, values: &[f64]) {
    let mut expected_pos: std::collections::BTreeMap<i32, u64> = Default::default();
    let mut expected_neg: std::collections::BTreeMap<i32, u64> = Default::default();
    for &v in values {
        let m = v.abs();
        if m <= h.zero_threshold() {
            continue;
        }
        let i = index_of(m, h.scale());
        let (l, u) = (
            lower_boundary(i, h.scale()),
            lower_boundary(i + 1, h.scale()),
        );
        assert!(
            l < m && m <= u,
            "{m} not in ({l}, {u}] at index {i}, scale {}",
            h.scale()
        );
        *if v > 0.0 {
            &mut expected_pos
        } else {
            &mut expected_neg
        }
        .entry(i)
        .or_default() += 1;
    }
    let got = |b: &Buckets| {
        b.iter()
            .filter(|(_, n)| *n > 0)
            .collect::<std::collections::BTreeMap<i32, u64>>()
    };
    assert_eq!(got(h.positive()), expected_pos);
    assert_eq!(got(h.negative()), expected_neg);
}

fn assert_quantiles_within_alpha(values: &[f64], scale: i32) {
    let h = record_all(values, scale);
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let bound = alpha(h.scale()) * (1.0 + 1e-9);
    for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
        let exact = exact_quantile(&sorted, q);
        let estimate = h.quantile(q).expect("non-empty");
        if exact == 0.0 {
            assert_eq!(estimate, 0.0);
            continue;
        }
        let error = ((estimate - exact) / exact).abs();
        assert!(
            error <= bound,
            "q={q}: estimate {estimate} vs exact {exact}: error {error} > α {bound} at scale {}",
            h.scale()
        );
    }
}

/// A deterministic generator for distribution tests.
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[test]
fn quantiles_on_named_distributions() {
    let mut r = Rng(7);
    let uniform: Vec<f64> = (0..20_000).map(|_| 0.001 + r.unit() * 0.099).collect();
    let lognormal: Vec<f64> = (0..20_000)
        .map(|_| (0.02f64.ln() + 0.8 * r.normal()).exp())
        .collect();
    let bimodal: Vec<f64> = (0..20_000)
        .map(|i| {
            if i % 3 == 0 {
                0.2 + 0.01 * r.normal().abs()
            } else {
                0.005 + 0.001 * r.normal().abs()
            }
        })
        .collect();
    let pareto: Vec<f64> = (0..20_000)
        .map(|_| 0.001 * r.unit().powf(-1.0 / 1.2))
        .collect();
    // 24 decades: forces downscales.
    let wide: Vec<f64> = (0..20_000)
        .map(|_| 10f64.powf(-12.0 + 24.0 * r.unit()))
        .collect();
    for (name, values) in [
        ("uniform", &uniform),
        ("lognormal", &lognormal),
        ("bimodal", &bimodal),
        ("pareto", &pareto),
        ("wide", &wide),
    ] {
        for scale in [2, 4, 8] {
            assert_quantiles_within_alpha(values, scale);
        }
        let h = record_all(values, 2);
        assert_buckets_hold(&h, values);
        if name == "wide" {
            assert!(
                h.scale() < 2,
                "24 decades do not fit 160 buckets at scale 2"
            );
        }
    }
}

#[test]
fn prometheus_spec_worked_example() {
    // The spec's positive buckets (index → population):
    // -2→3, -1→5, 0→0, 1→0, 2→1, 3→0, 4→3, 5→2.
    let buckets = [
        (-2, 3),
        (-1, 5),
        (0, 0),
        (1, 0),
        (2, 1),
        (3, 0),
        (4, 3),
        (5, 2),
    ];
    let span = |offset, length| BucketSpan { offset, length };
    // No empty bucket kept: three spans.
    assert_eq!(
        encode_spans(&buckets, 0),
        (
            vec![span(-2, 2), span(2, 1), span(1, 2)],
            vec![3, 2, -4, 2, -1]
        )
    );
    // The single empty bucket (index 3) kept: two spans.
    assert_eq!(
        encode_spans(&buckets, 1),
        (vec![span(-2, 2), span(2, 4)], vec![3, 2, -4, -1, 3, -1])
    );
    // Every empty bucket kept: one span.
    assert_eq!(
        encode_spans(&buckets, 2),
        (vec![span(-2, 8)], vec![3, 2, -5, 0, 1, -1, 3, -1])
    );
    for gap in 0..3 {
        let (spans, deltas) = encode_spans(&buckets, gap);
        let decoded: Vec<(i32, u64)> = decode_spans(&spans, &deltas)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        let nonzero: Vec<(i32, u64)> = buckets.iter().copied().filter(|(_, n)| *n > 0).collect();
        assert_eq!(decoded, nonzero);
    }

    // And on the wire: fields 11 (positive_spans) and 12 (positive_deltas, packed
    // zig-zag varints) of the first representation, byte for byte.
    use edge_schema::proto::prometheus as pb;
    use prost::Message;
    let (spans, deltas) = encode_spans(&buckets, 0);
    let h = pb::Histogram {
        positive_spans: spans
            .iter()
            .map(|s| pb::BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect(),
        positive_deltas: deltas,
        ..Default::default()
    };
    assert_eq!(
        h.encode_to_vec(),
        vec![
            0x5a, 0x04, 0x08, 0x03, 0x10, 0x02, // {offset: -2, length: 2}
            0x5a, 0x04, 0x08, 0x04, 0x10, 0x01, // {offset: 2, length: 1}
            0x5a, 0x04, 0x08, 0x02, 0x10, 0x02, // {offset: 1, length: 2}
            0x62, 0x05, 0x06, 0x04, 0x07, 0x04, 0x01, // [3, 2, -4, 2, -1]
        ]
    );
}

#[test]
fn native_index_is_otel_index_plus_one() {
    let mut h = ExpHistogram::new(0);
    h.record(3.0).expect("finite"); // OTel scale 0: (2, 4] is index 1
    let n = h.to_native();
    assert_eq!(n.schema, 0);
    assert_eq!(
        n.positive_spans,
        vec![BucketSpan {
            offset: 2,
            length: 1
        }]
    );
    assert_eq!(n.positive_deltas, vec![1]);
}

#[test]
fn native_schema_is_clamped_to_8() {
    let h = record_all(&[1.5, 1.501, 1.502], 12);
    assert_eq!(h.scale(), 12);
    let n = h.to_native();
    assert_eq!(n.schema, 8);
    assert_eq!(n.count, 3);
    let decoded: u64 = decode_spans(&n.positive_spans, &n.positive_deltas)
        .iter()
        .map(|(_, c)| c)
        .sum();
    assert_eq!(decoded, 3);
}

#[test]
fn downscale_with_odd_and_negative_offsets() {
    for offset in [-7, -3, -1, 1, 3, 7] {
        let mut b = Buckets::default();
        for (j, n) in [5u64, 1, 2, 9].iter().enumerate() {
            b.increment(offset + j as i32, *n);
        }
        let before: Vec<(i32, u64)> = b.iter().collect();
        b.downscale(1);
        // Each bucket i lands in floor(i / 2) (arithmetic shift, also for negatives).
        let mut expected: std::collections::BTreeMap<i32, u64> = Default::default();
        for (i, n) in before {
            *expected.entry(i >> 1).or_default() += n;
        }
        let got: std::collections::BTreeMap<i32, u64> = b.iter().collect();
        assert_eq!(got, expected, "offset {offset}");
        assert_eq!(b.offset(), offset >> 1);
    }
}

#[test]
fn merge_picks_the_highest_scale_that_fits() {
    // a spans 1..2 at scale 6; b holds values ~1000x larger at scale 4. Their union needs
    // ~10 binary orders; at scale 4 that is ~160 buckets: the target is 3, not 4 and not
    // the lower of the two scales minus one blindly.
    let a = record_all(&[1.01, 1.5, 1.99], 6);
    let b = record_all(&[1000.0, 1500.0], 4);
    let mut merged = a.clone();
    merged.merge(&b);
    let mut union = ExpHistogram::new(6);
    for v in [1.01, 1.5, 1.99, 1000.0, 1500.0] {
        union.record(v).expect("finite");
    }
    assert_eq!(merged.scale(), union.scale());
    assert_eq!(merged.positive(), union.positive());
    assert!(merged.positive().counts().len() <= DEFAULT_MAX_SIZE);
}

#[test]
fn index_extremes_do_not_overflow() {
    let smallest = f64::from_bits(1);
    for scale in [MIN_SCALE, -1, 0, 1, 8, 12, 20] {
        for v in [f64::MAX, f64::MIN_POSITIVE, smallest, 1.0, 2.0] {
            let i = index_of(v, scale);
            assert!(i > i32::MIN && i < i32::MAX);
        }
        assert!(index_of(f64::MAX, scale) > index_of(1.0, scale));
        assert!(index_of(smallest, scale) < index_of(f64::MIN_POSITIVE, scale));
    }
    // At scale 20 the largest finite value: 1023 · 2^20 + 2^20 − 1.
    assert_eq!(index_of(f64::MAX, 20), 1024 * (1 << 20) - 1);
    assert_eq!(index_of(smallest, 20), -1074 * (1 << 20) - 1);
    // Recording the extremes works and keeps every count.
    let h = record_all(&[f64::MAX, f64::MIN_POSITIVE, smallest, -f64::MAX], 20);
    assert_eq!(h.count(), 4);
    assert!(h.scale() >= MIN_SCALE);
}

#[test]
fn values_within_an_ulp_of_a_boundary() {
    for scale in [-4, -1, 0, 1, 2, 3, 8, 11, 20] {
        for index in [-1000, -37, -1, 0, 1, 2, 5, 77, 1000] {
            let b = lower_boundary(index, scale);
            if !b.is_normal() {
                continue;
            }
            // The boundary itself is the upper edge of the bucket below (upper-inclusive).
            assert_eq!(
                index_of(b, scale),
                index - 1,
                "scale {scale} index {index} at the boundary"
            );
            assert_eq!(index_of(b.next_up(), scale), index, "one ulp above");
            assert_eq!(index_of(b.next_down(), scale), index - 1, "one ulp below");
        }
    }
}

#[test]
fn nan_and_infinities_are_refused() {
    let mut h = ExpHistogram::new(2);
    assert_eq!(h.record(f64::NAN), Err(NonFinite));
    assert_eq!(h.record(f64::INFINITY), Err(NonFinite));
    assert_eq!(h.record(f64::NEG_INFINITY), Err(NonFinite));
    assert_eq!((h.count(), h.sum()), (0, 0.0));
}

#[test]
fn zero_and_negative_values() {
    let h = record_all(&[0.0, -0.0, 1e-45, -3.0, -0.5, 2.0], 2);
    assert_eq!(h.zero_count(), 3, "0, -0 and values under the threshold");
    assert_eq!(h.negative().counts().iter().sum::<u64>(), 2);
    assert!(h.quantile(0.0).expect("q") <= -2.7);
    assert_eq!(h.quantile(0.5), Some(0.0));
    let n = h.to_native();
    assert_eq!(n.zero_count, 3);
    assert_eq!(
        decode_spans(&n.negative_spans, &n.negative_deltas)
            .iter()
            .map(|(_, c)| c)
            .sum::<u64>(),
        2
    );
}

fn finite_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-30.0f64..30.0).prop_map(|e| 10f64.powf(e)),
        (-30.0f64..30.0).prop_map(|e| -(10f64.powf(e))),
        Just(0.0),
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn count_exact_and_values_in_their_buckets(values in proptest::collection::vec(finite_value(), 1..300), scale in -4i32..=20) {
        let h = record_all(&values, scale);
        prop_assert_eq!(h.count(), values.len() as u64);
        let buckets = h.positive().counts().iter().sum::<u64>() + h.negative().counts().iter().sum::<u64>() + h.zero_count();
        prop_assert_eq!(buckets, h.count());
        // The sum is the same floating-point sum, in recording order.
        let sum = values.iter().fold(0.0, |s, v| s + v);
        prop_assert!(h.sum() == sum || (h.sum().is_nan() && sum.is_nan()) || (h.sum().is_infinite() && sum.is_infinite()));
        prop_assert!(h.positive().counts().len() <= DEFAULT_MAX_SIZE);
        prop_assert!(h.negative().counts().len() <= DEFAULT_MAX_SIZE);
        assert_buckets_hold(&h, &values);
    }

    #[test]
    fn merge_is_associative_and_equals_recording_the_union(
        a in proptest::collection::vec(finite_value(), 0..80),
        b in proptest::collection::vec(finite_value(), 0..80),
        c in proptest::collection::vec(finite_value(), 0..80),
        scales in (-4i32..=12, -4i32..=12, -4i32..=12),
    ) {
        let (ha, hb, hc) = (record_all(&a, scales.0), record_all(&b, scales.1), record_all(&c, scales.2));
        let mut left = ha.clone();
        left.merge(&hb);
        left.merge(&hc);
        let mut bc = hb.clone();
        bc.merge(&hc);
        let mut right = ha.clone();
        right.merge(&bc);
        prop_assert_eq!(left.scale(), right.scale());
        prop_assert_eq!(left.positive(), right.positive());
        prop_assert_eq!(left.negative(), right.negative());
        prop_assert_eq!(left.count(), right.count());

        // Recording the union from the lowest of the starting scales gives the same.
        let start = scales.0.min(scales.1).min(scales.2);
        let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
        let union = record_all(&all, start);
        prop_assert_eq!(left.scale(), union.scale());
        let nonzero = |b: &Buckets| b.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>();
        prop_assert_eq!(nonzero(left.positive()), nonzero(union.positive()));
        prop_assert_eq!(nonzero(left.negative()), nonzero(union.negative()));
        prop_assert_eq!(left.zero_count(), union.zero_count());
    }

    #[test]
    fn downscale_preserves_counts(values in proptest::collection::vec(finite_value(), 1..200), by in 0u32..10) {
        let mut h = record_all(&values, 8);
        let (count, pos, neg) = (h.count(), h.positive().counts().iter().sum::<u64>(), h.negative().counts().iter().sum::<u64>());
        h.downscale(by);
        prop_assert_eq!(h.count(), count);
        prop_assert_eq!(h.positive().counts().iter().sum::<u64>(), pos);
        prop_assert_eq!(h.negative().counts().iter().sum::<u64>(), neg);
        assert_buckets_hold(&h, &values);
    }

    #[test]
    fn quantiles_within_alpha(values in proptest::collection::vec(1e-9f64..1e9, 1..400), scale in 0i32..=8) {
        assert_quantiles_within_alpha(&values, scale);
    }

    #[test]
    fn span_encoding_round_trips(
        raw in proptest::collection::btree_map(-500i32..500, 0u64..1000, 0..60),
        gap in 0u32..4,
    ) {
        let buckets: Vec<(i32, u64)> = raw.into_iter().collect();
        let (spans, deltas) = encode_spans(&buckets, gap);
        prop_assert_eq!(spans.iter().map(|s| s.length as usize).sum::<usize>(), deltas.len());
        let decoded: Vec<(i32, u64)> = decode_spans(&spans, &deltas).into_iter().filter(|(_, n)| *n > 0).collect();
        let expected: Vec<(i32, u64)> = buckets.into_iter().filter(|(_, n)| *n > 0).collect();
        prop_assert_eq!(decoded, expected);
    }
}
