//! The operator kit (`ops/`) checked like code: the stock `promtool` checks the rule files
//! and runs their unit tests, label-lint checks rules and dashboards against the label
//! policy, every alert carries what an on-call needs and links a runbook page that exists,
//! and every dashboard is importable with a datasource variable.
//!
//! Needs Debian's `prometheus` package (it brings `promtool`), as scripts/test installs;
//! `EDGE_PROMTOOL` names another binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use edge_schema::policy::LabelPolicy;
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ops(rel: &str) -> PathBuf {
    root().join("ops").join(rel)
}

fn promtool(args: &[&str]) -> (bool, String) {
    let binary = std::env::var("EDGE_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    edge_tests::procs::run_captured(
        Command::new(&binary)
            .args(args)
            .current_dir(ops("prometheus")),
        "this test needs promtool: install Debian's `prometheus` package (apt-get install \
         prometheus), as scripts/test does, or set EDGE_PROMTOOL",
    )
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

fn rules(file: &str) -> Vec<Rule> {
    let path = ops(&format!("prometheus/{file}"));
    let text = std::fs::read_to_string(&path).expect("rule file");
    let parsed: RuleFile =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parsed.groups.into_iter().flat_map(|g| g.rules).collect()
}

/// The repository URL from the workspace manifest: runbook links start with it.
fn repository() -> String {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("a repository in the workspace manifest")
}

#[test]
fn promtool_checks_the_rule_files() {
    let (ok, out) = promtool(&["check", "rules", "recording.yaml", "alerts.yaml"]);
    assert!(ok, "promtool check rules:\n{out}");
    assert_eq!(out.matches("SUCCESS").count(), 2, "{out}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let (ok, out) = promtool(&[
        "test",
        "rules",
        "tests/alerts_test.yaml",
        "tests/recording_test.yaml",
    ]);
    assert!(ok, "promtool test rules:\n{out}");
    assert_eq!(out.matches("SUCCESS").count(), 2, "{out}");
}

#[test]
fn every_alert_is_unit_tested_firing_and_every_float_recording_rule_checked() {
    let alerts_test =
        std::fs::read_to_string(ops("prometheus/tests/alerts_test.yaml")).expect("alerts test");
    for rule in rules("alerts.yaml") {
        let name = rule.alert.expect("alerts.yaml holds alerts only");
        // An `alertname:` entry whose expected alerts are listed (it fires on a paging
        // series; the same test's other series do not page).
        let entry = format!("alertname: {name}\n");
        let at = alerts_test
            .find(&entry)
            .unwrap_or_else(|| panic!("alert {name} has no promtool test"));
        assert!(
            alerts_test[at..].contains("exp_alerts:"),
            "alert {name}: its test expects no firing alert"
        );
    }
    let recording_test = std::fs::read_to_string(ops("prometheus/tests/recording_test.yaml"))
        .expect("recording test");
    for rule in rules("recording.yaml") {
        let name = rule
            .record
            .expect("recording.yaml holds recording rules only");
        // Native-histogram rules (the gameplay SLIs) are checked by ops_live against a
        // real pipeline: promtool 2.42 cannot write native histograms.
        if name.contains(":game_") {
            continue;
        }
        assert!(
            recording_test.contains(&format!("expr: {name}\n"))
                || recording_test.contains(&format!("expr: round({name}, ")),
            "recording rule {name} has no promtool test"
        );
    }
}

