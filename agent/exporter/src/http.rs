//! A minimal blocking HTTP/1.1 client for pushing snapshots to the local agent.
//!
//! The exporter runs inside the game process, which may have no async runtime; pushing
//! every 10 s to a loopback agent needs one request on one connection, so a small client
//! over `std::net::TcpStream` with hard timeouts is enough and adds no dependency. Only
//! `http://` URLs are supported: the agent listens on loopback, and a stock Prometheus
//! used for a canary check does too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL is not `http://host[:port]/path`.
    #[error("unsupported push URL `{0}`: expected http://host:port/path")]
    BadUrl(String),
    /// Could not connect, write or read in time.
    #[error("push to {url} failed: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The receiver answered with a non-2xx status.
    #[error("push to {url} was answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, for the log.
        body: String,
    },
}

impl PushError {
    /// A short, bounded reason for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::BadUrl(_) => "bad_url",
            PushError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout",
                std::io::ErrorKind::ConnectionRefused => "refused",
                _ => "io",
            },
            PushError::Status { status, .. } if *status == 429 => "throttled",
            PushError::Status { status, .. } if *status >= 500 => "server_error",
            PushError::Status { .. } => "rejected",
        }
    }
}

/// A parsed `http://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` to connect to.
    pub authority: String,
    /// The host, for the `Host` header.
    pub host: String,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, PushError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| PushError::BadUrl(url.to_string()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(PushError::BadUrl(url.to_string()));
        }
        let host = authority.to_string();
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpUrl {
            authority,
            host,
            path: path.to_string(),
        })
    }
}

/// A 2xx answer: its status and what its headers ask of the pusher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status (2xx).
    pub status: u16,
    /// The cadence the receiver asks for (its `Edge-Cadence` header: `5s`, `10s`,
    /// `500ms`), when it sent one that parses.
    pub cadence: Option<Duration>,
}

/// The answer header that carries the receiver's cadence, as the gateway sends it to
/// agents and the agent to exporters.
pub const CADENCE_HEADER: &str = "edge-cadence";

