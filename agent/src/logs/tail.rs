//! Tailing: files by glob, followed through rotation, with positions checkpointed.
//!
//! Every poll lists the glob's directory again (so a lost or overflowed inotify queue
//! costs nothing: the next poll sees everything), and reads what each file gained.
//! Files are known by device and inode, and their first bytes' fingerprint tells a
//! reused inode from the file it replaced.
//!
//! - **Rename rotation** (`game.log` → `game.log.1`, new `game.log`): the old inode stays
//!   open and is drained to its end, also after the rename, and stays followed (with
//!   its position saved) as long as it is in the directory under a rotated name; the new
//!   file is read from its start. A file gone from the directory is let go once it has
//!   not grown for [`ROTATED_GRACE`].
//! - **Renamed before it was listed, or while the agent was down**: a file outside the
//!   glob is followed when it has a saved position (found by device, inode and
//!   fingerprint, whatever its name now is) or when its name is a rotated name of a glob
//!   match (`game.log.3`, `game.log-20261205`; never `.gz` and the like), so a file that
//!   lived under the glob only between two polls is still read. One that starts like a
//!   file followed now is a copytruncate copy, not new data. A saved position whose file
//!   is gone is reported as lost bytes (`edge_logs_lost_bytes_total`) and a warning.
//! - **copytruncate**: a file shorter than the read position was truncated. What the
//!   reader had not read yet is recovered from the copy (a sibling file whose first
//!   bytes match the fingerprint), then the file is read from 0. Lines the writer adds
//!   between the copy and the truncation are lost by copytruncate itself, for every
//!   reader.
//! - **Truncated in place**: read again from 0.
//! - A partial last line is held until its newline, or emitted after
//!   `partial_flush`; lines over `max_line_bytes` are split into flagged pieces.
//!
//! Positions are written (atomically, by rename, in `tail/position.rs`) only through
//! [`Tailer::commit`], which
//! the pipeline calls with offsets whose lines are already in the disk queue: a
//! checkpoint never runs ahead of what is durable.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod position;

pub use position::Position;

/// How long a rotated-away file is still drained after it last grew.
pub const ROTATED_GRACE: Duration = Duration::from_secs(5);

/// Bytes hashed to recognise a file: enough to differ between two log files.
pub const FINGERPRINT_BYTES: u64 = 256;

/// The most read from one file in one poll, so one busy file cannot starve the others
/// and the lines of one round stay small in memory (a round's lines are held until
/// they are processed).
pub const MAX_READ_PER_POLL: u64 = 1 << 20;

const CHUNK: usize = 256 << 10;

/// What one source tails.
#[derive(Clone, Debug)]
pub struct TailConfig {
    /// `dir/pattern`, `*` and `?` in the last component only.
    pub glob: String,
    /// Files that exist at the agent's very first start are read from their start
    /// (`true`) or only from their end (`false`, the default: no flood of old lines).
    pub read_existing_from_start: bool,
    /// Longer lines are split into pieces of this many bytes, each flagged.
    pub max_line_bytes: usize,
    /// A last line without its newline is emitted after this long.
    pub partial_flush: Duration,
}

/// A file's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
}

/// One line read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The file it came from.
    pub file: FileId,
    /// The text, without its newline (invalid UTF-8 replaced).
    pub text: String,
    /// The file offset just past this line: where to resume once it is durable.
    pub end_offset: u64,
    /// A piece of a line longer than the maximum.
    pub truncated: bool,
}

#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    file: File,
    /// Next byte to read.
    read: u64,
    /// Committed (durable) position.
    committed: u64,
    fp_len: u64,
    fp: u32,
    partial: Vec<u8>,
    partial_since: Option<Instant>,
    /// Renamed out of the glob or deleted: drained.
    rotated: bool,
    /// Still in the directory (under any name followed); a rotated file that is gone
    /// is dropped once drained.
    present: bool,
    last_growth: Instant,
    /// The last read stopped at the read budget with more to read.
    behind: bool,
}

/// Why the tailer cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The glob has wildcards outside its last component.
    #[error("logs path {0:?}: wildcards are allowed in the file name only")]
    Glob(String),
    /// The positions file exists but cannot be used.
    #[error("positions file {path}: {why}")]
    Positions {
        /// The file.
        path: PathBuf,
        /// The cause.
        why: String,
    },
}

/// What the watch tells the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// Something changed in a watched directory: look again.
    Look,
    /// A file of `dir` was renamed from `from` to `to` (the kernel paired the two halves
    /// by their cookie): a file that matched a glob is followed under its new name,
    /// whatever that is, even if it was never listed under the old one.
    Renamed {
        /// The directory.
        dir: PathBuf,
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
}

