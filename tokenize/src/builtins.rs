//! The built-in detectors' scan: email, IPv4 and IPv6 found around their anchor bytes
//! (`@` or `%40`, `.`, `:`), validated, as candidate spans.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use memchr::memchr3_iter;

use super::{EMAIL, IPV4, IPV6, Span, push_span};

/// The one walk over the anchor bytes, from the first one the prefilter found.
pub(super) fn scan_builtins(text: &str, first: usize, spans: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    let Some(rest) = bytes.get(first..) else {
        return;
    };
    // The end of the last run each address detector looked at: later anchors inside it
    // were covered.
    let mut v4_seen = 0;
    let mut v6_seen = 0;
    for at in memchr3_iter(b'@', b':', b'.', rest).map(|i| first + i) {
        match bytes[at] {
            b'@' => {
                if let Some((s, e)) = email_around(text, at, at + 1) {
                    push_span(spans, text, s, e, EMAIL);
                }
            }
            b'.' if at >= v4_seen => {
                let (seen, found) = ipv4_around(text, at);
                v4_seen = seen;
                if let Some((s, e)) = found {
                    push_span(spans, text, s, e, IPV4);
                }
            }
            b':' if at >= v6_seen => {
                let (seen, found) = ipv6_around(text, at);
                v6_seen = seen;
                if let Some((s, e)) = found {
                    push_span(spans, text, s, e, IPV6);
                }
            }
            _ => {}
        }
    }
    // A percent-encoded `@` (`jane%40example.com`, common in URLs and access logs). The
    // domain holds a `.`, so the prefilter has already let such a text through.
    if memchr::memchr(b'%', bytes).is_some() {
        for at in memchr::memmem::find_iter(bytes, b"%40") {
            if let Some((s, e)) = email_around(text, at, at + 3) {
                push_span(spans, text, s, e, EMAIL);
            }
        }
    }
}

/// The maximal run of bytes around `at` that satisfy `keep`: `[start, end)`.
fn run_around(bytes: &[u8], at: usize, keep: impl Fn(u8) -> bool) -> (usize, usize) {
    let mut start = at;
    while start > 0 && keep(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = at + 1;
    while end < bytes.len() && keep(bytes[end]) {
        end += 1;
    }
    (start, end)
}

/// The dotted-decimal run around the `.` at `dot`: the run's end, and the address's
/// span if the run is one address. A run that goes on with more dotted parts
/// (`1.2.3.4.5`, `host.1.2.3.4`, `4.3.2.1.in-addr`) or touches a letter (`v1.2.3.4`)
/// is not one; a trailing full stop is punctuation.
fn ipv4_around(text: &str, dot: usize) -> (usize, Option<(usize, usize)>) {
    let b = text.as_bytes();
    // Every address has a dot right after a digit; the first such dot covers the run.
    if dot == 0 || !b[dot - 1].is_ascii_digit() {
        return (dot + 1, None);
    }
    let (mut s, mut e) = run_around(b, dot, |c| c.is_ascii_digit() || c == b'.');
    let run_end = e;
    let alnum_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphanumeric);
    if b[s] == b'.' {
        if s > 0 && alnum_at(s - 1) {
            return (run_end, None);
        }
        while s < e && b[s] == b'.' {
            s += 1;
        }
    } else if s > 0 && b[s - 1].is_ascii_alphabetic() {
        return (run_end, None);
    }
    if b[e - 1] == b'.' {
        if alnum_at(e) {
            return (run_end, None);
        }
        while e > s && b[e - 1] == b'.' {
            e -= 1;
        }
    } else if b.get(e).is_some_and(u8::is_ascii_alphabetic) {
        return (run_end, None);
    }
    let found = text
        .get(s..e)
        .filter(|c| (7..=15).contains(&c.len()) && Ipv4Addr::from_str(c).is_ok())
        .map(|_| (s, e));
    (run_end, found)
}

