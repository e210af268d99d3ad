//! Where a log checkpoint commits: the positions file of a source (one JSON document,
//! replaced atomically by rename), read once at start and written after every commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FileId, TailError};

/// A saved position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The path it was last seen at.
    pub path: PathBuf,
    /// Identity.
    pub id: FileId,
    /// Resume here.
    pub offset: u64,
    /// Bytes fingerprinted.
    pub fp_len: u64,
    /// CRC-32 of the first `fp_len` bytes.
    pub fp: u32,
    /// Bytes read when it was written (at least what a gone file still held unsent).
    #[serde(default)]
    pub read: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Positions {
    files: Vec<Position>,
}

/// The saved positions by file, and whether this is the source's first run (no file).
/// A file that does not parse is set aside as `.bad` and reported; the files are then
/// read as on a restart without positions, rather than refusing to start.
pub(super) fn load(file: &Path) -> Result<(HashMap<FileId, Position>, bool), TailError> {
    match std::fs::read(file) {
        Ok(bytes) => match serde_json::from_slice::<Positions>(&bytes) {
            Ok(p) => Ok((p.files.into_iter().map(|p| (p.id, p)).collect(), false)),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "positions file does not parse; set aside as .bad, starting over");
                let _ = std::fs::rename(file, file.with_extension("bad"));
                Ok((HashMap::new(), false))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((HashMap::new(), true)),
        Err(e) => Err(TailError::Positions {
            path: file.to_path_buf(),
            why: e.to_string(),
        }),
    }
}

/// Writes `files` (atomically; without fsync: a position that a crash rolls back only
/// sends some lines twice).
pub(super) fn write(file: &Path, mut files: Vec<Position>) {
    files.sort_by_key(|p| p.id);
    let Ok(bytes) = serde_json::to_vec(&Positions { files }) else {
        return;
    };
    let tmp: PathBuf = file.with_extension("tmp");
    let result = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = result {
        tracing::warn!(file = %file.display(), error = %e, "cannot write log positions");
    }
}

/// A source's positions file: named by its service and its path, so that a source
/// keeps its file whatever its place in the list (a reload may add and remove sources
/// around it).
pub fn file_for(state_dir: &Path, service: &str, path: &str) -> PathBuf {
    // FNV-1a: stable across builds and Rust versions, unlike the std hasher.
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let service: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir.join(format!("{service}-{hash:016x}.json"))
}

/// Earlier agents named positions files by the source's place in the list
/// (`<n>-<service>.json`): at start, such a file for the source at that place becomes
/// the source's own, so an upgrade re-reads nothing.
pub fn adopt_numbered(state_dir: &Path, i: usize, service: &str, positions: &Path) {
    let numbered = state_dir.join(format!("{i}-{service}.json"));
    if positions.exists() || !numbered.exists() {
        return;
    }
    match std::fs::rename(&numbered, positions) {
        Ok(()) => {
            tracing::info!(from = %numbered.display(), to = %positions.display(), "positions file renamed to its stable name")
        }
        Err(e) => {
            tracing::warn!(from = %numbered.display(), error = %e, "cannot rename a positions file; the source starts as on a first run")
        }
    }
}
