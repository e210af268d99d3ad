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
/// corrupt. An empty payload is never written, so zeros (a file extended but not
/// written before a power loss) do not read as a run of empty records.
fn parse(data: &[u8]) -> Option<(usize, usize)> {
    let len = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?);
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    let payload = data.get(RECORD_HEADER..RECORD_HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some((RECORD_HEADER, RECORD_HEADER + len))
}

/// The offset of the first valid record at or after `from` (a record whose length
/// and CRC-32 hold), or `None`. A corrupt record is skipped by looking for the next
/// frame that checks, byte by byte: the chance that garbage passes a CRC-32 by accident
/// is one in four billion per position.
pub(super) fn next_valid(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(RECORD_HEADER)).find(|&at| parse(&data[at..]).is_some())
}

/// Where a segment's data ends: just past its last valid record, corrupt records before
/// it skipped over (a power loss or full disk mid-write leaves only a torn tail, which
/// is what gets cut; a corrupt record with valid ones after it is bit rot, and the valid
/// ones are kept).
pub(super) fn valid_end(data: &[u8]) -> usize {
    let mut at = 0;
    let mut end = 0;
    while at < data.len() {
        match parse(&data[at..]) {
            Some((_, len)) => {
                at += len;
                end = at;
            }
            None => match next_valid(data, at + 1) {
                Some(next) => at = next,
                None => break,
            },
        }
    }
    end
}

/// Every valid record of `data` (corrupt ones skipped): `(offset, payload)`.
pub(super) fn records(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < data.len() {
            match parse(&data[at..]) {
                Some((start, end)) => {
                    let found = (at, &data[at + start..at + end]);
                    at += end;
                    return Some(found);
                }
                None => at = next_valid(data, at + 1)?,
            }
        }
        None
    })
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
    if len == 0 || len > MAX_PAYLOAD || end > limit {
        return Ok(ReadOutcome::Corrupt);
    }
    let mut payload = vec![0u8; len];
    if file.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
        return Ok(ReadOutcome::Corrupt);
    }
    Ok(ReadOutcome::Record(payload, end))
}

/// The offset of the next valid record after a corrupt one at `offset` of a segment whose
/// valid length is `limit`, or `limit` when none follows.
pub(super) fn resync(path: &Path, offset: u64, limit: u64) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(limit.saturating_sub(offset))
        .read_to_end(&mut data)?;
    Ok(next_valid(&data, 1).map_or(limit, |at| offset + at as u64))
}
