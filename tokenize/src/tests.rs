//! Tests of the PII tokenizer.

use super::*;

/// The parts of a log record the tokenizer scrubs, as the agent's record holds them.
#[derive(Debug, Default)]
struct LogRecord {
    message: String,
    trace_id: Option<String>,
    attributes: Vec<(String, String)>,
}

trait ScrubRecord {
    fn scrub(&self, record: &mut LogRecord) -> Verdict;
}

impl ScrubRecord for Tokenizer {
    fn scrub(&self, r: &mut LogRecord) -> Verdict {
        self.scrub_fields(&mut r.message, r.trace_id.as_mut(), &mut r.attributes)
    }
}

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn key() -> TokenKey {
    TokenKey::from_bytes(KEY).expect("key")
}

fn spec(name: &str, pattern: Option<&str>, action: Action) -> DetectorSpec {
    DetectorSpec {
        name: name.to_owned(),
        pattern: pattern.map(str::to_owned),
        action,
    }
}

fn tokenizer(specs: &[DetectorSpec]) -> Tokenizer {
    Tokenizer::new(key(), specs).expect("tokenizer")
}

fn scrub(t: &Tokenizer, text: &str) -> String {
    t.scrub_text(text).expect("not dropped").into_owned()
}

/// `text` with each of `values` replaced by its token.
fn with_tokens(t: &Tokenizer, text: &str, values: &[&str]) -> String {
    values
        .iter()
        .fold(text.to_owned(), |acc, v| acc.replacen(v, &t.token(v), 1))
}

fn assert_untouched(t: &Tokenizer, text: &str) {
    match t.scrub_text(text) {
        Ok(Cow::Borrowed(_)) => {}
        other => panic!("{text:?} was changed: {other:?}"),
    }
}

#[test]
fn token_format_and_known_vector() {
    let t = tokenizer(&[]);
    // Python: hmac.new(KEY, b"john@example.com", sha256).hexdigest()[:16];
    // hashlib.sha256(KEY).hexdigest()[:8].
    assert_eq!(t.key_id(), "3eb1bd43");
    assert_eq!(t.token("john@example.com"), "tok_3eb1bd43_6b52336fd71a12da");
    assert_eq!(t.token("x").len(), TOKEN_LEN);
}

#[test]
fn deterministic_and_key_dependent() {
    let mut t = tokenizer(&[]);
    let line = "login from 10.1.2.3 by ann@example.org";
    assert_eq!(scrub(&t, line), scrub(&t, line));
    assert_eq!(t.token("10.1.2.3"), t.token("10.1.2.3"));
    assert_ne!(t.token("10.1.2.3"), t.token("10.1.2.4"));
    let before = scrub(&t, line);
    let other = TokenKey::from_bytes(b"another key, long enough").expect("key");
    assert_ne!(other.id(), t.key_id());
    t.set_key(other);
    let after = scrub(&t, line);
    assert_ne!(before, after);
    assert!(after.contains(&format!("tok_{}_", t.key_id())));
}

#[test]
fn email_positives() {
    let t = tokenizer(&[]);
    for email in [
        "john@example.com",
        "john.doe+tag@mail.example.co.uk",
        "a_b%c-d@sub-domain.example.io",
        "josé@example.com",
    ] {
        let line = format!("user <{email}> joined.");
        assert_eq!(
            scrub(&t, &line),
            with_tokens(&t, &line, &[email]),
            "{email}"
        );
    }
    // A full stop after the address is punctuation.
    let line = "mail ann@example.org.";
    assert_eq!(scrub(&t, line), with_tokens(&t, line, &["ann@example.org"]));
}

#[test]
fn email_look_alikes() {
    let t = tokenizer(&[]);
    for text in [
        "user@localhost",
        "a@b.c",
        "@channel hello",
        "ping foo@bar now",
        "x@-bad.com",
        "x@example.c0m",
        "git sha abc@{upstream}",
    ] {
        assert_untouched(&t, text);
    }
    // Not an email, but the address is still found.
    let line = "root@10.0.0.1";
    assert_eq!(scrub(&t, line), with_tokens(&t, line, &["10.0.0.1"]));
}

