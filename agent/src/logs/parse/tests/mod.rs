//! Tests of the parsers, one file per parser beside the shared helpers here.

use super::*;

mod json;
mod level;
mod logfmt;
mod regex;
mod time;

const OBSERVED: i64 = 42;
/// 2024-05-01T12:00:00Z.
const MAY_1: i64 = 1_714_564_800;

fn parser(kind: ParserKind) -> Parser {
    Parser::new(kind, None).expect("a parser without a pattern builds")
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn failed(line: &str, level: Level) -> LogRecord {
    LogRecord {
        observed_ns: OBSERVED,
        level,
        message: line.to_owned(),
        parse_failed: true,
        ..LogRecord::default()
    }
}

// --- config -------------------------------------------------------------------------

#[test]
fn parser_kinds_round_trip_their_names() {
    for kind in [
        ParserKind::Json,
        ParserKind::Regex,
        ParserKind::Logfmt,
        ParserKind::None,
    ] {
        assert_eq!(kind.name().parse::<ParserKind>().ok(), Some(kind));
    }
    let err = "yaml".parse::<ParserKind>().expect_err("yaml is no parser");
    assert!(err.to_string().contains("`yaml`"), "{err}");
    assert!("JSON".parse::<ParserKind>().is_err());
}

#[test]
fn regex_parser_config_errors_say_what_is_wrong() {
    let err = Parser::new(ParserKind::Regex, None).expect_err("needs a pattern");
    assert!(matches!(err, ParseConfigError::MissingPattern));
    assert!(err.to_string().contains("needs a `pattern`"), "{err}");

    let err = Parser::new(ParserKind::Regex, Some("(?P<level>[a-z")).expect_err("bad");
    assert!(matches!(err, ParseConfigError::BadPattern { .. }));
    let text = err.to_string();
    assert!(
        text.contains("`(?P<level>[a-z`") && text.contains("does not compile"),
        "{text}"
    );

    let err = Parser::new(ParserKind::Regex, Some(r"^(\w+) (.*)$")).expect_err("unnamed");
    assert!(matches!(err, ParseConfigError::NoNamedCaptures { .. }));
    assert!(err.to_string().contains(r"`^(\w+) (.*)$`"), "{err}");
}

#[test]
fn parsers_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Parser>();
}

#[test]
fn other_kinds_ignore_a_pattern() {
    let p = Parser::new(ParserKind::Json, Some("(?P<x>.)")).expect("builds");
    assert_eq!(p.kind(), ParserKind::Json);
    let p = Parser::new(ParserKind::Regex, Some("(?P<x>.)")).expect("builds");
    assert_eq!(p.kind(), ParserKind::Regex);
}

// --- none ---------------------------------------------------------------------------

#[test]
fn none_keeps_the_line_and_guesses_the_level() {
    let p = parser(ParserKind::None);
    let line = "[12:00:00] [Server thread/WARN]: Can't keep up!";
    assert_eq!(
        p.parse(line, OBSERVED),
        LogRecord {
            observed_ns: OBSERVED,
            level: Level::Warn,
            message: line.into(),
            ..LogRecord::default()
        }
    );
    for line in ["", "   ", "ünïcode ✓", r#"{"level":"error"}"#] {
        let r = p.parse(line, OBSERVED);
        assert_eq!((r.message.as_str(), r.parse_failed), (line, false));
    }
    let long = "z".repeat(1 << 20);
    assert_eq!(p.parse(&long, 0).message, long);
}
