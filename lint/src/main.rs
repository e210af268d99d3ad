//! `label-lint [--policy FILE] [--format text|github|json] PATH...`
//!
//! Exit 0: clean (warnings allowed). 1: error-level findings. 2: usage or I/O error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use edge_schema::policy::LabelPolicy;
use label_lint::{Format, Severity, finding::render, run};

/// Keeps PII and unbounded cardinality out of metrics: checks metric catalogs,
/// Prometheus text expositions and rule files against the label policy.
#[derive(Parser, Debug)]
#[command(name = "label-lint", version)]
struct Args {
    /// The label policy (default: the one shipped in schemas/labels.yaml).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// How findings are printed.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Catalogs (.yaml with `metrics`), rule files (.yaml with `groups`), expositions
    /// (.prom, .txt), or directories holding them.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let policy = match &args.policy {
        None => LabelPolicy::shipped(),
        Some(path) => match LabelPolicy::from_file(path) {
            Ok(policy) => policy,
            Err(e) => {
                eprintln!("label-lint: the policy cannot be used:\n{e}");
                return ExitCode::from(2);
            }
        },
    };
    let outcome = run(policy, &args.paths);
    let _ = std::io::stdout().write_all(render(&outcome.findings, args.format).as_bytes());
    for failure in &outcome.failures {
        eprintln!("label-lint: {failure}");
    }
    let errors = outcome
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = outcome.findings.len() - errors;
    eprintln!(
        "label-lint: {errors} error(s), {warnings} warning(s) in {} file(s)",
        outcome.files
    );
    ExitCode::from(outcome.exit_code())
}
