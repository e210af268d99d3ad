//! Request bodies: read within a size limit, decompressed within another, decoded.
//! Every failure is an answer (413 or 400 with the reason), never a panic, and no
//! body can make the gateway allocate more than the limits (a small zstd or gzip bomb
//! is cut off at `max_decompressed_bytes + 1`). The `*_within` forms decompress into
//! memory reserved from the gateway-wide [`budget::Budget`] first.

pub mod budget;
pub mod cost;
pub mod remote_write;

use edge_daemon_kit::snappy::{SnappyError, decompress_bounded};
use edge_schema::proto::otlp::ExportLogsServiceRequest;
use edge_schema::proto::otlp::trace::ExportTraceServiceRequest;
use edge_schema::proto::prometheus::WriteRequest;
use prost::Message;

use budget::{Budget, Reservation, read_within};

/// Why a body is refused, with the status to answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 400.
    #[error("{0}")]
    Malformed(String),
    /// 415.
    #[error("{0}")]
    Unsupported(String),
    /// 503: the gateway's budget of decompressed bytes in flight has no room now.
    #[error("{0}")]
    OverBudget(String),
}

impl BodyError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge(_) => 413,
            BodyError::Malformed(_) => 400,
            BodyError::Unsupported(_) => 415,
            BodyError::OverBudget(_) => 503,
        }
    }
}

/// A reservation that never runs out, for decoding outside the request path.
fn unbounded() -> Reservation {
    Budget::default().reservation(u64::MAX)
}

/// Snappy (block format, as remote_write uses), bounded by the length it declares.
pub fn snappy(body: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    snappy_within(body, max, &mut unbounded())
}

/// [`snappy`] into memory reserved first: the block declares its length, and exactly
/// that is reserved before the one allocation.
pub fn snappy_within(
    body: &[u8],
    max: usize,
    reserved: &mut Reservation,
) -> Result<Vec<u8>, BodyError> {
    if let Ok(declared) = snap::raw::decompress_len(body)
        && declared <= max
    {
        reserved.need(declared as u64)?;
    }
    decompress_bounded(body, max).map_err(|e| match e {
        SnappyError::Header(e) => BodyError::Malformed(format!("not a snappy block: {e}")),
        SnappyError::TooLarge { declared, max } => BodyError::TooLarge(format!(
            "the body decompresses to {declared} bytes, over the limit of {max}"
        )),
        SnappyError::Body(e) => BodyError::Malformed(format!("snappy: {e}")),
    })
}

/// The largest zstd window a streamed frame may ask for: 8 MiB, the size the format
/// recommends every decoder support (the decoder holds a window of this size).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The window a zstd frame that does not declare its size asks the decoder to hold
/// (RFC 8878 §3.1.1.1.2), or `None` for a header that does not say.
fn zstd_window(body: &[u8]) -> Option<u64> {
    let descriptor = *body.get(4)?;
    if descriptor & 0x20 != 0 {
        return None; // single segment: the window is the content size
    }
    let wd = *body.get(5)?;
    let log = 10 + u32::from(wd >> 3);
    let base = 1u64.checked_shl(log)?;
    Some(base + (base / 8) * u64::from(wd & 7))
}

/// The decompressed size a zstd body's first frame declares, if it does.
pub fn zstd_declared_size(body: &[u8]) -> Option<u64> {
    zstd::zstd_safe::get_frame_content_size(body).ok().flatten()
}

fn zstd_within(body: &[u8], max: usize, reserved: &mut Reservation) -> Result<Vec<u8>, BodyError> {
    let declared = zstd_declared_size(body);
    if let Some(n) = declared {
        if n > max as u64 {
            return Err(BodyError::TooLarge(format!(
                "the body declares {n} decompressed bytes, over the limit of {max}"
            )));
        }
        // The size is declared: one buffer of exactly that, decompressed into directly
        // (no window beside it). A body of several frames that does not fit it is
        // streamed below instead.
        let n = n as usize;
        reserved.need(n as u64)?;
        let mut out = Vec::with_capacity(n);
        reserved.need(out.capacity() as u64)?;
        let mut d = zstd::bulk::Decompressor::new()
            .map_err(|e| BodyError::Malformed(format!("zstd: {e}")))?;
        if d.decompress_to_buffer(body, &mut out).is_ok() && out.len() == n {
            return Ok(out);
        }
        drop(out);
        reserved.need(0)?;
    }
    // Streamed: the decoder holds the frame's window (at most 8 MiB) beside the output.
    let window = zstd_window(body).unwrap_or(0).min(1 << ZSTD_WINDOW_LOG_MAX);
    let mut decoder = zstd::stream::read::Decoder::new(body)
        .map_err(|e| BodyError::Malformed(format!("zstd: {e}")))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|e| BodyError::Malformed(format!("zstd: {e}")))?;
    read_within(
        decoder,
        declared.map(|n| n as usize),
        max,
        "zstd",
        reserved,
        window,
    )
}

