//! Bucket indexes and bucket boundaries, exact at the boundaries.
//!
//! At scale `s` the boundaries are `B_i = 2^(i / 2^s)`. For `s <= 0` they are powers of two
//! and exact in `f64`. For `s > 0` a boundary that is not a power of two is irrational, so
//! no `f64` equals it, and a value `v` (an `f64`) is above `B_i` exactly when it is above
//! `floor64(B_i)`, the largest `f64` below `B_i`. Every boundary used here is that floor,
//! computed exactly:
//!
//! - `2^(k / 2^s)` for `0 <= k < 2^s` is the product of `2^(2^-m)` over the bits of `k`,
//!   evaluated in 128-bit fixed point from correctly rounded constants. The product is
//!   within 2^-117 of the true value (at most 20 factors and 20 truncating multiplies,
//!   each off by at most 2^-127 relative), far inside the 2^-52 spacing of `f64`
//!   mantissas, so truncating it to 53 bits gives the floor unless the true value lies
//!   within 2^-117 of an `f64`. The test `no_boundary_is_within_the_error_bound_of_an_f64` checks every
//!   one of the 2^20 distinct mantissa boundaries of scales 1..=20: none is.
//! - Scales 1..=8 (Prometheus' range) keep those floors in a table built at compile time,
//!   plus a lookup by the mantissa's top `s + 2` bits that leaves one comparison, so the
//!   hot path has no logarithm and no branch on the value.
//! - Scales 9..=20 narrow the answer to one scale-8 bucket with the table, guess inside it
//!   with `log2`, and settle every comparison against a boundary with an `exp2` estimate
//!   when it is more than 2^-40 (relative) away, or with the exact floor when it is not.
//!
//! Subnormals are normalised (multiplied by 2^64, exactly) before the mantissa is read, and
//! all index arithmetic is `i64`, so the smallest subnormal and `f64::MAX` have in-range
//! indexes at every scale from −10 to 20.

/// The lowest scale the OpenTelemetry data model allows.
pub const OTEL_MIN_SCALE: i32 = -10;

/// The highest scale the OpenTelemetry data model allows.
pub const OTEL_MAX_SCALE: i32 = 20;

/// The highest scale whose mantissa boundaries are kept in a table (2^8 = 256 entries).
const TABLE_MAX_SCALE: i32 = 8;

const FRACTION: u64 = (1 << 52) - 1;
const ONE_BITS: u64 = 1023 << 52;

/// `2^(2^-m)` for `m = 1..=20` in Q1.127 fixed point (the value times 2^127), rounded to
/// nearest. Computed with 120-digit decimal arithmetic; the test
/// `root_constants_square_to_each_other` checks that each squares to the one before it.
const ROOTS: [u128; 20] = [
    0xb504_f333_f9de_6484_597d_89b3_754a_be9f,
    0x9837_f051_8db8_a96f_46ad_2318_2e42_f6f6,
    0x8b95_c1e3_ea8b_d6e6_fbe4_6287_58a5_3c90,
    0x85aa_c367_cc48_7b14_c5c9_5b8c_2154_c1b2,
    0x82cd_8698_ac2b_a1d7_3e2a_475b_4652_0bff,
    0x8164_d1f3_bc03_0773_7be5_6527_bd14_def5,
    0x80b1_ed4f_d999_ab6c_2533_5719_b6e6_fd20,
    0x8058_d7d2_d5e5_f6b0_94d5_89f6_08ee_4aa2,
    0x802c_6436_d0e0_4f50_ff8c_e94a_6797_b3ce,
    0x8016_302f_1746_7628_3690_dfe4_4d11_d008,
    0x800b_179c_8202_8fd0_945e_54e2_ae18_f2f0,
    0x8005_8baf_7fee_3b5d_1c71_8b38_e549_cb93,
    0x8002_c5d0_0fdc_fcb6_b656_6a58_c048_be1f,
    0x8001_62e6_1bed_4a48_e84c_2e1a_4634_73da,
    0x8000_b172_92f7_02a3_aa22_beac_ca94_9013,
    0x8000_58b9_2abb_ae02_030c_5fa5_256f_41fe,
    0x8000_2c5c_8dad_e4d7_1776_c0f4_dbea_67d6,
    0x8000_162e_44ea_f636_526b_e456_600b_dbe5,
    0x8000_0b17_21fa_7c18_8307_016c_1cd4_e8b7,
    0x8000_058b_90de_7e4c_ecfc_4875_0348_8bb2,
];

