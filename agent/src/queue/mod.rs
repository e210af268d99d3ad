//! The disk queue: every batch is on disk before it is sent, and leaves only after the
//! gateway's 2xx.
//!
//! ## Layout
//!
//! One FIFO per priority [`Class`], each a directory of segment files
//! (`00000000000000000001.seg`, …) of length-prefixed, CRC-32-checked records, plus a
//! `head` file: the position of the oldest record not yet acknowledged, replaced
//! atomically (write, fsync, rename). Acknowledging moves the head; segments wholly behind
//! it are deleted. On restart each class replays from its head, in order.
//!
//! ## Torn and corrupt data
//!
//! A record is `[len u32][crc32 u32][payload]`. At open, the last segment of each class is
//! scanned and cut just past its last valid record (a power loss or full disk mid-write
//! leaves a torn tail); how much was cut is reported, and the queue starts. A corrupt
//! record with valid ones after it (bit rot, in any segment) is not a torn tail: reading
//! resyncs to the next record whose length and CRC check, and the bytes skipped are
//! counted and logged. The queue never refuses to start over its own files.
//!
//! ## Bounded
//!
//! `max_bytes` bounds all classes together. A push that would pass it sheds whole oldest
//! segments, lowest class first (debug logs, then traces, then info logs, then
//! warn/error logs, then metrics), never a class above the one being pushed: a debug line is refused rather
//! than drop a metric. A write that fails for lack of space sheds the same way and tries
//! once more; if there is still no room the new record is refused. Every shed record is
//! counted by class.

pub mod figures;
pub mod items;
mod segment;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use segment::{RECORD_HEADER, ReadOutcome, read_record, resync, valid_end};

/// How many classes there are.
pub const CLASSES: usize = 5;

/// Priority classes, lowest first: the order in which data is shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Debug and trace logs: shed first.
    LogsDebug,
    /// Trace spans (OTLP): shed after debug logs, before info logs.
    Traces,
    /// Info logs.
    LogsInfo,
    /// Warn, error and fatal logs.
    LogsWarn,
    /// Metrics: shed last.
    Metrics,
}

impl Class {
    /// Every class, lowest priority first.
    pub const ALL: [Class; CLASSES] = [
        Class::LogsDebug,
        Class::Traces,
        Class::LogsInfo,
        Class::LogsWarn,
        Class::Metrics,
    ];

    /// The class's directory name, also its label value in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Class::LogsDebug => "logs_debug",
            Class::Traces => "traces",
            Class::LogsInfo => "logs_info",
            Class::LogsWarn => "logs_warn",
            Class::Metrics => "metrics",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Queue fill (of its bound) above which debug log records are shed.
pub const SHED_DEBUG_AT: f64 = 0.8;

/// Queue fill above which info log records are shed too.
pub const SHED_INFO_AT: f64 = 0.9;

/// Segment size: large enough that a busy host rotates every few minutes, small enough
/// that shedding one segment drops little.
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// The queue's bound when the config does not set one: the design's `256MiB`.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Where and how big.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// The queue directory (`queue.dir`).
    pub dir: PathBuf,
    /// Bound on all segment bytes together (`queue.max_bytes`).
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
    /// What a user counts in a record of a class (log records, series), for the shed
    /// figures; a record is one batch.
    pub count_items: fn(Class, &[u8]) -> u64,
}

/// Counts each record as one item.
pub fn one_item(_: Class, _: &[u8]) -> u64 {
    1
}

impl QueueConfig {
    /// Defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        QueueConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            count_items: one_item,
        }
    }
}

/// Failures the queue cannot absorb by shedding.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file operation failed.
    #[error("disk queue: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// One record larger than the whole queue.
    #[error("disk queue: a {len}-byte record cannot fit a queue bounded at {max_bytes} bytes")]
    TooLarge {
        /// The record's size.
        len: u64,
        /// The bound.
        max_bytes: u64,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> QueueError + 'a {
    move |source| QueueError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a record is: its segment and its byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// Segment number.
    pub segment: u64,
    /// Byte offset of the record's header.
    pub offset: u64,
}

/// A queued record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where it is; acknowledge through it with [`DiskQueue::ack`].
    pub id: RecordId,
    /// The batch.
    pub payload: Vec<u8>,
}

