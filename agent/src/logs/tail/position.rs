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
