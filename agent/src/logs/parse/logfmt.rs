//! The logfmt scanner: `key=value` pairs, values optionally double-quoted.

use std::borrow::Cow;

use super::{Fields, Scalar};

/// The fields of a logfmt line, `None` if it has no `key=value` pair at all.
///
/// Pairs are separated by whitespace; a value may be double-quoted with `\"`, `\\`,
/// `\n`, `\r`, `\t` escapes (an unterminated quote runs to the end of the line); a key
/// without `=` is a flag, `"true"`. An `=value` without a key is skipped.
pub(super) fn logfmt_fields(line: &str) -> Option<Fields<'_>> {
    let b = line.as_bytes();
    let mut fields = Fields::default();
    let mut pairs = false;
    let mut i = 0;
    // Every index below is at an ASCII byte or the end, so slicing `line` is on char
    // boundaries.
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let key_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        let key = &line[key_start..i];
        if i < b.len() && b[i] == b'=' {
            i += 1;
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                logfmt_quoted(line, &mut i)
            } else {
                let value_start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                Cow::Borrowed(&line[value_start..i])
            };
            if !key.is_empty() {
                fields.field(Cow::Borrowed(key), Scalar::Str(value));
                pairs = true;
            }
        } else {
            fields.attribute(Cow::Borrowed(key), "true".to_owned());
        }
    }
    pairs.then_some(fields)
}

/// The rest of a quoted logfmt value whose `"` is just before `*i`; moves `*i` past the
/// closing quote.
fn logfmt_quoted<'a>(line: &'a str, i: &mut usize) -> Cow<'a, str> {
    let b = line.as_bytes();
    let start = *i;
    let Some(at) = memchr::memchr2(b'"', b'\\', &b[start..]) else {
        *i = b.len();
        return Cow::Borrowed(&line[start..]);
    };
    if b[start + at] == b'"' {
        *i = start + at + 1;
        return Cow::Borrowed(&line[start..start + at]);
    }
    let mut out = String::with_capacity(at + 16);
    let mut j = start;
    loop {
        let Some(at) = memchr::memchr2(b'"', b'\\', &b[j..]) else {
            out.push_str(&line[j..]);
            *i = b.len();
            return Cow::Owned(out);
        };
        out.push_str(&line[j..j + at]);
        j += at;
        if b[j] == b'"' {
            *i = j + 1;
            return Cow::Owned(out);
        }
        // A backslash: the escaped character is ASCII for the known escapes; anything
        // else is kept as written, backslash included.
        match b.get(j + 1) {
            Some(b'"') => out.push('"'),
            Some(b'\\') => out.push('\\'),
            Some(b'n') => out.push('\n'),
            Some(b'r') => out.push('\r'),
            Some(b't') => out.push('\t'),
            _ => {
                out.push('\\');
                j += 1;
                continue;
            }
        }
        j += 2;
    }
}
