//! `edge-tokenize`: PII tokenization of log records (and span attributes), by the agent
//! on the host before a record is queued, and by the gateway for records that arrive
//! without an agent. One implementation, so the same value gets the same token wherever
//! it was tokenized.
//!
//! # What is found
//!
//! Three built-in detectors are always on: `email`, `ipv4` and `ipv6`. Configured
//! detectors add a regex each (player ids, `player_id=(\S+)`, …). Every detector has an
//! [`Action`]: replace the value with a token, replace it with `[REDACTED:<name>]`, or drop
//! the whole record. Built-ins tokenize unless a [`DetectorSpec`] without a pattern names
//! them with another action. Detection runs on the message, on every attribute value and
//! on every attribute key (flattened JSON keys can hold an address: the match in the key
//! is replaced in place, so the key keeps its position). A trace id that is not hex is
//! tokenized whole (the sender would ship it as text). Emails are found with a plain `@`,
//! percent-encoded (`jane%40example.com`), and with a quoted local part
//! (`"john smith"@example.com`, quotes escaped or not). An attribute whose key names a configured detector
//! (`player_id`, or `user.player_id` for nested JSON, ASCII case ignored) is taken whole as
//! a match of that detector, whatever its value looks like.
//!
//! # How: a prefilter, then one scan
//!
//! This runs on every line, so a line without PII must cost next to nothing:
//!
//! 1. **Prefilter.** One vectorised `memchr3` looks for the bytes every built-in match
//!    holds: `@` (email), `.` (IPv4), `:` (IPv6). Configured patterns are asked once,
//!    together, whether any matches; the regex engine turns their literal prefixes
//!    (`p-`, `player_id=`) into one vectorised substring search, so that costs about as
//!    much as a `memchr`. (A `RegexSet` answers the same question but gets no literal
//!    prefilter: measured ten times slower on a clean line.) A line with none of the
//!    three bytes and no pattern match is returned as [`Cow::Borrowed`]: nothing is
//!    allocated.
//! 2. **Scan.** The anchor bytes are walked once, left to right. At each one, only the
//!    detectors that can hold that byte look around it: the run of characters their syntax
//!    allows is cut out and validated (`Ipv4Addr`/`Ipv6Addr` parsing for addresses, label
//!    and TLD rules for email). A run is looked at once, however many anchors it holds.
//!    Configured patterns are alternated into one regex with one capture group per
//!    detector and scanned once, and only when the prefilter found a match. Between
//!    configured patterns that match at the same place, the one listed first wins, as
//!    in any regex alternation. Every hit becomes a candidate span
//!    `(start, end, detector)`; a pattern with a capture group 1 yields the group's span
//!    (the whole match if the group took no part), and empty spans are ignored.
//! 3. **Overlaps.** Candidates are ordered by start, then longest first, then configured
//!    before built-in (a pattern states a more specific intent). A candidate that overlaps
//!    one already kept is discarded: the earliest start wins, then the longest.
//! 4. **Output.** The new text is built once, in one `String` sized up front.
//!
//! If any candidate belongs to a detector whose action is drop, the record is dropped,
//! whatever the overlaps.
//!
//! # Token format
//!
//! `tok_<keyid>_<mac>`: `<keyid>` is the first 4 bytes of SHA-256 of the key (8 lower-case
//! hex characters), so a token says which key made it and keys can be rotated;
//! `<mac>` is the first 8 bytes of HMAC-SHA-256 over the matched text, keyed with the key
//! (16 hex characters). The same value under the same key always gives the same token, so
//! tokens can still be counted and joined; without the key they cannot be reversed or
//! guessed by hashing candidate values. The value is taken as written: `2001:db8::1` and
//! `2001:0db8::1` give different tokens.
//!
//! # Look-alikes
//!
//! - IPv4: the dotted run must be exactly four octets that `Ipv4Addr` parses, not touching
//!   a letter or another dotted part: `1.2.3`, `v1.2.3.4`, `1.2.3.4.5`, `256.1.1.1`,
//!   `4.3.2.1.in-addr.arpa` are left alone; `10.0.0.1:8080` keeps its port. Octets with
//!   leading zeros (`010.0.0.1`) are refused by `Ipv4Addr` and so are not found.
//! - IPv6: the run of hex digits, colons and dots must parse as `Ipv6Addr` and must not be
//!   glued to a word (`Default::new`). A compressed form without any decimal digit
//!   (`a::b`, `cafe::beef`) is taken for a code path, not an address. Times (`12:34:56`),
//!   ports (`host:8080`) and MAC addresses (`00:1a:2b:3c:4d:5e`, six groups) do not parse.
//!
//! # Not in scope
//!
//! MAC addresses, host names, UUIDs and hashes are left alone, and so is a hex trace id.
//! Base64-encoded PII and PII split across two physical lines are not found (a line over
//! `max_line_bytes` is split where no address can straddle the cut, see `logs::tail`).
//! Configured patterns cover anything else a game logs.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::path::PathBuf;
use std::str::FromStr;

