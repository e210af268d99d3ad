//! Loading YAML with positions: every problem names its file, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

/// A place in a source file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub column: u32,
}

impl Position {
    /// The position of a value read with its span.
    pub(crate) fn of<T>(spanned: &Spanned<T>) -> Self {
        let loc = spanned.referenced;
        Position {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// One problem found while loading a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where, when known (a file that is not valid YAML may have no usable position).
    pub position: Option<Position>,
    /// A stable identifier of the kind of problem (e.g. `yaml-syntax`, `unknown-key`,
    /// `allowed-and-forbidden`), usable as a rule name by linters.
    pub code: &'static str,
    /// What is wrong, naming the key or label, and how to fix it.
    pub message: String,
}

impl Problem {
    pub(crate) fn at(position: Position, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            position: Some(position),
            code,
            message: message.into(),
        }
    }
}

/// A file that could not be loaded, with every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file, as it was named to the loader.
    pub file: PathBuf,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.position {
                Some(p) => write!(f, "{}:{}:{}: ", self.file.display(), p.line, p.column)?,
                None => write!(f, "{}: ", self.file.display())?,
            }
            write!(f, "{} [{}]", problem.message, problem.code)?;
        }
        Ok(())
    }
}

impl LoadError {
    pub(crate) fn new(file: &Path, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| p.position);
        LoadError {
            file: file.to_path_buf(),
            problems,
        }
    }

    pub(crate) fn io(file: &Path, err: &std::io::Error) -> Self {
        LoadError::new(
            file,
            vec![Problem {
                position: None,
                code: "io",
                message: format!("cannot read the file: {err}"),
            }],
        )
    }
}

/// Deserializes `text` (the content of `file`) into `T`, turning a parse error into a
/// [`LoadError`] with the parser's position.
pub(crate) fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, LoadError> {
    serde_saphyr::from_str(text).map_err(|err| {
        let position = err.location().map(|loc| Position {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        });
        let message = plain_message(&err);
        let code = if message.contains("unknown field") || message.contains("unknown variant") {
            "unknown-key"
        } else if message.contains("missing field") {
            "missing-key"
        } else {
            "yaml-syntax"
        };
        LoadError::new(
            file,
            vec![Problem {
                position,
                code,
                message,
            }],
        )
    })
}

/// The parser's message without its source snippet and without a trailing position,
/// which [`LoadError`] prints in its own `file:line:col` form.
fn plain_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    match first.rfind(" at line ") {
        Some(cut) => first[..cut].to_string(),
        None => first.to_string(),
    }
}

/// Reads a file to a string, as a [`LoadError`] on failure.
pub(crate) fn read(file: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(file).map_err(|e| LoadError::io(file, &e))
}
