//! The `file` sink, the embedded default: a spool directory of append-only segment
//! files, one record per frame `[u32 len][u32 crc32][u16 key len][key][data]`
//! (little-endian). Commits from concurrent requests are grouped: one writer thread
//! appends everything waiting and makes it durable with one `fdatasync`, then answers
//! every commit in the group.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

use super::{BoxFuture, Record, Sink, SinkError};

/// How long the writer waits for more commits to share one sync.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// A segment is closed and a new one begun past this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;

struct Job {
    records: Vec<Record>,
    bytes: u64,
    done: oneshot::Sender<Result<(), String>>,
}

/// The spool of one stream (`metrics` or `logs`) under a directory.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    jobs: mpsc::Sender<Job>,
    backlog: Arc<(AtomicU64, AtomicU64)>,
}

impl FileSink {
    /// Opens (creating) `dir/<stream>/` and starts its writer thread.
    pub fn open(dir: &Path, stream: &str) -> std::io::Result<FileSink> {
        let dir = dir.join(stream);
        std::fs::create_dir_all(&dir)?;
        let mut writer = Writer::open(&dir)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let backlog = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let shared = backlog.clone();
        std::thread::Builder::new()
            .name(format!("spool-{stream}"))
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    // Linger briefly so one fdatasync covers the requests arriving
                    // together; under load this cuts syncs several-fold for at most
                    // LINGER of added latency.
                    let until = std::time::Instant::now() + LINGER;
                    while group.len() < 256 {
                        let left = until.saturating_duration_since(std::time::Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(more) => group.push(more),
                            Err(_) => break,
                        }
                    }
                    let result = writer.append(&group);
                    for job in group {
                        shared
                            .0
                            .fetch_sub(job.records.len() as u64, Ordering::Relaxed);
                        shared.1.fetch_sub(job.bytes, Ordering::Relaxed);
                        let _ = job.done.send(result.clone());
                    }
                }
            })?;
        Ok(FileSink {
            dir,
            jobs: tx,
            backlog,
        })
    }

    /// The stream's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Sink for FileSink {
    fn commit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            if let Some(r) = records.iter().find(|r| r.key.len() > usize::from(u16::MAX)) {
                return Err(SinkError::Refused(format!(
                    "a key of {} bytes",
                    r.key.len()
                )));
            }
            let bytes: u64 = records.iter().map(|r| r.data.len() as u64).sum();
            self.backlog
                .0
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            self.backlog.1.fetch_add(bytes, Ordering::Relaxed);
            let (done, wait) = oneshot::channel();
            self.jobs
                .send(Job {
                    records,
                    bytes,
                    done,
                })
                .map_err(|_| SinkError::Failed("the spool writer has stopped".into()))?;
            match wait.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(SinkError::Failed(e)),
                Err(_) => Err(SinkError::Failed("the spool writer has stopped".into())),
            }
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.dir.is_dir() })
    }

    fn backlog(&self) -> (u64, u64) {
        (
            self.backlog.0.load(Ordering::Relaxed),
            self.backlog.1.load(Ordering::Relaxed),
        )
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    seq: u64,
    len: u64,
}

impl Writer {
    fn open(dir: &Path) -> std::io::Result<Writer> {
        let last = segments(dir)?.last().map_or(0, |(seq, _)| *seq);
        // A new segment per start: a torn tail of the last run stays where it is and is
        // skipped by the reader.
        let seq = last + 1;
        let file = create_segment(dir, seq)?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            file,
            seq,
            len: 0,
        })
    }

    fn append(&mut self, group: &[Job]) -> Result<(), String> {
        // The frames' heads are made here; keys and data are written from where they
        // lie (one `writev`, no copy of the records), the CRC taken over them there.
        let mut heads: Vec<[u8; 10]> = Vec::new();
        for job in group {
            for r in &job.records {
                let key_len = (r.key.len() as u16).to_le_bytes();
                let body_len = (2 + r.key.len() + r.data.len()) as u32;
                let mut crc = crc32fast::Hasher::new();
                crc.update(&key_len);
                crc.update(r.key.as_bytes());
                crc.update(&r.data);
                let mut head = [0u8; 10];
                head[..4].copy_from_slice(&body_len.to_le_bytes());
                head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
                head[8..].copy_from_slice(&key_len);
                heads.push(head);
            }
        }
        let records = group.iter().flat_map(|job| &job.records);
        let mut slices: Vec<IoSlice<'_>> = heads
            .iter()
            .zip(records)
            .flat_map(|(head, r)| {
                [
                    IoSlice::new(head),
                    IoSlice::new(r.key.as_bytes()),
                    IoSlice::new(&r.data),
                ]
            })
            .collect();
        let len: u64 = slices.iter().map(|s| s.len() as u64).sum();
        let result =
            write_all_vectored(&mut self.file, &mut slices).and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            // The segment may now end torn; start a new one so later frames are whole.
            self.rotate().ok();
            return Err(format!("spool {}: {e}", self.dir.display()));
        }
        self.len += len;
        if self.len >= SEGMENT_BYTES {
            self.rotate()
                .map_err(|e| format!("spool {}: {e}", self.dir.display()))?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.seq += 1;
        self.file = create_segment(&self.dir, self.seq)?;
        self.len = 0;
        Ok(())
    }
}

