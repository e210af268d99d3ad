//! Checks built on the policy and the catalog together.
//!
//! [`Schema::check_label_names`] and [`Schema::check_series`] answer "may this series be
//! sent?" for the exporter (at registration), the agent and the gateway (per request).
//! [`Schema::catalog_violations`] and [`Schema::estimate`] answer "is this catalog within
//! the policy and the budget?" for `label-lint`.

use crate::reasons;
use std::fmt;

use crate::catalog::{Catalog, LabelBound, MetricFamily};
use crate::names::is_valid_label_name;
use crate::policy::LabelPolicy;
use crate::yaml::Position;

/// Why a label (or label set) is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Not a valid Prometheus label name.
    #[error("metric `{metric}`: `{label}` is not a valid label name")]
    InvalidLabelName {
        /// The metric.
        metric: String,
        /// The label.
        label: String,
    },
    /// A forbidden (PII or unbounded) label.
    #[error(
        "metric `{metric}`: label `{label}` is forbidden by the label policy (matches `{matched}`); \
         player-level detail belongs in logs"
    )]
    Forbidden {
        /// The metric.
        metric: String,
        /// The label.
        label: String,
        /// The forbidden name it matched.
        matched: String,
    },
    /// Neither allowed everywhere nor declared for this metric.
    #[error(
        "metric `{metric}`: label `{label}` is not allowed: it is not in the policy's allow_labels \
         and not declared for this metric in the catalog"
    )]
    NotAllowed {
        /// The metric.
        metric: String,
        /// The label.
        label: String,
    },
    /// A value outside the closed set the catalog declares for this label.
    #[error(
        "metric `{metric}`: value `{value}` of label `{label}` is not among its declared values"
    )]
    ValueNotDeclared {
        /// The metric.
        metric: String,
        /// The label.
        label: String,
        /// The value.
        value: String,
    },
    /// A value that looks like personal data or an unbounded identifier (an IP address,
    /// an email, a long id, free text): the label is allowed, this value never is.
    #[error(
        "metric `{metric}`: value of label `{label}` looks like {looks_like}; personal data \
         and unbounded identifiers must never be label values (put them in logs, which are \
         tokenized)"
    )]
    PiiLabelValue {
        /// The metric.
        metric: String,
        /// The label.
        label: String,
        /// What the value looks like (the value itself is never repeated).
        looks_like: &'static str,
    },
}

impl Violation {
    /// A short, bounded reason for counters such as `edge_series_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::InvalidLabelName { .. } => reasons::INVALID_LABEL_NAME,
            Violation::Forbidden { .. } => reasons::FORBIDDEN_LABEL,
            Violation::NotAllowed { .. } => reasons::LABEL_NOT_ALLOWED,
            Violation::ValueNotDeclared { .. } => reasons::LABEL_VALUE_NOT_DECLARED,
            Violation::PiiLabelValue { .. } => reasons::PII_LABEL_VALUE,
        }
    }

    /// The label the violation is about.
    pub fn label(&self) -> &str {
        match self {
            Violation::InvalidLabelName { label, .. }
            | Violation::Forbidden { label, .. }
            | Violation::NotAllowed { label, .. }
            | Violation::ValueNotDeclared { label, .. }
            | Violation::PiiLabelValue { label, .. } => label,
        }
    }
}

/// A problem with one catalog entry against the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogViolation {
    /// Where the label is declared.
    pub position: Position,
    /// A stable rule name: `forbidden-label`, `label-not-allowed` or `unbounded-label`.
    pub rule: &'static str,
    /// What is wrong and how to fix it, naming metric and label.
    pub message: String,
}

/// The per-host series a catalog produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesEstimate {
    /// All families together.
    pub total: u64,
    /// The budget it is measured against.
    pub budget: u32,
    /// Each family's share, largest first (ties in file order).
    pub families: Vec<FamilyEstimate>,
}

impl SeriesEstimate {
    /// Whether the total is within the budget.
    pub fn within_budget(&self) -> bool {
        self.total <= u64::from(self.budget)
    }
}

/// One family's share of a [`SeriesEstimate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyEstimate {
    /// The family.
    pub name: String,
    /// Series per host.
    pub series: u64,
    /// Where the family is declared.
    pub position: Position,
}

/// A label policy with the catalog that declares per-metric labels.
#[derive(Clone, Debug)]
pub struct Schema {
    policy: LabelPolicy,
    catalog: Catalog,
}

impl Schema {
    /// Combines a policy and a catalog.
    pub fn new(policy: LabelPolicy, catalog: Catalog) -> Self {
        Schema { policy, catalog }
    }

