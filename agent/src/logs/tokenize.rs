//! PII tokenization of log records, on the host, before a record is queued.
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
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use memchr::{memchr3, memchr3_iter};
use regex::Regex;
use ring::{digest, hmac};

use crate::logs::record::LogRecord;

/// The shortest key accepted, in bytes, after trimming whitespace.
pub const MIN_KEY_LEN: usize = 16;

/// The built-in detectors, in their index order.
const BUILTINS: [&str; 3] = ["email", "ipv4", "ipv6"];
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

/// A secret key that tokens are made with.
#[derive(Clone)]
pub struct TokenKey {
    id: String,
    fingerprint: [u8; 32],
    mac: hmac::Key,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Reads a key file: raw bytes, surrounding whitespace trimmed, at least
    /// [`MIN_KEY_LEN`] bytes left.
    pub fn from_file(path: impl AsRef<Path>) -> Result<TokenKey, TokenizeError> {
        let path = path.as_ref();
        let raw = std::fs::read(path).map_err(|source| TokenizeError::KeyRead {
            path: path.to_path_buf(),
            source,
        })?;
        TokenKey::build(&raw, || format!("token key file {}", path.display()))
    }

    /// A key from bytes already in memory, with the same rules as [`TokenKey::from_file`].
    pub fn from_bytes(raw: &[u8]) -> Result<TokenKey, TokenizeError> {
        TokenKey::build(raw, || "token key given in memory".to_owned())
    }

