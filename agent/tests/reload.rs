//! SIGHUP on the real binary: a broken config set is refused with every problem logged
//! and changes nothing; a valid one is swapped in live (a parser change takes effect
//! with every line counted once across it; a removed source stops with its position
//! committed) and names the settings that need a restart.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use support::{Agent, Gateway, records};

/// Generous: every wait returns as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(120);

fn hup(agent: &Agent) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits (generously: the machine may be busy) until the log has `count` lines with `text`.
fn wait_log(agent: &mut Agent, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = agent.child.try_wait() {
            panic!(
                "edge-agent exited ({status}); its log:\n{}",
                agent.log_text()
            );
        }
        if agent.log_text().matches(text).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_refuses_a_broken_config_and_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = Agent::start(dir.path(), &["http://127.0.0.1:9/api/v1/push".into()], "");
    let file = dir.path().join("agent.yaml");
    let good = std::fs::read_to_string(&file).expect("read config");
    let sha_at_start = config_sha(&agent);
    assert_ne!(sha_at_start, "000000000000", "edge_config_hash at start");
    assert_eq!(
        agent.metric("edge_config_last_reload_successful"),
        Some(1.0)
    );

    // Two problems: both are logged, the config is refused, nothing changes.
    let broken = good
        .replacen("cadence: 1s\n", "cadence: soon\n", 1)
        .replace("http://127.0.0.1:9", "ftp://127.0.0.1:9");
    std::fs::write(&file, broken).expect("write");
    hup(&agent);
    wait_log(
        &mut agent,
        "config reload refused; the running config stays problems=2",
        1,
    );
    let log = agent.log_text();
    assert!(log.contains("is not a duration"), "{log}");
    assert!(log.contains("output.metrics_url"), "{log}");
    assert_eq!(agent.get("/ready").map(|(s, _)| s), Some(200));
    assert_eq!(
        agent.metric("edge_config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("edge_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(config_sha(&agent), sha_at_start);

    // A valid set that moves the listen address: named as needing a restart; the
    // agent still answers on the address it bound, and the set is in force.
    let moved = good.replace(
        &format!("listen: {}", agent.listen),
        &format!("listen: 127.0.0.1:{}", support::free_port()),
    );
    assert_ne!(moved, good);
    std::fs::write(&file, moved).expect("write");
    hup(&agent);
    wait_log(&mut agent, "this setting needs a restart", 1);
    wait_log(&mut agent, "config reloaded", 1);
    assert!(agent.log_text().contains("key=\"listen\""));
    let sha = config_sha(&agent);
    assert!(
        agent
            .log_text()
            .contains(&format!("config reloaded sha256={sha}")),
        "edge_config_hash {sha} is the start of the logged hash:\n{}",
        agent.log_text()
    );
    assert_eq!(agent.get("/ready").map(|(s, _)| s), Some(200));
    assert_eq!(
        agent.metric("edge_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("edge_config_last_reload_successful"),
        Some(1.0)
    );
    assert_ne!(config_sha(&agent), sha_at_start);

    // SIGUSR1 still toggles incident mode.
    let status = std::process::Command::new("kill")
        .args(["-USR1", &agent.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    wait_log(&mut agent, "incident mode toggled", 1);

    let status = agent.terminate();
    assert!(status.success(), "exit: {status}");
}

/// `edge_config_hash`, as the hex digits the log shows first.
fn config_sha(agent: &Agent) -> String {
    let hash = agent.metric("edge_config_hash").unwrap_or(0.0);
    format!("{:012x}", hash as u64)
}

/// The agent with the log sources `sources` (YAML list items) and a tokenization key;
/// logs go to `logs`.
fn start_with_logs(dir: &std::path::Path, logs: &Gateway, sources: &str) -> Agent {
    std::fs::write(
        dir.join("tokenize.key"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .expect("key");
    let extra = format!(
        "logs:\n{sources}tokenize: {{ key_file: {}/tokenize.key }}\n",
        dir.display()
    );
    Agent::start_with_output(
        dir,
        &["http://127.0.0.1:9/api/v1/push".into()],
        &extra,
        &format!(", logs_url: \"{}\"", logs.url("http")),
    )
}

/// Each record's line number (`n=NNNNN`, in the body or an attribute) and whether the
/// logfmt parser took it apart (its body is the `msg` alone).
fn numbered(received: &[support::Received], tag: &str) -> Vec<(usize, bool)> {
    records(received)
        .iter()
        .filter_map(|r| {
            let at = r.find(&format!("{tag}="))? + tag.len() + 1;
            let n = r.get(at..at + 5)?.parse().ok()?;
            Some((n, r.starts_with("hello")))
        })
        .collect()
}

#[tokio::test]
async fn a_parser_change_takes_effect_without_a_restart_and_no_line_is_lost_or_repeated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let path = dir.path().join("game.log");
    std::fs::write(&path, "").expect("log");
    let source = format!(
        "  - {{ path: \"{}\", service: game, parser: json }}\n",
        path.display()
    );
    let mut agent = start_with_logs(dir.path(), &logs, &source);

    // The game writes logfmt lines the whole time (until 500 lines after the reload is
    // in force); the config says json at first (so they ship as text), then logfmt.
    let writer_path = path.clone();
    let (reloaded_tx, reloaded_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&writer_path)
            .expect("open");
        let mut first_after = None;
        let mut i = 0;
        while first_after.is_none_or(|first: usize| i < first + 500) && i < 99_000 {
            if first_after.is_none() && reloaded_rx.try_recv().is_ok() {
                first_after = Some(i);
            }
            writeln!(f, "level=info msg=hello n={i:05}").expect("write");
            i += 1;
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        (first_after, i)
    });
    logs.wait_for("some lines", WAIT, |r| !numbered(r, "n").is_empty())
        .await;
    let file = dir.path().join("agent.yaml");
    let text = std::fs::read_to_string(&file).expect("config");
    std::fs::write(&file, text.replace("parser: json", "parser: logfmt")).expect("write");
    hup(&agent);
    wait_log(&mut agent, "config reloaded", 1);
    let _ = reloaded_tx.send(());
    let (first_after, n) = writer.join().expect("writer");
    let first_after = first_after.expect("the reload came while the game wrote");

    let got = logs
        .wait_for("every line", WAIT, |r| numbered(r, "n").len() >= n)
        .await;
    let mut seen: BTreeMap<usize, (usize, bool)> = BTreeMap::new();
    for (i, parsed) in numbered(&got, "n") {
        let e = seen.entry(i).or_insert((0, parsed));
        e.0 += 1;
    }
    for i in 0..n {
        assert_eq!(
            seen.get(&i).map(|e| e.0),
            Some(1),
            "line {i} must arrive exactly once"
        );
    }
    assert_eq!(seen.len(), n, "no line beyond those written");
    // Lines written after the reload was in force are parsed by the new parser; the
    // first ones were shipped as text.
    assert!(!seen[&0].1, "the first line went out under the json parser");
    for i in first_after..n {
        assert!(
            seen[&i].1,
            "line {i}, written after the reload, is parsed as logfmt"
        );
    }
    let status = agent.terminate();
    assert!(status.success(), "exit: {status}");
}

#[tokio::test]
async fn a_removed_source_stops_with_its_position_committed_and_resumes_from_it_when_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = Gateway::start("127.0.0.1:0", vec![]).await;
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    std::fs::write(&a, "").expect("log");
    std::fs::write(&b, "").expect("log");
    let source = |path: &std::path::Path, service: &str| {
        format!(
            "  - {{ path: \"{}\", service: {service}, parser: logfmt }}\n",
            path.display()
        )
    };
    let both = format!("{}{}", source(&a, "a"), source(&b, "b"));
    let mut agent = start_with_logs(dir.path(), &logs, &both);
    let write = |path: &std::path::Path, tag: &str, from: usize, to: usize| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open");
        for i in from..to {
            writeln!(f, "level=info msg=hello {tag}={i:05}").expect("write");
        }
    };
    write(&a, "a", 0, 100);
    write(&b, "b", 0, 100);
    logs.wait_for("the first lines of both", WAIT, |r| {
        numbered(r, "a").len() >= 100 && numbered(r, "b").len() >= 100
    })
    .await;

    // b is removed: it stops; a goes on.
    let file = dir.path().join("agent.yaml");
    let config = std::fs::read_to_string(&file).expect("config");
    std::fs::write(&file, config.replace(&source(&b, "b"), "")).expect("write");
    hup(&agent);
    wait_log(&mut agent, "config reloaded", 1);
    assert!(
        agent.log_text().contains("log sources swapped kept=1"),
        "{}",
        agent.log_text()
    );
    write(&b, "b", 100, 150);
    write(&a, "a", 100, 150);
    let got = logs
        .wait_for("a's next lines", WAIT, |r| numbered(r, "a").len() >= 150)
        .await;
    assert_eq!(
        numbered(&got, "b").len(),
        100,
        "a removed source ships nothing more"
    );

    // b comes back: it resumes at the position committed when it was removed, so its
    // 50 new lines arrive once and none of the first 100 again.
    std::fs::write(&file, &config).expect("write");
    hup(&agent);
    wait_log(&mut agent, "config reloaded", 2);
    let got = logs
        .wait_for("b's lines written while it was removed", WAIT, |r| {
            numbered(r, "b").len() >= 150
        })
        .await;
    for tag in ["a", "b"] {
        let mut count: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, _) in numbered(&got, tag) {
            *count.entry(i).or_default() += 1;
        }
        assert_eq!(count.len(), 150, "{tag}: every line");
        assert!(
            count.values().all(|c| *c == 1),
            "{tag}: a line arrived twice: {:?}",
            count.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
        );
    }
    let status = agent.terminate();
    assert!(status.success(), "exit: {status}");
}
