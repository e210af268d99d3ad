//! Drives the real `label-lint` binary over the fixtures and checks exit codes and the
//! exact `file:line:col` of every finding.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn lint(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_label-lint"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .output()
        .expect("label-lint runs");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
}

/// `(file:line:col, severity, rule)` of every text-format finding.
fn findings(run: &Run) -> Vec<(String, String, String)> {
    run.stdout
        .lines()
        .map(|line| {
            let (place, rest) = line.split_once(": ").expect("file:line:col: …");
            let (severity, rest) = rest.split_once(": ").expect("severity: …");
            let rule = rest
                .rsplit_once(" [")
                .map(|(_, r)| r.trim_end_matches(']'))
                .expect("[rule]");
            (place.to_string(), severity.to_string(), rule.to_string())
        })
        .collect()
}

fn f(place: &str, severity: &str, rule: &str) -> (String, String, String) {
    (place.into(), severity.into(), rule.into())
}

#[test]
fn clean_catalog_exits_0_with_no_output() {
    let run = lint(&["clean_catalog.yaml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("0 error(s), 0 warning(s) in 1 file(s)"));
}

#[test]
fn shipped_catalog_lints_clean() {
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/metrics.yaml");
    let run = lint(&[catalog.to_str().expect("utf-8 path")]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout, "",
        "the shipped catalog must have no finding at all"
    );
}

#[test]
fn catalog_violations_each_have_their_place() {
    let run = lint(&["catalog_violations.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(
        findings(&run),
        vec![
            f("catalog_violations.yaml:6:7", "error", "forbidden-label"),
            f("catalog_violations.yaml:7:7", "error", "label-not-allowed"),
            f("catalog_violations.yaml:8:11", "warning", "base-unit"),
            f("catalog_violations.yaml:8:11", "warning", "unit-suffix"),
            f(
                "catalog_violations.yaml:17:7",
                "error",
                "invalid-label-name"
            ),
            f("catalog_violations.yaml:18:11", "error", "duplicate-family"),
            f(
                "catalog_violations.yaml:21:11",
                "error",
                "invalid-metric-name"
            ),
            f("catalog_violations.yaml:24:11", "warning", "counter-suffix"),
        ]
    );
    // Every message names the metric, and the label where there is one.
    assert!(
        run.stdout
            .contains("metric `game_chat_messages_total`: label `player_id` is forbidden")
    );
    assert!(run.stdout.contains("label `channel` is not allowed"));
    assert!(run.stdout.contains("`shard-id` is not a valid label name"));
    assert!(
        run.stdout
            .contains("counter `game_crashes` should end in `_total`")
    );
}

#[test]
fn catalog_over_budget_names_the_top_contributors() {
    let run = lint(&["catalog_over_budget.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(
        findings(&run),
        vec![f("catalog_over_budget.yaml:1:1", "error", "series-budget")]
    );
    // (8 bounds + Inf + sum + count) × 32 ASN buckets = 352, + 4 shards.
    assert!(
        run.stdout
            .contains("an estimated 356 series per host, over the budget of 300"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "top contributors: game_session_duration_seconds (352), game_players_connected (4)"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn clean_exposition_exits_0() {
    let run = lint(&["exposition_clean.prom"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout, "");
}

#[test]
fn exposition_with_player_id_label_is_refused() {
    let run = lint(&["exposition_player_id.prom"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        findings(&run),
        vec![f(
            "exposition_player_id.prom:4:36",
            "error",
            "forbidden-label"
        )]
    );
    assert!(
        run.stdout
            .contains("metric `game_actions_total`: label `player_id`")
    );
    assert!(
        run.stdout.contains("(2 series)"),
        "repeats are counted, not repeated"
    );
}

#[test]
fn exposition_with_ip_values_is_refused() {
    let run = lint(&["exposition_ip_value.prom"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        findings(&run),
        vec![
            f("exposition_ip_value.prom:2:45", "error", "pii-value"),
            f(
                "exposition_ip_value.prom:4:33",
                "error",
                "label-not-allowed"
            ),
            f("exposition_ip_value.prom:4:38", "error", "pii-value"),
        ]
    );
    assert!(
        run.stdout
            .contains("label `cluster` looks like an IPv4 address (`10.20.30.40`)")
    );
    assert!(
        run.stdout
            .contains("label `peer` looks like an IPv6 address")
    );
}

#[test]
fn exposition_structure_problems() {
    let run = lint(&["exposition_messy.prom"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        findings(&run),
        vec![
            f("exposition_messy.prom:3:1", "error", "duplicate-series"),
            f("exposition_messy.prom:6:1", "error", "duplicate-family"),
            f("exposition_messy.prom:7:1", "warning", "undeclared-metric"),
            f("exposition_messy.prom:7:1", "warning", "metric-name-case"),
            f("exposition_messy.prom:8:36", "error", "exposition-syntax"),
            f(
                "exposition_messy.prom:9:24",
                "error",
                "label-value-not-declared"
            ),
        ]
    );
}

#[test]
fn exposition_over_a_policy_budget() {
    let run = lint(&[
        "--policy",
        "policy_small_budget.yaml",
        "exposition_clean.prom",
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let found = findings(&run);
    assert!(
        found.contains(&f("exposition_clean.prom:1:1", "error", "series-budget")),
        "{found:?}"
    );
    assert!(
        run.stdout
            .contains("4 series, over the per-host budget of 3")
    );
    assert!(
        run.stdout
            .contains("top contributors: node_cpu_seconds_total (2)")
    );
}

#[test]
fn rule_file_grouping_by_a_forbidden_label() {
    let run = lint(&["rules_forbidden.yaml"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        findings(&run),
        vec![
            f("rules_forbidden.yaml:5:33", "error", "forbidden-label"),
            f("rules_forbidden.yaml:8:54", "error", "forbidden-label"),
            f("rules_forbidden.yaml:12:34", "error", "forbidden-label"),
            f("rules_forbidden.yaml:12:46", "error", "label-not-allowed"),
            f("rules_forbidden.yaml:14:11", "error", "label-not-allowed"),
        ]
    );
    assert!(run.stdout.contains("groups by label `player_id`"));
    assert!(run.stdout.contains("matches on label `email`"));
}

#[test]
fn clean_rule_file_exits_0() {
    let run = lint(&["rules_clean.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout, "");
}

#[test]
fn github_format_annotates() {
    let run = lint(&["--format", "github", "exposition_player_id.prom"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with(
            "::error file=exposition_player_id.prom,line=4,col=36,title=forbidden-label::metric `game_actions_total`"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn json_format_is_one_object_per_finding() {
    let run = lint(&["--format", "json", "exposition_ip_value.prom"]);
    assert_eq!(run.code, 1);
    let objects: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["file"], "exposition_ip_value.prom");
    assert_eq!(objects[0]["line"], 2);
    assert_eq!(objects[0]["column"], 45);
    assert_eq!(objects[0]["rule"], "pii-value");
    assert_eq!(objects[0]["metric"], "game_players_connected");
    assert_eq!(objects[0]["label"], "cluster");
}

#[test]
fn warnings_alone_exit_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("warn.prom");
    std::fs::write(&file, "# TYPE custom_thing gauge\ncustom_thing 1\n").expect("write");
    let run = lint(&[file.to_str().expect("utf-8")]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("warning:"));
}

#[test]
fn catalogs_given_with_expositions_declare_their_labels() {
    // `mode` is declared in clean_catalog.yaml for game_matches_started_total; with the
    // shipped catalog alone it is not allowed there.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("matches.prom");
    std::fs::write(
        &file,
        "# TYPE game_matches_started_total counter\ngame_matches_started_total{mode=\"ranked\",queue=\"eu\"} 4\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    assert_eq!(lint(&[path]).code, 1);
    let run = lint(&["clean_catalog.yaml", path]);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn directories_are_searched() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        fixture("exposition_player_id.prom"),
        dir.path().join("a.prom"),
    )
    .expect("copy");
    std::fs::copy(fixture("rules_clean.yaml"), dir.path().join("b.yaml")).expect("copy");
    std::fs::write(dir.path().join("labels.yaml"), "rules: []\n").expect("write");
    let run = lint(&[dir.path().to_str().expect("utf-8")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("in 2 file(s)"),
        "the policy file in the directory is not linted: {}",
        run.stderr
    );
}

#[test]
fn io_and_usage_errors_exit_2() {
    let run = lint(&["does_not_exist.prom"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("does_not_exist.prom: cannot read"),
        "{}",
        run.stderr
    );

    let run = lint(&[]);
    assert_eq!(run.code, 2, "no PATH is a usage error");

    let run = lint(&["--format", "xml", "clean_catalog.yaml"]);
    assert_eq!(run.code, 2);

    let run = lint(&["--policy", "policy_broken.yaml", "clean_catalog.yaml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("policy_broken.yaml:3:20: label `email` is both allowed and forbidden"),
        "{}",
        run.stderr
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let odd = dir.path().join("notes.yaml");
    std::fs::write(&odd, "hello: world\n").expect("write");
    let run = lint(&[odd.to_str().expect("utf-8")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("top-level `metrics`"), "{}", run.stderr);
}

#[test]
fn an_unreadable_file_does_not_hide_the_others() {
    let run = lint(&["does_not_exist.prom", "exposition_player_id.prom"]);
    assert_eq!(run.code, 2);
    assert_eq!(findings(&run).len(), 1, "the readable file is still linted");
}

#[test]
fn malformed_catalog_yaml_is_a_finding_with_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "metrics:\n  - name: a_total\n    type: counter\n    help: x\n    lables: {}\n",
    )
    .expect("write");
    let run = lint(&[file.to_str().expect("utf-8")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("bad.yaml:5:5: error:"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("[unknown-key]"));
}

#[test]
fn exposition_values_that_are_emails_ids_or_text_are_refused() {
    let run = lint(&["exposition_unbounded_values.prom"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        findings(&run),
        vec![
            f(
                "exposition_unbounded_values.prom:2:44",
                "error",
                "pii-value"
            ),
            f(
                "exposition_unbounded_values.prom:3:24",
                "error",
                "unbounded-value"
            ),
        ],
        "one finding per family, label and rule, counted: {}",
        run.stdout
    );
    assert!(run.stdout.contains("looks like an email address"));
    assert!(run.stdout.contains("looks like a UUID"));
    assert!(run.stdout.contains("(3 series)"), "{}", run.stdout);
}

#[test]
fn dashboard_queries_are_checked_where_they_are_written() {
    let run = lint(&["dashboard_forbidden.json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        findings(&run),
        vec![
            f("dashboard_forbidden.json:5:65", "error", "forbidden-label"),
            f("dashboard_forbidden.json:12:50", "error", "forbidden-label"),
            f(
                "dashboard_forbidden.json:22:51",
                "error",
                "label-not-allowed"
            ),
            f("dashboard_forbidden.json:23:61", "error", "forbidden-label"),
        ]
    );
    // Panels inside a row are found, and messages name the panel and the query.
    assert!(
        run.stdout
            .contains("panel `Players` query A: the expression groups by label `player_id`")
    );
    assert!(
        run.stdout
            .contains("panel `Ticks` query B: the expression matches on label `email`")
    );
    // A variable's `label_values` reads its label like a grouping.
    assert!(
        run.stdout
            .contains("variable `player`: the expression groups by label `player_id`")
    );
}

#[test]
fn clean_dashboard_with_grafana_variables_exits_0() {
    let run = lint(&["dashboard_clean.json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn json_that_is_not_a_dashboard_is_refused_when_named_and_skipped_in_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("package.json");
    std::fs::write(&other, "{\"name\": \"not a dashboard\"}\n").expect("write");
    std::fs::copy(
        fixture("dashboard_forbidden.json"),
        dir.path().join("d.json"),
    )
    .expect("copy");
    let run = lint(&[other.to_str().expect("utf-8")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("a top-level `panels`"),
        "{}",
        run.stderr
    );
    let run = lint(&[dir.path().to_str().expect("utf-8")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("in 1 file(s)"), "{}", run.stderr);
}

#[test]
fn the_operator_kit_lints_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = |rel: &str| root.join(rel).to_str().expect("utf-8").to_string();
    let args = [
        "--policy".to_string(),
        p("ops/catalog/labels.yaml"),
        // The gateway's catalog first: where both declare a family (edge_build_info),
        // the first one's labels are the linter's, and the gateway's list every daemon.
        p("ops/catalog/gateway.yaml"),
        p("schemas/metrics.yaml"),
        p("ops/prometheus"),
        p("ops/grafana"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = lint(&args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    // 2 catalogs, 2 rule files, 6 dashboards (the promtool test files are skipped).
    assert!(run.stderr.contains("in 10 file(s)"), "{}", run.stderr);
}
