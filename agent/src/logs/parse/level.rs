//! The level of a record: from a level field (a word, or a pino/bunyan number), or
//! guessed from the start of a line of free text.

use super::Scalar;
use crate::logs::record::Level;

/// The level a level field states: a word, or a numeric level of the pino/bunyan kind
/// (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal).
pub(super) fn level_of(raw: &Scalar<'_>) -> Option<Level> {
    let level = match raw {
        Scalar::Str(s) => Level::parse(s),
        Scalar::Num(n) => match *n {
            "10" => Level::Trace,
            "20" => Level::Debug,
            "30" => Level::Info,
            "40" => Level::Warn,
            "50" => Level::Error,
            "60" => Level::Fatal,
            _ => Level::Unknown,
        },
        Scalar::Bool(_) => Level::Unknown,
    };
    (level != Level::Unknown).then_some(level)
}

/// The number of leading bytes [`level_from_text`] looks at.
const LEVEL_WINDOW: usize = 64;

/// The level a line of free text states near its start, `Unknown` if none.
///
/// Looks at the words starting in the first 64 bytes and takes the first that names a
/// level (see [`Level::parse`]) and is written as a level, not as prose: upper case
/// (`INFO`, `WARN`), bracketed (`[warn]`, `<error>`, `(debug)`), followed by a colon
/// (`Error:`), or the value of a level key (`level=error`, `"severity":"warning"`).
/// A single letter counts only bracketed or as a key's value, and a word is only whole
/// letters, digits and `_` between other characters, so `E0501` or `ERROR_CODE` do not
/// count.
pub fn level_from_text(text: &str) -> Level {
    let b = text.as_bytes();
    let window = b.len().min(LEVEL_WINDOW);
    let mut i = 0;
    // The end of the previous word, if it was a level key (`level`, `severity`…).
    let mut previous_key_end: Option<usize> = None;
    while i < window {
        if !is_word_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        // "information" is the longest level word: stop looking at 12 bytes.
        let limit = b.len().min(start + 12);
        while i < limit && is_word_byte(b[i]) {
            i += 1;
        }
        let key_end = previous_key_end.take();
        if i == limit && i < b.len() && is_word_byte(b[i]) {
            while i < window && is_word_byte(b[i]) {
                i += 1;
            }
            continue;
        }
        let word = &b[start..i];
        // Level words and level keys begin with a letter.
        if !word[0].is_ascii_alphabetic() {
            continue;
        }
        let before = start.checked_sub(1).map(|j| b[j]);
        let after = b.get(i).copied();
        // `[warn]`, `<warn>`, `(warn)`, and the end of `[core:warn]`, `[main/warn]`.
        let bracketed = matches!(
            (before, after),
            (Some(b'[' | b':' | b'/'), Some(b']'))
                | (Some(b'<'), Some(b'>'))
                | (Some(b'('), Some(b')'))
        );
        let decorated = bracketed
            || key_end.is_some_and(|end| is_key_separator(&b[end..start]))
            || (word.len() >= 3
                && (word.iter().all(u8::is_ascii_uppercase)
                    || (after == Some(b':') && word.iter().all(u8::is_ascii_alphabetic))));
        if decorated {
            // The word is ASCII, so this never fails.
            if let Ok(word) = std::str::from_utf8(word) {
                let level = Level::parse(word);
                if level != Level::Unknown {
                    return level;
                }
            }
        }
        if is_level_key(word) {
            previous_key_end = Some(i);
        }
    }
    Level::Unknown
}

/// Letters, digits and `_`: the bytes of a word.
fn is_word_byte(c: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut table = [false; 256];
        let mut c = 0;
        while c < 256 {
            let b = c as u8;
            table[c] = b.is_ascii_alphanumeric() || b == b'_';
            c += 1;
        }
        table
    };
    TABLE[usize::from(c)]
}

fn is_level_key(word: &[u8]) -> bool {
    matches!(word.len(), 3 | 5 | 8 | 9)
        && ["level", "lvl", "severity", "loglevel", "log_level"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
}

/// Whether the bytes between a key and a value are a key-value separator: `=`, `: `,
/// `":"`, `='`.
fn is_key_separator(between: &[u8]) -> bool {
    !between.is_empty()
        && between.len() <= 4
        && between.iter().any(|&c| c == b'=' || c == b':')
        && between
            .iter()
            .all(|&c| matches!(c, b'=' | b':' | b'"' | b'\'' | b' '))
}
