//! The logs path end to end: the real binary tails a file, tokenizes PII, and ships
//! OTLP/zstd batches to a scripted gateway.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use support::{Agent, Gateway, Received, Reply, raw_bodies, records};

/// Generous: every wait returns as soon as its condition holds; the bound only ends a
/// run that is stuck, never a slow one.
const WAIT: Duration = Duration::from_secs(120);

/// The agent with one JSON log source, a tokenization key, the built-in detectors and
/// a player-id pattern; logs go to `logs_url`, metrics to `metrics_url`.
fn start(dir: &std::path::Path, metrics_url: &str, logs_url: &str, extra_source: &str) -> Agent {
    std::fs::write(
        dir.join("tokenize.key"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .expect("key");
    let extra = format!(
        "logs:\n  - {{ path: \"{dir}/game.log\", service: game, parser: json, read_from: beginning{extra_source} }}\n\
         tokenize: {{ key_file: {dir}/tokenize.key, detectors: [email, ipv4, ipv6, {{ name: player_id, pattern: 'p-[0-9]{{6,}}', action: tokenize }}] }}\n",
        dir = dir.display(),
    );
    Agent::start_with_output(
        dir,
        &[metrics_url.to_string()],
        &extra,
        &format!(", logs_url: \"{logs_url}\""),
    )
}

const PII: &[&str] = &[
    "alice.smith+game@example.com",
    "bob_99@mail.example.co.uk",
    "203.0.113.77",
    "10.1.2.3",
    "2001:0db8:0000:0000:0000:ff00:0042:8329",
    "2001:db8::ff00:42:8329",
    "fe80::1ff:fe23:4567:890a",
    "::ffff:192.0.2.128",
    "p-12345678",
    "p-00424242",
];

const LOOK_ALIKES: &[&str] = &[
    "v1.2.3",
    "build 10.4.1",
    "2026-11-23T10:15:30.123Z",
    "12:34:56",
    "550e8400-e29b-41d4-a716-446655440000",
    "deadbeefcafebabe",
    "1.2.3.4.5",
    "100%40 off",
];

/// Forms an adversarial pass found leaving the host before the tokenizer knew them: an
/// address as a JSON key, percent-encoded, with a quoted local part (escaped in JSON, raw in
/// text), a non-hex trace id, and an address straddling the `max_line_bytes` cut.
const LEAKED_FORMS: &[&str] = &[
    "keyed.user@example.com",
    "jane%40example.com",
    "john smith\"@example.com",
    "john smith\"@example.net",
    "sess-4411-alice-trace",
    "straddle.user@example.com",
];

/// The maximum line length of the corpus' source: the straddling line is cut near it.
const MAX_LINE: usize = 1024;

fn leaked_forms() -> Vec<String> {
    vec![
        r#"{"level":"info","msg":"seen","seen":{"keyed.user@example.com":1}}"#.into(),
        r#"{"level":"info","msg":"GET /reset?user=jane%40example.com&lang=en"}"#.into(),
        r#"{"level":"info","msg":"mail to \"john smith\"@example.com bounced"}"#.into(),
        r#"plain text: mail to "john smith"@example.net bounced"#.into(),
        r#"{"level":"info","msg":"traced","traceId":"sess-4411-alice-trace"}"#.into(),
        // The address runs across byte MAX_LINE: a cut there ships two harmless halves.
        format!(
            "{} straddle.user@example.com end",
            "w".repeat(MAX_LINE - 10)
        ),
    ]
}

fn corpus() -> Vec<String> {
    let mut lines = Vec::new();
    for (i, pii) in PII.iter().enumerate() {
        let look = LOOK_ALIKES[i % LOOK_ALIKES.len()];
        lines.push(format!(
            r#"{{"level":"info","msg":"player login from {pii} on {look}","shard":"{i}"}}"#
        ));
        lines.push(format!(
            r#"{{"level":"warn","msg":"retry for {look}","player_id":"{pii}","peer":"{pii}"}}"#
        ));
        lines.push(format!("plain text line {i}: user {pii} said hi ({look})"));
    }
    lines.extend(leaked_forms());
    // The same values again: they must map to the same tokens.
    lines.push(
        r#"{"level":"info","msg":"again alice.smith+game@example.com and p-12345678"}"#.into(),
    );
    lines
}

#[tokio::test]
async fn no_pii_value_leaves_the_host_tokens_are_stable_and_look_alikes_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Gateway::start("127.0.0.1:0", vec![]).await;
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let lines = corpus();
    let mut f = std::fs::File::create(dir.path().join("game.log")).expect("log");
    for l in &lines {
        writeln!(f, "{l}").expect("write");
    }
    let _agent = start(
        dir.path(),
        &metrics.url("http"),
        &logs.url("http"),
        &format!(", max_line_bytes: {MAX_LINE}"),
    );
    // The straddling line arrives as two pieces.
    let expected = lines.len() + 1;
    let got = logs
        .wait_for("every corpus line", WAIT, |r| records(r).len() >= expected)
        .await;
    for raw in raw_bodies(&got) {
        let text = String::from_utf8_lossy(&raw);
        for pii in PII.iter().chain(LEAKED_FORMS) {
            assert!(!text.contains(pii), "{pii} left the host");
        }
    }
    let recs = records(&got);
    assert_eq!(recs.len(), expected, "every line arrives once");
    let joined = recs.join("\n");
    for look in LOOK_ALIKES {
        assert!(
            joined.contains(look),
            "look-alike {look} was changed: {joined}"
        );
    }
    let token = regex::Regex::new(r"tok_[0-9a-f]{8}_[0-9a-f]{16}").expect("regex");
    let first_email = recs
        .iter()
        .find(|r| r.starts_with("player login") && r.contains("shard=0"))
        .and_then(|r| token.find(r))
        .map(|m| m.as_str().to_string())
        .expect("the first email became a token");
    let last = recs
        .iter()
        .find(|r| r.starts_with("again"))
        .expect("the repeat line");
    let tokens: Vec<&str> = token.find_iter(last).map(|m| m.as_str()).collect();
    assert_eq!(tokens.len(), 2, "{last}");
    assert_eq!(
        tokens[0], first_email,
        "the same email gives the same token"
    );
    let distinct: BTreeSet<&str> = token.find_iter(&joined).map(|m| m.as_str()).collect();
    assert!(
        distinct.len() >= PII.len() - 1,
        "distinct values give distinct tokens: {distinct:?}"
    );
}

#[tokio::test]
async fn with_logs_throttled_for_a_minute_metrics_keep_flowing_and_debug_is_shed_before_info() {
    const THROTTLE: Duration = Duration::from_secs(60);
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Gateway::start("127.0.0.1:0", vec![]).await;
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let path = dir.path().join("game.log");
    std::fs::write(&path, "").expect("log");
    let agent = start(dir.path(), &metrics.url("http"), &logs.url("http"), "");
    // For a minute every logs batch is refused, with the hint to shed debug.
    logs.answer_for(
        THROTTLE,
        Reply::status(429)
            .header("retry-after", "2")
            .header("edge-shed-logs", "debug"),
    );
    let throttled = Instant::now();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    let metrics_before = metrics.received().len();
    let mut round = 0;
    while throttled.elapsed() < THROTTLE {
        for i in 0..50 {
            let level = if i % 2 == 0 { "debug" } else { "info" };
            writeln!(f, r#"{{"level":"{level}","msg":"round {round} line {i}"}}"#).expect("write");
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Metrics kept flowing while logs were throttled (a 10 s cadence: about 6).
    let metrics_during = metrics.received().len() - metrics_before;
    assert!(
        metrics_during >= 4,
        "{metrics_during} metrics batches in a minute of throttled logs"
    );
    let refused = logs.received().len();
    assert!(refused >= 10, "the agent kept trying: {refused} attempts");
    let last = format!("round {} ", round - 1);
    let got = logs
        .wait_for("info logs after the throttle", WAIT, |r| {
            records(r).iter().filter(|t| t.starts_with(&last)).count() >= 25
        })
        .await;
    let debug_shed = agent
        .metric("edge_logs_dropped_total{class=\"logs_debug\",reason=\"shed\"}")
        .unwrap_or(0.0);
    let info_shed = agent
        .metric("edge_logs_dropped_total{class=\"logs_info\",reason=\"shed\"}")
        .unwrap_or(0.0);
    assert!(
        debug_shed >= (round as f64 - 2.0) * 25.0 * 0.9,
        "debug was shed through the minute: {debug_shed} of {round} rounds"
    );
    assert_eq!(info_shed, 0.0, "info was shed while debug was the hint");
    let accepted: Vec<Received> = got.into_iter().filter(|r| r.status == 204).collect();
    let info: BTreeSet<String> = records(&accepted)
        .into_iter()
        .filter(|t| t.starts_with("round "))
        .collect();
    for r in 0..round {
        for i in (1..50).step_by(2) {
            let line = format!("round {r} line {i}");
            assert!(info.contains(&line), "info line lost: {line}");
        }
    }
}

#[tokio::test]
async fn files_renamed_to_unrelated_names_right_after_they_were_written_lose_no_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Gateway::start("127.0.0.1:0", vec![]).await;
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let path = dir.path().join("game.log");
    std::fs::write(&path, "{\"level\":\"info\",\"msg\":\"first\"}\n").expect("log");
    let _agent = start(dir.path(), &metrics.url("http"), &logs.url("http"), "");
    logs.wait_for("the first line", WAIT, |r| {
        records(r).iter().any(|m| m == "first")
    })
    .await;
    // The first file goes away under a name of its own (followed by inode); every file
    // below is a new one.
    std::fs::rename(&path, dir.path().join("first.dat")).expect("rename");
    // Each file is written and renamed away within microseconds, to a name that is no
    // rotated name of the glob: the tailer rarely lists it as game.log, and only
    // inotify's paired rename events say where it went.
    let files = 20;
    for k in 0..files {
        let mut f = std::fs::File::create(&path).expect("create");
        for i in 0..3 {
            writeln!(f, r#"{{"level":"info","msg":"file {k:02} line {i}"}}"#).expect("write");
        }
        drop(f);
        std::fs::rename(&path, dir.path().join(format!("moved-{k:02}.dat"))).expect("rename");
        // Yields: the test's receiver runs on this runtime.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let got = logs
        .wait_for("every line of every renamed file", WAIT, |r| {
            records(r).iter().filter(|m| m.starts_with("file ")).count() >= files * 3
        })
        .await;
    let seen: Vec<String> = records(&got)
        .into_iter()
        .filter(|m| m.starts_with("file "))
        .collect();
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), files * 3, "lines lost");
    assert_eq!(seen.len(), files * 3, "lines repeated");
}

#[tokio::test]
async fn kill_9_mid_stream_resumes_without_losing_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Gateway::start("127.0.0.1:0", vec![]).await;
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let path = dir.path().join("game.log");
    std::fs::write(&path, "").expect("log");
    let agent = start(dir.path(), &metrics.url("http"), &logs.url("http"), "");
    let listen = agent.listen;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    let n = 4_000;
    for i in 0..n / 2 {
        writeln!(f, r#"{{"level":"info","msg":"line {i:05}"}}"#).expect("write");
    }
    logs.wait_for("some lines", WAIT, |r| !records(r).is_empty())
        .await;
    agent.kill_9();
    for i in n / 2..n {
        writeln!(f, r#"{{"level":"info","msg":"line {i:05}"}}"#).expect("write");
    }
    let _agent = Agent::restart(dir.path(), listen);
    let got = logs
        .wait_for("every line", WAIT, |r| {
            records(r).iter().collect::<BTreeSet<_>>().len() >= n
        })
        .await;
    let seen: BTreeSet<String> = records(&got).into_iter().collect();
    for i in 0..n {
        assert!(seen.contains(&format!("line {i:05}")), "line {i} lost");
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_while_the_game_rotates_out_of_the_glob_loses_no_line() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const KILLS: usize = 25;
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Gateway::start("127.0.0.1:0", vec![]).await;
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let path = dir.path().join("game.log");
    std::fs::write(&path, "").expect("log");
    let mut agent = start(dir.path(), &metrics.url("http"), &logs.url("http"), "");
    let listen = agent.listen;
    // The game: 200 lines a second, rotated every ~1 s by rename to `game.log.N`, a
    // name outside the agent's `game.log` glob (as logrotate does), then a new file.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, written, dir, path) = (
            stop.clone(),
            written.clone(),
            dir.path().to_path_buf(),
            path.clone(),
        );
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open");
            let mut n = 0usize;
            let mut rotations = 0;
            while !stop.load(Ordering::SeqCst) {
                for _ in 0..20 {
                    writeln!(f, r#"{{"level":"info","msg":"seq {n:06}"}}"#).expect("write");
                    n += 1;
                }
                written.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                if n.is_multiple_of(200) {
                    rotations += 1;
                    std::fs::rename(&path, dir.join(format!("game.log.{rotations}")))
                        .expect("rotate");
                    f = std::fs::File::create(&path).expect("new file");
                }
            }
            n
        })
    };
    let mut rng = fastrand::Rng::with_seed(23);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
        agent.kill_9();
        tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
        agent = Agent::restart(dir.path(), listen);
    }
    stop.store(true, Ordering::SeqCst);
    let total = writer.join().expect("writer");
    assert!(total >= 1_000, "the writer wrote {total} lines");
    let got = logs
        .wait_for("every line written", WAIT, |r| {
            records(r)
                .iter()
                .filter(|t| t.starts_with("seq "))
                .collect::<BTreeSet<_>>()
                .len()
                >= total
        })
        .await;
    let all = records(&got);
    let seen: BTreeSet<&String> = all.iter().filter(|t| t.starts_with("seq ")).collect();
    let missing: Vec<usize> = (0..total)
        .filter(|i| !seen.contains(&format!("seq {i:06}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {total} lines lost across {KILLS} SIGKILLs: {:?}…",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let repeated = all.iter().filter(|t| t.starts_with("seq ")).count() - seen.len();
    eprintln!(
        "{total} lines, {KILLS} SIGKILLs, {} rotations: none lost, {repeated} delivered twice (at-least-once)",
        total / 200
    );
    assert_eq!(
        agent.metric("edge_logs_lost_bytes_total"),
        Some(0.0),
        "no file with a position disappeared"
    );
}

#[tokio::test]
async fn a_numbered_positions_file_of_an_earlier_agent_is_adopted_and_nothing_is_read_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Gateway::start("127.0.0.1:0", vec![]).await;
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let path = dir.path().join("game.log");
    std::fs::write(&path, "").expect("log");
    let agent = start(dir.path(), &metrics.url("http"), &logs.url("http"), "");
    let listen = agent.listen;
    let write = |from: usize, to: usize| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        for i in from..to {
            writeln!(f, r#"{{"level":"info","msg":"line {i:05}"}}"#).expect("write");
        }
    };
    write(0, 100);
    logs.wait_for("the first lines", WAIT, |r| records(r).len() >= 100)
        .await;
    let status = agent.terminate();
    assert!(status.success(), "exit: {status}");

    // What an earlier agent left: the same positions under the numbered name.
    let positions = dir.path().join("queue/positions");
    let stable: Vec<_> = std::fs::read_dir(&positions)
        .expect("positions dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(stable.len(), 1, "{stable:?}");
    let name = stable[0].file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(name.starts_with("game-"), "{name}");
    std::fs::rename(&stable[0], positions.join("0-game.json")).expect("rename");

    write(100, 150);
    let _agent = Agent::restart(dir.path(), listen);
    let got = logs
        .wait_for("the lines written while it was down", WAIT, |r| {
            records(r).len() >= 150
        })
        .await;
    let all = records(&got);
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 150, "every line");
    assert_eq!(all.len(), 150, "no line read twice");
    assert!(stable[0].exists(), "the numbered file took the stable name");
}
