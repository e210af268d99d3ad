//! The metric catalog: `schemas/metrics.yaml`.
//!
//! Every metric family a host sends is declared once, with its type, unit and help, and
//! the labels it carries:
//!
//! ```yaml
//! metrics:
//!   - name: node_cpu_seconds_total
//!     type: counter
//!     unit: seconds
//!     help: CPU time spent in each mode, summed over all cores.
//!     labels:
//!       mode: { values: [user, nice, system, idle, iowait, irq, softirq, steal] }
//!   - name: game_tick_duration_seconds
//!     type: histogram
//!     buckets: native
//!     unit: seconds
//!     help: Duration of one server tick.
//!     labels:
//!       shard_id:                      # allowed everywhere; bound from the policy
//! ```
//!
//! A label that is allowed everywhere by the policy may be listed with no bound (the
//! policy's `per_host_cardinality` then applies) or with a tighter one. Any other label
//! must be declared here with `values` (the closed set) or `max_cardinality`: that
//! declaration is what allows it on this metric and nowhere else. Host labels (region,
//! az, …) are attached by the agent and need not be listed.
//!
//! `lint_allow: [naming]` waives the naming-convention warnings for one metric; the
//! shipped catalog uses it only where node_exporter's established names (which existing
//! dashboards query) break the convention.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::names::{is_reserved_label_name, is_valid_label_name, is_valid_metric_name};
use crate::policy::ALWAYS_ALLOWED;
use crate::yaml::{self, LoadError, Position, Problem};

/// The catalog as shipped in `schemas/metrics.yaml`.
pub const SHIPPED_CATALOG_YAML: &str = include_str!("../metrics.yaml");

/// Lint checks a catalog entry may waive with `lint_allow`.
pub const LINT_WAIVERS: &[&str] = &["naming"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    metrics: Vec<RawFamily>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFamily {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<MetricType>,
    #[serde(default)]
    buckets: Option<Spanned<BucketKind>>,
    #[serde(default)]
    classic_bounds: Option<Spanned<Vec<f64>>>,
    #[serde(default)]
    unit: String,
    help: Spanned<String>,
    #[serde(default)]
    labels: HashMap<Spanned<String>, Option<RawBound>>,
    #[serde(default)]
    lint_allow: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBound {
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    max_cardinality: Option<u32>,
}

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    /// A monotonic count; its name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution: native (exponential) or classic buckets.
    Histogram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BucketKind {
    Native,
    Classic,
}

/// How a histogram is sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Buckets {
    /// One native histogram series (exponential buckets).
    Native,
    /// Classic `_bucket` series at these finite upper bounds (plus `+Inf`), with `_sum`
    /// and `_count`.
    Classic(Vec<f64>),
}

/// How many values a label takes on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelBound {
    /// The closed set of values.
    Values(Vec<String>),
    /// At most this many distinct values.
    MaxCardinality(u32),
    /// No bound here: the label must be allowed everywhere by the policy, whose
    /// `per_host_cardinality` (or host-label status) bounds it.
    FromPolicy,
}

/// A label a metric carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSpec {
    /// The label name.
    pub name: String,
    /// Its bound.
    pub bound: LabelBound,
    /// Where the label is declared.
    pub position: Position,
}

/// One metric family of the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricFamily {
    /// The family name (for histograms, without `_bucket`/`_sum`/`_count`).
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// For histograms, how they are sent.
    pub buckets: Option<Buckets>,
    /// The base unit (`seconds`, `bytes`, …), empty when unitless.
    pub unit: String,
    /// One line of help text.
    pub help: String,
    /// The labels it carries besides the host labels, in file order.
    pub labels: Vec<LabelSpec>,
    /// Lint checks waived for this family (see [`LINT_WAIVERS`]).
    pub lint_allow: Vec<String>,
    /// Where the family's `name` is.
    pub position: Position,
}

impl MetricFamily {
    /// The declaration of `label` on this family, if any.
    pub fn label(&self, label: &str) -> Option<&LabelSpec> {
        self.labels.iter().find(|l| l.name == label)
    }

