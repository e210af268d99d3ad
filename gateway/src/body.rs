//! Reading a request body within a limit, and draining the rest of one that is over it.
//!
//! A 413 sent while the client is still writing its body makes the client see a reset
//! (HTTP/1.1: the server closes with unread bytes; HTTP/2: the stream is cancelled), so
//! it never reads the answer and retries forever. Like a mature web server's lingering
//! close, the rest of an oversize body is read and thrown away — up to [`DRAIN_FACTOR`]
//! times the limit and for at most [`DRAIN_TIME`] — and only then answered. A body past
//! that is answered at once, and its connection closed.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};

/// How many times the limit is drained before giving up on the client reading the 413.
pub const DRAIN_FACTOR: usize = 4;

/// How long an oversize body is drained at most.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The most a body's buffer is sized to before its bytes arrive.
const PREALLOCATE_MAX: u64 = 1 << 20;

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Over the limit. `drained`: the rest was read, so the connection can carry the
    /// answer (and, for HTTP/1.1, later requests).
    TooLarge {
        /// Whether the whole body was read and thrown away.
        drained: bool,
    },
    /// The body could not be read (the client went away, a protocol error).
    Failed(String),
}

/// Reads `body` (which declared `declared` bytes, if it did) up to `max` bytes.
pub async fn read<B>(body: B, declared: Option<u64>, max: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let drain_cap = max.saturating_mul(DRAIN_FACTOR) as u64;
    if declared.is_some_and(|n| n > drain_cap) {
        return Err(ReadError::TooLarge { drained: false });
    }
    let mut body = body;
    // Sized once from the declared length (an agent's body is tens of KB, in HTTP/2
    // frames of 16 KB), not doubled frame by frame; at most PREALLOCATE_MAX up front,
    // so a length declared and never sent costs little.
    let mut buf: Vec<u8> =
        Vec::with_capacity(declared.map_or(0, |n| n.min(max as u64).min(PREALLOCATE_MAX) as usize));
    let mut seen: u64 = 0;
    let mut over = declared.is_some_and(|n| n > max as u64);
    let started = tokio::time::Instant::now();
    loop {
        let frame = if over {
            let left = DRAIN_TIME.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return Err(ReadError::TooLarge { drained: false }),
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(f) => f,
            Err(e) if over => {
                tracing::debug!(error = %e, "an oversize body ended badly while drained");
                return Err(ReadError::TooLarge { drained: false });
            }
            Err(e) => return Err(ReadError::Failed(e.to_string())),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len() as u64;
        if over {
            if seen > drain_cap {
                return Err(ReadError::TooLarge { drained: false });
            }
            continue;
        }
        if seen > max as u64 {
            over = true;
            buf = Vec::new();
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if over {
        return Err(ReadError::TooLarge { drained: true });
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body_util::Full;
    use hyper::body::Frame;

    use super::*;

    /// `n` chunks of `size` bytes.
    struct Chunks {
        n: usize,
        size: usize,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.n == 0 {
                return Poll::Ready(None);
            }
            self.n -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![7u8; self.size])))))
        }
    }

    fn chunks(n: usize, size: usize) -> Chunks {
        Chunks { n, size }
    }

    #[tokio::test]
    async fn within_the_limit_is_read_whole() {
        let got = read(Full::new(Bytes::from_static(b"hello")), Some(5), 8).await;
        assert_eq!(got, Ok(Bytes::from_static(b"hello")));
        let got = read(chunks(4, 2), None, 8).await.map(|b| b.len());
        assert_eq!(got, Ok(8));
    }

    #[tokio::test]
    async fn over_the_limit_is_drained_up_to_the_cap_then_given_up() {
        // 12 bytes against 8: drained, so the client reads the 413.
        assert_eq!(
            read(chunks(6, 2), None, 8).await,
            Err(ReadError::TooLarge { drained: true })
        );
        // Declared over the limit but within the cap: drained too.
        assert_eq!(
            read(chunks(6, 2), Some(12), 8).await,
            Err(ReadError::TooLarge { drained: true })
        );
        // Past four times the limit: not worth reading.
        assert_eq!(
            read(chunks(20, 2), None, 8).await,
            Err(ReadError::TooLarge { drained: false })
        );
        assert_eq!(
            read(chunks(1, 1), Some(33), 8).await,
            Err(ReadError::TooLarge { drained: false })
        );
    }
}
