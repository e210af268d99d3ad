use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// `(base-1)/(base+1)`: the relative error bound of the `2LU/(L+U)` estimate.
fn alpha(scale: i32) -> f64 {
    let base = (-f64::from(scale)).exp2().exp2();
    (base - 1.0) / (base + 1.0)
}

/// The exact quantile under the rank definition the estimate uses: the value of rank
/// ⌈q·n⌉ (1-based, at least 1) in ascending order.
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

fn nonzero(b: &Buckets) -> BTreeMap<i32, u64> {
    b.iter().filter(|(_, n)| *n > 0).collect()
}

/// How finite `v > 0` compares with the true boundary `base^i` at `scale`, exactly, from
/// the big-integer reference; `None` above `max_scale` (the reference's cost doubles per
/// scale).
fn reference_compare(v: f64, i: i32, scale: i32, max_scale: i32) -> Option<Ordering> {
    // v = m · 2^ev with m in [1, 2); subnormals normalised by an exact 2^64.
    let (normal, shift) = if v < f64::MIN_POSITIVE {
        (v * 2f64.powi(64), 64)
    } else {
        (v, 0)
    };
    let ev = ((normal.to_bits() >> 52) as i64) - 1023 - shift;
    let m = f64::from_bits((normal.to_bits() & ((1 << 52) - 1)) | (1023 << 52));
    let (eb, k, s) = if scale <= 0 {
        // 2^(i · 2^-scale): a power of two.
        (i64::from(i) << -scale, 0u32, 0u32)
    } else {
        if scale > max_scale {
            return None;
        }
        let n = 1i64 << scale;
        let i = i64::from(i);
        (i.div_euclid(n), i.rem_euclid(n) as u32, scale as u32)
    };
    Some(match ev.cmp(&eb) {
        Ordering::Equal if s == 0 => m.partial_cmp(&1.0).expect("finite"),
        Ordering::Equal => super::index::reference::compare_mantissa(m, k, s),
        other => other,
    })
}

/// Every value is in the bucket whose bounds contain it at the histogram's final scale:
/// against the exact big-integer reference up to scale 6 (and for all scales ≤ 0), and
/// against the `f64` floors of the boundaries (checked exact in `index::tests`) above.
fn assert_buckets_hold(h: &ExpHistogram, values: &[f64]) {
    let mut expected_pos: BTreeMap<i32, u64> = BTreeMap::new();
    let mut expected_neg: BTreeMap<i32, u64> = BTreeMap::new();
    let scale = h.scale();
    for &v in values {
        let m = v.abs();
        if m <= h.zero_threshold() {
            continue;
        }
        let i = index_of(m, scale);
        let (l, u) = (lower_boundary(i, scale), lower_boundary(i + 1, scale));
        assert!(
            l < m && m <= u,
            "{m} not in ({l}, {u}] at index {i}, scale {scale}"
        );
        if let Some(low) = reference_compare(m, i, scale, 6) {
            assert_eq!(low, Ordering::Greater, "{m} <= base^{i} at scale {scale}");
            let high = reference_compare(m, i + 1, scale, 6).expect("same scale");
            assert_ne!(high, Ordering::Greater, "{m} > base^{} at {scale}", i + 1);
        }
        *if v > 0.0 {
            &mut expected_pos
        } else {
            &mut expected_neg
        }
        .entry(i)
        .or_default() += 1;
    }
    assert_eq!(nonzero(h.positive()), expected_pos);
    assert_eq!(nonzero(h.negative()), expected_neg);
}