use memchr::memchr3;
use regex::Regex;

mod builtins;
pub mod config;
mod key;
pub mod spans;

use builtins::scan_builtins;
pub use key::{KeyFile, TokenKey};

/// The shortest key accepted, in bytes, after trimming whitespace.
pub const MIN_KEY_LEN: usize = 16;

/// The built-in detectors, in their index order.
pub const BUILTINS: [&str; 3] = ["email", "ipv4", "ipv6"];
const EMAIL: usize = 0;
const IPV4: usize = 1;
const IPV6: usize = 2;

/// `tok_` + 8 + `_` + 16.
const TOKEN_LEN: usize = 29;

/// Why a key or the detectors cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The key file could not be read.
    #[error("token key file {path}: {source}")]
    KeyRead {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key is shorter than [`MIN_KEY_LEN`] bytes.
    #[error(
        "{origin}: the token key is {len} bytes after trimming whitespace; at least {MIN_KEY_LEN} are needed"
    )]
    KeyTooShort {
        /// Where the key came from (`token key file /etc/…`).
        origin: String,
        /// Its length after trimming.
        len: usize,
    },
    /// A detector has an empty name.
    #[error("detector #{index}: the name is empty")]
    EmptyName {
        /// Its position in the list, from 0.
        index: usize,
    },
    /// A detector without a pattern does not name a built-in.
    #[error(
        "detector `{name}`: no pattern, and `{name}` is not a built-in detector (built-ins: email, ipv4, ipv6)"
    )]
    UnknownBuiltin {
        /// The detector.
        name: String,
    },
    /// A detector named like a built-in has a pattern.
    #[error(
        "detector `{name}`: `{name}` is a built-in detector and takes no pattern; name the pattern otherwise"
    )]
    BuiltinWithPattern {
        /// The detector.
        name: String,
    },
    /// Two detectors have the same name (ASCII case ignored).
    #[error("detector `{name}` is configured twice")]
    DuplicateDetector {
        /// The name.
        name: String,
    },
    /// A configured pattern does not compile or cannot be scanned with the others.
    #[error("detector `{name}`: bad pattern: {reason}")]
    BadPattern {
        /// The detector.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configured patterns compile one by one but not together (size limits).
    #[error("configured detectors: the patterns cannot be scanned together: {reason}")]
    Combine {
        /// The regex engine's reason.
        reason: String,
    },
    /// An action name other than `tokenize`, `redact`, `drop`.
    #[error("unknown detector action `{value}` (expected tokenize, redact or drop)")]
    UnknownAction {
        /// The name given.
        value: String,
    },
}

/// What a detector does with what it finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Replace the value with `tok_<keyid>_<16 hex>` (see the module doc).
    #[default]
    Tokenize,
    /// Replace the value with `[REDACTED:<detector name>]`.
    Redact,
    /// Drop the whole record.
    Drop,
}

impl Action {
    /// The name as configured: `tokenize`, `redact`, `drop`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Tokenize => "tokenize",
            Action::Redact => "redact",
            Action::Drop => "drop",
        }
    }
}

impl FromStr for Action {
    type Err = TokenizeError;

    /// `tokenize`, `redact` or `drop`, ASCII case ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Action::Tokenize, Action::Redact, Action::Drop]
            .into_iter()
            .find(|a| s.eq_ignore_ascii_case(a.name()))
            .ok_or_else(|| TokenizeError::UnknownAction {
                value: s.to_owned(),
            })
    }
}

/// One detector as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectorSpec {
    /// `email`, `ipv4`, `ipv6` for a built-in; any other name for a pattern. Also the
    /// attribute key whose whole value a configured detector claims.
    pub name: String,
    /// The regex; `None` for a built-in. With a capture group 1, only the group is
    /// replaced.
    pub pattern: Option<String>,
    /// What to do with a match.
    pub action: Action,
}