/// What opening found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from torn or corrupt segment tails, by class.
    pub truncated_bytes: [u64; CLASSES],
    /// Records waiting to be sent, by class (counted from the heads).
    pub pending_records: [u64; CLASSES],
}

/// Records and bytes dropped to stay within the bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shed {
    /// Records (batches) dropped.
    pub records: u64,
    /// What the records held, as [`QueueConfig::count_items`] counts it.
    pub items: u64,
    /// Bytes dropped.
    pub bytes: u64,
}

impl Shed {
    fn add(&mut self, other: Shed) {
        self.records += other.records;
        self.items += other.items;
        self.bytes += other.bytes;
    }
}

#[derive(Debug)]
struct SegmentInfo {
    id: u64,
    bytes: u64,
}

#[derive(Debug)]
struct ClassQueue {
    dir: PathBuf,
    segments: VecDeque<SegmentInfo>,
    writer: Option<File>,
    head: RecordId,
}

impl ClassQueue {
    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
}

/// The queue (see the module docs).
#[derive(Debug)]
pub struct DiskQueue {
    config: QueueConfig,
    classes: [ClassQueue; CLASSES],
    shed: [Shed; CLASSES],
    corrupt_skipped: [u64; CLASSES],
    /// Records waiting per class, kept as records come and go.
    waiting: [u64; CLASSES],
    /// Bytes cut from torn tails when the queue was opened.
    truncated: [u64; CLASSES],
    /// Where corrupt regions were found, so each is counted once however often it is
    /// walked over.
    corrupt_seen: std::collections::HashSet<(Class, RecordId)>,
}

