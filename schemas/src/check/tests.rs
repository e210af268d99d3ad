use std::path::Path;

use proptest::prelude::*;

use super::*;

fn schema(catalog: &str) -> Schema {
    Schema::new(
        LabelPolicy::shipped(),
        Catalog::from_yaml(Path::new("metrics.yaml"), catalog).expect("valid catalog"),
    )
}

const CATALOG: &str = "\
metrics:
  - name: node_cpu_seconds_total
    type: counter
    unit: seconds
    help: CPU seconds by mode.
    labels:
      mode: { values: [user, system, idle] }
  - name: game_tick_duration_seconds
    type: histogram
    buckets: native
    unit: seconds
    help: Tick time.
    labels:
      shard_id:
  - name: rtt_seconds
    type: histogram
    buckets: classic
    classic_bounds: [0.01, 0.05, 0.1]
    unit: seconds
    help: Edge RTT.
    labels:
      asn_bucket: { max_cardinality: 8 }
";

#[test]
fn allowed_labels_pass() {
    let s = schema(CATALOG);
    assert_eq!(
        s.check_label_names("game_tick_duration_seconds", ["region", "shard_id", "le"]),
        Ok(())
    );
    assert_eq!(s.check_label("node_cpu_seconds_total", "mode"), Ok(()));
}

#[test]
fn forbidden_label_is_refused_with_its_reason() {
    let s = schema(CATALOG);
    let err = s
        .check_label_names("game_tick_duration_seconds", ["shard_id", "player_id"])
        .expect_err("refused");
    assert_eq!(err.reason(), "forbidden_label");
    assert_eq!(err.label(), "player_id");
    let text = err.to_string();
    assert!(text.contains("game_tick_duration_seconds") && text.contains("player_id"));
}

#[test]
fn per_metric_label_is_allowed_only_on_its_metric() {
    let s = schema(CATALOG);
    assert_eq!(s.check_label("node_cpu_seconds_total", "mode"), Ok(()));
    let err = s
        .check_label("game_tick_duration_seconds", "mode")
        .expect_err("mode is declared for node_cpu_seconds_total only");
    assert_eq!(err.reason(), "label_not_allowed");
    let err = s
        .check_label("unknown_metric", "mode")
        .expect_err("refused");
    assert_eq!(err.reason(), "label_not_allowed");
}

#[test]
fn classic_histogram_series_inherit_their_family_labels() {
    let s = schema(CATALOG);
    assert_eq!(
        s.check_label_names("rtt_seconds_bucket", ["asn_bucket", "le"]),
        Ok(())
    );
}

#[test]
fn invalid_label_name() {
    let s = schema(CATALOG);
    let err = s
        .check_label("game_tick_duration_seconds", "shard-id")
        .expect_err("refused");
    assert_eq!(err.reason(), "invalid_label_name");
}

#[test]
fn declared_values_are_enforced() {
    let s = schema(CATALOG);
    assert_eq!(
        s.check_series(
            "node_cpu_seconds_total",
            [("__name__", "node_cpu_seconds_total"), ("mode", "idle")]
        ),
        Ok(())
    );
    let err = s
        .check_series("node_cpu_seconds_total", [("mode", "guest")])
        .expect_err("guest is not declared");
    assert_eq!(err.reason(), "label_value_not_declared");
}

#[test]
fn estimate_multiplies_labels_and_counts_classic_buckets() {
    let s = schema(CATALOG);
    let estimate = s.estimate();
    // cpu: 3 modes; tick: native (1) × shard_id (policy: 4); rtt: (3 bounds + Inf + sum +
    // count = 6) × 8 asn buckets = 48.
    assert_eq!(estimate.total, 3 + 4 + 48);
    assert_eq!(estimate.families[0].name, "rtt_seconds");
    assert_eq!(estimate.families[0].series, 48);
    assert!(estimate.within_budget());
}

#[test]
fn catalog_violations_name_metric_label_and_line() {
    let s = schema(
        "\
metrics:
  - name: bad_total
    type: counter
    help: x
    labels:
      player_id: { max_cardinality: 1 }
      team:
      shard_id:
",
    );
    let found: Vec<_> = s
        .catalog_violations()
        .into_iter()
        .map(|v| (v.position.line, v.rule))
        .collect();
    assert_eq!(
        found,
        vec![(6, "forbidden-label"), (7, "label-not-allowed")],
        "shard_id is bounded by the policy"
    );
}

