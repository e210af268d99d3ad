//! Per-source log parsers: one line in, one [`LogRecord`] out.
//!
//! A log source names its parser (`json`, `regex`, `logfmt` or `none`). Each parser
//! normalizes a line to the log document: the well-known fields (the message, the level,
//! when it happened, a trace id) are lifted out of whatever names the source gave them,
//! and every other field becomes a text attribute (nested JSON flattened as `a.b.c`).
//!
//! A line the source's parser cannot read is never dropped: it comes out as plain text
//! (`message` = the whole line) with `parse_failed` set, and its level guessed from the
//! text, as for the `none` parser.
//!
//! The JSON and logfmt paths are hand-written borrowed scanners (no regex, no
//! intermediate map): strings without escapes are sliced from the line, and only what
//! ends up in the record is allocated.

use std::borrow::Cow;
use std::str::FromStr;

use regex::Regex;

use crate::logs::record::{Level, LogRecord};

/// How a log source's lines are parsed: the `parser:` of its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParserKind {
    /// One JSON object per line.
    Json,
    /// A regular expression with named captures.
    Regex,
    /// `key=value key2="quoted value" flag` pairs.
    Logfmt,
    /// Plain text: the line is the message.
    None,
}

impl ParserKind {
    /// The name the config uses for this parser (`json`, `regex`, `logfmt`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            ParserKind::Json => "json",
            ParserKind::Regex => "regex",
            ParserKind::Logfmt => "logfmt",
            ParserKind::None => "none",
        }
    }
}

impl FromStr for ParserKind {
    type Err = ParseConfigError;

    /// The parser a config name stands for (exact, lower-case names).
    fn from_str(name: &str) -> Result<ParserKind, ParseConfigError> {
        match name {
            "json" => Ok(ParserKind::Json),
            "regex" => Ok(ParserKind::Regex),
            "logfmt" => Ok(ParserKind::Logfmt),
            "none" => Ok(ParserKind::None),
            _ => Err(ParseConfigError::UnknownParser {
                name: name.to_owned(),
            }),
        }
    }
}

/// Why a parser could not be built from a log source's config.
#[derive(Debug, thiserror::Error)]
pub enum ParseConfigError {
    /// The `parser:` name is not one of the known parsers.
    #[error("unknown log parser `{name}`: expected one of json, regex, logfmt, none")]
    UnknownParser {
        /// The name as configured.
        name: String,
    },
    /// A `regex` parser was configured without a `pattern`.
    #[error("the regex log parser needs a `pattern` with named captures, and none was given")]
    MissingPattern,
    /// The `pattern` of a `regex` parser does not compile.
    #[error("the regex log parser's pattern `{pattern}` does not compile: {reason}")]
    BadPattern {
        /// The pattern as configured.
        pattern: String,
        /// What the regex compiler said.
        reason: regex::Error,
    },
    /// The `pattern` of a `regex` parser compiles but names no capture group.
    #[error(
        "the regex log parser's pattern `{pattern}` has no named capture group: name the fields, \
         e.g. `(?P<level>\\w+) (?P<message>.*)`"
    )]
    NoNamedCaptures {
        /// The pattern as configured.
        pattern: String,
    },
}

/// A log source's parser, built once from its config and shared by every line.
#[derive(Clone, Debug)]
pub struct Parser {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Json,
    Regex {
        regex: Regex,
        /// Each named group: its index and its name.
        names: Box<[(usize, Box<str>)]>,
    },
    Logfmt,
    None,
}

impl Parser {
    /// Builds the parser of `kind`. A `regex` parser needs `pattern`, which must compile
    /// and name at least one capture group; the other kinds ignore `pattern`.
    pub fn new(kind: ParserKind, pattern: Option<&str>) -> Result<Parser, ParseConfigError> {
        let inner = match kind {
            ParserKind::Json => Inner::Json,
            ParserKind::Logfmt => Inner::Logfmt,
            ParserKind::None => Inner::None,
            ParserKind::Regex => {
                let pattern = pattern.ok_or(ParseConfigError::MissingPattern)?;
                let regex = Regex::new(pattern).map_err(|reason| ParseConfigError::BadPattern {
                    pattern: pattern.to_owned(),
                    reason,
                })?;
                let names: Box<[(usize, Box<str>)]> = regex
                    .capture_names()
                    .enumerate()
                    .filter_map(|(i, name)| name.map(|n| (i, Box::from(n))))
                    .collect();
                if names.is_empty() {
                    return Err(ParseConfigError::NoNamedCaptures {
                        pattern: pattern.to_owned(),
                    });
                }
                Inner::Regex { regex, names }
            }
        };
        Ok(Parser { inner })
    }

    /// Which kind of parser this is.
    pub fn kind(&self) -> ParserKind {
        match self.inner {
            Inner::Json => ParserKind::Json,
            Inner::Regex { .. } => ParserKind::Regex,
            Inner::Logfmt => ParserKind::Logfmt,
            Inner::None => ParserKind::None,
        }
    }

    /// Parses one line (without its line ending) read at `observed_ns` (nanoseconds
    /// since the epoch). Never fails: a line the parser cannot read comes back as plain
    /// text with `parse_failed` set.
    pub fn parse(&self, line: &str, observed_ns: i64) -> LogRecord {
        let fields = match &self.inner {
            Inner::None => return plain(line, observed_ns, false),
            Inner::Json => json_fields(line),
            Inner::Logfmt => logfmt_fields(line),
            Inner::Regex { regex, names } => regex_fields(regex, names, line),
        };
        match fields {
            Some(fields) => fields.finish(observed_ns),
            None => plain(line, observed_ns, true),
        }
    }
}

/// The record of a line kept as text: the whole line is the message.
fn plain(line: &str, observed_ns: i64, parse_failed: bool) -> LogRecord {
    LogRecord {
        observed_ns,
        level: level_from_text(line),
        message: line.to_owned(),
        parse_failed,
        ..LogRecord::default()
    }
}

// ---------------------------------------------------------------------------------------
// Field normalization, shared by the json, logfmt and regex parsers.

/// The fields of the log document that are lifted out of a parsed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Message,
    Level,
    Timestamp,
    TraceId,
}

/// The role a field name plays (case-insensitive), and its rank among the names of that
/// role: when a line has several (`msg` and `log`), the lowest rank is lifted and the
/// others stay attributes.
fn classify(key: &str) -> Option<(Role, u8)> {
    // By length first: most keys are rejected without a comparison.
    let candidates: &[(&str, Role, u8)] = match key.len() {
        2 => &[("ts", Role::Timestamp, 3)],
        3 => &[
            ("msg", Role::Message, 1),
            ("log", Role::Message, 2),
            ("lvl", Role::Level, 2),
        ],
        4 => &[("time", Role::Timestamp, 2)],
        5 => &[("level", Role::Level, 0)],
        7 => &[("message", Role::Message, 0), ("traceid", Role::TraceId, 1)],
        8 => &[
            ("severity", Role::Level, 1),
            ("loglevel", Role::Level, 3),
            ("trace_id", Role::TraceId, 0),
            ("trace.id", Role::TraceId, 2),
        ],
        9 => &[
            ("timestamp", Role::Timestamp, 1),
            ("log.level", Role::Level, 4),
        ],
        10 => &[("@timestamp", Role::Timestamp, 0)],
        _ => return None,
    };
    candidates
        .iter()
        .find(|(name, _, _)| key.eq_ignore_ascii_case(name))
        .map(|&(_, role, rank)| (role, rank))
}

