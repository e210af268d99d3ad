//! The logs path: tail files, join multi-line records, parse, enrich, tokenize PII,
//! filter, and ship OTLP batches through the shared disk queue and sender. Tokenization
//! itself is the `edge-tokenize` crate, shared with the gateway.

pub mod multiline;
pub mod parse;
pub mod pipeline;
pub mod record;
pub mod ship;
pub mod tail;
pub mod watch;