    /// The policy.
    pub fn policy(&self) -> &LabelPolicy {
        &self.policy
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Checks one label name for a metric (series name; classic histogram suffixes
    /// resolve to their family).
    pub fn check_label(&self, metric: &str, label: &str) -> Result<(), Violation> {
        self.check_label_in(metric, self.catalog.family_for_series(metric), label)
    }

    fn check_label_in(
        &self,
        metric: &str,
        family: Option<&MetricFamily>,
        label: &str,
    ) -> Result<(), Violation> {
        // The common case first, without allocating: a globally allowed label.
        if self.policy.is_allowed_everywhere(label) {
            return Ok(());
        }
        if !is_valid_label_name(label) {
            return Err(Violation::InvalidLabelName {
                metric: metric.to_string(),
                label: label.to_string(),
            });
        }
        if let Some(matched) = self.policy.forbidden_match(label) {
            return Err(Violation::Forbidden {
                metric: metric.to_string(),
                label: label.to_string(),
                matched: matched.to_string(),
            });
        }
        match family.and_then(|f| f.label(label)) {
            Some(spec) if spec.bound != LabelBound::FromPolicy => Ok(()),
            _ => Err(Violation::NotAllowed {
                metric: metric.to_string(),
                label: label.to_string(),
            }),
        }
    }

    /// Checks the label names of one series; the first violation is returned.
    pub fn check_label_names<'a>(
        &self,
        metric: &str,
        labels: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Violation> {
        let family = self.catalog.family_for_series(metric);
        labels
            .into_iter()
            .try_for_each(|label| self.check_label_in(metric, family, label))
    }

    /// Checks the label names and the values of one series: a value outside the closed
    /// set the catalog declares, or (for the other labels) a value that looks like personal
    /// data or an unbounded identifier ([`crate::values::classify`]; host labels, bounded
    /// by the agent, only for personal data).
    pub fn check_series<'a>(
        &self,
        metric: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), Violation> {
        let family = self.catalog.family_for_series(metric);
        for (label, value) in labels {
            if label == "__name__" {
                continue;
            }
            self.check_label_in(metric, family, label)?;
            if let Some(spec) = family.and_then(|f| f.label(label))
                && let LabelBound::Values(values) = &spec.bound
            {
                if !values.iter().any(|v| v == value) {
                    return Err(Violation::ValueNotDeclared {
                        metric: metric.to_string(),
                        label: label.to_string(),
                        value: value.to_string(),
                    });
                }
                continue;
            }
            if crate::values::is_checked_label(label)
                && let Some(suspect) =
                    crate::values::classify(value, self.policy.is_host_label(label))
            {
                return Err(Violation::PiiLabelValue {
                    metric: metric.to_string(),
                    label: label.to_string(),
                    looks_like: suspect.describe(),
                });
            }
        }
        Ok(())
    }

    /// Problems of the catalog against the policy: forbidden labels, labels neither
    /// allowed everywhere nor bounded for their metric, and allowed labels with no
    /// per-host bound anywhere.
    pub fn catalog_violations(&self) -> Vec<CatalogViolation> {
        let mut out = Vec::new();
        for family in self.catalog.families() {
            for spec in &family.labels {
                let (metric, label) = (&family.name, &spec.name);
                if let Some(matched) = self.policy.forbidden_match(label) {
                    out.push(CatalogViolation {
                        position: spec.position,
                        rule: "forbidden-label",
                        message: format!(
                            "metric `{metric}`: label `{label}` is forbidden by the label policy \
                             (matches `{matched}`); remove it, player-level detail belongs in logs"
                        ),
                    });
                } else if spec.bound == LabelBound::FromPolicy {
                    if !self.policy.is_allowed_everywhere(label) {
                        out.push(CatalogViolation {
                            position: spec.position,
                            rule: "label-not-allowed",
                            message: format!(
                                "metric `{metric}`: label `{label}` is not allowed: it is not in \
                                 allow_labels; declare its `values` or `max_cardinality` here to \
                                 allow it for this metric"
                            ),
                        });
                    } else if self.policy.per_host_cardinality(label).is_none() {
                        out.push(CatalogViolation {
                            position: spec.position,
                            rule: "unbounded-label",
                            message: format!(
                                "metric `{metric}`: label `{label}` has no per-host bound; declare \
                                 `max_cardinality` here or `per_host_cardinality` in the policy"
                            ),
                        });
                    }
                }
            }
        }
        out.sort_by_key(|v| v.position);
        out
    }

    /// Series per host of one family: its series per label set times the per-host
    /// values of each label (host labels count 1; an unbounded label counts 1 and is
    /// reported by [`Schema::catalog_violations`]).
    pub fn family_series(&self, family: &MetricFamily) -> u64 {
        family
            .labels
            .iter()
            .map(|spec| match &spec.bound {
                LabelBound::Values(values) => values.len() as u64,
                LabelBound::MaxCardinality(n) => u64::from(*n),
                LabelBound::FromPolicy => {
                    u64::from(self.policy.per_host_cardinality(&spec.name).unwrap_or(1))
                }
            })
            .fold(family.series_per_label_set(), u64::saturating_mul)
    }

    /// The catalog's series per host, against the policy's budget.
    pub fn estimate(&self) -> SeriesEstimate {
        let mut families: Vec<FamilyEstimate> = self
            .catalog
            .families()
            .iter()
            .map(|f| FamilyEstimate {
                name: f.name.clone(),
                series: self.family_series(f),
                position: f.position,
            })
            .collect();
        let total = families
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.series));
        families.sort_by(|a, b| b.series.cmp(&a.series).then(a.position.cmp(&b.position)));
        SeriesEstimate {
            total,
            budget: self.policy.max_series_per_host(),
            families,
        }
    }
}

impl fmt::Display for SeriesEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} series per host (budget {})", self.total, self.budget)
    }
}

#[cfg(test)]
mod tests;