/// A tailer for one glob.
#[derive(Debug)]
pub struct Tailer {
    config: TailConfig,
    dir: PathBuf,
    pattern: String,
    positions_file: PathBuf,
    files: HashMap<FileId, Tracked>,
    /// Positions loaded at start, used when their file is first seen.
    saved: HashMap<FileId, Position>,
    /// No positions file existed: this is the agent's first run for this source.
    first_run: bool,
    first_poll: bool,
    /// The read buffer, reused from poll to poll.
    buf: Vec<u8>,
    /// Bytes of files that had a position but were gone at restart (not yet reported).
    lost_bytes: u64,
    /// Fingerprints of files found truncated lately: a copytruncate copy that starts
    /// like one of them is not new data (its unread part was recovered from it).
    truncated: Vec<(u64, u32)>,
    /// Files outside the glob first seen at the last poll, with their length then: one
    /// is followed once its length holds still for a poll (a copy being written is not
    /// taken for a new file).
    pending: HashMap<FileId, u64>,
    /// Names that files matching the glob were renamed to (inotify's paired
    /// `IN_MOVED_FROM`/`IN_MOVED_TO`): followed like rotated names, whatever they are,
    /// while they are in the directory.
    renamed_to: HashSet<String>,
}

impl Tailer {
    /// A tailer for `config`, keeping positions in `positions_file`. A positions file
    /// that does not parse is reported and set aside (renamed `.bad`), and the files
    /// are read as on a first run, rather than refusing to start.
    pub fn new(config: TailConfig, positions_file: PathBuf) -> Result<Tailer, TailError> {
        let glob = Path::new(&config.glob);
        let pattern = glob
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let dir = glob.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.to_string_lossy().contains(['*', '?']) || pattern.is_empty() {
            return Err(TailError::Glob(config.glob.clone()));
        }
        let (saved, first_run) = position::load(&positions_file)?;
        Ok(Tailer {
            config,
            dir,
            pattern,
            positions_file,
            files: HashMap::new(),
            saved,
            first_run,
            first_poll: true,
            buf: Vec::new(),
            lost_bytes: 0,
            truncated: Vec::new(),
            pending: HashMap::new(),
            renamed_to: HashSet::new(),
        })
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of this directory was renamed from `from` to `to` (told by inotify): if the
    /// old name matched the glob (or was itself such a new name), the new name is
    /// followed from the next poll on, even if the file was never listed under the old
    /// one (created and renamed between two polls).
    pub fn renamed(&mut self, from: &str, to: &str) {
        if glob_match(&self.pattern, to) {
            return;
        }
        if glob_match(&self.pattern, from) || self.renamed_to.remove(from) {
            self.renamed_to.insert(to.to_string());
        }
    }

    /// Lists the glob, follows rotations, and appends every new line to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Line>) {
        // Every regular file of the directory that matters: the glob's, and outside it
        // the files followed already, those with a saved position (renamed while the
        // agent was down), and those whose name is a rotated name of a glob match
        // (`game.log.3`, `game.log-20261205`: created and renamed between two polls,
        // or while the agent was down).
        let mut seen: Vec<(PathBuf, FileId, u64, bool)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut renamed_present = HashSet::new();
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if self.renamed_to.contains(name) {
                    renamed_present.insert(name.to_string());
                }
                let path = entry.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let id = FileId {
                    dev: meta.dev(),
                    ino: meta.ino(),
                };
                let under = glob_match(&self.pattern, name);
                if under
                    || self.files.contains_key(&id)
                    || self.saved.contains_key(&id)
                    || rotated_name(&self.pattern, name)
                    || self.renamed_to.contains(name)
                {
                    seen.push((path, id, meta.len(), under));
                }
            }
            // A new name that is gone is forgotten (its file, if followed, stays
            // followed by inode until drained).
            self.renamed_to = renamed_present;
        }
        seen.sort();
        let start_at_end =
            self.first_run && self.first_poll && !self.config.read_existing_from_start;
        // Fingerprints known before this poll handles any truncation: a new file outside
        // the glob that starts like one of them is a copytruncate copy, not new data.
        let known: Vec<(u64, u32, u64)> = self
            .files
            .values()
            .filter(|t| t.fp_len > 0)
            .map(|t| (t.fp_len, t.fp, u64::MAX))
            .chain(
                self.truncated
                    .iter()
                    .map(|(fp_len, fp)| (*fp_len, *fp, u64::MAX)),
            )
            .chain(
                self.saved
                    .values()
                    .filter(|p| p.fp_len > 0)
                    .map(|p| (p.fp_len, p.fp, p.offset)),
            )
            .collect();
        // New files outside the glob wait one poll for their length to hold still.
        let mut still_pending = HashMap::new();
        seen.retain(|(_, id, len, under)| {
            if *under
                || self.files.contains_key(id)
                || self.saved.contains_key(id)
                || start_at_end
                || self.pending.get(id) == Some(len)
            {
                return true;
            }
            still_pending.insert(*id, *len);
            false
        });
        self.pending = still_pending;
        // Files no longer under the glob are drained; those gone from the directory
        // (deleted, or renamed to a name nothing follows) are let go once drained.
        for (id, t) in &mut self.files {
            let found = seen.iter().find(|(_, s, _, _)| s == id);
            t.rotated = !found.is_some_and(|(_, _, _, under)| *under);
            t.present = found.is_some();
        }
        for (path, id, len, under) in seen {
            if !self.files.contains_key(&id) {
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                // The path may have been rotated between the listing and the open: only
                // the inode listed is taken; another one is picked up next poll.
                let same = file
                    .metadata()
                    .is_ok_and(|m| m.dev() == id.dev && m.ino() == id.ino);
                if !same {
                    continue;
                }
                let mut start = if start_at_end { len } else { 0 };
                if !under && !self.saved.contains_key(&id) {
                    // A copy of a file followed now is read from that file (its
                    // truncation is recovered from the copy); a copy of a file with a
                    // saved position resumes from that position.
                    if let Some((_, _, offset)) = known
                        .iter()
                        .find(|(fp_len, fp, _)| fingerprint(&file, *fp_len) == Some(*fp))
                    {
                        start = (*offset).min(len);
                    }
                }
                if let Some(saved) = self.saved.remove(&id) {
                    // The same inode: resume if it still starts with the same bytes.
                    if saved.offset <= len && fingerprint(&file, saved.fp_len) == Some(saved.fp) {
                        start = saved.offset;
                    } else {
                        start = 0;
                    }
                }
                if !under && start < len {
                    tracing::info!(
                        file = %path.display(),
                        offset = start,
                        "following a rotated file outside the glob from its position"
                    );
                }
                let (fp_len, fp) = (
                    len.min(FINGERPRINT_BYTES),
                    fingerprint(&file, len.min(FINGERPRINT_BYTES)).unwrap_or(0),
                );
                self.files.insert(
                    id,
                    Tracked {
                        path: path.clone(),
                        file,
                        read: start,
                        committed: start,
                        fp_len,
                        fp,
                        partial: Vec::new(),
                        partial_since: None,
                        rotated: !under,
                        present: true,
                        last_growth: now,
                        behind: false,
                    },
                );
            }
            if let Some(t) = self.files.get_mut(&id) {
                t.path = path;
                if !under {
                    continue;
                }
                // Shorter than what was read, or rewritten from the start (truncated and
                // refilled between two polls): read again from 0.
                let rewritten =
                    t.fp_len > 0 && len >= t.fp_len && fingerprint(&t.file, t.fp_len) != Some(t.fp);
                if len < t.read || rewritten {
                    // Truncated: copytruncate, or in place.
                    if t.fp_len > 0 {
                        if self.truncated.len() >= 16 {
                            self.truncated.remove(0);
                        }
                        self.truncated.push((t.fp_len, t.fp));
                    }
                    recover_from_copy(&self.dir, id, t, &self.config, out);
                    t.read = 0;
                    t.committed = 0;
                    t.partial.clear();
                    t.partial_since = None;
                    t.fp_len = 0;
                }
            }
        }
        if self.first_poll {
            self.report_gone();
        }
        self.first_poll = false;
        if self.first_run {
            // Record where this first run starts, so a crash before the first commit
            // does not make the next start skip to the end again.
            self.first_run = false;
            self.write_positions();
        }
        let config = self.config.clone();
        // Rotated files first: their last lines were written before the new file's.
        let mut order: Vec<(bool, FileId)> =
            self.files.iter().map(|(id, t)| (!t.rotated, *id)).collect();
        order.sort_unstable();
        for (_, id) in order {
            if let Some(t) = self.files.get_mut(&id) {
                read_new(id, t, &config, now, &mut self.buf, out);
            }
        }
        // Files gone from the directory that stopped growing are done (their lines were
        // emitted); rotated files still there stay followed, so a restart knows them.
        self.files.retain(|_, t| {
            !(t.rotated
                && !t.present
                && now.saturating_duration_since(t.last_growth) >= ROTATED_GRACE)
        });
    }

    /// Records that every line of `file` up to `offset` is durable, and writes the
    /// positions file (atomically; without fsync: a position that a crash rolls back
    /// only sends some lines twice).
    pub fn commit(&mut self, done: &HashMap<FileId, u64>) {
        let mut changed = false;
        for (id, offset) in done {
            if let Some(t) = self.files.get_mut(id)
                && *offset > t.committed
                && *offset <= t.read
            {
                t.committed = *offset;
                changed = true;
            }
        }
        if changed {
            self.write_positions();
        }
    }

    fn write_positions(&self) {
        let mut files: Vec<Position> = self
            .files
            .iter()
            .map(|(id, t)| Position {
                path: t.path.clone(),
                id: *id,
                offset: t.committed,
                fp_len: t.fp_len,
                fp: t.fp,
                read: t.read,
            })
            .collect();
        // Saved positions of files not seen yet are kept.
        files.extend(self.saved.values().cloned());
        position::write(&self.positions_file, files);
    }

    /// After the first poll of a restart, the saved positions left are of files gone
    /// from the directory (deleted, or moved elsewhere, while the agent was down): what
    /// they held past the position is reported as lost bytes (at least what was read
    /// but not committed) and a warning, never dropped quietly.
    fn report_gone(&mut self) {
        for (_, saved) in self.saved.drain() {
            let lost = saved.read.saturating_sub(saved.offset);
            self.lost_bytes += lost;
            tracing::warn!(
                file = %saved.path.display(),
                offset = saved.offset,
                lost_bytes_at_least = lost,
                "a log file with a saved position is gone (deleted, or moved out of its directory, while the agent was down): what it held past the position is lost"
            );
        }
    }

    /// Bytes of files found gone at restart since the last call (for the self-metric).
    pub fn take_lost_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.lost_bytes)
    }

    /// Whether the last poll stopped at its read budget with more to read.
    pub fn behind(&self) -> bool {
        self.files.values().any(|t| t.behind)
    }

    /// Files followed now.
    pub fn tracked(&self) -> usize {
        self.files.len()
    }
}

