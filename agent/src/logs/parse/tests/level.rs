//! Levels found in free text.

use super::*;

#[test]
fn level_words_in_text() {
    for (text, level) in [
        ("2024-05-01T12:00:00Z INFO server started", Level::Info),
        ("2024-05-01 12:00:00,123 WARNING root: disk", Level::Warn),
        (
            "[2024-05-01 12:00:00] [error] 123#0: upstream timed out",
            Level::Error,
        ),
        ("2024/05/01 12:00:00 [crit] 77#77: oops", Level::Fatal),
        ("ts=2024-05-01T12:00:00Z level=debug msg=hi", Level::Debug),
        ("level: trace something", Level::Trace),
        (r#"{"severity":"Error","msg":"broken json"#, Level::Error),
        ("Error: connection refused", Level::Error),
        ("fatal: not a git repository", Level::Fatal),
        ("<warn> low disk", Level::Warn),
        ("(notice) config reloaded", Level::Info),
        ("[E] tick failed", Level::Error),
        ("lvl=w something", Level::Warn),
        ("12:00:00.000 [main] ERROR c.e.Game - failed", Level::Error),
        ("PANIC in worker 3", Level::Fatal),
        ("[core:error] [pid 1] AH00000", Level::Error),
    ] {
        assert_eq!(level_from_text(text), level, "{text:?}");
    }
}

#[test]
fn no_level_in_text() {
    for text in [
        "",
        "   ",
        "E0501 12:00:00.000000 1234 main.go:10] glog style",
        "ERROR_CODE=7 INFOX WARNED",
        "I think there was an error in the plan",
        "user asked for debug info",
        "a W here and an E there",
        "non-error-path",
        "ünïcode 世界 😀 only",
        // Past the first 64 bytes.
        "0123456789012345678901234567890123456789012345678901234567890123 ERROR",
    ] {
        assert_eq!(level_from_text(text), Level::Unknown, "{text:?}");
    }
    // A level word that starts inside the window counts whole.
    let text = format!("{} INFORMATION", "x".repeat(58));
    assert_eq!(level_from_text(&text), Level::Info);
}
