//! Building and running C and C++ programs against this crate's header and libraries.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate's directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `-I` for the checked-in header.
pub fn include_flag() -> String {
    format!("-I{}", crate_dir().join("include").display())
}

/// The newest `name` cargo built for this crate: in `target/<profile>/deps` next to the
/// test binary (where `cargo test` leaves the library it links the tests with), or in
/// `target/<profile>` (where `cargo build -p edge-exporter` copies it).
pub fn library(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [
        deps.join(name),
        deps.parent().expect("target/<profile>").join(name),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!("no {name} in {candidates:?}: the crate's libraries are built with its tests")
        })
}

/// The static library, as a game links it.
pub fn static_lib() -> PathBuf {
    library("libedge_exporter.a")
}

/// The shared library.
pub fn shared_lib() -> PathBuf {
    library("libedge_exporter.so")
}

/// Runs `compiler args` in `dir`; panics with its output on failure.
pub fn compile(compiler: &str, args: &[&str], dir: &Path) {
    let out = Command::new(compiler)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{compiler}` ({e}): these tests need gcc and g++ installed")
        });
    assert!(
        out.status.success(),
        "`{compiler} {}` failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `source` (C when it ends in `.c`, else C++) with warnings as errors, linked
/// against the static library and only `-lpthread -ldl -lm`, into `dir/out`.
pub fn build_against_static_lib(source: &Path, dir: &Path, out: &str) -> PathBuf {
    let is_c = source.extension().is_some_and(|e| e == "c");
    let (compiler, std) = if is_c {
        ("gcc", "-std=c11")
    } else {
        ("g++", "-std=c++17")
    };
    let source = source.display().to_string();
    let lib = static_lib().display().to_string();
    let include = include_flag();
    compile(
        compiler,
        &[
            std,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            &include,
            &source,
            &lib,
            "-lpthread",
            "-ldl",
            "-lm",
            "-o",
            out,
        ],
        dir,
    );
    dir.join(out)
}

/// Runs a built program; its output. Without cargo's `LD_LIBRARY_PATH` for tests, so a
/// program linked against the shared library loads the one its run path names.
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}
