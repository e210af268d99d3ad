//! The regex parser.

use super::*;

const GAME_LOG: &str = r"^(?P<time>\S+ \S+) \[(?P<level>\w+)\] (?:\[(?P<thread>[^\]]+)\] )?(?P<msg>.*?)(?: trace=(?P<trace_id>[0-9a-f]+))?$";

#[test]
fn regex_lifts_named_captures() {
    let p = Parser::new(ParserKind::Regex, Some(GAME_LOG)).expect("compiles");
    let r = p.parse(
        "2024-05-01 12:00:00.123 [WARN] [tick-1] slow tick: 57ms trace=4bf92f35",
        OBSERVED,
    );
    assert_eq!(
        r,
        LogRecord {
            timestamp_ns: Some(MAY_1 * 1_000_000_000 + 123_000_000),
            observed_ns: OBSERVED,
            level: Level::Warn,
            message: "slow tick: 57ms".into(),
            trace_id: Some("4bf92f35".into()),
            attributes: attrs(&[("thread", "tick-1")]),
            parse_failed: false,
            truncated: false,
        }
    );
    // Groups that took no part are absent.
    let r = p.parse("2024-05-01 12:00:00 [info] héllo wörld", OBSERVED);
    assert_eq!(
        (r.level, r.message.as_str(), r.trace_id),
        (Level::Info, "héllo wörld", None)
    );
    assert!(r.attributes.is_empty());
}

#[test]
fn regex_keeps_what_does_not_fit_as_attributes() {
    let p = Parser::new(
        ParserKind::Regex,
        Some(r"^(?P<timestamp>\S+) (?P<level>\S+) (?P<message>.*)$"),
    )
    .expect("compiles");
    let r = p.parse("01/May/2024:12:00:00 chatty hello", 0);
    assert_eq!(r.timestamp_ns, None);
    assert_eq!(r.level, Level::Unknown);
    assert_eq!(r.message, "hello");
    assert_eq!(
        r.attributes,
        attrs(&[("timestamp", "01/May/2024:12:00:00"), ("level", "chatty")])
    );
}

#[test]
fn regex_without_a_match_is_kept_as_text() {
    let p = Parser::new(ParserKind::Regex, Some(GAME_LOG)).expect("compiles");
    for line in ["ERROR no timestamp here", "", "   ", "ünïcode only"] {
        assert_eq!(
            p.parse(line, OBSERVED),
            failed(line, level_from_text(line)),
            "{line:?}"
        );
    }
    let long = format!("{} ERROR", "y".repeat(100_000));
    let r = p.parse(&long, OBSERVED);
    assert!(r.parse_failed);
    assert_eq!(r.message.len(), long.len());
}