/// A body by its `Content-Encoding`: `zstd`, `gzip`, or none/`identity`.
pub fn by_encoding(body: &[u8], encoding: Option<&str>, max: usize) -> Result<Vec<u8>, BodyError> {
    by_encoding_within(body, encoding, max, &mut unbounded())
}

/// [`by_encoding`] into memory reserved first.
pub fn by_encoding_within(
    body: &[u8],
    encoding: Option<&str>,
    max: usize,
    reserved: &mut Reservation,
) -> Result<Vec<u8>, BodyError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > max {
                return Err(BodyError::TooLarge(format!(
                    "{} bytes, over the limit of {max}",
                    body.len()
                )));
            }
            reserved.need(body.len() as u64)?;
            Ok(body.to_vec())
        }
        Some("zstd") => zstd_within(body, max, reserved),
        // Every member of the stream is read (concatenated gzip is valid gzip), and bytes
        // after the last one that are not a gzip member are refused, not ignored. The
        // decoder's window is 32 KiB.
        Some("gzip") => read_within(
            flate2::bufread::MultiGzDecoder::new(body),
            None,
            max,
            "gzip",
            reserved,
            0,
        ),
        Some(other) => Err(BodyError::Unsupported(format!(
            "Content-Encoding {other:?}: use zstd, gzip or identity"
        ))),
    }
}

/// Reserves `raw` bytes more for what a body of `raw` bytes decodes into: an OTLP
/// request holds its strings again, a log batch becomes documents of about its size.
pub fn reserve_decoded(reserved: &mut Reservation, raw: usize) -> Result<(), BodyError> {
    reserved.need(reserved.held() + raw as u64)
}

/// Reserves the struct memory a body decodes into ([`cost`]); a body that needs more
/// than the whole budget could ever hold is a 413, not a 503 to retry forever.
pub fn reserve_structs(reserved: &mut Reservation, structs: u64) -> Result<(), BodyError> {
    let want = reserved.held().saturating_add(structs);
    if want > reserved.cap() {
        return Err(BodyError::TooLarge(format!(
            "the body decodes into about {structs} bytes of messages, more than limits.max_decompressed_bytes_in_flight ({}) can hold",
            reserved.cap()
        )));
    }
    reserved.need(want)
}

/// A remote_write body: snappy, then protobuf. The decompressed bytes come back too:
/// when every series is accepted they go to the sink as they are.
pub fn write_request(body: &[u8], max: usize) -> Result<(WriteRequest, Vec<u8>), BodyError> {
    let raw = snappy(body, max)?;
    let request = WriteRequest::decode(raw.as_slice())
        .map_err(|e| BodyError::Malformed(format!("not a remote_write WriteRequest: {e}")))?;
    Ok((request, raw))
}

/// An OTLP/HTTP logs body (protobuf), by its encoding; also returns the decompressed
/// size (what the log byte quota counts).
pub fn logs_request(
    body: &[u8],
    encoding: Option<&str>,
    max: usize,
) -> Result<(ExportLogsServiceRequest, usize), BodyError> {
    logs_request_within(body, encoding, max, &mut unbounded())
}

/// [`logs_request`] into memory reserved first.
pub fn logs_request_within(
    body: &[u8],
    encoding: Option<&str>,
    max: usize,
    reserved: &mut Reservation,
) -> Result<(ExportLogsServiceRequest, usize), BodyError> {
    let raw = by_encoding_within(body, encoding, max, reserved)?;
    reserve_decoded(reserved, raw.len())?;
    let structs = cost::logs(&raw).map_err(|_| {
        BodyError::Malformed("not an OTLP ExportLogsServiceRequest: not protobuf".into())
    })?;
    reserve_structs(reserved, structs)?;
    let req = ExportLogsServiceRequest::decode(raw.as_slice())
        .map_err(|e| BodyError::Malformed(format!("not an OTLP ExportLogsServiceRequest: {e}")))?;
    Ok((req, raw.len()))
}

/// An OTLP/HTTP traces body (protobuf), by its encoding; the decompressed bytes come
/// back too: the `file` and `otlp` sinks take them as they are.
pub fn traces_request(
    body: &[u8],
    encoding: Option<&str>,
    max: usize,
) -> Result<(ExportTraceServiceRequest, Vec<u8>), BodyError> {
    traces_request_within(body, encoding, max, &mut unbounded())
}