fn assert_quantiles_within_alpha(values: &[f64], scale: i32) {
    let h = record_all(values, scale);
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // The f64 bounds are the true ones rounded down, which moves the estimate by ulps.
    let bound = alpha(h.scale()) * (1.0 + 1e-9);
    for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
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
    let n = 20_000;
    let uniform: Vec<f64> = (0..n).map(|_| 0.001 + r.unit() * 0.099).collect();
    let lognormal: Vec<f64> = (0..n)
        .map(|_| (0.02f64.ln() + 0.8 * r.normal()).exp())
        .collect();
    let bimodal: Vec<f64> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                0.2 + 0.01 * r.normal().abs()
            } else {
                0.005 + 0.001 * r.normal().abs()
            }
        })
        .collect();
    let pareto: Vec<f64> = (0..n).map(|_| 0.001 * r.unit().powf(-1.0 / 1.2)).collect();
    // 24 decades: forces downscales.
    let wide: Vec<f64> = (0..n)
        .map(|_| 10f64.powf(-12.0 + 24.0 * r.unit()))
        .collect();
    // Both signs and zeros: negative buckets, the zero bucket, and a downscale.
    let signed: Vec<f64> = (0..n)
        .map(|i| match i % 5 {
            0 => 0.0,
            1 | 2 => -(0.02f64.ln() + 2.0 * r.normal()).exp(),
            _ => (0.5f64.ln() + 2.0 * r.normal()).exp(),
        })
        .collect();
    for (name, values) in [
        ("uniform", &uniform),
        ("lognormal", &lognormal),
        ("bimodal", &bimodal),
        ("pareto", &pareto),
        ("wide", &wide),
        ("signed", &signed),
    ] {
        for scale in [0, 2, 4, 8] {
            assert_quantiles_within_alpha(values, scale);
        }
        let h = record_all(values, 2);
        assert_eq!(h.count(), n as u64, "{name}");
        assert_buckets_hold(&h, values);
        if name == "wide" {
            assert!(
                h.scale() < 2,
                "24 decades do not fit 160 buckets at scale 2"
            );
            // 8% at scale 2 becomes ~17% at scale 1 or ~35% at scale 0: still within α of
            // the final scale (checked above), which is what the bound promises.
        }
    }
}

#[test]
fn prometheus_spec_worked_example() {
    // The example in the Prometheus native-histogram specification: positive buckets
    // (index → population) -2→3, -1→5, 0→0, 1→0, 2→1, 3→0, 4→3, 5→2.
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
    // The spec's first representation: spans [[-2,2],[2,1],[1,2]], buckets [3,2,-4,2,-1].
    assert_eq!(
        encode_spans(&buckets, 0),
        (
            vec![span(-2, 2), span(2, 1), span(1, 2)],
            vec![3, 2, -4, 2, -1]
        )
    );
    // The single empty bucket (index 3) kept: [[-2,2],[2,4]], [3,2,-4,-1,3,-1].
    assert_eq!(
        encode_spans(&buckets, 1),
        (vec![span(-2, 2), span(2, 4)], vec![3, 2, -4, -1, 3, -1])
    );
    // Every empty bucket kept: [[-2,8]], [3,2,-5,0,1,-1,3,-1]. This is what the
    // exporter sends ([`NATIVE_MAX_GAP`] = 2).
    assert_eq!(
        encode_spans(&buckets, NATIVE_MAX_GAP),
        (vec![span(-2, 8)], vec![3, 2, -5, 0, 1, -1, 3, -1])
    );
    for gap in 0..3 {
        let (spans, deltas) = encode_spans(&buckets, gap);
        let decoded = decode_spans(&spans, &deltas).expect("valid");
        let nonzero: Vec<(i32, u64)> = buckets.iter().copied().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            decoded
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>(),
            nonzero
        );
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
    h.record(-0.75).expect("finite"); // magnitude in (0.5, 1]: index -1
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
    assert_eq!(
        n.negative_spans,
        vec![BucketSpan {
            offset: 0,
            length: 1
        }]
    );
    assert_eq!(otel_to_prometheus_index(1), 2);
    assert_eq!(prometheus_to_otel_index(2), 1);
    assert_eq!(otel_to_prometheus_index(i32::MAX), i32::MAX);
    assert_eq!(prometheus_to_otel_index(i32::MIN), i32::MIN);
}

