//! `label-lint`: keeps PII and unbounded cardinality out of metrics.
