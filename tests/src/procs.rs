//! The workspace's binaries as child processes: found next to the test binary, logs
//! to a file, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The path of workspace binary `name` (`cargo test --workspace` builds it): next to
/// this executable (a binary in `target/<profile>/`) or one level up (a test in
/// `target/<profile>/deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own executable path");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built next to {}: run `cargo build -p edge-agent -p edge-gateway` \
                 (cargo test --workspace and scripts/demo build it)",
                exe.display()
            )
        })
}

/// Runs `command` to the end: whether it succeeded, and its stdout then stderr. If it
/// cannot be started, panics saying so and `install` (what to install).
pub fn run_captured(command: &mut Command, install: &str) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?} ({e}): {install}", command.get_program()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A running child, killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Runs `bin args…` with `env` added, stderr to `log`.
    pub fn start(bin: &str, args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Proc {
        let child = Command::new(binary(bin))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Proc { child, log }
    }

    /// Writes `yaml` to `<dir>/<stem>.yaml`, runs `bin --config` on it with `env` added
    /// (log in `<dir>/<stem>.log`), and waits until it listens on `port`.
    pub fn configured(
        bin: &str,
        dir: &std::path::Path,
        stem: &str,
        yaml: &str,
        env: &[(&str, &str)],
        port: u16,
    ) -> Result<Proc, String> {
        let config = dir.join(format!("{stem}.yaml"));
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let p = Proc::start(
            bin,
            &["--config", &config.display().to_string()],
            env,
            dir.join(format!("{stem}.log")),
        );
        p.wait_for_port(port);
        Ok(p)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until something listens on `port`; panics with the log after 20 s.
    pub fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nothing listens on {port}; log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to stop (SIGTERM) and waits until it exited: whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        sent && self.child.wait().is_ok_and(|s| s.success())
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plain HTTP/1.1 `GET path` on 127.0.0.1:`port`: status and body (at most 16 MiB).
pub async fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    http_call(port, request).await
}

/// Plain HTTP/1.1 `POST path` of a snappy remote_write body on 127.0.0.1:`port` (an
/// agent's local receiver): status and body.
pub async fn remote_write_post(
    port: u16,
    path: &str,
    snappy_body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let request = http::Request::post(path)
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(Full::new(Bytes::from(snappy_body)))
        .map_err(|e| e.to_string())?;
    http_call(port, request).await
}

async fn http_call(
    port: u16,
    request: http::Request<Full<Bytes>>,
) -> Result<(u16, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(Duration::from_secs(60), send.send_request(request))
        .await
        .map_err(|_| "no answer within 60 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), 16 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body.to_vec()))
}