/// Sends one `POST` with `body` and `headers`, all within `timeout`; returns the status
/// code on 2xx.
pub fn post(
    url: &HttpUrl,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, PushError> {
    post_answer(url, headers, body, timeout).map(|a| a.status)
}

/// [`post`], returning the answer's status and cadence hint on 2xx.
pub fn post_answer(
    url: &HttpUrl,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, PushError> {
    let deadline = Instant::now() + timeout;
    let io = |source: std::io::Error| PushError::Io {
        url: format!("http://{}{}", url.host, url.path),
        source,
    };
    let addr = url
        .authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| io(std::io::Error::other("the host resolves to no address")))?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "push deadline passed")
            })
    };
    stream
        .set_write_timeout(Some(left().map_err(io)?))
        .map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        url.host,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut writer = &stream;
    writer.write_all(head.as_bytes()).map_err(io)?;
    writer.write_all(body).map_err(io)?;
    writer.flush().map_err(io)?;

    stream
        .set_read_timeout(Some(left().map_err(io)?))
        .map_err(io)?;
    let mut reader = BufReader::new(&stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(io)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            io(std::io::Error::other(format!(
                "not an HTTP answer: {status_line:?}"
            )))
        })?;
    // Read the headers (for the cadence hint), at most 64 of them.
    let mut cadence = None;
    let mut line = String::new();
    for _ in 0..64 {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case(CADENCE_HEADER)
        {
            cadence = edge_schema::config::parse_duration(value.trim());
        }
    }
    if (200..300).contains(&status) {
        return Ok(Answer { status, cadence });
    }
    let mut body = Vec::new();
    let _ = reader.take(512).read_to_end(&mut body);
    Err(PushError::Status {
        url: format!("http://{}{}", url.host, url.path),
        status,
        body: String::from_utf8_lossy(&body).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_urls() {
        let u = HttpUrl::parse("http://127.0.0.1:9740/api/v1/push").expect("valid");
        assert_eq!(u.authority, "127.0.0.1:9740");
        assert_eq!(u.path, "/api/v1/push");
        let u = HttpUrl::parse("http://localhost").expect("valid");
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("localhost:80", "/")
        );
        assert!(HttpUrl::parse("https://x/").is_err());
        assert!(HttpUrl::parse("http:///x").is_err());
    }

    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/api/v1/push",
            listener.local_addr().expect("addr")
        );
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            // Read until the body (Content-Length 5) has arrived.
            while !got.ends_with(b"hello") {
                let n = conn.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer.as_bytes()).expect("write");
            got
        });
        (url, handle)
    }

    #[test]
    fn posts_and_reads_the_status() {
        let (url, server) = serve_once("HTTP/1.1 204 No Content\r\n\r\n");
        let url = HttpUrl::parse(&url).expect("url");
        let status = post(
            &url,
            &[("Content-Encoding", "snappy")],
            b"hello",
            Duration::from_secs(2),
        )
        .expect("2xx");
        assert_eq!(status, 204);
        let request = String::from_utf8(server.join().expect("server")).expect("utf-8");
        assert!(
            request.starts_with("POST /api/v1/push HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Content-Encoding: snappy\r\n"));
        assert!(request.contains("Content-Length: 5\r\n"));
    }

    #[test]
    fn the_cadence_header_of_an_answer_is_read() {
        let (url, server) =
            serve_once("HTTP/1.1 204 No Content\r\nServer: x\r\nEdge-Cadence: 5s\r\n\r\n");
        let url = HttpUrl::parse(&url).expect("url");
        let answer = post_answer(&url, &[], b"hello", Duration::from_secs(2)).expect("2xx");
        assert_eq!(answer.status, 204);
        assert_eq!(answer.cadence, Some(Duration::from_secs(5)));
        server.join().expect("server");
        let (url, server) = serve_once("HTTP/1.1 204 No Content\r\nedge-cadence: 500ms\r\n\r\n");
        let url = HttpUrl::parse(&url).expect("url");
        let answer = post_answer(&url, &[], b"hello", Duration::from_secs(2)).expect("2xx");
        assert_eq!(answer.cadence, Some(Duration::from_millis(500)));
        server.join().expect("server");
        let (url, server) = serve_once("HTTP/1.1 204 No Content\r\nedge-cadence: soon\r\n\r\n");
        let url = HttpUrl::parse(&url).expect("url");
        let answer = post_answer(&url, &[], b"hello", Duration::from_secs(2)).expect("2xx");
        assert_eq!(
            answer.cadence, None,
            "a hint that does not parse is no hint"
        );
        server.join().expect("server");
    }

    #[test]
    fn non_2xx_is_an_error_with_the_body() {
        let (url, server) =
            serve_once("HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\n\r\nbad label");
        let url = HttpUrl::parse(&url).expect("url");
        let err = post(&url, &[], b"hello", Duration::from_secs(2)).expect_err("400");
        assert_eq!(err.reason(), "rejected");
        assert!(err.to_string().contains("400: bad label"), "{err}");
        server.join().expect("server");
    }

    #[test]
    fn a_silent_receiver_times_out_within_a_generous_wall_clock_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = HttpUrl::parse(&format!("http://{}/", listener.local_addr().expect("addr")))
            .expect("url");
        let started = Instant::now();
        let err = post(&url, &[], b"x", Duration::from_millis(200)).expect_err("times out");
        assert_eq!(err.reason(), "timeout");
        // Generous (50 times the timeout): it tells "bounded" from "hangs", never a slow
        // machine from a fast one.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a 200 ms timeout took {:?} (bound: 10 s of wall clock)",
            started.elapsed()
        );
        drop(listener);
    }

    #[test]
    fn nobody_listening_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = HttpUrl::parse(&format!("http://{addr}/")).expect("url");
        let err = post(&url, &[], b"x", Duration::from_millis(500)).expect_err("refused");
        assert_eq!(err.reason(), "refused");
    }
}
