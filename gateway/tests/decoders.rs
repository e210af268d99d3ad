//! Every decoder fed random, truncated and mutated bodies: no panic, no allocation past
//! the limits, and a refusal that is a 4xx with a reason.

use edge_gateway::decode::remote_write;
use edge_gateway::decode::{self, BodyError};
use edge_gateway::log_document;
use edge_schema::proto::otlp::{
    AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord, ResourceLogs, ScopeLogs, any_value,
};
use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use proptest::prelude::*;
use prost::Message;

const MAX: usize = 1 << 20;

fn write_request(n: usize, seed: u8) -> Vec<u8> {
    WriteRequest {
        timeseries: (0..n)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: format!("m{seed}"),
                    },
                    Label {
                        name: "shard".into(),
                        value: i.to_string(),
                    },
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: i as i64,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn logs_request(n: usize) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|i| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        attributes: vec![KeyValue {
                            key: "k".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(i as i64)),
                            }),
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn is_4xx(e: &BodyError) -> bool {
    (400..500).contains(&e.status()) && !e.to_string().is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Err(e) = decode::snappy(&body, MAX) { prop_assert!(is_4xx(&e)); }
        let _ = remote_write::scan(&body);
        for enc in [Some("zstd"), Some("gzip"), None, Some("br")] {
            if let Err(e) = decode::logs_request(&body, enc, MAX) { prop_assert!(is_4xx(&e)); }
            match decode::traces_request(&body, enc, MAX) {
                Ok((req, _)) => { let _ = edge_gateway::sink::traces::document::from_otlp(&req, "t"); }
                Err(e) => prop_assert!(is_4xx(&e)),
            }
        }
        let _ = log_document::from_json_batch(&body, "t", &tokenizer());
    }

    #[test]
    fn truncated_and_mutated_remote_write_is_refused_or_read(
        n in 1usize..50, cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8
    ) {
        let raw = write_request(n, 1);
        let truncated = &raw[..cut.index(raw.len())];
        // A prefix scans only if it ends on a series boundary; the scan never panics.
        if let Ok(s) = remote_write::scan(truncated) {
            prop_assert!(s.series.len() <= n);
        }
        let mut mutated = raw.clone();
        let i = flip.index(mutated.len());
        mutated[i] ^= 1 << bit;
        let _ = remote_write::scan(&mutated);
        let compressed = snap::raw::Encoder::new().compress_vec(&raw).expect("snappy");
        let t = &compressed[..cut.index(compressed.len())];
        match decode::snappy(t, MAX) {
            Ok(body) => prop_assert!(body.len() <= MAX),
            Err(e) => prop_assert!(is_4xx(&e)),
        }
    }

    #[test]
    fn truncated_compressed_logs_are_a_4xx(n in 1usize..50, cut in any::<prop::sample::Index>()) {
        let raw = logs_request(n);
        let z = zstd::bulk::compress(&raw, 1).expect("zstd");
        let cut_at = cut.index(z.len());
        match decode::logs_request(&z[..cut_at], Some("zstd"), MAX) {
            Ok((req, _)) => prop_assert!(log_document::from_otlp(&req, "t", &tokenizer()).docs.len() <= n),
            Err(e) => prop_assert!(is_4xx(&e)),
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let cut_at = cut.index(gz.len());
        if let Err(e) = decode::logs_request(&gz[..cut_at], Some("gzip"), MAX) {
            prop_assert!(is_4xx(&e));
        }
    }
}

#[test]
fn whole_bodies_decode() {
    let raw = write_request(10, 2);
    let s = remote_write::scan(&raw).expect("scan");
    assert_eq!(s.series.len(), 10);
    let z = zstd::bulk::compress(&logs_request(5), 1).expect("zstd");
    let (req, _) = decode::logs_request(&z, Some("zstd"), MAX).expect("logs");
    assert_eq!(
        log_document::from_otlp(&req, "t", &tokenizer()).docs.len(),
        5
    );
}

#[test]
fn a_bomb_in_every_encoding_is_a_413_before_it_allocates() {
    let zeros = vec![0u8; 16 << 20];
    let z = zstd::bulk::compress(&zeros, 3).expect("zstd");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &zeros).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let s = snap::raw::Encoder::new()
        .compress_vec(&zeros)
        .expect("snappy");
    assert!(z.len() < 1 << 12 && gz.len() < 1 << 16 && s.len() < 1 << 20);
    assert_eq!(
        decode::logs_request(&z, Some("zstd"), MAX)
            .map(|_| ())
            .map_err(|e| e.status()),
        Err(413)
    );
    assert_eq!(
        decode::logs_request(&gz, Some("gzip"), MAX)
            .map(|_| ())
            .map_err(|e| e.status()),
        Err(413)
    );
    assert_eq!(
        decode::traces_request(&z, Some("zstd"), MAX)
            .map(|_| ())
            .map_err(|e| e.status()),
        Err(413)
    );
    assert_eq!(
        decode::snappy(&s, MAX).map(|_| ()).map_err(|e| e.status()),
        Err(413)
    );
}

/// A tokenizer with the built-in detectors, as a gateway without configured ones has.
fn tokenizer() -> edge_tokenize::Tokenizer {
    let key = edge_tokenize::TokenKey::from_bytes(b"decoder-test-key-0123456789").expect("key");
    edge_tokenize::Tokenizer::new(key, &[]).expect("tokenizer")
}
