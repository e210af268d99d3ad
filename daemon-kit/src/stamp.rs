//! Change stamps: what decides that a file a daemon loaded (its config, its policy, its
//! certificates) has changed and should be loaded again. A stamp is the file's
//! modification time and length, read without opening it; a missing file has a stamp of
//! its own, so a file that appears or goes away is a change too.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One file's stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    /// The stamp of `path` now.
    pub fn of(path: &Path) -> Stamp {
        match std::fs::metadata(path) {
            Ok(meta) => Stamp {
                modified: meta.modified().ok(),
                len: meta.len(),
            },
            Err(_) => Stamp {
                modified: None,
                len: 0,
            },
        }
    }
}

/// The stamps of a set of files, taken together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamps {
    files: Vec<(PathBuf, Stamp)>,
}

impl Stamps {
    /// The stamps of `paths` now.
    pub fn of<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Stamps {
        Stamps {
            files: paths
                .into_iter()
                .map(|p| (p.as_ref().to_path_buf(), Stamp::of(p.as_ref())))
                .collect(),
        }
    }

    /// The same files' stamps now.
    #[must_use]
    pub fn now(&self) -> Stamps {
        Stamps::of(self.files.iter().map(|(p, _)| p))
    }

    /// Whether any of the files changed since these stamps were taken.
    pub fn changed(&self) -> bool {
        self.files.iter().any(|(p, s)| Stamp::of(p) != *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_an_appearance_and_a_removal_are_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.pem");
        std::fs::write(&a, "one\n").expect("write");
        let stamps = Stamps::of([&a, &b]);
        assert!(!stamps.changed(), "nothing was touched");
        std::fs::write(&b, "appeared\n").expect("write");
        assert!(stamps.changed(), "a file that appears is a change");
        let stamps = stamps.now();
        assert!(!stamps.changed());
        std::fs::write(&a, "one more line\n").expect("write");
        assert!(stamps.changed(), "a longer file is a change");
        let stamps = stamps.now();
        std::fs::remove_file(&b).expect("remove");
        assert!(stamps.changed(), "a file that goes away is a change");
        assert_eq!(stamps.now(), stamps.now());
    }
}