/// [`traces_request`] into memory reserved first.
pub fn traces_request_within(
    body: &[u8],
    encoding: Option<&str>,
    max: usize,
    reserved: &mut Reservation,
) -> Result<(ExportTraceServiceRequest, Vec<u8>), BodyError> {
    let raw = by_encoding_within(body, encoding, max, reserved)?;
    reserve_decoded(reserved, raw.len())?;
    let structs = cost::traces(&raw).map_err(|_| {
        BodyError::Malformed("not an OTLP ExportTraceServiceRequest: not protobuf".into())
    })?;
    reserve_structs(reserved, structs)?;
    let req = ExportTraceServiceRequest::decode(raw.as_slice())
        .map_err(|e| BodyError::Malformed(format!("not an OTLP ExportTraceServiceRequest: {e}")))?;
    Ok((req, raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bombs_are_cut_off() {
        let zeros = vec![0u8; 8 << 20];
        let z = zstd::bulk::compress(&zeros, 3).expect("zstd");
        assert!(z.len() < 4096);
        assert!(matches!(
            by_encoding(&z, Some("zstd"), 1 << 20),
            Err(BodyError::TooLarge(_))
        ));
        assert_eq!(
            by_encoding(&z, Some("zstd"), 8 << 20).map(|v| v.len()),
            Ok(8 << 20)
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&zeros).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert!(matches!(
            by_encoding(&gz, Some("gzip"), 1 << 20),
            Err(BodyError::TooLarge(_))
        ));
        let s = snap::raw::Encoder::new()
            .compress_vec(&zeros)
            .expect("snappy");
        assert!(matches!(snappy(&s, 1 << 20), Err(BodyError::TooLarge(_))));
    }

    #[test]
    fn zstd_is_decompressed_within_its_reservation() {
        let zeros = vec![0u8; 4 << 20];
        let b = Budget::default();
        // A frame that declares its size: exactly that is held.
        let declared = zstd::bulk::compress(&zeros, 3).expect("zstd");
        let mut r = b.reservation(64 << 20);
        let got = by_encoding_within(&declared, Some("zstd"), 8 << 20, &mut r).map(|v| v.len());
        assert_eq!(got, Ok(4 << 20));
        assert_eq!(r.held(), 4 << 20);
        drop(r);
        // A streamed frame: grown within the reservation.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
        e.write_all(&zeros).expect("zstd");
        let streamed = e.finish().expect("zstd");
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&streamed),
            Ok(None)
        ));
        let mut r = b.reservation(64 << 20);
        let got = by_encoding_within(&streamed, Some("zstd"), 8 << 20, &mut r).map(|v| v.len());
        assert_eq!(got, Ok(4 << 20));
        assert!(r.held() >= 4 << 20 && r.held() <= 8 << 20, "{}", r.held());
        drop(r);
        assert_eq!(b.in_use(), 0);
        // No room: a 503, before the buffer is allocated, and nothing stays held.
        let mut r = b.reservation(1 << 20);
        for body in [&declared, &streamed] {
            let got = by_encoding_within(body, Some("zstd"), 8 << 20, &mut r);
            assert_eq!(got.map_err(|e| e.status()), Err(503));
        }
        let snappy = snap::raw::Encoder::new()
            .compress_vec(&zeros)
            .expect("snappy");
        assert_eq!(
            snappy_within(&snappy, 8 << 20, &mut r).map_err(|e| e.status()),
            Err(503)
        );
        drop(r);
        assert_eq!(b.in_use(), 0);
        // A streamed frame that asks for a window past 8 MiB is refused.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
        e.window_log(25).expect("window");
        e.write_all(&zeros).expect("zstd");
        let wide = e.finish().expect("zstd");
        assert_eq!(zstd_window(&wide), Some(32 << 20));
        assert_eq!(
            by_encoding(&wide, Some("zstd"), 8 << 20).map_err(|e| e.status()),
            Err(400)
        );
    }

    #[test]
    fn garbage_is_a_400() {
        // A snappy header that declares more than the limit is refused before decoding.
        assert_eq!(
            write_request(b"\xff\xff\xff\xff\x0f", 1 << 20).map_err(|e| e.status()),
            Err(413)
        );
        assert_eq!(
            write_request(b"\x05abc", 1 << 20).map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(
            logs_request(b"not zstd", Some("zstd"), 1 << 20).map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(
            logs_request(b"", Some("br"), 1 << 20).map_err(|e| e.status()),
            Err(415)
        );
    }

    #[test]
    fn trailing_garbage_after_a_compressed_body_is_a_400_and_two_gzip_members_are_one_body() {
        let gzip = |data: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(data).expect("gzip");
            gz.finish().expect("gzip")
        };
        let mut body = gzip(b"hello ");
        assert_eq!(
            by_encoding(&body, Some("gzip"), 1 << 20),
            Ok(b"hello ".to_vec())
        );
        body.extend_from_slice(&gzip(b"world"));
        assert_eq!(
            by_encoding(&body, Some("gzip"), 1 << 20),
            Ok(b"hello world".to_vec())
        );
        body.extend_from_slice(b"trailing garbage");
        assert_eq!(
            by_encoding(&body, Some("gzip"), 1 << 20).map_err(|e| e.status()),
            Err(400)
        );
        let mut z = zstd::bulk::compress(b"hello", 3).expect("zstd");
        z.extend_from_slice(b"trailing garbage");
        assert_eq!(
            by_encoding(&z, Some("zstd"), 1 << 20).map_err(|e| e.status()),
            Err(400)
        );
    }
}