/// A field's value as the line wrote it.
#[derive(Debug)]
enum Scalar<'a> {
    /// A string, unquoted and unescaped.
    Str(Cow<'a, str>),
    /// A JSON number, as written.
    Num(&'a str),
    /// A JSON boolean.
    Bool(bool),
}

impl Scalar<'_> {
    fn into_text(self) -> String {
        match self {
            Scalar::Str(s) => s.into_owned(),
            Scalar::Num(n) => n.to_owned(),
            Scalar::Bool(b) => if b { "true" } else { "false" }.to_owned(),
        }
    }
}

/// A field lifted into the record, kept with its name and raw value in case a
/// better-ranked name turns up and it goes back to the attributes.
#[derive(Debug)]
struct Lifted<'a, T> {
    rank: u8,
    key: Cow<'a, str>,
    raw: Scalar<'a>,
    value: T,
}

impl<T> Lifted<'_, T> {
    fn into_attribute(self) -> (String, String) {
        (self.key.into_owned(), self.raw.into_text())
    }
}

/// Offers a field for a lifted slot: it takes the slot if it outranks the holder (which
/// then becomes an attribute), and is an attribute otherwise.
fn offer<'a, T>(
    slot: &mut Option<Lifted<'a, T>>,
    attributes: &mut Vec<(String, String)>,
    new: Lifted<'a, T>,
) {
    if slot.as_ref().is_some_and(|held| held.rank <= new.rank) {
        attributes.push(new.into_attribute());
    } else if let Some(old) = slot.replace(new) {
        attributes.push(old.into_attribute());
    }
}

/// The normalized fields of a line, borrowed from it where possible.
#[derive(Debug, Default)]
struct Fields<'a> {
    message: Option<Lifted<'a, ()>>,
    level: Option<Lifted<'a, Level>>,
    timestamp: Option<Lifted<'a, i64>>,
    trace_id: Option<Lifted<'a, ()>>,
    attributes: Vec<(String, String)>,
}

impl<'a> Fields<'a> {
    /// A field that is an attribute whatever its name.
    fn attribute(&mut self, key: Cow<'a, str>, value: String) {
        self.attributes.push((key.into_owned(), value));
    }

    /// A scalar field: lifted if its name is well known and its value fits the role, an
    /// attribute otherwise (a `level` of `verbose` is kept, not lost).
    fn field(&mut self, key: Cow<'a, str>, raw: Scalar<'a>) {
        let Some((role, rank)) = classify(&key) else {
            let value = raw.into_text();
            self.attribute(key, value);
            return;
        };
        let attributes = &mut self.attributes;
        match role {
            Role::Message => {
                let new = Lifted {
                    rank,
                    key,
                    raw,
                    value: (),
                };
                offer(&mut self.message, attributes, new);
            }
            Role::Level => match level_of(&raw) {
                Some(value) => offer(
                    &mut self.level,
                    attributes,
                    Lifted {
                        rank,
                        key,
                        raw,
                        value,
                    },
                ),
                None => attributes.push((key.into_owned(), raw.into_text())),
            },
            Role::Timestamp => match timestamp_of(&raw) {
                Some(value) => {
                    offer(
                        &mut self.timestamp,
                        attributes,
                        Lifted {
                            rank,
                            key,
                            raw,
                            value,
                        },
                    );
                }
                None => attributes.push((key.into_owned(), raw.into_text())),
            },
            Role::TraceId => {
                let usable = match &raw {
                    Scalar::Str(s) => !s.trim().is_empty(),
                    Scalar::Num(_) => true,
                    Scalar::Bool(_) => false,
                };
                if usable {
                    let new = Lifted {
                        rank,
                        key,
                        raw,
                        value: (),
                    };
                    offer(&mut self.trace_id, attributes, new);
                } else {
                    attributes.push((key.into_owned(), raw.into_text()));
                }
            }
        }
    }

    fn finish(self, observed_ns: i64) -> LogRecord {
        LogRecord {
            timestamp_ns: self.timestamp.map(|t| t.value),
            observed_ns,
            level: self.level.map_or(Level::Unknown, |l| l.value),
            message: self.message.map_or_else(String::new, |m| m.raw.into_text()),
            trace_id: self.trace_id.map(|t| t.raw.into_text()),
            attributes: self.attributes,
            parse_failed: false,
            truncated: false,
        }
    }
}

/// The level a level field states: a word, or a numeric level of the pino/bunyan kind
/// (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal).
fn level_of(raw: &Scalar<'_>) -> Option<Level> {
    let level = match raw {
        Scalar::Str(s) => Level::parse(s),
        Scalar::Num(n) => match *n {
            "10" => Level::Trace,
            "20" => Level::Debug,
            "30" => Level::Info,
            "40" => Level::Warn,
            "50" => Level::Error,
            "60" => Level::Fatal,
            _ => Level::Unknown,
        },
        Scalar::Bool(_) => Level::Unknown,
    };
    (level != Level::Unknown).then_some(level)
}

fn timestamp_of(raw: &Scalar<'_>) -> Option<i64> {
    match raw {
        Scalar::Str(s) => parse_timestamp(s),
        Scalar::Num(n) => epoch_to_ns(n),
        Scalar::Bool(_) => None,
    }
}

