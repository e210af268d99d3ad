//! Grafana dashboards (JSON): every panel query is checked like a rule's expression —
//! no forbidden label anywhere, no label outside the policy and the catalog in `by`,
//! `without`, `on`, `ignoring`, matchers and `label_replace`.
//!
//! Grafana's interval variables (`$__rate_interval`, `$__interval`, `$__range`, …) are
//! stood in for by a duration of the same length before the query is read, so positions
//! stay those of the file; other variables (`$region`) only ever appear inside matcher
//! strings in a sound dashboard and are left as they are.

use std::path::Path;

use serde_json::Value;

use crate::Linter;
use crate::finding::{Finding, Severity};

/// Whether `text` looks like a Grafana dashboard: a JSON object with a `panels` array.
pub(crate) fn is_dashboard(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v.get("panels").is_some_and(Value::is_array))
}

/// A panel query found in a dashboard.
struct Query {
    /// The panel's title and the target's refId, for messages.
    what: String,
    expr: String,
    /// For a query rewritten before linting (a variable's `label_values`): the text as
    /// written, whose place in the file every finding points at.
    at: Option<String>,
}

fn collect(panels: &[Value], out: &mut Vec<Query>) {
    for panel in panels {
        let title = panel
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("(untitled)");
        if let Some(targets) = panel.get("targets").and_then(Value::as_array) {
            for target in targets {
                if let Some(expr) = target.get("expr").and_then(Value::as_str) {
                    let ref_id = target.get("refId").and_then(Value::as_str).unwrap_or("?");
                    out.push(Query {
                        what: format!("panel `{title}` query {ref_id}"),
                        expr: expr.to_string(),
                        at: None,
                    });
                }
            }
        }
        // Rows hold their collapsed panels.
        if let Some(inner) = panel.get("panels").and_then(Value::as_array) {
            collect(inner, out);
        }
    }
}

/// The expression with Grafana's `$__…` variables outside strings replaced by `5m` and
/// spaces, keeping every byte offset.
pub(crate) fn stand_in_variables(expr: &str) -> String {
    let bytes = expr.as_bytes();
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' && q != b'`' && i + 1 < bytes.len() {
                out.push_str(&expr[i..i + 2]);
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
            }
        } else if matches!(b, b'"' | b'\'' | b'`') {
            quote = Some(b);
        } else if b == b'$' {
            let braced = bytes.get(i + 1) == Some(&b'{');
            let name_start = if braced { i + 2 } else { i + 1 };
            let mut end = name_start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            let name = &expr[name_start..end];
            if braced && bytes.get(end) == Some(&b'}') {
                end += 1;
            }
            if name.starts_with("__") {
                let len = end - i;
                out.push_str("5m");
                out.push_str(&" ".repeat(len.saturating_sub(2)));
                i = end;
                continue;
            }
        }
        let len = expr[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&expr[i..i + len]);
        i += len;
    }
    out
}

/// `label_values(selector, label)` as `count by (label) (selector)`, so the label is
/// checked like a grouping on the selector's metric; `None` for other variable queries.
fn label_values_as_grouping(query: &str) -> Option<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    let label = label.trim();
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(format!("count by ({label}) ({})", selector.trim()))
}

/// Line and column (1-based) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

impl Linter {
    /// Lints a Grafana dashboard's panel queries.
    pub fn lint_dashboard(&self, file: &Path, text: &str) -> Vec<Finding> {
        let root: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return vec![Finding::new(
                    file,
                    (
                        u32::try_from(e.line()).unwrap_or(1),
                        u32::try_from(e.column()).unwrap_or(1),
                    ),
                    Severity::Error,
                    "json-syntax",
                    format!("not a valid dashboard: {e}"),
                )];
            }
        };
        let mut queries = Vec::new();
        if let Some(panels) = root.get("panels").and_then(Value::as_array) {
            collect(panels, &mut queries);
        }
        // Template variables' `label_values(selector, label)`: the label is read from
        // the selector's metric, like a grouping.
        if let Some(vars) = root.pointer("/templating/list").and_then(Value::as_array) {
            for var in vars {
                let query = match var.get("query") {
                    Some(Value::String(q)) => Some(q.as_str()),
                    Some(q) => q.get("query").and_then(Value::as_str),
                    None => None,
                };
                let name = var.get("name").and_then(Value::as_str).unwrap_or("?");
                if let Some(expr) = query.and_then(label_values_as_grouping) {
                    queries.push(Query {
                        what: format!("variable `{name}`"),
                        expr,
                        at: query.map(str::to_string),
                    });
                }
            }
        }
        let mut findings = Vec::new();
        for q in &queries {
            // Where the query's JSON string starts in the file (its first occurrence);
            // without escapes inside, offsets in the query map one to one after the quote.
            let written = q.at.as_ref().unwrap_or(&q.expr);
            let encoded = serde_json::to_string(written).unwrap_or_default();
            let start = text.find(&encoded);
            let expr = stand_in_variables(&q.expr);
            self.lint_expr_at(file, &expr, &q.what, &mut findings, |offset, _| {
                start.map_or((1, 1), |s| {
                    if q.at.is_some() {
                        return line_col(text, s + 1);
                    }
                    let prefix = serde_json::to_string(q.expr.get(..offset).unwrap_or(&q.expr))
                        .map_or(0, |p| p.len().saturating_sub(1));
                    line_col(text, s + prefix)
                })
            });
        }
        findings.sort_by_key(|f| (f.line, f.column));
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_variables_are_stood_in_for_outside_strings_only() {
        let e = r#"sum by (region) (rate(x{region=~"$region"}[$__rate_interval]))"#;
        let s = stand_in_variables(e);
        assert_eq!(s.len(), e.len());
        assert_eq!(
            s,
            r#"sum by (region) (rate(x{region=~"$region"}[5m              ]))"#
        );
        assert_eq!(stand_in_variables("x[${__range}]"), "x[5m        ]");
    }

    #[test]
    fn label_values_reads_a_label_like_a_grouping() {
        assert_eq!(
            label_values_as_grouping(r#"label_values(x{region=~"$region"}, cluster)"#).as_deref(),
            Some(r#"count by (cluster) (x{region=~"$region"})"#)
        );
        assert_eq!(label_values_as_grouping("query_result(up)"), None);
        assert_eq!(label_values_as_grouping("label_values(x, )"), None);
    }

    #[test]
    fn a_dashboard_has_panels() {
        assert!(is_dashboard(r#"{"panels": []}"#));
        assert!(!is_dashboard(r#"{"dashboards": []}"#));
        assert!(!is_dashboard("not json"));
    }
}
