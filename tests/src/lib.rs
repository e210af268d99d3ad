//! Cross-binary end-to-end tests and the load generators they use.
//!
//! Unit tests live next to their code; this crate holds what needs more than one binary
//! (agent, gateway, relay) running together, and the simulated fleet that loads them.

pub mod fleet;
pub mod gates;
pub mod moto;
pub mod pki;
pub mod procs;
pub mod procstat;
pub mod prometheus;
pub mod proxy;
pub mod rig;