#[test]
fn ipv4_positives() {
    let t = tokenizer(&[]);
    for (line, ip) in [
        ("connect 10.0.0.1:8080 ok", "10.0.0.1"),
        ("from 192.168.1.20.", "192.168.1.20"),
        ("(8.8.8.8)", "8.8.8.8"),
        ("ip=255.255.255.255,", "255.255.255.255"),
        ("peer[0.0.0.0]", "0.0.0.0"),
        ("1.2.3.4", "1.2.3.4"),
    ] {
        assert_eq!(scrub(&t, line), with_tokens(&t, line, &[ip]), "{line}");
    }
    let line = "10.0.0.1:8080";
    assert!(scrub(&t, line).ends_with(":8080"));
}

#[test]
fn ipv4_look_alikes() {
    let t = tokenizer(&[]);
    for text in [
        "version 1.2.3",
        "v10.0.1",
        "release v1.2.3.4",
        "1.2.3.4.5",
        "oid .1.3.6.1.4.1.2021",
        "256.1.1.1",
        "1.2.3.999",
        "4.3.2.1.in-addr.arpa",
        "host.1.2.3.4",
        "1.2.3.4rc1",
        "took 12.5ms at 2024-05-01T12:00:00.123Z",
    ] {
        assert_untouched(&t, text);
    }
}

#[test]
fn ipv6_all_forms() {
    let t = tokenizer(&[]);
    for (line, ip) in [
        (
            "full 2001:0db8:0000:0000:0000:ff00:0042:8329 end",
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
        ),
        ("c 2001:db8::ff00:42:8329", "2001:db8::ff00:42:8329"),
        ("loopback ::1", "::1"),
        ("addr=::1.", "::1"),
        ("addr:fe80::1", "fe80::1"),
        ("mapped ::ffff:192.0.2.128 x", "::ffff:192.0.2.128"),
        ("upper 2001:DB8::A", "2001:DB8::A"),
        ("any :: 1::", "1::"),
        ("(::1)", "::1"),
        ("http://[::1]:8080/", "::1"),
    ] {
        assert_eq!(scrub(&t, line), with_tokens(&t, line, &[ip]), "{line}");
    }
    // The zone stays, outside the token; so do brackets and the port.
    let tok = t.token("fe80::1");
    assert_eq!(scrub(&t, "via fe80::1%eth0"), format!("via {tok}%eth0"));
    let tok = t.token("2001:db8::1");
    assert_eq!(scrub(&t, "[2001:db8::1]:443"), format!("[{tok}]:443"));
    let tok = t.token("fe80::1");
    assert_eq!(scrub(&t, "[fe80::1%en0]:22"), format!("[{tok}%en0]:22"));
}

#[test]
fn ipv6_look_alikes() {
    let t = tokenizer(&[]);
    for text in [
        "at 12:34:56",
        "2024-05-01T12:00:00.123Z INFO started",
        "12:00:00.123",
        "edge_agent::logs::tail: rotated",
        "a::b and cafe::beef",
        "Default::new()",
        "std::fmt::Display",
        "mac 00:1a:2b:3c:4d:5e",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "localhost:8080",
        "ratio 16:9, John 3:16",
        "1:2:3:4:5:6:7",
        "key: value",
        "::",
    ] {
        assert_untouched(&t, text);
    }
}

#[test]
fn ipv4_inside_ipv6_is_one_token() {
    let t = tokenizer(&[]);
    let out = scrub(&t, "::ffff:10.0.0.1");
    assert_eq!(out, t.token("::ffff:10.0.0.1"));
}

#[test]
fn no_pii_is_borrowed() {
    let t = tokenizer(&[spec("player_id", Some(r"p-[0-9]{6,}"), Action::Tokenize)]);
    assert_untouched(&t, "");
    assert_untouched(&t, "plain words only");
    assert_untouched(
        &t,
        "2024-05-01T12:00:00.123Z INFO server.rs:42 match 7 ended: score 3-2, p-12 left",
    );
}

#[test]
fn redact_and_builtin_override() {
    let t = tokenizer(&[spec("email", None, Action::Redact)]);
    assert_eq!(
        scrub(&t, "to ann@example.org from 10.0.0.1"),
        format!("to [REDACTED:email] from {}", t.token("10.0.0.1"))
    );
}

#[test]
fn drop_action() {
    let t = tokenizer(&[
        spec("ipv6", None, Action::Drop),
        spec("card", Some(r"\b4[0-9]{15}\b"), Action::Drop),
    ]);
    assert_eq!(t.scrub_text("from ::1"), Err("ipv6".to_owned()));
    assert_eq!(
        t.scrub_text("paid with 4111111111111111"),
        Err("card".to_owned())
    );
    let mut r = LogRecord {
        message: "ok".to_owned(),
        attributes: vec![("note".to_owned(), "4111111111111111".to_owned())],
        ..LogRecord::default()
    };
    assert_eq!(
        t.scrub(&mut r),
        Verdict::Drop {
            detector: "card".to_owned()
        }
    );
    assert!(t.scrub_text("from 10.0.0.1").is_ok());
}