#[test]
fn native_schema_is_clamped_to_8() {
    let h = record_all(&[1.5, 1.501, 1.502], 12);
    assert_eq!(h.scale(), 12);
    let n = h.to_native();
    assert_eq!(n.schema, 8);
    assert_eq!(n.count, 3);
    let decoded: u64 = decode_spans(&n.positive_spans, &n.positive_deltas)
        .expect("valid")
        .iter()
        .map(|(_, c)| c)
        .sum();
    assert_eq!(decoded, 3);
    // The copy was downscaled; the histogram keeps its resolution.
    assert_eq!(h.scale(), 12);
}

#[test]
fn malformed_spans_are_refused() {
    let span = |offset, length| BucketSpan { offset, length };
    assert_eq!(
        decode_spans(&[span(0, 3)], &[1, 2]),
        Err(NativeError::Length {
            spans: 3,
            deltas: 2
        })
    );
    assert_eq!(
        decode_spans(&[span(4, 2)], &[1, -2]),
        Err(NativeError::NegativeCount { index: 5 })
    );
    assert_eq!(
        decode_spans(&[span(i32::MAX, 2)], &[1, 0]),
        Err(NativeError::IndexOverflow)
    );
    let mut n = record_all(&[1.0, 2.0], 2).to_native();
    n.count = 3;
    assert!(matches!(
        ExpHistogram::from_native(&n),
        Err(NativeError::Count { .. })
    ));
    n.schema = 9;
    assert_eq!(ExpHistogram::from_native(&n), Err(NativeError::Schema(9)));
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
        let mut expected: BTreeMap<i32, u64> = BTreeMap::new();
        for (i, n) in before {
            *expected.entry(i >> 1).or_default() += n;
        }
        let got: BTreeMap<i32, u64> = b.iter().collect();
        assert_eq!(got, expected, "offset {offset}");
        assert_eq!(b.offset(), offset >> 1);
    }

    // Through recording: at scale 0, bucket i is (2^i, 2^(i+1)], so 1.5 · 2^i is in it.
    // Fill indexes -7..=152 (160 buckets, odd negative offset), then one more at 153.
    for first in [-7, -8, 7] {
        let values: Vec<f64> = (first..first + 161).map(|i| 1.5 * 2f64.powi(i)).collect();
        let mut h = ExpHistogram::new(0);
        for v in &values[..160] {
            h.record(*v).expect("finite");
        }
        assert_eq!((h.scale(), h.positive().offset()), (0, first));
        h.record(values[160]).expect("finite");
        assert_eq!(h.scale(), -1, "first index {first}");
        assert_eq!(h.positive().offset(), first >> 1);
        assert_eq!(h.count(), 161);
        assert_buckets_hold(&h, &values);
    }
}

#[test]
fn merge_picks_the_highest_scale_that_fits() {
    // a spans 1..2 at scale 6; b holds values ~1000x larger at scale 4. Their union needs
    // ~10 binary orders; at scale 4 that is ~169 buckets: the target is 3, not 4 and not
    // the lower of the two scales minus one blindly.
    let a = record_all(&[1.01, 1.5, 1.99], 6);
    let b = record_all(&[1000.0, 1500.0], 4);
    let mut merged = a.clone();
    merged.merge(&b);
    let mut union = ExpHistogram::new(6);
    for v in [1.01, 1.5, 1.99, 1000.0, 1500.0] {
        union.record(v).expect("finite");
    }
    assert_eq!(merged.scale(), 3);
    assert_eq!(merged.scale(), union.scale());
    assert_eq!(merged.positive(), union.positive());
    assert!(merged.positive().counts().len() <= DEFAULT_MAX_SIZE);

    // The classic mistake: deciding from the width (high − low) instead of the shifted
    // ends. Indexes 1 and 320: (320 − 1) >> 1 + 1 = 160 says one halving fits, but
    // 320 >> 1 − 1 >> 1 + 1 = 161 buckets do not; two halvings are needed.
    assert_eq!(span_downscale(1, 320, DEFAULT_MAX_SIZE), 2);
    let low = record_all(&[1.5 * 2f64.powi(1)], 0);
    let high = record_all(&[1.5 * 2f64.powi(320)], 0);
    let mut merged = low.clone();
    merged.merge(&high);
    assert_eq!(merged.scale(), -2);
    assert_eq!(
        nonzero(merged.positive()),
        BTreeMap::from([(0, 1), (80, 1)])
    );
    let mut reversed = high.clone();
    reversed.merge(&low);
    assert_eq!(reversed.positive(), merged.positive());
}

