//! `edge-agent test --config agent.yaml CASES...`: config unit tests for CI.
//!
//! A case file ([`cases`]) gives, per log source, input lines and the records expected
//! after parse → filter → tokenize, and for metrics, series and the gate's verdict on
//! each. The cases run the production code: the logs pipeline's [`Stages`] and the
//! [`Tokenizer`], and the metrics pipeline's `offer_series` over the configured policy,
//! catalog and budget. Tokens are made with a fixed test key ([`TEST_KEY`]) instead of
//! the configured key file, so cases are stable and CI needs no secret; a case writes a
//! token as `<tok:VALUE>`.
//!
//! Output is a test runner's: one line per case, a diff under each failure (`-` what the
//! case expects, `+` what the agent did), a summary, exit 0 when every case passed and 1
//! otherwise. `--format github` adds a workflow annotation per failure.
//!
//! [`Stages`]: crate::logs::pipeline::Stages
//! [`Tokenizer`]: edge_tokenize::Tokenizer

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::{AgentConfig, LabelSource};
use edge_tokenize::{TokenKey, Tokenizer};

pub mod cases;
pub mod logs;
pub mod metrics;

/// The key tokens are made with in cases: fixed, so a case's tokens never change, and
/// not a secret (it is in the source).
pub const TEST_KEY: &[u8] = b"edge-agent test: a fixed key for config unit tests";

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per case, a diff under each failure.
    Text,
    /// The same, plus GitHub Actions annotations (`::error file=…,line=…::…`).
    Github,
}

/// `edge-agent test`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How results are printed.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Case files (YAML).
    #[arg(required = true, value_name = "CASES")]
    pub cases: Vec<PathBuf>,
}

/// One case's result.
#[derive(Debug)]
pub struct Outcome {
    /// The case file.
    pub file: PathBuf,
    /// The case's line.
    pub line: usize,
    /// `logs/<source>: <name>` or `metrics: <name>`.
    pub title: String,
    /// `None`: passed; else the diff or the error.
    pub failure: Option<String>,
}

/// Runs every case of `files` against `config`.
pub fn run_files(config: &AgentConfig, files: &[PathBuf]) -> anyhow::Result<Vec<Outcome>> {
    let key = TokenKey::from_bytes(TEST_KEY).context("the test key")?;
    let tokenizer = Tokenizer::new(key, &config.detectors).context("the config's detectors")?;
    let schema = config.load_schema()?;
    // Host label names: a pushed label of the same name is replaced by the agent's.
    let host_labels: Vec<(String, String)> = config
        .host_labels
        .iter()
        .map(|(k, v)| {
            let value = match v {
                LabelSource::Value(v) => v.clone(),
                LabelSource::Imds => "unknown".into(),
            };
            (k.clone(), value)
        })
        .collect();
    let mut outcomes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading case file {}", file.display()))?;
        let parsed: cases::CaseFile = serde_saphyr::from_str(&text).map_err(|e| {
            let (at, msg) = edge_schema::config::yaml_error(&e);
            anyhow::anyhow!("{}: {at}: {msg}", file.display())
        })?;
        for case in &parsed.logs {
            let line = usize::try_from(case.referenced.line()).unwrap_or(0);
            let case = &case.value;
            let (title, failure) = match pick_source(config, case.source.as_deref()) {
                Err(e) => (format!("logs: {}", case.name), Some(e)),
                Ok(source) => {
                    let title = format!("logs/{}: {}", source.service, case.name);
                    let failure = match logs::run(source, &tokenizer, case) {
                        Err(e) => Some(format!("{e:#}")),
                        Ok(actual) => log_diff(&actual, &case.expect),
                    };
                    (title, failure)
                }
            };
            outcomes.push(Outcome {
                file: file.clone(),
                line,
                title,
                failure,
            });
        }
        for case in &parsed.metrics {
            let line = usize::try_from(case.referenced.line()).unwrap_or(0);
            let case = &case.value;
            let failure = match metrics::run(&schema, config.series_budget, &host_labels, case) {
                Err(e) => Some(e),
                Ok(actual) => {
                    let expected: Vec<String> =
                        case.expect.iter().map(metrics::render_expected).collect();
                    diff(&expected, &actual)
                }
            };
            outcomes.push(Outcome {
                file: file.clone(),
                line,
                title: format!("metrics: {}", case.name),
                failure,
            });
        }
    }
    Ok(outcomes)
}

