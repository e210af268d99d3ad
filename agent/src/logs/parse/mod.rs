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
//!
//! Files: [`json`] and [`logfmt`] are the scanners, [`captures`] the regex parser (named capture groups),
//! [`level`] finds a level in a field or in free text, [`time`] reads timestamps; this
//! file lifts the well-known fields out of whatever a parser found.

use std::borrow::Cow;
use std::str::FromStr;

use regex::Regex;

use crate::logs::record::{Level, LogRecord};

mod captures;
mod json;
mod level;
mod logfmt;
mod time;

pub use level::level_from_text;
pub use time::parse_timestamp;

use captures::regex_fields;
use json::json_fields;
use level::level_of;
use logfmt::logfmt_fields;
use time::timestamp_of;

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

#[cfg(test)]
mod tests;
