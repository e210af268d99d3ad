//! Game metrics follow the fleet's incident cadence: the agent's answer to a push carries
//! `Edge-Cadence` (the cadence in force), and the exporter's pusher follows it within
//! one cycle, held within its own [incident, steady].

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use edge_exporter::push::{PushConfig, Pusher};
use edge_exporter::registry::Registry;
use support::{Agent, free_port};

/// An agent at 4 s steady and 500 ms incident cadence (`Agent::start` uses 1 s for both).
/// Its output goes nowhere (a refused port): only its receiver matters here.
fn agent(dir: &std::path::Path) -> Agent {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = format!(
        "cadence: 4s\nincident_cadence: 500ms\nlisten: {listen}\n\
         host_labels: {{ region: test-1, cluster: c1, build_id: b1 }}\n\
         host_metrics: {{ enabled: false }}\nqueue: {{ dir: {} }}\n\
         output: {{ metrics_url: [\"http://127.0.0.1:{}/api/v1/push\"] }}\n",
        dir.join("queue").display(),
        free_port()
    );
    std::fs::write(dir.join("agent.yaml"), config).expect("write config");
    Agent::restart(dir, listen)
}

/// `POST` or `DELETE /api/v1/incident`: the answer's body.
fn incident(agent: &Agent, method: &str) -> String {
    let mut s = TcpStream::connect_timeout(&agent.listen, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "{method} /api/v1/incident HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// Waits until the pusher has `n` accepted pushes.
fn wait_pushes(pusher: &Pusher, n: u64, what: &str) {
    // Generous: it returns as soon as the pushes are in, and only a stuck pusher fails.
    let deadline = Instant::now() + Duration::from_secs(120);
    while pusher.pushes() < n {
        assert!(
            Instant::now() < deadline,
            "{what}: {} pushes after 120 s, waiting for {n}",
            pusher.pushes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_push_is_answered_with_the_agents_cadence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent(dir.path());
    let registry = Registry::new();
    let url = format!("http://{}/api/v1/push", agent.listen);
    let timeout = Duration::from_secs(5);
    let answer =
        edge_exporter::push::push_once_answer(&registry, &url, timeout).expect("push accepted");
    assert_eq!(answer.cadence, Some(Duration::from_secs(4)));
    assert!(incident(&agent, "POST").contains("\"incident\":true"));
    let answer =
        edge_exporter::push::push_once_answer(&registry, &url, timeout).expect("push accepted");
    assert_eq!(answer.cadence, Some(Duration::from_millis(500)));
    incident(&agent, "DELETE");
    let answer =
        edge_exporter::push::push_once_answer(&registry, &url, timeout).expect("push accepted");
    assert_eq!(answer.cadence, Some(Duration::from_secs(4)));
}

/// Steady: the pusher waits its own 2 s (the agent's 4 s is held to it), so pushes over an
/// interval never exceed interval / 2 s + 1 (a bound a busy machine cannot break). In
/// incident mode it follows the agent's 500 ms within one cycle; that 8 pushes then take
/// less than the 16 s they need at 2 s is the one wall-clock bound (generous: 3 s of
/// slack per push).
#[test]
fn the_pusher_follows_incident_mode_within_one_cycle_wall_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent(dir.path());
    let registry = Registry::new();
    let tick = registry
        .histogram("game_tick_duration_seconds", "Duration of one server tick.")
        .expect("catalog family")
        .with(&[("shard_id", "1")])
        .expect("allowed series");
    tick.record(0.01);
    let steady = Duration::from_secs(2);
    let pusher = Pusher::spawn(
        registry,
        PushConfig {
            url: format!("http://{}/api/v1/push", agent.listen),
            cadence: steady,
            incident_cadence: Duration::from_millis(500),
            ..PushConfig::default()
        },
    )
    .expect("pusher");

    // Steady.
    wait_pushes(&pusher, 1, "first push");
    assert_eq!(pusher.cadence(), steady, "the agent's 4 s held to 2 s");
    let (start, before) = (Instant::now(), pusher.pushes());
    std::thread::sleep(Duration::from_secs(5));
    let (elapsed, pushed) = (start.elapsed(), pusher.pushes() - before);
    let most = elapsed.as_millis() / steady.as_millis() + 1;
    assert!(
        u128::from(pushed) <= most,
        "{pushed} pushes in {elapsed:?} at a 2 s cadence (at most {most})"
    );

    // Incident: a push in flight may still carry the old answer, the next one carries 500 ms.
    incident(&agent, "POST");
    let at_switch = pusher.pushes();
    wait_pushes(&pusher, at_switch + 2, "pushes after the switch");
    assert_eq!(pusher.cadence(), Duration::from_millis(500));
    let (start, before) = (Instant::now(), pusher.pushes());
    wait_pushes(&pusher, before + 8, "incident pushes");
    let elapsed = start.elapsed();
    assert!(
        elapsed < steady * 8,
        "8 pushes took {elapsed:?}: no faster than the steady cadence allows (wall-clock bound)"
    );

    // Back to steady, again within one cycle.
    incident(&agent, "DELETE");
    let at_switch = pusher.pushes();
    wait_pushes(
        &pusher,
        at_switch + 2,
        "pushes after the end of the incident",
    );
    assert_eq!(pusher.cadence(), steady);
    pusher.stop();
}

/// The C ABI's pusher is the same pusher: a C program started at 2000 ms against an agent
/// in incident mode (500 ms) follows it down to its incident bound, 1000 ms.
#[test]
fn the_c_pusher_follows_incident_mode_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent(dir.path());
    incident(&agent, "POST");
    let exporter = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("exporter");
    let program = dir.path().join("follow_cadence");
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let lib = [
        deps.join("libedge_exporter.a"),
        deps.join("../libedge_exporter.a"),
    ]
    .into_iter()
    .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
    .max()
    .map(|(_, p)| p)
    .expect("libedge_exporter.a built with this test's dependencies");
    let built = std::process::Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{}", exporter.join("include").display()))
        .arg(exporter.join("tests/c/follow_cadence.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&program)
        .output()
        .expect("run gcc");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = std::process::Command::new(&program)
        .arg(format!("http://{}/api/v1/push", agent.listen))
        .output()
        .expect("run follow_cadence");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("start: 2000 ms"), "{stdout}");
}