    fn build(raw: &[u8], origin: impl FnOnce() -> String) -> Result<TokenKey, TokenizeError> {
        let key = raw.trim_ascii();
        if key.len() < MIN_KEY_LEN {
            return Err(TokenizeError::KeyTooShort {
                origin: origin(),
                len: key.len(),
            });
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest::digest(&digest::SHA256, key).as_ref());
        let mut id = String::with_capacity(8);
        push_hex(&mut id, &fingerprint[..4]);
        Ok(TokenKey {
            id,
            fingerprint,
            mac: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// The key id: the first 4 bytes of SHA-256 of the key, as 8 lower-case hex characters.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn write_token(&self, out: &mut String, value: &str) {
        let tag = hmac::sign(&self.mac, value.as_bytes());
        out.push_str("tok_");
        out.push_str(&self.id);
        out.push('_');
        push_hex(out, tag.as_ref().get(..8).unwrap_or_default());
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// (modification time, length) of a file, as a cheap "has it changed" check.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

/// A key file and the key it held when last loaded, reloaded when the file changes.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    key: TokenKey,
    stamp: Stamp,
}

impl KeyFile {
    /// Loads the key file once; an error here should stop the agent at startup.
    pub fn open(path: impl Into<PathBuf>) -> Result<KeyFile, TokenizeError> {
        let path = path.into();
        // Stamped before reading: a write racing the read shows as a change next time.
        let stamp = stamp(&path);
        let key = TokenKey::from_file(&path)?;
        Ok(KeyFile { path, key, stamp })
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key in force.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// Looks at the file's modification time and length, and reloads it if they changed.
    /// `Ok(true)` when the key is now a different one (hand it to
    /// [`Tokenizer::set_key`]). A changed file that does not load (missing, half
    /// written, too short) leaves the previous key in force and returns the error; the
    /// next call tries again.
    pub fn reload_if_changed(&mut self) -> Result<bool, TokenizeError> {
        let now = stamp(&self.path);
        if now == self.stamp {
            return Ok(false);
        }
        let key = TokenKey::from_file(&self.path)?;
        self.stamp = now;
        if key.fingerprint == self.key.fingerprint {
            return Ok(false);
        }
        tracing::info!(
            path = %self.path.display(),
            old_key_id = %self.key.id,
            key_id = %key.id,
            "token key reloaded"
        );
        self.key = key;
        Ok(true)
    }
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
    pub fn scrub(&self, record: &mut LogRecord) -> Verdict {
        let mut replaced = 0;
        match self.rewrite(&record.message) {
            Outcome::Clean => {}
            Outcome::Rewritten(text, n) => {
                record.message = text;
                replaced += n;
            }
            Outcome::Drop(name) => {
                return Verdict::Drop {
                    detector: name.to_owned(),
                };
            }
        }
        // A trace id that is not hex is not one the sender can ship as bytes: it would
        // travel as text, so it is taken whole as a value to tokenize.
        if let Some(trace_id) = &mut record.trace_id
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
        for (key, value) in &mut record.attributes {
            // Keys are scrubbed like values (`{"seen":{"a@b.example":1}}` flattens to a
            // key holding an address); the token keeps the key's place in the record.
            match self.rewrite(key) {
                Outcome::Clean => {}
                Outcome::Rewritten(text, n) => {
                    *key = text;
                    replaced += n;
                }
                Outcome::Drop(name) => {
                    return Verdict::Drop {
                        detector: name.to_owned(),
                    };
                }
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
            match self.rewrite(value) {
                Outcome::Clean => {}
                Outcome::Rewritten(text, n) => {
                    *value = text;
                    replaced += n;
                }
                Outcome::Drop(name) => {
                    return Verdict::Drop {
                        detector: name.to_owned(),
                    };
                }
            }
        }
        Verdict::Keep { replaced }
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

/// The one walk over the anchor bytes, from the first one the prefilter found.
fn scan_builtins(text: &str, first: usize, spans: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    let Some(rest) = bytes.get(first..) else {
        return;
    };
    // The end of the last run each address detector looked at: later anchors inside it
    // were covered.
    let mut v4_seen = 0;
    let mut v6_seen = 0;
    for at in memchr3_iter(b'@', b':', b'.', rest).map(|i| first + i) {
        match bytes[at] {
            b'@' => {
                if let Some((s, e)) = email_around(text, at, at + 1) {
                    push_span(spans, text, s, e, EMAIL);
                }
            }
            b'.' if at >= v4_seen => {
                let (seen, found) = ipv4_around(text, at);
                v4_seen = seen;
                if let Some((s, e)) = found {
                    push_span(spans, text, s, e, IPV4);
                }
            }
            b':' if at >= v6_seen => {
                let (seen, found) = ipv6_around(text, at);
                v6_seen = seen;
                if let Some((s, e)) = found {
                    push_span(spans, text, s, e, IPV6);
                }
            }
            _ => {}
        }
    }
    // A percent-encoded `@` (`jane%40example.com`, common in URLs and access logs). The
    // domain holds a `.`, so the prefilter has already let such a text through.
    if memchr::memchr(b'%', bytes).is_some() {
        for at in memchr::memmem::find_iter(bytes, b"%40") {
            if let Some((s, e)) = email_around(text, at, at + 3) {
                push_span(spans, text, s, e, EMAIL);
            }
        }
    }
}

/// The maximal run of bytes around `at` that satisfy `keep`: `[start, end)`.
fn run_around(bytes: &[u8], at: usize, keep: impl Fn(u8) -> bool) -> (usize, usize) {
    let mut start = at;
    while start > 0 && keep(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = at + 1;
    while end < bytes.len() && keep(bytes[end]) {
        end += 1;
    }
    (start, end)
}

/// The dotted-decimal run around the `.` at `dot`: the run's end, and the address's
/// span if the run is one address. A run that goes on with more dotted parts
/// (`1.2.3.4.5`, `host.1.2.3.4`, `4.3.2.1.in-addr`) or touches a letter (`v1.2.3.4`)
/// is not one; a trailing full stop is punctuation.
fn ipv4_around(text: &str, dot: usize) -> (usize, Option<(usize, usize)>) {
    let b = text.as_bytes();
    // Every address has a dot right after a digit; the first such dot covers the run.
    if dot == 0 || !b[dot - 1].is_ascii_digit() {
        return (dot + 1, None);
    }
    let (mut s, mut e) = run_around(b, dot, |c| c.is_ascii_digit() || c == b'.');
    let run_end = e;
    let alnum_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphanumeric);
    if b[s] == b'.' {
        if s > 0 && alnum_at(s - 1) {
            return (run_end, None);
        }
        while s < e && b[s] == b'.' {
            s += 1;
        }
    } else if s > 0 && b[s - 1].is_ascii_alphabetic() {
        return (run_end, None);
    }
    if b[e - 1] == b'.' {
        if alnum_at(e) {
            return (run_end, None);
        }
        while e > s && b[e - 1] == b'.' {
            e -= 1;
        }
    } else if b.get(e).is_some_and(u8::is_ascii_alphabetic) {
        return (run_end, None);
    }
    let found = text
        .get(s..e)
        .filter(|c| (7..=15).contains(&c.len()) && Ipv4Addr::from_str(c).is_ok())
        .map(|_| (s, e));
    (run_end, found)
}

/// The hex/colon/dot run around the `:` at `colon`: the run's end, and the address's
/// span if the run is one IPv6 address in any textual form. A zone (`%eth0`) stays
/// outside the span. A single colon or trailing dots at the edges are punctuation
/// (`addr:fe80::1`, `from ::1.`). A run glued to a word (`Default::new`) is not an
/// address, and neither is a compressed form with no decimal digit (`a::b`,
/// `dead::beef`): those are paths far more often than addresses.
fn ipv6_around(text: &str, colon: usize) -> (usize, Option<(usize, usize)>) {
    let b = text.as_bytes();
    let near = |i: Option<usize>| {
        i.and_then(|i| b.get(i))
            .is_some_and(|c| c.is_ascii_hexdigit() || *c == b':')
    };
    if !near(colon.checked_sub(1)) && !near(Some(colon + 1)) {
        return (colon + 1, None);
    }
    let (run_start, run_end) = run_around(b, colon, |c| {
        c.is_ascii_hexdigit() || c == b':' || c == b'.'
    });
    let (mut s, mut e) = (run_start, run_end);
    while s < e && b[s] == b'.' {
        s += 1;
    }
    while e > s && b[e - 1] == b'.' {
        e -= 1;
    }
    if e - s >= 2 && b[s] == b':' && b[s + 1] != b':' {
        s += 1;
    }
    if e - s >= 2 && b[e - 1] == b':' && b[e - 2] != b':' {
        e -= 1;
    }
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    if (s == run_start && s > 0 && word(&b[s - 1])) || (e == run_end && b.get(e).is_some_and(word))
    {
        return (run_end, None);
    }
    let Some(cand) = text.get(s..e) else {
        return (run_end, None);
    };
    // Cheap shape checks before the parser: an address is compressed (`::`) or has
    // eight groups (seven colons), or six and an embedded IPv4 address.
    let (mut colons, mut compressed, mut has_dot, mut has_digit) = (0, false, false, false);
    let mut prev = 0u8;
    for c in cand.bytes() {
        match c {
            b':' => {
                colons += 1;
                compressed |= prev == b':';
            }
            b'.' => has_dot = true,
            b'0'..=b'9' => has_digit = true,
            _ => {}
        }
        prev = c;
    }
    let shaped = compressed || colons == 7 || (colons == 6 && has_dot);
    if !shaped || (compressed && !has_digit) || Ipv6Addr::from_str(cand).is_err() {
        return (run_end, None);
    }
    (run_end, Some((s, e)))
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '.' | '_' | '%' | '+' | '-')
        || (!c.is_ascii() && c.is_alphanumeric())
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || (!c.is_ascii() && c.is_alphanumeric())
}

/// The address around the `@` written at `text[at..after]` (`@`, or `%40` percent-encoded):
/// `local@domain.tld`, the local part of letters, digits and `. _ % + -` or a quoted string
/// (`"john smith"@example.com`, also with the quotes escaped as in JSON), the domain of
/// dot-separated labels (letters, digits, inner `-`) ending in a TLD of two or more
/// letters. Non-ASCII letters are allowed (RFC 6531).
fn email_around(text: &str, at: usize, after: usize) -> Option<(usize, usize)> {
    let before = text.get(..at)?;
    let rest = text.get(after..)?;
    let start = match quoted_local_start(before) {
        Some(start) => start,
        None => {
            let mut start = at;
            for (i, c) in before.char_indices().rev() {
                if !is_local_char(c) {
                    break;
                }
                start = i;
            }
            while start < at && text.as_bytes()[start] == b'.' {
                start += 1;
            }
            if start == at {
                return None;
            }
            start
        }
    };
    let mut end = after;
    for (i, c) in rest.char_indices() {
        if !is_domain_char(c) {
            break;
        }
        end = after + i + c.len_utf8();
    }
    while end > after && matches!(text.as_bytes()[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = text.get(after..end)?;
    let mut labels = 0;
    let mut tld = "";
    for label in domain.split('.') {
        if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
            return None;
        }
        labels += 1;
        tld = label;
    }
    let tld_ok = tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic);
    (labels >= 2 && tld_ok).then_some((start, end))
}

/// The longest quoted local part RFC 5321 allows.
const MAX_LOCAL_LEN: usize = 64;

/// Where a quoted local part that ends right before the `@` starts (at its opening
/// quote, or at the backslash of an escaped one): `"john smith"` or `\"john smith\"`.
fn quoted_local_start(before: &str) -> Option<usize> {
    let b = before.as_bytes();
    let escaped = b.ends_with(b"\\\"");
    if !escaped && !b.ends_with(b"\"") {
        return None;
    }
    let close = b.len() - if escaped { 2 } else { 1 };
    let window_start = close.saturating_sub(MAX_LOCAL_LEN + 2);
    let open = memchr::memrchr(b'"', &b[window_start..close])? + window_start;
    let inner = &b[open + 1..close];
    if inner.is_empty() || inner.contains(&b'\n') {
        return None;
    }
    let start = if escaped {
        // The opening quote is escaped too: `\"`.
        open.checked_sub(1).filter(|&i| b[i] == b'\\')?
    } else {
        open
    };
    Some(start)
}

#[cfg(test)]
mod tests;
