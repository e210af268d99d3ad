//! Request bodies: read within a size limit, decompressed within another, decoded.
//! Every failure is an answer (413 or 400 with the reason), never a panic, and no
//! body can make the gateway allocate more than the limits (a small zstd or gzip bomb
//! is cut off at `max_decompressed_bytes + 1`).

pub mod remote_write;

use std::io::Read;

use edge_daemon_kit::snappy::{SnappyError, decompress_bounded};
use edge_schema::proto::otlp::ExportLogsServiceRequest;
use edge_schema::proto::otlp::trace::ExportTraceServiceRequest;
use edge_schema::proto::prometheus::WriteRequest;
use prost::Message;

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
}

impl BodyError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge(_) => 413,
            BodyError::Malformed(_) => 400,
            BodyError::Unsupported(_) => 415,
        }
    }
}

/// Snappy (block format, as remote_write uses), bounded by the length it declares.
pub fn snappy(body: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    decompress_bounded(body, max).map_err(|e| match e {
        SnappyError::Header(e) => BodyError::Malformed(format!("not a snappy block: {e}")),
        SnappyError::TooLarge { declared, max } => BodyError::TooLarge(format!(
            "the body decompresses to {declared} bytes, over the limit of {max}"
        )),
        SnappyError::Body(e) => BodyError::Malformed(format!("snappy: {e}")),
    })
}

fn bounded(reader: impl Read, max: usize, what: &str) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Malformed(format!("{what}: {e}")))?;
    if out.len() > max {
        return Err(BodyError::TooLarge(format!(
            "the body decompresses to more than the limit of {max} bytes"
        )));
    }
    Ok(out)
}

/// A body by its `Content-Encoding`: `zstd`, `gzip`, or none/`identity`.
pub fn by_encoding(body: &[u8], encoding: Option<&str>, max: usize) -> Result<Vec<u8>, BodyError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > max {
                return Err(BodyError::TooLarge(format!(
                    "{} bytes, over the limit of {max}",
                    body.len()
                )));
            }
            Ok(body.to_vec())
        }
        Some("zstd") => {
            let decoder = zstd::stream::read::Decoder::new(body)
                .map_err(|e| BodyError::Malformed(format!("zstd: {e}")))?;
            bounded(decoder, max, "zstd")
        }
        // Every member of the stream is read (concatenated gzip is valid gzip), and bytes
        // after the last one that are not a gzip member are refused, not ignored.
        Some("gzip") => bounded(flate2::bufread::MultiGzDecoder::new(body), max, "gzip"),
        Some(other) => Err(BodyError::Unsupported(format!(
            "Content-Encoding {other:?}: use zstd, gzip or identity"
        ))),
    }
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
    let raw = by_encoding(body, encoding, max)?;
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
    let raw = by_encoding(body, encoding, max)?;
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
