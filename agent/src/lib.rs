//! `edge-agent`: the per-host telemetry daemon of edgepipe.
//!
//! It collects host metrics and the game's pushed metrics, enforces the label policy and
//! the per-host series budget, and delivers everything to the regional gateway through
//! a crash-safe disk queue (see `DESIGN.md`). This crate is the library the `edge-agent`
//! binary wires together:
//!
//! - [`config`]: loading and validation (`edge-agent validate`);
//! - [`host`]: host metrics from procfs under node_exporter's names;
//! - [`receiver`]: the loopback push receiver, `/metrics`, `/healthz`, `/ready`;
//! - [`statsd`]: the statsd / DogStatsD receiver, aggregated per cycle;
//! - [`otlp`]: the OTLP receivers (gRPC and HTTP: metrics, logs, traces);
//! - [`traces`]: the traces path the OTLP receivers hand spans to;
//! - [`metrics`]: the policy and budget gate and the per-cycle batch;
//! - [`traces`]: spans from the OTLP receivers, tokenized and batched into the queue;
//! - [`queue`]: the disk queue; [`sender`]: delivery, retries, mTLS;
//! - [`cadence`], [`telemetry`], [`imds`]: the daemon's surroundings (systemd notification is `edge-daemon-kit`);
//! - [`shared`]: what the receivers, the cycle and the sender share; [`cycle`]: one
//!   collection cycle;
//! - [`daemon`]: the lifecycle;
//! - [`migrate`]: `edge-agent migrate`, from Fluent Bit and ADOT configs;
//! - [`casetest`]: `edge-agent test`, config unit tests run on the production stages;
//! - [`tap`]: `edge-agent tap`, what leaves the pipelines, live (`GET /tap`).
//!
//! Logs (tail, parse, tokenize) come next and share the queue and the sender.

pub mod cadence;
pub mod casetest;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod host;
pub mod imds;
pub mod logs;
pub mod metrics;
pub mod migrate;
pub mod otlp;
pub mod plain_http;
pub mod queue;
pub mod receiver;
pub mod reload;
pub mod sender;
pub mod shared;
pub mod statsd;
pub mod tap;
pub mod tap_client;
pub mod telemetry;
pub mod traces;
