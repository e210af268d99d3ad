//! Prometheus text expositions (`.prom`, `.txt`), as scraped from a canary host.
//!
//! The parser is hand-written and allocation-light: a 50,000-line exposition lints in a
//! few milliseconds (see the crate README).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use edge_schema::catalog::{LabelBound, MetricType};
use edge_schema::check::Violation;
use edge_schema::exposition::parse_sample;
use edge_schema::names::{is_valid_label_name, is_valid_metric_name};

use crate::finding::{Finding, Severity};
use crate::{Linter, column_of, violation_rule};
use edge_schema::values::classify;

/// What the exposition says about a family.
#[derive(Default)]
struct Family {
    kind: Option<&'static str>,
    type_line: Option<u32>,
    first_line: u32,
    series: u64,
    last_group: usize,
    sample_name: Option<String>,
    split_reported: bool,
}

fn type_of(word: &str) -> Option<&'static str> {
    Some(match word {
        "counter" => "counter",
        "gauge" => "gauge",
        "histogram" => "histogram",
        "summary" => "summary",
        "untyped" | "unknown" => "untyped",
        "gaugehistogram" => "gaugehistogram",
        "info" => "info",
        "stateset" => "stateset",
        _ => return None,
    })
}

/// Occurrences of one kind of problem, reported once with a count.
struct Grouped {
    first: Finding,
    count: u64,
}

