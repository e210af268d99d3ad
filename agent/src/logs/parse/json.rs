//! The JSON scanner: one object per line, borrowed (strings without escapes are sliced
//! from the line), nested objects flattened as `a.b.c`, arrays kept as compact JSON.

use std::borrow::Cow;

use super::{Fields, Scalar};

/// The deepest nesting of objects and arrays a JSON line may have (as serde_json).
const MAX_DEPTH: u32 = 128;

/// The fields of a line holding one JSON object, `None` if it is anything else.
pub(super) fn json_fields(line: &str) -> Option<Fields<'_>> {
    let mut json = Json {
        text: line,
        bytes: line.as_bytes(),
        pos: 0,
    };
    json.skip_whitespace();
    if !json.eat(b'{') {
        return None;
    }
    let mut fields = Fields::default();
    json.object(None, &mut fields, 1).ok()?;
    json.skip_whitespace();
    (json.pos == json.bytes.len()).then_some(fields)
}

/// The line is not well-formed JSON.
#[derive(Debug)]
struct Malformed;

type JsonResult<T> = Result<T, Malformed>;

/// A cursor over a JSON text that checks it against RFC 8259 as it goes.
struct Json<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Json<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, c: u8) -> JsonResult<()> {
        if self.eat(c) { Ok(()) } else { Err(Malformed) }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The members of an object whose `{` was just read, as fields named
    /// `prefix.key`. Returns whether the object had any member.
    fn object(
        &mut self,
        prefix: Option<&str>,
        fields: &mut Fields<'a>,
        depth: u32,
    ) -> JsonResult<bool> {
        self.skip_whitespace();
        if self.eat(b'}') {
            return Ok(false);
        }
        loop {
            self.skip_whitespace();
            self.expect(b'"')?;
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let key = match prefix {
                None => key,
                Some(prefix) => {
                    let mut full = String::with_capacity(prefix.len() + 1 + key.len());
                    full.push_str(prefix);
                    full.push('.');
                    full.push_str(&key);
                    Cow::Owned(full)
                }
            };
            self.member(key, fields, depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(true);
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// The value of an object member named `key`.
    fn member(&mut self, key: Cow<'a, str>, fields: &mut Fields<'a>, depth: u32) -> JsonResult<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let value = self.string()?;
                fields.field(key, Scalar::Str(value));
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(Malformed);
                }
                self.pos += 1;
                if !self.object(Some(&key), fields, depth + 1)? {
                    fields.attribute(key, "{}".to_owned());
                }
            }
            Some(b'[') => {
                let start = self.pos;
                self.skip_value(depth)?;
                fields.attribute(key, compact(&self.text[start..self.pos]));
            }
            Some(b't') => {
                self.literal("true")?;
                fields.field(key, Scalar::Bool(true));
            }
            Some(b'f') => {
                self.literal("false")?;
                fields.field(key, Scalar::Bool(false));
            }
            // A null field carries nothing, and is left out.
            Some(b'n') => self.literal("null")?,
            _ => {
                let number = self.number()?;
                fields.field(key, Scalar::Num(number));
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &str) -> JsonResult<()> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// A number, as written: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> JsonResult<&'a str> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(Malformed),
        }
        if self.eat(b'.') {
            self.require_digits()?;
        }
        let mut exponent = false;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digits()?;
            exponent = true;
        }
        let number = &self.text[start..self.pos];
        // Like serde_json, refuse a number too large for an f64 (`1e400`).
        if (exponent || number.len() > 300) && !number.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(Malformed);
        }
        Ok(number)
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> JsonResult<()> {
        let start = self.pos;
        self.skip_digits();
        if self.pos > start {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// The rest of a string whose `"` was just read, unescaped; borrowed from the line
    /// when it has no escape.
    fn string(&mut self) -> JsonResult<Cow<'a, str>> {
        let start = self.pos;
        let stop = self.string_segment()?;
        if stop == b'"' {
            let value = &self.text[start..self.pos];
            self.pos += 1;
            return Ok(Cow::Borrowed(value));
        }
        let mut owned = String::with_capacity(self.pos - start + 16);
        owned.push_str(&self.text[start..self.pos]);
        loop {
            // At a backslash.
            self.pos += 1;
            self.escape(&mut owned)?;
            let segment = self.pos;
            let stop = self.string_segment()?;
            owned.push_str(&self.text[segment..self.pos]);
            if stop == b'"' {
                self.pos += 1;
                return Ok(Cow::Owned(owned));
            }
        }
    }

    /// Moves to the next `"` or `\` of a string and returns it; control characters
    /// are not allowed in a string.
    fn string_segment(&mut self) -> JsonResult<u8> {
        let rest = &self.bytes[self.pos..];
        let at = memchr::memchr2(b'"', b'\\', rest).ok_or(Malformed)?;
        if rest[..at].iter().any(|&c| c < 0x20) {
            return Err(Malformed);
        }
        self.pos += at;
        Ok(rest[at])
    }

    /// One escape after its backslash, appended to `out`.
    fn escape(&mut self, out: &mut String) -> JsonResult<()> {
        let c = self.peek().ok_or(Malformed)?;
        self.pos += 1;
        let unescaped = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low one.
                        if !(self.eat(b'\\') && self.eat(b'u')) {
                            return Err(Malformed);
                        }
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Malformed);
                        }
                        0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Malformed),
                    _ => unit,
                };
                char::from_u32(code).ok_or(Malformed)?
            }
            _ => return Err(Malformed),
        };
        out.push(unescaped);
        Ok(())
    }

    fn hex4(&mut self) -> JsonResult<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Malformed)?;
        let mut value = 0;
        for &c in digits {
            let digit = char::from(c).to_digit(16).ok_or(Malformed)?;
            value = value * 16 + digit;
        }
        self.pos += 4;
        Ok(value)
    }

    /// Checks and skips any value (arrays, and what is in them).
    fn skip_value(&mut self, depth: u32) -> JsonResult<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string()?;
            }
            Some(open @ (b'[' | b'{')) => {
                if depth >= MAX_DEPTH {
                    return Err(Malformed);
                }
                self.pos += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                self.skip_whitespace();
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    if open == b'{' {
                        self.expect(b'"')?;
                        self.string()?;
                        self.skip_whitespace();
                        self.expect(b':')?;
                        self.skip_whitespace();
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_whitespace();
                    if self.eat(b',') {
                        continue;
                    }
                    return self.expect(close);
                }
            }
            Some(b't') => self.literal("true")?,
            Some(b'f') => self.literal("false")?,
            Some(b'n') => self.literal("null")?,
            _ => {
                self.number()?;
            }
        }
        Ok(())
    }
}

/// Well-formed JSON text without the whitespace between tokens.
pub(super) fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    out
}
