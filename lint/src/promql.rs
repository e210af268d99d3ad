//! Just enough PromQL to find the labels an expression names: in selectors' matchers
//! (`metric{label="…"}`), in grouping clauses (`by (…)`, `without (…)`, `on (…)`,
//! `ignoring (…)`, `group_left (…)`, `group_right (…)`), and as the destination or
//! source of `label_replace` / `label_join`. It is a tokenizer with a little context,
//! not a full parser: it never rejects an expression Prometheus accepts, and reports
//! only what it recognises.

/// Where in the expression a label is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelUse {
    /// In a selector's matcher; the selector's metric, if it names one, is known.
    Matcher,
    /// In a grouping or matching clause.
    Grouping,
    /// Written by `label_replace` / `label_join`, or read by them.
    Function,
}

/// A label named by an expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRef {
    /// The label name.
    pub label: String,
    /// Byte offset of the name in the expression.
    pub offset: usize,
    /// The metric of the selector, for matchers that have one.
    pub metric: Option<String>,
    /// How it is used.
    pub usage: LabelUse,
}

/// What an expression names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    /// Labels, in order of appearance.
    pub labels: Vec<LabelRef>,
    /// Metric names of selectors, in order of appearance.
    pub metrics: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    Str(&'a str),
    Punct(u8),
    Other,
}

fn tokenize(expr: &str) -> Vec<(Tok<'_>, usize)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'#' {
            // A comment runs to the end of the line.
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if b.is_ascii_alphabetic() || b == b'_' || b == b':' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            out.push((Tok::Ident(&expr[start..i]), start));
        } else if b == b'"' || b == b'\'' || b == b'`' {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i] != b {
                if bytes[i] == b'\\' && b != b'`' {
                    i += 1;
                }
                i += 1;
            }
            let end = i.min(bytes.len());
            out.push((Tok::Str(&expr[start + 1..end]), start));
            i = end + 1;
        } else if b.is_ascii_digit() || b == b'.' {
            // Numbers and durations (`5m`, `1e3`, `0x1f`) are one token.
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            out.push((Tok::Other, i));
        } else if matches!(b, b'(' | b')' | b'{' | b'}' | b'[' | b']' | b',') {
            out.push((Tok::Punct(b), i));
            i += 1;
        } else {
            // Operators, including multi-byte ones, matter only as separators.
            let len = expr[i..].chars().next().map_or(1, char::len_utf8);
            out.push((Tok::Other, i));
            i += len;
        }
    }
    out
}

const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
];