fn fingerprint(file: &File, len: u64) -> Option<u32> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(crc32fast::hash(&buf))
}

/// Reads what `t` gained since the last poll and splits it into lines.
fn read_new(
    id: FileId,
    t: &mut Tracked,
    config: &TailConfig,
    now: Instant,
    buf: &mut Vec<u8>,
    out: &mut Vec<Line>,
) {
    if buf.len() < CHUNK {
        buf.resize(CHUNK, 0);
    }
    let mut budget = MAX_READ_PER_POLL;
    t.behind = false;
    loop {
        let want = (CHUNK as u64).min(budget) as usize;
        if want == 0 {
            t.behind = true;
            break;
        }
        let n = match t.file.read_at(&mut buf[..want], t.read) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        budget -= n as u64;
        let base = t.read;
        t.read += n as u64;
        t.last_growth = now;
        if t.fp_len < FINGERPRINT_BYTES {
            let len = t.read.min(FINGERPRINT_BYTES);
            if let Some(fp) = fingerprint(&t.file, len) {
                t.fp_len = len;
                t.fp = fp;
            }
        }
        split_lines(id, t, &buf[..n], base, config, now, out);
    }
    if !t.partial.is_empty()
        && t.partial_since
            .is_some_and(|since| now.saturating_duration_since(since) >= config.partial_flush)
    {
        emit(id, std::mem::take(&mut t.partial), t.read, false, out);
        t.partial_since = None;
    }
}