/// Writes every byte of `slices`, in as few `writev` calls as the kernel allows.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    /// At most this many slices a call (Linux's `IOV_MAX`).
    const MAX_SLICES: usize = 1024;
    while !slices.is_empty() {
        match file.write_vectored(&slices[..slices.len().min(MAX_SLICES)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn create_segment(dir: &Path, seq: u64) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(format!("{seq:012}.seg")))?;
    // The new name must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Every whole record of `stream` in the spool under `dir`, in order, and the bytes
/// after the last whole record of each segment (a torn tail). Reads it all into
/// memory: for a large spool use [`for_each_record`].
pub fn read_spool(dir: &Path, stream: &str) -> std::io::Result<(Vec<Record>, u64)> {
    let mut records = Vec::new();
    let skipped = for_each_record(dir, stream, |key, data| {
        records.push(Record {
            key: key.to_string(),
            data: data.to_vec(),
        });
    })?;
    Ok((records, skipped))
}

/// Calls `each(key, data)` for every whole record of `stream` in the spool under
/// `dir`, in order, one segment in memory at a time; returns the bytes after the last
/// whole record of each segment (a torn tail).
pub fn for_each_record(
    dir: &Path,
    stream: &str,
    mut each: impl FnMut(&str, &[u8]),
) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    scan(dir, stream, |frame| match frame {
        Frame::Record { key, data, .. } => each(key, data),
        Frame::Torn { bytes, .. } => skipped += bytes,
    })?;
    Ok(skipped)
}

/// What [`scan`] finds in a segment.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A whole record.
    Record {
        /// Its segment file.
        segment: &'a Path,
        /// Where its frame begins in the segment.
        offset: u64,
        /// Its key.
        key: &'a str,
        /// Its data.
        data: &'a [u8],
    },
    /// Bytes after the last whole record of a segment: a frame cut short by a crash, or
    /// one whose checksum does not match (what follows it cannot be framed either).
    Torn {
        /// The segment file.
        segment: &'a Path,
        /// Where the first bad frame begins.
        offset: u64,
        /// Bytes from there to the end of the segment, skipped.
        bytes: u64,
    },
}

/// Calls `each` for every whole record of `stream` in the spool under `dir`, in order,
/// with the segment and offset it was read from, and once for each segment's torn tail.
/// The one reader of the spool format: [`for_each_record`], [`read_spool`] and
/// `edge-gateway spool cat` are built on it.
pub fn scan(dir: &Path, stream: &str, mut each: impl FnMut(Frame<'_>)) -> std::io::Result<()> {
    for (_, path) in segments(&dir.join(stream))? {
        let bytes = std::fs::read(&path)?;
        let mut at = 0usize;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            let crc =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            let Some(body) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            if crc32fast::hash(body) != crc || body.len() < 2 {
                break;
            }
            let key_len = usize::from(u16::from_le_bytes([body[0], body[1]]));
            let Some(key) = body.get(2..2 + key_len) else {
                break;
            };
            each(Frame::Record {
                segment: &path,
                offset: at as u64,
                key: &String::from_utf8_lossy(key),
                data: &body[2 + key_len..],
            });
            at += 8 + len;
        }
        if at < bytes.len() {
            each(Frame::Torn {
                segment: &path,
                offset: at as u64,
                bytes: (bytes.len() - at) as u64,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_are_durable_in_order_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::open(dir.path(), "metrics").expect("open");
        let mut handles = Vec::new();
        let sink = Arc::new(sink);
        for i in 0..20 {
            let s = sink.clone();
            handles.push(tokio::spawn(async move {
                s.commit(vec![Record {
                    key: format!("game/gs-{i}"),
                    data: vec![i as u8; 100],
                }])
                .await
            }));
        }
        for h in handles {
            h.await.expect("join").expect("commit");
        }
        assert_eq!(sink.backlog(), (0, 0));
        let (records, skipped) = read_spool(dir.path(), "metrics").expect("read");
        assert_eq!(skipped, 0);
        assert_eq!(records.len(), 20);
        let mut keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 20);
        // A torn tail is skipped, not misread.
        let seg = segments(&dir.path().join("metrics")).expect("segments")[0]
            .1
            .clone();
        let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
        f.write_all(&[50, 0, 0, 0, 1, 2]).expect("tear");
        let (records, skipped) = read_spool(dir.path(), "metrics").expect("read");
        assert_eq!((records.len(), skipped), (20, 6));
        let (mut torn, mut last_end) = (Vec::new(), 0);
        scan(dir.path(), "metrics", |frame| match frame {
            Frame::Record {
                offset, key, data, ..
            } => last_end = offset + 8 + 2 + key.len() as u64 + data.len() as u64,
            Frame::Torn {
                segment,
                offset,
                bytes,
            } => torn.push((segment.to_path_buf(), offset, bytes)),
        })
        .expect("scan");
        assert_eq!(torn, [(seg.clone(), last_end, 6)]);
        // A restart writes a new segment.
        drop(sink);
        let sink = FileSink::open(dir.path(), "metrics").expect("reopen");
        sink.commit(vec![Record {
            key: "k".into(),
            data: b"after".to_vec(),
        }])
        .await
        .expect("commit");
        let (records, _) = read_spool(dir.path(), "metrics").expect("read");
        assert_eq!(
            records.last().map(|r| r.data.as_slice()),
            Some(&b"after"[..])
        );
    }

    #[tokio::test]
    async fn a_commit_of_more_records_than_one_writev_takes_is_written_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::open(dir.path(), "logs").expect("open");
        // Three slices a record: 1,500 records are 4,500 slices, over IOV_MAX.
        let records: Vec<Record> = (0..1500u32)
            .map(|i| Record {
                key: format!("t/h{i}"),
                data: i.to_le_bytes().repeat(1 + (i as usize % 7)),
            })
            .collect();
        sink.commit(records.clone()).await.expect("commit");
        let (back, skipped) = read_spool(dir.path(), "logs").expect("read");
        assert_eq!(skipped, 0);
        assert_eq!(back.len(), records.len());
        for (b, r) in back.iter().zip(&records) {
            assert_eq!((&b.key, &b.data), (&r.key, &r.data));
        }
    }
}
