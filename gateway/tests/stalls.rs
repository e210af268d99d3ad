//! No cheap way to stall the gateway: headers and bodies that trickle in, idle
//! connections, more connections than the cap, and a descriptor table that runs out.
//! The real gateway binary over plain HTTP on loopback (`tls: off`), driven by raw TCP
//! sockets as an attacker's script would.
//!
//! Time bounds: each refusal must come *after* its configured timeout (so the gateway
//! waited as long as it promised) and before a generous bound (60 s) that only a gateway
//! which never times out would miss; a busy machine only moves the answer within that
//! window.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Gateway, free_port};

/// Well past every timeout below: only a gateway that never closes misses it.
const NEVER: Duration = Duration::from_secs(60);

/// sha256("s3cret"), the bearer token of the tenant `studio`.
const TOKEN_SHA256: &str = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

fn config(port: u16, dir: &std::path::Path, limits: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\n\
         tls: off\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         identities: {{ tokens: [ {{ sha256: \"{TOKEN_SHA256}\", tenant: studio }} ] }}\n\
         sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }} }}\n\
         limits: {{ {limits} }}\n",
        d = dir.display()
    )
}

/// Reads until the peer closes (or `NEVER` passes); what was read.
fn read_until_closed(conn: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < NEVER {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

fn metric(port: u16, series: &str) -> Option<f64> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let (text, _) = read_until_closed(&mut conn);
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn headers_that_trickle_in_are_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let gw = Gateway::start(
        dir.path(),
        port,
        &config(port, dir.path(), "header_read_timeout: 2s"),
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.write_all(b"POST /api/v1/push HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // A header line every half second, never the blank line that ends them.
    let writer = {
        let mut conn = conn.try_clone().expect("clone");
        std::thread::spawn(move || {
            for i in 0..200 {
                if conn
                    .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let (_, took) = read_until_closed(&mut conn);
    assert!(
        took >= Duration::from_millis(1500) && took < NEVER,
        "closed after {took:?}; log: {}",
        gw.log_text()
    );
    drop(conn);
    let _ = writer.join();
    assert_eq!(
        metric(
            port,
            "edge_gateway_connections_closed_total{reason=\"header_timeout\"}"
        ),
        Some(1.0)
    );
}

/// Reads one answer whose body has a `Content-Length`; its status line.
fn read_answer(conn: &mut TcpStream) -> String {
    conn.set_read_timeout(Some(NEVER)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).expect("read an answer");
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return head.lines().next().unwrap_or_default().to_string();
            }
        }
    }
}

#[test]
fn a_keep_alive_connection_idle_past_the_header_timeout_serves_its_next_request() {
    // hyper's own header timer also runs between requests: a client that pushes every
    // 10 s over HTTP/1.1 found its connection closed under its next POST. The head
    // deadline runs from a request's first byte; the wait between requests is the idle
    // timeout's.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _gw = Gateway::start(
        dir.path(),
        port,
        &config(
            port,
            dir.path(),
            "header_read_timeout: 1s, idle_timeout: 60s",
        ),
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    for round in 0..3 {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let status = read_answer(&mut conn);
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "round {round}: {status}"
        );
        // Idle for more than the header timeout, less than the idle timeout.
        std::thread::sleep(Duration::from_millis(2500));
    }
    assert_eq!(
        metric(
            port,
            "edge_gateway_connections_closed_total{reason=\"header_timeout\"}"
        ),
        None
    );
}

#[test]
fn a_body_that_never_arrives_gets_a_408_at_the_body_timeout_and_the_connection_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _gw = Gateway::start(
        dir.path(),
        port,
        &config(port, dir.path(), "body_read_timeout: 2s"),
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // 100,000 bytes declared, 21 sent.
    conn.write_all(
        b"POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\
          Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[{\"message\":\"hello\"",
    )
    .expect("write");
    let (answer, took) = read_until_closed(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("limits.body_read_timeout"), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < NEVER,
        "answered after {took:?}"
    );
}

#[test]
fn an_idle_connection_is_closed_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _gw = Gateway::start(
        dir.path(),
        port,
        &config(port, dir.path(), "idle_timeout: 2s"),
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    // The answer comes, the connection stays (keep-alive) until it has been idle 2 s.
    let (answer, took) = read_until_closed(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < NEVER,
        "closed after {took:?}"
    );
    assert_eq!(
        metric(
            port,
            "edge_gateway_connections_closed_total{reason=\"idle\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn past_the_connection_cap_a_new_connection_is_closed_at_once_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _gw = Gateway::start(
        dir.path(),
        port,
        &config(port, dir.path(), "max_connections: 5"),
    );
    // Gateway::start's readiness probe opened and closed one connection; wait until
    // the gateway has seen it go.
    let deadline = Instant::now() + NEVER;
    let mut held = Vec::new();
    while held.len() < 5 {
        let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // A connection that got in answers a request; one over the cap is closed.
        let mut probe = conn.try_clone().expect("clone");
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        probe
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        match probe.read(&mut buf) {
            Ok(n) if n > 0 => held.push(conn),
            _ => assert!(
                Instant::now() < deadline,
                "connections under the cap refused"
            ),
        }
    }
    let mut sixth = TcpStream::connect(("127.0.0.1", port)).expect("the kernel accepts");
    let _ = sixth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, _) = read_until_closed(&mut sixth);
    assert!(
        answer.is_empty(),
        "the sixth connection was served: {answer}"
    );
    drop(held.pop());
    // With one gone, there is room again, and the refusal was counted.
    let deadline = Instant::now() + NEVER;
    loop {
        if let Some(n) = metric(
            port,
            "edge_gateway_connections_closed_total{reason=\"over_cap\"}",
        ) {
            assert!(n >= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "no room after a connection left");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU seconds (user + system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses): utime is the 14th field
    // of the line, stime the 15th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK is a number")
}

#[test]
fn out_of_file_descriptors_the_accept_loop_pauses_instead_of_spinning_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("gateway.yaml");
    edge_tests::pki::write_test_tokenize_key(dir.path()).expect("key");
    std::fs::write(&file, config(port, dir.path(), "idle_timeout: 300s")).expect("config");
    let log = dir.path().join("gateway.log");
    // The gateway's own descriptor limit, lowered: a few dozen connections exhaust it.
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg("--config")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("prlimit (Debian package util-linux) and edge-gateway");
    let deadline = Instant::now() + NEVER;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id();
    // More connections than descriptors: the kernel queues them, accept() fails.
    let mut conns: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(pid) - before;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        used < 0.5,
        "the gateway used {used:.2} CPU-s in 3 s with its descriptors exhausted: it spins; log: {text}"
    );
    let failures = text.matches("accept failed").count();
    assert!(failures >= 1, "accept failures are not logged: {text}");
    assert!(
        failures <= 10,
        "accept failures are logged without a rate limit ({failures} lines in ~4 s)"
    );
    // Once the connections go, the gateway serves again.
    conns.clear();
    let deadline = Instant::now() + NEVER;
    loop {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let (answer, _) = read_until_closed(&mut c);
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the gateway did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}