/// The hex/colon/dot run around the `:` at `colon`: the run's end, and the address's
/// span if the run is one IPv6 address in any textual form. A zone (`%eth0`) stays
/// outside the span. A single colon or trailing dots at the edges are punctuation
/// (`addr:fe80::1`, `from ::1.`). A run glued to a word (`Default::new`) is not an
/// address, and neither is a compressed form with no decimal digit (`a::b`,
/// `dead::beef`): those are paths far more often than addresses.
fn ipv6_around(text: &str, colon: usize) -> (usize, Option<(usize, usize)>) {
    let b = text.as_bytes();
    let near = |i: Option<usize>| {
        i.and_then(|i| b.get(i))
            .is_some_and(|c| c.is_ascii_hexdigit() || *c == b':')
    };
    if !near(colon.checked_sub(1)) && !near(Some(colon + 1)) {
        return (colon + 1, None);
    }
    let (run_start, run_end) = run_around(b, colon, |c| {
        c.is_ascii_hexdigit() || c == b':' || c == b'.'
    });
    let (mut s, mut e) = (run_start, run_end);
    while s < e && b[s] == b'.' {
        s += 1;
    }
    while e > s && b[e - 1] == b'.' {
        e -= 1;
    }
    if e - s >= 2 && b[s] == b':' && b[s + 1] != b':' {
        s += 1;
    }
    if e - s >= 2 && b[e - 1] == b':' && b[e - 2] != b':' {
        e -= 1;
    }
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    if (s == run_start && s > 0 && word(&b[s - 1])) || (e == run_end && b.get(e).is_some_and(word))
    {
        return (run_end, None);
    }
    let Some(cand) = text.get(s..e) else {
        return (run_end, None);
    };
    // Cheap shape checks before the parser: an address is compressed (`::`) or has
    // eight groups (seven colons), or six and an embedded IPv4 address.
    let (mut colons, mut compressed, mut has_dot, mut has_digit) = (0, false, false, false);
    let mut prev = 0u8;
    for c in cand.bytes() {
        match c {
            b':' => {
                colons += 1;
                compressed |= prev == b':';
            }
            b'.' => has_dot = true,
            b'0'..=b'9' => has_digit = true,
            _ => {}
        }
        prev = c;
    }
    let shaped = compressed || colons == 7 || (colons == 6 && has_dot);
    if !shaped || (compressed && !has_digit) || Ipv6Addr::from_str(cand).is_err() {
        return (run_end, None);
    }
    (run_end, Some((s, e)))
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '.' | '_' | '%' | '+' | '-')
        || (!c.is_ascii() && c.is_alphanumeric())
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || (!c.is_ascii() && c.is_alphanumeric())
}

/// The address around the `@` written at `text[at..after]` (`@`, or `%40` percent-encoded):
/// `local@domain.tld`, the local part of letters, digits and `. _ % + -` or a quoted string
/// (`"john smith"@example.com`, also with the quotes escaped as in JSON), the domain of
/// dot-separated labels (letters, digits, inner `-`) ending in a TLD of two or more
/// letters. Non-ASCII letters are allowed (RFC 6531).
fn email_around(text: &str, at: usize, after: usize) -> Option<(usize, usize)> {
    let before = text.get(..at)?;
    let rest = text.get(after..)?;
    let start = match quoted_local_start(before) {
        Some(start) => start,
        None => {
            let mut start = at;
            for (i, c) in before.char_indices().rev() {
                if !is_local_char(c) {
                    break;
                }
                start = i;
            }
            while start < at && text.as_bytes()[start] == b'.' {
                start += 1;
            }
            if start == at {
                return None;
            }
            start
        }
    };
    let mut end = after;
    for (i, c) in rest.char_indices() {
        if !is_domain_char(c) {
            break;
        }
        end = after + i + c.len_utf8();
    }
    while end > after && matches!(text.as_bytes()[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = text.get(after..end)?;
    let mut labels = 0;
    let mut tld = "";
    for label in domain.split('.') {
        if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
            return None;
        }
        labels += 1;
        tld = label;
    }
    let tld_ok = tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic);
    (labels >= 2 && tld_ok).then_some((start, end))
}

/// The longest quoted local part RFC 5321 allows.
const MAX_LOCAL_LEN: usize = 64;

/// Where a quoted local part that ends right before the `@` starts (at its opening
/// quote, or at the backslash of an escaped one): `"john smith"` or `\"john smith\"`.
fn quoted_local_start(before: &str) -> Option<usize> {
    let b = before.as_bytes();
    let escaped = b.ends_with(b"\\\"");
    if !escaped && !b.ends_with(b"\"") {
        return None;
    }
    let close = b.len() - if escaped { 2 } else { 1 };
    let window_start = close.saturating_sub(MAX_LOCAL_LEN + 2);
    let open = memchr::memrchr(b'"', &b[window_start..close])? + window_start;
    let inner = &b[open + 1..close];
    if inner.is_empty() || inner.contains(&b'\n') {
        return None;
    }
    let start = if escaped {
        // The opening quote is escaped too: `\"`.
        open.checked_sub(1).filter(|&i| b[i] == b'\\')?
    } else {
        open
    };
    Some(start)
}
