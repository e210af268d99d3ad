//! `edge-agent`: the per-host telemetry daemon of edgepipe.
//!
//! It collects host metrics and the game's pushed metrics, enforces the label policy and
//! the per-host series budget, tails and tokenizes logs, and delivers everything to the
//! regional gateway through a crash-safe disk queue (see `DESIGN.md`). This crate is the
//! library the `edge-agent` binary wires together.
//!
//! Built so far: [`config`] (loading and validation, `edge-agent validate`), [`host`]
//! (host metrics from procfs under node_exporter's names) and [`queue`] (the disk
//! queue). The local receiver, the policy stage, the sender and the daemon's lifecycle
//! are the next steps (issue "edge-agent: the metrics path…").

pub mod config;
pub mod host;
pub mod queue;