/// What [`Tokenizer::scrub`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Queue the record, as rewritten.
    Keep {
        /// How many values were tokenized or redacted.
        replaced: usize,
    },
    /// Drop the record: a detector whose action is drop matched. The record may be
    /// partly rewritten and must not be queued.
    Drop {
        /// The detector's name.
        detector: String,
    },
}

#[derive(Clone, Debug)]
struct Detector {
    name: String,
    action: Action,
}

/// A candidate replacement: `text[start..end]`, found by `detectors[det]`.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    det: usize,
}

/// Where a configured detector's groups sit in the combined regex.
#[derive(Clone, Copy, Debug)]
struct Slot {
    det: usize,
    whole: usize,
    first: Option<usize>,
}

/// The configured patterns, alternated into one regex: `(p0)|(p1)|…`.
#[derive(Clone, Debug)]
struct Patterns {
    combined: Regex,
    slots: Vec<Slot>,
}

impl Patterns {
    fn build(dets: &[Detector], configured: &[(usize, Regex)]) -> Result<Patterns, TokenizeError> {
        let mut group_names: Vec<(&str, usize)> = Vec::new();
        for (det, re) in configured {
            for group in re.capture_names().flatten() {
                if let Some(&(_, other)) = group_names.iter().find(|(g, _)| *g == group) {
                    return Err(TokenizeError::BadPattern {
                        name: dets[*det].name.clone(),
                        reason: format!(
                            "capture group name `{group}` is also used by detector `{}`; \
                             configured patterns are scanned together, so group names must differ",
                            dets[other].name
                        ),
                    });
                }
                group_names.push((group, *det));
            }
        }

        let mut source = String::new();
        let mut slots = Vec::with_capacity(configured.len());
        let mut next_group = 1;
        for (det, re) in configured {
            if !source.is_empty() {
                source.push('|');
            }
            source.push_str(&wrap(&dets[*det].name, re)?);
            slots.push(Slot {
                det: *det,
                whole: next_group,
                first: (re.captures_len() > 1).then_some(next_group + 1),
            });
            next_group += re.captures_len();
        }
        let combined = Regex::new(&source).map_err(|e| TokenizeError::Combine {
            reason: e.to_string(),
        })?;
        if combined.captures_len() != next_group {
            return Err(TokenizeError::Combine {
                reason: format!(
                    "expected {next_group} capture groups, the combined regex has {}",
                    combined.captures_len()
                ),
            });
        }
        Ok(Patterns { combined, slots })
    }

    fn scan(&self, text: &str, spans: &mut Vec<Span>) {
        for caps in self.combined.captures_iter(text) {
            let Some(slot) = self.slots.iter().find(|s| caps.get(s.whole).is_some()) else {
                continue;
            };
            // Group 1 if it took part in the match, else the whole match.
            let found = slot
                .first
                .and_then(|g| caps.get(g))
                .or_else(|| caps.get(slot.whole));
            if let Some(m) = found {
                push_span(spans, text, m.start(), m.end(), slot.det);
            }
        }
    }
}