/// How far (in units of 2^-127) the fixed-point product may be from the true boundary:
/// at most 20 × (½ + 1) units of relative error on a value below 2, so 64; 2^10 leaves
/// a wide margin.
#[cfg(test)]
const PRODUCT_ERROR: u128 = 1 << 10;

/// The 256-bit product `a · b` as `(high, low)` 128-bit halves.
const fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const LOW64: u128 = (1 << 64) - 1;
    let (a_hi, a_lo) = (a >> 64, a & LOW64);
    let (b_hi, b_lo) = (b >> 64, b & LOW64);
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    // Each term is below 2^128; `middle` is below 3 · 2^64.
    let middle = (lo_lo >> 64) + (hi_lo & LOW64) + (lo_hi & LOW64);
    let high = hi_hi + (hi_lo >> 64) + (lo_hi >> 64) + (middle >> 64);
    let low = (middle << 64) | (lo_lo & LOW64);
    (high, low)
}

/// `a · b` in Q1.127, truncated, for factors whose product is below 2.
const fn mul_q127(a: u128, b: u128) -> u128 {
    let (high, low) = mul_wide(a, b);
    (high << 1) | (low >> 127)
}

/// `2^(k / 2^scale)` in Q1.127 (truncated products), for `0 <= k < 2^scale`, scale 1..=20.
const fn boundary_q127(k: u32, scale: u32) -> u128 {
    let mut x: u128 = 1 << 127;
    let mut bit = 0;
    while bit < scale {
        if (k >> bit) & 1 == 1 {
            // Bit `j` of `k` contributes 2^(2^j / 2^scale) = 2^(2^-(scale - j)).
            x = mul_q127(x, ROOTS[(scale - bit - 1) as usize]);
        }
        bit += 1;
    }
    x
}

/// `floor64(2^(k / 2^scale))` as a 53-bit integer mantissa (the value times 2^52), for
/// `0 <= k < 2^scale`, scale 1..=20.
const fn boundary_mantissa_bits(k: u32, scale: u32) -> u64 {
    // k = 0 is exactly 1; every other boundary is irrational and the truncation is its
    // floor (see the module docs and `is_ambiguous`).
    (boundary_q127(k, scale) >> 75) as u64
}

/// Whether the fixed-point product for boundary `k` lies so close to an `f64` that its
/// truncation might not be the floor. Never true for `k > 0` at scales 1..=20 (tested
/// exhaustively); `k = 0` is exact.
#[cfg(test)]
const fn is_ambiguous(k: u32, scale: u32) -> bool {
    let rest = boundary_q127(k, scale) & ((1 << 75) - 1);
    k != 0 && (rest < PRODUCT_ERROR || rest > (1 << 75) - PRODUCT_ERROR)
}

/// Start of scale `s`'s boundaries in [`BOUNDARIES`]: `2^s + 1` entries per scale.
const fn boundary_base(scale: u32) -> usize {
    (1 << scale) - 2 + (scale as usize - 1)
}

/// Start of scale `s`'s cells in [`CELLS`]: `4 · 2^s` entries per scale.
const fn cell_base(scale: u32) -> usize {
    4 * ((1 << scale) - 2)
}

/// Sum over scales 1..=8 of `2^s + 1`.
const BOUNDARY_TABLE_LEN: usize = boundary_base(TABLE_MAX_SCALE as u32 + 1);

/// Sum over scales 1..=8 of `4 · 2^s`.
const CELL_TABLE_LEN: usize = cell_base(TABLE_MAX_SCALE as u32 + 1);