impl DiskQueue {
    /// Opens (creating) the queue, repairs torn tails, and reports what it found.
    pub fn open(config: QueueConfig) -> Result<(DiskQueue, RecoveryReport), QueueError> {
        let mut report = RecoveryReport::default();
        let mut classes = Vec::with_capacity(CLASSES);
        for class in Class::ALL {
            let dir = config.dir.join(class.name());
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            let mut ids: Vec<u64> = fs::read_dir(&dir)
                .map_err(io_err("list", &dir))?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".seg")?
                        .parse::<u64>()
                        .ok()
                })
                .collect();
            ids.sort_unstable();
            let mut queue = ClassQueue {
                dir,
                segments: VecDeque::new(),
                writer: None,
                head: RecordId {
                    segment: ids.first().copied().unwrap_or(1),
                    offset: 0,
                },
            };
            for (n, id) in ids.iter().enumerate() {
                let path = queue.segment_path(*id);
                let len = fs::metadata(&path).map_err(io_err("stat", &path))?.len();
                let mut bytes = len;
                if n + 1 == ids.len() {
                    // The last segment may have a torn tail: cut it after its last valid
                    // record.
                    let data = fs::read(&path).map_err(io_err("read", &path))?;
                    let valid = valid_end(&data) as u64;
                    if valid < len {
                        report.truncated_bytes[class.index()] += len - valid;
                        let file = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io_err("open", &path))?;
                        file.set_len(valid).map_err(io_err("truncate", &path))?;
                        file.sync_all().map_err(io_err("sync", &path))?;
                        bytes = valid;
                    }
                }
                queue.segments.push_back(SegmentInfo { id: *id, bytes });
            }
            if let Some(head) = read_head(&queue.dir) {
                // A head behind the oldest segment (its segments were shed or acked and
                // deleted) starts at the oldest segment.
                if queue.segments.iter().any(|s| s.id == head.segment) {
                    queue.head = head;
                } else if let Some(first) = queue.segments.front()
                    && head.segment > first.id
                {
                    queue.head = RecordId {
                        segment: head.segment,
                        offset: 0,
                    };
                }
            }
            classes.push(queue);
        }
        let classes: [ClassQueue; CLASSES] = classes
            .try_into()
            .unwrap_or_else(|_| unreachable!("one queue per class"));
        let mut queue = DiskQueue {
            config,
            classes,
            shed: [Shed::default(); CLASSES],
            corrupt_skipped: [0; CLASSES],
            waiting: [0; CLASSES],
            truncated: report.truncated_bytes,
            corrupt_seen: std::collections::HashSet::new(),
        };
        for class in Class::ALL {
            report.pending_records[class.index()] = queue.pending(class)?;
        }
        queue.waiting = report.pending_records;
        Ok((queue, report))
    }

    /// Appends a record of `class`, durably (fsync) before it returns. Sheds older,
    /// lower-priority data first when the bound requires it; returns what was shed.
    pub fn push(&mut self, class: Class, payload: &[u8]) -> Result<Shed, QueueError> {
        let len = (RECORD_HEADER + payload.len()) as u64;
        if len > self.config.max_bytes {
            return Err(QueueError::TooLarge {
                len,
                max_bytes: self.config.max_bytes,
            });
        }
        let mut shed = Shed::default();
        while self.total_bytes() + len > self.config.max_bytes {
            match self.shed_one(class)? {
                Some(s) => shed.add(s),
                None => {
                    // Nothing of this class or below to drop: refuse the new record.
                    let refused = self.refused(class, payload, len);
                    shed.add(refused);
                    return Ok(shed);
                }
            }
        }
        match self.append(class, payload) {
            Ok(()) => {
                self.waiting[class.index()] += 1;
                Ok(shed)
            }
            Err(QueueError::Io { source, .. }) if is_out_of_space(&source) => {
                // A full disk degrades to shedding, never to a crash.
                if let Some(s) = self.shed_one(class)? {
                    shed.add(s);
                    if self.append(class, payload).is_ok() {
                        self.waiting[class.index()] += 1;
                        return Ok(shed);
                    }
                }
                let refused = self.refused(class, payload, len);
                shed.add(refused);
                Ok(shed)
            }
            Err(e) => Err(e),
        }
    }

    fn append(&mut self, class: Class, payload: &[u8]) -> Result<(), QueueError> {
        let segment_bytes = self.config.segment_bytes;
        let q = &mut self.classes[class.index()];
        let needs_new = match q.segments.back() {
            None => true,
            Some(last) => last.bytes >= segment_bytes,
        };
        if needs_new {
            let id = q.segments.back().map_or(q.head.segment, |s| s.id + 1);
            q.segments.push_back(SegmentInfo { id, bytes: 0 });
            q.writer = None;
        }
        let (id, start) = match q.segments.back() {
            Some(s) => (s.id, s.bytes),
            None => unreachable!("a segment was just ensured"),
        };
        let path = q.segment_path(id);
        if q.writer.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            q.writer = Some(file);
        }
        let record = segment::encode(payload);
        let result = q.writer.as_mut().map_or_else(
            || Err(io::Error::other("no writer")),
            |w| w.write_all(&record).and_then(|()| w.sync_data()),
        );
        if let Err(e) = result {
            // Cut any partial write back so the segment stays valid.
            q.writer = None;
            if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(start);
            }
            return Err(io_err("append to", &path)(e));
        }
        if let Some(last) = q.segments.back_mut() {
            last.bytes += record.len() as u64;
        }
        Ok(())
    }

    /// Up to `max` records of `class` from the head on, oldest first, not removed.
    pub fn peek(&mut self, class: Class, max: usize) -> Result<Vec<Entry>, QueueError> {
        let mut out = Vec::new();
        self.walk(class, max, |entry| out.push(entry))?;
        Ok(out)
    }

    /// Records of `class` waiting, from the head on (reads one record at a time).
    pub fn pending(&mut self, class: Class) -> Result<u64, QueueError> {
        let mut n = 0u64;
        self.walk(class, usize::MAX, |_| n += 1)?;
        Ok(n)
    }

    /// Visits up to `max` records of `class` from the head on.
    fn walk(
        &mut self,
        class: Class,
        max: usize,
        mut visit: impl FnMut(Entry),
    ) -> Result<(), QueueError> {
        let mut seen = 0usize;
        let mut at = self.classes[class.index()].head;
        while seen < max {
            let q = &self.classes[class.index()];
            let current = q
                .segments
                .iter()
                .find(|s| s.id == at.segment && at.offset < s.bytes);
            let Some(seg) = current else {
                // Past the end of this segment (or it is gone): the next one, if any.
                match q.segments.iter().find(|s| s.id > at.segment) {
                    Some(next) => {
                        at = RecordId {
                            segment: next.id,
                            offset: 0,
                        };
                        continue;
                    }
                    None => break,
                }
            };
            let path = q.segment_path(seg.id);
            let bytes = seg.bytes;
            match read_record(&path, at.offset, bytes).map_err(io_err("read", &path))? {
                ReadOutcome::Record(payload, next) => {
                    visit(Entry { id: at, payload });
                    seen += 1;
                    at.offset = next;
                }
                ReadOutcome::Corrupt => {
                    // Bit rot: resync to the next record that checks; count and log the
                    // bytes skipped once.
                    let next = resync(&path, at.offset, bytes).map_err(io_err("read", &path))?;
                    if self.corrupt_seen.insert((class, at)) {
                        let skipped = next - at.offset;
                        self.corrupt_skipped[class.index()] += skipped;
                        tracing::warn!(
                            class = class.name(),
                            segment = %path.display(),
                            offset = at.offset,
                            skipped_bytes = skipped,
                            "corrupt record in the disk queue; skipped to the next valid one"
                        );
                    }
                    at.offset = next;
                }
            }
        }
        Ok(())
    }

    /// Acknowledges every record of `class` up to and including `id` (the gateway
    /// answered 2xx): the head moves past it, durably, and consumed segments are deleted.
    pub fn ack(&mut self, class: Class, id: RecordId) -> Result<(), QueueError> {
        self.ack_inner(class, id, None)
    }

    /// [`DiskQueue::ack`] for a record whose payload length the caller knows (it was
    /// read with [`DiskQueue::peek`]), so the record is not read again.
    pub fn ack_read(
        &mut self,
        class: Class,
        id: RecordId,
        payload_len: usize,
    ) -> Result<(), QueueError> {
        self.ack_inner(class, id, Some(payload_len))
    }

    fn ack_inner(
        &mut self,
        class: Class,
        id: RecordId,
        payload_len: Option<usize>,
    ) -> Result<(), QueueError> {
        let consumed = if id == self.classes[class.index()].head {
            1
        } else {
            let mut n = 0u64;
            self.walk(class, usize::MAX, |entry| n += u64::from(entry.id <= id))?;
            n
        };
        let q = &mut self.classes[class.index()];
        let Some(seg) = q.segments.iter().find(|s| s.id == id.segment) else {
            return Ok(());
        };
        let path = q.segment_path(seg.id);
        let next = match payload_len {
            // The caller read the record: its end is known without reading it again.
            Some(len) if id.offset + (RECORD_HEADER + len) as u64 <= seg.bytes => {
                id.offset + (RECORD_HEADER + len) as u64
            }
            _ => match read_record(&path, id.offset, seg.bytes).map_err(io_err("read", &path))? {
                ReadOutcome::Record(_, next) => next,
                ReadOutcome::Corrupt => {
                    resync(&path, id.offset, seg.bytes).map_err(io_err("read", &path))?
                }
            },
        };
        let head = RecordId {
            segment: id.segment,
            offset: next,
        };
        if head <= q.head {
            return Ok(());
        }
        write_head(&q.dir, head)?;
        q.head = head;
        // Delete the segments wholly behind the head, but never the one being written.
        while q.segments.len() > 1 && q.segments.front().is_some_and(|s| s.id < head.segment) {
            if let Some(old) = q.segments.pop_front() {
                let p = q.segment_path(old.id);
                fs::remove_file(&p).map_err(io_err("remove", &p))?;
            }
        }
        self.waiting[class.index()] = self.waiting[class.index()].saturating_sub(consumed);
        Ok(())
    }

    /// Drops the oldest segment of the lowest class at or below `limit` that has data.
    fn shed_one(&mut self, limit: Class) -> Result<Option<Shed>, QueueError> {
        for class in Class::ALL.into_iter().filter(|c| *c <= limit) {
            let q = &mut self.classes[class.index()];
            if q.bytes() == 0 {
                continue;
            }
            if q.segments.len() == 1 {
                // Only the segment being written: close it so it can go.
                q.writer = None;
            }
            let Some(old) = q.segments.pop_front() else {
                continue;
            };
            let path = q.segment_path(old.id);
            let from = if old.id == q.head.segment {
                q.head.offset
            } else {
                0
            };
            let count_items = self.config.count_items;
            let (records, items) = fs::read(&path)
                .map(|data| {
                    segment::records(&data[(from as usize).min(data.len())..]).fold(
                        (0u64, 0u64),
                        |(records, items), (_, payload)| {
                            (records + 1, items + count_items(class, payload))
                        },
                    )
                })
                .unwrap_or((0, 0));
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            let next = q.segments.front().map_or(old.id + 1, |s| s.id);
            if q.segments.is_empty() {
                q.segments.push_back(SegmentInfo { id: next, bytes: 0 });
            }
            if q.head.segment <= old.id {
                q.head = RecordId {
                    segment: next,
                    offset: 0,
                };
                write_head(&q.dir, q.head)?;
            }
            let bytes = old.bytes.saturating_sub(from);
            self.waiting[class.index()] = self.waiting[class.index()].saturating_sub(records);
            self.count_shed(class, records, items, bytes);
            return Ok(Some(Shed {
                records,
                items,
                bytes,
            }));
        }
        Ok(None)
    }

    /// Counts a new record refused for lack of room.
    fn refused(&mut self, class: Class, payload: &[u8], len: u64) -> Shed {
        let items = (self.config.count_items)(class, payload);
        self.count_shed(class, 1, items, len);
        Shed {
            records: 1,
            items,
            bytes: len,
        }
    }

    fn count_shed(&mut self, class: Class, records: u64, items: u64, bytes: u64) {
        let s = &mut self.shed[class.index()];
        s.records += records;
        s.items += items;
        s.bytes += bytes;
    }

    /// Segment bytes on disk, all classes.
    pub fn total_bytes(&self) -> u64 {
        self.classes.iter().map(ClassQueue::bytes).sum()
    }

    /// Segment bytes on disk of one class.
    pub fn class_bytes(&self, class: Class) -> u64 {
        self.classes[class.index()].bytes()
    }

    /// Records of `class` waiting, as counted while they come and go (no disk reads).
    pub fn waiting(&self, class: Class) -> u64 {
        self.waiting[class.index()]
    }

    /// Shed so far, by class.
    pub fn shed(&self, class: Class) -> Shed {
        self.shed[class.index()]
    }

    /// Bytes lost so far, by class: torn tails cut at opening plus corrupt records
    /// skipped since.
    pub fn lost_bytes(&self, class: Class) -> u64 {
        self.truncated[class.index()] + self.corrupt_skipped[class.index()]
    }

    /// Bytes of corrupt records skipped so far, by class.
    pub fn corrupt_skipped(&self, class: Class) -> u64 {
        self.corrupt_skipped[class.index()]
    }
}

