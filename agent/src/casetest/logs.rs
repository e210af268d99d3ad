//! Log cases: lines → the multi-line joiner → the pipeline's [`Stages`] (parse, filter,
//! tags) → the [`Tokenizer`], exactly as `logs::pipeline` runs them, then the records are
//! written out for comparison with tokens shown as `<tok:VALUE>`.

use std::time::{Duration, Instant};

use regex::Regex;

use super::cases::{ExpectRecord, LogCase};
use crate::config::LogSource;
use crate::logs::multiline::Multiline;
use crate::logs::parse::parse_timestamp;
use crate::logs::pipeline::Stages;
use crate::logs::record::LogRecord;
use edge_tokenize::{Tokenizer, Verdict};

/// When the case's lines are "read" (the records' observed time).
const OBSERVED_NS: i64 = 0;

/// What the stages made of one record.
#[derive(Debug)]
pub enum Actual {
    /// Kept: the record as queued, its text with tokens shown as `<tok:VALUE>`, and the
    /// values that became tokens.
    Kept {
        /// The record, tokens written as `<tok:VALUE>`.
        record: LogRecord,
        /// Values that became tokens.
        tokens: Vec<String>,
    },
    /// Dropped, for this reason.
    Dropped(String),
}

/// Runs one case's lines through `source`'s stages.
pub fn run(
    source: &LogSource,
    tokenizer: &Tokenizer,
    case: &LogCase,
) -> anyhow::Result<Vec<Actual>> {
    let mut stages = Stages::new(source)?;
    let lines: Vec<&str> = case
        .line
        .iter()
        .chain(&case.lines)
        .map(String::as_str)
        .collect();
    // The joiner, as the pipeline builds it per file; the case's lines are read at once.
    let now = Instant::now();
    let mut texts: Vec<String> = Vec::new();
    match &source.multiline_start {
        Some(start) => {
            let mut joiner = Multiline::new(
                start,
                source.multiline_max_lines,
                source.multiline_timeout.max(Duration::from_millis(1)),
            )?;
            for line in lines {
                texts.extend(joiner.push(line, now));
                texts.extend(joiner.flush_due(now));
            }
            texts.extend(joiner.flush());
        }
        None => texts.extend(lines.iter().map(|l| (*l).to_owned())),
    }
    let token_re = token_regex();
    let mut out = Vec::new();
    for text in texts {
        let mut record = match stages.prepare(&text, false, OBSERVED_NS, 0) {
            Ok(record) => record,
            Err(dropped) => {
                out.push(Actual::Dropped(dropped.reason.to_owned()));
                continue;
            }
        };
        let before = record.clone();
        match tokenizer.scrub_fields(
            &mut record.message,
            record.trace_id.as_mut(),
            &mut record.attributes,
        ) {
            Verdict::Drop { .. } => out.push(Actual::Dropped("pii_drop".into())),
            Verdict::Keep { .. } => {
                let mut tokens = Vec::new();
                let mut shown = record.clone();
                shown.message = untokenize(
                    &before.message,
                    &record.message,
                    tokenizer,
                    &token_re,
                    &mut tokens,
                );
                if let (Some(b), Some(a)) = (&before.trace_id, &record.trace_id) {
                    shown.trace_id = Some(untokenize(b, a, tokenizer, &token_re, &mut tokens));
                }
                for (i, (k, v)) in record.attributes.iter().enumerate() {
                    let (bk, bv) = &before.attributes[i];
                    shown.attributes[i] = (
                        untokenize(bk, k, tokenizer, &token_re, &mut tokens),
                        untokenize(bv, v, tokenizer, &token_re, &mut tokens),
                    );
                }
                out.push(Actual::Kept {
                    record: shown,
                    tokens,
                });
            }
        }
    }
    Ok(out)
}

/// Tokens and redactions as the tokenizer writes them.
fn token_regex() -> Regex {
    Regex::new(r"tok_[0-9a-f]{8}_[0-9a-f]{16}|\[REDACTED:[^\]]*\]").expect("a constant pattern")
}

/// `after` (tokenized) with each token written as `<tok:VALUE>`, VALUE found in `before`
/// as the text whose token it is (checked with the key, so the answer is exact);
/// redactions stay as written.
fn untokenize(
    before: &str,
    after: &str,
    tokenizer: &Tokenizer,
    token_re: &Regex,
    tokens: &mut Vec<String>,
) -> String {
    if before == after {
        return after.to_owned();
    }
    let mut out = String::with_capacity(after.len());
    let (mut ai, mut bi) = (0, 0);
    let marks: Vec<regex::Match<'_>> = token_re.find_iter(after).collect();
    for (n, m) in marks.iter().enumerate() {
        let literal = &after[ai..m.start()];
        out.push_str(literal);
        bi = (bi + literal.len()).min(before.len());
        ai = m.end();
        let next_literal = &after[ai..marks.get(n + 1).map_or(after.len(), |x| x.start())];
        let ends = (bi + 1..=before.len()).filter(|&e| before.is_char_boundary(e));
        let found = if m.as_str().starts_with("tok_") {
            ends.clone()
                .find(|&e| tokenizer.token(&before[bi..e]) == m.as_str())
        } else {
            ends.clone()
                .find(|&e| before[e..].starts_with(next_literal))
        };
        match found {
            Some(e) if m.as_str().starts_with("tok_") => {
                let value = &before[bi..e];
                out.push_str("<tok:");
                out.push_str(value);
                out.push('>');
                tokens.push(value.to_owned());
                bi = e;
            }
            Some(e) => {
                out.push_str(m.as_str());
                bi = e;
            }
            // A token the line held already: it stays as written.
            None => out.push_str(m.as_str()),
        }
    }
    out.push_str(&after[ai..]);
    out
}