/// For each scale 1..=8: the `f64` bits of `floor64(2^(k / 2^s))` for `k` in `0..2^s`, then
/// the bits of 2.0 as a sentinel, so the lookup never needs a bounds branch.
static BOUNDARY_BITS: [u64; BOUNDARY_TABLE_LEN] = BOUNDARY_TABLE;

/// [`BOUNDARY_BITS`] as a `const`, for building [`CELLS`] at compile time.
const BOUNDARY_TABLE: [u64; BOUNDARY_TABLE_LEN] = build_boundaries();

/// For each scale 1..=8 and each of the `4 · 2^s` equal cells of `[1, 2)`: the largest `k`
/// whose boundary is below the cell's start (0 if none). Boundaries are at least
/// `ln 2 / 2^s` apart, wider than a cell (`1 / (4 · 2^s)`), so a cell holds at most one
/// boundary and one comparison finishes the lookup.
static CELLS: [u16; CELL_TABLE_LEN] = build_cells();

const fn build_boundaries() -> [u64; BOUNDARY_TABLE_LEN] {
    let mut out = [0u64; BOUNDARY_TABLE_LEN];
    let mut scale = 1u32;
    while scale <= TABLE_MAX_SCALE as u32 {
        let base = boundary_base(scale);
        let n = 1u32 << scale;
        let mut k = 0u32;
        while k < n {
            out[base + k as usize] = (boundary_mantissa_bits(k, scale) & FRACTION) | ONE_BITS;
            k += 1;
        }
        out[base + n as usize] = 2f64.to_bits();
        scale += 1;
    }
    out
}

const fn build_cells() -> [u16; CELL_TABLE_LEN] {
    let mut out = [0u16; CELL_TABLE_LEN];
    let mut scale = 1u32;
    while scale <= TABLE_MAX_SCALE as u32 {
        let (bases, cells) = (boundary_base(scale), cell_base(scale));
        let n = 1usize << scale;
        let cell_bits = scale + 2;
        let mut k = 0usize;
        let mut c = 0usize;
        while c < 4 * n {
            let start = ONE_BITS | ((c as u64) << (52 - cell_bits));
            // Positive `f64`s order like their bits.
            while k + 1 < n && BOUNDARY_TABLE[bases + k + 1] < start {
                k += 1;
            }
            out[cells + c] = k as u16;
            c += 1;
        }
        scale += 1;
    }
    out
}

/// `v = m · 2^e` with `m` in `[1, 2)` returned as its bits, for finite `v > 0`,
/// subnormals included.
#[inline]
fn mantissa_exponent(v: f64) -> (u64, i64) {
    let (bits, bias) = if v.to_bits() >> 52 == 0 {
        // Subnormal: scale into the normal range, exactly (by a power of two).
        ((v * 18_446_744_073_709_551_616.0).to_bits(), 1023 + 64)
    } else {
        (v.to_bits(), 1023)
    };
    let field = ((bits >> 52) & 0x7ff) as i64;
    ((bits & FRACTION) | ONE_BITS, field - bias)
}

/// The largest `k` in `[0, 2^scale)` with `floor64(2^(k/2^scale)) < m`, for `m` in `(1, 2)`
/// given as its bits, scale 1..=8.
#[inline]
fn sub_index_table(m_bits: u64, scale: u32) -> i64 {
    let cell = ((m_bits & FRACTION) >> (50 - scale)) as usize;
    let k = usize::from(CELLS[cell_base(scale) + cell]);
    // At most one boundary lies in the cell: one comparison, no branch to mispredict.
    let next_below = BOUNDARY_BITS[boundary_base(scale) + k + 1] < m_bits;
    k as i64 + i64::from(next_below)
}