    /// Series one label combination of this family produces: 1 for counters, gauges and
    /// native histograms; buckets + 2 (the `+Inf` bucket, `_sum`, `_count`) for classic.
    pub fn series_per_label_set(&self) -> u64 {
        match &self.buckets {
            Some(Buckets::Classic(bounds)) => bounds.len() as u64 + 1 + 2,
            _ => 1,
        }
    }

    /// Whether a lint check is waived for this family.
    pub fn waives(&self, check: &str) -> bool {
        self.lint_allow.iter().any(|w| w == check)
    }
}

/// A validated metric catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    families: Vec<MetricFamily>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// Loads a catalog file; any problem refuses the whole file.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = yaml::read(path)?;
        Self::from_yaml(path, &text)
    }

    /// Parses and validates catalog YAML; any problem refuses it.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Self, LoadError> {
        let (catalog, problems) = Self::from_yaml_lenient(file, text)?;
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(LoadError::new(file, problems))
        }
    }

    /// Parses catalog YAML, keeping every valid family and listing the problems of the
    /// others (a linter reports them all and goes on). Fails only when the file is not a
    /// catalog at all (YAML syntax, unknown keys, wrong types).
    pub fn from_yaml_lenient(file: &Path, text: &str) -> Result<(Self, Vec<Problem>), LoadError> {
        let raw: RawCatalog = yaml::parse(file, text)?;
        let mut problems = Vec::new();
        let mut catalog = Catalog::default();
        for family in raw.metrics {
            if let Some(family) = validate_family(family, &mut problems) {
                if let Some(&first) = catalog.by_name.get(&family.name) {
                    let first_line = catalog.families[first].position.line;
                    problems.push(Problem::at(
                        family.position,
                        "duplicate-family",
                        format!(
                            "metric family `{}` is declared twice (first on line {first_line}); \
                             merge the two entries",
                            family.name
                        ),
                    ));
                    continue;
                }
                catalog
                    .by_name
                    .insert(family.name.clone(), catalog.families.len());
                catalog.families.push(family);
            }
        }
        problems.sort_by_key(|p| p.position);
        Ok((catalog, problems))
    }

    /// The catalog shipped with this crate (`schemas/metrics.yaml`).
    pub fn shipped() -> Self {
        Self::from_yaml(Path::new("schemas/metrics.yaml"), SHIPPED_CATALOG_YAML)
            .expect("the shipped metrics.yaml is valid (checked by this crate's tests)")
    }

    /// Every family, in file order.
    pub fn families(&self) -> &[MetricFamily] {
        &self.families
    }

    /// The family named exactly `name`.
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.by_name.get(name).map(|&i| &self.families[i])
    }

    /// The family a series belongs to: its own name, or for classic histogram series
    /// (`x_bucket`, `x_sum`, `x_count`) the histogram `x`.
    pub fn family_for_series(&self, series_name: &str) -> Option<&MetricFamily> {
        if let Some(family) = self.family(series_name) {
            return Some(family);
        }
        let base = crate::names::family_of(series_name, |base| {
            self.family(base)
                .is_some_and(|f| f.kind == MetricType::Histogram)
        });
        self.family(base)
    }

    /// Adds the families of `other` that this catalog does not have yet; returns the
    /// names that were already present.
    pub fn merge(&mut self, other: Catalog) -> Vec<String> {
        let mut clashes = Vec::new();
        for family in other.families {
            if self.by_name.contains_key(&family.name) {
                clashes.push(family.name);
                continue;
            }
            self.by_name
                .insert(family.name.clone(), self.families.len());
            self.families.push(family);
        }
        clashes
    }
}