/// The lines a record is written as, for the fields `expect` names.
pub fn render_expected(e: &ExpectRecord) -> Vec<String> {
    if let Some(reason) = &e.dropped {
        return vec![format!("dropped: {reason}")];
    }
    let mut lines = vec!["kept".to_owned()];
    if let Some(l) = &e.level {
        lines.push(format!("level: {}", l.to_ascii_lowercase()));
    }
    if let Some(t) = &e.time {
        lines.push(format!(
            "time: {}",
            parse_timestamp(t).map_or_else(|| format!("{t:?} (not a time)"), show_time)
        ));
    }
    if let Some(m) = &e.message {
        lines.push(format!("message: {m:?}"));
    }
    if let Some(t) = &e.trace_id {
        lines.push(format!("trace_id: {t:?}"));
    }
    if let Some(p) = e.parse_failed {
        lines.push(format!("parse_failed: {p}"));
    }
    if let Some(a) = &e.attributes {
        lines.push(show_attributes(
            a.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ));
    }
    if let Some(t) = &e.tokens {
        lines.push(show_tokens(t));
    }
    lines
}

/// The lines of what came out, for the fields `expect` names (all of them when it names
/// a drop and the record was kept).
pub fn render_actual(a: &Actual, e: &ExpectRecord) -> Vec<String> {
    let (record, tokens) = match a {
        Actual::Dropped(reason) => return vec![format!("dropped: {reason}")],
        Actual::Kept { record, tokens } => (record, tokens),
    };
    let all = e.dropped.is_some();
    let mut lines = vec!["kept".to_owned()];
    if all || e.level.is_some() {
        lines.push(format!("level: {}", record.level.name()));
    }
    if all || e.time.is_some() {
        lines.push(format!(
            "time: {}",
            record
                .timestamp_ns
                .map_or_else(|| "none".to_owned(), show_time)
        ));
    }
    if all || e.message.is_some() {
        lines.push(format!("message: {:?}", record.message));
    }
    if e.trace_id.is_some() {
        lines.push(format!(
            "trace_id: {:?}",
            record.trace_id.as_deref().unwrap_or("")
        ));
    }
    if e.parse_failed.is_some() {
        lines.push(format!("parse_failed: {}", record.parse_failed));
    }
    if all || e.attributes.is_some() {
        let mut attrs: Vec<(&str, &str)> = record
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        attrs.sort();
        lines.push(show_attributes(attrs.into_iter()));
    }
    if all || e.tokens.is_some() {
        lines.push(show_tokens(tokens));
    }
    lines
}

fn show_time(ns: i64) -> String {
    let text = edge_schema::calendar::rfc3339_millis(u64::try_from(ns).unwrap_or(0));
    let extra = ns.rem_euclid(1_000_000);
    if extra == 0 {
        text
    } else {
        format!("{text} +{extra}ns")
    }
}

fn show_attributes<'a>(attrs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = attrs.map(|(k, v)| format!("{k}: {v:?}")).collect();
    format!("attributes: {{{}}}", parts.join(", "))
}

fn show_tokens(tokens: &[String]) -> String {
    let mut t: Vec<&String> = tokens.iter().collect();
    t.sort();
    t.dedup();
    let parts: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
    format!("tokens: [{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_tokenize::{Action, DetectorSpec, TokenKey};

    #[test]
    fn tokens_are_shown_as_the_values_they_replaced() {
        let key = TokenKey::from_bytes(b"0123456789abcdef0123").expect("key");
        let t = Tokenizer::new(
            key,
            &[DetectorSpec {
                name: "player_id".into(),
                pattern: Some(r"p-[0-9]{6,}".into()),
                action: Action::Redact,
            }],
        )
        .expect("tokenizer");
        let before = "a@b.example met p-1234567 at 10.0.0.1, again a@b.example";
        let after = t.scrub_text(before).expect("kept").into_owned();
        let mut tokens = Vec::new();
        let shown = untokenize(before, &after, &t, &token_regex(), &mut tokens);
        assert_eq!(
            shown,
            "<tok:a@b.example> met [REDACTED:player_id] at <tok:10.0.0.1>, again <tok:a@b.example>"
        );
        assert_eq!(tokens, ["a@b.example", "10.0.0.1", "a@b.example"]);
    }
}
