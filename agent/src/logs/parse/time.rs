//! Timestamps in log lines: RFC 3339 / ISO 8601 date-times and numbers of seconds,
//! milliseconds, microseconds or nanoseconds since the epoch, to nanoseconds. The
//! calendar is `edge_schema::calendar`'s.

use edge_schema::calendar::{days_from_civil, days_in_month};

use super::Scalar;

pub(super) fn timestamp_of(raw: &Scalar<'_>) -> Option<i64> {
    match raw {
        Scalar::Str(s) => parse_timestamp(s),
        Scalar::Num(n) => epoch_to_ns(n),
        Scalar::Bool(_) => None,
    }
}

/// Nanoseconds since the epoch of a timestamp as logs write it:
///
/// - RFC 3339 / ISO 8601: `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.123+02:00`; the
///   fraction may have any number of digits (kept to the nanosecond) and be written with
///   `.` or `,`; the offset may be `Z`, `±hh:mm`, `±hhmm` or `±hh`, or be missing (UTC);
///   the date and time may be separated by `T` or a space (`2024-05-01 12:00:00.123`).
/// - A number of seconds, milliseconds, microseconds or nanoseconds since the epoch, told
///   apart by magnitude (`1714564800`, `1714564800123`, `1714564800.5`).
///
/// `None` for anything else (a date alone, a zone name such as `UTC`), an impossible
/// date (`2023-02-29`), or a time outside what `i64` nanoseconds can hold
/// (1677-09-21 to 2262-04-11). A leap second (`23:59:60`) reads as the next second.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.as_bytes().get(4) {
        Some(b'-') => parse_datetime(text),
        _ => epoch_to_ns(text),
    }
}

/// The `len` ASCII digits at `at` as a number (`len` is 2 or 4).
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let slice = b.get(at..at + len)?;
    slice.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn parse_datetime(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut i = 19;
    let mut nanos = 0i64;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(c - b'0');
            }
            i += 1;
        }
        let count = i - start;
        if count == 0 {
            return None;
        }
        for _ in count..9 {
            nanos *= 10;
        }
    }

    // The offset east of UTC, in seconds.
    if b.get(i) == Some(&b' ') && matches!(b.get(i + 1), Some(b'+' | b'-')) {
        i += 1;
    }
    let offset = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hours = digits(b, i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b':') {
                i += 1;
            }
            let minutes = if i < b.len() {
                let m = digits(b, i, 2)?;
                i += 2;
                m
            } else {
                0
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if sign == b'-' { -seconds } else { seconds }
        }
        Some(_) => return None,
    };
    if i != b.len() {
        return None;
    }

    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// A decimal number of seconds, milliseconds, microseconds or nanoseconds since the epoch,
/// told apart by magnitude: below 10^11 it is seconds (up to year 5138), below 10^14
/// milliseconds, below 10^17 microseconds, nanoseconds above. Exact to the nanosecond,
/// also in exponent notation (`1.7145648001e9`).
pub(super) fn epoch_to_ns(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) {
        return None;
    }
    let ns = match exponent {
        None => unsigned_epoch_to_ns(int_part, frac_part)?,
        Some(exponent) => {
            // Move the decimal point, then read the plain decimal.
            let exponent: i64 = exponent
                .strip_prefix('+')
                .unwrap_or(exponent)
                .parse()
                .ok()?;
            if exponent.abs() > 40 {
                return None;
            }
            let digits = format!("{int_part}{frac_part}");
            let len = i64::try_from(digits.len()).ok()?;
            // Where the decimal point falls in `digits`, from the left.
            let point = i64::try_from(int_part.len()).ok()? + exponent;
            if point >= len {
                let zeros = usize::try_from(point - len).ok()?;
                unsigned_epoch_to_ns(&format!("{digits}{}", "0".repeat(zeros)), "")?
            } else if point <= 0 {
                let zeros = usize::try_from(-point).ok()?;
                unsigned_epoch_to_ns("0", &format!("{}{digits}", "0".repeat(zeros)))?
            } else {
                let (whole, frac) = digits.split_at(usize::try_from(point).ok()?);
                unsigned_epoch_to_ns(whole, frac)?
            }
        }
    };
    i64::try_from(if negative { -ns } else { ns }).ok()
}

/// The nanoseconds of a non-negative epoch of digits `int_part.frac_part`.
fn unsigned_epoch_to_ns(int_part: &str, frac_part: &str) -> Option<i128> {
    // Leading zeros say nothing; past 30 digits it is no epoch, and the u128 below
    // cannot overflow.
    let int_part = int_part.trim_start_matches('0');
    if int_part.len() > 30 {
        return None;
    }
    let whole: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let (scale, scale_digits) = match whole {
        0..100_000_000_000 => (1_000_000_000u128, 9),
        100_000_000_000..100_000_000_000_000 => (1_000_000, 6),
        100_000_000_000_000..100_000_000_000_000_000 => (1_000, 3),
        _ => (1, 0),
    };
    // The fraction, to the nanosecond: digits past it are dropped, missing ones are 0.
    let mut frac = 0u128;
    for c in frac_part
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(scale_digits)
    {
        frac = frac * 10 + u128::from(c - b'0');
    }
    i128::try_from(whole.checked_mul(scale)?.checked_add(frac)?).ok()
}
