//! `label-lint`: keeps PII and unbounded cardinality out of metrics before they ship.
//!
//! It checks three kinds of files against the label policy (`schemas/labels.yaml`) and the
//! metric catalog (`schemas/metrics.yaml`):
//!
//! - metric catalogs (YAML with a top-level `metrics`): structure, forbidden and
//!   undeclared labels, the per-host series estimate against the budget, naming;
//! - Prometheus text expositions (`.prom`, `.txt`), as scraped from a canary host: the
//!   same label checks on every series, label values that look like personal data or
//!   identifiers, duplicate families and series, the real series count against the
//!   budget;
//! - Prometheus rule files (YAML with a top-level `groups`): labels used in `by`,
//!   `without`, `on`, `ignoring`, `group_left/right`, matchers and `label_replace`;
//! - Grafana dashboards (JSON with a top-level `panels`): the same checks on every panel
//!   query, with Grafana's variables (`$region`, `$__rate_interval`, …) stood in for.
//!
//! The binary is a thin layer over [`Linter`] and [`run`].

use std::path::{Path, PathBuf};

use edge_schema::catalog::Catalog;
use edge_schema::check::{Schema, Violation};
use edge_schema::policy::LabelPolicy;
use serde_saphyr::Spanned;

mod catalog;
mod dashboards;
mod exposition;
pub mod finding;
pub mod naming;
pub mod promql;
mod rules;

pub use finding::{Finding, Format, Severity};

/// Checks files against one policy and one catalog.
#[derive(Debug, Clone)]
pub struct Linter {
    schema: Schema,
}

impl Linter {
    /// A linter for `policy`, with `catalog` declaring the per-metric labels of the
    /// expositions and rule files it checks.
    pub fn new(policy: LabelPolicy, catalog: Catalog) -> Self {
        Linter {
            schema: Schema::new(policy, catalog),
        }
    }

    /// Lints one file whose kind is known.
    pub fn lint(&self, file: &Path, kind: InputKind, text: &str) -> Vec<Finding> {
        match kind {
            InputKind::Catalog => self.lint_catalog(file, text),
            InputKind::Exposition => self.lint_exposition(file, text),
            InputKind::Rules => self.lint_rules(file, text),
            InputKind::Dashboard => self.lint_dashboard(file, text),
        }
    }
}

/// The kinds of file `label-lint` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A metric catalog.
    Catalog,
    /// A Prometheus text exposition.
    Exposition,
    /// A Prometheus rule file.
    Rules,
    /// A Grafana dashboard (JSON).
    Dashboard,
}

/// Tells a file's kind from its name and, for YAML, its top-level key.
pub fn detect(path: &Path, text: &str) -> Result<InputKind, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("prom" | "txt") => Ok(InputKind::Exposition),
        Some("json") => {
            if dashboards::is_dashboard(text) {
                Ok(InputKind::Dashboard)
            } else {
                Err("a JSON file needs a top-level `panels` (a Grafana dashboard)".into())
            }
        }
        Some("yaml" | "yml") => {
            for line in text.lines() {
                let key = line.split(':').next().unwrap_or_default();
                if line.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    match key.trim() {
                        "metrics" => return Ok(InputKind::Catalog),
                        "groups" => return Ok(InputKind::Rules),
                        _ => {}
                    }
                }
            }
            Err("a YAML file needs a top-level `metrics` (a metric catalog) or `groups` (a rule file)".into())
        }
        _ => Err(
            "unknown file type: expected .yaml/.yml (catalog or rules), .prom/.txt (exposition) or .json (dashboard)"
                .into(),
        ),
    }
}

/// The rule name of a [`Violation`] in findings.
fn violation_rule(v: &Violation) -> &'static str {
    match v {
        Violation::InvalidLabelName { .. } => "invalid-label-name",
        Violation::Forbidden { .. } => "forbidden-label",
        Violation::NotAllowed { .. } => "label-not-allowed",
        Violation::ValueNotDeclared { .. } => "label-value-not-declared",
        Violation::PiiLabelValue { .. } => "pii-value",
    }
}

