//! `edge-gateway`: the regional ingest gateway of edgepipe.
//!
//! It will terminate mTLS from the agents, apply per-tenant policy and quotas, and commit
//! metrics to Kinesis and logs to Firehose before it answers (see `DESIGN.md`). It will
//! also host `edge-gateway relay`, which carries metrics from Kinesis to a remote_write
//! store. Nothing is implemented here yet.
