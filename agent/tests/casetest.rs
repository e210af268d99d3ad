//! `edge-agent test --config FILE CASES...` on the real binary: the shipped example case
//! file passes, a PII pattern that misses a form fails with the exact diff, the GitHub
//! annotation carries it, and a case that names no source says so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// Runs `edge-agent test ARGS` in `dir`: (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("test")
        .args(args)
        .current_dir(dir)
        .env_remove("GATEWAY_URL")
        .output()
        .expect("edge-agent runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_example_passes() {
    let dir = example("");
    let (code, stdout, stderr) = run(
        &dir,
        &["--config", "agent-game.yaml", "agent-game.cases.yaml"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "agent-game.cases.yaml:5: logs/game: an email, an address and a player id become tokens ... ok\n\
         agent-game.cases.yaml:15: logs/game: debug lines stay on the host, and so do health checks ... ok\n\
         agent-game.cases.yaml:26: logs/game: a stack trace is one record ... ok\n\
         agent-game.cases.yaml:37: logs/game: a card number drops the whole record ... ok\n\
         agent-game.cases.yaml:43: logs/server: the server's text lines parse as Fluent Bit parsed them ... ok\n\
         agent-game.cases.yaml:53: metrics: allowed labels pass, forbidden and personal ones never leave the host, a store's refusals are caught ... ok\n\
         \n\
         test result: ok. 6 passed; 0 failed\n"
    );
}

const PII_CONFIG: &str = r#"
logs:
  - { path: /var/log/game/*.log, service: game, parser: logfmt }
tokenize:
  key_file: /etc/edge-agent/tokenize.key
  detectors: [email, { name: player_id, pattern: 'p-[0-9]{6,}' }]
output: { metrics_url: "http://127.0.0.1:9090/api/v1/write", logs_url: "http://127.0.0.1:4318/v1/logs" }
"#;

const PII_CASES: &str = r#"logs:
  - name: a player id in lower case becomes a token
    line: 'level=info msg="player p-1234567 joined"'
    expect:
      - { message: "player <tok:p-1234567> joined", tokens: [p-1234567] }
  - name: a player id in upper case becomes a token
    line: 'level=info msg="player P-7654321 joined" by=jane@example.com'
    expect:
      - level: info
        message: "player <tok:P-7654321> joined"
        attributes: { by: "<tok:jane@example.com>" }
        tokens: [P-7654321, jane@example.com]
"#;

/// A config whose player-id pattern misses the upper-case form, and cases that expect it.
fn pii_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("agent.yaml"), PII_CONFIG).expect("write");
    std::fs::write(dir.path().join("pii.cases.yaml"), PII_CASES).expect("write");
    dir
}

#[test]
fn a_pii_pattern_that_misses_a_form_fails_with_the_exact_diff() {
    let dir = pii_dir();
    let (code, stdout, stderr) = run(dir.path(), &["--config", "agent.yaml", "pii.cases.yaml"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stdout,
        "pii.cases.yaml:2: logs/game: a player id in lower case becomes a token ... ok\n\
         pii.cases.yaml:6: logs/game: a player id in upper case becomes a token ... FAILED\n\
         \x20     record 1:\n\
         \x20       kept\n\
         \x20       level: info\n\
         \x20   -   message: \"player <tok:P-7654321> joined\"\n\
         \x20   +   message: \"player P-7654321 joined\"\n\
         \x20       attributes: {by: \"<tok:jane@example.com>\"}\n\
         \x20   -   tokens: [P-7654321, jane@example.com]\n\
         \x20   +   tokens: [jane@example.com]\n\
         \n\
         test result: FAILED. 1 passed; 1 failed\n"
    );

    // Fixing the pattern fixes the case.
    let fixed = PII_CONFIG.replace("'p-[0-9]{6,}'", "'[pP]-[0-9]{6,}'");
    std::fs::write(dir.path().join("agent.yaml"), fixed).expect("write");
    let (code, stdout, _) = run(dir.path(), &["--config", "agent.yaml", "pii.cases.yaml"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.ends_with("test result: ok. 2 passed; 0 failed\n"),
        "{stdout}"
    );
}

#[test]
fn github_format_annotates_the_failing_case_at_its_line() {
    let dir = pii_dir();
    let (code, stdout, _) = run(
        dir.path(),
        &[
            "--format",
            "github",
            "--config",
            "agent.yaml",
            "pii.cases.yaml",
        ],
    );
    assert_eq!(code, 1);
    let annotations: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(
        annotations,
        [
            "::error file=pii.cases.yaml,line=6,title=edge-agent test%3A logs/game%3A a player id in upper case becomes a token::  record 1:%0A    kept%0A    level: info%0A-   message: \"player <tok:P-7654321> joined\"%0A+   message: \"player P-7654321 joined\"%0A    attributes: {by: \"<tok:jane@example.com>\"}%0A-   tokens: [P-7654321, jane@example.com]%0A+   tokens: [jane@example.com]"
        ]
    );
}

#[test]
fn cases_need_no_key_file() {
    // CI has no tokenization key: the configured one is missing, the cases still run
    // (with the fixed test key) and the lower-case case passes.
    let dir = pii_dir();
    let config = PII_CONFIG.replace(
        "/etc/edge-agent/tokenize.key",
        &dir.path().join("missing.key").display().to_string(),
    );
    std::fs::write(dir.path().join("agent.yaml"), config).expect("write");
    let (code, stdout, stderr) = run(dir.path(), &["--config", "agent.yaml", "pii.cases.yaml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stdout.starts_with(
            "pii.cases.yaml:2: logs/game: a player id in lower case becomes a token ... ok\n"
        ),
        "{stdout}"
    );
}

#[test]
fn a_case_for_a_source_the_config_lacks_fails_naming_the_sources() {
    let dir = pii_dir();
    std::fs::write(
        dir.path().join("bad.cases.yaml"),
        "logs:\n  - name: wrong source\n    source: lobby\n    line: x\n    expect: [{ level: info }]\nmetrics:\n  - name: not a sample\n    series: ['game players 1']\n    expect: [kept]\n",
    )
    .expect("write");
    let (code, stdout, _) = run(dir.path(), &["--config", "agent.yaml", "bad.cases.yaml"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("bad.cases.yaml:2: logs: wrong source ... FAILED\n    source \"lobby\": no logs entry has this service (the config has: game)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bad.cases.yaml:7: metrics: not a sample ... FAILED\n    series[0] \"game players 1\": not a sample line at byte 5"),
        "{stdout}"
    );

    // A case file that is not one stops the run with where.
    std::fs::write(dir.path().join("broken.cases.yaml"), "logs:\n  - nme: x\n").expect("write");
    let (code, stdout, stderr) = run(dir.path(), &["--config", "agent.yaml", "broken.cases.yaml"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("broken.cases.yaml: line 2"), "{stderr}");
}