#[test]
fn configured_whole_match_and_group_one() {
    let t = tokenizer(&[
        spec("player", Some(r"p-[0-9]{6,}"), Action::Tokenize),
        spec("session", Some(r"session=(\S+)"), Action::Redact),
    ]);
    let line = "p-1234567 joined session=abc123 at p-12";
    let expected = format!(
        "{} joined session=[REDACTED:session] at p-12",
        t.token("p-1234567")
    );
    assert_eq!(scrub(&t, line), expected);
}

#[test]
fn group_one_that_took_no_part_falls_back_to_the_whole_match() {
    let t = tokenizer(&[spec("vip", Some(r"vip(?:=(\w+))?"), Action::Redact)]);
    assert_eq!(scrub(&t, "vip=bob in"), "vip=[REDACTED:vip] in");
    assert_eq!(scrub(&t, "a vip in"), "a [REDACTED:vip] in");
}

#[test]
fn scrubbed_text_is_left_alone_the_second_time() {
    let t = tokenizer(&[spec("email", None, Action::Redact)]);
    let once = scrub(
        &t,
        "ann@example.org from [2001:db8::1]:443 and 10.0.0.1:80, fe80::1%eth0",
    );
    assert_untouched(&t, &once);
}

#[test]
fn configured_beats_builtin_on_the_same_span() {
    let t = tokenizer(&[spec("peer", Some(r"peer=(\S+)"), Action::Redact)]);
    assert_eq!(scrub(&t, "peer=10.0.0.1"), "peer=[REDACTED:peer]");
}

#[test]
fn record_message_attributes_and_key_detection() {
    let t = tokenizer(&[spec("player_id", Some(r"p-[0-9]{6,}"), Action::Tokenize)]);
    let mut r = LogRecord {
        message: "kick p-7654321 from 10.0.0.9".to_owned(),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        attributes: vec![
            ("player_id".to_owned(), "p-123".to_owned()),
            ("match.player_id".to_owned(), "short".to_owned()),
            ("email".to_owned(), "ann@example.org".to_owned()),
            ("10.0.0.1".to_owned(), "map=dust".to_owned()),
            ("empty".to_owned(), String::new()),
        ],
    };
    let expected_message = format!("kick {} from {}", t.token("p-7654321"), t.token("10.0.0.9"));
    assert_eq!(t.scrub(&mut r), Verdict::Keep { replaced: 6 });
    assert_eq!(r.message, expected_message);
    assert_eq!(r.attributes[0], ("player_id".to_owned(), t.token("p-123")));
    assert_eq!(r.attributes[1].1, t.token("short"));
    assert_eq!(r.attributes[2].1, t.token("ann@example.org"));
    // An address used as a key is replaced in the key; the value stays.
    assert_eq!(
        r.attributes[3],
        (t.token("10.0.0.1"), "map=dust".to_owned())
    );
    assert_eq!(
        r.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[test]
fn utf8_around_matches() {
    let t = tokenizer(&[]);
    let line = "ユーザー 10.0.0.1 さん ann@example.org、ok";
    assert_eq!(
        scrub(&t, line),
        with_tokens(&t, line, &["10.0.0.1", "ann@example.org"])
    );
}

#[test]
fn never_panics_on_odd_text() {
    let t = tokenizer(&[spec("p", Some(r"id=(\w*)"), Action::Tokenize)]);
    let pieces = [
        "1", "9", ".", ":", "::", "@", "a", "f", "é", "ー", "%", "[", "]", " ", "-", "id=",
        "x.com", "255", "_",
    ];
    let mut seed: u32 = 12345;
    for _ in 0..5000 {
        let mut s = String::new();
        for _ in 0..12 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            s.push_str(pieces[(seed >> 16) as usize % pieces.len()]);
        }
        let _ = t.scrub_text(&s);
    }
}

#[test]
fn bad_configs_name_the_detector() {
    let err = |specs: &[DetectorSpec]| match Tokenizer::new(key(), specs) {
        Ok(_) => panic!("accepted {specs:?}"),
        Err(e) => e.to_string(),
    };
    assert!(err(&[spec("phone", None, Action::Redact)]).contains("`phone`"));
    assert!(err(&[spec("bad", Some("p-(["), Action::Redact)]).contains("`bad`"));
    assert!(err(&[spec("e", Some(""), Action::Redact)]).contains("`e`"));
    assert!(err(&[spec("ipv4", Some("x"), Action::Redact)]).contains("`ipv4`"));
    let twice = [
        spec("p", Some("a"), Action::Redact),
        spec("P", Some("b"), Action::Redact),
    ];
    assert!(err(&twice).contains("configured twice"));
    let groups = [
        spec("one", Some("(?P<id>a)"), Action::Redact),
        spec("two", Some("(?P<id>b)"), Action::Redact),
    ];
    assert!(err(&groups).contains("`two`"));
    assert_eq!("Redact".parse::<Action>().ok(), Some(Action::Redact));
    assert!("mask".parse::<Action>().is_err());
}

#[test]
fn verbose_pattern_with_trailing_comment() {
    let t = tokenizer(&[
        spec("a", Some("(?x) p - [0-9]+ # player"), Action::Redact),
        spec("b", Some("q-[0-9]+"), Action::Redact),
    ]);
    assert_eq!(scrub(&t, "p-1 q-2"), "[REDACTED:a] [REDACTED:b]");
}

#[test]
fn key_file_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token.key");
    std::fs::write(&path, b"  0123456789abcdef0123456789abcdef\n").expect("write");
    assert_eq!(TokenKey::from_file(&path).expect("key").id(), "3eb1bd43");
    std::fs::write(&path, b"short\n").expect("write");
    let e = TokenKey::from_file(&path).expect_err("too short");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert!(e.to_string().contains("5 bytes"), "{e}");
    let missing = dir.path().join("missing.key");
    let e = TokenKey::from_file(&missing).expect_err("missing");
    assert!(e.to_string().contains("missing.key"), "{e}");
    assert!(!format!("{:?}", key()).contains("0123456789"));
}