/// 1-based character column of byte offset `byte` in `line`.
fn column_of(line: &str, byte: usize) -> u32 {
    let byte = byte.min(line.len());
    let chars = if line.is_ascii() {
        byte
    } else {
        line[..byte].chars().count()
    };
    u32::try_from(chars + 1).unwrap_or(u32::MAX)
}

fn position_of<T>(spanned: &Spanned<T>) -> (u32, u32) {
    let loc = spanned.referenced;
    (
        u32::try_from(loc.line()).unwrap_or(u32::MAX),
        u32::try_from(loc.column()).unwrap_or(u32::MAX),
    )
}

fn load_error_findings(file: &Path, problems: &[(u32, u32, &'static str, String)]) -> Vec<Finding> {
    problems
        .iter()
        .map(|(line, column, code, message)| {
            Finding::new(
                file,
                (*line, *column),
                Severity::Error,
                code,
                message.clone(),
            )
        })
        .collect()
}

/// "a (48), b (16), c (12)": the five largest.
fn top_list<'a>(items: impl Iterator<Item = (&'a str, u64)>) -> String {
    items
        .take(5)
        .map(|(name, n)| format!("{name} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every finding, grouped by file in the order the files were given.
    pub findings: Vec<Finding>,
    /// Files that could not be read or recognised: `path: reason`.
    pub failures: Vec<String>,
    /// Files linted.
    pub files: usize,
}

impl Outcome {
    /// The exit code: 2 when a file could not be read, else 1 with any error-level
    /// finding, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.failures.is_empty() {
            2
        } else if self.findings.iter().any(|f| f.severity == Severity::Error) {
            1
        } else {
            0
        }
    }
}

/// Lints `paths` (files, or directories searched for `.yaml`, `.yml`, `.prom`, `.txt`,
/// `.json`).
///
/// The catalogs among the inputs declare the per-metric labels for the expositions and
/// rule files; when no catalog is given, the shipped one does.
pub fn run(policy: LabelPolicy, paths: &[PathBuf]) -> Outcome {
    let mut outcome = Outcome::default();
    let mut inputs: Vec<(PathBuf, InputKind, String)> = Vec::new();
    for (path, named) in expand(paths, &mut outcome.failures) {
        match std::fs::read_to_string(&path) {
            Err(e) => outcome
                .failures
                .push(format!("{}: cannot read: {e}", path.display())),
            Ok(text) => match detect(&path, &text) {
                Ok(kind) => inputs.push((path, kind, text)),
                // A file named on the command line must be lintable; one found in a
                // directory (a policy, a CI config) is simply not ours.
                Err(why) if named => outcome.failures.push(format!("{}: {why}", path.display())),
                Err(_) => {}
            },
        }
    }

    let mut catalog: Option<Catalog> = None;
    for (path, _, text) in inputs.iter().filter(|i| i.1 == InputKind::Catalog) {
        if let Ok((found, _)) = Catalog::from_yaml_lenient(path, text) {
            match catalog.as_mut() {
                Some(c) => {
                    c.merge(found);
                }
                None => catalog = Some(found),
            }
        }
    }
    let linter = Linter::new(policy, catalog.unwrap_or_else(Catalog::shipped));
    for (path, kind, text) in &inputs {
        outcome.findings.extend(linter.lint(path, *kind, text));
        outcome.files += 1;
    }
    outcome
}

/// The files to lint, each with whether it was named on the command line.
fn expand(paths: &[PathBuf], failures: &mut Vec<String>) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found, failures);
            found.sort();
            out.extend(found.into_iter().map(|p| (p, false)));
        } else {
            out.push((path.clone(), true));
        }
    }
    out
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>, failures: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            failures.push(format!("{}: cannot read directory: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found, failures);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "prom" | "txt" | "json")
        ) {
            found.push(path);
        }
    }
}
