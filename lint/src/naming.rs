//! Prometheus naming conventions, shared by the catalog and exposition checks. All of
//! them are warnings: the metric works, but dashboards and people expect the convention.

use edge_schema::catalog::MetricType;
use edge_schema::names::{is_snake_case, non_base_unit};

/// A broken naming convention: (rule, message).
pub type NamingIssue = (&'static str, String);

/// The conventions `name` of type `kind` (and declared `unit`, when known) breaks.
pub fn check(name: &str, kind: Option<MetricType>, unit: Option<&str>) -> Vec<NamingIssue> {
    let mut issues = Vec::new();
    if !is_snake_case(name) {
        issues.push((
            "metric-name-case",
            format!("metric `{name}` is not snake_case (lower-case words joined by `_`)"),
        ));
    }
    match kind {
        Some(MetricType::Counter) if !name.ends_with("_total") => issues.push((
            "counter-suffix",
            format!("counter `{name}` should end in `_total`"),
        )),
        Some(MetricType::Gauge | MetricType::Histogram) if name.ends_with("_total") => {
            issues.push((
                "total-suffix",
                format!("`{name}` ends in `_total` but is not a counter"),
            ));
        }
        _ => {}
    }
    if let Some((bad, good)) = non_base_unit(name) {
        issues.push((
            "base-unit",
            format!("metric `{name}` uses `{bad}`; use the base unit `{good}`"),
        ));
    }
    if let Some(unit) = unit.filter(|u| !u.is_empty()) {
        let stem = name.strip_suffix("_total").unwrap_or(name);
        if !stem.ends_with(&format!("_{unit}")) {
            issues.push((
                "unit-suffix",
                format!("metric `{name}` has unit `{unit}` but its name does not end in `_{unit}`"),
            ));
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(name: &str, kind: Option<MetricType>, unit: Option<&str>) -> Vec<&'static str> {
        check(name, kind, unit)
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    #[test]
    fn conventions() {
        assert!(
            rules(
                "game_tick_duration_seconds",
                Some(MetricType::Histogram),
                Some("seconds")
            )
            .is_empty()
        );
        assert!(
            rules(
                "node_cpu_seconds_total",
                Some(MetricType::Counter),
                Some("seconds")
            )
            .is_empty()
        );
        assert_eq!(
            rules("game_errors", Some(MetricType::Counter), None),
            vec!["counter-suffix"]
        );
        assert_eq!(
            rules("players_total", Some(MetricType::Gauge), None),
            vec!["total-suffix"]
        );
        assert_eq!(
            rules("tickTime", Some(MetricType::Gauge), None),
            vec!["metric-name-case"]
        );
        assert_eq!(
            rules("rtt_ms", Some(MetricType::Histogram), Some("seconds")),
            vec!["base-unit", "unit-suffix"]
        );
    }
}
