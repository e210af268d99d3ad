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

/// The directory cargo put this crate's libraries in (`target/<profile>`): the test
/// binary is `target/<profile>/deps/<test>-<hash>`.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The static library, as a game links it.
pub fn static_lib() -> PathBuf {
    let lib = lib_dir().join("libedge_exporter.a");
    assert!(
        lib.is_file(),
        "{} is missing: the crate's staticlib should be built with its tests",
        lib.display()
    );
    lib
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

/// Runs a built program; its output.
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}
