//! The Prometheus text format (version 0.0.4), both ways: the sample-line parser the
//! agent's scrapes and `label-lint` share (allocation-light, every error with its byte
//! offset), and the escaping every renderer of the format uses.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One sample line.
#[derive(Debug)]
pub struct SampleLine<'a> {
    /// The metric name.
    pub name: &'a str,
    /// Its byte offset in the line.
    pub name_at: usize,
    /// The labels, in the line's order.
    pub labels: Vec<LabelPair<'a>>,
    /// The sample value.
    pub value: f64,
    /// The timestamp (milliseconds), when the line gives one.
    pub timestamp: Option<i64>,
}

/// One label of a sample line.
#[derive(Debug)]
pub struct LabelPair<'a> {
    /// The label name.
    pub name: &'a str,
    /// Its byte offset in the line.
    pub name_at: usize,
    /// The value, unescaped.
    pub value: Cow<'a, str>,
    /// The byte offset of its opening quote.
    pub value_at: usize,
}

/// A line that is not a valid sample, with the byte offset of the problem.
#[derive(Debug)]
pub struct SyntaxError {
    /// The byte offset of the problem in the line.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

fn syntax(at: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        at,
        message: message.into(),
    }
}

fn is_name_char(b: u8, first: bool, colon: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || (colon && b == b':') || (!first && b.is_ascii_digit())
}

fn take_name(line: &str, at: usize, colon: bool) -> usize {
    let bytes = line.as_bytes();
    let mut end = at;
    while end < bytes.len() && is_name_char(bytes[end], end == at, colon) {
        end += 1;
    }
    end
}

fn skip_spaces(line: &str, mut at: usize) -> usize {
    let bytes = line.as_bytes();
    while at < bytes.len() && (bytes[at] == b' ' || bytes[at] == b'\t') {
        at += 1;
    }
    at
}

/// Parses one sample line (not a comment, not blank).
pub fn parse_sample(line: &str) -> Result<SampleLine<'_>, SyntaxError> {
    let bytes = line.as_bytes();
    let start = skip_spaces(line, 0);
    let end = take_name(line, start, true);
    if end == start {
        return Err(syntax(
            start,
            "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
        ));
    }
    let name = &line[start..end];
    let mut at = end;
    let mut labels = Vec::new();
    if bytes.get(at) == Some(&b'{') {
        at += 1;
        loop {
            at = skip_spaces(line, at);
            if bytes.get(at) == Some(&b'}') {
                at += 1;
                break;
            }
            let label_end = take_name(line, at, false);
            if label_end == at {
                return Err(syntax(at, "expected a label name or `}`"));
            }
            let label_name = &line[at..label_end];
            let name_at = at;
            at = skip_spaces(line, label_end);
            if bytes.get(at) != Some(&b'=') {
                return Err(syntax(
                    at,
                    format!("expected `=` after label `{label_name}`"),
                ));
            }
            at = skip_spaces(line, at + 1);
            if bytes.get(at) != Some(&b'"') {
                return Err(syntax(
                    at,
                    format!("expected `\"` to open the value of `{label_name}`"),
                ));
            }
            let value_at = at;
            let (value, after) = parse_quoted(line, at + 1).ok_or_else(|| {
                syntax(
                    value_at,
                    format!("unterminated value of label `{label_name}`"),
                )
            })?;
            labels.push(LabelPair {
                name: label_name,
                name_at,
                value,
                value_at,
            });
            at = skip_spaces(line, after);
            match bytes.get(at) {
                Some(b',') => at += 1,
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return Err(syntax(at, "expected `,` or `}` after a label value")),
            }
        }
    }
    let value_start = skip_spaces(line, at);
    if value_start == at && at < bytes.len() {
        return Err(syntax(at, "expected a space before the sample value"));
    }
    let value_end = line[value_start..]
        .find([' ', '\t'])
        .map_or(line.len(), |i| value_start + i);
    let value = &line[value_start..value_end];
    if value.is_empty() {
        return Err(syntax(value_start, "missing sample value"));
    }
    let Some(value) = parse_value(value) else {
        return Err(syntax(value_start, format!("`{value}` is not a number")));
    };
    let rest = line[value_end..].trim();
    let mut timestamp = None;
    if !rest.is_empty() && !rest.starts_with('#') {
        let ts = rest.split_whitespace().next().unwrap_or(rest);
        match ts.parse::<i64>() {
            Ok(ms) => timestamp = Some(ms),
            Err(_) => {
                return Err(syntax(
                    value_end + line[value_end..].find(ts).unwrap_or(0),
                    format!("`{ts}` is not a timestamp (integer milliseconds)"),
                ));
            }
        }
    }
    Ok(SampleLine {
        name,
        name_at: start,
        labels,
        value,
        timestamp,
    })
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
pub fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// Parses a double-quoted label value starting after the opening quote; returns the
/// value (unescaped) and the offset after the closing quote.
fn parse_quoted(line: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let bytes = line.as_bytes();
    let mut at = start;
    let mut owned: Option<String> = None;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                let value = match owned {
                    Some(s) => Cow::Owned(s),
                    None => Cow::Borrowed(&line[start..at]),
                };
                return Some((value, at + 1));
            }
            b'\\' => {
                let s = owned.get_or_insert_with(|| line[start..at].to_string());
                match bytes.get(at + 1)? {
                    b'n' => s.push('\n'),
                    b'\\' => s.push('\\'),
                    b'"' => s.push('"'),
                    other => {
                        s.push('\\');
                        s.push(char::from(*other));
                    }
                }
                at += 2;
            }
            _ => {
                let ch = line[at..].chars().next()?;
                if let Some(s) = owned.as_mut() {
                    s.push(ch);
                }
                at += ch.len_utf8();
            }
        }
    }
    None
}