#[test]
fn merging_different_zero_thresholds_widens_the_zero_bucket() {
    // Scale 0: 0.3 in (0.25, 0.5] (index -2), 0.75 in (0.5, 1] (index -1), 3 in (2, 4].
    let mut a = ExpHistogram::with_limits(0, DEFAULT_MAX_SIZE, 0.0);
    for v in [0.3, 0.75, 3.0, -0.3] {
        a.record(v).expect("finite");
    }
    let mut b = ExpHistogram::with_limits(0, DEFAULT_MAX_SIZE, 0.6);
    for v in [0.5, 1.5] {
        b.record(v).expect("finite");
    }
    assert_eq!(b.zero_count(), 1);
    a.merge(&b);
    // 0.6 lies inside the populated bucket (0.5, 1]: the threshold widens to 1.
    assert_eq!(a.zero_threshold(), 1.0);
    assert_eq!(a.zero_count(), 4, "0.5, 0.3, -0.3 and 0.75");
    assert_eq!(nonzero(a.positive()), BTreeMap::from([(0, 1), (1, 1)]));
    assert!(a.negative().counts().is_empty());
    assert_eq!(a.count(), 6);
    // New values follow the wider threshold.
    a.record(0.9).expect("finite");
    assert_eq!(a.zero_count(), 5);
}

#[test]
fn values_within_an_ulp_of_a_boundary() {
    let scales = [-10, -4, -1, 0, 1, 2, 3, 5, 8, 9, 10, 11, 16, 20];
    for scale in scales {
        let n = if scale > 0 { 1i32 << scale } else { 1 };
        let indexes = [
            -1000,
            -37,
            -1,
            0,
            1,
            2,
            5,
            77,
            1000,
            n / 2 + 1,
            n - 1,
            // Near the subnormal range and near f64::MAX.
            -1060 * n + 3,
            -1022 * n - 1,
            1023 * n + n / 3,
        ];
        for index in indexes {
            let b = lower_boundary(index, scale);
            if b == 0.0 || b == f64::MAX {
                continue;
            }
            // Bucket membership by the f64 bounds, for the boundary and its neighbours.
            for v in [b.next_down(), b, b.next_up()] {
                if v <= 0.0 {
                    continue;
                }
                let i = index_of(v, scale);
                assert!(lower_boundary(i, scale) < v && v <= lower_boundary(i + 1, scale));
            }
            // b is at or below base^index, so it is in a bucket below `index`; the next
            // f64 up is above base^index.
            assert!(index_of(b, scale) < index, "scale {scale} index {index}");
            assert!(index_of(b.next_up(), scale) >= index);
            if b.is_normal() {
                // Normal buckets are many ulps wide: the neighbours are in the adjacent
                // buckets exactly.
                assert_eq!(index_of(b, scale), index - 1, "scale {scale} index {index}");
                assert_eq!(index_of(b.next_up(), scale), index, "one ulp above");
                assert_eq!(index_of(b.next_down(), scale), index - 1, "one ulp below");
            }
            // And against the exact reference where it is affordable.
            if let Some(at) = reference_compare(b, index, scale, 10) {
                assert_ne!(at, Ordering::Greater, "scale {scale} index {index}");
                let above = reference_compare(b.next_up(), index, scale, 10).expect("scale");
                assert_eq!(above, Ordering::Greater, "scale {scale} index {index}");
            }
        }
    }
}