// ---------------------------------------------------------------------------------------
// Timestamps.

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

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
///
/// Counts in 400-year eras that start on 1 March, so the leap day is the last day of its
/// year: an era is 146,097 days, and a day of the year follows from the month by the
/// 153-days-per-5-months rule of the March-based calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400); // 0..=399
    let month_from_march = (month + 9) % 12; // March = 0 … February = 11
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719,468 days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// A decimal number of seconds, milliseconds, microseconds or nanoseconds since the epoch,
/// told apart by magnitude: below 10^11 it is seconds (up to year 5138), below 10^14
/// milliseconds, below 10^17 microseconds, nanoseconds above. Exact to the nanosecond,
/// also in exponent notation (`1.7145648001e9`).
fn epoch_to_ns(text: &str) -> Option<i64> {
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

// ---------------------------------------------------------------------------------------
// Level from free text.

/// The number of leading bytes [`level_from_text`] looks at.
const LEVEL_WINDOW: usize = 64;

/// The level a line of free text states near its start, `Unknown` if none.
///
/// Looks at the words starting in the first 64 bytes and takes the first that names a
/// level (see [`Level::parse`]) and is written as a level, not as prose: upper case
/// (`INFO`, `WARN`), bracketed (`[warn]`, `<error>`, `(debug)`), followed by a colon
/// (`Error:`), or the value of a level key (`level=error`, `"severity":"warning"`).
/// A single letter counts only bracketed or as a key's value, and a word is only whole
/// letters, digits and `_` between other characters, so `E0501` or `ERROR_CODE` do not
/// count.
pub fn level_from_text(text: &str) -> Level {
    let b = text.as_bytes();
    let window = b.len().min(LEVEL_WINDOW);
    let mut i = 0;
    // The end of the previous word, if it was a level key (`level`, `severity`…).
    let mut previous_key_end: Option<usize> = None;
    while i < window {
        if !is_word_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        // "information" is the longest level word: stop looking at 12 bytes.
        let limit = b.len().min(start + 12);
        while i < limit && is_word_byte(b[i]) {
            i += 1;
        }
        let key_end = previous_key_end.take();
        if i == limit && i < b.len() && is_word_byte(b[i]) {
            while i < window && is_word_byte(b[i]) {
                i += 1;
            }
            continue;
        }
        let word = &b[start..i];
        // Level words and level keys begin with a letter.
        if !word[0].is_ascii_alphabetic() {
            continue;
        }
        let before = start.checked_sub(1).map(|j| b[j]);
        let after = b.get(i).copied();
        // `[warn]`, `<warn>`, `(warn)`, and the end of `[core:warn]`, `[main/warn]`.
        let bracketed = matches!(
            (before, after),
            (Some(b'[' | b':' | b'/'), Some(b']'))
                | (Some(b'<'), Some(b'>'))
                | (Some(b'('), Some(b')'))
        );
        let decorated = bracketed
            || key_end.is_some_and(|end| is_key_separator(&b[end..start]))
            || (word.len() >= 3
                && (word.iter().all(u8::is_ascii_uppercase)
                    || (after == Some(b':') && word.iter().all(u8::is_ascii_alphabetic))));
        if decorated {
            // The word is ASCII, so this never fails.
            if let Ok(word) = std::str::from_utf8(word) {
                let level = Level::parse(word);
                if level != Level::Unknown {
                    return level;
                }
            }
        }
        if is_level_key(word) {
            previous_key_end = Some(i);
        }
    }
    Level::Unknown
}

/// Letters, digits and `_`: the bytes of a word.
fn is_word_byte(c: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut table = [false; 256];
        let mut c = 0;
        while c < 256 {
            let b = c as u8;
            table[c] = b.is_ascii_alphanumeric() || b == b'_';
            c += 1;
        }
        table
    };
    TABLE[usize::from(c)]
}

fn is_level_key(word: &[u8]) -> bool {
    matches!(word.len(), 3 | 5 | 8 | 9)
        && ["level", "lvl", "severity", "loglevel", "log_level"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
}

/// Whether the bytes between a key and a value are a key-value separator: `=`, `: `,
/// `":"`, `='`.
fn is_key_separator(between: &[u8]) -> bool {
    !between.is_empty()
        && between.len() <= 4
        && between.iter().any(|&c| c == b'=' || c == b':')
        && between
            .iter()
            .all(|&c| matches!(c, b'=' | b':' | b'"' | b'\'' | b' '))
}

// ---------------------------------------------------------------------------------------
// JSON.

/// The deepest nesting of objects and arrays a JSON line may have (as serde_json).
const MAX_DEPTH: u32 = 128;

/// The fields of a line holding one JSON object, `None` if it is anything else.
fn json_fields(line: &str) -> Option<Fields<'_>> {
    let mut json = Json {
        text: line,
        bytes: line.as_bytes(),
        pos: 0,
    };
    json.skip_whitespace();
    if !json.eat(b'{') {
        return None;
    }
    let mut fields = Fields::default();
    json.object(None, &mut fields, 1).ok()?;
    json.skip_whitespace();
    (json.pos == json.bytes.len()).then_some(fields)
}

/// The line is not well-formed JSON.
#[derive(Debug)]
struct Malformed;

type JsonResult<T> = Result<T, Malformed>;

/// A cursor over a JSON text that checks it against RFC 8259 as it goes.
struct Json<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Json<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, c: u8) -> JsonResult<()> {
        if self.eat(c) { Ok(()) } else { Err(Malformed) }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The members of an object whose `{` was just read, as fields named
    /// `prefix.key`. Returns whether the object had any member.
    fn object(
        &mut self,
        prefix: Option<&str>,
        fields: &mut Fields<'a>,
        depth: u32,
    ) -> JsonResult<bool> {
        self.skip_whitespace();
        if self.eat(b'}') {
            return Ok(false);
        }
        loop {
            self.skip_whitespace();
            self.expect(b'"')?;
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let key = match prefix {
                None => key,
                Some(prefix) => {
                    let mut full = String::with_capacity(prefix.len() + 1 + key.len());
                    full.push_str(prefix);
                    full.push('.');
                    full.push_str(&key);
                    Cow::Owned(full)
                }
            };
            self.member(key, fields, depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(true);
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// The value of an object member named `key`.
    fn member(&mut self, key: Cow<'a, str>, fields: &mut Fields<'a>, depth: u32) -> JsonResult<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let value = self.string()?;
                fields.field(key, Scalar::Str(value));
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(Malformed);
                }
                self.pos += 1;
                if !self.object(Some(&key), fields, depth + 1)? {
                    fields.attribute(key, "{}".to_owned());
                }
            }
            Some(b'[') => {
                let start = self.pos;
                self.skip_value(depth)?;
                fields.attribute(key, compact(&self.text[start..self.pos]));
            }
            Some(b't') => {
                self.literal("true")?;
                fields.field(key, Scalar::Bool(true));
            }
            Some(b'f') => {
                self.literal("false")?;
                fields.field(key, Scalar::Bool(false));
            }
            // A null field carries nothing, and is left out.
            Some(b'n') => self.literal("null")?,
            _ => {
                let number = self.number()?;
                fields.field(key, Scalar::Num(number));
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &str) -> JsonResult<()> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// A number, as written: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> JsonResult<&'a str> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(Malformed),
        }
        if self.eat(b'.') {
            self.require_digits()?;
        }
        let mut exponent = false;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digits()?;
            exponent = true;
        }
        let number = &self.text[start..self.pos];
        // Like serde_json, refuse a number too large for an f64 (`1e400`).
        if (exponent || number.len() > 300) && !number.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(Malformed);
        }
        Ok(number)
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> JsonResult<()> {
        let start = self.pos;
        self.skip_digits();
        if self.pos > start {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// The rest of a string whose `"` was just read, unescaped; borrowed from the line
    /// when it has no escape.
    fn string(&mut self) -> JsonResult<Cow<'a, str>> {
        let start = self.pos;
        let stop = self.string_segment()?;
        if stop == b'"' {
            let value = &self.text[start..self.pos];
            self.pos += 1;
            return Ok(Cow::Borrowed(value));
        }
        let mut owned = String::with_capacity(self.pos - start + 16);
        owned.push_str(&self.text[start..self.pos]);
        loop {
            // At a backslash.
            self.pos += 1;
            self.escape(&mut owned)?;
            let segment = self.pos;
            let stop = self.string_segment()?;
            owned.push_str(&self.text[segment..self.pos]);
            if stop == b'"' {
                self.pos += 1;
                return Ok(Cow::Owned(owned));
            }
        }
    }

    /// Moves to the next `"` or `\` of a string and returns it; control characters
    /// are not allowed in a string.
    fn string_segment(&mut self) -> JsonResult<u8> {
        let rest = &self.bytes[self.pos..];
        let at = memchr::memchr2(b'"', b'\\', rest).ok_or(Malformed)?;
        if rest[..at].iter().any(|&c| c < 0x20) {
            return Err(Malformed);
        }
        self.pos += at;
        Ok(rest[at])
    }

    /// One escape after its backslash, appended to `out`.
    fn escape(&mut self, out: &mut String) -> JsonResult<()> {
        let c = self.peek().ok_or(Malformed)?;
        self.pos += 1;
        let unescaped = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low one.
                        if !(self.eat(b'\\') && self.eat(b'u')) {
                            return Err(Malformed);
                        }
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Malformed);
                        }
                        0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Malformed),
                    _ => unit,
                };
                char::from_u32(code).ok_or(Malformed)?
            }
            _ => return Err(Malformed),
        };
        out.push(unescaped);
        Ok(())
    }

    fn hex4(&mut self) -> JsonResult<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Malformed)?;
        let mut value = 0;
        for &c in digits {
            let digit = char::from(c).to_digit(16).ok_or(Malformed)?;
            value = value * 16 + digit;
        }
        self.pos += 4;
        Ok(value)
    }

    /// Checks and skips any value (arrays, and what is in them).
    fn skip_value(&mut self, depth: u32) -> JsonResult<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string()?;
            }
            Some(open @ (b'[' | b'{')) => {
                if depth >= MAX_DEPTH {
                    return Err(Malformed);
                }
                self.pos += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                self.skip_whitespace();
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    if open == b'{' {
                        self.expect(b'"')?;
                        self.string()?;
                        self.skip_whitespace();
                        self.expect(b':')?;
                        self.skip_whitespace();
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_whitespace();
                    if self.eat(b',') {
                        continue;
                    }
                    return self.expect(close);
                }
            }
            Some(b't') => self.literal("true")?,
            Some(b'f') => self.literal("false")?,
            Some(b'n') => self.literal("null")?,
            _ => {
                self.number()?;
            }
        }
        Ok(())
    }
}

