//! Accepting connections, the way every listener of both daemons does it: until a stop
//! signal, with a pause after a failed `accept()` (out of file descriptors, say) so a full
//! descriptor table never spins a core, and those failures logged at most once a second.
//! [`serve_http1`] is the plain HTTP/1.1 listener on top (the agent's loopback API and
//! OTLP/HTTP receiver, the relay's and the gateway's admin ports), for whole answers and
//! streamed ones (a tap) alike.

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The first pause after a failed `accept()`; it doubles while failures go on.
pub const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);

/// The longest pause after failed `accept()`s.
pub const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` and hands each to `on_conn`, until `stop` turns true
/// (or its sender is gone). `what` names the listener in the log.
pub async fn accept_loop(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    what: &'static str,
    mut on_conn: impl FnMut(TcpStream, SocketAddr),
) {
    let mut pause = ACCEPT_PAUSE_MIN;
    let mut failures: u64 = 0;
    let mut last_log: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                pause = ACCEPT_PAUSE_MIN;
                on_conn(stream, peer);
            }
            Err(e) => {
                failures += 1;
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(
                        listener = what,
                        error = %e,
                        failures,
                        pause_ms = pause.as_millis() as u64,
                        "accept failed; pausing before the next accept"
                    );
                    last_log = Some(Instant::now());
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
            }
        }
    }
}

/// A plain-text answer.
pub fn text(status: http::StatusCode, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// Serves plain HTTP/1.1 on `listener`, each request answered by `handler`, which is
/// given the peer's address too, until `stop` turns true. Connections already open
/// finish on their own (a streamed answer ends when its body does).
///
/// An answer's body is any [`hyper::body::Body`] of [`Bytes`]: a whole one
/// ([`Full`], as [`text`] makes) or a stream, sent chunked as it comes.
pub async fn serve_http1<F, Fut, B>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
    handler: F,
) where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    accept_loop(&listener, &mut stop, what, |stream, peer| {
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = handler(req, peer);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_until_stopped_then_refuses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve_http1(
            listener,
            stop_rx,
            "test",
            |req, _| async move { text(http::StatusCode::OK, format!("path {}\n", req.uri().path())) },
        ));
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("path /ready\n"), "{answer}");
        stop.send(true).expect("stop");
        server.await.expect("the loop ends when stopped");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed once the loop ended"
        );
    }

    /// A body whose chunks come from a channel, as a tap's do.
    struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    /// Reads from `conn` until what was read holds `want`.
    async fn read_until(conn: &mut TcpStream, got: &mut Vec<u8>, want: &str) {
        while !String::from_utf8_lossy(got).contains(want) {
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "the connection ended before {want:?}: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn a_streamed_answer_is_sent_as_it_comes_to_the_peer_the_handler_was_told_of() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_stop, stop_rx) = watch::channel(false);
        // The handler hands the test the peer it was given and the sending end of its
        // answer's body.
        let (opened, mut opened_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(serve_http1(listener, stop_rx, "test", move |_req, peer| {
            let opened = opened.clone();
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                opened.send((peer, tx)).expect("the test listens");
                http::Response::new(Chunks(rx))
            }
        }));
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /tap HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let (peer, chunks) = opened_rx.recv().await.expect("the handler ran");
        assert_eq!(
            peer,
            conn.local_addr().expect("local addr"),
            "the peer given"
        );

        let mut got = Vec::new();
        chunks.send(Bytes::from("first\n")).await.expect("send");
        read_until(&mut conn, &mut got, "first\n").await;
        let head = String::from_utf8_lossy(&got).to_lowercase();
        assert!(head.starts_with("http/1.1 200 ok"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(!head.contains("second"), "{head}");

        chunks.send(Bytes::from("second\n")).await.expect("send");
        drop(chunks);
        // The body's end is the last chunk of size zero.
        read_until(&mut conn, &mut got, "0\r\n\r\n").await;
        let all = String::from_utf8_lossy(&got);
        let body = all
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        assert_eq!(body, "6\r\nfirst\n\r\n7\r\nsecond\n\r\n0\r\n\r\n", "{all}");
    }
}