#[test]
fn index_extremes_do_not_overflow() {
    let smallest = f64::from_bits(1);
    for scale in OTEL_MIN_SCALE..=OTEL_MAX_SCALE {
        for v in [f64::MAX, f64::MIN_POSITIVE, smallest, 1.0, 2.0] {
            let i = index_of(v, scale);
            assert!(i > i32::MIN && i < i32::MAX);
            assert!(lower_boundary(i, scale) < v && v <= lower_boundary(i + 1, scale));
        }
        assert!(index_of(f64::MAX, scale) >= index_of(1.0, scale));
        assert!(index_of(smallest, scale) <= index_of(f64::MIN_POSITIVE, scale));
    }
    // Scale 20: f64::MAX = (2 − 2^-52) · 2^1023 is in the last bucket below 2^1024.
    assert_eq!(index_of(f64::MAX, 20), 1024 * (1 << 20) - 1);
    // Powers of two are upper edges: 2^-1022 and 2^-1074 close the bucket below them.
    assert_eq!(index_of(f64::MIN_POSITIVE, 20), -1022 * (1 << 20) - 1);
    assert_eq!(index_of(smallest, 20), -1074 * (1 << 20) - 1);
    // Scale -10: one bucket spans 1024 binary orders: (2^-2048, 2^-1024] holds the
    // smallest subnormal, (2^-1024, 1] holds 2^-1022 and 1, (1, 2^1024] holds f64::MAX.
    assert_eq!(index_of(smallest, -10), -2);
    assert_eq!(index_of(f64::MIN_POSITIVE, -10), -1);
    assert_eq!(index_of(1.0, -10), -1);
    assert_eq!(index_of(f64::MAX, -10), 0);
    // Scale 0, for the record.
    assert_eq!(index_of(f64::MAX, 0), 1023);
    assert_eq!(index_of(f64::MIN_POSITIVE, 0), -1023);
    assert_eq!(index_of(smallest, 0), -1075);

    // Recording the extremes keeps every count, from either end of the scale range.
    let extremes = [f64::MAX, f64::MIN_POSITIVE, smallest, -f64::MAX, -smallest];
    for scale in [MIN_SCALE, 0, 20] {
        let h = record_all(&extremes, scale);
        assert_eq!(h.count(), 5);
        assert_eq!(h.zero_count(), 3, "under the default 2^-128 threshold");
        let mut all = ExpHistogram::with_limits(scale, DEFAULT_MAX_SIZE, 0.0);
        for v in extremes {
            all.record(v).expect("finite");
        }
        assert_eq!(all.zero_count(), 0);
        assert_eq!(all.scale(), MIN_SCALE, "2,098 binary orders need scale -4");
        assert_buckets_hold(&all, &extremes);
        // Quantile estimates at the ends of the range neither overflow nor vanish.
        assert_eq!(
            all.quantile(1.0),
            Some(f64::MAX),
            "rank n is the max, exactly"
        );
        assert_eq!(
            all.quantile(0.0),
            Some(-f64::MAX),
            "rank 1 is the min, exactly"
        );
        for q in [0.3, 0.5, 0.7] {
            let estimate = all.quantile(q).expect("q");
            assert!(estimate.is_finite() && estimate != 0.0, "q {q}: {estimate}");
        }
        let rank_4 = all.quantile(0.8).expect("rank 4: f64::MIN_POSITIVE");
        let error = (rank_4 - f64::MIN_POSITIVE).abs() / f64::MIN_POSITIVE;
        assert!(error <= alpha(MIN_SCALE), "{rank_4}");
        let (l, u) = all.bounds(index_of(f64::MAX, MIN_SCALE));
        assert!(l.is_finite() && u == f64::MAX);
    }
}

#[test]
fn nan_and_infinities_are_refused() {
    let mut h = ExpHistogram::new(2);
    assert_eq!(h.record(f64::NAN), Err(NonFinite));
    assert_eq!(h.record(f64::INFINITY), Err(NonFinite));
    assert_eq!(h.record(f64::NEG_INFINITY), Err(NonFinite));
    assert_eq!((h.count(), h.sum(), h.bucket_count()), (0, 0.0, 0));
}