/// Whether `2^(k / 2^scale) < m`, exactly, for scale 9..=20 and `0 <= k < 2^scale`.
fn boundary_below(k: i64, scale: u32, m: f64) -> bool {
    #[allow(clippy::cast_precision_loss)] // k < 2^20 and 2^scale are exact in f64
    let estimate = (k as f64 / f64::from(1u32 << scale)).exp2();
    // Any usable libm's exp2 is within a few ulps (2^-52); 2^-40 is a wide margin.
    let margin = estimate * 9.094_947_017_729_282e-13;
    if m > estimate + margin {
        true
    } else if m < estimate - margin {
        false
    } else {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 <= k < 2^20
        let exact = boundary_mantissa_bits(k as u32, scale);
        (exact & FRACTION) | ONE_BITS < m.to_bits()
    }
}

/// [`sub_index_table`] for scales 9..=20.
fn sub_index_high(m_bits: u64, scale: u32) -> i64 {
    // The scale-8 bucket pins the answer to 2^(scale-8) candidates: its lower boundary is
    // the same real number as boundary `k8 << shift` at `scale`.
    let shift = scale - TABLE_MAX_SCALE as u32;
    let k8 = sub_index_table(m_bits, TABLE_MAX_SCALE as u32);
    let (low, high) = (k8 << shift, ((k8 + 1) << shift) - 1);
    let m = f64::from_bits(m_bits);
    #[allow(clippy::cast_possible_truncation)] // clamped right after
    let guess = (m.log2() * f64::from(1u32 << scale)).floor() as i64;
    let mut k = guess.clamp(low, high);
    // Boundary `low` is below m (the table said so); boundary `high + 1` is not.
    while k > low && !boundary_below(k, scale, m) {
        k -= 1;
    }
    while k < high && boundary_below(k + 1, scale, m) {
        k += 1;
    }
    k
}

/// The OpenTelemetry bucket index of finite `v > 0` at `scale` (−10..=20): the `i` with
/// `base^i < v <= base^(i+1)`, exact for every `f64` (see the module docs).
/// [`lower_boundary`] gives the bounds as `f64`s: `lower_boundary(i) < v <=
/// lower_boundary(i + 1)`. A scale outside −10..=20 is clamped into it.
#[inline]
pub fn index_of(v: f64, scale: i32) -> i32 {
    index_at(v, scale.clamp(OTEL_MIN_SCALE, OTEL_MAX_SCALE))
}

/// [`index_of`] for a scale known to be in −10..=20.
#[inline]
pub(crate) fn index_at(v: f64, scale: i32) -> i32 {
    let (m_bits, e) = mantissa_exponent(v);
    let index = if scale <= 0 {
        // A power of two is the upper edge of the bucket below it.
        let e = if m_bits == ONE_BITS { e - 1 } else { e };
        e >> -scale
    } else {
        let scale = scale.unsigned_abs();
        let n = 1i64 << scale;
        if m_bits == ONE_BITS {
            e * n - 1
        } else if scale <= TABLE_MAX_SCALE as u32 {
            e * n + sub_index_table(m_bits, scale)
        } else {
            e * n + sub_index_high(m_bits, scale)
        }
    };
    // -1075 <= e <= 1023 and n <= 2^20, so |index| <= 1076 · 2^20 < 2^31: the cast is
    // exact.
    #[allow(clippy::cast_possible_truncation)]
    let index = index as i32;
    index
}

/// `floor64(base^index)` at `scale` (−10..=20, clamped): the largest `f64` at or below the
/// boundary, saturating to `f64::MAX` above the `f64` range and to 0 below it. Bucket
/// `i` holds exactly the `f64`s `v` with `lower_boundary(i) < v <= lower_boundary(i + 1)`.
pub fn lower_boundary(index: i32, scale: i32) -> f64 {
    let scale = scale.clamp(OTEL_MIN_SCALE, OTEL_MAX_SCALE);
    let index = i64::from(index);
    let (exponent, mantissa) = if scale <= 0 {
        (index << -scale, 1u64 << 52)
    } else {
        let scale = scale.unsigned_abs();
        let n = 1i64 << scale;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 <= k < 2^20
        let k = index.rem_euclid(n) as u32;
        let mantissa = if scale <= TABLE_MAX_SCALE as u32 {
            (BOUNDARY_BITS[boundary_base(scale) + k as usize] & FRACTION) | (1 << 52)
        } else {
            boundary_mantissa_bits(k, scale)
        };
        (index.div_euclid(n), mantissa)
    };
    compose_floor(mantissa, exponent)
}