/// Finds the labels and metrics an expression names.
pub fn references(expr: &str) -> References {
    let toks = tokenize(expr);
    let mut refs = References::default();
    let mut i = 0;
    while i < toks.len() {
        match toks[i].0 {
            Tok::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                let next = toks.get(i + 1).map(|t| t.0);
                if GROUPING.contains(&lower.as_str()) {
                    if next == Some(Tok::Punct(b'(')) {
                        i = read_label_list(&toks, i + 2, &mut refs);
                        continue;
                    }
                } else if next == Some(Tok::Punct(b'(')) {
                    if lower == "label_replace" || lower == "label_join" {
                        function_labels(&toks, i + 1, &lower, &mut refs);
                    }
                } else if KEYWORDS.contains(&lower.as_str()) {
                } else {
                    refs.metrics.push(word.to_string());
                    if next == Some(Tok::Punct(b'{')) {
                        i = read_matchers(&toks, i + 2, Some(word), &mut refs);
                        continue;
                    }
                }
            }
            Tok::Punct(b'{') => {
                i = read_matchers(&toks, i + 1, None, &mut refs);
                continue;
            }
            Tok::Punct(b'[') => {
                // Range or subquery durations: skip to the closing bracket.
                while i < toks.len() && toks[i].0 != Tok::Punct(b']') {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    refs
}

fn read_label_list(toks: &[(Tok<'_>, usize)], mut i: usize, refs: &mut References) -> usize {
    while i < toks.len() {
        match toks[i].0 {
            Tok::Punct(b')') => return i + 1,
            Tok::Ident(label) => refs.labels.push(LabelRef {
                label: label.to_string(),
                offset: toks[i].1,
                metric: None,
                usage: LabelUse::Grouping,
            }),
            // Prometheus 3 allows quoted label names.
            Tok::Str(label) => refs.labels.push(LabelRef {
                label: label.to_string(),
                offset: toks[i].1 + 1,
                metric: None,
                usage: LabelUse::Grouping,
            }),
            _ => {}
        }
        i += 1;
    }
    i
}

fn read_matchers(
    toks: &[(Tok<'_>, usize)],
    mut i: usize,
    metric: Option<&str>,
    refs: &mut References,
) -> usize {
    let start = refs.labels.len();
    let mut expect_label = true;
    let mut named = metric.map(str::to_string);
    while i < toks.len() {
        match toks[i].0 {
            Tok::Punct(b'}') => {
                i += 1;
                break;
            }
            Tok::Punct(b',') => expect_label = true,
            Tok::Ident(label) if expect_label => {
                expect_label = false;
                if label == "__name__" {
                    // `{__name__="x"}` names the metric.
                    if let Some((Tok::Str(value), _)) = toks.get(i + 2) {
                        named = Some((*value).to_string());
                        refs.metrics.push((*value).to_string());
                    }
                } else {
                    refs.labels.push(LabelRef {
                        label: label.to_string(),
                        offset: toks[i].1,
                        metric: None,
                        usage: LabelUse::Matcher,
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    for r in &mut refs.labels[start..] {
        r.metric.clone_from(&named);
    }
    i
}

/// `label_replace(v, "dst", "replacement", "src", "regex")` and
/// `label_join(v, "dst", "sep", "src1", …)`: the strings after the first comma at the
/// call's own depth are labels (dst), and for label_replace the third, for label_join
/// the third and later, are sources.
fn function_labels(toks: &[(Tok<'_>, usize)], open: usize, name: &str, refs: &mut References) {
    let mut depth = 0usize;
    let mut arg = 0usize;
    for (tok, offset) in &toks[open..] {
        match tok {
            Tok::Punct(b'(' | b'{' | b'[') => depth += 1,
            Tok::Punct(b')' | b'}' | b']') => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            Tok::Punct(b',') if depth == 1 => arg += 1,
            Tok::Str(label) if depth == 1 => {
                let is_label = arg == 1
                    || (name == "label_replace" && arg == 3)
                    || (name == "label_join" && arg >= 3);
                if is_label && !label.is_empty() {
                    refs.labels.push(LabelRef {
                        label: (*label).to_string(),
                        offset: offset + 1,
                        metric: None,
                        usage: LabelUse::Function,
                    });
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(expr: &str) -> Vec<(String, LabelUse, Option<String>)> {
        references(expr)
            .labels
            .into_iter()
            .map(|r| (r.label, r.usage, r.metric))
            .collect()
    }

    #[test]
    fn grouping_and_matchers() {
        let found = labels(
            r#"histogram_quantile(0.99, sum by (le, region) (rate(game_tick_duration_seconds_bucket{shard_id="3"}[5m])))"#,
        );
        assert_eq!(
            found,
            vec![
                ("le".into(), LabelUse::Grouping, None),
                ("region".into(), LabelUse::Grouping, None),
                (
                    "shard_id".into(),
                    LabelUse::Matcher,
                    Some("game_tick_duration_seconds_bucket".into())
                ),
            ]
        );
    }

    #[test]
    fn modifiers_after_the_aggregation_and_vector_matching() {
        let found =
            labels("sum(rate(x_total[1m])) without (player_id) / on (region) group_left (az) y");
        let names: Vec<_> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, vec!["player_id", "region", "az"]);
    }

    #[test]
    fn name_matcher_and_bare_selectors() {
        let refs = references(r#"{__name__="up", job="edge"} or absent(up)"#);
        assert_eq!(refs.metrics, vec!["up", "up"]);
        assert_eq!(refs.labels[0].label, "job");
        assert_eq!(refs.labels[0].metric.as_deref(), Some("up"));
    }

    #[test]
    fn label_replace_destination_and_source() {
        let found = labels(r#"label_replace(up, "email", "$1", "instance", "(.*):.*")"#);
        let names: Vec<_> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, vec!["email", "instance"]);
    }

    #[test]
    fn offsets_point_at_the_label() {
        let expr = "sum by (ip) (x)";
        let refs = references(expr);
        assert_eq!(
            &expr[refs.labels[0].offset..refs.labels[0].offset + 2],
            "ip"
        );
    }

    #[test]
    fn keywords_and_durations_are_not_metrics() {
        let refs = references("rate(a_total[5m] offset 1h) > bool 0 and b");
        assert_eq!(refs.metrics, vec!["a_total", "b"]);
    }
}
