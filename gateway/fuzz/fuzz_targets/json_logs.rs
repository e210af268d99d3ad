//! A JSON batch body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edge_gateway::log_document::from_json_batch(data, "fuzz");
});