fn is_out_of_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

/// The head file: segment and offset, with a CRC so a torn write reads as absent.
fn read_head(dir: &Path) -> Option<RecordId> {
    let data = fs::read(dir.join("head")).ok()?;
    if data.len() != 20 {
        return None;
    }
    let crc = u32::from_le_bytes(data[16..20].try_into().ok()?);
    if crc32fast::hash(&data[..16]) != crc {
        return None;
    }
    Some(RecordId {
        segment: u64::from_le_bytes(data[0..8].try_into().ok()?),
        offset: u64::from_le_bytes(data[8..16].try_into().ok()?),
    })
}

fn write_head(dir: &Path, head: RecordId) -> Result<(), QueueError> {
    use std::os::unix::fs::FileExt;
    let mut data = [0u8; 20];
    data[0..8].copy_from_slice(&head.segment.to_le_bytes());
    data[8..16].copy_from_slice(&head.offset.to_le_bytes());
    let crc = crc32fast::hash(&data[..16]);
    data[16..20].copy_from_slice(&crc.to_le_bytes());
    let path = dir.join("head");
    // Rewritten in place, without fsync: 20 bytes within one sector are written whole,
    // and a head that a crash rolls back or tears (the CRC catches it) only replays
    // batches the gateway already has. Delivery is at-least-once and duplicates are
    // harmless, so the head is not worth a flush and a rename per batch.
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))?;
    file.write_all_at(&data, 0)
        .map_err(io_err("write", &path))?;
    Ok(())
}

#[cfg(test)]
mod tests;

/// The queue as the agent's tasks share it.
pub type SharedQueue = std::sync::Arc<std::sync::Mutex<DiskQueue>>;

/// Runs `f` on the shared queue on the blocking pool (queue operations read, write and
/// fsync files), so the receiver and the timers never wait on the disk.
pub async fn with_queue<R: Send + 'static>(
    queue: &SharedQueue,
    f: impl FnOnce(&mut DiskQueue) -> R + Send + 'static,
) -> R {
    let queue = queue.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut q = queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut q)
    });
    match task.await {
        Ok(r) => r,
        // A panic in a queue operation is a bug: let it surface where it was awaited.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
