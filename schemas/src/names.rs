//! Prometheus naming rules: what a valid metric or label name is, and the conventions
//! (snake_case, `_total` on counters, base units) that `label-lint` checks.

/// Whether `name` is a valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// Names starting with `__` are valid but reserved for Prometheus' own use; see
/// [`is_reserved_label_name`].
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a label name is reserved (`__` prefix) by Prometheus.
pub fn is_reserved_label_name(name: &str) -> bool {
    name.starts_with("__")
}

/// Whether `name` is snake_case: lower-case ASCII letters, digits and single underscores
/// between words (colons are left to recording rules and are not snake_case).
pub fn is_snake_case(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('_')
        && !name.ends_with('_')
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Unit words that are not base units, with the base unit Prometheus recommends instead.
pub const NON_BASE_UNITS: &[(&str, &str)] = &[
    ("milliseconds", "seconds"),
    ("microseconds", "seconds"),
    ("nanoseconds", "seconds"),
    ("millis", "seconds"),
    ("ms", "seconds"),
    ("us", "seconds"),
    ("ns", "seconds"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("kilobytes", "bytes"),
    ("megabytes", "bytes"),
    ("gigabytes", "bytes"),
    ("kb", "bytes"),
    ("mb", "bytes"),
    ("gb", "bytes"),
    ("kib", "bytes"),
    ("mib", "bytes"),
    ("gib", "bytes"),
    ("bits", "bytes"),
    ("percent", "ratio"),
    ("percentage", "ratio"),
];

/// The first word of `name` (split at `_`) that is a non-base unit, with its base unit.
pub fn non_base_unit(name: &str) -> Option<(&'static str, &'static str)> {
    let lower = name.to_ascii_lowercase();
    lower.split('_').find_map(|word| {
        NON_BASE_UNITS
            .iter()
            .find(|(bad, _)| *bad == word)
            .map(|(bad, good)| (*bad, *good))
    })
}

/// The family name a sample line belongs to: `x_bucket`, `x_sum`, `x_count` and
/// `x_created` belong to `x` when `is_family` says `x` is a histogram or summary family.
pub fn family_of(series_name: &str, is_family: impl Fn(&str) -> bool) -> &str {
    for suffix in ["_bucket", "_sum", "_count", "_created"] {
        if let Some(base) = series_name.strip_suffix(suffix)
            && is_family(base)
        {
            return base;
        }
    }
    series_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        assert!(is_valid_metric_name("node_cpu_seconds_total"));
        assert!(is_valid_metric_name("job:rate5m:sum"));
        assert!(!is_valid_metric_name("9lives"));
        assert!(!is_valid_metric_name("bad-name"));
        assert!(!is_valid_metric_name(""));
    }

    #[test]
    fn label_names() {
        assert!(is_valid_label_name("shard_id"));
        assert!(is_valid_label_name("_private"));
        assert!(!is_valid_label_name("shard-id"));
        assert!(!is_valid_label_name("1st"));
        assert!(!is_valid_label_name("a:b"));
        assert!(is_reserved_label_name("__name__"));
    }

    #[test]
    fn conventions() {
        assert!(is_snake_case("game_tick_duration_seconds"));
        assert!(!is_snake_case("node_memory_MemAvailable_bytes"));
        assert!(!is_snake_case("double__underscore"));
        assert_eq!(
            non_base_unit("rtt_milliseconds"),
            Some(("milliseconds", "seconds"))
        );
        assert_eq!(non_base_unit("latency_ms_total"), Some(("ms", "seconds")));
        assert_eq!(non_base_unit("latency_seconds"), None);
    }

    #[test]
    fn families() {
        let is_hist = |n: &str| n == "tick_seconds";
        assert_eq!(family_of("tick_seconds_bucket", is_hist), "tick_seconds");
        assert_eq!(family_of("tick_seconds_count", is_hist), "tick_seconds");
        assert_eq!(family_of("requests_count", is_hist), "requests_count");
    }
}
