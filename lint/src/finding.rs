//! What the linter reports, and the three ways it prints it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How serious a finding is. Errors fail the lint (exit 1); warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A convention is broken; the metric still works.
    Warning,
    /// PII, unbounded cardinality, or something the pipeline will refuse.
    Error,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem at one place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file, as named on the command line.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: u32,
    /// Column (in characters), from 1.
    pub column: u32,
    /// Error or warning.
    pub severity: Severity,
    /// A stable rule name, e.g. `forbidden-label`.
    pub rule: &'static str,
    /// What is wrong, naming the metric and the label, and how to fix it.
    pub message: String,
    /// The metric concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The label concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Finding {
    /// A finding with no metric or label attached yet.
    pub fn new(
        file: &Path,
        (line, column): (u32, u32),
        severity: Severity,
        rule: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            file: file.to_path_buf(),
            line,
            column,
            severity,
            rule,
            message: message.into(),
            metric: None,
            label: None,
        }
    }

    /// Names the metric concerned.
    pub fn metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = Some(metric.into());
        self
    }

    /// Names the label concerned.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// How findings are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:col: error: message [rule]`, like a compiler.
    Text,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`), shown as annotations.
    Github,
    /// One JSON object per line.
    Json,
}

/// Renders findings in `format`, one per line.
pub fn render(findings: &[Finding], format: Format) -> String {
    let mut out = String::new();
    for f in findings {
        match format {
            Format::Text => {
                let _ = writeln!(
                    out,
                    "{}:{}:{}: {}: {} [{}]",
                    f.file.display(),
                    f.line,
                    f.column,
                    f.severity.as_str(),
                    f.message,
                    f.rule
                );
            }
            Format::Github => {
                let _ = writeln!(
                    out,
                    "::{} file={},line={},col={},title={}::{}",
                    f.severity.as_str(),
                    escape_property(&f.file.display().to_string()),
                    f.line,
                    f.column,
                    escape_property(f.rule),
                    escape_data(&f.message)
                );
            }
            Format::Json => {
                let line = serde_json::to_string(f).unwrap_or_else(|e| {
                    format!("{{\"error\":\"cannot serialize a finding: {e}\"}}")
                });
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

/// Escapes a workflow-command message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow-command property value.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Finding {
        Finding::new(
            Path::new("m.prom"),
            (3, 14),
            Severity::Error,
            "forbidden-label",
            "metric `x`: label `player_id` is forbidden, 100%",
        )
        .metric("x")
        .label("player_id")
    }

    #[test]
    fn text_is_compiler_style() {
        assert_eq!(
            render(&[sample()], Format::Text),
            "m.prom:3:14: error: metric `x`: label `player_id` is forbidden, 100% [forbidden-label]\n"
        );
    }

    #[test]
    fn github_escapes_its_special_characters() {
        assert_eq!(
            render(&[sample()], Format::Github),
            "::error file=m.prom,line=3,col=14,title=forbidden-label::metric `x`: label `player_id` is forbidden, 100%25\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let text = render(&[sample(), sample()], Format::Json);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(v["line"], 3);
        assert_eq!(v["severity"], "error");
        assert_eq!(v["label"], "player_id");
    }
}
