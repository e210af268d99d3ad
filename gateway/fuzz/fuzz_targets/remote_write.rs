//! A push body: snappy, then the in-place remote_write scan and re-selection.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a snappy body, bounded like the server's.
    if let Ok(raw) = edge_gateway::decode::snappy(data, 1 << 20) {
        let _ = edge_gateway::decode::remote_write::scan(&raw);
    }
    // As an already decompressed body: selecting every other series must stay a
    // prefix-free concatenation of whole fields.
    if let Ok(s) = edge_gateway::decode::remote_write::scan(data) {
        let keep: Vec<bool> = (0..s.series.len()).map(|i| i % 2 == 0).collect();
        let out = edge_gateway::decode::remote_write::select(data, &s, &keep);
        assert!(edge_gateway::decode::remote_write::scan(&out).is_ok());
    }
});
