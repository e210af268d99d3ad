//! An OTLP logs body in each encoding, then its documents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for encoding in [Some("zstd"), Some("gzip"), None] {
        if let Ok((req, _)) = edge_gateway::decode::logs_request(data, encoding, 1 << 20) {
            let _ = edge_gateway::log_document::from_otlp(&req, "fuzz");
        }
    }
});
