use super::*;

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

// --- json ---------------------------------------------------------------------------

#[test]
fn json_lifts_well_known_fields_and_keeps_the_rest_in_order() {
    let line = r#"{"ts":"2024-05-01T12:00:00.5Z","level":"WARN","msg":"slow tick","trace_id":"4bf92f3577b34da6","tick_ms":57.5,"zone":"eu-1","players":12,"ok":false,"tags":["a", "b" , 3],"net":{"rtt":{"p99":31}}}"#;
    let r = parser(ParserKind::Json).parse(line, OBSERVED);
    assert_eq!(
        r,
        LogRecord {
            timestamp_ns: Some(MAY_1 * 1_000_000_000 + 500_000_000),
            observed_ns: OBSERVED,
            level: Level::Warn,
            message: "slow tick".into(),
            trace_id: Some("4bf92f3577b34da6".into()),
            attributes: attrs(&[
                ("tick_ms", "57.5"),
                ("zone", "eu-1"),
                ("players", "12"),
                ("ok", "false"),
                ("tags", r#"["a","b",3]"#),
                ("net.rtt.p99", "31"),
            ]),
            parse_failed: false,
            truncated: false,
        }
    );
}

#[test]
fn json_well_known_keys_are_case_insensitive() {
    let line =
        r#"{"Message":"m","LEVEL":"error","@timestamp":"2024-05-01T12:00:00Z","traceId":"t1"}"#;
    let r = parser(ParserKind::Json).parse(line, OBSERVED);
    assert_eq!(r.message, "m");
    assert_eq!(r.level, Level::Error);
    assert_eq!(r.timestamp_ns, Some(MAY_1 * 1_000_000_000));
    assert_eq!(r.trace_id.as_deref(), Some("t1"));
    assert!(r.attributes.is_empty());

    for (line, level) in [
        (r#"{"severity":"critical"}"#, Level::Fatal),
        (r#"{"lvl":"dbg"}"#, Level::Debug),
        (r#"{"loglevel":"Information"}"#, Level::Info),
        (r#"{"log":{"level":"warning"}}"#, Level::Warn),
        (r#"{"log.level":"trace"}"#, Level::Trace),
    ] {
        assert_eq!(
            parser(ParserKind::Json).parse(line, 0).level,
            level,
            "{line}"
        );
    }
    for line in [r#"{"TIME":1714564800}"#, r#"{"timestamp":1714564800}"#] {
        let r = parser(ParserKind::Json).parse(line, 0);
        assert_eq!(r.timestamp_ns, Some(MAY_1 * 1_000_000_000), "{line}");
    }
    for line in [r#"{"trace.id":"abc"}"#, r#"{"trace":{"id":"abc"}}"#] {
        let r = parser(ParserKind::Json).parse(line, 0);
        assert_eq!(r.trace_id.as_deref(), Some("abc"), "{line}");
        assert!(r.attributes.is_empty(), "{line}");
    }
}

#[test]
fn json_message_keys_by_preference_and_the_others_stay() {
    let p = parser(ParserKind::Json);
    let r = p.parse(r#"{"log":"from log","msg":"from msg"}"#, 0);
    assert_eq!(r.message, "from msg");
    assert_eq!(r.attributes, attrs(&[("log", "from log")]));

    let r = p.parse(r#"{"message":"first","message":"again"}"#, 0);
    assert_eq!(r.message, "first");
    assert_eq!(r.attributes, attrs(&[("message", "again")]));

    let r = p.parse(r#"{"msg":42}"#, 0);
    assert_eq!(r.message, "42");

    // An object under a message key is no message: it is flattened.
    let r = p.parse(r#"{"message":{"text":"hi"}}"#, 0);
    assert_eq!(r.message, "");
    assert_eq!(r.attributes, attrs(&[("message.text", "hi")]));
}

#[test]
fn json_without_a_message_key_has_an_empty_message() {
    let r = parser(ParserKind::Json).parse(r#"{"event":"join","player":"p1"}"#, OBSERVED);
    assert_eq!(r.message, "");
    assert!(!r.parse_failed);
    assert_eq!(r.attributes, attrs(&[("event", "join"), ("player", "p1")]));
    let r = parser(ParserKind::Json).parse(" {} ", OBSERVED);
    assert_eq!(
        r,
        LogRecord {
            observed_ns: OBSERVED,
            ..LogRecord::default()
        }
    );
}

#[test]
fn json_flattens_nested_objects_with_dots() {
    let line = r#"{"a":{"b":{"c":1,"d":"x"},"e":[{"f":1}],"g":{}},"h":null,"i":{"j":null}}"#;
    let r = parser(ParserKind::Json).parse(line, 0);
    assert_eq!(
        r.attributes,
        attrs(&[
            ("a.b.c", "1"),
            ("a.b.d", "x"),
            ("a.e", r#"[{"f":1}]"#),
            ("a.g", "{}")
        ])
    );
}

#[test]
fn json_values_as_text() {
    let line = r#"{"s":"a \"q\" \\ \/ \n\t","n":-1.25e+3,"big":123456789012345678901234567890,"t":true,"f":false,"arr":[ 1 , "x y" , [ ] , { "k" : null } ]}"#;
    let r = parser(ParserKind::Json).parse(line, 0);
    assert_eq!(
        r.attributes,
        attrs(&[
            ("s", "a \"q\" \\ / \n\t"),
            ("n", "-1.25e+3"),
            ("big", "123456789012345678901234567890"),
            ("t", "true"),
            ("f", "false"),
            ("arr", r#"[1,"x y",[],{"k":null}]"#),
        ])
    );
}

#[test]
fn json_unknown_levels_stay_as_attributes_and_numeric_levels_map() {
    let p = parser(ParserKind::Json);
    let r = p.parse(r#"{"level":"verbose"}"#, 0);
    assert_eq!(r.level, Level::Unknown);
    assert_eq!(r.attributes, attrs(&[("level", "verbose")]));
    for (n, level) in [
        (10, Level::Trace),
        (20, Level::Debug),
        (30, Level::Info),
        (40, Level::Warn),
        (50, Level::Error),
        (60, Level::Fatal),
    ] {
        let r = p.parse(&format!(r#"{{"level":{n},"msg":"m"}}"#), 0);
        assert_eq!(r.level, level, "{n}");
        assert!(r.attributes.is_empty());
    }
    let r = p.parse(r#"{"level":35}"#, 0);
    assert_eq!(
        (r.level, r.attributes),
        (Level::Unknown, attrs(&[("level", "35")]))
    );
    let r = p.parse(r#"{"level":true}"#, 0);
    assert_eq!(
        (r.level, r.attributes),
        (Level::Unknown, attrs(&[("level", "true")]))
    );
}

#[test]
fn json_timestamps_as_numbers_by_magnitude() {
    let p = parser(ParserKind::Json);
    let s = MAY_1 * 1_000_000_000;
    for (ts, want) in [
        ("1714564800", s),
        ("1714564800.25", s + 250_000_000),
        ("1714564800123", s + 123_000_000),
        ("1714564800123456", s + 123_456_000),
        ("1714564800123456789", s + 123_456_789),
        ("1.7145648e9", s),
        ("1.714564800123e12", s + 123_000_000),
        ("0", 0),
        ("-1.5", -1_500_000_000),
    ] {
        let r = p.parse(&format!(r#"{{"ts":{ts}}}"#), 0);
        assert_eq!(r.timestamp_ns, Some(want), "{ts}");
        assert!(r.attributes.is_empty(), "{ts}");
    }
    // Epoch numbers written as strings are read too.
    let r = p.parse(r#"{"time":"1714564800123"}"#, 0);
    assert_eq!(r.timestamp_ns, Some(s + 123_000_000));
    // What is no time stays an attribute.
    let r = p.parse(r#"{"time":"yesterday","ts":1e300}"#, 0);
    assert_eq!(r.timestamp_ns, None);
    assert_eq!(
        r.attributes,
        attrs(&[("time", "yesterday"), ("ts", "1e300")])
    );
}

#[test]
fn json_empty_trace_ids_are_not_lifted() {
    let r = parser(ParserKind::Json).parse(r#"{"trace_id":"","traceId":"t2"}"#, 0);
    assert_eq!(r.trace_id.as_deref(), Some("t2"));
    assert_eq!(r.attributes, attrs(&[("trace_id", "")]));
}

#[test]
fn json_that_is_not_one_object_is_kept_as_text() {
    let p = parser(ParserKind::Json);
    for line in [
        r#"{"level":"error","msg":"cut"#,
        r#"{"a":1,}"#,
        r#"{'a':1}"#,
        r#"{a:1}"#,
        r#"{"a":1} trailing"#,
        r#"{"a":1}{"b":2}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":+1}"#,
        r#"{"a":tru}"#,
        r#"{"a":1e400}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\udc00x"}"#,
        "{\"a\":\"raw\ttab\"}",
        r#"[{"a":1}]"#,
        r#""just a string""#,
        "42",
        "null",
        "",
        "    ",
        "plain text ERROR here",
    ] {
        let r = p.parse(line, OBSERVED);
        assert_eq!(r, failed(line, level_from_text(line)), "{line:?}");
    }
    let line = r#"{"level":"error","msg":"cut"#;
    assert_eq!(p.parse(line, 0).level, Level::Error);
}

#[test]
fn json_unicode_and_escapes() {
    let line = r#"{"msg":"héllo 世界 😀","k\u00e9y":"caf\u00e9 \ud83d\ude00","名前":"値"}"#;
    let r = parser(ParserKind::Json).parse(line, 0);
    assert_eq!(r.message, "héllo 世界 😀");
    assert_eq!(r.attributes, attrs(&[("kéy", "café 😀"), ("名前", "値")]));
}

#[test]
fn json_very_long_lines_and_deep_nesting() {
    let long = "x".repeat(1 << 20);
    let line = format!(r#"{{"msg":"{long}","n":1}}"#);
    let r = parser(ParserKind::Json).parse(&line, 0);
    assert_eq!(r.message.len(), 1 << 20);
    assert_eq!(r.attributes, attrs(&[("n", "1")]));

    let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let r = parser(ParserKind::Json).parse(&deep(100), 0);
    assert!(!r.parse_failed);
    assert_eq!(r.attributes[0].0.split('.').count(), 100);
    // Too deep to be a log line: kept as text, without blowing the stack.
    let line = deep(100_000);
    assert!(parser(ParserKind::Json).parse(&line, 0).parse_failed);
    let line = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parser(ParserKind::Json).parse(&line, 0).parse_failed);
}

/// A small deterministic generator for the differential test below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn gen_ws(rng: &mut Rng) -> &'static str {
    rng.pick(&["", "", "", " ", "\t", "\n  ", "\r\n"])
}

fn gen_string(rng: &mut Rng) -> String {
    let parts = [
        "a",
        "Zz",
        " ",
        "é",
        "😀",
        "世",
        r#"\""#,
        r"\\",
        r"\n",
        r"\u00e9",
        r"\ud83d\ude00",
        r"\/",
        "0",
    ];
    let n = rng.below(5);
    let body: String = (0..n).map(|_| rng.pick(&parts)).collect();
    format!("\"{body}\"")
}

fn gen_value(rng: &mut Rng, depth: u32, out: &mut String) {
    let choice = if depth >= 4 {
        rng.below(6)
    } else {
        rng.below(8)
    };
    match choice {
        0 => out.push_str(&gen_string(rng)),
        1 => out.push_str(rng.pick(&["0", "-7", "12", "1714564800", "18446744073709551615"])),
        2 => out.push_str(rng.pick(&["1.5", "-0.25", "3.0"])),
        3 => out.push_str(rng.pick(&["true", "false"])),
        4 => out.push_str("null"),
        5 => out.push_str(&gen_string(rng)),
        6 => gen_object(rng, depth + 1, out),
        _ => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(gen_ws(rng));
                match rng.below(3) {
                    0 => out.push_str(rng.pick(&["1", "-2", "true", "null"])),
                    1 => out.push_str(&format!("\"{}\"", rng.pick(&["x", "y z", "é"]))),
                    _ => out.push_str(rng.pick(&["[]", "[1,2]", r#"{"k":1}"#])),
                }
                out.push_str(gen_ws(rng));
            }
            out.push(']');
        }
    }
}

fn gen_object(rng: &mut Rng, depth: u32, out: &mut String) {
    let mut keys = vec![
        "a", "b", "user", "x y", "ключ", r"k\u00e9", "zone", "id", "c_d",
    ];
    out.push('{');
    for i in 0..rng.below(5) {
        if i > 0 {
            out.push(',');
        }
        let key = keys.swap_remove(rng.below(keys.len()));
        out.push_str(gen_ws(rng));
        out.push('"');
        out.push_str(key);
        out.push('"');
        out.push_str(gen_ws(rng));
        out.push(':');
        out.push_str(gen_ws(rng));
        gen_value(rng, depth, out);
        out.push_str(gen_ws(rng));
    }
    out.push('}');
}

/// What the attributes of a JSON object are, computed from serde_json's reading.
fn reference_flatten(
    prefix: Option<&str>,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, String)>,
) {
    use serde_json::Value;
    for (key, value) in map {
        let key = match prefix {
            Some(p) => format!("{p}.{key}"),
            None => key.clone(),
        };
        match value {
            Value::Null => {}
            Value::Object(inner) if inner.is_empty() => out.push((key, "{}".into())),
            Value::Object(inner) => reference_flatten(Some(&key), inner, out),
            Value::String(s) => out.push((key, s.clone())),
            other => out.push((key, other.to_string())),
        }
    }
}

#[test]
fn json_scanner_agrees_with_serde_json() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..20_000 {
        let mut text = String::new();
        text.push_str(gen_ws(&mut rng));
        gen_object(&mut rng, 1, &mut text);
        text.push_str(gen_ws(&mut rng));

        // Well-formed: the same fields as serde_json reads.
        let ours = json_fields(&text).map(|f| f.finish(0));
        let reference: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("generated {text:?}: {e}"));
        let ours = ours.unwrap_or_else(|| panic!("rejected well-formed {text:?}"));
        let mut want = Vec::new();
        reference_flatten(None, &reference, &mut want);
        let mut got = ours.attributes.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{text:?}");

        // Mutated: accepted exactly when serde_json accepts it.
        let mut chars: Vec<char> = text.chars().collect();
        for _ in 0..=rng.below(3) {
            let at = rng.below(chars.len() + 1);
            match rng.below(4) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 => chars.truncate(at),
                _ => {
                    let c = [
                        '{', '}', '[', ']', '"', ',', ':', '\\', '0', '5', 'e', '.', '-', '+', 'u',
                        'n', ' ', '\u{1}', 'é',
                    ][rng.below(19)];
                    chars.insert(at, c);
                }
            }
        }
        let mutated: String = chars.into_iter().collect();
        let ours = json_fields(&mutated).is_some();
        let theirs =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&mutated).is_ok();
        assert_eq!(ours, theirs, "round {round}: {mutated:?}");
        if ours { accepted += 1 } else { rejected += 1 }
    }
    // The mutations exercise both outcomes.
    assert!(
        accepted > 1_000 && rejected > 1_000,
        "{accepted} accepted, {rejected} rejected"
    );
}

// --- regex --------------------------------------------------------------------------

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

// --- logfmt -------------------------------------------------------------------------

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

// --- level from text ----------------------------------------------------------------

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

// --- timestamps ---------------------------------------------------------------------

#[test]
fn rfc3339_timestamps() {
    let s = MAY_1 * 1_000_000_000;
    for (text, want) in [
        ("2024-05-01T12:00:00Z", s),
        ("2024-05-01t12:00:00z", s),
        ("2024-05-01T14:00:00+02:00", s),
        ("2024-05-01T06:30:00-05:30", s),
        ("2024-05-01T14:00:00+0200", s),
        ("2024-05-01T14:00:00+02", s),
        ("2024-05-01 14:00:00 +02:00", s),
        ("2024-05-01T12:00:00", s),
        ("2024-05-01 12:00:00", s),
        ("2024-05-01 12:00:00.123", s + 123_000_000),
        ("2024-05-01 12:00:00,123", s + 123_000_000),
        ("2024-05-01T12:00:00.1Z", s + 100_000_000),
        ("2024-05-01T12:00:00.12Z", s + 120_000_000),
        ("2024-05-01T12:00:00.123Z", s + 123_000_000),
        ("2024-05-01T12:00:00.1234Z", s + 123_400_000),
        ("2024-05-01T12:00:00.12345Z", s + 123_450_000),
        ("2024-05-01T12:00:00.123456Z", s + 123_456_000),
        ("2024-05-01T12:00:00.1234567Z", s + 123_456_700),
        ("2024-05-01T12:00:00.12345678Z", s + 123_456_780),
        ("2024-05-01T12:00:00.123456789Z", s + 123_456_789),
        ("2024-05-01T12:00:00.1234567891234Z", s + 123_456_789),
        ("2024-05-01T14:00:00.5+02:00", s + 500_000_000),
        (" 2024-05-01T12:00:00Z ", s),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59Z", -1_000_000_000),
        ("2024-02-29T23:59:59Z", 1_709_251_199_000_000_000),
        ("2000-03-01T00:00:00Z", 951_868_800_000_000_000),
        ("1900-01-01T00:00:00Z", -2_208_988_800_000_000_000),
        ("2262-04-11T23:47:16Z", 9_223_372_036_000_000_000),
    ] {
        assert_eq!(parse_timestamp(text), Some(want), "{text:?}");
    }
}

#[test]
fn not_timestamps() {
    for text in [
        "",
        "2024-05-01",
        "2024-05-01T12:00Z",
        "2024-13-01T12:00:00Z",
        "2024-00-01T12:00:00Z",
        "2023-02-29T12:00:00Z",
        "2024-04-31T12:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:00:61Z",
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00+25:00",
        "2024-05-01T12:00:00+02:0",
        "2024-05-01T12:00:00 UTC",
        "2024-05-01X12:00:00Z",
        "2024/05/01 12:00:00",
        "2024-05-01T12:00:00Zjunk",
        "2262-04-12T00:00:00Z",
        "1600-01-01T00:00:00Z",
        "२०२४-05-01T12:00:00Z",
        "yesterday",
        "12ab",
        "--5",
    ] {
        assert_eq!(parse_timestamp(text), None, "{text:?}");
    }
}

#[test]
fn epoch_timestamps_by_magnitude() {
    let s = MAY_1 * 1_000_000_000;
    for (text, want) in [
        ("1714564800", Some(s)),
        ("1714564800.123456789", Some(s + 123_456_789)),
        ("1714564800.1234567891", Some(s + 123_456_789)),
        ("1714564800123", Some(s + 123_000_000)),
        ("1714564800123.5", Some(s + 123_500_000)),
        ("1714564800123456", Some(s + 123_456_000)),
        ("1714564800123456789", Some(s + 123_456_789)),
        ("-86400", Some(-86_400_000_000_000)),
        ("1.7145648001e9", Some(s + 100_000_000)),
        ("99999999999999999999", None),
        ("1e19", None),
        ("1.7145648001E+9", Some(s + 100_000_000)),
        ("17145648001234e-4", Some(s + 123_400_000)),
        ("1714564800123456789e-9", Some(s + 123_456_789)),
        ("5e-1", Some(500_000_000)),
        ("5e-10", Some(0)),
        ("1e400", None),
        ("1e", None),
        ("1.", Some(1_000_000_000)),
        (".5", None),
        ("1,5", None),
    ] {
        assert_eq!(parse_timestamp(text), want, "{text:?}");
    }
}
