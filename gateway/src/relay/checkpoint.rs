//! Where each shard's progress is kept: the last sequence number the target accepted,
//! or that the shard is finished (closed and read to its end).
//!
//! [`CheckpointStore`] is the interface; [`FileCheckpoints`] keeps one JSON file,
//! replaced atomically (write a temporary file, fsync, rename, fsync the directory)
//! on every save. A shared lease store (DynamoDB, as the KCL uses) can implement the
//! same trait; it would also let a relay see that a parent shard owned by another
//! relay is finished (see `relay::ready_to_start`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sink::BoxFuture;

/// A shard's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    /// Resume after this sequence number.
    After(String),
    /// Closed and read to its end: its children may start.
    Finished,
}

/// The interface.
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Every shard's progress.
    fn load(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<String, Checkpoint>>>;
    /// Records `shard`'s progress durably before resolving.
    fn save<'a>(&'a self, shard: &'a str, at: Checkpoint) -> BoxFuture<'a, anyhow::Result<()>>;
}

#[derive(Serialize, Deserialize, Default)]
struct FileBody {
    stream: String,
    shards: BTreeMap<String, Checkpoint>,
}

/// Checkpoints in one local JSON file.
#[derive(Debug)]
pub struct FileCheckpoints {
    path: PathBuf,
    stream: String,
    /// The file's content, kept in memory; every save rewrites it whole.
    shards: Mutex<BTreeMap<String, Checkpoint>>,
}

impl FileCheckpoints {
    /// Opens (or, if missing, starts) the file for `stream`. A file for another stream
    /// or one that cannot be read is an error: starting over would repeat or skip a
    /// whole stream.
    pub fn open(path: &Path, stream: &str) -> anyhow::Result<FileCheckpoints> {
        let shards = match std::fs::read(path) {
            Ok(bytes) => {
                let body: FileBody = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: not a relay checkpoint file ({e}); move it away to start over",
                        path.display()
                    )
                })?;
                anyhow::ensure!(
                    body.stream == stream,
                    "{}: holds checkpoints of stream {:?}, not {stream:?}",
                    path.display(),
                    body.stream
                );
                body.shards
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        }
        Ok(FileCheckpoints {
            path: path.to_path_buf(),
            stream: stream.to_string(),
            shards: Mutex::new(shards),
        })
    }

    fn write(&self, shard: &str, at: Checkpoint) -> anyhow::Result<()> {
        let mut shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shards.insert(shard.to_string(), at);
        let body = serde_json::to_vec_pretty(&FileBody {
            stream: self.stream.clone(),
            shards: shards.clone(),
        })?;
        let tmp = self.path.with_extension("tmp");
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
        file.write_all(&body)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl CheckpointStore for FileCheckpoints {
    fn load(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<String, Checkpoint>>> {
        let shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Box::pin(async move { Ok(shards) })
    }

    fn save<'a>(&'a self, shard: &'a str, at: Checkpoint) -> BoxFuture<'a, anyhow::Result<()>> {
        // The fsyncs may take milliseconds: let the runtime move other tasks off this
        // worker meanwhile (the relay runs on the multi-thread runtime).
        Box::pin(async move { tokio::task::block_in_place(|| self.write(shard, at)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn saves_survive_a_reopen_and_another_streams_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay/checkpoints.json");
        let store = FileCheckpoints::open(&path, "metrics").expect("open");
        store
            .save("shardId-000000000000", Checkpoint::After("49590".into()))
            .await
            .expect("save");
        store
            .save("shardId-000000000001", Checkpoint::Finished)
            .await
            .expect("save");
        store
            .save("shardId-000000000000", Checkpoint::After("49600".into()))
            .await
            .expect("save");
        let again = FileCheckpoints::open(&path, "metrics").expect("reopen");
        let loaded = again.load().await.expect("load");
        assert_eq!(
            loaded.get("shardId-000000000000"),
            Some(&Checkpoint::After("49600".into()))
        );
        assert_eq!(
            loaded.get("shardId-000000000001"),
            Some(&Checkpoint::Finished)
        );
        assert!(!path.with_extension("tmp").exists());

        let err = FileCheckpoints::open(&path, "other").expect_err("another stream");
        assert!(err.to_string().contains("\"metrics\""), "{err}");
        std::fs::write(&path, b"{ torn").expect("write");
        let err = FileCheckpoints::open(&path, "metrics").expect_err("torn");
        assert!(err.to_string().contains("move it away"), "{err}");
    }
}
