//! `edge-daemon-kit`: the I/O pieces both daemons (`edge-agent`, `edge-gateway` and its
//! relay) would otherwise each write: systemd's notification protocol ([`notify`]), PEM
//! files for rustls with the empty-CA check and the certificate's expiry ([`pem`]), the
//! change stamps that decide a reload ([`stamp`]), the accept loop and the plain HTTP
//! listener ([`serve`]), the signals a daemon waits for ([`signals`]), retry timing, exponential
//! backoff with full jitter and `Retry-After` ([`retry`]), and bounded snappy
//! decoding ([`snappy`]).

pub mod notify;
pub mod pem;
pub mod retry;
pub mod serve;
pub mod signals;
pub mod snappy;
pub mod stamp;
