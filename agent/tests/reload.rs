//! SIGHUP on the real binary: the config set is checked, a broken one is refused with
//! every problem logged and the agent keeps running on the old one; a valid one names
//! the settings that need a restart. (Applying a valid set live is issue 20's next step.)

mod support;

use std::time::{Duration, Instant};

use support::Agent;

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

    // Two problems: both are logged, the config is refused, the agent stays up.
    let broken = good
        .replacen("cadence: 1s\n", "cadence: soon\n", 1)
        .replace("http://127.0.0.1:9", "ftp://127.0.0.1:9");
    std::fs::write(&file, broken).expect("write");
    hup(&agent);
    wait_log(
        &mut agent,
        "config refused; the running config stays problems=2",
        1,
    );
    let log = agent.log_text();
    assert!(log.contains("is not a duration"), "{log}");
    assert!(log.contains("output.metrics_url"), "{log}");
    assert_eq!(agent.get("/ready").map(|(s, _)| s), Some(200));

    // A valid set that moves the listen address: named as needing a restart; the
    // agent still answers on the address it bound.
    let moved = good.replace(
        &format!("listen: {}", agent.listen),
        &format!("listen: 127.0.0.1:{}", support::free_port()),
    );
    assert_ne!(moved, good);
    std::fs::write(&file, moved).expect("write");
    hup(&agent);
    wait_log(&mut agent, "this setting needs a restart key=\"listen\"", 1);
    wait_log(&mut agent, "config set is valid", 1);
    assert_eq!(agent.get("/ready").map(|(s, _)| s), Some(200));

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
