//! The C ABI as a C program sees it: `tests/c/abi_contract.c`, compiled against the header
//! and the static library, checks the documented result of every entry point for NULL and
//! invalid arguments, refusals (overflow handle and last error) and bad policy text; and
//! `tests/c/no_alloc.c` that recording allocates nothing.

mod native;

#[test]
fn every_entry_point_handles_null_and_invalid_arguments_as_documented() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = native::crate_dir().join("tests/c/abi_contract.c");
    let program = native::build_against_static_lib(&source, dir.path(), "abi_contract");
    let out = native::run(&program, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "abi_contract failed ({}):\n{stdout}{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    // Refusals are logged once per metric and reason, as in Rust.
    assert_eq!(
        stderr.matches("`player_id` is forbidden").count(),
        1,
        "{stderr}"
    );
}

/// The same program against the shared library: the same results.
#[test]
fn the_shared_library_keeps_the_same_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = native::crate_dir().join("tests/c/abi_contract.c");
    let so = native::shared_lib();
    let libs = so.parent().expect("library directory");
    let include = native::include_flag();
    let source = source.display().to_string();
    let search = format!("-L{}", libs.display());
    let rpath = format!("-Wl,-rpath,{}", libs.display());
    native::compile(
        "gcc",
        &[
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            &include,
            &source,
            &search,
            &rpath,
            "-ledge_exporter",
            "-o",
            "abi_contract_so",
        ],
        dir.path(),
    );
    let program = dir.path().join("abi_contract_so");
    // The program loads the library it was linked against (not an older copy elsewhere).
    let ldd = std::process::Command::new("ldd")
        .arg(&program)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(
        ldd.contains(&so.display().to_string()),
        "{program:?} does not load {so:?}:\n{ldd}"
    );
    let out = native::run(&program, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "abi_contract (shared) failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// The record functions allocate nothing: `tests/c/no_alloc.c` counts every allocation
/// the static library makes (`-Wl,--wrap=malloc` and friends) across 200,000 records of
/// every kind, with values over 60 decades so the histogram downscales.
#[test]
fn recording_through_the_c_abi_allocates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = native::crate_dir()
        .join("tests/c/no_alloc.c")
        .display()
        .to_string();
    let lib = native::static_lib().display().to_string();
    let include = native::include_flag();
    native::compile(
        "gcc",
        &[
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            &include,
            &source,
            &lib,
            "-Wl,--wrap=malloc",
            "-Wl,--wrap=calloc",
            "-Wl,--wrap=realloc",
            "-Wl,--wrap=posix_memalign",
            "-lpthread",
            "-ldl",
            "-lm",
            "-o",
            "no_alloc",
        ],
        dir.path(),
    );
    let out = native::run(&dir.path().join("no_alloc"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("allocations while recording: 0 "),
        "{stdout}"
    );
}
