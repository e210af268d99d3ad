//! The label policy: `schemas/labels.yaml`.
//!
//! The file uses the seed design's CI rule format, a list of one-key rules:
//!
//! ```yaml
//! rules:
//!   - forbid_labels: [player_id, ip, raw_ip, email, request_id, free_text]
//!   - allow_labels:  [region, az, cluster, shard_id, instance_type, build_id, queue, asn_bucket]
//!   - max_series_per_host: 300
//! ```
//!
//! Two optional rules feed the per-host series estimate: `host_labels` (labels the agent
//! attaches with one value per host, so they never multiply series) and
//! `per_host_cardinality` (how many values an allowed label takes on one host, e.g.
//! `shard_id: 4`). `forbid_labels` and `allow_labels` may appear more than once; their
//! lists are joined.
//!
//! Forbidden names are matched without regard to case or underscores, so `playerId` and
//! `PLAYER_ID` are refused like `player_id`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::names::{is_reserved_label_name, is_valid_label_name};
use crate::yaml::{self, LoadError, Position, Problem};

/// The budget of active series per host when a policy does not set one: the seed
/// design's "~300 active series/server", which sizes the whole pipeline (150k samples/s).
pub const DEFAULT_MAX_SERIES_PER_HOST: u32 = 300;

/// The label that marks a metric's overflow series, into which the values of series
/// refused by the budget are folded. Reserved: always allowed, never declared.
pub const OVERFLOW_LABEL: &str = "edge_overflow";

/// Labels every metric may carry whatever the policy says: the metric name, classic
/// histogram bounds, and the overflow marker.
pub const ALWAYS_ALLOWED: [&str; 3] = ["__name__", "le", OVERFLOW_LABEL];

/// The policy as shipped in `schemas/labels.yaml`.
pub const SHIPPED_POLICY_YAML: &str = include_str!("../labels.yaml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawRule {
    ForbidLabels(Vec<Spanned<String>>),
    AllowLabels(Vec<Spanned<String>>),
    MaxSeriesPerHost(Spanned<u32>),
    HostLabels(Vec<Spanned<String>>),
    PerHostCardinality(HashMap<Spanned<String>, Spanned<u32>>),
}

/// A validated label policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelPolicy {
    forbidden: BTreeSet<String>,
    forbidden_normalized: BTreeMap<String, String>,
    allowed: BTreeSet<String>,
    host_labels: BTreeSet<String>,
    per_host_cardinality: BTreeMap<String, u32>,
    max_series_per_host: u32,
}