/// `pattern` as one capture group of the combined regex. A verbose-mode pattern that ends
/// in a `#` comment would swallow the closing parenthesis, so it gets a newline first.
fn wrap(name: &str, re: &Regex) -> Result<String, TokenizeError> {
    let mut last_err = String::new();
    for candidate in [format!("({})", re.as_str()), format!("({}\n)", re.as_str())] {
        match Regex::new(&candidate) {
            Ok(w) if w.captures_len() == re.captures_len() + 1 => return Ok(candidate),
            Ok(_) => last_err = "its capture groups change when it is wrapped".to_owned(),
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(TokenizeError::BadPattern {
        name: name.to_owned(),
        reason: format!("it cannot be scanned together with the others: {last_err}"),
    })
}

/// Records a candidate, widened to character boundaries (never narrowed: a wider span
/// hides more, a narrower one could leak). Empty spans replace nothing and are skipped.
fn push_span(spans: &mut Vec<Span>, text: &str, start: usize, end: usize, det: usize) {
    let mut end = end.min(text.len());
    let mut start = start.min(end);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    if start < end {
        spans.push(Span { start, end, det });
    }
}

/// What one text needs.
enum Outcome<'t> {
    Clean,
    Rewritten(String, usize),
    Drop(&'t str),
}

/// Finds PII in log records and replaces it, as configured (see the module doc).
#[derive(Clone, Debug)]
pub struct Tokenizer {
    key: TokenKey,
    /// The built-ins at [`EMAIL`], [`IPV4`], [`IPV6`], then the configured ones in order.
    detectors: Vec<Detector>,
    patterns: Option<Patterns>,
    has_drop: bool,
}

impl Tokenizer {
    /// A tokenizer with the built-in detectors plus `detectors`. A spec without a pattern
    /// must name a built-in and sets its action; a spec with one adds a detector. Errors
    /// name the detector: an unknown built-in, a pattern that does not compile, a name
    /// used twice.
    pub fn new(key: TokenKey, detectors: &[DetectorSpec]) -> Result<Tokenizer, TokenizeError> {
        let mut dets: Vec<Detector> = BUILTINS
            .iter()
            .map(|name| Detector {
                name: (*name).to_owned(),
                action: Action::Tokenize,
            })
            .collect();
        let mut builtin_set = [false; BUILTINS.len()];
        let mut configured: Vec<(usize, Regex)> = Vec::new();
        for (index, spec) in detectors.iter().enumerate() {
            let name = spec.name.as_str();
            if name.is_empty() {
                return Err(TokenizeError::EmptyName { index });
            }
            let builtin = BUILTINS.iter().position(|b| b.eq_ignore_ascii_case(name));
            match (&spec.pattern, builtin) {
                (None, Some(b)) => {
                    if builtin_set[b] {
                        return Err(TokenizeError::DuplicateDetector {
                            name: name.to_owned(),
                        });
                    }
                    builtin_set[b] = true;
                    dets[b].action = spec.action;
                }
                (None, None) => {
                    return Err(TokenizeError::UnknownBuiltin {
                        name: name.to_owned(),
                    });
                }
                (Some(_), Some(_)) => {
                    return Err(TokenizeError::BuiltinWithPattern {
                        name: name.to_owned(),
                    });
                }
                (Some(pattern), None) => {
                    if dets.iter().any(|d| d.name.eq_ignore_ascii_case(name)) {
                        return Err(TokenizeError::DuplicateDetector {
                            name: name.to_owned(),
                        });
                    }
                    let bad = |reason: String| TokenizeError::BadPattern {
                        name: name.to_owned(),
                        reason,
                    };
                    if pattern.is_empty() {
                        return Err(bad("the pattern is empty".to_owned()));
                    }
                    let re = Regex::new(pattern).map_err(|e| bad(e.to_string()))?;
                    dets.push(Detector {
                        name: name.to_owned(),
                        action: spec.action,
                    });
                    configured.push((dets.len() - 1, re));
                }
            }
        }
        let patterns = if configured.is_empty() {
            None
        } else {
            Some(Patterns::build(&dets, &configured)?)
        };
        let has_drop = dets.iter().any(|d| d.action == Action::Drop);
        Ok(Tokenizer {
            key,
            detectors: dets,
            patterns,
            has_drop,
        })
    }

    /// Makes tokens with `key` from now on (after a [`KeyFile`] reload).
    pub fn set_key(&mut self, key: TokenKey) {
        self.key = key;
    }

    /// The id of the key in force, as it appears in tokens.
    pub fn key_id(&self) -> &str {
        self.key.id()
    }

    /// The token for `value`: `tok_<keyid>_<16 hex>`.
    pub fn token(&self, value: &str) -> String {
        let mut out = String::with_capacity(TOKEN_LEN);
        self.key.write_token(&mut out, value);
        out
    }

    /// Scrubs a record in place: the message, every attribute key and value, and a trace
    /// id that is not hex.
    pub fn scrub_fields(
        &self,
        message: &mut String,
        trace_id: Option<&mut String>,
        attributes: &mut [(String, String)],
    ) -> Verdict {
        let mut replaced = 0;
        if let Err(drop) = self.rewrite_in_place(message, &mut replaced) {
            return drop;
        }
        // A trace id that is not hex is not one the sender can ship as bytes: it would
        // travel as text, so it is taken whole as a value to tokenize.
        if let Some(trace_id) = trace_id
            && !trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            if let Outcome::Drop(name) = self.rewrite(trace_id) {
                return Verdict::Drop {
                    detector: name.to_owned(),
                };
            }
            *trace_id = self.token(trace_id);
            replaced += 1;
        }
        for (key, value) in attributes.iter_mut() {
            // Keys are scrubbed like values (`{"seen":{"a@b.example":1}}` flattens to a
            // key holding an address); the token keeps the key's place in the record.
            if let Err(drop) = self.rewrite_in_place(key, &mut replaced) {
                return drop;
            }
            if value.is_empty() {
                continue;
            }
            if let Some(det) = self.key_detector(key) {
                // A drop detector anywhere in the value still drops the record.
                if self.has_drop
                    && let Outcome::Drop(name) = self.rewrite(value)
                {
                    return Verdict::Drop {
                        detector: name.to_owned(),
                    };
                }
                let detector = &self.detectors[det];
                if detector.action == Action::Drop {
                    return Verdict::Drop {
                        detector: detector.name.clone(),
                    };
                }
                let mut out = String::with_capacity(TOKEN_LEN);
                self.write_replacement(&mut out, det, value);
                *value = out;
                replaced += 1;
                continue;
            }
            if let Err(drop) = self.rewrite_in_place(value, &mut replaced) {
                return drop;
            }
        }
        Verdict::Keep { replaced }
    }

    /// Rewrites `text` where it holds PII, adding to `replaced`; `Err` with the verdict
    /// when a detector whose action is drop matched.
    fn rewrite_in_place(&self, text: &mut String, replaced: &mut usize) -> Result<(), Verdict> {
        match self.rewrite(text) {
            Outcome::Clean => Ok(()),
            Outcome::Rewritten(new, n) => {
                *text = new;
                *replaced += n;
                Ok(())
            }
            Outcome::Drop(name) => Err(Verdict::Drop {
                detector: name.to_owned(),
            }),
        }
    }

    /// `text` with its PII replaced; borrowed when there was none. `Err` holds the name
    /// of a detector whose action is drop and that matched.
    pub fn scrub_text<'a>(&self, text: &'a str) -> Result<Cow<'a, str>, String> {
        match self.rewrite(text) {
            Outcome::Clean => Ok(Cow::Borrowed(text)),
            Outcome::Rewritten(out, _) => Ok(Cow::Owned(out)),
            Outcome::Drop(name) => Err(name.to_owned()),
        }
    }

    /// The configured detector an attribute key names: the whole key, or its last
    /// `.`-separated segment, ASCII case ignored.
    fn key_detector(&self, key: &str) -> Option<usize> {
        (BUILTINS.len()..self.detectors.len()).find(|&i| {
            let name = self.detectors[i].name.as_str();
            let Some(split) = key.len().checked_sub(name.len()) else {
                return false;
            };
            key.get(split..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(name))
                && (split == 0 || key.as_bytes().get(split - 1) == Some(&b'.'))
        })
    }

    fn rewrite(&self, text: &str) -> Outcome<'_> {
        // Prefilter: the bytes the built-ins need; any configured pattern at all.
        let first_anchor = memchr3(b'@', b':', b'.', text.as_bytes());
        let patterns = self.patterns.as_ref().filter(|p| p.combined.is_match(text));
        if first_anchor.is_none() && patterns.is_none() {
            return Outcome::Clean;
        }

        let mut spans = Vec::new();
        if let Some(first) = first_anchor {
            scan_builtins(text, first, &mut spans);
        }
        if let Some(p) = patterns {
            p.scan(text, &mut spans);
        }
        if spans.is_empty() {
            return Outcome::Clean;
        }
        // Earliest start, then longest, then configured before built-in.
        spans.sort_unstable_by_key(|s| (s.start, Reverse(s.end), s.det < BUILTINS.len(), s.det));
        if let Some(s) = spans
            .iter()
            .find(|s| self.detectors[s.det].action == Action::Drop)
        {
            return Outcome::Drop(&self.detectors[s.det].name);
        }

        let mut out = String::with_capacity(text.len() + spans.len() * TOKEN_LEN);
        let mut pos = 0;
        let mut replaced = 0;
        for s in &spans {
            if s.start < pos {
                continue; // overlaps a kept span
            }
            out.push_str(&text[pos..s.start]);
            self.write_replacement(&mut out, s.det, &text[s.start..s.end]);
            pos = s.end;
            replaced += 1;
        }
        out.push_str(&text[pos..]);
        Outcome::Rewritten(out, replaced)
    }

    fn write_replacement(&self, out: &mut String, det: usize, value: &str) {
        let detector = &self.detectors[det];
        match detector.action {
            Action::Tokenize => self.key.write_token(out, value),
            // Drop is decided before any replacement; redacting is the safe fallback.
            Action::Redact | Action::Drop => {
                out.push_str("[REDACTED:");
                out.push_str(&detector.name);
                out.push(']');
            }
        }
    }
}

#[cfg(test)]
mod tests;
