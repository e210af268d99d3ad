//! The regex parser: named capture groups become fields.

use std::borrow::Cow;

use regex::Regex;

use super::{Fields, Scalar};

pub(super) fn regex_fields<'a>(
    regex: &'a Regex,
    names: &'a [(usize, Box<str>)],
    line: &'a str,
) -> Option<Fields<'a>> {
    let captures = regex.captures(line)?;
    let mut fields = Fields::default();
    for (index, name) in names {
        if let Some(m) = captures.get(*index) {
            fields.field(
                Cow::Borrowed(&**name),
                Scalar::Str(Cow::Borrowed(m.as_str())),
            );
        }
    }
    Some(fields)
}