impl LabelPolicy {
    /// Loads and validates a policy file.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = yaml::read(path)?;
        Self::from_yaml(path, &text)
    }

    /// Parses and validates policy YAML; `file` names the source in errors.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Self, LoadError> {
        let raw: RawPolicy = yaml::parse(file, text)?;
        Self::validate(raw).map_err(|problems| LoadError::new(file, problems))
    }

    /// The policy shipped with this crate (`schemas/labels.yaml`).
    pub fn shipped() -> Self {
        Self::from_yaml(Path::new("schemas/labels.yaml"), SHIPPED_POLICY_YAML)
            .expect("the shipped labels.yaml is valid (checked by this crate's tests)")
    }

    fn validate(raw: RawPolicy) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut forbidden: BTreeMap<String, Position> = BTreeMap::new();
        let mut allowed: BTreeMap<String, Position> = BTreeMap::new();
        let mut host: Vec<Spanned<String>> = Vec::new();
        let mut cardinality: Vec<(Spanned<String>, Spanned<u32>)> = Vec::new();
        let mut budget: Option<Spanned<u32>> = None;

        let check_name = |label: &Spanned<String>, problems: &mut Vec<Problem>| -> bool {
            let name = label.value.as_str();
            if !is_valid_label_name(name) {
                problems.push(Problem::at(
                    Position::of(label),
                    "invalid-label-name",
                    format!(
                        "`{name}` is not a valid label name: use letters, digits and \
                         underscores, not starting with a digit"
                    ),
                ));
                false
            } else if is_reserved_label_name(name) || ALWAYS_ALLOWED.contains(&name) {
                problems.push(Problem::at(
                    Position::of(label),
                    "reserved-label",
                    format!("`{name}` is reserved and cannot be listed in a policy"),
                ));
                false
            } else {
                true
            }
        };

        // Valid names go into `into` at their first position; the others are problems.
        let collect = |labels: Vec<Spanned<String>>,
                       into: &mut BTreeMap<String, Position>,
                       problems: &mut Vec<Problem>| {
            for label in labels {
                if check_name(&label, problems) {
                    into.entry(label.value.clone())
                        .or_insert(Position::of(&label));
                }
            }
        };

        for rule in raw.rules {
            match rule {
                RawRule::ForbidLabels(labels) => {
                    collect(labels, &mut forbidden, &mut problems);
                }
                RawRule::AllowLabels(labels) => collect(labels, &mut allowed, &mut problems),
                RawRule::MaxSeriesPerHost(value) => {
                    if let Some(first) = &budget {
                        problems.push(Problem::at(
                            Position::of(&value),
                            "duplicate-rule",
                            format!(
                                "max_series_per_host is set twice (first on line {}); keep one",
                                Position::of(first).line
                            ),
                        ));
                    } else if value.value == 0 {
                        problems.push(Problem::at(
                            Position::of(&value),
                            "invalid-value",
                            "max_series_per_host must be at least 1",
                        ));
                    } else {
                        budget = Some(value);
                    }
                }
                RawRule::HostLabels(labels) => host.extend(labels),
                RawRule::PerHostCardinality(map) => cardinality.extend(map),
            }
        }

        let forbidden_normalized: BTreeMap<String, String> = forbidden
            .keys()
            .map(|name| (normalize(name), name.clone()))
            .collect();
        for (name, position) in &allowed {
            if let Some(original) = forbidden_normalized.get(&normalize(name)) {
                let forbidden_line = forbidden[original].line;
                problems.push(Problem::at(
                    *position,
                    "allowed-and-forbidden",
                    format!(
                        "label `{name}` is both allowed and forbidden (as `{original}` on line \
                         {forbidden_line}); remove it from one list"
                    ),
                ));
            }
        }
        for label in &host {
            if !allowed.contains_key(&label.value) {
                problems.push(Problem::at(
                    Position::of(label),
                    "host-label-not-allowed",
                    format!(
                        "host label `{}` is not in allow_labels; add it there first",
                        label.value
                    ),
                ));
            }
        }
        cardinality.sort_by_key(|(k, _)| Position::of(k));
        for (label, count) in &cardinality {
            if !allowed.contains_key(&label.value) {
                problems.push(Problem::at(
                    Position::of(label),
                    "cardinality-for-unknown-label",
                    format!(
                        "per_host_cardinality names `{}`, which is not in allow_labels",
                        label.value
                    ),
                ));
            }
            if count.value == 0 {
                problems.push(Problem::at(
                    Position::of(count),
                    "invalid-value",
                    format!(
                        "per_host_cardinality of `{}` must be at least 1",
                        label.value
                    ),
                ));
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(LabelPolicy {
            forbidden: forbidden.into_keys().collect(),
            forbidden_normalized,
            allowed: allowed.into_keys().collect(),
            host_labels: host.into_iter().map(|l| l.value).collect(),
            per_host_cardinality: cardinality
                .into_iter()
                .map(|(k, v)| (k.value, v.value))
                .collect(),
            max_series_per_host: budget.map_or(DEFAULT_MAX_SERIES_PER_HOST, |b| b.value),
        })
    }

    /// If `label` is forbidden, the forbidden name it matches (case and underscores
    /// ignored).
    pub fn forbidden_match(&self, label: &str) -> Option<&str> {
        if let Some(name) = self.forbidden.get(label) {
            return Some(name);
        }
        self.forbidden_normalized
            .get(&normalize(label))
            .map(String::as_str)
    }

    /// Whether `label` is forbidden.
    pub fn is_forbidden(&self, label: &str) -> bool {
        self.forbidden_match(label).is_some()
    }

    /// Whether `label` may be used on any metric (the allowlist plus [`ALWAYS_ALLOWED`]).
    pub fn is_allowed_everywhere(&self, label: &str) -> bool {
        ALWAYS_ALLOWED.contains(&label) || self.allowed.contains(label)
    }

    /// The forbidden labels, as written.
    pub fn forbidden(&self) -> impl Iterator<Item = &str> {
        self.forbidden.iter().map(String::as_str)
    }

    /// The globally allowed labels, as written.
    pub fn allowed(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(String::as_str)
    }

    /// Labels with one value per host, attached by the agent.
    pub fn host_labels(&self) -> impl Iterator<Item = &str> {
        self.host_labels.iter().map(String::as_str)
    }

    /// Whether `label` is a host label (one value per host).
    pub fn is_host_label(&self, label: &str) -> bool {
        self.host_labels.contains(label)
    }

    /// How many values an allowed label takes on one host, when the policy says:
    /// 1 for host labels, else `per_host_cardinality`.
    pub fn per_host_cardinality(&self, label: &str) -> Option<u32> {
        if self.host_labels.contains(label) {
            return Some(1);
        }
        self.per_host_cardinality.get(label).copied()
    }

    /// The per-host budget of active series.
    pub fn max_series_per_host(&self) -> u32 {
        self.max_series_per_host
    }
}

