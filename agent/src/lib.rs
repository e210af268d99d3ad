//! `edge-agent`: the per-host telemetry daemon of edgepipe.
//!
//! It will collect host metrics and the game's pushed metrics, enforce the label policy
//! and the per-host series budget, tail and tokenize logs, and deliver everything to the
//! regional gateway through a crash-safe disk queue (see `DESIGN.md`). This crate is the
//! library the `edge-agent` binary wires together; nothing is implemented here yet.