/// Well-formed JSON text without the whitespace between tokens.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// logfmt.

/// The fields of a logfmt line, `None` if it has no `key=value` pair at all.
///
/// Pairs are separated by whitespace; a value may be double-quoted with `\"`, `\\`,
/// `\n`, `\r`, `\t` escapes (an unterminated quote runs to the end of the line); a key
/// without `=` is a flag, `"true"`. An `=value` without a key is skipped.
fn logfmt_fields(line: &str) -> Option<Fields<'_>> {
    let b = line.as_bytes();
    let mut fields = Fields::default();
    let mut pairs = false;
    let mut i = 0;
    // Every index below is at an ASCII byte or the end, so slicing `line` is on char
    // boundaries.
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let key_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        let key = &line[key_start..i];
        if i < b.len() && b[i] == b'=' {
            i += 1;
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                logfmt_quoted(line, &mut i)
            } else {
                let value_start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                Cow::Borrowed(&line[value_start..i])
            };
            if !key.is_empty() {
                fields.field(Cow::Borrowed(key), Scalar::Str(value));
                pairs = true;
            }
        } else {
            fields.attribute(Cow::Borrowed(key), "true".to_owned());
        }
    }
    pairs.then_some(fields)
}

/// The rest of a quoted logfmt value whose `"` is just before `*i`; moves `*i` past the
/// closing quote.
fn logfmt_quoted<'a>(line: &'a str, i: &mut usize) -> Cow<'a, str> {
    let b = line.as_bytes();
    let start = *i;
    let Some(at) = memchr::memchr2(b'"', b'\\', &b[start..]) else {
        *i = b.len();
        return Cow::Borrowed(&line[start..]);
    };
    if b[start + at] == b'"' {
        *i = start + at + 1;
        return Cow::Borrowed(&line[start..start + at]);
    }
    let mut out = String::with_capacity(at + 16);
    let mut j = start;
    loop {
        let Some(at) = memchr::memchr2(b'"', b'\\', &b[j..]) else {
            out.push_str(&line[j..]);
            *i = b.len();
            return Cow::Owned(out);
        };
        out.push_str(&line[j..j + at]);
        j += at;
        if b[j] == b'"' {
            *i = j + 1;
            return Cow::Owned(out);
        }
        // A backslash: the escaped character is ASCII for the known escapes; anything
        // else is kept as written, backslash included.
        match b.get(j + 1) {
            Some(b'"') => out.push('"'),
            Some(b'\\') => out.push('\\'),
            Some(b'n') => out.push('\n'),
            Some(b'r') => out.push('\r'),
            Some(b't') => out.push('\t'),
            _ => {
                out.push('\\');
                j += 1;
                continue;
            }
        }
        j += 2;
    }
}

// ---------------------------------------------------------------------------------------
// regex.

