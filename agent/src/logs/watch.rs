//! The logs pipeline's thread and the inotify watch that wakes it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::logs::tail::WatchEvent;

use anyhow::Context as _;

/// Halves of renames waiting for their other half, at most this many.
const MAX_PENDING_MOVES: usize = 1024;

/// Runs the logs pipeline on its own thread. It reads its files every
/// [`POLL_INTERVAL`](crate::logs::pipeline::POLL_INTERVAL), and at once when inotify
/// reports a change to a source's directory (a file created, renamed or deleted, or the
/// kernel's event queue overflowing).
///
/// Writes are not watched: a game that writes line by line would make one event per
/// line, and waking for each costs more than the reading (at 2,000 lines/s in 100
/// writes/s, notify's write events made the logs path cost ten times the reading).
pub fn spawn_logs(
    pipeline: Arc<std::sync::Mutex<crate::logs::pipeline::LogsPipeline>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(std::thread::JoinHandle<()>, Watcher)> {
    let (tx, rx) = std::sync::mpsc::channel::<WatchEvent>();
    let dirs = pipeline
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .dirs();
    let watcher = watch_dirs(&dirs, tx);
    let thread = std::thread::Builder::new()
        .name("edge-logs".into())
        .spawn(move || crate::logs::pipeline::LogsPipeline::run(&pipeline, &stop, &rx))
        .context("starting the logs thread")?;
    Ok((thread, watcher))
}

type Watched = Arc<std::sync::Mutex<HashMap<inotify::WatchDescriptor, PathBuf>>>;

/// The directories inotify watches for the logs pipeline; a reload adds the new
/// sources' directories. Without inotify it does nothing (the pipeline polls).
#[derive(Debug, Default)]
pub struct Watcher {
    watches: Option<(inotify::Watches, Watched)>,
}

const MASK: inotify::WatchMask = inotify::WatchMask::CREATE
    .union(inotify::WatchMask::MOVED_FROM)
    .union(inotify::WatchMask::MOVED_TO)
    .union(inotify::WatchMask::DELETE)
    .union(inotify::WatchMask::DELETE_SELF)
    .union(inotify::WatchMask::MOVE_SELF);

impl Watcher {
    /// Watches `dirs` too; a directory that cannot be watched is polled.
    pub fn add(&self, dirs: &[PathBuf]) {
        let Some((watches, watched)) = &self.watches else {
            return;
        };
        let mut watches = watches.clone();
        let mut watched = watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for dir in dirs {
            match watches.add(dir, MASK) {
                Ok(wd) => {
                    watched.insert(wd, dir.clone());
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a log directory; polling it")
                }
            }
        }
    }
}

/// Watches `dirs` for files appearing, moving and going, on a thread of its own that
/// sends the renames it can pair and one wake per read of events. Without inotify the
/// pipeline polls alone.
fn watch_dirs(dirs: &[std::path::PathBuf], wake: std::sync::mpsc::Sender<WatchEvent>) -> Watcher {
    use inotify::Inotify;
    let mut inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling log directories");
            return Watcher::default();
        }
    };
    let watched: Watched = Arc::default();
    let watcher = Watcher {
        watches: Some((inotify.watches(), watched.clone())),
    };
    watcher.add(dirs);
    let spawned = std::thread::Builder::new()
        .name("edge-logs-watch".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            // MOVED_FROM halves by cookie, until their MOVED_TO half comes.
            let mut moved_from: HashMap<u32, (PathBuf, String)> = HashMap::new();
            loop {
                // Any event, the queue's overflow among them, means "look again": the
                // pipeline lists every directory on each round anyway. A rename is
                // handed over too, so the new name is followed.
                match inotify.read_events_blocking(&mut buf) {
                    Ok(events) => {
                        let mut renames = Vec::new();
                        for event in events {
                            let Some(name) = event.name.and_then(|n| n.to_str()) else {
                                continue;
                            };
                            let Some(dir) = watched
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get(&event.wd)
                                .cloned()
                            else {
                                continue;
                            };
                            if event.mask.contains(inotify::EventMask::MOVED_FROM) {
                                if moved_from.len() >= MAX_PENDING_MOVES {
                                    moved_from.clear();
                                }
                                moved_from.insert(event.cookie, (dir, name.to_string()));
                            } else if event.mask.contains(inotify::EventMask::MOVED_TO)
                                && let Some((from_dir, from)) = moved_from.remove(&event.cookie)
                                && from_dir == dir
                            {
                                renames.push(WatchEvent::Renamed {
                                    dir,
                                    from,
                                    to: name.to_string(),
                                });
                            }
                        }
                        for event in renames.into_iter().chain([WatchEvent::Look]) {
                            if wake.send(event).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "inotify stopped; polling log directories");
                        return;
                    }
                }
            }
        });
    match spawned {
        Ok(_) => watcher,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the inotify thread; polling log directories");
            Watcher::default()
        }
    }
}