#[test]
fn zero_and_negative_values() {
    let h = record_all(&[0.0, -0.0, 1e-45, -3.0, -0.5, 2.0], 2);
    assert_eq!(h.zero_count(), 3, "0, -0 and values under the threshold");
    assert_eq!(h.negative().counts().iter().sum::<u64>(), 2);
    assert_eq!(h.quantile(0.0), Some(-3.0), "rank 1 is the min");
    assert_eq!(h.quantile(0.5), Some(0.0));
    assert_eq!(h.quantile(1.0), Some(2.0), "rank n is the max");
    let q = h.quantile(0.1).expect("rank 1 again: ⌈0.6⌉");
    assert_eq!(q, -3.0);
    let q = h.quantile(0.3).expect("rank 2: -0.5");
    assert!((q + 0.5).abs() <= 0.5 * alpha(2) * (1.0 + 1e-9), "{q}");
    assert_eq!(h.quantile(1.5), None);
    assert_eq!(ExpHistogram::new(2).quantile(0.5), None);
    let n = h.to_native();
    assert_eq!(n.zero_count, 3);
    assert_eq!(
        decode_spans(&n.negative_spans, &n.negative_deltas)
            .expect("valid")
            .iter()
            .map(|(_, c)| c)
            .sum::<u64>(),
        2
    );
}

#[test]
fn cumulative_counts_at_classic_bounds() {
    // Scale 0 buckets: 0.5 in (0.25, 0.5], 1 in (0.5, 1], 1.5 in (1, 2], 3 in (2, 4];
    // -1 in [-1, -0.5), -3 in [-4, -2); 0 in the zero bucket [-2^-128, 2^-128].
    let h = record_all(&[0.5, 1.0, 1.5, 3.0, 3.0, -1.0, -3.0, 0.0], 0);
    let le = [-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0];
    assert_eq!(
        h.cumulative_counts(&le),
        // -1.0 and 0.0 are the documented exceptions: -1 lies on a boundary and belongs to
        // the negative bucket above it; 0 is in the zero bucket, whose edge is 2^-128.
        // 2.5 is inside (2, 4]: that bucket counts at its upper edge. 3.0 >= max: exact.
        vec![0, 1, 1, 2, 2, 4, 5, 6, 6, 8, 8]
    );
    assert_eq!(
        h.classic_buckets(),
        vec![
            (-2.0, 1),
            (-0.5, 2),
            (DEFAULT_ZERO_THRESHOLD, 3),
            (0.5, 4),
            (1.0, 5),
            (2.0, 6),
            (4.0, 8),
            (f64::INFINITY, 8),
        ]
    );
    assert_eq!(
        ExpHistogram::new(2).classic_buckets(),
        vec![(f64::INFINITY, 0)]
    );
}

#[test]
fn native_round_trip_keeps_everything_but_min_and_max() {
    let values = [0.0, -0.002, 0.004, 0.004, 0.03, 7.5, -1e6];
    let h = record_all(&values, 3);
    let n = h.to_native();
    let back = ExpHistogram::from_native(&n).expect("valid");
    assert_eq!(back.scale(), h.scale());
    assert_eq!(h.scale(), 2, "29 binary orders of negatives need scale 2");
    assert_eq!(nonzero(back.positive()), nonzero(h.positive()));
    assert_eq!(nonzero(back.negative()), nonzero(h.negative()));
    assert_eq!(
        (back.zero_count(), back.count(), back.sum()),
        (h.zero_count(), h.count(), h.sum())
    );
    assert!(back.min() <= h.min() && back.max() >= h.max());
    assert_eq!(back.to_native(), n);
}

fn finite_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-30.0f64..30.0).prop_map(|e| 10f64.powf(e)),
        (-30.0f64..30.0).prop_map(|e| -(10f64.powf(e))),
        Just(0.0),
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
    ]
}

