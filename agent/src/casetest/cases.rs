//! The case file: YAML, read with the line of every case.
//!
//! ```yaml
//! logs:
//!   - name: a warn line's email and address become tokens
//!     source: game                # a logs entry's `service` (default: the only one)
//!     lines: ["2026-11-23T06:01:01.001Z WARN report by jane@example.com from 198.51.100.7"]
//!     expect:                     # the records, in order
//!       - level: warn
//!         time: 2026-11-23T06:01:01.001Z
//!         message: "report by <tok:jane@example.com> from <tok:198.51.100.7>"
//!         attributes: {}          # exactly these (after tags and tokenization)
//!         tokens: [jane@example.com, 198.51.100.7]
//!       - dropped: min_level      # min_level, drop_rule, sampled, pii_drop
//! metrics:
//!   - name: a player id label never leaves the host
//!     series: ['game_players{player_id="p-1234567"} 3']
//!     expect: [{ refused: forbidden_label }]   # or `kept`, or { invalid: reason }
//! ```
//!
//! A record's expectation compares only the fields it names. `<tok:VALUE>` is the token
//! VALUE became; `[REDACTED:name]` is a redaction.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Log cases.
    #[serde(default)]
    pub logs: Vec<Spanned<LogCase>>,
    /// Metric cases.
    #[serde(default)]
    pub metrics: Vec<Spanned<MetricCase>>,
}

/// Lines into one log source, and the records expected out of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogCase {
    /// What the case checks.
    pub name: String,
    /// The `service` of the logs entry the lines go to.
    pub source: Option<String>,
    /// The lines, as the file holds them (multi-line records are joined as configured).
    #[serde(default)]
    pub lines: Vec<String>,
    /// One line, for short cases.
    pub line: Option<String>,
    /// The records out, in order.
    pub expect: Vec<ExpectRecord>,
}

/// One record expected out of the stages.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectRecord {
    /// Dropped, for this reason.
    pub dropped: Option<String>,
    /// The level (`warn`, `unknown`, …).
    pub level: Option<String>,
    /// The time, RFC 3339 (compared as an instant).
    pub time: Option<String>,
    /// The message.
    pub message: Option<String>,
    /// Exactly these attributes.
    pub attributes: Option<BTreeMap<String, String>>,
    /// Exactly these values became tokens (in any order).
    pub tokens: Option<Vec<String>>,
    /// The trace id.
    pub trace_id: Option<String>,
    /// Whether the line failed to parse.
    pub parse_failed: Option<bool>,
}

/// Series into the gate, and its verdicts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricCase {
    /// What the case checks.
    pub name: String,
    /// Prometheus text sample lines, offered in order to one gate.
    pub series: Vec<String>,
    /// One verdict per series.
    pub expect: Vec<ExpectSeries>,
}

/// The gate's verdict on one series.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ExpectSeries {
    /// `kept`.
    Word(String),
    /// `{ refused: reason }` or `{ invalid: reason }`.
    Reason {
        /// Refused by the policy or the budget (folded into overflow).
        refused: Option<String>,
        /// Dropped as a store would refuse it.
        invalid: Option<String>,
    },
}
