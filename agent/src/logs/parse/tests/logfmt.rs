//! The logfmt parser.

use super::*;

#[test]
fn logfmt_pairs_quotes_and_flags() {
    let line = r#"time=2024-05-01T12:00:00Z level=error msg="player \"p1\" kicked\n" reason=afk dur=31.5s empty= cached trace_id=abc"#;
    let r = parser(ParserKind::Logfmt).parse(line, OBSERVED);
    assert_eq!(
        r,
        LogRecord {
            timestamp_ns: Some(MAY_1 * 1_000_000_000),
            observed_ns: OBSERVED,
            level: Level::Error,
            message: "player \"p1\" kicked\n".into(),
            trace_id: Some("abc".into()),
            attributes: attrs(&[
                ("reason", "afk"),
                ("dur", "31.5s"),
                ("empty", ""),
                ("cached", "true")
            ]),
            parse_failed: false,
            truncated: false,
        }
    );
}

#[test]
fn logfmt_edge_cases() {
    let p = parser(ParserKind::Logfmt);
    let r = p.parse(r#"a="x y z" b=é=1 c="unterminated \"q\" \x"#, 0);
    assert_eq!(
        r.attributes,
        attrs(&[
            ("a", "x y z"),
            ("b", "é=1"),
            ("c", r#"unterminated "q" \x"#)
        ])
    );
    let r = p.parse(r#"  k="héllo 世界"	t=1  "#, 0);
    assert_eq!(r.attributes, attrs(&[("k", "héllo 世界"), ("t", "1")]));
    let r = p.parse(r#"=orphan k=v c="ends in \"#, 0);
    assert_eq!(r.attributes, attrs(&[("k", "v"), ("c", "ends in \\")]));
    let r = p.parse(r#"lvl=WARN ts=1714564800"#, 0);
    assert_eq!(
        (r.level, r.timestamp_ns),
        (Level::Warn, Some(MAY_1 * 1_000_000_000))
    );
}

#[test]
fn logfmt_without_pairs_is_kept_as_text() {
    let p = parser(ParserKind::Logfmt);
    for line in ["", "   ", "just some WARN words", "=x =y", "ünïcode"] {
        assert_eq!(
            p.parse(line, OBSERVED),
            failed(line, level_from_text(line)),
            "{line:?}"
        );
    }
    let long = "word ".repeat(50_000);
    assert!(p.parse(&long, 0).parse_failed);
    let long = format!("k={}", "v".repeat(1 << 20));
    assert_eq!(p.parse(&long, 0).attributes[0].1.len(), 1 << 20);
}