impl Linter {
    /// Lints a Prometheus text exposition.
    pub fn lint_exposition(&self, file: &Path, text: &str) -> Vec<Finding> {
        let schema = &self.schema;
        let mut findings = Vec::new();
        let mut families: HashMap<String, Family> = HashMap::new();
        let mut grouped: Vec<Grouped> = Vec::new();
        let mut group_index: HashMap<(String, String, &'static str), usize> = HashMap::new();
        let mut seen_series: HashSet<String> = HashSet::new();
        let mut group = 0usize;
        let mut current_family = String::new();
        let mut key = String::new();

        let mut note = |finding: Finding, family: &str, label: &str, rule: &'static str| {
            let k = (family.to_string(), label.to_string(), rule);
            match group_index.get(&k) {
                Some(&i) => grouped[i].count += 1,
                None => {
                    group_index.insert(k, grouped.len());
                    grouped.push(Grouped {
                        first: finding,
                        count: 1,
                    });
                }
            }
        };

        for (index, line) in text.lines().enumerate() {
            let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let at = |byte: usize| (line_no, column_of(line, byte));
            let trimmed = line.trim_start();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                        findings.push(Finding::new(
                            file,
                            at(0),
                            Severity::Error,
                            "exposition-syntax",
                            "`# TYPE` needs a metric name and a type",
                        ));
                        continue;
                    };
                    let Some(kind) = type_of(kind) else {
                        findings.push(Finding::new(
                            file,
                            at(line.find(kind).unwrap_or(0)),
                            Severity::Error,
                            "exposition-syntax",
                            format!("unknown metric type `{kind}` for `{name}`"),
                        ));
                        continue;
                    };
                    let family = families.entry(name.to_string()).or_default();
                    if let Some(first) = family.type_line {
                        findings.push(
                            Finding::new(file, at(line.find(name).unwrap_or(0)), Severity::Error, "duplicate-family",
                                format!("metric family `{name}` is declared again (first `# TYPE` on line {first}); a family's samples must be in one group"))
                            .metric(name),
                        );
                    } else {
                        family.type_line = Some(line_no);
                        family.kind = Some(kind);
                    }
                }
                continue;
            }

            let sample = match parse_sample(line) {
                Ok(sample) => sample,
                Err(e) => {
                    findings.push(Finding::new(
                        file,
                        at(e.at),
                        Severity::Error,
                        "exposition-syntax",
                        e.message,
                    ));
                    continue;
                }
            };
            let family_name = self.family_name(sample.name, &families).to_string();
            if !is_valid_metric_name(sample.name) {
                findings.push(
                    Finding::new(
                        file,
                        at(sample.name_at),
                        Severity::Error,
                        "invalid-metric-name",
                        format!("`{}` is not a valid metric name", sample.name),
                    )
                    .metric(sample.name),
                );
            }

            // Families must be contiguous: a family seen before, then left, is split.
            if family_name != current_family {
                group += 1;
                current_family.clone_from(&family_name);
            }
            let family = families.entry(family_name.clone()).or_default();
            if family.series == 0 {
                family.first_line = line_no;
                family.last_group = group;
                family.sample_name = Some(sample.name.to_string());
            } else if family.last_group != group && !family.split_reported {
                family.split_reported = true;
                findings.push(
                    Finding::new(file, at(sample.name_at), Severity::Error, "duplicate-family",
                        format!("samples of metric family `{family_name}` appear again after other families (first on line {}); a family's samples must be in one group", family.first_line))
                    .metric(&family_name),
                );
            }
            family.series += 1;

            // Duplicate series: same name and label set.
            key.clear();
            key.push_str(sample.name);
            let mut sorted: Vec<(&str, &str)> = sample
                .labels
                .iter()
                .map(|l| (l.name, l.value.as_ref()))
                .collect();
            sorted.sort_unstable();
            for (n, v) in &sorted {
                key.push('\u{0}');
                key.push_str(n);
                key.push('=');
                key.push_str(v);
            }
            if !seen_series.insert(key.clone()) {
                findings.push(
                    Finding::new(
                        file,
                        at(sample.name_at),
                        Severity::Error,
                        "duplicate-series",
                        format!("series `{}` with this label set appears twice", sample.name),
                    )
                    .metric(sample.name),
                );
            }
            if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
                findings.push(
                    Finding::new(
                        file,
                        at(sample.name_at),
                        Severity::Error,
                        "duplicate-label",
                        format!("series `{}` names a label twice", sample.name),
                    )
                    .metric(sample.name),
                );
            }

            let catalog_family = schema.catalog().family(&family_name);
            for label in &sample.labels {
                if !is_valid_label_name(label.name) {
                    note(
                        Finding::new(
                            file,
                            at(label.name_at),
                            Severity::Error,
                            "invalid-label-name",
                            format!(
                                "metric `{family_name}`: `{}` is not a valid label name",
                                label.name
                            ),
                        )
                        .metric(&family_name)
                        .label(label.name),
                        &family_name,
                        label.name,
                        "invalid-label-name",
                    );
                    continue;
                }
                let pairs = [(label.name, label.value.as_ref())];
                // A suspicious value is reported below, with its finer rule
                // (`pii-value` or `unbounded-value`) and the value's position.
                if let Err(v) = schema.check_series(&family_name, pairs)
                    && !matches!(v, Violation::PiiLabelValue { .. })
                {
                    let rule = violation_rule(&v);
                    let at_byte = if rule == "label-value-not-declared" {
                        label.value_at
                    } else {
                        label.name_at
                    };
                    note(
                        Finding::new(file, at(at_byte), Severity::Error, rule, v.to_string())
                            .metric(&family_name)
                            .label(label.name),
                        &family_name,
                        label.name,
                        rule,
                    );
                    // A forbidden label is already the PII finding; for the others the
                    // value may say more (an IP in an undeclared `peer` label).
                    if rule == "forbidden-label" || rule == "invalid-label-name" {
                        continue;
                    }
                }
                if !edge_schema::values::is_checked_label(label.name) {
                    continue;
                }
                if catalog_family
                    .and_then(|f| f.label(label.name))
                    .is_some_and(|spec| matches!(spec.bound, LabelBound::Values(_)))
                {
                    continue;
                }
                let bounded = schema.policy().is_host_label(label.name);
                if let Some(suspect) = classify(&label.value, bounded) {
                    let rule = if suspect.is_pii() {
                        "pii-value"
                    } else {
                        "unbounded-value"
                    };
                    note(
                        Finding::new(file, at(label.value_at), Severity::Error, rule,
                            format!("metric `{family_name}`: value of label `{}` looks like {} (`{}`); {}",
                                label.name, suspect.describe(), label.value,
                                if suspect.is_pii() { "personal data must never be a label value" } else { "unbounded values explode cardinality" }))
                        .metric(&family_name).label(label.name),
                        &family_name, label.name, rule,
                    );
                }
            }
        }

        for g in grouped {
            let mut f = g.first;
            if g.count > 1 {
                f.message.push_str(&format!(" ({} series)", g.count));
            }
            findings.push(f);
        }

        // Per family: naming and catalog membership, once each.
        let mut ordered: Vec<(&String, &Family)> = families
            .iter()
            .filter(|(_, f)| f.series > 0 || f.type_line.is_some())
            .collect();
        ordered.sort_by_key(|(_, f)| f.type_line.unwrap_or(f.first_line));
        for (name, family) in &ordered {
            let line = family.type_line.unwrap_or(family.first_line);
            let catalog_family = schema.catalog().family(name);
            if catalog_family.is_none() {
                findings.push(
                    Finding::new(file, (line, 1), Severity::Warning, "undeclared-metric",
                        format!("metric `{name}` is not in the metric catalog; declare it so its labels are checked and budgeted"))
                    .metric(name.as_str()),
                );
            }
            if catalog_family.is_some_and(|f| f.waives("naming")) {
                continue;
            }
            let kind = match family.kind {
                Some("counter") => Some(MetricType::Counter),
                Some("gauge") => Some(MetricType::Gauge),
                Some("histogram") => Some(MetricType::Histogram),
                _ => None,
            };
            // A counter's samples carry `_total` even when `# TYPE` names it without.
            let checked = match (kind, &family.sample_name) {
                (Some(MetricType::Counter), Some(sample)) => sample.as_str(),
                _ => name.as_str(),
            };
            let unit = catalog_family.map(|f| f.unit.as_str());
            for (rule, message) in crate::naming::check(checked, kind, unit) {
                findings.push(
                    Finding::new(file, (line, 1), Severity::Warning, rule, message)
                        .metric(name.as_str()),
                );
            }
        }

        let total: u64 = families.values().map(|f| f.series).sum();
        let budget = schema.policy().max_series_per_host();
        if total > u64::from(budget) {
            let mut top: Vec<(&String, u64)> = families
                .iter()
                .map(|(n, f)| (n, f.series))
                .filter(|(_, s)| *s > 0)
                .collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            findings.push(Finding::new(file, (1, 1), Severity::Error, "series-budget",
                format!("the exposition has {total} series, over the per-host budget of {budget}; top contributors: {}",
                    crate::top_list(top.iter().map(|(n, s)| (n.as_str(), *s))))));
        }

        findings.sort_by_key(|f| (f.line, f.column));
        findings
    }

    /// The family a sample belongs to: `# TYPE`d histograms and summaries own their
    /// `_bucket`/`_sum`/`_count` series, `# TYPE`d counters their `_total` series, and
    /// the catalog resolves the rest.
    fn family_name<'a>(&self, sample: &'a str, families: &HashMap<String, Family>) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count", "_created", "_gsum", "_gcount"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && families.get(base).is_some_and(|f| {
                    matches!(f.kind, Some("histogram" | "summary" | "gaugehistogram"))
                })
            {
                return base;
            }
        }
        if let Some(base) = sample.strip_suffix("_total")
            && families
                .get(base)
                .is_some_and(|f| f.kind == Some("counter"))
        {
            return base;
        }
        if families.contains_key(sample) {
            return sample;
        }
        match self.schema.catalog().family_for_series(sample) {
            Some(f) if sample.starts_with(f.name.as_str()) => &sample[..f.name.len()],
            _ => sample,
        }
    }
}