/// Folds case and drops underscores, so `playerId`, `PLAYER_ID` and `player_id` compare
/// equal.
fn normalize(label: &str) -> String {
    label
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LabelPolicy, LoadError> {
        LabelPolicy::from_yaml(Path::new("labels.yaml"), text)
    }

    fn problems(text: &str) -> Vec<(u32, &'static str, String)> {
        let err = load(text).expect_err("the policy should be refused");
        err.problems
            .into_iter()
            .map(|p| (p.position.map_or(0, |p| p.line), p.code, p.message))
            .collect()
    }

    #[test]
    fn shipped_policy_has_the_design_defaults() {
        let policy = LabelPolicy::shipped();
        for label in [
            "player_id",
            "ip",
            "raw_ip",
            "email",
            "request_id",
            "free_text",
        ] {
            assert!(policy.is_forbidden(label), "{label} must be forbidden");
        }
        for label in [
            "region",
            "az",
            "cluster",
            "shard_id",
            "instance_type",
            "build_id",
            "queue",
            "asn_bucket",
        ] {
            assert!(
                policy.is_allowed_everywhere(label),
                "{label} must be allowed"
            );
        }
        assert_eq!(policy.max_series_per_host(), 300);
        assert!(policy.is_allowed_everywhere("le"));
        assert!(policy.is_allowed_everywhere(OVERFLOW_LABEL));
        assert_eq!(policy.per_host_cardinality("region"), Some(1));
    }

    #[test]
    fn the_seed_format_alone_loads() {
        let policy = load(
            "rules:\n  - forbid_labels: [player_id]\n  - allow_labels: [region]\n  - max_series_per_host: 120\n",
        )
        .expect("valid");
        assert_eq!(policy.max_series_per_host(), 120);
        assert_eq!(policy.per_host_cardinality("region"), None);
    }

    #[test]
    fn budget_defaults_to_300() {
        let policy = load("rules:\n  - allow_labels: [region]\n").expect("valid");
        assert_eq!(policy.max_series_per_host(), DEFAULT_MAX_SERIES_PER_HOST);
    }

    #[test]
    fn forbidden_matching_ignores_case_and_underscores() {
        let policy = LabelPolicy::shipped();
        assert_eq!(policy.forbidden_match("playerId"), Some("player_id"));
        assert_eq!(policy.forbidden_match("PLAYER_ID"), Some("player_id"));
        assert_eq!(policy.forbidden_match("shard_id"), None);
    }

    #[test]
    fn malformed_yaml_reports_a_line() {
        let found = problems("rules:\n  - allow_labels: [region\n  - max_series_per_host: 3\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "yaml-syntax");
        assert!(found[0].0 >= 2, "{found:?}");
    }

    #[test]
    fn unknown_key_reports_its_line() {
        let found = problems("rules:\n  - allow_labels: [region]\n  - allow_lables: [az]\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "unknown-key");
        assert_eq!(found[0].0, 3, "{found:?}");
        assert!(found[0].2.contains("allow_lables"), "{found:?}");
    }

    #[test]
    fn unknown_top_level_key() {
        let found = problems("rules: []\nrulez: []\n");
        assert_eq!(found[0].1, "unknown-key");
        assert_eq!(found[0].0, 2, "{found:?}");
    }

    #[test]
    fn allowed_and_forbidden_is_refused_with_both_lines() {
        let found = problems(
            "rules:\n  - forbid_labels: [player_id, email]\n  - allow_labels:\n      - region\n      - playerId\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let (line, code, message) = &found[0];
        assert_eq!((*line, *code), (5, "allowed-and-forbidden"));
        assert!(
            message.contains("playerId") && message.contains("line 2"),
            "{message}"
        );
    }

    #[test]
    fn invalid_label_names_are_refused() {
        let found = problems("rules:\n  - allow_labels: [region, shard-id, 9lives, __meta]\n");
        let codes: Vec<_> = found.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(
            codes,
            vec![
                (2, "invalid-label-name"),
                (2, "invalid-label-name"),
                (2, "reserved-label")
            ]
        );
        assert!(found[0].2.contains("shard-id"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems(
            "rules:\n  - forbid_labels: [email]\n  - allow_labels: [email, bad-name]\n  - max_series_per_host: 0\n  - host_labels: [rack]\n",
        );
        let codes: Vec<_> = found.iter().map(|p| p.1).collect();
        assert_eq!(
            codes,
            vec![
                "allowed-and-forbidden",
                "invalid-label-name",
                "invalid-value",
                "host-label-not-allowed"
            ]
        );
    }

    #[test]
    fn display_names_file_line_and_column() {
        let err = load("rules:\n  - allow_labels: [shard-id]\n").expect_err("refused");
        let text = err.to_string();
        assert!(
            text.starts_with("labels.yaml:2:") && text.ends_with("[invalid-label-name]"),
            "{text}"
        );
    }
}