fn pick_source<'c>(
    config: &'c AgentConfig,
    name: Option<&str>,
) -> Result<&'c crate::config::LogSource, String> {
    let services = || {
        config
            .logs
            .iter()
            .map(|l| l.service.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => config.logs.iter().find(|l| l.service == n).ok_or_else(|| {
            format!(
                "source {n:?}: no logs entry has this service (the config has: {})",
                services()
            )
        }),
        None if config.logs.len() == 1 => Ok(&config.logs[0]),
        None => Err(format!(
            "name the source: the config has {} logs entries ({})",
            config.logs.len(),
            services()
        )),
    }
}

/// The diff of a log case: each record's lines, expected against actual.
fn log_diff(actual: &[logs::Actual], expected: &[cases::ExpectRecord]) -> Option<String> {
    let mut exp_lines = Vec::new();
    let mut act_lines = Vec::new();
    let none = cases::ExpectRecord::default();
    for i in 0..actual.len().max(expected.len()) {
        let header = format!("record {}:", i + 1);
        exp_lines.push(header.clone());
        act_lines.push(header);
        let e = expected.get(i);
        match e {
            Some(e) => exp_lines.extend(
                logs::render_expected(e)
                    .into_iter()
                    .map(|l| format!("  {l}")),
            ),
            None => exp_lines.push("  (none)".into()),
        }
        match actual.get(i) {
            Some(a) => act_lines.extend(
                logs::render_actual(a, e.unwrap_or(&none))
                    .into_iter()
                    .map(|l| format!("  {l}")),
            ),
            None => act_lines.push("  (none)".into()),
        }
        // Keep the two sides aligned record by record.
        while exp_lines.len() < act_lines.len() {
            exp_lines.push(String::new());
        }
        while act_lines.len() < exp_lines.len() {
            act_lines.push(String::new());
        }
    }
    diff(&exp_lines, &act_lines)
}

/// Line by line: `None` when equal, else every line, `-`/`+` where they differ.
fn diff(expected: &[String], actual: &[String]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        let e = expected.get(i).map_or("(none)", String::as_str);
        let a = actual.get(i).map_or("(none)", String::as_str);
        if e == a {
            if !e.is_empty() {
                let _ = writeln!(out, "  {e}");
            }
        } else {
            if !e.is_empty() {
                let _ = writeln!(out, "- {e}");
            }
            if !a.is_empty() {
                let _ = writeln!(out, "+ {a}");
            }
        }
    }
    Some(out)
}

/// The report: one line per case, diffs, a summary.
pub fn render(outcomes: &[Outcome], format: Format) -> String {
    let mut out = String::new();
    for o in outcomes {
        let status = if o.failure.is_some() { "FAILED" } else { "ok" };
        let _ = writeln!(
            out,
            "{}:{}: {} ... {status}",
            o.file.display(),
            o.line,
            o.title
        );
        if let Some(f) = &o.failure {
            for l in f.lines() {
                let _ = writeln!(out, "    {l}");
            }
            if format == Format::Github {
                let _ = writeln!(
                    out,
                    "::error file={},line={},title={}::{}",
                    escape_property(&o.file.display().to_string()),
                    o.line,
                    escape_property(&format!("edge-agent test: {}", o.title)),
                    escape_data(f.trim_end())
                );
            }
        }
    }
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let _ = writeln!(
        out,
        "\ntest result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        outcomes.len() - failed
    );
    out
}

/// Escapes a workflow-command message (as label-lint does).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow-command property.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Runs `edge-agent test`: exit 0 when every case passed, 1 otherwise (or when a file
/// cannot be read).
pub fn run(config_path: &Path, config: &AgentConfig, args: &Args) -> ExitCode {
    match run_files(config, &args.cases) {
        Ok(outcomes) => {
            print!("{}", render(&outcomes, args.format));
            if outcomes.iter().any(|o| o.failure.is_some()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("edge-agent test: {}: {e:#}", config_path.display());
            ExitCode::from(1)
        }
    }
}