fn split_lines(
    id: FileId,
    t: &mut Tracked,
    data: &[u8],
    base: u64,
    config: &TailConfig,
    now: Instant,
    out: &mut Vec<Line>,
) {
    let mut start = 0usize;
    for nl in memchr::memchr_iter(b'\n', data) {
        let end_offset = base + nl as u64 + 1;
        let piece = &data[start..nl];
        if t.partial.is_empty() {
            emit_bounded(id, piece, end_offset, config.max_line_bytes, out);
        } else {
            let mut line = std::mem::take(&mut t.partial);
            line.extend_from_slice(piece);
            emit_bounded(id, &line, end_offset, config.max_line_bytes, out);
            t.partial_since = None;
        }
        start = nl + 1;
    }
    if start < data.len() {
        if t.partial.is_empty() {
            t.partial_since = Some(now);
        }
        t.partial.extend_from_slice(&data[start..]);
        // A line longer than the maximum is split now: memory stays bounded.
        while t.partial.len() > config.max_line_bytes {
            let rest = t
                .partial
                .split_off(cut_point(&t.partial, config.max_line_bytes));
            let piece = std::mem::replace(&mut t.partial, rest);
            let held = t.partial.len() as u64;
            emit(id, piece, base + data.len() as u64 - held, true, out);
        }
    }
}