/// `floor64(mantissa · 2^(exponent − 52))` for a 53-bit `mantissa` (top bit set).
fn compose_floor(mantissa: u64, exponent: i64) -> f64 {
    if exponent > 1023 {
        f64::MAX
    } else if exponent >= -1022 {
        #[allow(clippy::cast_sign_loss)] // exponent + 1023 >= 1
        let field = (exponent + 1023) as u64;
        f64::from_bits((field << 52) | (mantissa & FRACTION))
    } else {
        // Subnormal: in units of 2^-1074 the value is mantissa · 2^(exponent + 1022);
        // truncating the shifted-out bits is the floor.
        let shift = (-1022 - exponent).unsigned_abs();
        if shift >= 64 {
            0.0
        } else {
            f64::from_bits(mantissa >> shift)
        }
    }
}

#[cfg(test)]
pub(super) mod reference {
    //! An independent, slow, exact reference: `v <= 2^(k / 2^s)` decided by comparing
    //! `v^(2^s)` with `2^k` in big integers.

    use std::cmp::Ordering;

    /// Little-endian `u64` limbs.
    fn square(a: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; 2 * a.len()];
        for (i, &x) in a.iter().enumerate() {
            let mut carry = 0u128;
            for (j, &y) in a.iter().enumerate() {
                let t = u128::from(out[i + j]) + u128::from(x) * u128::from(y) + carry;
                out[i + j] = t as u64;
                carry = t >> 64;
            }
            let mut at = i + a.len();
            while carry > 0 {
                let t = u128::from(out[at]) + carry;
                out[at] = t as u64;
                carry = t >> 64;
                at += 1;
            }
        }
        while out.last() == Some(&0) {
            out.pop();
        }
        out
    }

    /// Compares `d^(2^s)` with `2^bits`.
    fn compare_power(d: u64, s: u32, bits: u64) -> Ordering {
        let mut x = vec![d];
        for _ in 0..s {
            x = square(&x);
        }
        let top = x.last().copied().unwrap_or(0);
        let length = 64 * (x.len() as u64 - 1) + u64::from(64 - top.leading_zeros());
        let is_power_of_two =
            top.is_power_of_two() && x[..x.len() - 1].iter().all(|limb| *limb == 0);
        match (length - 1).cmp(&bits) {
            Ordering::Equal if is_power_of_two => Ordering::Equal,
            Ordering::Equal => Ordering::Greater,
            other => other,
        }
    }

    /// How the mantissa `m` in `[1, 2)` compares with the true `2^(k / 2^s)`, `0 <= k <
    /// 2^s`, exactly.
    pub(in crate::histogram) fn compare_mantissa(m: f64, k: u32, s: u32) -> Ordering {
        // m = d / 2^52, so m^(2^s) vs 2^(k/2^s · 2^s) is d^(2^s) vs 2^(k + 52 · 2^s).
        let d = (m.to_bits() & ((1 << 52) - 1)) | (1 << 52);
        compare_power(d, s, u64::from(k) + 52 * (1u64 << s))
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::*;

    #[test]
    fn root_constants_square_to_each_other() {
        // c_1² = 2: the 256-bit square is 2 · 2^254 = 2^255 within rounding.
        let (high, low) = mul_wide(ROOTS[0], ROOTS[0]);
        let two = 1u128 << 127; // high half of 2^255
        assert!(high == two || high == two - 1, "{high:x} {low:x}");
        for m in 1..ROOTS.len() {
            let square = mul_q127(ROOTS[m], ROOTS[m]);
            assert!(
                square.abs_diff(ROOTS[m - 1]) <= 2,
                "2^(2^-{}) squared: {square:x} vs {:x}",
                m + 1,
                ROOTS[m - 1]
            );
            let as_float = (ROOTS[m] >> 75) as f64 / (1u64 << 52) as f64;
            let expected = (1.0 / (1u64 << (m + 1)) as f64).exp2();
            assert!((as_float - expected).abs() < 1e-15);
        }
    }

    /// Every boundary of scales 1..=20 is far enough from an `f64` for the 128-bit product
    /// to settle its floor (2^20 distinct boundaries: the odd `k` of each scale).
    #[test]
    fn no_boundary_is_within_the_error_bound_of_an_f64() {
        for scale in 1..=20u32 {
            let ambiguous: Vec<u32> = (1..1u32 << scale)
                .step_by(2)
                .filter(|k| is_ambiguous(*k, scale))
                .collect();
            assert!(ambiguous.is_empty(), "scale {scale}: {ambiguous:?}");
        }
    }

    /// The tables of scales 1..=8 hold `floor64(2^(k/2^s))`: below the true boundary, and
    /// the next `f64` above it (checked with exact big-integer powers).
    #[test]
    fn table_boundaries_are_exact_floors() {
        for scale in 1..=8u32 {
            for k in 0..1u32 << scale {
                let b = f64::from_bits(BOUNDARY_BITS[boundary_base(scale) + k as usize]);
                let expected = if k == 0 {
                    Ordering::Equal
                } else {
                    Ordering::Less
                };
                assert_eq!(reference::compare_mantissa(b, k, scale), expected);
                assert_eq!(
                    reference::compare_mantissa(b.next_up(), k, scale),
                    Ordering::Greater,
                    "scale {scale} k {k}"
                );
            }
        }
    }

    /// Above the table, sampled boundaries of scales 9..=11 are exact floors too.
    #[test]
    fn computed_boundaries_are_exact_floors() {
        for scale in 9..=11u32 {
            let n = 1u32 << scale;
            for k in [1u32, 3, 255, 256, 257, n / 2 + 1, n - 1] {
                let b = f64::from_bits((boundary_mantissa_bits(k, scale) & FRACTION) | ONE_BITS);
                assert_eq!(reference::compare_mantissa(b, k, scale), Ordering::Less);
                assert_eq!(
                    reference::compare_mantissa(b.next_up(), k, scale),
                    Ordering::Greater
                );
            }
        }
    }

    #[test]
    fn cells_hold_at_most_one_boundary() {
        for scale in 1..=8u32 {
            let n = 1usize << scale;
            for c in 0..4 * n {
                let start = f64::from_bits(ONE_BITS | ((c as u64) << (50 - scale)));
                let k = CELLS[cell_base(scale) + c] as usize;
                let b = |k: usize| f64::from_bits(BOUNDARY_BITS[boundary_base(scale) + k]);
                assert!(k == 0 || b(k) < start);
                assert!(b(k + 1) >= start);
            }
        }
    }

    #[test]
    fn lower_boundary_saturates_and_floors_subnormals() {
        assert_eq!(lower_boundary(1024, 0), f64::MAX);
        assert_eq!(lower_boundary(1023, 0), 2f64.powi(1023));
        assert_eq!(lower_boundary(-1074, 0), f64::from_bits(1));
        assert_eq!(lower_boundary(-1075, 0), 0.0);
        // 2^(-1074 + 1/2) is between the two smallest subnormals: floor is the smallest.
        assert_eq!(lower_boundary(-2 * 1074 + 1, 1), f64::from_bits(1));
        assert_eq!(lower_boundary(-2 * 1075 + 1, 1), 0.0);
        // The bucket of the smallest subnormal, at every scale.
        for scale in OTEL_MIN_SCALE..=OTEL_MAX_SCALE {
            let tiny = f64::from_bits(1);
            let i = index_of(tiny, scale);
            assert!(lower_boundary(i, scale) < tiny, "scale {scale}");
            assert!(tiny <= lower_boundary(i + 1, scale), "scale {scale}");
            let i = index_of(f64::MAX, scale);
            assert!(lower_boundary(i, scale) < f64::MAX);
            assert_eq!(lower_boundary(i + 1, scale), f64::MAX);
        }
    }
}