/// Values packed in a few decades, so histograms stay at high scales.
fn narrow_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-3.0f64..1.0).prop_map(|e| 10f64.powf(e)),
        (-3.0f64..1.0).prop_map(|e| -(10f64.powf(e))),
        Just(0.0),
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
        // The sum is the same floating-point sum, in recording order, bit for bit (or the
        // same overflow to ±Inf/NaN for sums of values near f64::MAX).
        let sum = values.iter().fold(0.0, |s, v| s + v);
        prop_assert!(h.sum().to_bits() == sum.to_bits() || (h.sum().is_nan() && sum.is_nan()));
        prop_assert!(h.positive().counts().len() <= DEFAULT_MAX_SIZE);
        prop_assert!(h.negative().counts().len() <= DEFAULT_MAX_SIZE);
        assert_buckets_hold(&h, &values);
    }

    #[test]
    fn narrow_values_in_their_buckets_at_high_scales(values in proptest::collection::vec(narrow_value(), 1..200), scale in 1i32..=20) {
        let h = record_all(&values, scale);
        prop_assert_eq!(h.count(), values.len() as u64);
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
        prop_assert_eq!(nonzero(left.positive()), nonzero(right.positive()));
        prop_assert_eq!(nonzero(left.negative()), nonzero(right.negative()));
        prop_assert_eq!((left.count(), left.zero_count()), (right.count(), right.zero_count()));
        prop_assert_eq!((left.min(), left.max()), (right.min(), right.max()));

        // Recording the union from the lowest of the starting scales gives the same.
        let start = scales.0.min(scales.1).min(scales.2);
        let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
        let union = record_all(&all, start);
        prop_assert_eq!(left.scale(), union.scale());
        prop_assert_eq!(nonzero(left.positive()), nonzero(union.positive()));
        prop_assert_eq!(nonzero(left.negative()), nonzero(union.negative()));
        prop_assert_eq!((left.count(), left.zero_count()), (union.count(), union.zero_count()));
        prop_assert_eq!((left.min(), left.max()), (union.min(), union.max()));
        assert_buckets_hold(&left, &all);
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
    fn quantiles_within_alpha(values in proptest::collection::vec(prop_oneof![1e-9f64..1e9, -1e3f64..1e3, Just(0.0)], 1..400), scale in 0i32..=8) {
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
        // No span starts or ends on an empty bucket.
        let decoded = decode_spans(&spans, &deltas).expect("valid");
        let mut at = 0;
        for s in &spans {
            let run = &decoded[at..at + s.length as usize];
            prop_assert!(run.first().is_some_and(|(_, n)| *n > 0));
            prop_assert!(run.last().is_some_and(|(_, n)| *n > 0));
            at += s.length as usize;
        }
        let decoded: Vec<(i32, u64)> = decoded.into_iter().filter(|(_, n)| *n > 0).collect();
        let expected: Vec<(i32, u64)> = buckets.into_iter().filter(|(_, n)| *n > 0).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn native_round_trips(values in proptest::collection::vec(finite_value(), 0..200), scale in -4i32..=12) {
        let h = record_all(&values, scale);
        let n = h.to_native();
        prop_assert!((MIN_SCALE..=MAX_NATIVE_SCHEMA).contains(&n.schema));
        let back = ExpHistogram::from_native(&n).expect("valid");
        let mut expected = h.clone();
        if expected.scale() > MAX_NATIVE_SCHEMA {
            expected.downscale((expected.scale() - MAX_NATIVE_SCHEMA) as u32);
        }
        prop_assert_eq!(back.scale(), expected.scale());
        prop_assert_eq!(nonzero(back.positive()), nonzero(expected.positive()));
        prop_assert_eq!(nonzero(back.negative()), nonzero(expected.negative()));
        prop_assert_eq!((back.count(), back.zero_count()), (h.count(), h.zero_count()));
        prop_assert_eq!(back.to_native(), n);
    }

    /// At every bucket boundary the cumulative count is the exact number of values at or
    /// below it (positive bounds), and counts never decrease.
    #[test]
    fn cumulative_counts_exact_at_boundaries(values in proptest::collection::vec(narrow_value(), 1..200), scale in 0i32..=8) {
        let h = record_all(&values, scale);
        let mut le: Vec<f64> = h.positive().iter().map(|(i, _)| lower_boundary(i + 1, h.scale())).collect();
        le.push(h.max());
        le.sort_by(f64::total_cmp);
        let counts = h.cumulative_counts(&le);
        prop_assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        for (bound, got) in le.iter().zip(&counts) {
            let exact = values.iter().filter(|v| **v <= *bound).count() as u64;
            prop_assert_eq!(*got, exact, "le {}", bound);
        }
    }
}