#[test]
fn every_alert_says_how_bad_what_and_where_to_read_on() {
    let repo = repository();
    let mut pages = BTreeSet::new();
    let alerts = rules("alerts.yaml");
    assert!(alerts.len() >= 12, "{} alerts", alerts.len());
    for rule in &alerts {
        let name = rule.alert.as_deref().expect("an alert");
        let severity = rule.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule.annotations
                    .get(key)
                    .is_some_and(|v| !v.trim().is_empty()),
                "{name}: no {key}"
            );
        }
        // The values that matter: the measured value, or for a presence alert (a
        // gateway or host gone, a reload refused) the labels saying which.
        assert!(
            rule.annotations["description"].contains("{{ $value")
                || rule.annotations["description"].contains("{{ $labels."),
            "{name}: the description gives no value"
        );
        let url = &rule.annotations["runbook_url"];
        let rel = url
            .strip_prefix(&format!("{repo}/blob/main/"))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not under {repo}/blob/main/"));
        let page = root().join(rel);
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("{name}: runbook {} ({e})", page.display()));
        assert!(
            text.starts_with(&format!("# {name}\n")),
            "{name}: {rel} is not its page"
        );
        for section in [
            "## What it means",
            "## First three queries",
            "## Likely causes",
            "## Fix",
            "## Confirm recovery",
        ] {
            assert!(text.contains(section), "{rel}: no `{section}`");
        }
        pages.insert(rel.to_string());
    }
    // One page per alert, no orphans.
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(ops("runbooks/alerts")).expect("runbooks/alerts") {
        let name = entry.expect("entry").file_name();
        on_disk.insert(format!("ops/runbooks/alerts/{}", name.to_string_lossy()));
    }
    assert_eq!(pages, on_disk, "runbook pages and alerts differ");
    // The seed's R1–R4, and every link between runbooks resolves.
    for r in [
        "R1-freshness-breach.md",
        "R2-cardinality-spike.md",
        "R3-az-or-stream-loss.md",
        "R4-data-loss-suspicion.md",
    ] {
        assert!(ops(&format!("runbooks/{r}")).is_file(), "no runbook {r}");
    }
    for dir in ["runbooks", "runbooks/alerts"] {
        for entry in std::fs::read_dir(ops(dir)).expect("runbooks") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("page");
            for link in text.split("](").skip(1) {
                let target = link.split(')').next().unwrap_or_default();
                if target.starts_with("http") {
                    continue;
                }
                let resolved = path.parent().expect("dir").join(target);
                assert!(
                    resolved.is_file(),
                    "{}: link {target} does not resolve",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn label_lint_passes_rules_and_dashboards() {
    let policy = LabelPolicy::from_file(&ops("catalog/labels.yaml")).expect("ops policy");
    let outcome = label_lint::run(
        policy,
        &[
            // The gateway's catalog first: of a family both declare (edge_build_info),
            // the first declaration counts, and the gateway's lists every daemon.
            ops("catalog/gateway.yaml"),
            root().join("schemas/metrics.yaml"),
            ops("prometheus"),
            ops("grafana"),
        ],
    );
    let rendered = label_lint::finding::render(&outcome.findings, label_lint::Format::Text);
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert!(outcome.findings.is_empty(), "{rendered}");
    // Two catalogs, two rule files, six dashboards.
    assert_eq!(outcome.files, 10);
}

#[test]
fn the_kits_policy_is_the_shipped_one_with_a_per_replica_budget() {
    let shipped = LabelPolicy::shipped();
    let kit = LabelPolicy::from_file(&ops("catalog/labels.yaml")).expect("ops policy");
    let set = |i: &mut dyn Iterator<Item = &str>| i.map(str::to_string).collect::<BTreeSet<_>>();
    assert_eq!(set(&mut shipped.forbidden()), set(&mut kit.forbidden()));
    assert_eq!(set(&mut shipped.allowed()), set(&mut kit.allowed()));
    assert_eq!(set(&mut shipped.host_labels()), set(&mut kit.host_labels()));
    for label in ["shard_id", "queue", "asn_bucket"] {
        assert_eq!(
            shipped.per_host_cardinality(label),
            kit.per_host_cardinality(label)
        );
    }
    assert!(kit.max_series_per_host() > shipped.max_series_per_host());
}

#[test]
fn dashboards_import_with_a_datasource_variable() {
    let mut titles = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(ops("grafana")).expect("grafana") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("dashboard");
        let d: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files += 1;
        let name = path.display().to_string();
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| u.starts_with("edgepipe-")),
            "{name}: uid"
        );
        titles.insert(d["title"].as_str().expect("title").to_string());
        let vars = d["templating"]["list"].as_array().expect("templating");
        assert!(
            vars.iter().any(|v| v["type"] == "datasource"
                && v["name"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: no Prometheus datasource variable"
        );
        let panels = d["panels"].as_array().expect("panels");
        assert!(panels.len() >= 5, "{name}: {} panels", panels.len());
        for p in panels {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                p["title"]
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {} has no query", p["title"]);
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{name}: {}",
                    p["title"]
                );
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
            }
        }
    }
    assert_eq!(files, 6);
    for want in [
        "edgepipe / Fleet overview",
        "edgepipe / Gameplay SLIs",
        "edgepipe / Freshness",
        "edgepipe / Cardinality",
        "edgepipe / Tenants",
        "edgepipe / Relay",
    ] {
        assert!(titles.contains(want), "no dashboard {want}: {titles:?}");
    }
}
