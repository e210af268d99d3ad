//! `edge-exporter`: counters, gauges and exponential histograms for game servers.
//!
//! A game links this crate to record its gameplay SLIs (tick time, action→ack latency,
//! queue admissions, error counts) and push them to the local `edge-agent`. It keeps
//! metrics free of PII and within the host's series budget at registration, records
//! without locks shared between game threads, and never blocks the game loop.
//!
//! ```
//! use edge_exporter::registry::Registry;
//!
//! let registry = Registry::new(); // the shipped label policy and metric catalog
//! let tick = registry
//!     .histogram("game_tick_duration_seconds", "Duration of one server tick.")
//!     .unwrap()
//!     .with(&[("shard_id", "3")])
//!     .unwrap();
//! tick.record(0.0084);
//!
//! // A forbidden label is refused with an error naming metric and label; its values go
//! // to the metric's overflow series instead of being lost.
//! let actions = registry.counter("game_actions_total", "Player actions.").unwrap();
//! let refused = actions.with(&[("player_id", "88213")]).unwrap_err();
//! assert!(refused.to_string().contains("player_id"));
//! refused.overflow.inc();
//!
//! // Every 10 s in production (`push::Pusher`); here, once, as text.
//! let text = registry.render_text();
//! assert!(text.contains("game_tick_duration_seconds_count{shard_id=\"3\"} 1"));
//! assert!(text.contains("game_actions_total{edge_overflow=\"true\"} 1"));
//! ```
//!
//! - [`histogram`]: the exponential histogram (OpenTelemetry data model) and its
//!   conversion to Prometheus native histograms.
//! - [`instruments`]: the lock-free recording side.
//! - [`registry`]: series creation under the label policy and the series budget.
//! - [`export`]: remote_write and text exposition.
//! - [`push`]: the pusher thread; [`http`]: its minimal HTTP client.
//! - [`ffi`]: the C ABI for C and C++ games (`include/edge_exporter.h`).
#![deny(missing_docs)]

pub mod export;
pub mod ffi;
pub mod histogram;
pub mod http;
pub mod instruments;
pub mod push;
pub mod registry;
