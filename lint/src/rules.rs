//! Prometheus recording and alerting rule files.
//!
//! Every label an expression groups by, matches on, or writes must be allowed, and a
//! recording rule's own `labels` become labels of a stored series, so they are held to
//! the same policy. Alerting rules' `labels` go to the alert, not to a stored series;
//! only forbidden names are refused there.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::finding::{Finding, Severity};
use crate::promql::{LabelUse, references};
use crate::{Linter, load_error_findings, position_of, violation_rule};

#[derive(Deserialize)]
struct RawFile {
    groups: Vec<RawGroup>,
}

// Other group and rule keys (interval, limit, for, annotations, …) are not about labels;
// promtool checks them.
#[derive(Deserialize)]
struct RawGroup {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
struct RawRule {
    #[serde(default)]
    record: Option<Spanned<String>>,
    #[serde(default)]
    alert: Option<Spanned<String>>,
    expr: Spanned<Scalar>,
    #[serde(default)]
    labels: HashMap<Spanned<String>, Scalar>,
}

/// An expression may be a bare number (`expr: 1`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    // A number or boolean names no label; it is accepted and skipped.
    Other(#[allow(dead_code)] serde::de::IgnoredAny),
}

impl Scalar {
    fn text(&self) -> Option<&str> {
        match self {
            Scalar::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl Linter {
    /// Lints a rule file.
    pub fn lint_rules(&self, file: &Path, text: &str) -> Vec<Finding> {
        let raw: RawFile = match edge_schema_parse(file, text) {
            Ok(raw) => raw,
            Err(findings) => return findings,
        };
        let mut findings = Vec::new();
        for rule in raw.groups.into_iter().flat_map(|g| g.rules) {
            let what = match (&rule.record, &rule.alert) {
                (Some(r), _) => format!("recording rule `{}`", r.value),
                (None, Some(a)) => format!("alert `{}`", a.value),
                (None, None) => "rule".to_string(),
            };
            if let Some(expr) = rule.expr.value.text() {
                self.lint_expr(file, text, &rule.expr, expr, &what, &mut findings);
            }
            let mut labels: Vec<_> = rule.labels.into_iter().collect();
            labels.sort_by_key(|(k, _)| (k.referenced.line(), k.referenced.column()));
            for (label, _) in labels {
                let at = position_of(&label);
                let name = label.value.as_str();
                let metric = rule.record.as_ref().map_or("", |r| r.value.as_str());
                if let Some(matched) = self.schema.policy().forbidden_match(name) {
                    findings.push(
                        Finding::new(file, at, Severity::Error, "forbidden-label",
                            format!("{what}: label `{name}` is forbidden by the label policy (matches `{matched}`)"))
                        .label(name),
                    );
                } else if rule.record.is_some()
                    && let Err(v) = self.schema.check_label(metric, name)
                {
                    findings.push(
                        Finding::new(file, at, Severity::Error, violation_rule(&v),
                            format!("{what} adds label `{name}` to the series it records, which is not allowed: it is not in allow_labels"))
                        .metric(metric).label(name),
                    );
                }
            }
        }
        findings.sort_by_key(|f| (f.line, f.column));
        findings
    }

    fn lint_expr(
        &self,
        file: &Path,
        source: &str,
        spanned: &Spanned<Scalar>,
        expr: &str,
        what: &str,
        findings: &mut Vec<Finding>,
    ) {
        self.lint_expr_at(file, expr, what, findings, |offset, label| {
            locate(source, spanned, expr, offset, label)
        });
    }

    /// Lints the labels of one PromQL expression; `at` maps a byte offset in `expr` and
    /// the label found there to its place in the file.
    pub(crate) fn lint_expr_at(
        &self,
        file: &Path,
        expr: &str,
        what: &str,
        findings: &mut Vec<Finding>,
        at: impl Fn(usize, &str) -> (u32, u32),
    ) {
        let refs = references(expr);
        let mut seen: BTreeMap<(String, &'static str), ()> = BTreeMap::new();
        for r in &refs.labels {
            let at = at(r.offset, &r.label);
            if let Some(matched) = self.schema.policy().forbidden_match(&r.label) {
                let how = match r.usage {
                    LabelUse::Grouping => "groups by",
                    LabelUse::Matcher => "matches on",
                    LabelUse::Function => "writes or reads",
                };
                findings.push(
                    Finding::new(file, at, Severity::Error, "forbidden-label",
                        format!("{what}: the expression {how} label `{}`, which is forbidden by the label policy (matches `{matched}`)", r.label))
                    .label(&r.label),
                );
                continue;
            }
            // A label is fine if it is allowed everywhere or declared for a metric the
            // expression uses (for matchers: for the selector's own metric).
            let candidates: Vec<&str> = match (&r.metric, r.usage) {
                (Some(m), LabelUse::Matcher) => vec![m.as_str()],
                _ => refs.metrics.iter().map(String::as_str).collect(),
            };
            let allowed = if candidates.is_empty() {
                self.schema.check_label("", &r.label).is_ok()
            } else {
                candidates
                    .iter()
                    .any(|m| self.schema.check_label(m, &r.label).is_ok())
            };
            if !allowed
                && seen
                    .insert((r.label.clone(), "label-not-allowed"), ())
                    .is_none()
            {
                let metric = candidates.first().copied().unwrap_or("");
                let err = self.schema.check_label(metric, &r.label).err();
                let rule = err.as_ref().map_or("label-not-allowed", violation_rule);
                let mut finding = Finding::new(file, at, Severity::Error, rule,
                    format!("{what}: label `{}` is not allowed for {}: it is not in allow_labels and not declared for {} in the catalog",
                        r.label,
                        if candidates.is_empty() { "any metric".to_string() } else { format!("`{}`", candidates.join("`, `")) },
                        if candidates.len() > 1 { "them" } else { "it" }))
                    .label(&r.label);
                if !metric.is_empty() {
                    finding = finding.metric(metric);
                }
                findings.push(finding);
            }
        }
    }
}

fn edge_schema_parse(file: &Path, text: &str) -> Result<RawFile, Vec<Finding>> {
    serde_saphyr::from_str::<RawFile>(text).map_err(|e| {
        let line = e
            .location()
            .map_or(1, |l| u32::try_from(l.line()).unwrap_or(1));
        let column = e
            .location()
            .map_or(1, |l| u32::try_from(l.column()).unwrap_or(1));
        let message = e.without_snippet().to_string();
        let message = message.lines().next().unwrap_or_default();
        let message = message.rsplit_once(" at line ").map_or(message, |(m, _)| m);
        load_error_findings(
            file,
            &[(
                line,
                column,
                "yaml-syntax",
                format!("not a valid rule file: {message}"),
            )],
        )
    })
}

/// The source position of the `occurrence`th word-bounded `word` in `expr`, found by
/// searching the file from the scalar's start: this maps offsets inside plain, quoted
/// and block scalars alike back to the file.
fn locate(
    source: &str,
    spanned: &Spanned<Scalar>,
    expr: &str,
    offset: usize,
    word: &str,
) -> (u32, u32) {
    let fallback = position_of(spanned);
    let occurrence = word_positions(&expr[..offset.min(expr.len())], word).count();
    let start = byte_of(source, fallback.0, fallback.1);
    match word_positions(&source[start..], word).nth(occurrence) {
        Some(found) => {
            let abs = start + found;
            let line_start = source[..abs].rfind('\n').map_or(0, |i| i + 1);
            let line = source[..abs].matches('\n').count() + 1;
            let column = source[line_start..abs].chars().count() + 1;
            (
                u32::try_from(line).unwrap_or(u32::MAX),
                u32::try_from(column).unwrap_or(u32::MAX),
            )
        }
        None => fallback,
    }
}

fn word_positions<'a>(hay: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let is_word =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    hay.match_indices(word).map(|(i, _)| i).filter(move |&i| {
        !is_word(hay[..i].chars().next_back()) && !is_word(hay[i + word.len()..].chars().next())
    })
}

fn byte_of(source: &str, line: u32, column: u32) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            return offset
                + l.char_indices()
                    .nth(column.saturating_sub(1) as usize)
                    .map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    source.len()
}
