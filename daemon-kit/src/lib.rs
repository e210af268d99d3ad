//! `edge-daemon-kit`: the I/O pieces both daemons (`edge-agent`, `edge-gateway` and its
//! relay) would otherwise each write: systemd's notification protocol ([`notify`]), PEM
//! files for rustls with the empty-CA check ([`pem`]), retry timing, exponential
//! backoff with full jitter and `Retry-After` ([`retry`]), and bounded snappy
//! decoding ([`snappy`]).

pub mod notify;
pub mod pem;
pub mod retry;
pub mod snappy;