fn validate_family(raw: RawFamily, problems: &mut Vec<Problem>) -> Option<MetricFamily> {
    let position = Position::of(&raw.name);
    let name = raw.name.value;
    let before = problems.len();
    if !is_valid_metric_name(&name) {
        problems.push(Problem::at(
            position,
            "invalid-metric-name",
            format!(
                "`{name}` is not a valid metric name: use letters, digits, underscores and \
                 colons, not starting with a digit"
            ),
        ));
    }
    if raw.help.value.trim().is_empty() {
        problems.push(Problem::at(
            Position::of(&raw.help),
            "missing-help",
            format!("metric `{name}` has empty help; say in one line what it measures"),
        ));
    }

    let kind = raw.kind.value;
    let buckets = match (kind, raw.buckets, raw.classic_bounds) {
        (MetricType::Histogram, None, _) => {
            problems.push(Problem::at(
                Position::of(&raw.kind),
                "missing-key",
                format!("histogram `{name}` needs `buckets: native` or `buckets: classic`"),
            ));
            None
        }
        (MetricType::Histogram, Some(b), bounds) => match (b.value, bounds) {
            (BucketKind::Native, None) => Some(Buckets::Native),
            (BucketKind::Native, Some(bounds)) => {
                problems.push(Problem::at(
                    Position::of(&bounds),
                    "invalid-value",
                    format!("native histogram `{name}` takes no classic_bounds"),
                ));
                None
            }
            (BucketKind::Classic, None) => {
                problems.push(Problem::at(
                    Position::of(&b),
                    "missing-key",
                    format!("classic histogram `{name}` needs classic_bounds: [..]"),
                ));
                None
            }
            (BucketKind::Classic, Some(bounds)) => {
                let values = &bounds.value;
                let ok = !values.is_empty()
                    && values.iter().all(|v| v.is_finite())
                    && values.windows(2).all(|w| w[0] < w[1]);
                if !ok {
                    problems.push(Problem::at(
                        Position::of(&bounds),
                        "invalid-value",
                        format!(
                            "classic_bounds of `{name}` must be finite and strictly increasing \
                             (+Inf is implicit)"
                        ),
                    ));
                }
                Some(Buckets::Classic(bounds.value))
            }
        },
        (_, Some(b), _) => {
            problems.push(Problem::at(
                Position::of(&b),
                "invalid-value",
                format!("`{name}` is not a histogram; remove `buckets`"),
            ));
            None
        }
        (_, None, Some(bounds)) => {
            problems.push(Problem::at(
                Position::of(&bounds),
                "invalid-value",
                format!("`{name}` is not a histogram; remove `classic_bounds`"),
            ));
            None
        }
        (_, None, None) => None,
    };

    let mut raw_labels: Vec<_> = raw.labels.into_iter().collect();
    raw_labels.sort_by_key(|(k, _)| Position::of(k));
    let mut labels = Vec::with_capacity(raw_labels.len());
    for (label, bound) in raw_labels {
        let label_position = Position::of(&label);
        let label_name = label.value;
        if !is_valid_label_name(&label_name) {
            problems.push(Problem::at(
                label_position,
                "invalid-label-name",
                format!(
                    "metric `{name}`: `{label_name}` is not a valid label name: use letters, \
                     digits and underscores, not starting with a digit"
                ),
            ));
            continue;
        }
        if is_reserved_label_name(&label_name) || ALWAYS_ALLOWED.contains(&label_name.as_str()) {
            problems.push(Problem::at(
                label_position,
                "reserved-label",
                format!("metric `{name}`: label `{label_name}` is reserved and cannot be declared"),
            ));
            continue;
        }
        let bound = match bound {
            None
            | Some(RawBound {
                values: None,
                max_cardinality: None,
            }) => LabelBound::FromPolicy,
            Some(RawBound {
                values: Some(_),
                max_cardinality: Some(_),
            }) => {
                problems.push(Problem::at(
                    label_position,
                    "invalid-value",
                    format!(
                        "metric `{name}`, label `{label_name}`: give `values` or \
                         `max_cardinality`, not both"
                    ),
                ));
                continue;
            }
            Some(RawBound {
                values: Some(values),
                ..
            }) => {
                let mut sorted = values.clone();
                sorted.sort();
                sorted.dedup();
                if values.is_empty() || sorted.len() != values.len() {
                    problems.push(Problem::at(
                        label_position,
                        "invalid-value",
                        format!(
                            "metric `{name}`, label `{label_name}`: `values` must be a \
                             non-empty list without repeats"
                        ),
                    ));
                    continue;
                }
                LabelBound::Values(values)
            }
            Some(RawBound {
                max_cardinality: Some(n),
                ..
            }) => {
                if n == 0 {
                    problems.push(Problem::at(
                        label_position,
                        "invalid-value",
                        format!(
                            "metric `{name}`, label `{label_name}`: max_cardinality must be at \
                             least 1"
                        ),
                    ));
                    continue;
                }
                LabelBound::MaxCardinality(n)
            }
        };
        labels.push(LabelSpec {
            name: label_name,
            bound,
            position: label_position,
        });
    }

    let mut lint_allow = Vec::new();
    for waiver in raw.lint_allow {
        if LINT_WAIVERS.contains(&waiver.value.as_str()) {
            lint_allow.push(waiver.value);
        } else {
            problems.push(Problem::at(
                Position::of(&waiver),
                "invalid-value",
                format!(
                    "metric `{name}`: unknown lint_allow `{}` (known: {})",
                    waiver.value,
                    LINT_WAIVERS.join(", ")
                ),
            ));
        }
    }

    (problems.len() == before).then_some(MetricFamily {
        name,
        kind,
        buckets,
        unit: raw.unit,
        help: raw.help.value,
        labels,
        lint_allow,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenient(text: &str) -> (Catalog, Vec<(u32, &'static str)>) {
        let (catalog, problems) =
            Catalog::from_yaml_lenient(Path::new("metrics.yaml"), text).expect("parses");
        let found = problems
            .iter()
            .map(|p| (p.position.map_or(0, |p| p.line), p.code))
            .collect();
        (catalog, found)
    }

    #[test]
    fn shipped_catalog_loads() {
        let catalog = Catalog::shipped();
        assert!(catalog.family("node_cpu_seconds_total").is_some());
        let tick = catalog
            .family("game_tick_duration_seconds")
            .expect("tick histogram");
        assert_eq!(tick.buckets, Some(Buckets::Native));
    }

    #[test]
    fn classic_histogram_series_resolve_to_their_family() {
        let (catalog, found) = lenient(
            "metrics:\n  - name: rtt_seconds\n    type: histogram\n    buckets: classic\n    classic_bounds: [0.01, 0.1]\n    help: x\n",
        );
        assert!(found.is_empty(), "{found:?}");
        let family = catalog
            .family_for_series("rtt_seconds_bucket")
            .expect("found");
        assert_eq!(family.name, "rtt_seconds");
        assert_eq!(family.series_per_label_set(), 5);
        assert!(catalog.family_for_series("rtt_seconds_total").is_none());
    }

    #[test]
    fn duplicate_families_are_reported_on_the_second() {
        let (catalog, found) = lenient(
            "metrics:\n  - name: a_total\n    type: counter\n    help: x\n  - name: a_total\n    type: counter\n    help: y\n",
        );
        assert_eq!(found, vec![(5, "duplicate-family")]);
        assert_eq!(catalog.families().len(), 1);
    }

    #[test]
    fn structural_problems_are_all_reported() {
        let (catalog, found) = lenient(concat!(
            "metrics:\n",
            "  - name: bad-name\n    type: gauge\n    help: x\n",
            "  - name: h_seconds\n    type: histogram\n    help: x\n",
            "  - name: g\n    type: gauge\n    help: x\n    labels:\n      shard-id:\n      mode: { values: [] }\n",
            "  - name: ok_total\n    type: counter\n    help: fine\n",
        ));
        assert_eq!(
            found,
            vec![
                (2, "invalid-metric-name"),
                (6, "missing-key"),
                (12, "invalid-label-name"),
                (13, "invalid-value")
            ]
        );
        assert_eq!(catalog.families().len(), 1);
    }

    #[test]
    fn unknown_keys_refuse_the_file() {
        let err = Catalog::from_yaml(
            Path::new("metrics.yaml"),
            "metrics:\n  - name: a_total\n    type: counter\n    help: x\n    lables: {}\n",
        )
        .expect_err("refused");
        assert_eq!(err.problems[0].code, "unknown-key");
        assert_eq!(err.problems[0].position.map(|p| p.line), Some(5));
    }
}