#[test]
fn key_file_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token.key");
    std::fs::write(&path, KEY).expect("write");
    let mut kf = KeyFile::open(&path).expect("open");
    assert_eq!(kf.key().id(), "3eb1bd43");
    assert!(!kf.reload_if_changed().expect("unchanged"));

    // A bad file: the error, and the old key stays.
    std::fs::write(&path, b"tiny").expect("write");
    assert!(kf.reload_if_changed().is_err());
    assert_eq!(kf.key().id(), "3eb1bd43");

    std::fs::write(&path, b"a brand new key, rotated today").expect("write");
    assert!(kf.reload_if_changed().expect("reloaded"));
    assert_ne!(kf.key().id(), "3eb1bd43");
    assert!(!kf.reload_if_changed().expect("unchanged"));
}

#[test]
fn percent_encoded_and_quoted_addresses_are_found() {
    let t = tokenizer(&[]);
    for (text, address) in [
        (
            "GET /reset?user=jane%40example.com&x=1",
            "jane%40example.com",
        ),
        (
            r#"to "john smith"@example.com now"#,
            r#""john smith"@example.com"#,
        ),
        (
            r#"{"to":"\"john smith\"@example.com"}"#,
            r#"\"john smith\"@example.com"#,
        ),
    ] {
        let out = t.scrub_text(text).expect("kept");
        assert!(!out.contains(address), "{address} left in {out}");
        assert!(out.contains(&t.token(address)), "{out}");
    }
    // Look-alikes: a percent sign that encodes something else, an empty quoted string.
    for text in ["100%40 done", "50%20off.example", r#"say ""@ home"#] {
        assert_eq!(t.scrub_text(text).expect("kept"), text);
    }
}

#[test]
fn keys_and_a_non_hex_trace_id_are_scrubbed_and_a_hex_one_stays() {
    let t = tokenizer(&[]);
    let mut r = LogRecord {
        message: "m".to_owned(),
        trace_id: Some("user-jane@example.com".to_owned()),
        attributes: vec![("seen.a@b.example".to_owned(), "1".to_owned())],
    };
    assert_eq!(t.scrub(&mut r), Verdict::Keep { replaced: 2 });
    assert_eq!(
        r.trace_id.as_deref(),
        Some(t.token("user-jane@example.com").as_str())
    );
    let key = &r.attributes[0].0;
    assert!(!key.contains("@b.example"), "{key}");
    assert!(key.contains("tok_"), "{key}");
    let mut hex = LogRecord {
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        ..LogRecord::default()
    };
    assert_eq!(t.scrub(&mut hex), Verdict::Keep { replaced: 0 });
    assert_eq!(
        hex.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}
