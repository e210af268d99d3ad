//! The Rust types in `src/proto/` are generated from the `.proto` files in `proto/` and
//! checked in, so a fresh machine builds them without `protoc`. This test regenerates them
//! with a pure-Rust protobuf compiler and fails if the checked-in copy is stale.
//!
//! To update the copy after editing a `.proto` file:
//! `EDGE_REGENERATE_PROTO=1 cargo test -p edge-schema --test generated_code`.

use std::path::{Path, PathBuf};

const PROTO_FILES: &[&str] = &[
    "prometheus/remote.proto",
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/logs/v1/logs.proto",
    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
    "opentelemetry/proto/metrics/v1/metrics.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    "opentelemetry/proto/trace/v1/trace.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(out: &Path) {
    let root = crate_dir().join("proto");
    let files: Vec<PathBuf> = PROTO_FILES.iter().map(|f| root.join(f)).collect();
    let descriptors = protox::compile(&files, [&root]).expect("the .proto files compile");
    prost_build::Config::new()
        .out_dir(out)
        .compile_fds(descriptors)
        .expect("prost-build generates Rust from the descriptors");
}

#[test]
fn checked_in_protobuf_code_matches_the_proto_files() {
    let scratch = tempfile::tempdir().expect("temp dir");
    generate(scratch.path());
    let checked_in = crate_dir().join("src/proto");
    let regenerate = std::env::var_os("EDGE_REGENERATE_PROTO").is_some();
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(scratch.path()).expect("read generated dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let fresh = std::fs::read_to_string(entry.path()).expect("read generated file");
        let target = checked_in.join(&name);
        if regenerate {
            std::fs::write(&target, &fresh).expect("write generated file");
            continue;
        }
        match std::fs::read_to_string(&target) {
            Ok(old) if old == fresh => {}
            _ => stale.push(name.to_string_lossy().into_owned()),
        }
    }
    assert!(
        stale.is_empty(),
        "checked-in protobuf code is stale for {stale:?}; run \
         `EDGE_REGENERATE_PROTO=1 cargo test -p edge-schema --test generated_code`"
    );
}
