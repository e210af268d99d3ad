//! `edge-schema`: the contract every edgepipe crate shares.
//!
//! - [`policy`]: the label policy (`schemas/labels.yaml`): which labels are forbidden,
//!   which are allowed everywhere, and the per-host series budget.
//! - [`calendar`]: days since the epoch to and from a civil date (agent and gateway).
//! - [`catalog`]: the metric catalog (`schemas/metrics.yaml`): every metric family with
//!   its type, unit, help and the bounded labels it may carry.
//! - [`check`]: the checks built on both: is this label set allowed for this metric, and
//!   how many series per host does a catalog produce.
//! - [`exposition`]: the Prometheus text format: the sample-line parser and the escaping
//!   every renderer uses.
//! - [`reasons`]: why a series is refused, one name per reason for every counter.
//! - [`remote_write`]: which remote_write version a body claims to be (2.0 is refused by
//!   name rather than scanned as zero series).
//! - [`series`]: what a store refuses in one series (name syntax, duplicate labels,
//!   timestamps outside a window, inconsistent native histograms), checked per series.
//! - [`values`]: label values that must never be label values (personal data, unbounded
//!   identifiers, free text), one heuristic for lint, exporter, agent and gateway.
//! - [`proto`]: the wire types (Prometheus remote_write with native histograms; OTLP logs,
//!   metrics and traces).
//!
//! The crate does no I/O beyond reading the files it is asked to load, and needs no async
//! runtime. The shipped policy and catalog are compiled in, so every binary agrees on the
//! defaults:
//!
//! ```
//! use edge_schema::{catalog::Catalog, policy::LabelPolicy, check::Schema};
//!
//! let schema = Schema::new(LabelPolicy::shipped(), Catalog::shipped());
//! assert!(schema.check_label_names("game_tick_duration_seconds", ["shard_id"]).is_ok());
//! let refused = schema.check_label_names("game_tick_duration_seconds", ["player_id"]);
//! assert_eq!(refused.unwrap_err().reason(), "forbidden_label");
//! ```
#![deny(missing_docs)]

pub mod calendar;
pub mod catalog;
pub mod check;
pub mod config;
pub mod exposition;
pub mod names;
pub mod policy;
pub mod proto;
pub mod reasons;
pub mod remote_write;
pub mod series;
pub mod values;
mod yaml;

pub use yaml::{LoadError, Position, Problem};