#[test]
fn unbounded_allowed_label_is_reported() {
    let policy = LabelPolicy::from_yaml(
        Path::new("labels.yaml"),
        "rules:\n  - allow_labels: [shard_id]\n",
    )
    .expect("valid");
    let catalog = Catalog::from_yaml(
        Path::new("m.yaml"),
        "metrics:\n  - name: x_total\n    type: counter\n    help: x\n    labels:\n      shard_id:\n",
    )
    .expect("valid");
    let v = Schema::new(policy, catalog).catalog_violations();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, "unbounded-label");
}

#[test]
fn shipped_catalog_is_clean_and_within_the_budget() {
    let s = Schema::new(LabelPolicy::shipped(), Catalog::shipped());
    assert_eq!(s.catalog_violations(), vec![]);
    let estimate = s.estimate();
    assert_eq!(
        estimate.total, 298,
        "the shipped catalog's estimate changed: update the figure in schemas/README.md"
    );
    assert!(
        estimate.within_budget(),
        "shipped catalog: {estimate}; top: {:?}",
        &estimate.families[..5]
    );
}

proptest! {
    /// Any label that the policy allows everywhere passes on any metric; any forbidden
    /// label is refused on any metric, whatever its case.
    #[test]
    fn policy_decides_for_every_metric(metric in "[a-z_]{1,20}", pick in 0usize..8, upper in any::<bool>()) {
        let s = Schema::new(LabelPolicy::shipped(), Catalog::shipped());
        let allowed: Vec<&str> = s.policy().allowed().collect();
        let forbidden: Vec<&str> = s.policy().forbidden().collect();
        prop_assert!(s.check_label(&metric, allowed[pick % allowed.len()]).is_ok());
        let mut label = forbidden[pick % forbidden.len()].to_string();
        if upper {
            label = label.to_ascii_uppercase();
        }
        let err = s.check_label(&metric, &label).expect_err("forbidden");
        prop_assert_eq!(err.reason(), "forbidden_label");
    }

    /// The estimate is the sum of its families' shares, whatever the catalog.
    #[test]
    fn estimate_total_is_the_sum(bounds in proptest::collection::vec(1u32..20, 1..6), classic in 0usize..4) {
        let mut yaml = String::from("metrics:\n");
        for (i, n) in bounds.iter().enumerate() {
            yaml.push_str(&format!(
                "  - name: m{i}_seconds\n    type: histogram\n    help: x\n    labels:\n      l{i}: {{ max_cardinality: {n} }}\n"
            ));
            if i < classic {
                yaml.push_str("    buckets: classic\n    classic_bounds: [1, 2]\n");
            } else {
                yaml.push_str("    buckets: native\n");
            }
        }
        let s = schema(&yaml);
        let estimate = s.estimate();
        let expected: u64 = bounds
            .iter()
            .enumerate()
            .map(|(i, n)| u64::from(*n) * if i < classic { 5 } else { 1 })
            .sum();
        prop_assert_eq!(estimate.total, expected);
        prop_assert_eq!(estimate.families.iter().map(|f| f.series).sum::<u64>(), expected);
    }
}

#[test]
fn a_value_that_looks_like_personal_data_is_refused_by_name_not_by_value() {
    let schema = schema(CATALOG);
    for (value, looks_like) in [
        ("203.0.113.7", "an IPv4 address"),
        ("val.user@example.com", "an email address"),
        (
            "plr-123456789",
            "an identifier (long number, hex string or id token)",
        ),
        ("player left the match", "free text"),
    ] {
        let v = schema
            .check_series(
                "game_tick_duration_seconds",
                [
                    ("__name__", "game_tick_duration_seconds"),
                    ("shard_id", value),
                ],
            )
            .expect_err("refused");
        assert_eq!(v.reason(), "pii_label_value");
        assert_eq!(v.label(), "shard_id");
        let message = v.to_string();
        assert!(message.contains(looks_like), "{message}");
        assert!(
            !message.contains(value),
            "the message repeats the value: {message}"
        );
    }
    // Ordinary values, numbers in `le`, and declared closed sets pass.
    for (label, value) in [("shard_id", "eu-3"), ("shard_id", "17"), ("le", "1000000")] {
        assert!(
            schema
                .check_series("game_tick_duration_seconds", [(label, value)])
                .is_ok(),
            "{label}={value}"
        );
    }
}

#[test]
fn a_host_label_is_only_checked_for_personal_data() {
    let schema = schema(CATALOG);
    let sha = "7f3c2a1e9b0d4c8f2a6e1b3d5c7f9a0b2c4e6f8a";
    assert!(
        schema
            .check_series("game_tick_duration_seconds", [("build_id", sha)])
            .is_ok()
    );
    let refused = schema
        .check_series(
            "game_tick_duration_seconds",
            [("build_id", "ops@example.com")],
        )
        .expect_err("refused");
    assert_eq!(refused.reason(), "pii_label_value");
}
