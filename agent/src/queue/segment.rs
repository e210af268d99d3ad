//! The record format of a segment: `[len u32 LE][crc32 u32 LE][payload]`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes before each payload.
pub(super) const RECORD_HEADER: usize = 8;

/// The largest payload a record may declare; a larger length is corruption, not data.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

pub(super) fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The record at the start of `data`: its payload range, or `None` if it is torn or
/// corrupt.
fn parse(data: &[u8]) -> Option<(usize, usize)> {
    let len = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = data.get(RECORD_HEADER..RECORD_HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some((RECORD_HEADER, RECORD_HEADER + len))
}

/// Length of the prefix of `data` made of whole, valid records.
pub(super) fn scan_valid_prefix(data: &[u8]) -> usize {
    let mut at = 0;
    while at < data.len() {
        match parse(&data[at..]) {
            Some((_, end)) => at += end,
            None => break,
        }
    }
    at
}

/// Valid records at the start of `data`.
pub(super) fn count_records(data: &[u8]) -> u64 {
    let mut at = 0;
    let mut n = 0;
    while let Some((_, end)) = data.get(at..).and_then(parse) {
        at += end;
        n += 1;
    }
    n
}

pub(super) enum ReadOutcome {
    /// The payload and the offset of the next record.
    Record(Vec<u8>, u64),
    /// No valid record here.
    Corrupt,
}

/// Reads the record at `offset` of a segment whose valid length is `limit`.
pub(super) fn read_record(path: &Path, offset: u64, limit: u64) -> io::Result<ReadOutcome> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut header = [0u8; RECORD_HEADER];
    if offset + RECORD_HEADER as u64 > limit || file.read_exact(&mut header).is_err() {
        return Ok(ReadOutcome::Corrupt);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let end = offset + (RECORD_HEADER + len) as u64;
    if len > MAX_PAYLOAD || end > limit {
        return Ok(ReadOutcome::Corrupt);
    }
    let mut payload = vec![0u8; len];
    if file.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
        return Ok(ReadOutcome::Corrupt);
    }
    Ok(ReadOutcome::Record(payload, end))
}