fn regex_fields<'a>(
    regex: &'a Regex,
    names: &'a [(usize, Box<str>)],
    line: &'a str,
) -> Option<Fields<'a>> {
    let captures = regex.captures(line)?;
    let mut fields = Fields::default();
    for (index, name) in names {
        if let Some(m) = captures.get(*index) {
            fields.field(
                Cow::Borrowed(&**name),
                Scalar::Str(Cow::Borrowed(m.as_str())),
            );
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBSERVED: i64 = 42;
    /// 2024-05-01T12:00:00Z.
    const MAY_1: i64 = 1_714_564_800;

    fn parser(kind: ParserKind) -> Parser {
        Parser::new(kind, None).expect("a parser without a pattern builds")
    }

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn failed(line: &str, level: Level) -> LogRecord {
        LogRecord {
            observed_ns: OBSERVED,
            level,
            message: line.to_owned(),
            parse_failed: true,
            ..LogRecord::default()
        }
    }

    // --- config -------------------------------------------------------------------------

    #[test]
    fn parser_kinds_round_trip_their_names() {
        for kind in [
            ParserKind::Json,
            ParserKind::Regex,
            ParserKind::Logfmt,
            ParserKind::None,
        ] {
            assert_eq!(kind.name().parse::<ParserKind>().ok(), Some(kind));
        }
        let err = "yaml".parse::<ParserKind>().expect_err("yaml is no parser");
        assert!(err.to_string().contains("`yaml`"), "{err}");
        assert!("JSON".parse::<ParserKind>().is_err());
    }

    #[test]
    fn regex_parser_config_errors_say_what_is_wrong() {
        let err = Parser::new(ParserKind::Regex, None).expect_err("needs a pattern");
        assert!(matches!(err, ParseConfigError::MissingPattern));
        assert!(err.to_string().contains("needs a `pattern`"), "{err}");

        let err = Parser::new(ParserKind::Regex, Some("(?P<level>[a-z")).expect_err("bad");
        assert!(matches!(err, ParseConfigError::BadPattern { .. }));
        let text = err.to_string();
        assert!(
            text.contains("`(?P<level>[a-z`") && text.contains("does not compile"),
            "{text}"
        );

        let err = Parser::new(ParserKind::Regex, Some(r"^(\w+) (.*)$")).expect_err("unnamed");
        assert!(matches!(err, ParseConfigError::NoNamedCaptures { .. }));
        assert!(err.to_string().contains(r"`^(\w+) (.*)$`"), "{err}");
    }

    #[test]
    fn parsers_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Parser>();
    }

    #[test]
    fn other_kinds_ignore_a_pattern() {
        let p = Parser::new(ParserKind::Json, Some("(?P<x>.)")).expect("builds");
        assert_eq!(p.kind(), ParserKind::Json);
        let p = Parser::new(ParserKind::Regex, Some("(?P<x>.)")).expect("builds");
        assert_eq!(p.kind(), ParserKind::Regex);
    }

    // --- json ---------------------------------------------------------------------------

    #[test]
    fn json_lifts_well_known_fields_and_keeps_the_rest_in_order() {
        let line = r#"{"ts":"2024-05-01T12:00:00.5Z","level":"WARN","msg":"slow tick","trace_id":"4bf92f3577b34da6","tick_ms":57.5,"zone":"eu-1","players":12,"ok":false,"tags":["a", "b" , 3],"net":{"rtt":{"p99":31}}}"#;
        let r = parser(ParserKind::Json).parse(line, OBSERVED);
        assert_eq!(
            r,
            LogRecord {
                timestamp_ns: Some(MAY_1 * 1_000_000_000 + 500_000_000),
                observed_ns: OBSERVED,
                level: Level::Warn,
                message: "slow tick".into(),
                trace_id: Some("4bf92f3577b34da6".into()),
                attributes: attrs(&[
                    ("tick_ms", "57.5"),
                    ("zone", "eu-1"),
                    ("players", "12"),
                    ("ok", "false"),
                    ("tags", r#"["a","b",3]"#),
                    ("net.rtt.p99", "31"),
                ]),
                parse_failed: false,
                truncated: false,
            }
        );
    }

    #[test]
    fn json_well_known_keys_are_case_insensitive() {
        let line =
            r#"{"Message":"m","LEVEL":"error","@timestamp":"2024-05-01T12:00:00Z","traceId":"t1"}"#;
        let r = parser(ParserKind::Json).parse(line, OBSERVED);
        assert_eq!(r.message, "m");
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.timestamp_ns, Some(MAY_1 * 1_000_000_000));
        assert_eq!(r.trace_id.as_deref(), Some("t1"));
        assert!(r.attributes.is_empty());

        for (line, level) in [
            (r#"{"severity":"critical"}"#, Level::Fatal),
            (r#"{"lvl":"dbg"}"#, Level::Debug),
            (r#"{"loglevel":"Information"}"#, Level::Info),
            (r#"{"log":{"level":"warning"}}"#, Level::Warn),
            (r#"{"log.level":"trace"}"#, Level::Trace),
        ] {
            assert_eq!(
                parser(ParserKind::Json).parse(line, 0).level,
                level,
                "{line}"
            );
        }
        for line in [r#"{"TIME":1714564800}"#, r#"{"timestamp":1714564800}"#] {
            let r = parser(ParserKind::Json).parse(line, 0);
            assert_eq!(r.timestamp_ns, Some(MAY_1 * 1_000_000_000), "{line}");
        }
        for line in [r#"{"trace.id":"abc"}"#, r#"{"trace":{"id":"abc"}}"#] {
            let r = parser(ParserKind::Json).parse(line, 0);
            assert_eq!(r.trace_id.as_deref(), Some("abc"), "{line}");
            assert!(r.attributes.is_empty(), "{line}");
        }
    }

    #[test]
    fn json_message_keys_by_preference_and_the_others_stay() {
        let p = parser(ParserKind::Json);
        let r = p.parse(r#"{"log":"from log","msg":"from msg"}"#, 0);
        assert_eq!(r.message, "from msg");
        assert_eq!(r.attributes, attrs(&[("log", "from log")]));

        let r = p.parse(r#"{"message":"first","message":"again"}"#, 0);
        assert_eq!(r.message, "first");
        assert_eq!(r.attributes, attrs(&[("message", "again")]));

        let r = p.parse(r#"{"msg":42}"#, 0);
        assert_eq!(r.message, "42");

        // An object under a message key is no message: it is flattened.
        let r = p.parse(r#"{"message":{"text":"hi"}}"#, 0);
        assert_eq!(r.message, "");
        assert_eq!(r.attributes, attrs(&[("message.text", "hi")]));
    }

    #[test]
    fn json_without_a_message_key_has_an_empty_message() {
        let r = parser(ParserKind::Json).parse(r#"{"event":"join","player":"p1"}"#, OBSERVED);
        assert_eq!(r.message, "");
        assert!(!r.parse_failed);
        assert_eq!(r.attributes, attrs(&[("event", "join"), ("player", "p1")]));
        let r = parser(ParserKind::Json).parse(" {} ", OBSERVED);
        assert_eq!(
            r,
            LogRecord {
                observed_ns: OBSERVED,
                ..LogRecord::default()
            }
        );
    }

    #[test]
    fn json_flattens_nested_objects_with_dots() {
        let line = r#"{"a":{"b":{"c":1,"d":"x"},"e":[{"f":1}],"g":{}},"h":null,"i":{"j":null}}"#;
        let r = parser(ParserKind::Json).parse(line, 0);
        assert_eq!(
            r.attributes,
            attrs(&[
                ("a.b.c", "1"),
                ("a.b.d", "x"),
                ("a.e", r#"[{"f":1}]"#),
                ("a.g", "{}")
            ])
        );
    }

    #[test]
    fn json_values_as_text() {
        let line = r#"{"s":"a \"q\" \\ \/ \n\t","n":-1.25e+3,"big":123456789012345678901234567890,"t":true,"f":false,"arr":[ 1 , "x y" , [ ] , { "k" : null } ]}"#;
        let r = parser(ParserKind::Json).parse(line, 0);
        assert_eq!(
            r.attributes,
            attrs(&[
                ("s", "a \"q\" \\ / \n\t"),
                ("n", "-1.25e+3"),
                ("big", "123456789012345678901234567890"),
                ("t", "true"),
                ("f", "false"),
                ("arr", r#"[1,"x y",[],{"k":null}]"#),
            ])
        );
    }

    #[test]
    fn json_unknown_levels_stay_as_attributes_and_numeric_levels_map() {
        let p = parser(ParserKind::Json);
        let r = p.parse(r#"{"level":"verbose"}"#, 0);
        assert_eq!(r.level, Level::Unknown);
        assert_eq!(r.attributes, attrs(&[("level", "verbose")]));
        for (n, level) in [
            (10, Level::Trace),
            (20, Level::Debug),
            (30, Level::Info),
            (40, Level::Warn),
            (50, Level::Error),
            (60, Level::Fatal),
        ] {
            let r = p.parse(&format!(r#"{{"level":{n},"msg":"m"}}"#), 0);
            assert_eq!(r.level, level, "{n}");
            assert!(r.attributes.is_empty());
        }
        let r = p.parse(r#"{"level":35}"#, 0);
        assert_eq!(
            (r.level, r.attributes),
            (Level::Unknown, attrs(&[("level", "35")]))
        );
        let r = p.parse(r#"{"level":true}"#, 0);
        assert_eq!(
            (r.level, r.attributes),
            (Level::Unknown, attrs(&[("level", "true")]))
        );
    }

    #[test]
    fn json_timestamps_as_numbers_by_magnitude() {
        let p = parser(ParserKind::Json);
        let s = MAY_1 * 1_000_000_000;
        for (ts, want) in [
            ("1714564800", s),
            ("1714564800.25", s + 250_000_000),
            ("1714564800123", s + 123_000_000),
            ("1714564800123456", s + 123_456_000),
            ("1714564800123456789", s + 123_456_789),
            ("1.7145648e9", s),
            ("1.714564800123e12", s + 123_000_000),
            ("0", 0),
            ("-1.5", -1_500_000_000),
        ] {
            let r = p.parse(&format!(r#"{{"ts":{ts}}}"#), 0);
            assert_eq!(r.timestamp_ns, Some(want), "{ts}");
            assert!(r.attributes.is_empty(), "{ts}");
        }
        // Epoch numbers written as strings are read too.
        let r = p.parse(r#"{"time":"1714564800123"}"#, 0);
        assert_eq!(r.timestamp_ns, Some(s + 123_000_000));
        // What is no time stays an attribute.
        let r = p.parse(r#"{"time":"yesterday","ts":1e300}"#, 0);
        assert_eq!(r.timestamp_ns, None);
        assert_eq!(
            r.attributes,
            attrs(&[("time", "yesterday"), ("ts", "1e300")])
        );
    }

    #[test]
    fn json_empty_trace_ids_are_not_lifted() {
        let r = parser(ParserKind::Json).parse(r#"{"trace_id":"","traceId":"t2"}"#, 0);
        assert_eq!(r.trace_id.as_deref(), Some("t2"));
        assert_eq!(r.attributes, attrs(&[("trace_id", "")]));
    }

    #[test]
    fn json_that_is_not_one_object_is_kept_as_text() {
        let p = parser(ParserKind::Json);
        for line in [
            r#"{"level":"error","msg":"cut"#,
            r#"{"a":1,}"#,
            r#"{'a':1}"#,
            r#"{a:1}"#,
            r#"{"a":1} trailing"#,
            r#"{"a":1}{"b":2}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":tru}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            "{\"a\":\"raw\ttab\"}",
            r#"[{"a":1}]"#,
            r#""just a string""#,
            "42",
            "null",
            "",
            "    ",
            "plain text ERROR here",
        ] {
            let r = p.parse(line, OBSERVED);
            assert_eq!(r, failed(line, level_from_text(line)), "{line:?}");
        }
        let line = r#"{"level":"error","msg":"cut"#;
        assert_eq!(p.parse(line, 0).level, Level::Error);
    }

    #[test]
    fn json_unicode_and_escapes() {
        let line = r#"{"msg":"héllo 世界 😀","k\u00e9y":"caf\u00e9 \ud83d\ude00","名前":"値"}"#;
        let r = parser(ParserKind::Json).parse(line, 0);
        assert_eq!(r.message, "héllo 世界 😀");
        assert_eq!(r.attributes, attrs(&[("kéy", "café 😀"), ("名前", "値")]));
    }

    #[test]
    fn json_very_long_lines_and_deep_nesting() {
        let long = "x".repeat(1 << 20);
        let line = format!(r#"{{"msg":"{long}","n":1}}"#);
        let r = parser(ParserKind::Json).parse(&line, 0);
        assert_eq!(r.message.len(), 1 << 20);
        assert_eq!(r.attributes, attrs(&[("n", "1")]));

        let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let r = parser(ParserKind::Json).parse(&deep(100), 0);
        assert!(!r.parse_failed);
        assert_eq!(r.attributes[0].0.split('.').count(), 100);
        // Too deep to be a log line: kept as text, without blowing the stack.
        let line = deep(100_000);
        assert!(parser(ParserKind::Json).parse(&line, 0).parse_failed);
        let line = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parser(ParserKind::Json).parse(&line, 0).parse_failed);
    }

    /// A small deterministic generator for the differential test below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn gen_ws(rng: &mut Rng) -> &'static str {
        rng.pick(&["", "", "", " ", "\t", "\n  ", "\r\n"])
    }

    fn gen_string(rng: &mut Rng) -> String {
        let parts = [
            "a",
            "Zz",
            " ",
            "é",
            "😀",
            "世",
            r#"\""#,
            r"\\",
            r"\n",
            r"\u00e9",
            r"\ud83d\ude00",
            r"\/",
            "0",
        ];
        let n = rng.below(5);
        let body: String = (0..n).map(|_| rng.pick(&parts)).collect();
        format!("\"{body}\"")
    }

    fn gen_value(rng: &mut Rng, depth: u32, out: &mut String) {
        let choice = if depth >= 4 {
            rng.below(6)
        } else {
            rng.below(8)
        };
        match choice {
            0 => out.push_str(&gen_string(rng)),
            1 => out.push_str(rng.pick(&["0", "-7", "12", "1714564800", "18446744073709551615"])),
            2 => out.push_str(rng.pick(&["1.5", "-0.25", "3.0"])),
            3 => out.push_str(rng.pick(&["true", "false"])),
            4 => out.push_str("null"),
            5 => out.push_str(&gen_string(rng)),
            6 => gen_object(rng, depth + 1, out),
            _ => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(gen_ws(rng));
                    match rng.below(3) {
                        0 => out.push_str(rng.pick(&["1", "-2", "true", "null"])),
                        1 => out.push_str(&format!("\"{}\"", rng.pick(&["x", "y z", "é"]))),
                        _ => out.push_str(rng.pick(&["[]", "[1,2]", r#"{"k":1}"#])),
                    }
                    out.push_str(gen_ws(rng));
                }
                out.push(']');
            }
        }
    }

    fn gen_object(rng: &mut Rng, depth: u32, out: &mut String) {
        let mut keys = vec![
            "a", "b", "user", "x y", "ключ", r"k\u00e9", "zone", "id", "c_d",
        ];
        out.push('{');
        for i in 0..rng.below(5) {
            if i > 0 {
                out.push(',');
            }
            let key = keys.swap_remove(rng.below(keys.len()));
            out.push_str(gen_ws(rng));
            out.push('"');
            out.push_str(key);
            out.push('"');
            out.push_str(gen_ws(rng));
            out.push(':');
            out.push_str(gen_ws(rng));
            gen_value(rng, depth, out);
            out.push_str(gen_ws(rng));
        }
        out.push('}');
    }

    /// What the attributes of a JSON object are, computed from serde_json's reading.
    fn reference_flatten(
        prefix: Option<&str>,
        map: &serde_json::Map<String, serde_json::Value>,
        out: &mut Vec<(String, String)>,
    ) {
        use serde_json::Value;
        for (key, value) in map {
            let key = match prefix {
                Some(p) => format!("{p}.{key}"),
                None => key.clone(),
            };
            match value {
                Value::Null => {}
                Value::Object(inner) if inner.is_empty() => out.push((key, "{}".into())),
                Value::Object(inner) => reference_flatten(Some(&key), inner, out),
                Value::String(s) => out.push((key, s.clone())),
                other => out.push((key, other.to_string())),
            }
        }
    }

    #[test]
    fn json_scanner_agrees_with_serde_json() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut rejected) = (0, 0);
        for round in 0..20_000 {
            let mut text = String::new();
            text.push_str(gen_ws(&mut rng));
            gen_object(&mut rng, 1, &mut text);
            text.push_str(gen_ws(&mut rng));

            // Well-formed: the same fields as serde_json reads.
            let ours = json_fields(&text).map(|f| f.finish(0));
            let reference: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("generated {text:?}: {e}"));
            let ours = ours.unwrap_or_else(|| panic!("rejected well-formed {text:?}"));
            let mut want = Vec::new();
            reference_flatten(None, &reference, &mut want);
            let mut got = ours.attributes.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{text:?}");

            // Mutated: accepted exactly when serde_json accepts it.
            let mut chars: Vec<char> = text.chars().collect();
            for _ in 0..=rng.below(3) {
                let at = rng.below(chars.len() + 1);
                match rng.below(4) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 => chars.truncate(at),
                    _ => {
                        let c = [
                            '{', '}', '[', ']', '"', ',', ':', '\\', '0', '5', 'e', '.', '-', '+',
                            'u', 'n', ' ', '\u{1}', 'é',
                        ][rng.below(19)];
                        chars.insert(at, c);
                    }
                }
            }
            let mutated: String = chars.into_iter().collect();
            let ours = json_fields(&mutated).is_some();
            let theirs =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&mutated)
                    .is_ok();
            assert_eq!(ours, theirs, "round {round}: {mutated:?}");
            if ours { accepted += 1 } else { rejected += 1 }
        }
        // The mutations exercise both outcomes.
        assert!(
            accepted > 1_000 && rejected > 1_000,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    // --- regex --------------------------------------------------------------------------

    const GAME_LOG: &str = r"^(?P<time>\S+ \S+) \[(?P<level>\w+)\] (?:\[(?P<thread>[^\]]+)\] )?(?P<msg>.*?)(?: trace=(?P<trace_id>[0-9a-f]+))?$";

    #[test]
    fn regex_lifts_named_captures() {
        let p = Parser::new(ParserKind::Regex, Some(GAME_LOG)).expect("compiles");
        let r = p.parse(
            "2024-05-01 12:00:00.123 [WARN] [tick-1] slow tick: 57ms trace=4bf92f35",
            OBSERVED,
        );
        assert_eq!(
            r,
            LogRecord {
                timestamp_ns: Some(MAY_1 * 1_000_000_000 + 123_000_000),
                observed_ns: OBSERVED,
                level: Level::Warn,
                message: "slow tick: 57ms".into(),
                trace_id: Some("4bf92f35".into()),
                attributes: attrs(&[("thread", "tick-1")]),
                parse_failed: false,
                truncated: false,
            }
        );
        // Groups that took no part are absent.
        let r = p.parse("2024-05-01 12:00:00 [info] héllo wörld", OBSERVED);
        assert_eq!(
            (r.level, r.message.as_str(), r.trace_id),
            (Level::Info, "héllo wörld", None)
        );
        assert!(r.attributes.is_empty());
    }

    #[test]
    fn regex_keeps_what_does_not_fit_as_attributes() {
        let p = Parser::new(
            ParserKind::Regex,
            Some(r"^(?P<timestamp>\S+) (?P<level>\S+) (?P<message>.*)$"),
        )
        .expect("compiles");
        let r = p.parse("01/May/2024:12:00:00 chatty hello", 0);
        assert_eq!(r.timestamp_ns, None);
        assert_eq!(r.level, Level::Unknown);
        assert_eq!(r.message, "hello");
        assert_eq!(
            r.attributes,
            attrs(&[("timestamp", "01/May/2024:12:00:00"), ("level", "chatty")])
        );
    }

    #[test]
    fn regex_without_a_match_is_kept_as_text() {
        let p = Parser::new(ParserKind::Regex, Some(GAME_LOG)).expect("compiles");
        for line in ["ERROR no timestamp here", "", "   ", "ünïcode only"] {
            assert_eq!(
                p.parse(line, OBSERVED),
                failed(line, level_from_text(line)),
                "{line:?}"
            );
        }
        let long = format!("{} ERROR", "y".repeat(100_000));
        let r = p.parse(&long, OBSERVED);
        assert!(r.parse_failed);
        assert_eq!(r.message.len(), long.len());
    }

    // --- logfmt -------------------------------------------------------------------------

    #[test]
    fn logfmt_pairs_quotes_and_flags() {
        let line = r#"time=2024-05-01T12:00:00Z level=error msg="player \"p1\" kicked\n" reason=afk dur=31.5s empty= cached trace_id=abc"#;
        let r = parser(ParserKind::Logfmt).parse(line, OBSERVED);
        assert_eq!(
            r,
            LogRecord {
                timestamp_ns: Some(MAY_1 * 1_000_000_000),
                observed_ns: OBSERVED,
                level: Level::Error,
                message: "player \"p1\" kicked\n".into(),
                trace_id: Some("abc".into()),
                attributes: attrs(&[
                    ("reason", "afk"),
                    ("dur", "31.5s"),
                    ("empty", ""),
                    ("cached", "true")
                ]),
                parse_failed: false,
                truncated: false,
            }
        );
    }

    #[test]
    fn logfmt_edge_cases() {
        let p = parser(ParserKind::Logfmt);
        let r = p.parse(r#"a="x y z" b=é=1 c="unterminated \"q\" \x"#, 0);
        assert_eq!(
            r.attributes,
            attrs(&[
                ("a", "x y z"),
                ("b", "é=1"),
                ("c", r#"unterminated "q" \x"#)
            ])
        );
        let r = p.parse(r#"  k="héllo 世界"	t=1  "#, 0);
        assert_eq!(r.attributes, attrs(&[("k", "héllo 世界"), ("t", "1")]));
        let r = p.parse(r#"=orphan k=v c="ends in \"#, 0);
        assert_eq!(r.attributes, attrs(&[("k", "v"), ("c", "ends in \\")]));
        let r = p.parse(r#"lvl=WARN ts=1714564800"#, 0);
        assert_eq!(
            (r.level, r.timestamp_ns),
            (Level::Warn, Some(MAY_1 * 1_000_000_000))
        );
    }

    #[test]
    fn logfmt_without_pairs_is_kept_as_text() {
        let p = parser(ParserKind::Logfmt);
        for line in ["", "   ", "just some WARN words", "=x =y", "ünïcode"] {
            assert_eq!(
                p.parse(line, OBSERVED),
                failed(line, level_from_text(line)),
                "{line:?}"
            );
        }
        let long = "word ".repeat(50_000);
        assert!(p.parse(&long, 0).parse_failed);
        let long = format!("k={}", "v".repeat(1 << 20));
        assert_eq!(p.parse(&long, 0).attributes[0].1.len(), 1 << 20);
    }

    // --- none ---------------------------------------------------------------------------

    #[test]
    fn none_keeps_the_line_and_guesses_the_level() {
        let p = parser(ParserKind::None);
        let line = "[12:00:00] [Server thread/WARN]: Can't keep up!";
        assert_eq!(
            p.parse(line, OBSERVED),
            LogRecord {
                observed_ns: OBSERVED,
                level: Level::Warn,
                message: line.into(),
                ..LogRecord::default()
            }
        );
        for line in ["", "   ", "ünïcode ✓", r#"{"level":"error"}"#] {
            let r = p.parse(line, OBSERVED);
            assert_eq!((r.message.as_str(), r.parse_failed), (line, false));
        }
        let long = "z".repeat(1 << 20);
        assert_eq!(p.parse(&long, 0).message, long);
    }

    // --- level from text ----------------------------------------------------------------

    #[test]
    fn level_words_in_text() {
        for (text, level) in [
            ("2024-05-01T12:00:00Z INFO server started", Level::Info),
            ("2024-05-01 12:00:00,123 WARNING root: disk", Level::Warn),
            (
                "[2024-05-01 12:00:00] [error] 123#0: upstream timed out",
                Level::Error,
            ),
            ("2024/05/01 12:00:00 [crit] 77#77: oops", Level::Fatal),
            ("ts=2024-05-01T12:00:00Z level=debug msg=hi", Level::Debug),
            ("level: trace something", Level::Trace),
            (r#"{"severity":"Error","msg":"broken json"#, Level::Error),
            ("Error: connection refused", Level::Error),
            ("fatal: not a git repository", Level::Fatal),
            ("<warn> low disk", Level::Warn),
            ("(notice) config reloaded", Level::Info),
            ("[E] tick failed", Level::Error),
            ("lvl=w something", Level::Warn),
            ("12:00:00.000 [main] ERROR c.e.Game - failed", Level::Error),
            ("PANIC in worker 3", Level::Fatal),
            ("[core:error] [pid 1] AH00000", Level::Error),
        ] {
            assert_eq!(level_from_text(text), level, "{text:?}");
        }
    }

    #[test]
    fn no_level_in_text() {
        for text in [
            "",
            "   ",
            "E0501 12:00:00.000000 1234 main.go:10] glog style",
            "ERROR_CODE=7 INFOX WARNED",
            "I think there was an error in the plan",
            "user asked for debug info",
            "a W here and an E there",
            "non-error-path",
            "ünïcode 世界 😀 only",
            // Past the first 64 bytes.
            "0123456789012345678901234567890123456789012345678901234567890123 ERROR",
        ] {
            assert_eq!(level_from_text(text), Level::Unknown, "{text:?}");
        }
        // A level word that starts inside the window counts whole.
        let text = format!("{} INFORMATION", "x".repeat(58));
        assert_eq!(level_from_text(&text), Level::Info);
    }

    // --- timestamps ---------------------------------------------------------------------

    #[test]
    fn rfc3339_timestamps() {
        let s = MAY_1 * 1_000_000_000;
        for (text, want) in [
            ("2024-05-01T12:00:00Z", s),
            ("2024-05-01t12:00:00z", s),
            ("2024-05-01T14:00:00+02:00", s),
            ("2024-05-01T06:30:00-05:30", s),
            ("2024-05-01T14:00:00+0200", s),
            ("2024-05-01T14:00:00+02", s),
            ("2024-05-01 14:00:00 +02:00", s),
            ("2024-05-01T12:00:00", s),
            ("2024-05-01 12:00:00", s),
            ("2024-05-01 12:00:00.123", s + 123_000_000),
            ("2024-05-01 12:00:00,123", s + 123_000_000),
            ("2024-05-01T12:00:00.1Z", s + 100_000_000),
            ("2024-05-01T12:00:00.12Z", s + 120_000_000),
            ("2024-05-01T12:00:00.123Z", s + 123_000_000),
            ("2024-05-01T12:00:00.1234Z", s + 123_400_000),
            ("2024-05-01T12:00:00.12345Z", s + 123_450_000),
            ("2024-05-01T12:00:00.123456Z", s + 123_456_000),
            ("2024-05-01T12:00:00.1234567Z", s + 123_456_700),
            ("2024-05-01T12:00:00.12345678Z", s + 123_456_780),
            ("2024-05-01T12:00:00.123456789Z", s + 123_456_789),
            ("2024-05-01T12:00:00.1234567891234Z", s + 123_456_789),
            ("2024-05-01T14:00:00.5+02:00", s + 500_000_000),
            (" 2024-05-01T12:00:00Z ", s),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59Z", -1_000_000_000),
            ("2024-02-29T23:59:59Z", 1_709_251_199_000_000_000),
            ("2000-03-01T00:00:00Z", 951_868_800_000_000_000),
            ("1900-01-01T00:00:00Z", -2_208_988_800_000_000_000),
            ("2262-04-11T23:47:16Z", 9_223_372_036_000_000_000),
        ] {
            assert_eq!(parse_timestamp(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn not_timestamps() {
        for text in [
            "",
            "2024-05-01",
            "2024-05-01T12:00Z",
            "2024-13-01T12:00:00Z",
            "2024-00-01T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2024-04-31T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-05-01T12:00:61Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+25:00",
            "2024-05-01T12:00:00+02:0",
            "2024-05-01T12:00:00 UTC",
            "2024-05-01X12:00:00Z",
            "2024/05/01 12:00:00",
            "2024-05-01T12:00:00Zjunk",
            "2262-04-12T00:00:00Z",
            "1600-01-01T00:00:00Z",
            "२०२४-05-01T12:00:00Z",
            "yesterday",
            "12ab",
            "--5",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
    }

    #[test]
    fn epoch_timestamps_by_magnitude() {
        let s = MAY_1 * 1_000_000_000;
        for (text, want) in [
            ("1714564800", Some(s)),
            ("1714564800.123456789", Some(s + 123_456_789)),
            ("1714564800.1234567891", Some(s + 123_456_789)),
            ("1714564800123", Some(s + 123_000_000)),
            ("1714564800123.5", Some(s + 123_500_000)),
            ("1714564800123456", Some(s + 123_456_000)),
            ("1714564800123456789", Some(s + 123_456_789)),
            ("-86400", Some(-86_400_000_000_000)),
            ("1.7145648001e9", Some(s + 100_000_000)),
            ("99999999999999999999", None),
            ("1e19", None),
            ("1.7145648001E+9", Some(s + 100_000_000)),
            ("17145648001234e-4", Some(s + 123_400_000)),
            ("1714564800123456789e-9", Some(s + 123_456_789)),
            ("5e-1", Some(500_000_000)),
            ("5e-10", Some(0)),
            ("1e400", None),
            ("1e", None),
            ("1.", Some(1_000_000_000)),
            (".5", None),
            ("1,5", None),
        ] {
            assert_eq!(parse_timestamp(text), want, "{text:?}");
        }
    }

    #[test]
    fn days_from_civil_matches_a_day_by_day_count() {
        let mut days = days_from_civil(1600, 1, 1);
        for year in 1600..2500 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        days,
                        "{year}-{month}-{day}"
                    );
                    days += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
    }
}
