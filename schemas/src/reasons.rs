//! Why a series is refused: one name per reason, for every counter that carries a
//! `reason` label (`edge_series_rejected_total`, `edge_series_invalid_total`,
//! `edge_gateway_discarded_samples_total`) and every answer that names one. The gateway
//! uses Mimir's discard reason names where they mean the same, so its invalid label name
//! is [`LABEL_INVALID`] where the agent's is [`INVALID_LABEL_NAME`].

/// Policy: a label the policy forbids (player-level detail).
pub const FORBIDDEN_LABEL: &str = "forbidden_label";
/// Policy: a label neither allowed globally nor declared for its metric.
pub const LABEL_NOT_ALLOWED: &str = "label_not_allowed";
/// Policy (agent, lint): a label name that is not `[a-zA-Z_][a-zA-Z0-9_]*`.
pub const INVALID_LABEL_NAME: &str = "invalid_label_name";
/// Policy (gateway): a label name that is not `[a-zA-Z_][a-zA-Z0-9_]*`.
pub const LABEL_INVALID: &str = "label_invalid";
/// Catalog: a value outside the values a label declares.
pub const LABEL_VALUE_NOT_DECLARED: &str = "label_value_not_declared";
/// A value that looks like personal data or an unbounded identifier.
pub const PII_LABEL_VALUE: &str = "pii_label_value";
/// Agent: the host's series budget is spent.
pub const BUDGET: &str = "budget";
/// Store: a series without `__name__`.
pub const MISSING_METRIC_NAME: &str = "missing_metric_name";
/// Store: a metric name that is not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub const METRIC_NAME_INVALID: &str = "metric_name_invalid";
/// Store: the same label name twice.
pub const DUPLICATE_LABEL_NAMES: &str = "duplicate_label_names";
/// Store: label names not sorted.
pub const LABELS_NOT_SORTED: &str = "labels_not_sorted";
/// Store: a sample newer than the clock allows.
pub const TOO_FAR_IN_FUTURE: &str = "too_far_in_future";
/// Store: a sample older than the store takes.
pub const TOO_FAR_IN_PAST: &str = "too_far_in_past";
/// Store: a native histogram whose buckets, spans and counts disagree.
pub const INVALID_NATIVE_HISTOGRAM: &str = "invalid_native_histogram";
/// Tenant limit: more label names than allowed.
pub const MAX_LABEL_NAMES_PER_SERIES: &str = "max_label_names_per_series";
/// Tenant limit: a label name longer than allowed.
pub const LABEL_NAME_TOO_LONG: &str = "label_name_too_long";
/// Tenant limit: a label value longer than allowed.
pub const LABEL_VALUE_TOO_LONG: &str = "label_value_too_long";
