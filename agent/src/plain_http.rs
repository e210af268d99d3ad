//! One-shot plain HTTP/1.1 requests to peers on the host or the link: scrape targets
//! and the instance metadata service. (Delivery to the gateway has its own client, in
//! [`crate::sender`].)

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum PlainHttpError {
    /// The URL is not `http://host[:port]/path`.
    #[error("{url}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// Connecting, sending or reading failed, or took too long.
    #[error("{url}: {why}")]
    Transport {
        /// The URL.
        url: String,
        /// The cause.
        why: String,
    },
    /// An unexpected status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The answer.
        status: u16,
    },
}

/// Sends one request without a body; returns the status and at most `max_body` bytes of
/// body (a longer body is an error, not truncated).
pub async fn request(
    method: http::Method,
    url: &str,
    headers: &[(http::header::HeaderName, &str)],
    timeout: Duration,
    max_body: usize,
) -> Result<(u16, Vec<u8>), PlainHttpError> {
    let bad = |why: &str| PlainHttpError::Url {
        url: url.to_string(),
        why: why.to_string(),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported here"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let transport = |why: String| PlainHttpError::Transport {
        url: url.to_string(),
        why,
    };
    let work = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| transport(e.to_string()))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, format!("{host}:{port}"));
        for (name, value) in headers {
            builder = builder.header(name, *value);
        }
        let request = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| transport(e.to_string()))?;
        let response = send
            .send_request(request)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the body: {e}")))?
            .to_bytes();
        Ok((status, body.to_vec()))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| transport(format!("no answer within {timeout:?}")))?
}