/// Emits one complete line (`line` without its newline, which ends at `end_offset`),
/// split into flagged pieces when it is longer than `max`.
fn emit_bounded(id: FileId, line: &[u8], end_offset: u64, max: usize, out: &mut Vec<Line>) {
    let start = end_offset.saturating_sub(1 + line.len() as u64);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() <= max {
        emit(id, line.to_vec(), end_offset, false, out);
        return;
    }
    let mut rest = line;
    let mut done = 0usize;
    while !rest.is_empty() {
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            cut_point(rest, max)
        };
        let (piece, tail) = rest.split_at(cut);
        done += cut;
        // A piece's position is just past it; the last one's is past the newline.
        let at = if tail.is_empty() {
            end_offset
        } else {
            start + done as u64
        };
        emit(id, piece.to_vec(), at, true, out);
        rest = tail;
    }
}

/// How far back from the maximum a cut may move to avoid splitting a word: past the
/// longest address the tokenizer finds (an email is at most 254 bytes).
const CUT_WINDOW: usize = 256;

/// Where to cut a piece of at most `max` bytes (`bytes` is longer than `max`): just
/// after the last byte within [`CUT_WINDOW`] of the maximum that no email, IP address or
/// token can hold (a space, a quote, `,;<>()[]{}=&|`…), so no address straddles the cut
/// and each piece is tokenized whole. A run longer than the window is cut at the
/// maximum (it is no address); so is a run that would leave an empty piece.
fn cut_point(bytes: &[u8], max: usize) -> usize {
    let max = max.max(1).min(bytes.len());
    let floor = max.saturating_sub(CUT_WINDOW);
    let breaks = |b: &u8| {
        !(b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'.' | b'_' | b'%' | b'+' | b'-' | b'@' | b':' | b'"' | b'\\'
            )
            || *b >= 0x80)
    };
    bytes[floor..max]
        .iter()
        .rposition(breaks)
        .map(|i| floor + i + 1)
        .filter(|&cut| cut > 0)
        .unwrap_or(max)
}

fn emit(id: FileId, bytes: Vec<u8>, end_offset: u64, truncated: bool, out: &mut Vec<Line>) {
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    out.push(Line {
        file: id,
        text,
        end_offset,
        truncated,
    });
}

/// copytruncate: the unread rest of the file before truncation is in the copy, a
/// sibling whose first bytes are the same; read it from our position to its end.
fn recover_from_copy(
    dir: &Path,
    id: FileId,
    t: &mut Tracked,
    config: &TailConfig,
    out: &mut Vec<Line>,
) {
    if t.fp_len == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.ino() == id.ino || meta.len() < t.read {
            continue;
        }
        let Ok(copy) = File::open(&path) else {
            continue;
        };
        if fingerprint(&copy, t.fp_len) != Some(t.fp) {
            continue;
        }
        let mut rest = vec![0u8; (meta.len() - t.read) as usize];
        if copy.read_exact_at(&mut rest, t.read).is_err() {
            return;
        }
        let before = out.len();
        // Offsets of recovered lines belong to the copy; the original restarts at 0.
        split_lines(id, t, &rest, t.read, config, Instant::now(), out);
        if !t.partial.is_empty() {
            let partial = std::mem::take(&mut t.partial);
            emit(id, partial, 0, false, out);
        }
        for line in &mut out[before..] {
            line.end_offset = 0;
        }
        tracing::info!(copy = %path.display(), lines = out.len() - before, "copytruncate: read the unread rest from the copy");
        return;
    }
}

/// `*` and `?` over a file name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether `name` is a rotated name of a file the glob matches: a glob match followed by
/// `.`, `-` or `_` and more (`game.log.1`, `game.log-20261205`), not compressed (a `.gz`
/// or `.zst` file is a copy logrotate made, not text to read).
pub fn rotated_name(pattern: &str, name: &str) -> bool {
    const COMPRESSED: &[&str] = &[".gz", ".zst", ".bz2", ".xz", ".lz4", ".zip", ".br"];
    if COMPRESSED.iter().any(|ext| name.ends_with(ext)) {
        return false;
    }
    name.char_indices()
        .filter(|(i, c)| *i > 0 && matches!(c, '.' | '-' | '_'))
        .any(|(i, _)| i + 1 < name.len() && glob_match(pattern, &name[..i]))
}

#[cfg(test)]
mod tests;