/// A label value escaped for the text format (`\\`, `\"`, `\n`).
pub fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A `# HELP` text escaped for the text format (`\\`, `\n`).
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `a="x",b="y"` (no braces), values escaped.
pub fn label_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}=\"{}\"", k.as_ref(), escape_label_value(v.as_ref()));
    }
    out
}

/// `{a="x",b="y"}`, or nothing for no labels.
pub fn label_set<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", label_pairs(pairs))
    }
}

/// A sample value as the format writes it: `+Inf`, `-Inf`, `NaN`, or the shortest float.
pub fn format_value(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_escapes_and_timestamps() {
        let s = parse_sample(
            r#"http_requests_total{method="post",path="a\"b\\c\nd"} 1027 1395066363000"#,
        )
        .expect("valid");
        assert_eq!(s.name, "http_requests_total");
        assert_eq!(s.labels.len(), 2);
        assert_eq!(s.labels[1].value, "a\"b\\c\nd");
        assert!(parse_sample("up 1").is_ok());
        assert!(parse_sample("x{} +Inf").is_ok());
        assert!(parse_sample(r#"x{a="1",} NaN"#).is_ok());
        assert!(parse_sample(r#"x{a="1"} 1 # {trace_id="abc"} 1.0"#).is_ok());
        let s = parse_sample("up 0.5 1395066363000").expect("valid");
        assert_eq!((s.value, s.timestamp), (0.5, Some(1_395_066_363_000)));
        assert!(
            parse_sample("up 1 12.5").is_err(),
            "timestamps are integer milliseconds"
        );
    }

    #[test]
    fn rendering_escapes_what_parsing_unescapes() {
        let value = "a\"b\\c\nd";
        let line = format!("m{} 1", label_set(&[("k", value)]));
        let s = parse_sample(&line).expect("valid");
        assert_eq!(s.labels[0].value, value);
        assert_eq!(label_set::<&str, &str>(&[]), "");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(
            [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 2.5].map(format_value),
            ["+Inf", "-Inf", "NaN", "2.5"]
        );
    }

    #[test]
    fn reports_syntax_errors_with_their_offset() {
        let e = parse_sample(r#"x{a="1" b="2"} 1"#).expect_err("missing comma");
        assert_eq!(e.at, 8);
        let e = parse_sample(r#"x{a="1"} one"#).expect_err("not a number");
        assert_eq!(e.at, 9);
        assert!(parse_sample(r#"x{a="1} 1"#).is_err());
        assert!(parse_sample("x").is_err());
    }
}
