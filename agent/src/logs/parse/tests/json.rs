//! The JSON parser.

use super::*;

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
