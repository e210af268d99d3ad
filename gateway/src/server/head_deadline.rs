//! The header read timeout as the gateway means it: from a request's first byte to the
//! end of its head. hyper's own timer also runs while a keep-alive connection waits for
//! its next request, so a client that pushes every 10 s over HTTP/1.1 raced a close at
//! 10 s idle and lost its POST. Idle connections are the idle timeout's business
//! (`conn.rs`); this wrapper of the connection's reads keeps the slowloris bound.
//!
//! It watches the bytes an HTTP/1 connection reads: the connection's start, then the
//! first byte after each response, starts the clock; the blank line that ends the
//! head (`\r\n\r\n`) stops it; a final response written (not a `100 Continue`) makes the
//! connection idle again. An HTTP/2 connection (its preface) is not watched: its
//! requests are frames, and idle HTTP/2 connections are normal.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The HTTP/2 client preface's first bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between requests: no clock.
    Idle,
    /// Reading a head: the clock runs; `matched` bytes of `\r\n\r\n` seen last.
    Head { matched: u8, seen: usize },
    /// The head is in: the body and the answer are other timeouts' business.
    Rest,
    /// HTTP/2: not watched.
    Off,
}

/// A connection's stream with the head deadline (see the module docs).
#[derive(Debug)]
pub(super) struct HeadDeadline<T> {
    inner: T,
    limit: Duration,
    state: State,
    deadline: Pin<Box<Sleep>>,
    /// Set when the deadline cut the connection (for the close counter).
    expired: Arc<AtomicBool>,
}

impl<T> HeadDeadline<T> {
    /// `inner`, whose request heads must arrive within `limit` of their first byte;
    /// `expired` turns true when one did not.
    pub(super) fn new(inner: T, limit: Duration, expired: Arc<AtomicBool>) -> Self {
        HeadDeadline {
            inner,
            limit,
            // A new connection's first request is due at once: the clock runs from the
            // start (a connection that never sends anything is cut off as before).
            state: State::Head {
                matched: 0,
                seen: 0,
            },
            deadline: Box::pin(tokio::time::sleep(limit)),
            expired,
        }
    }

    /// Bytes just read: start, follow or end the head.
    fn read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.state == State::Idle {
            self.state = State::Head {
                matched: 0,
                seen: 0,
            };
            self.deadline.as_mut().reset(Instant::now() + self.limit);
        }
        let State::Head {
            mut matched,
            mut seen,
        } = self.state
        else {
            return;
        };
        // The preface is recognised while its first bytes come in.
        let preface_left = H2_PREFACE.len().saturating_sub(seen);
        if preface_left > 0 {
            let n = preface_left.min(bytes.len());
            if bytes[..n] == H2_PREFACE[seen..seen + n] {
                if n == preface_left {
                    self.state = State::Off;
                    return;
                }
            } else {
                seen = H2_PREFACE.len();
            }
        }
        seen = seen.saturating_add(bytes.len());
        for &b in bytes {
            matched = match (matched, b) {
                (0 | 2, b'\r') => matched + 1,
                (1 | 3, b'\n') => matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if matched == 4 {
                self.state = State::Rest;
                return;
            }
        }
        self.state = State::Head { matched, seen };
    }

    /// Bytes about to be written: a final response makes the connection idle.
    fn wrote(&mut self, first: &[u8]) {
        if matches!(self.state, State::Rest | State::Head { .. })
            && first.starts_with(b"HTTP/1.")
            && first.get(9) != Some(&b'1')
        {
            self.state = State::Idle;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.state, State::Head { .. }) && this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not complete within limits.header_read_timeout",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        // An HTTP/2 connection (past its preface) has no heads to time: its bytes are
        // not looked at.
        if let Poll::Ready(Ok(())) = &result
            && this.state != State::Off
        {
            this.read(buf.filled().get(before..).unwrap_or_default());
            // A head that began with these bytes: its clock must be able to wake us.
            if matches!(this.state, State::Head { .. }) {
                let _ = this.deadline.as_mut().poll(cx);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result
            && *n > 0
        {
            self.wrote(buf);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &result
            && *n > 0
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            let first: &[u8] = first;
            self.wrote(first);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped() -> HeadDeadline<tokio::io::Empty> {
        HeadDeadline::new(tokio::io::empty(), Duration::from_secs(1), Arc::default())
    }

    #[tokio::test]
    async fn a_head_starts_the_clock_its_blank_line_stops_it_and_a_final_answer_idles() {
        let mut w = wrapped();
        assert!(matches!(w.state, State::Head { .. }), "due from the start");
        w.read(b"POST /api/v1/push HTTP/1.1\r\nHost: x\r");
        assert!(matches!(w.state, State::Head { .. }));
        // The blank line split across reads.
        w.read(b"\n\r");
        assert!(matches!(w.state, State::Head { .. }));
        w.read(b"\nbody bytes \r\n\r\n");
        assert_eq!(w.state, State::Rest);
        // Body bytes do not restart anything.
        w.read(b"more body");
        assert_eq!(w.state, State::Rest);
        // 100 Continue is not the answer; 204 is.
        w.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(w.state, State::Rest);
        w.wrote(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(w.state, State::Idle);
        // The next request starts a new clock.
        w.read(b"G");
        assert!(matches!(w.state, State::Head { .. }));
    }

    #[tokio::test]
    async fn http2_is_not_watched() {
        let mut w = wrapped();
        w.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(w.state, State::Off);
        let mut w = wrapped();
        w.read(b"PRI * HT");
        w.read(b"TP/2.0\r\n");
        assert_eq!(w.state, State::Off);
        w.read(b"\x00\x00\x12\x04");
        w.wrote(b"HTTP/1.1 200 OK");
        assert_eq!(w.state, State::Off);
    }
}
