//! Metric catalogs (`metrics.yaml`): structure, policy, budget and naming.

use std::path::Path;

use edge_schema::catalog::Catalog;
use edge_schema::check::Schema;
use edge_schema::names::is_snake_case;

use crate::finding::{Finding, Severity};
use crate::{Linter, load_error_findings};

impl Linter {
    /// Lints a catalog file against the linter's policy. The catalog is checked on its
    /// own: its budget is its own series, whatever other catalogs say.
    pub fn lint_catalog(&self, file: &Path, text: &str) -> Vec<Finding> {
        let (catalog, problems) = match Catalog::from_yaml_lenient(file, text) {
            Ok(loaded) => loaded,
            Err(err) => {
                let problems: Vec<_> = err
                    .problems
                    .iter()
                    .map(|p| {
                        let (line, column) = p.position.map_or((1, 1), |p| (p.line, p.column));
                        (line, column, p.code, p.message.clone())
                    })
                    .collect();
                return load_error_findings(file, &problems);
            }
        };
        let mut findings: Vec<Finding> = problems
            .into_iter()
            .map(|p| {
                let at = p.position.map_or((1, 1), |p| (p.line, p.column));
                Finding::new(file, at, Severity::Error, p.code, p.message)
            })
            .collect();

        let schema = Schema::new(self.schema.policy().clone(), catalog);
        for v in schema.catalog_violations() {
            findings.push(Finding::new(
                file,
                (v.position.line, v.position.column),
                Severity::Error,
                v.rule,
                v.message,
            ));
        }

        let estimate = schema.estimate();
        if !estimate.within_budget() {
            findings.push(Finding::new(
                file,
                (1, 1),
                Severity::Error,
                "series-budget",
                format!(
                    "the catalog produces an estimated {} series per host, over the budget of {}; top contributors: {}",
                    estimate.total,
                    estimate.budget,
                    crate::top_list(estimate.families.iter().map(|f| (f.name.as_str(), f.series)))
                ),
            ));
        }

        for family in schema.catalog().families() {
            let at = (family.position.line, family.position.column);
            if !family.waives("naming") {
                for (rule, message) in
                    crate::naming::check(&family.name, Some(family.kind), Some(&family.unit))
                {
                    findings.push(
                        Finding::new(file, at, Severity::Warning, rule, message)
                            .metric(&family.name),
                    );
                }
            }
            for label in &family.labels {
                if !is_snake_case(&label.name) {
                    findings.push(
                        Finding::new(
                            file,
                            (label.position.line, label.position.column),
                            Severity::Warning,
                            "label-name-case",
                            format!(
                                "metric `{}`: label `{}` is not snake_case",
                                family.name, label.name
                            ),
                        )
                        .metric(&family.name)
                        .label(&label.name),
                    );
                }
            }
        }
        findings.sort_by_key(|f| (f.line, f.column));
        findings
    }
}
