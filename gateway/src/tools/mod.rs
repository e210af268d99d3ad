//! The SRE tools of `edge-gateway`, over the code production runs: `spool cat` reads a
//! spool with the file sink's own reader ([`crate::sink::file::scan`]); `tap` is the
//! client of the admin port's `/tap` ([`crate::server::tap`]). Both print
//! [`crate::ndjson`] lines.

pub mod spool_cat;
pub mod tap;
