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
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<WatchEvent>();
    let dirs = pipeline
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .dirs();
    watch_dirs(&dirs, tx);
    std::thread::Builder::new()
        .name("edge-logs".into())
        .spawn(move || crate::logs::pipeline::LogsPipeline::run(&pipeline, &stop, &rx))
        .context("starting the logs thread")
}

/// Watches `dirs` for files appearing, moving and going, on a thread of its own that
/// sends the renames it can pair and one wake per read of events. Without inotify the
/// pipeline polls alone.
fn watch_dirs(dirs: &[std::path::PathBuf], wake: std::sync::mpsc::Sender<WatchEvent>) {
    use inotify::{Inotify, WatchMask};
    let mut inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling log directories");
            return;
        }
    };
    let mask = WatchMask::CREATE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF;
    let mut watched = HashMap::new();
    for dir in dirs {
        match inotify.watches().add(dir, mask) {
            Ok(wd) => {
                watched.insert(wd, dir.clone());
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a log directory; polling it")
            }
        }
    }
    if watched.is_empty() {
        return;
    }
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
                            let Some(dir) = watched.get(&event.wd) else {
                                continue;
                            };
                            if event.mask.contains(inotify::EventMask::MOVED_FROM) {
                                if moved_from.len() >= MAX_PENDING_MOVES {
                                    moved_from.clear();
                                }
                                moved_from.insert(event.cookie, (dir.clone(), name.to_string()));
                            } else if event.mask.contains(inotify::EventMask::MOVED_TO)
                                && let Some((from_dir, from)) = moved_from.remove(&event.cookie)
                                && from_dir == *dir
                            {
                                renames.push(WatchEvent::Renamed {
                                    dir: dir.clone(),
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
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the inotify thread; polling log directories");
    }
}
