//! `edge-gateway`: the regional ingest gateway of edgepipe.
//!
//! It terminates mTLS from the agents, finds each request's tenant, applies the label
//! policy and the tenant's quotas, and commits metrics and logs to their sinks before
//! it answers (see `DESIGN.md`): 2xx only after the commit, 400 with the reasons for
//! what breaks the policy (the rest is accepted), 413 for what can never fit, 429 with
//! `Retry-After` for a quota, 503 with `Retry-After` when the sink is down or the
//! gateway is overloaded.

pub mod aws;
pub mod body;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod identity;
pub mod log_document;
pub mod ndjson;
pub mod quota;
pub mod relay;
pub mod server;
pub mod sink;
pub mod telemetry;
pub mod tools;
pub mod validate;
